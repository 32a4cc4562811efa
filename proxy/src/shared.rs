//! What every listener and task of the proxy shares: the current [`Upstreams`] snapshot,
//! the counters, the RTT table, the drain signal and the open sessions; and the accept loop
//! both kinds of listener run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use topology::per_address::PerAddress;
use topology::wire::PassiveObservation;

use crate::metrics::{ListenerMetrics, Metrics};
use crate::rtt::RttTable;
use crate::upstreams::{Clock, Member, ServicePorts, Upstreams};

/// What every listener and task of the proxy shares.
#[derive(Debug)]
pub struct Shared {
    /// The site whose members this proxy forwards to.
    pub site: String,
    /// The services it forwards to, with their member ports.
    pub services: Vec<ServicePorts>,
    /// The members, as of the store's latest state (or the file, before it speaks).
    pub upstreams: ArcSwap<Upstreams>,
    pub clock: Clock,
    /// Passive detection: this many consecutive failures eject a member for `eject_for`.
    pub eject_after: u32,
    pub eject_for: Duration,
    pub metrics: Metrics,
    pub rtt: RttTable,
    /// Becomes true on SIGTERM/SIGINT: listeners stop accepting, keep-alive ends.
    pub draining: watch::Receiver<bool>,
    pub sessions: Sessions,
    pub access_log: bool,
    /// The pipes L4 sessions splice through.
    pub pipes: crate::pipes::PipePool,
    /// Where ejections go to be reported to the store (none: not reported).
    pub passive: Option<tokio::sync::mpsc::Sender<PassiveObservation>>,
}

impl Shared {
    /// A member failed to connect or answer: counted, and ejected after enough in a row.
    pub fn upstream_failure(
        &self,
        listener: &ListenerMetrics,
        member: &Member,
        kind: &'static str,
    ) {
        listener.upstream_error(kind);
        if member.failed(self.clock.millis(), self.eject_after, self.eject_for) {
            tracing::warn!(member = %member.node, service = %member.service, kind, "member ejected after repeated failures");
            if let Some(passive) = &self.passive {
                let observation = PassiveObservation {
                    service: member.service.clone(),
                    node: member.node.clone(),
                    reason: format!("{} failures in a row: {kind}", self.eject_after),
                };
                // Bounded: with the poster behind, a report is dropped (the local ejection
                // stands, and the next failures report again).
                if passive.try_send(observation).is_err() {
                    self.metrics
                        .passive_reports_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Open client sessions, so a drain can wait for them.
#[derive(Debug, Default)]
pub struct Sessions {
    open: AtomicUsize,
    closed: Notify,
}

pub struct SessionGuard<'a>(&'a Sessions);

impl Sessions {
    pub fn enter(&self) -> SessionGuard<'_> {
        self.open.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until every session has ended, or `deadline`.
    pub async fn drained(&self, deadline: tokio::time::Instant) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open() == 0 || tokio::time::timeout_at(deadline, closed).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

/// Accepts until the proxy drains: at most `max_connections` open at once, and
/// `max_per_client` from one address (a connection over either goes to `refuse`), each
/// served by its own task from `serve`, counted as a session so a drain can wait for it.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    (max_connections, max_per_client): (usize, usize),
    shared: Arc<Shared>,
    metrics: Arc<ListenerMetrics>,
    refuse: impl Fn(tokio::net::TcpStream),
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let per_client = PerAddress::new(max_per_client);
    let mut draining = shared.draining.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = draining.wait_for(|d| *d) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(listener = %metrics.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ListenerMetrics::add(&metrics.refused, 1);
            refuse(stream);
            continue;
        };
        let Some(client_slot) = PerAddress::enter(&per_client, peer.ip()) else {
            ListenerMetrics::add(&metrics.refused_per_client, 1);
            refuse(stream);
            continue;
        };
        ListenerMetrics::add(&metrics.connections, 1);
        let _ = stream.set_nodelay(true);
        let session = serve(stream, peer);
        let shared = shared.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _session = shared.sessions.enter();
            metrics.active.fetch_add(1, Ordering::Relaxed);
            session.await;
            metrics.active.fetch_sub(1, Ordering::Relaxed);
            drop((permit, client_slot));
        });
    }
}
