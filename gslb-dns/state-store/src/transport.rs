//! Raft messages between nodes over TCP, with mutual TLS unless the whole cluster is on
//! loopback. One task and one bounded queue per peer, so a slow or dead peer never blocks
//! the others: when its queue is full, messages to it are dropped (raft retransmits), and a
//! dropped or failed snapshot is reported to raft.
//!
//! Frames: a 4-octet big-endian header, then the protobuf message. The header's low 31 bits
//! are the frame's length (at most [`MAX_FRAME`]); its high bit says that more frames of
//! the same message follow, so a snapshot of any size travels in bounded frames and the
//! receiver never allocates on a length it was merely told.
//!
//! What a connection may do is bounded before it proves anything: [`Limits`] caps inbound
//! connections, the TLS handshake and the first message take at most a few seconds, and an
//! idle connection is closed. The first message names the node speaking; with TLS its
//! certificate must name that node (`node-<id>.<cluster>`), it must be a node this one knows,
//! the message must be addressed here, and every later message must come from the same
//! node. Any breach closes the connection and is counted ([`TransportCounters`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{Message, MessageType};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsConnector;
use topology::wire::views::PeerState;

use crate::node::{NodeHandle, Outbox};
use crate::tls::Tls;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// The largest frame: an append of entries (raft caps them at 1 MiB, a single entry may be
/// larger: a deployment document of up to 1 MiB, escaped) fits; bigger messages are split.
pub const MAX_FRAME: usize = 4 << 20;
/// The frames a large message is cut into.
const CHUNK: usize = 1 << 20;
/// The header bit that says more frames of the same message follow.
const MORE: u32 = 1 << 31;
/// The longest a batch of messages (a snapshot, at worst) may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long sent data may stay unacknowledged before the kernel drops the connection
/// (`TCP_USER_TIMEOUT`). Without it a connection across a link that went down lives on,
/// its writes buffered and retransmitted with exponential backoff, so after the link
/// comes back the peers hear each other only at the next retransmission, seconds later
/// (6.4 s in the namespace lab, `site_lab.rs`); with it the connection fails, and the
/// send loop redials every [`MAX_BACKOFF`] until the path works again.
const UNACKED_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait between two dials of an unreachable peer.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Sets what every raft connection needs: no Nagle delay, and [`UNACKED_TIMEOUT`].
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(UNACKED_TIMEOUT));
}

/// Bounds on inbound connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Inbound connections open at once, authenticated or not.
    pub max_inbound: usize,
    /// Inbound connections from one address at once (so one host cannot hold every slot).
    pub per_address: usize,
    /// Inbound connections one node may hold at once.
    pub per_peer: usize,
    /// The TLS handshake, and then the first message, must each come within this.
    pub handshake: Duration,
    /// A connection silent for this long is closed (raft heartbeats come every few hundred
    /// milliseconds on a connection that carries anything).
    pub idle: Duration,
    /// The largest message (a snapshot, assembled from its frames).
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_inbound: 64,
            per_address: 16,
            per_peer: 4,
            handshake: Duration::from_secs(3),
            idle: Duration::from_secs(60),
            max_message: 256 << 20,
        }
    }
}

/// Why an inbound connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over `max_inbound`, or over `per_peer` for the node it speaks as.
    Connections,
    /// No TLS handshake, or no first message, in time; or silent past `idle`.
    Timeout,
    /// The TLS handshake failed (no certificate, another CA).
    Handshake,
    /// Its certificate does not name the node its messages come from.
    Identity,
    /// A message from another node than the first one, from a node this one does not know,
    /// or addressed to another node.
    Sender,
    /// A frame or message over the limits.
    Size,
    /// Bytes that are not a raft message.
    Decode,
}

impl Rejection {
    pub const ALL: [Rejection; 7] = [
        Rejection::Connections,
        Rejection::Timeout,
        Rejection::Handshake,
        Rejection::Identity,
        Rejection::Sender,
        Rejection::Size,
        Rejection::Decode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::Timeout => "timeout",
            Rejection::Handshake => "handshake",
            Rejection::Identity => "identity",
            Rejection::Sender => "sender",
            Rejection::Size => "size",
            Rejection::Decode => "decode",
        }
    }
}

/// What the transport refused and dropped, for metrics.
#[derive(Debug, Default)]
pub struct TransportCounters {
    rejected: [AtomicU64; 7],
    /// Inbound messages dropped because the node's queue was full.
    pub dropped: AtomicU64,
    /// Messages sent in more than one frame (snapshots over [`MAX_FRAME`]).
    pub chunked_sent: AtomicU64,
    /// The largest message sent or received so far, in octets.
    pub largest_message: AtomicU64,
}

impl TransportCounters {
    fn reject(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed, by reason.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        Rejection::ALL
            .iter()
            .map(|r| (r.name(), self.rejected[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The TCP transport of one node.
pub struct TcpTransport {
    id: u64,
    handle: NodeHandle,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    tls: Option<Tls>,
    limits: Limits,
    counters: Arc<TransportCounters>,
    /// Inbound connections authenticated per node.
    inbound: Mutex<HashMap<u64, usize>>,
    /// Inbound connections per remote address.
    addresses: Arc<topology::per_address::PerAddress>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}

impl TcpTransport {
    /// The transport of node `id`: it dials peers in plain TCP, or with mutual TLS when `tls`
    /// is given.
    pub fn new(
        id: u64,
        handle: NodeHandle,
        runtime: tokio::runtime::Handle,
        tls: Option<Tls>,
        limits: Limits,
    ) -> Arc<TcpTransport> {
        let addresses = topology::per_address::PerAddress::new(limits.per_address);
        Arc::new(TcpTransport {
            id,
            handle,
            runtime,
            peers: Mutex::new(HashMap::new()),
            tls,
            limits,
            counters: Arc::new(TransportCounters::default()),
            inbound: Mutex::new(HashMap::new()),
            addresses,
        })
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the transport refused and dropped.
    pub fn counters(&self) -> &Arc<TransportCounters> {
        &self.counters
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
            self.tls.clone(),
            self.counters.clone(),
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

    fn knows(&self, id: u64) -> bool {
        self.peers().contains_key(&id)
    }

    /// Counts an authenticated inbound connection of `id`; `None` when it has too many.
    fn enter(self: &Arc<Self>, id: u64) -> Option<InboundGuard> {
        let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
        let open = inbound.entry(id).or_default();
        if *open >= self.limits.per_peer {
            return None;
        }
        *open += 1;
        Some(InboundGuard {
            transport: self.clone(),
            id,
        })
    }
}

/// An authenticated inbound connection, counted while it lasts.
struct InboundGuard {
    transport: Arc<TcpTransport>,
    id: u64,
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        let mut inbound = self
            .transport
            .inbound
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = inbound.get_mut(&self.id) {
            *open = open.saturating_sub(1);
        }
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
    tls: Option<Tls>,
    counters: Arc<TransportCounters>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let connector = tls.as_ref().map(|t| (t.connector(), t.server_name(id)));
        let failed = match connect(&address, connector).await {
            Ok(Stream::Plain(stream)) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                pump(
                    BufWriter::new(stream),
                    &mut receiver,
                    &handle,
                    id,
                    &counters,
                )
                .await
            }
            Ok(Stream::Tls(stream)) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                pump(
                    BufWriter::new(*stream),
                    &mut receiver,
                    &handle,
                    id,
                    &counters,
                )
                .await
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
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(failed) = failed else { return };
        tracing::debug!(peer = id, %address, error = %failed, "raft connection lost; reconnecting");
        connected.store(false, Ordering::Relaxed);
        handle.report_unreachable(id);
        // A snapshot cut off mid-write was not delivered (raft ignores this when none was
        // in flight).
        handle.report_snapshot(id, false);
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Dials a peer; with TLS, the peer must prove it is the node expected (`name`).
async fn connect(
    address: &str,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
) -> std::io::Result<Stream> {
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tune(&stream);
    let Some((connector, name)) = tls else {
        return Ok(Stream::Plain(stream));
    };
    let stream = tokio::time::timeout(Duration::from_secs(2), connector.connect(name, stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Writes queued messages until the connection fails (`Some(error)`) or the queue closes.
/// A peer that stops reading fails the connection after [`WRITE_TIMEOUT`].
async fn pump<W: AsyncWrite + Unpin>(
    mut writer: BufWriter<W>,
    receiver: &mut mpsc::Receiver<Message>,
    handle: &NodeHandle,
    id: u64,
    counters: &TransportCounters,
) -> Option<std::io::Error> {
    loop {
        let message = receiver.recv().await?;
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            write_message(&mut writer, &message, handle, id, counters).await?;
            // Send everything already queued in one flush.
            while let Ok(message) = receiver.try_recv() {
                write_message(&mut writer, &message, handle, id, counters).await?;
            }
            writer.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(e),
            Err(_) => {
                return Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer stopped reading",
                ));
            }
        }
    }
}

/// The frames of one encoded message: one frame, or `CHUNK`-sized frames with `MORE` set on
/// all but the last.
pub fn frames(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    if bytes.len() <= MAX_FRAME {
        return vec![(bytes.len() as u32, bytes)];
    }
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let more = if i < last { MORE } else { 0 };
            (chunk.len() as u32 | more, chunk)
        })
        .collect()
}

async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    message: &Message,
    handle: &NodeHandle,
    id: u64,
    counters: &TransportCounters,
) -> std::io::Result<()> {
    let bytes = message.encode_to_vec();
    counters
        .largest_message
        .fetch_max(bytes.len() as u64, Ordering::Relaxed);
    let frames = frames(&bytes);
    if frames.len() > 1 {
        counters.chunked_sent.fetch_add(1, Ordering::Relaxed);
    }
    let result = async {
        for (header, frame) in frames {
            writer.write_u32(header).await?;
            writer.write_all(frame).await?;
        }
        Ok(())
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

/// Accepts peers' connections and feeds their messages to the node until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    transport: Arc<TcpTransport>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(transport.limits.max_inbound));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(from_address) =
            topology::per_address::PerAddress::enter(&transport.addresses, peer.ip())
        else {
            transport.counters.reject(Rejection::Connections);
            tracing::debug!(%peer, "raft connection refused: too many open from this address");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            transport.counters.reject(Rejection::Connections);
            tracing::debug!(%peer, "raft connection refused: too many open");
            continue;
        };
        tune(&stream);
        let transport = transport.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = (slot, from_address);
            let served = inbound(stream, &transport);
            tokio::select! {
                result = served => {
                    if let Err((why, detail)) = result {
                        transport.counters.reject(why);
                        let level_warn = matches!(why, Rejection::Identity | Rejection::Sender);
                        if level_warn {
                            tracing::warn!(%peer, reason = why.name(), %detail, "raft connection refused");
                        } else {
                            tracing::debug!(%peer, reason = why.name(), %detail, "raft connection closed");
                        }
                    }
                }
                _ = shutdown.changed() => {}
            }
        });
    }
}

type Refused = (Rejection, String);

/// One inbound connection: the handshake (with TLS), then its messages.
async fn inbound(stream: TcpStream, transport: &Arc<TcpTransport>) -> Result<(), Refused> {
    let limits = &transport.limits;
    match &transport.tls {
        None => receive(stream, None, transport).await,
        Some(tls) => {
            let stream = tokio::time::timeout(limits.handshake, tls.acceptor().accept(stream))
                .await
                .map_err(|_| (Rejection::Timeout, "no TLS handshake in time".to_owned()))?
                .map_err(|e| (Rejection::Handshake, e.to_string()))?;
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .cloned()
                .ok_or((Rejection::Handshake, "no client certificate".to_owned()))?;
            receive(stream, Some(certificate), transport).await
        }
    }
}

/// Reads one message's frames into `pending` (at most `max_message` octets in all).
async fn read_message<R: AsyncRead + Unpin>(
    stream: &mut R,
    pending: &mut Vec<u8>,
    wait: Duration,
    max_message: usize,
) -> Result<(), Refused> {
    pending.clear();
    let mut wait = wait;
    loop {
        let header = tokio::time::timeout(wait, stream.read_u32())
            .await
            .map_err(|_| (Rejection::Timeout, "silent".to_owned()))?
            .map_err(|e| (Rejection::Decode, e.to_string()))?;
        let len = (header & !MORE) as usize;
        if len > MAX_FRAME {
            return Err((Rejection::Size, format!("a frame of {len} octets")));
        }
        if pending.len() + len > max_message {
            return Err((
                Rejection::Size,
                format!("a message over {max_message} octets"),
            ));
        }
        // Read what comes, as it comes: nothing is allocated on the strength of a header.
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            (&mut *stream).take(len as u64).read_to_end(pending),
        )
        .await
        .map_err(|_| (Rejection::Timeout, "a frame stalled".to_owned()))?
        .map_err(|e| (Rejection::Decode, e.to_string()))?;
        if read < len {
            return Err((
                Rejection::Decode,
                "the connection ended mid-frame".to_owned(),
            ));
        }
        if header & MORE == 0 {
            return Ok(());
        }
        // The next frame of the same message follows at once.
        wait = Duration::from_secs(10);
    }
}

/// Reads messages, checks who sends them, and delivers them to the node.
async fn receive<R: AsyncRead + Unpin>(
    mut stream: R,
    certificate: Option<CertificateDer<'static>>,
    transport: &Arc<TcpTransport>,
) -> Result<(), Refused> {
    let limits = &transport.limits;
    let mut pending = Vec::new();
    let mut speaker: Option<(u64, InboundGuard)> = None;
    loop {
        let wait = if speaker.is_none() {
            limits.handshake
        } else {
            limits.idle
        };
        read_message(&mut stream, &mut pending, wait, limits.max_message).await?;
        let message =
            Message::decode(&pending[..]).map_err(|e| (Rejection::Decode, e.to_string()))?;
        transport
            .counters
            .largest_message
            .fetch_max(pending.len() as u64, Ordering::Relaxed);
        if pending.capacity() > MAX_FRAME {
            pending = Vec::new();
        }
        if message.to != transport.id {
            return Err((
                Rejection::Sender,
                format!(
                    "a message for node {}, this is node {}",
                    message.to, transport.id
                ),
            ));
        }
        match &speaker {
            Some((id, _)) if *id != message.from => {
                return Err((
                    Rejection::Sender,
                    format!("node {id} sent a message from node {}", message.from),
                ));
            }
            Some(_) => {}
            None => {
                let from = message.from;
                if !transport.knows(from) {
                    return Err((Rejection::Sender, format!("node {from} is not a peer")));
                }
                if let (Some(tls), Some(certificate)) = (&transport.tls, &certificate)
                    && !tls.names_node(certificate, from)
                {
                    return Err((
                        Rejection::Identity,
                        format!("the certificate does not name node {from}"),
                    ));
                }
                let guard = transport.enter(from).ok_or((
                    Rejection::Connections,
                    format!("node {from} holds too many connections"),
                ))?;
                speaker = Some((from, guard));
            }
        }
        if !transport.handle.deliver(message) {
            transport.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_message_goes_in_bounded_frames_and_a_small_one_as_before() {
        let small = vec![7u8; 100];
        assert_eq!(frames(&small), vec![(100, &small[..])]);
        let large = vec![1u8; 3 * CHUNK + 10 + MAX_FRAME];
        let split = frames(&large);
        assert!(
            split
                .iter()
                .all(|(h, f)| (h & !MORE) as usize == f.len() && f.len() <= CHUNK)
        );
        assert!(split[..split.len() - 1].iter().all(|(h, _)| h & MORE != 0));
        assert_eq!(split.last().unwrap().0 & MORE, 0);
        assert_eq!(
            split.iter().map(|(_, f)| f.len()).sum::<usize>(),
            large.len()
        );
    }

    #[tokio::test]
    async fn frames_are_read_back_and_a_lying_header_allocates_nothing() {
        let large = vec![3u8; 2 * MAX_FRAME];
        let mut wire = Vec::new();
        for (header, frame) in frames(&large) {
            wire.extend_from_slice(&header.to_be_bytes());
            wire.extend_from_slice(frame);
        }
        let mut pending = Vec::new();
        read_message(
            &mut &wire[..],
            &mut pending,
            Duration::from_secs(1),
            64 << 20,
        )
        .await
        .unwrap();
        assert_eq!(pending, large);
        // 64 MiB announced, 4 octets sent: refused on the header, before any allocation.
        let lie = (64u32 << 20).to_be_bytes();
        let err = read_message(
            &mut &lie[..],
            &mut pending,
            Duration::from_secs(1),
            64 << 20,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0, Rejection::Size);
        // A message assembled past the limit is refused too.
        let err = read_message(
            &mut &wire[..],
            &mut pending,
            Duration::from_secs(1),
            MAX_FRAME,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0, Rejection::Size);
    }
}
