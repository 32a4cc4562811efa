//! The proxy's Prometheus counters: connections, bytes, requests by status, upstream errors
//! by kind, routes chosen, per member outstanding work, weight and ejections, and the store
//! link. Every listener owns its counters ([`ListenerMetrics`], made once at start), so
//! counting a connection or a request formats and allocates nothing; the label text is
//! written only when `/metrics` is read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backends::Pools;

/// The counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    pub name: String,
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub active: AtomicU64,
    /// Client to member.
    pub bytes_up: AtomicU64,
    /// Member to client.
    pub bytes_down: AtomicU64,
    requests: Mutex<BTreeMap<u16, u64>>,
    routes: Mutex<BTreeMap<String, u64>>,
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    client_errors: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert(0) += 1;
}

impl ListenerMetrics {
    pub fn add(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// An S3 response with this status.
    pub fn request(&self, status: u16) {
        bump(&self.requests, status);
    }

    /// A request or connection sent to this service's pool (no allocation once the
    /// service has been seen).
    pub fn route(&self, service: &str) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        match routes.get_mut(service) {
            Some(count) => *count += 1,
            None => {
                routes.insert(service.to_owned(), 1);
            }
        }
    }

    pub fn upstream_error(&self, kind: &'static str) {
        bump(&self.upstream_errors, kind);
    }

    pub fn client_error(&self, kind: &'static str) {
        bump(&self.client_errors, kind);
    }
}

/// All counters of the proxy.
#[derive(Debug, Default)]
pub struct Metrics {
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
    /// Gauges of the store link.
    pub store_connected: AtomicU64,
    pub store_index: AtomicU64,
    pub store_updates: AtomicU64,
    pub rtt_posts: AtomicU64,
    pub rtt_post_failures: AtomicU64,
}

/// Writes one family: its HELP and TYPE lines, then a sample per (labels, value).
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let kind = if name.ends_with("_total") {
        "counter"
    } else {
        "gauge"
    };
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

impl Metrics {
    /// The counters of listener `name` (made at start, before any traffic).
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let metrics = Arc::new(ListenerMetrics {
            name: name.to_owned(),
            ..ListenerMetrics::default()
        });
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(metrics.clone());
        metrics
    }

    pub fn render(&self, pools: &Pools) -> String {
        let mut out = String::new();
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let each = |value: &dyn Fn(&ListenerMetrics) -> u64| -> Vec<(String, u64)> {
            listeners
                .iter()
                .map(|l| (format!("listener=\"{}\"", l.name), value(l)))
                .collect()
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        family(
            &mut out,
            "portico_proxy_connections_total",
            "Client connections accepted.",
            each(&|l| load(&l.connections)),
        );
        family(
            &mut out,
            "portico_proxy_connections_refused_total",
            "Client connections refused at max_connections.",
            each(&|l| load(&l.refused)),
        );
        family(
            &mut out,
            "portico_proxy_active_connections",
            "Client connections open now.",
            each(&|l| load(&l.active)),
        );
        let bytes = listeners.iter().flat_map(|l| {
            [
                (
                    format!("listener=\"{}\",direction=\"upstream\"", l.name),
                    load(&l.bytes_up),
                ),
                (
                    format!("listener=\"{}\",direction=\"downstream\"", l.name),
                    load(&l.bytes_down),
                ),
            ]
        });
        family(
            &mut out,
            "portico_proxy_bytes_total",
            "Bytes forwarded, by direction (upstream: client to member).",
            bytes,
        );
        let keyed = |pick: &dyn Fn(&ListenerMetrics) -> Vec<(String, u64)>,
                     label: &str|
         -> Vec<(String, u64)> {
            listeners
                .iter()
                .flat_map(|l| {
                    pick(l)
                        .into_iter()
                        .map(|(key, value)| {
                            (format!("listener=\"{}\",{label}=\"{key}\"", l.name), value)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        fn snapshot<K: ToString>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(String, u64)> {
            map.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        }
        family(
            &mut out,
            "portico_proxy_requests_total",
            "S3 requests answered, by status code.",
            keyed(&|l| snapshot(&l.requests), "code"),
        );
        family(
            &mut out,
            "portico_proxy_upstream_errors_total",
            "Failures talking to members, by kind.",
            keyed(&|l| snapshot(&l.upstream_errors), "kind"),
        );
        family(
            &mut out,
            "portico_proxy_routes_total",
            "Requests and connections by the service (pool) chosen.",
            keyed(&|l| snapshot(&l.routes), "service"),
        );
        family(
            &mut out,
            "portico_proxy_client_errors_total",
            "Requests rejected for the client's fault, by kind.",
            keyed(&|l| snapshot(&l.client_errors), "kind"),
        );
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
            family(&mut out, name, help, [(String::new(), load(value))]);
        }
        let mut members: Vec<_> = pools.all().collect();
        members.sort_by(|a, b| (&a.service, &a.node).cmp(&(&b.service, &b.node)));
        let per_member = |value: &dyn Fn(&crate::backends::Backend) -> u64| -> Vec<(String, u64)> {
            members
                .iter()
                .map(|m| {
                    (
                        format!("service=\"{}\",member=\"{}\"", m.service, m.node),
                        value(m),
                    )
                })
                .collect()
        };
        family(
            &mut out,
            "portico_proxy_member_weight",
            "Weight for new work (0: drained, down or ejected).",
            per_member(&|m| u64::from(m.weight(&pools.clock))),
        );
        family(
            &mut out,
            "portico_proxy_member_outstanding",
            "Requests or connections in flight.",
            per_member(&|m| u64::from(m.outstanding.load(Ordering::Relaxed))),
        );
        family(
            &mut out,
            "portico_proxy_ejections_total",
            "Members ejected by passive failure detection.",
            per_member(&|m| m.ejections.load(Ordering::Relaxed)),
        );
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
