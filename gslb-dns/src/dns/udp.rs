//! UDP: one blocking receive loop per worker thread, each on its own `SO_REUSEPORT` socket
//! so the kernel spreads queries over them with no lock between workers. A worker takes up
//! to [`BATCH`] datagrams per `recvmmsg` and replies with one `sendmmsg` (nix's safe
//! wrappers: no unsafe code here), loads the snapshot once per batch, and reuses its buffers.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use socket2::{Domain, Protocol, Socket, Type};

use super::counters::{Counters, Shard};
use super::snapshot::Snapshot;
use super::{Transport, respond};

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

/// Binds `workers` sockets on `addr` (port 0 picks one port for all).
pub fn bind_all(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    let first = bind(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(bound)?);
    }
    Ok(sockets)
}

/// Starts a worker thread on each socket.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    published: Arc<ArcSwap<Snapshot>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let published = published.clone();
        let shard = counters.shard();
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve(socket, published, shard, stop))?,
        );
    }
    Ok(threads)
}

/// Datagrams taken from the socket in one `recvmmsg` and answered in one `sendmmsg`.
const BATCH: usize = 32;
/// The largest query we read (a query is one question and an OPT record: far below this).
const MAX_QUERY: usize = 4096;

/// The IP address of a datagram's sender.
fn peer_ip(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// One worker: receive a batch (blocking for the first datagram only), answer each from the
/// current snapshot, send the replies in one call.
fn serve(
    socket: UdpSocket,
    published: Arc<ArcSwap<Snapshot>>,
    shard: Arc<Shard>,
    stop: Arc<AtomicBool>,
) {
    let fd = socket.as_raw_fd();
    let mut packets = vec![[0u8; MAX_QUERY]; BATCH]; // exactly BATCH, see the receive arrays
    let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(MAX_QUERY)).collect();
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut destinations: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut answered: Vec<usize> = Vec::with_capacity(BATCH);
    let mut rotation = 0u32;
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            // On the stack: no allocation per batch.
            let mut packets_left = packets.iter_mut();
            let mut buffers: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(packets_left.next().expect("BATCH packets"))]
            });
            match recvmmsg(
                fd,
                &mut recv_headers,
                buffers.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(messages) => received.extend(messages.map(|m| (m.bytes, m.address))),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    continue;
                }
            }
        }
        destinations.clear();
        answered.clear();
        {
            let snapshot = published.load();
            for (i, (len, address)) in received.iter().enumerate() {
                let Some(peer) = address.as_ref().and_then(peer_ip) else {
                    continue;
                };
                let outcome = respond(
                    &snapshot,
                    &packets[i][..*len],
                    peer,
                    Transport::Udp,
                    rotation,
                    &mut replies[i],
                );
                rotation = rotation.wrapping_add(1);
                shard.record(&outcome, false, &snapshot.metric_slots);
                if outcome.reply {
                    answered.push(i);
                    destinations.push(*address);
                }
            }
        }
        let mut sent = 0;
        while sent < answered.len() {
            let pending = &answered[sent..];
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|j| {
                [IoSlice::new(
                    pending.get(j).map_or(&[][..], |i| &replies[*i][..]),
                )]
            });
            let slices = &slices[..pending.len()];
            match sendmmsg(
                fd,
                &mut send_headers,
                slices,
                &destinations[sent..],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let count = results.count();
                    if count == 0 {
                        break;
                    }
                    sent += count;
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // One unreachable client must not cost the others their replies.
                    tracing::debug!(error = %e, "UDP send failed");
                    sent += 1;
                }
            }
        }
    }
}
