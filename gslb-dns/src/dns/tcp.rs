//! TCP (RFC 7766): two-octet length-prefixed messages, pipelined queries answered in order,
//! an idle timeout between queries, and a cap on open connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::counters::{Counters, Shard};
use super::snapshot::Snapshot;
use super::{Transport, respond};

/// Serves connections from `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    published: Arc<ArcSwap<Snapshot>>,
    counters: Arc<Counters>,
    idle_timeout: Duration,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let shard = counters.shard();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
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
            tracing::debug!(%peer, "TCP connection limit reached; closing");
            drop(stream);
            continue;
        };
        let published = published.clone();
        let shard = shard.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, peer, published, shard, idle_timeout) => {}
                _ = shutdown.changed() => {}
            }
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    published: Arc<ArcSwap<Snapshot>>,
    shard: Arc<Shard>,
    idle_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut message = vec![0u8; 65535];
    let mut reply = Vec::with_capacity(4096);
    let mut rotation = 0u32;
    loop {
        // Flush what is answered before waiting, so pipelined replies go out together.
        if reader.buffer().len() < 2 && writer.flush().await.is_err() {
            return;
        }
        let len = match tokio::time::timeout(idle_timeout, reader.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        match tokio::time::timeout(idle_timeout, reader.read_exact(&mut message[..len])).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let outcome = {
            let snapshot = published.load();
            let outcome = respond(
                &snapshot,
                &message[..len],
                peer.ip(),
                Transport::Tcp,
                rotation,
                &mut reply,
            );
            shard.record(&outcome, true, &snapshot.metric_slots);
            outcome
        };
        rotation = rotation.wrapping_add(1);
        if !outcome.reply {
            return;
        }
        let frame = (reply.len() as u16).to_be_bytes();
        if writer.write_all(&frame).await.is_err() || writer.write_all(&reply).await.is_err() {
            return;
        }
    }
}
