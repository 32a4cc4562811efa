//! The proxy's Prometheus counters: connections, bytes, requests by status, upstream errors
//! by kind, routes chosen, per member outstanding work, weight and ejections, and the store
//! link. Every listener owns its counters ([`ListenerMetrics`], made once at start), so
//! counting a connection or a request formats and allocates nothing; the label text is
//! written only when `/metrics` is read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use topology::exposition::{Exposition, Kind, PerItem};

use crate::pipes::PipePool;
use crate::upstreams::{Clock, Member, Upstreams};

/// The counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    pub name: String,
    pub connections: AtomicU64,
    /// Refused at the listener's `max_connections`.
    pub refused: AtomicU64,
    /// Refused at the listener's `max_per_client`.
    pub refused_per_client: AtomicU64,
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

/// A per-listener family keyed by one label: name, help, the label, the (key, value) pairs.
type Keyed<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&ListenerMetrics) -> Vec<(String, u64)>,
);

/// All counters of the proxy.
#[derive(Debug, Default)]
pub struct Metrics {
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
    /// Gauges of the store link.
    pub store_connected: AtomicU64,
    pub store_index: AtomicU64,
    pub store_updates: AtomicU64,
    /// Lines of the state stream this build could not read (each left the last state in
    /// place).
    pub store_undecodable: AtomicU64,
    pub rtt_posts: AtomicU64,
    pub rtt_post_failures: AtomicU64,
    /// Ejections reported to the store, reports no node took, ejections not queued.
    pub passive_reports: AtomicU64,
    pub passive_report_failures: AtomicU64,
    pub passive_reports_dropped: AtomicU64,
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

    /// The page, with the members of `upstreams` as of `clock`.
    pub fn render(&self, upstreams: &Upstreams, clock: &Clock, pipes: &PipePool) -> String {
        let mut out = Exposition::new();
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let refused = "portico_proxy_connections_refused_total";
        out.family(
            refused,
            Kind::Counter,
            "Client connections refused, by the limit reached (max_connections, max_per_client).",
        );
        for l in &listeners {
            for (reason, value) in [("limit", &l.refused), ("per_client", &l.refused_per_client)] {
                out.sample(
                    refused,
                    &[("listener", &l.name), ("reason", reason)],
                    load(value),
                );
            }
        }
        let per_listener: [PerItem<ListenerMetrics>; 2] = [
            (
                "portico_proxy_connections_total",
                Kind::Counter,
                "Client connections accepted.",
                &|l| load(&l.connections),
            ),
            (
                "portico_proxy_active_connections",
                Kind::Gauge,
                "Client connections open now.",
                &|l| load(&l.active),
            ),
        ];
        for (name, kind, help, value) in per_listener {
            out.family(name, kind, help);
            for listener in &listeners {
                out.sample(name, &[("listener", &listener.name)], value(listener));
            }
        }
        let bytes = "portico_proxy_bytes_total";
        out.family(
            bytes,
            Kind::Counter,
            "Bytes forwarded, by direction (upstream: client to member).",
        );
        for l in &listeners {
            out.sample(
                bytes,
                &[("listener", &l.name), ("direction", "upstream")],
                load(&l.bytes_up),
            );
            out.sample(
                bytes,
                &[("listener", &l.name), ("direction", "downstream")],
                load(&l.bytes_down),
            );
        }
        fn entries<K: ToString>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(String, u64)> {
            map.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        }
        let keyed: [Keyed; 4] = [
            (
                "portico_proxy_requests_total",
                "S3 requests answered, by status code.",
                "code",
                &|l| entries(&l.requests),
            ),
            (
                "portico_proxy_upstream_errors_total",
                "Failures talking to members, by kind.",
                "kind",
                &|l| entries(&l.upstream_errors),
            ),
            (
                "portico_proxy_routes_total",
                "Requests and connections by the service (pool) chosen.",
                "service",
                &|l| entries(&l.routes),
            ),
            (
                "portico_proxy_client_errors_total",
                "Requests rejected for the client's fault, by kind.",
                "kind",
                &|l| entries(&l.client_errors),
            ),
        ];
        for (name, help, label, values) in keyed {
            out.family(name, Kind::Counter, help);
            for l in &listeners {
                for (key, value) in values(l) {
                    out.sample(name, &[("listener", &l.name), (label, &key)], value);
                }
            }
        }
        for (name, kind, help, value) in [
            (
                "portico_proxy_store_connected",
                Kind::Gauge,
                "Whether the state stream from the store is connected (1) or not (0).",
                &self.store_connected,
            ),
            (
                "portico_proxy_store_index",
                Kind::Gauge,
                "The store index of the last state applied.",
                &self.store_index,
            ),
            (
                "portico_proxy_store_updates_total",
                Kind::Counter,
                "States received from the store and applied.",
                &self.store_updates,
            ),
            (
                "portico_proxy_store_undecodable_total",
                Kind::Counter,
                "States from the store this build could not read (the last state stays).",
                &self.store_undecodable,
            ),
            (
                "portico_proxy_rtt_posts_total",
                Kind::Counter,
                "RTT aggregates posted to the store.",
                &self.rtt_posts,
            ),
            (
                "portico_proxy_rtt_post_failures_total",
                Kind::Counter,
                "RTT posts no store node took.",
                &self.rtt_post_failures,
            ),
            (
                "portico_proxy_passive_reports_total",
                Kind::Counter,
                "Reports of ejected members the store took.",
                &self.passive_reports,
            ),
            (
                "portico_proxy_passive_report_failures_total",
                Kind::Counter,
                "Reports of ejected members no store node took, or the store refused (the local ejection holds).",
                &self.passive_report_failures,
            ),
            (
                "portico_proxy_passive_reports_dropped_total",
                Kind::Counter,
                "Ejections not reported because the queue to the store was full.",
                &self.passive_reports_dropped,
            ),
        ] {
            out.single(name, kind, help, load(value));
        }
        out.single(
            "portico_proxy_pipes",
            Kind::Gauge,
            "Splice pipes that exist now (lent to sessions or idle in the pool).",
            pipes.live() as u64,
        );
        out.single(
            "portico_proxy_pipes_lent",
            Kind::Gauge,
            "Splice pipes holding a session's bytes now.",
            pipes.lent() as u64,
        );
        out.single(
            "portico_proxy_pipes_max",
            Kind::Gauge,
            "Splice pipes the pool may make (its budget under the kernel's per-user limit).",
            pipes.max_pipes() as u64,
        );
        out.single(
            "portico_proxy_pipe_size_bytes",
            Kind::Gauge,
            "The size of the last pipe made, as the kernel granted it (F_GETPIPE_SZ).",
            pipes.granted.load(Ordering::Relaxed) as u64,
        );
        out.single(
            "portico_proxy_copied_chunks_total",
            Kind::Counter,
            "Chunks of L4 sessions copied through a buffer because no pipe was to be had.",
            load(&pipes.copied_chunks),
        );
        out.single(
            "portico_proxy_pipes_undersized_total",
            Kind::Counter,
            "Pipes the kernel made smaller than 64 KiB (a per-user pipe limit), closed unused.",
            load(&pipes.undersized),
        );
        let mut members: Vec<_> = upstreams.members().collect();
        members.sort_by(|a, b| (&a.service, &a.node).cmp(&(&b.service, &b.node)));
        let now = clock.millis();
        let per_member: [PerItem<Member>; 3] = [
            (
                "portico_proxy_member_weight",
                Kind::Gauge,
                "Weight for new work (0: drained, down or ejected).",
                &|m| u64::from(m.weight_at(now)),
            ),
            (
                "portico_proxy_member_outstanding",
                Kind::Gauge,
                "Requests or connections in flight.",
                &|m| u64::from(m.live.outstanding.load(Ordering::Relaxed)),
            ),
            (
                "portico_proxy_ejections_total",
                Kind::Counter,
                "Members ejected by passive failure detection.",
                &|m| m.live.ejections.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in per_member {
            out.family(name, kind, help);
            for m in &members {
                out.sample(
                    name,
                    &[("service", &m.service), ("member", &m.node)],
                    value(m),
                );
            }
        }
        out.finish()
    }
}

/// Binds the metrics listener (before anything else runs, so a taken port fails startup).
pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `GET /metrics` with `render`'s page until the runtime stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    portico_client::process::serve_metrics(listener, render).await;
}
