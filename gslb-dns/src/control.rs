//! The publisher of the node's answers. The replicated store's applied machine (with the
//! deployment it holds), the GeoIP database and the store's health (degraded or not) come
//! in here; every change builds a new [`Snapshot`] off the query path and publishes it with
//! `ArcSwap`. A new deployment version re-encodes the zone and rebuilds the client classes
//! first, so the switch is one swap: every query sees the old deployment or the new one.
//!
//! Until the store holds a deployment (a new cluster before its seed applies), answers come
//! from this node's own file (version 0).
//!
//! Static stability: while the store is degraded (no quorum), staleness is evaluated at the
//! moment quorum was lost, so sites whose reports this node can no longer see are not failed;
//! the node keeps answering from its last applied state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use geoip_data::GeoDb;
use state_store::Machine;
use tokio::sync::watch;
use topology::wire::views::StoreView;
use topology::{BaseClasses, ClassTable, Deployment, DnsSettings, Timestamp};

use crate::dns::counters::Counters;
use crate::dns::snapshot::{
    AnswerTable, Snapshot, build_base_classes, measured_classes, next_rtt_expiry,
};
use crate::dns::zone::{ZoneData, ZoneError};

/// Why a deployment cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("GeoIP database: {0}")]
    Geoip(#[from] geoip_data::GeoError),
    #[error("zone: {0}")]
    Zone(#[from] ZoneError),
}

/// A deployment made ready to serve: the zone encoded, the client classes built.
struct Served {
    deployment: Arc<Deployment>,
    version: u64,
    zone: Arc<ZoneData>,
    /// The classes of the GeoIP and site networks: rebuilt only for a new deployment or a
    /// new database.
    base: Arc<BaseClasses>,
    /// `base` with the fresh RTT samples over it.
    classes: Arc<ClassTable>,
    /// When an RTT sample `classes` uses expires (they are rebuilt then).
    rtt_expiry: Option<Timestamp>,
}

struct Inner {
    machine: Arc<Machine>,
    store: StoreView,
    geo: Arc<GeoDb>,
    served: Served,
    generation: u64,
}

/// Builds and publishes snapshots.
pub struct Control {
    /// This node's file's deployment: served until the store has one.
    local: Arc<Deployment>,
    dns: Arc<DnsSettings>,
    counters: Arc<Counters>,
    inner: Mutex<Inner>,
    published: Arc<ArcSwap<Snapshot>>,
    /// The applied index of the published answers.
    applied: watch::Sender<u64>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// Encodes `deployment`'s zone and builds its client classes (GeoIP and site networks).
pub fn prepare(
    deployment: &Deployment,
    dns: &DnsSettings,
    geo: &GeoDb,
) -> Result<(ZoneData, BaseClasses), BuildError> {
    Ok((
        ZoneData::build(deployment, dns)?,
        build_base_classes(deployment, geo)?,
    ))
}

impl Served {
    fn new(
        deployment: Arc<Deployment>,
        version: u64,
        zone: ZoneData,
        base: Arc<BaseClasses>,
        dns: &DnsSettings,
        machine: &Machine,
        now: Timestamp,
    ) -> Served {
        let (classes, rtt_expiry) = measured(&base, &deployment, dns, machine, now);
        Served {
            classes,
            rtt_expiry,
            base,
            deployment,
            version,
            zone: Arc::new(zone),
        }
    }

    /// Lays the RTT samples fresh at `now` over the base classes.
    fn measure(&mut self, dns: &DnsSettings, machine: &Machine, now: Timestamp) {
        (self.classes, self.rtt_expiry) = measured(&self.base, &self.deployment, dns, machine, now);
    }
}

/// `base` with the RTT samples fresh at `now` over it, and when the next of them expires.
fn measured(
    base: &Arc<BaseClasses>,
    deployment: &Deployment,
    dns: &DnsSettings,
    machine: &Machine,
    now: Timestamp,
) -> (Arc<ClassTable>, Option<Timestamp>) {
    (
        Arc::new(measured_classes(
            base,
            deployment,
            &machine.rtt,
            now,
            dns.rtt_max_age,
        )),
        next_rtt_expiry(&machine.rtt, now, dns.rtt_max_age),
    )
}

impl Control {
    /// Prepares `local` (the node's file) and publishes the first snapshot from an empty
    /// machine: every member as configured, statically up without a check.
    pub fn new(
        local: Arc<Deployment>,
        dns: Arc<DnsSettings>,
        geo: Arc<GeoDb>,
        counters: Arc<Counters>,
        now: Timestamp,
    ) -> Result<Control, BuildError> {
        let machine = Arc::new(Machine::default());
        let (zone, base) = prepare(&local, &dns, &geo)?;
        let mut inner = Inner {
            served: Served::new(local.clone(), 0, zone, Arc::new(base), &dns, &machine, now),
            machine,
            store: StoreView::default(),
            geo,
            generation: 0,
        };
        let snapshot = build(&dns, &counters, &mut inner, now);
        Ok(Control {
            local,
            dns,
            counters,
            inner: Mutex::new(inner),
            published: Arc::new(ArcSwap::from_pointee(snapshot)),
            applied: watch::channel(0).0,
        })
    }

    /// The deployment of this node's own file.
    pub fn local_deployment(&self) -> &Arc<Deployment> {
        &self.local
    }

    pub fn dns_settings(&self) -> &Arc<DnsSettings> {
        &self.dns
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
        let snapshot = build(&self.dns, &self.counters, inner, now);
        let applied = snapshot.store.applied;
        self.published.store(Arc::new(snapshot));
        self.applied.send_if_modified(|current| {
            let newer = applied > *current;
            *current = applied.max(*current);
            newer
        });
    }

    /// Publishes answers from a newly applied machine (and its deployment, if new).
    pub fn apply_machine(&self, machine: Arc<Machine>, now: Timestamp) {
        let mut inner = self.lock();
        inner.store.applied = machine.applied;
        let deployment = machine.deployment().cloned();
        let new_deployment = deployment
            .as_ref()
            .is_some_and(|d| !Arc::ptr_eq(d, &inner.served.deployment));
        let new_rtt = !Arc::ptr_eq(&inner.machine.rtt, &machine.rtt);
        let at = evaluation_time(&inner.store, now);
        if new_deployment {
            let deployment = deployment.expect("checked above");
            // Client classes depend on the sites alone: a new version with the same sites
            // (the store's copy of this node's own file, a service change) keeps them.
            let prepared = if deployment.sites == inner.served.deployment.sites {
                ZoneData::build(&deployment, &self.dns)
                    .map(|zone| (zone, None))
                    .map_err(BuildError::from)
            } else {
                prepare(&deployment, &self.dns, &inner.geo).map(|(zone, base)| (zone, Some(base)))
            };
            match prepared {
                Ok((zone, base)) => {
                    tracing::info!(
                        version = machine.version(),
                        index = machine.applied,
                        "answering from a new deployment version"
                    );
                    let base = base.map_or_else(|| inner.served.base.clone(), Arc::new);
                    inner.served = Served::new(
                        deployment,
                        machine.version(),
                        zone,
                        base,
                        &self.dns,
                        &machine,
                        at,
                    );
                }
                // Validated before it was proposed; if this node still cannot serve it (a
                // GeoIP database gone bad, say), it keeps the deployment it has.
                Err(e) => tracing::error!(
                    version = machine.version(),
                    error = %e,
                    "cannot serve the store's deployment; answering from the previous one"
                ),
            }
        } else if new_rtt {
            // New RTT samples change the `latency` classes; the GeoIP classes stay.
            inner.served.measure(&self.dns, &machine, at);
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
        // Built before the lock is taken: health changes are not held up by a database walk.
        let deployment = self.lock().served.deployment.clone();
        let base = Arc::new(build_base_classes(&deployment, &geo)?);
        let mut inner = self.lock();
        if inner.served.deployment.sites != deployment.sites {
            // A deployment with other sites arrived meanwhile: its classes come from the
            // new database too (rare; built under the lock).
            let rebuilt = Arc::new(build_base_classes(&inner.served.deployment, &geo)?);
            inner.served.base = rebuilt;
        } else {
            inner.served.base = base;
        }
        inner.geo = geo;
        let (machine, at) = (inner.machine.clone(), evaluation_time(&inner.store, now));
        inner.served.measure(&self.dns, &machine, at);
        self.publish(&mut inner, now);
        Ok(())
    }

    /// Rebuilds the answers for `now` (a site's telemetry may have turned stale, an RTT
    /// sample may have expired).
    pub fn refresh(&self, now: Timestamp) {
        let mut inner = self.lock();
        let at = evaluation_time(&inner.store, now);
        if inner.served.rtt_expiry.is_some_and(|expiry| expiry <= at) {
            let machine = inner.machine.clone();
            inner.served.measure(&self.dns, &machine, at);
        }
        self.publish(&mut inner, now);
    }

    /// When the answers must next be rebuilt because telemetry turns stale or an RTT
    /// sample expires (never while degraded: time is frozen for both then).
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let snapshot = self.snapshot();
        if snapshot.store.degraded_since.is_some() {
            return None;
        }
        let stale = crate::dns::snapshot::next_staleness_deadline(
            &snapshot.deployment,
            &snapshot.state,
            now,
        );
        let expiry = self.lock().served.rtt_expiry;
        [stale, expiry].into_iter().flatten().min()
    }

    /// The applied machine the current answers come from.
    pub fn machine(&self) -> Arc<Machine> {
        self.lock().machine.clone()
    }

    /// Follows the applied index of the published answers.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Waits until the published answers reflect `index`, at most `timeout`; whether they do.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|a| *a >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn build(
    dns: &Arc<DnsSettings>,
    counters: &Counters,
    inner: &mut Inner,
    now: Timestamp,
) -> Snapshot {
    inner.generation += 1;
    let evaluated_at = evaluation_time(&inner.store, now);
    let served = &inner.served;
    let deployment = &served.deployment;
    let state = inner.machine.state(deployment);
    Snapshot {
        generation: inner.generation,
        built_at: evaluated_at,
        config_version: served.version,
        answers: AnswerTable::build(deployment, &state, &served.classes, evaluated_at),
        metric_slots: counters.slots(deployment),
        deployment: deployment.clone(),
        dns: dns.clone(),
        state: Arc::new(state),
        classes: served.classes.clone(),
        geo: inner.geo.clone(),
        zone: served.zone.clone(),
        store: inner.store.clone(),
    }
}

/// The moment answers are evaluated at: `now`, or while the store is degraded the moment
/// quorum was lost (staleness and RTT expiry are frozen then).
fn evaluation_time(store: &StoreView, now: Timestamp) -> Timestamp {
    store.degraded_since.map_or(now, |since| since.min(now))
}
