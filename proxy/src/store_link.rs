//! The proxy's link to the state store: it follows a gslb-dns node's state stream
//! (`GET /api/v1/watch`, newline-delimited JSON) for member weights, drains and discovered
//! addresses, and posts client RTT aggregates (`POST /api/v1/rtt`). With no node
//! reachable it keeps the last state it had (static stability) and tries the next node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Shared;

/// Follows the store until the process ends, failing over between `nodes`.
pub async fn follow(nodes: Vec<SocketAddr>, shared: Arc<Shared>) {
    let mut from: Option<u64> = None;
    let mut current = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        let node = nodes[current % nodes.len()];
        match watch_once(node, &mut from, &shared).await {
            Ok(()) => tracing::info!(%node, "state stream ended; reconnecting"),
            Err(e) => {
                tracing::warn!(%node, error = %e, "state stream lost; keeping the last state")
            }
        }
        shared.metrics.store_connected.store(0, Ordering::Relaxed);
        current += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn watch_once(
    node: SocketAddr,
    from: &mut Option<u64>,
    shared: &Shared,
) -> std::io::Result<()> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(node))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
    // The stream is quiet while nothing changes: keepalive notices a peer that vanished.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let mut stream = BufReader::new(stream);
    let path = match from {
        // Resume: the node sends the first state newer than what we have.
        Some(index) => format!("/api/v1/watch?from={index}"),
        None => "/api/v1/watch".to_string(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {node}\r\nAccept: application/x-ndjson\r\n{}\r\n",
        authorization(shared)
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "watch answered {}",
            line.trim_end()
        )));
    }
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if header.starts_with("transfer-encoding:") && header.ends_with("chunked") {
            chunked = true;
        }
    }
    shared.metrics.store_connected.store(1, Ordering::Relaxed);
    let mut pending = Vec::new();
    loop {
        let data = if chunked {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                return Ok(());
            }
            if size > 64 * 1024 * 1024 {
                return Err(std::io::Error::other("chunk too large"));
            }
            let mut data = vec![0u8; size + 2];
            stream.read_exact(&mut data).await?;
            data.truncate(size);
            data
        } else {
            let mut data = vec![0u8; 64 * 1024];
            let n = stream.read(&mut data).await?;
            if n == 0 {
                return Ok(());
            }
            data.truncate(n);
            data
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(update) = serde_json::from_slice::<serde_json::Value>(&line) else {
                tracing::warn!("unreadable line on the state stream");
                continue;
            };
            if let Some(index) = update.get("index").and_then(|i| i.as_u64()) {
                *from = Some(index);
                shared.metrics.store_index.store(index, Ordering::Relaxed);
            }
            shared.metrics.store_updates.fetch_add(1, Ordering::Relaxed);
            if let Some(state) = update.get("state") {
                let changed = shared.pools.apply_state(state);
                if changed > 0 {
                    tracing::info!(changed, index = ?*from, "member state from the store applied");
                }
            }
        }
    }
}

/// Posts RTT aggregates every `every` to the first node that takes them.
pub async fn post_rtt(nodes: Vec<SocketAddr>, every: Duration, shared: Arc<Shared>) {
    let mut current = 0usize;
    loop {
        tokio::time::sleep(every).await;
        let Some(report) = shared.rtt.take_report(&shared.pools.site) else {
            continue;
        };
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let mut delivered = false;
        for attempt in 0..nodes.len() {
            let node = nodes[(current + attempt) % nodes.len()];
            if post(node, "/api/v1/rtt", &body, &authorization(&shared))
                .await
                .is_ok_and(|status| status == 200)
            {
                current = (current + attempt) % nodes.len();
                delivered = true;
                break;
            }
        }
        let counter = if delivered {
            &shared.metrics.rtt_posts
        } else {
            &shared.metrics.rtt_post_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One JSON POST; the response's status code.
/// The `Authorization` header line for the store's API, or nothing.
fn authorization(shared: &Shared) -> String {
    shared
        .api_token
        .as_ref()
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default()
}

async fn post(
    node: SocketAddr,
    path: &str,
    body: &[u8],
    authorization: &str,
) -> std::io::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(node).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {node}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{authorization}Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).await?;
        std::str::from_utf8(&status[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout"))?
}
