//! TCP (RFC 7766): two-octet length-prefixed messages, pipelined queries answered in order.
//!
//! Bounded against a greedy or hostile client (each limit counted in
//! `portico_dns_tcp_closed_total{reason}`): connections open at once, and per client
//! address; an idle timeout between queries; a write timeout, so a client that pipelines
//! queries and never reads its replies loses its connection instead of holding it; and a
//! number of queries per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use topology::per_address::PerAddress;

use super::counters::{Counters, Shard, TcpClose};
use super::snapshot::Snapshot;
use super::{Transport, respond};

/// How long a connection closed at its query limit still takes (and drops) input.
const LINGER: Duration = Duration::from_secs(2);

/// The TCP side's bounds, from `[dns]`.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_per_client: usize,
    pub max_queries: u32,
}

impl From<&topology::DnsSettings> for TcpLimits {
    fn from(dns: &topology::DnsSettings) -> TcpLimits {
        TcpLimits {
            idle_timeout: dns.tcp_idle_timeout,
            write_timeout: dns.tcp_write_timeout,
            max_connections: dns.tcp_max_connections,
            max_per_client: dns.tcp_max_per_client,
            max_queries: dns.tcp_max_queries,
        }
    }
}

/// Serves connections from `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    published: Arc<ArcSwap<Snapshot>>,
    counters: Arc<Counters>,
    limits: TcpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let shard = counters.shard();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerAddress::new(limits.max_per_client);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counters.count_tcp_close(TcpClose::Limit);
            tracing::debug!(%peer, "TCP connection limit reached; closing");
            continue;
        };
        let Some(client_slot) = PerAddress::enter(&per_client, peer.ip()) else {
            counters.count_tcp_close(TcpClose::PerClient);
            tracing::debug!(%peer, "TCP connections from this address at their limit; closing");
            continue;
        };
        let published = published.clone();
        let shard = shard.clone();
        let counters = counters.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            counters.tcp_open.fetch_add(1, Ordering::Relaxed);
            let closed = tokio::select! {
                closed = connection(stream, peer, published, shard, limits) => closed,
                _ = shutdown.changed() => None,
            };
            if let Some(why) = closed {
                counters.count_tcp_close(why);
            }
            counters.tcp_open.fetch_sub(1, Ordering::Relaxed);
            drop((permit, client_slot));
        });
    }
}

/// Answers one connection's queries; returns why the server closed it (`None` when the
/// client did, or sent something not worth an answer).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    published: Arc<ArcSwap<Snapshot>>,
    shard: Arc<Shard>,
    limits: TcpLimits,
) -> Option<TcpClose> {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut message = vec![0u8; 65535];
    let mut reply = Vec::with_capacity(4096);
    let mut answered = 0u32;
    loop {
        // Flush what is answered before waiting, so pipelined replies go out together.
        if reader.buffer().len() < 2 {
            match tokio::time::timeout(limits.write_timeout, writer.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some(TcpClose::WriteTimeout),
            }
        }
        if answered >= limits.max_queries {
            // Send the end after the answers, and take what the client still sends for a
            // moment: closing with unread input would reset the connection and could cost
            // the client answers already sent.
            let _ = tokio::time::timeout(limits.write_timeout, writer.shutdown()).await;
            let mut discard = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(reader.read(&mut discard).await, Ok(n) if n > 0) {}
            })
            .await;
            return Some(TcpClose::QueryLimit);
        }
        let len = match tokio::time::timeout(limits.idle_timeout, reader.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(_)) => return None,
            Err(_) => return Some(TcpClose::Idle),
        };
        match tokio::time::timeout(limits.idle_timeout, reader.read_exact(&mut message[..len]))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some(TcpClose::Idle),
        }
        let outcome = {
            let snapshot = published.load();
            let outcome = respond(
                &snapshot,
                &message[..len],
                peer.ip(),
                Transport::Tcp,
                answered,
                &mut reply,
            );
            shard.record(&outcome, true, &snapshot.metric_slots);
            outcome
        };
        answered = answered.wrapping_add(1);
        if !outcome.reply {
            return None;
        }
        let frame = (reply.len() as u16).to_be_bytes();
        let write = async {
            writer.write_all(&frame).await?;
            writer.write_all(&reply).await
        };
        match tokio::time::timeout(limits.write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some(TcpClose::WriteTimeout),
        }
    }
}
