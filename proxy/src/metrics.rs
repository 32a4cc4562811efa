//! The proxy's Prometheus counters: connections, bytes, requests by status, upstream errors
//! by kind, routes chosen, per member outstanding work and state, and the store link.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backends::Pools;

/// Counters keyed by (family, labels). A lock per update is cheap next to a request or a
/// connection, the units counted here (bytes are added once per connection or request).
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Gauges of the store link.
    pub store_connected: AtomicU64,
    pub store_index: AtomicU64,
    pub store_updates: AtomicU64,
    pub rtt_posts: AtomicU64,
    pub rtt_post_failures: AtomicU64,
}

/// Counter families: name and help.
const FAMILIES: &[(&str, &str)] = &[
    (
        "portico_proxy_connections_total",
        "Client connections accepted.",
    ),
    (
        "portico_proxy_connections_refused_total",
        "Client connections refused at max_connections or while draining.",
    ),
    (
        "portico_proxy_active_connections",
        "Client connections open now.",
    ),
    (
        "portico_proxy_bytes_total",
        "Bytes forwarded, by direction (upstream: client to member).",
    ),
    (
        "portico_proxy_requests_total",
        "S3 requests answered, by status code.",
    ),
    (
        "portico_proxy_upstream_errors_total",
        "Failures talking to members, by kind.",
    ),
    (
        "portico_proxy_routes_total",
        "Requests and connections by the service (pool) chosen.",
    ),
    (
        "portico_proxy_client_errors_total",
        "Requests rejected for the client's fault, by kind.",
    ),
    (
        "portico_proxy_ejections_total",
        "Members ejected by passive failure detection.",
    ),
];

impl Metrics {
    pub fn add(&self, family: &'static str, labels: String, by: u64) {
        debug_assert!(FAMILIES.iter().any(|(name, _)| *name == family));
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.entry((family, labels)).or_insert(0) += by;
    }

    pub fn sub(&self, family: &'static str, labels: String, by: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let value = counters.entry((family, labels)).or_insert(0);
        *value = value.saturating_sub(by);
    }

    pub fn render(&self, pools: &Pools) -> String {
        let mut out = String::new();
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (family, help) in FAMILIES {
            let kind = if family.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for ((name, labels), value) in &counters {
                if name == family {
                    let _ = writeln!(out, "{family}{{{labels}}} {value}");
                }
            }
        }
        let gauges: [(&str, &str, &AtomicU64); 5] = [
            (
                "portico_proxy_store_connected",
                "Whether the state stream from the store is connected (1) or not (0).",
                &self.store_connected,
            ),
            (
                "portico_proxy_store_index",
                "The store index of the last state applied.",
                &self.store_index,
            ),
            (
                "portico_proxy_store_updates_total",
                "States received from the store.",
                &self.store_updates,
            ),
            (
                "portico_proxy_rtt_posts_total",
                "RTT aggregates posted to the store.",
                &self.rtt_posts,
            ),
            (
                "portico_proxy_rtt_post_failures_total",
                "RTT posts no store node took.",
                &self.rtt_post_failures,
            ),
        ];
        for (name, help, value) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portico_proxy_member_weight Weight for new work (0: drained, down or ejected).\n# TYPE portico_proxy_member_weight gauge"
        );
        let mut members: Vec<_> = pools.all().collect();
        members.sort_by(|a, b| (&a.service, &a.node).cmp(&(&b.service, &b.node)));
        for m in &members {
            let _ = writeln!(
                out,
                "portico_proxy_member_weight{{service=\"{}\",member=\"{}\"}} {}",
                m.service,
                m.node,
                m.weight(&pools.clock)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portico_proxy_member_outstanding Requests or connections in flight.\n# TYPE portico_proxy_member_outstanding gauge"
        );
        for m in &members {
            let _ = writeln!(
                out,
                "portico_proxy_member_outstanding{{service=\"{}\",member=\"{}\"}} {}",
                m.service,
                m.node,
                m.outstanding.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Serves `GET /metrics` (anything else: 404) until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, shared: std::sync::Arc<crate::Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let mut len = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < request.len() && !request[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut request[len..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => len += n,
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let (status, body) = if request.starts_with(b"GET /metrics ") {
                ("200 OK", shared.metrics.render(&shared.pools))
            } else {
                ("404 Not Found", "only /metrics here\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds the metrics listener (before anything else runs, so a taken port fails startup).
pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
