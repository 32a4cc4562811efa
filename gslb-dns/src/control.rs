//! The publisher of the node's answers. The replicated store's applied machine, the GeoIP
//! database and the store's health (degraded or not) come in here; every change builds a new
//! [`Snapshot`] off the query path and publishes it with `ArcSwap`.
//!
//! Static stability: while the store is degraded (no quorum), staleness is evaluated at the
//! moment quorum was lost, so sites whose reports this node can no longer see are not failed;
//! the node keeps answering from its last applied state.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use geoip_data::GeoDb;
use state_store::Machine;
use topology::{ClassTable, Deployment, Timestamp};

use crate::dns::zone::{ZoneData, ZoneError};
use crate::snapshot::{AnswerTable, Snapshot, StoreView, build_classes};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("GeoIP database: {0}")]
    Geoip(#[from] geoip_data::GeoError),
    #[error("zone: {0}")]
    Zone(#[from] ZoneError),
}

struct Inner {
    machine: Arc<Machine>,
    store: StoreView,
    geo: Arc<GeoDb>,
    classes: Arc<ClassTable>,
    generation: u64,
}

/// Builds and publishes snapshots.
pub struct Control {
    deployment: Arc<Deployment>,
    zone: Arc<ZoneData>,
    inner: Mutex<Inner>,
    published: Arc<ArcSwap<Snapshot>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// Encodes the zone, builds the client classes and publishes the first snapshot (from
    /// an empty machine: every member as configured, statically up without a check).
    pub fn new(
        deployment: Arc<Deployment>,
        geo: Arc<GeoDb>,
        now: Timestamp,
    ) -> Result<Control, StartError> {
        let zone = Arc::new(ZoneData::build(&deployment)?);
        let classes = Arc::new(build_classes(&deployment, &geo, &Default::default())?);
        let mut inner = Inner {
            machine: Arc::new(Machine::default()),
            store: StoreView::default(),
            geo,
            classes,
            generation: 0,
        };
        let snapshot = build(&deployment, &zone, &mut inner, now);
        Ok(Control {
            deployment,
            zone,
            inner: Mutex::new(inner),
            published: Arc::new(ArcSwap::from_pointee(snapshot)),
        })
    }

    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.deployment
    }

    /// The published snapshot cell, for the DNS workers.
    pub fn published(&self) -> Arc<ArcSwap<Snapshot>> {
        self.published.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, inner: &mut Inner, now: Timestamp) {
        let snapshot = build(&self.deployment, &self.zone, inner, now);
        self.published.store(Arc::new(snapshot));
    }

    /// Publishes answers from a newly applied machine.
    pub fn apply_machine(&self, machine: Arc<Machine>, now: Timestamp) {
        let mut inner = self.lock();
        inner.store.applied = machine.applied;
        // New RTT samples change the `latency` classes: rebuild the class table.
        if !Arc::ptr_eq(&inner.machine.rtt, &machine.rtt) {
            match build_classes(&self.deployment, &inner.geo, &machine.rtt) {
                Ok(classes) => inner.classes = Arc::new(classes),
                Err(e) => {
                    tracing::warn!(error = %e, "client classes not rebuilt for new RTT samples")
                }
            }
        }
        inner.machine = machine;
        self.publish(&mut inner, now);
    }

    /// Records the store's health; a change of `degraded` republishes.
    pub fn set_store(&self, view: StoreView, now: Timestamp) {
        let mut inner = self.lock();
        let changed = inner.store.degraded_since != view.degraded_since;
        inner.store = StoreView {
            applied: inner.store.applied,
            ..view
        };
        if changed {
            if let Some(since) = view.degraded_since {
                tracing::warn!(
                    since_ms = since.0,
                    "store degraded: answering from the last applied state"
                );
            } else {
                tracing::info!("store quorum back");
            }
            self.publish(&mut inner, now);
        }
    }

    /// Switches to a new GeoIP database (the client classes are rebuilt).
    pub fn set_geo(&self, geo: Arc<GeoDb>, now: Timestamp) -> Result<(), geoip_data::GeoError> {
        let mut inner = self.lock();
        let classes = Arc::new(build_classes(&self.deployment, &geo, &inner.machine.rtt)?);
        inner.geo = geo;
        inner.classes = classes;
        self.publish(&mut inner, now);
        Ok(())
    }

    /// Rebuilds the answers for `now` (a site's telemetry may have turned stale).
    pub fn refresh(&self, now: Timestamp) {
        let mut inner = self.lock();
        self.publish(&mut inner, now);
    }

    /// When the answers must next be rebuilt because telemetry turns stale (never while
    /// degraded: staleness is frozen then).
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let snapshot = self.snapshot();
        if snapshot.store.degraded_since.is_some() {
            return None;
        }
        crate::snapshot::next_staleness_deadline(&self.deployment, &snapshot.state, now)
    }

    /// The applied machine the current answers come from.
    pub fn machine(&self) -> Arc<Machine> {
        self.lock().machine.clone()
    }
}

fn build(
    deployment: &Arc<Deployment>,
    zone: &Arc<ZoneData>,
    inner: &mut Inner,
    now: Timestamp,
) -> Snapshot {
    inner.generation += 1;
    // Staleness frozen at the moment quorum was lost.
    let evaluated_at = inner
        .store
        .degraded_since
        .map_or(now, |since| since.min(now));
    let state = inner.machine.state(deployment);
    Snapshot {
        generation: inner.generation,
        built_at: evaluated_at,
        answers: AnswerTable::build(deployment, &state, &inner.classes, evaluated_at),
        deployment: deployment.clone(),
        state: Arc::new(state),
        classes: inner.classes.clone(),
        geo: inner.geo.clone(),
        zone: zone.clone(),
        store: inner.store.clone(),
    }
}
