//! Connections to members: plain or TLS, and kept idle for reuse after a clean response.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::upstreams::Member;

/// A connection to a member.
#[derive(Debug)]
pub enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Upstream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Upstream::Plain(tcp) => tcp,
            Upstream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Still open and silent (a member that closed an idle connection shows end of
    /// stream; unexpected bytes make it unusable too).
    fn reusable(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        matches!(
            socket2::SockRef::from(self.tcp()).peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upstream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => Pin::new(s).poll_flush(cx),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An idle connection in a member's pool.
#[derive(Debug)]
pub struct Idle {
    upstream: Upstream,
    since: Instant,
}

/// Idle connections older than this are not reused (members close theirs after a while).
const MAX_IDLE: Duration = Duration::from_secs(15);
/// Idle connections kept per member, at most.
const MAX_IDLE_PER_MEMBER: usize = 32;
/// Members with idle connections beyond which expired ones are swept.
const MAX_IDLE_MEMBERS: usize = 256;

/// TLS towards members: the connector and the name to verify (none: the member's address).
#[derive(Clone)]
pub struct BackendTls {
    pub connector: TlsConnector,
    pub server_name: Option<ServerName<'static>>,
}

/// Idle connections to members, kept for reuse, by member and address (a member whose
/// address changed starts afresh).
#[derive(Debug, Default)]
pub struct IdlePool {
    by_member: Mutex<HashMap<(u64, SocketAddr), Vec<Idle>>>,
}

impl IdlePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, SocketAddr), Vec<Idle>>> {
        self.by_member.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `member` that still looks usable, if any.
    pub fn checkout(&self, member: &Member) -> Option<Upstream> {
        let mut pool = self.lock();
        let idle = pool.get_mut(&(member.key, member.address))?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < MAX_IDLE && entry.upstream.reusable() {
                return Some(entry.upstream);
            }
        }
        None
    }

    pub fn checkin(&self, member: &Member, upstream: Upstream) {
        let mut pool = self.lock();
        // Members gone or moved leave their connections behind: drop the expired ones.
        if pool.len() > MAX_IDLE_MEMBERS {
            pool.retain(|_, idle| {
                idle.retain(|e| e.since.elapsed() < MAX_IDLE);
                !idle.is_empty()
            });
        }
        let idle = pool.entry((member.key, member.address)).or_default();
        if idle.len() < MAX_IDLE_PER_MEMBER {
            idle.push(Idle {
                upstream,
                since: Instant::now(),
            });
        }
    }

    /// Forgets every idle connection to `member` (one turned out stale).
    pub fn clear(&self, member: &Member) {
        self.lock().remove(&(member.key, member.address));
    }
}

/// A new connection (and TLS handshake) within `timeout`; the error is the kind for metrics.
pub async fn connect(
    address: SocketAddr,
    timeout: Duration,
    tls: Option<&Arc<BackendTls>>,
) -> Result<Upstream, &'static str> {
    let tcp = crate::tcp::connect(address, timeout).await?;
    let Some(tls) = tls else {
        return Ok(Upstream::Plain(tcp));
    };
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
    match tokio::time::timeout(timeout, tls.connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(Upstream::Tls(Box::new(stream))),
        Ok(Err(_)) => Err("tls_handshake"),
        Err(_) => Err("connect_timeout"),
    }
}
