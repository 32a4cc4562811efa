//! Watch connections: between probes the agent holds one idle TCP connection to each
//! member's port. A storage service whose process dies has its sockets closed by the kernel
//! (a FIN or a reset arrives at once), so the member is probed at once rather than at its
//! next interval: a crashed daemon is found in milliseconds, not in up to one interval. A
//! host that loses power, or a network that drops packets, sends nothing; for those the
//! regular probes (and the proxies' passive reports) stay the answer.
//!
//! Bounded: one connection per member, a connect timeout of the check's timeout, TCP
//! keepalives (a member gone without a word ends the connection in a few seconds), at most
//! [`MAX_UNREAD`] octets read and dropped per connection (a member that talks is closed and
//! watched again an interval later), and a member that closes idle connections quickly is
//! not watched more often than once an interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use topology::Check;

/// Unanswered keepalives (one a second, or one an interval if longer) that end a watch
/// connection.
const KEEPALIVE_RETRIES: u32 = 3;

/// The most a watched member may send on the idle connection before it is closed.
const MAX_UNREAD: usize = 64 << 10;

/// How a watch connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The member closed it (or reset it): worth a probe at once.
    Closed,
    /// It could not be opened, or the member sent more than [`MAX_UNREAD`].
    NotWatched,
}

/// Opens one watch connection to `addr` and waits until it ends.
async fn watch_once(addr: SocketAddr, check: &Check) -> Ended {
    let Ok(Ok(mut stream)) = tokio::time::timeout(check.timeout, TcpStream::connect(addr)).await
    else {
        return Ended::NotWatched;
    };
    // Keepalives end a connection whose member vanished without closing it (a host that
    // lost power, then came back with no memory of it): it would otherwise stay open,
    // watching nothing, forever.
    let every = check.interval.max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(every)
        .with_interval(every)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let mut sink = [0u8; 4096];
    let mut unread = 0;
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(n) => {
                unread += n;
                if unread > MAX_UNREAD {
                    return Ended::NotWatched;
                }
            }
        }
    }
}

/// Watches `addr` until the task is dropped; `wake` (the member's probe task's) is
/// notified when the member closes the connection, once per successful probe (`armed`). `served` cuts the wait before
/// reconnecting short: a member that has just answered a probe is worth watching again
/// at once (one that came back from a restart, say).
async fn watch(
    addr: SocketAddr,
    check: Check,
    wake: impl Fn() -> Arc<Notify>,
    served: Arc<Notify>,
    armed: Arc<AtomicBool>,
) {
    loop {
        let opened = Instant::now();
        // One wake-up per success: once a close has woken a probe, more closes before the
        // member answers a probe again add nothing (a dying member closes a reconnect too).
        if watch_once(addr, &check).await == Ended::Closed && armed.swap(false, Ordering::SeqCst) {
            tracing::debug!(%addr, "watch connection closed by the member: probing at once");
            wake().notify_one();
        }
        // Reconnect no sooner than an interval after the last attempt, unless a probe has
        // just succeeded: a member refusing (being down) or closing idle connections at
        // once costs at most one connect per interval, plus one per successful probe.
        let since = opened.elapsed();
        if since < check.interval {
            tokio::select! {
                _ = tokio::time::sleep(check.interval - since) => {}
                _ = served.notified() => {}
            }
        }
    }
}

/// A member's watch task, aborted when dropped (with the member's probe task).
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
    served: Arc<Notify>,
    /// Set by a successful probe, taken by the wake-up it allows.
    armed: Arc<AtomicBool>,
}

impl Watcher {
    /// Starts watching `addr`; `wake` finds the member's probe task's wake-up.
    pub fn start(
        addr: SocketAddr,
        check: Check,
        wake: impl Fn() -> Arc<Notify> + Send + 'static,
    ) -> Watcher {
        let served = Arc::new(Notify::new());
        let armed = Arc::new(AtomicBool::new(false));
        Watcher {
            task: tokio::spawn(watch(addr, check, wake, served.clone(), armed.clone())),
            served,
            armed,
        }
    }

    /// The member answered a probe: if the watch connection is down, open it again now.
    pub fn served(&self) {
        self.armed.store(true, Ordering::SeqCst);
        self.served.notify_one();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn check() -> Check {
        crate::target::one_member(
            r#"{ kind = "tcp", interval = "200ms", timeout = "100ms" }"#,
            1,
        )
        .check
    }

    #[tokio::test]
    async fn a_member_whose_process_closes_its_sockets_is_seen_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            // The "process" dies: its listener and connections close.
            drop(stream);
            drop(listener);
        });
        let started = Instant::now();
        assert_eq!(watch_once(addr, &check()).await, Ended::Closed);
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(150)
                && took < std::time::Duration::from_secs(1),
            "{took:?}"
        );
        server.await.unwrap();
        // Down now: nothing to watch.
        assert_eq!(watch_once(addr, &check()).await, Ended::NotWatched);
    }

    #[tokio::test]
    async fn a_member_that_talks_on_the_idle_connection_is_not_watched_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let chunk = vec![b'x'; 16 << 10];
            while stream.write_all(&chunk).await.is_ok() {}
        });
        assert_eq!(watch_once(addr, &check()).await, Ended::NotWatched);
    }
}
