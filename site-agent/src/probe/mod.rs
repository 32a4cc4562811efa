//! Storage-readiness probes, one module each. A probe connects to one member, proves that
//! it can serve its protocol (not merely that a port is open), and returns a verdict with
//! a reason and the time it took. Every probe is bounded by its timeout: a hung node (TCP
//! accepts, never answers) costs one timeout, never a stuck agent.

pub mod http;
pub mod nfs;
pub mod s3;
pub mod smb;
pub mod tcp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// Why: `ok`, or a failure reason such as `timeout`, `refused`, `404 bucket gone`.
    pub reason: String,
    pub latency: Duration,
}

impl Verdict {
    fn ok(started: Instant) -> Verdict {
        Verdict {
            ok: true,
            reason: "ok".into(),
            latency: started.elapsed(),
        }
    }

    fn fail(started: Instant, reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            reason: reason.into(),
            latency: started.elapsed(),
        }
    }
}

/// Runs `check` against `target` within `timeout`; a probe that does not finish in time fails
/// with reason `timeout`.
pub async fn bounded<F>(timeout: Duration, check: F) -> Verdict
where
    F: std::future::Future<Output = Verdict>,
{
    let started = Instant::now();
    match tokio::time::timeout(timeout, check).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::fail(started, "timeout"),
    }
}

/// Connects over TCP, naming the failure the way operators read it.
async fn connect(target: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    match tokio::net::TcpStream::connect(target).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err("refused".into()),
        Err(e) => Err(format!("connect: {e}")),
    }
}

/// Reads exactly `buf.len()` octets, naming an early close.
async fn read_exact<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<(), String> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection closed early".to_owned(),
            _ => format!("read: {e}"),
        })
}
