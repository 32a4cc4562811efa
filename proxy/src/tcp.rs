//! L4 listeners (NFS, SMB, any TCP): each client connection goes to the member rendezvous
//! hashing picks for the client's address, and bytes then move both ways with `splice(2)`
//! (or a plain copy) until both sides have closed, with half-close passed on, an idle
//! timeout, and a reset passed on as a reset.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::ListenerMetrics;
use crate::pipes::PipePool;
use crate::shared::{Shared, accept_loop};
use crate::upstreams::Member;
use topology::config::Listener;

/// Accepts until the proxy drains, then returns.
pub async fn serve(
    listener: TcpListener,
    config: Listener,
    shared: Arc<Shared>,
    metrics: Arc<ListenerMetrics>,
) {
    let config = Arc::new(config);
    let sessions = shared.clone();
    let limits = (config.max_connections, config.max_per_client);
    accept_loop(
        listener,
        limits,
        sessions,
        metrics.clone(),
        drop,
        move |client, peer| {
            let (config, shared, metrics) = (config.clone(), shared.clone(), metrics.clone());
            async move { session(client, peer, &config, &shared, &metrics).await }
        },
    )
    .await;
}

async fn session(
    client: TcpStream,
    peer: SocketAddr,
    config: &Listener,
    shared: &Shared,
    metrics: &ListenerMetrics,
) {
    let started = Instant::now();
    let outcome = connect_and_forward(&client, peer, config, shared, metrics).await;
    shared.rtt.sample(peer.ip(), &client);
    let (member, up, down, how) = match &outcome {
        Ok((member, totals, end)) => (member.node.as_str(), totals.0, totals.1, *end),
        Err(e) => ("-", 0, 0, *e),
    };
    ListenerMetrics::add(&metrics.bytes_up, up);
    ListenerMetrics::add(&metrics.bytes_down, down);
    if shared.access_log {
        tracing::info!(
            target: "access",
            listener = %config.name,
            client = %peer,
            member,
            bytes_up = up,
            bytes_down = down,
            ms = started.elapsed().as_millis() as u64,
            end = how,
            "tcp session"
        );
    }
}

/// The member for this client (trying others in rendezvous order when one refuses), then
/// the forwarding until the session ends.
async fn connect_and_forward(
    client: &TcpStream,
    peer: SocketAddr,
    config: &Listener,
    shared: &Shared,
    metrics: &ListenerMetrics,
) -> Result<(Arc<Member>, (u64, u64), &'static str), &'static str> {
    let upstreams = shared.upstreams.load_full();
    let pool = upstreams.pool(&config.service).ok_or("no-pool")?;
    let mut tried = Vec::new();
    let (member, upstream) = loop {
        let Some(member) = pool.by_client(peer.ip(), shared.clock.millis(), &tried) else {
            metrics.upstream_error("no_member");
            // Reset: the client's protocol (NFS, SMB) reconnects, maybe to a recovered member.
            let _ = SockRef::from(client).set_linger(Some(Duration::ZERO));
            return Err("no-member");
        };
        tried.push(member.key);
        match connect(member.address, config.connect_timeout).await {
            Ok(stream) => {
                member.succeeded();
                break (member, stream);
            }
            Err(kind) => {
                shared.upstream_failure(metrics, &member, kind);
            }
        }
    };
    metrics.route(&config.service);
    member.live.outstanding.fetch_add(1, Ordering::Relaxed);
    let pipes = config.splice.then_some(&shared.pipes);
    let result = forward(client, &upstream, pipes, config.idle_timeout).await;
    member.live.outstanding.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(totals) => Ok((member, totals, "closed")),
        Err((totals, end)) => {
            // Pass a failure on as a reset, so neither side mistakes it for a clean end.
            let _ = SockRef::from(client).set_linger(Some(Duration::ZERO));
            let _ = SockRef::from(&upstream).set_linger(Some(Duration::ZERO));
            if end == "upstream-reset" {
                metrics.upstream_error("reset");
            }
            Ok((member, totals, end))
        }
    }
}

/// Connects within `timeout`; the error is the kind for metrics.
pub async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, &'static str> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Err(_) => Err("connect_timeout"),
        Ok(Err(_)) => Err("connect_refused"),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// Bytes moved (client to member, member to client), or those and why it ended badly.
type Forwarded = Result<(u64, u64), ((u64, u64), &'static str)>;

/// Moves bytes both ways until both directions have ended. A direction ends at end of
/// stream, which is passed on as a half-close (`shutdown(SHUT_WR)`) so the other direction
/// can go on (NFS and SMB clients rarely half-close, but HTTP/1.0 or rsync-style peers do).
/// An error on either side or `idle` without a byte either way ends both.
pub async fn forward(
    client: &TcpStream,
    upstream: &TcpStream,
    pipes: Option<&PipePool>,
    idle: Duration,
) -> Forwarded {
    let activity = AtomicU64::new(0);
    let started = Instant::now();
    let up = pump(client, upstream, pipes, &activity, started);
    let down = pump(upstream, client, pipes, &activity, started);
    let watchdog = async {
        loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            let quiet_for = started.elapsed().saturating_sub(last);
            if quiet_for >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet_for).await;
        }
    };
    tokio::pin!(up, down, watchdog);
    let (mut up_done, mut down_done) = (None, None);
    loop {
        tokio::select! {
            result = &mut up, if up_done.is_none() => {
                match result {
                    Ok(n) => up_done = Some(n),
                    Err((n, _)) => return Err(((n, down_done.unwrap_or(0)), "client-reset")),
                }
            }
            result = &mut down, if down_done.is_none() => {
                match result {
                    Ok(n) => down_done = Some(n),
                    Err((n, _)) => return Err(((up_done.unwrap_or(0), n), "upstream-reset")),
                }
            }
            _ = &mut watchdog => return Err(((up_done.unwrap_or(0), down_done.unwrap_or(0)), "idle-timeout")),
        }
        if let (Some(up), Some(down)) = (up_done, down_done) {
            return Ok((up, down));
        }
    }
}

/// One direction: `from` to `to` until end of stream (then half-close `to`). Each time
/// `from` has data, one chunk moves through a pipe of `pipes` when one is to be had (taken
/// only then, so an idle session holds none), else through a buffer.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    pipes: Option<&PipePool>,
    activity: &AtomicU64,
    started: Instant,
) -> Result<u64, (u64, io::Error)> {
    let mut moved = 0u64;
    let mut buffer = Vec::new();
    let result = loop {
        if let Err(e) = from.readable().await {
            break Err(e);
        }
        let chunk = match pipes.map(|pool| (pool, pool.take())) {
            Some((pool, Some(pipe))) => {
                // A buffer from a copied chunk is not kept while pipes are to be had.
                buffer = Vec::new();
                splice_chunk(from, to, pipe, pool, &mut moved).await
            }
            _ => copy_chunk(from, to, &mut buffer, &mut moved).await,
        };
        match chunk {
            Ok(Chunk::Moved) => touch(activity, started),
            Ok(Chunk::NotReady) => {}
            Ok(Chunk::End) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(()) => {
            let _ = SockRef::from(to).shutdown(std::net::Shutdown::Write);
            Ok(moved)
        }
        Err(e) => Err((moved, e)),
    }
}

fn touch(activity: &AtomicU64, started: Instant) {
    activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// What one chunk of a pump did.
enum Chunk {
    /// Bytes went from the source to the destination.
    Moved,
    /// The source's readiness was stale: nothing to read yet.
    NotReady,
    /// The source ended its stream.
    End,
}

/// Moves what `from` has now, up to a pipe's worth, to `to` through `pipe`, which goes back
/// to `pool` after (closed instead if a failure left bytes in it).
async fn splice_chunk(
    from: &TcpStream,
    to: &TcpStream,
    mut pipe: crate::sys::Pipe,
    pool: &PipePool,
    moved: &mut u64,
) -> io::Result<Chunk> {
    let result = async {
        match from.try_io(Interest::READABLE, || pipe.fill_from(from)) {
            Ok(0) => return Ok(Chunk::End),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Chunk::NotReady),
            Err(e) => return Err(e),
        }
        while pipe.pending > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || pipe.drain_to(to)) {
                Ok(n) => *moved += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Chunk::Moved)
    }
    .await;
    pool.give(pipe);
    result
}

/// Moves what one read of `from` returns now to `to` through `buffer` (allocated on first
/// use).
async fn copy_chunk(
    from: &TcpStream,
    to: &TcpStream,
    buffer: &mut Vec<u8>,
    moved: &mut u64,
) -> io::Result<Chunk> {
    if buffer.is_empty() {
        buffer.resize(64 * 1024, 0);
    }
    let n = match from.try_read(buffer) {
        Ok(0) => return Ok(Chunk::End),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Chunk::NotReady),
        Err(e) => return Err(e),
    };
    let mut written = 0;
    while written < n {
        to.writable().await?;
        match to.try_write(&buffer[written..n]) {
            Ok(w) => written += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    *moved += n as u64;
    Ok(Chunk::Moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (a, b)
    }

    async fn half_close_both_ways(pipes: Option<Arc<PipePool>>) {
        // client <-> [proxy_client | proxy_upstream] <-> server
        let (mut client, proxy_client) = pair().await;
        let (proxy_upstream, mut server) = pair().await;
        let pool = pipes.clone();
        let forwarding = tokio::spawn(async move {
            forward(
                &proxy_client,
                &proxy_upstream,
                pool.as_deref(),
                Duration::from_secs(5),
            )
            .await
        });
        let payload = vec![7u8; 3 * 1024 * 1024 + 17];
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got.len(),
            payload.len(),
            "the server sees the client's end of stream"
        );
        // The other direction still works after the client's half-close.
        server.write_all(b"reply after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "reply after half-close");
        let totals = forwarding.await.unwrap().unwrap();
        assert_eq!(totals, (payload.len() as u64, 22));
        if let Some(pool) = pipes {
            assert_eq!(pool.lent(), 0, "every pipe is back in the pool");
        }
    }

    fn pool(pages: usize) -> Arc<PipePool> {
        let limits = crate::pipes::PipeLimits {
            soft_pages: pages,
            hard_pages: 0,
            privileged: false,
        };
        Arc::new(PipePool::new(crate::pipes::PIPE_SIZE, limits))
    }

    #[tokio::test]
    async fn splice_forwarding_passes_half_close_on() {
        half_close_both_ways(Some(pool(16384))).await;
    }

    #[tokio::test]
    async fn copy_forwarding_passes_half_close_on() {
        half_close_both_ways(None).await;
    }

    #[tokio::test]
    async fn a_pool_of_one_pipe_splices_some_chunks_and_copies_the_rest() {
        let pool = pool(400); // three quarters: one 1 MiB pipe
        assert_eq!(pool.max_pipes(), 1);
        half_close_both_ways(Some(pool.clone())).await;
        assert_eq!(pool.live(), 1);
    }

    #[tokio::test]
    async fn an_idle_session_ends() {
        let (_client, proxy_client) = pair().await;
        let (proxy_upstream, _server) = pair().await;
        let started = Instant::now();
        let result = forward(
            &proxy_client,
            &proxy_upstream,
            Some(&pool(16384)),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(result, Err(((0, 0), "idle-timeout")));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
