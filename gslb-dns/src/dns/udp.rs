//! UDP: one blocking receive loop per worker thread, each on its own `SO_REUSEPORT` socket
//! so the kernel spreads queries over them with no lock between workers. A worker loads the
//! current snapshot per packet and never allocates on the way (its buffers are reused).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Transport, respond};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// How often an idle worker checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(200);

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Room for bursts; the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(STOP_POLL))?;
    Ok(socket.into())
}

/// Binds `workers` sockets on `addr` (port 0 picks one port for all) and starts a thread on
/// each. Returns the bound address and the threads.
pub fn spawn(
    addr: SocketAddr,
    workers: usize,
    published: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let first = bind(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(bound)?);
    }
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let published = published.clone();
        let shard = metrics.shard();
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve(socket, published, shard, stop))?,
        );
    }
    Ok((bound, threads))
}

fn serve(
    socket: UdpSocket,
    published: Arc<ArcSwap<Snapshot>>,
    shard: Arc<crate::metrics::Shard>,
    stop: Arc<AtomicBool>,
) {
    let mut packet = [0u8; 4096];
    let mut reply = Vec::with_capacity(4096);
    let mut rotation = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut packet) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let snapshot = published.load();
        let outcome = respond(
            &snapshot,
            &packet[..len],
            peer.ip(),
            Transport::Udp,
            rotation,
            &mut reply,
        );
        rotation = rotation.wrapping_add(1);
        shard.record(&outcome, false);
        if outcome.reply
            && let Err(e) = socket.send_to(&reply, peer)
        {
            tracing::debug!(error = %e, %peer, "UDP send failed");
        }
    }
}
