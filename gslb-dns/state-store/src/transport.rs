//! Raft messages between nodes over TCP, with mutual TLS when configured: length-delimited
//! frames (a 4-octet big-endian length, then the protobuf message). One task and one bounded queue per peer, so a slow or
//! dead peer never blocks the others: when its queue is full, messages to it are dropped
//! (raft retransmits), and a dropped or failed snapshot is reported to raft.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{Message, MessageType};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;

use topology::wire::views::PeerState;

use crate::node::{NodeHandle, Outbox};
use crate::tls::Tls;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// The largest frame accepted from a peer.
const MAX_FRAME: usize = 64 << 20;

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The TCP transport of one node.
pub struct TcpTransport {
    handle: NodeHandle,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    tls: Option<Tls>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").finish_non_exhaustive()
    }
}

fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}

impl TcpTransport {
    /// A transport that dials peers in plain TCP, or with mutual TLS when `tls` is given.
    pub fn new(
        handle: NodeHandle,
        runtime: tokio::runtime::Handle,
        tls: Option<Tls>,
    ) -> Arc<TcpTransport> {
        Arc::new(TcpTransport {
            handle,
            runtime,
            peers: Mutex::new(HashMap::new()),
            tls,
        })
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a peer, or moves it to a new address.
    pub fn set_peer(&self, id: u64, address: &str) {
        let mut peers = self.peers();
        if peers.get(&id).is_some_and(|p| p.address == address) {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let (queue, receiver) = mpsc::channel(QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let task = self.runtime.spawn(send_loop(
            id,
            address.to_owned(),
            receiver,
            connected.clone(),
            self.handle.clone(),
            self.tls.as_ref().map(|t| t.connector.clone()),
        ));
        peers.insert(
            id,
            Peer {
                address: address.to_owned(),
                queue,
                connected,
                task,
            },
        );
    }

    /// Forgets a peer.
    pub fn remove_peer(&self, id: u64) {
        if let Some(peer) = self.peers().remove(&id) {
            peer.task.abort();
        }
    }

    /// Every peer and whether it is connected now.
    pub fn peer_states(&self) -> Vec<PeerState> {
        let mut states: Vec<PeerState> = self
            .peers()
            .iter()
            .map(|(id, p)| PeerState {
                id: *id,
                address: p.address.clone(),
                connected: p.connected.load(Ordering::Relaxed),
            })
            .collect();
        states.sort_by_key(|p| p.id);
        states
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        for (_, peer) in self.peers().drain() {
            peer.task.abort();
        }
    }
}

impl Outbox for TcpTransport {
    fn send(&self, message: Message) {
        let to = message.to;
        let snapshot = is_snapshot(&message);
        let queued = self
            .peers()
            .get(&to)
            .is_some_and(|peer| peer.queue.try_send(message).is_ok());
        if !queued && snapshot {
            self.handle.report_snapshot(to, false);
        }
    }
}

/// Keeps one connection to a peer, reconnecting with backoff.
async fn send_loop(
    id: u64,
    address: String,
    mut receiver: mpsc::Receiver<Message>,
    connected: Arc<AtomicBool>,
    handle: NodeHandle,
    tls: Option<TlsConnector>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let failed = match connect(&address, tls.as_ref()).await {
            Ok(Stream::Plain(stream)) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                pump(BufWriter::new(stream), &mut receiver, &handle, id).await
            }
            Ok(Stream::Tls(stream)) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                pump(BufWriter::new(*stream), &mut receiver, &handle, id).await
            }
            Err(e) => {
                handle.report_unreachable(id);
                // What queued meanwhile is stale; raft sends again when it must.
                while let Ok(message) = receiver.try_recv() {
                    if is_snapshot(&message) {
                        handle.report_snapshot(id, false);
                    }
                }
                tracing::debug!(peer = id, %address, error = %e, "cannot reach raft peer");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let Some(failed) = failed else { return };
        tracing::debug!(peer = id, %address, error = %failed, "raft connection lost; reconnecting");
        connected.store(false, Ordering::Relaxed);
        handle.report_unreachable(id);
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(address: &str, tls: Option<&TlsConnector>) -> std::io::Result<Stream> {
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    let Some(connector) = tls else {
        return Ok(Stream::Plain(stream));
    };
    let ip = stream.peer_addr()?.ip();
    let name = ServerName::IpAddress(ip.into());
    let stream = tokio::time::timeout(Duration::from_secs(2), connector.connect(name, stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Writes queued messages until the connection fails (`Some(error)`) or the queue closes.
async fn pump<W: AsyncWrite + Unpin>(
    mut writer: BufWriter<W>,
    receiver: &mut mpsc::Receiver<Message>,
    handle: &NodeHandle,
    id: u64,
) -> Option<std::io::Error> {
    loop {
        let message = receiver.recv().await?;
        if let Err(e) = write_frame(&mut writer, &message, handle, id).await {
            return Some(e);
        }
        // Send everything already queued in one flush.
        while let Ok(message) = receiver.try_recv() {
            if let Err(e) = write_frame(&mut writer, &message, handle, id).await {
                return Some(e);
            }
        }
        if let Err(e) = writer.flush().await {
            return Some(e);
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    message: &Message,
    handle: &NodeHandle,
    id: u64,
) -> std::io::Result<()> {
    let bytes = message.encode_to_vec();
    let result = async {
        writer.write_u32(bytes.len() as u32).await?;
        writer.write_all(&bytes).await
    }
    .await;
    if is_snapshot(message) {
        let result = match result {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        handle.report_snapshot(id, result.is_ok());
        return result;
    }
    result
}

/// Accepts peers' connections (with mutual TLS when `tls` is given) and feeds their
/// messages to the node until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: NodeHandle,
    tls: Option<Tls>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = async {
                match acceptor {
                    None => receive(stream, &handle).await,
                    Some(acceptor) => {
                        let stream =
                            tokio::time::timeout(Duration::from_secs(2), acceptor.accept(stream))
                                .await
                                .map_err(|_| {
                                    std::io::Error::new(
                                        std::io::ErrorKind::TimedOut,
                                        "TLS handshake timed out",
                                    )
                                })??;
                        receive(stream, &handle).await
                    }
                }
            };
            tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "raft peer connection closed");
                    }
                }
                _ = shutdown.changed() => {}
            }
        });
    }
}

async fn receive<R: AsyncRead + Unpin>(mut stream: R, handle: &NodeHandle) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let len = stream.read_u32().await? as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame of {len} octets"),
            ));
        }
        buffer.resize(len, 0);
        stream.read_exact(&mut buffer).await?;
        let message = Message::decode(&buffer[..])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        handle.deliver(message);
    }
}
