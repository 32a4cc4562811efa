//! The owner of the node's dynamic state. Every change (an admin action, a new GeoIP
//! database, a site turning stale) goes through here: the state is changed, a new
//! [`Snapshot`] is built off the query path and published with `ArcSwap`.
//!
//! For now the state lives in memory and comes from configuration and the admin API; the
//! replicated store replaces this source behind the same snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use geoip_data::GeoDb;
use serde::Serialize;
use topology::{AdminState, AdminTarget, ClassTable, Deployment, State, Timestamp};

use crate::dns::zone::{ZoneData, ZoneError};
use crate::snapshot::{AnswerTable, Snapshot, build_classes};

/// How many changes the history keeps.
const HISTORY_LEN: usize = 1000;

/// One change of state, with its cause.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub at: Timestamp,
    pub target: String,
    pub admin: AdminState,
    pub who: String,
    pub why: String,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("GeoIP database: {0}")]
    Geoip(#[from] geoip_data::GeoError),
    #[error("zone: {0}")]
    Zone(#[from] ZoneError),
}

struct Inner {
    state: State,
    geo: Arc<GeoDb>,
    classes: Arc<ClassTable>,
    generation: u64,
    history: VecDeque<Change>,
}

/// The state owner and snapshot publisher.
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
    /// Encodes the zone, builds the client classes and publishes the first snapshot.
    pub fn new(
        deployment: Deployment,
        geo: Arc<GeoDb>,
        now: Timestamp,
    ) -> Result<Control, StartError> {
        let deployment = Arc::new(deployment);
        let zone = Arc::new(ZoneData::build(&deployment)?);
        let classes = Arc::new(build_classes(&deployment, &geo)?);
        let state = State::initial(&deployment);
        let snapshot = Snapshot {
            generation: 1,
            built_at: now,
            answers: AnswerTable::build(&deployment, &state, &classes, now),
            deployment: deployment.clone(),
            state: Arc::new(state.clone()),
            classes: classes.clone(),
            geo: geo.clone(),
            zone: zone.clone(),
        };
        Ok(Control {
            deployment,
            zone,
            inner: Mutex::new(Inner {
                state,
                geo,
                classes,
                generation: 1,
                history: VecDeque::new(),
            }),
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
        inner.generation += 1;
        let snapshot = Snapshot {
            generation: inner.generation,
            built_at: now,
            answers: AnswerTable::build(&self.deployment, &inner.state, &inner.classes, now),
            deployment: self.deployment.clone(),
            state: Arc::new(inner.state.clone()),
            classes: inner.classes.clone(),
            geo: inner.geo.clone(),
            zone: self.zone.clone(),
        };
        self.published.store(Arc::new(snapshot));
    }

    /// Applies an admin action and publishes the result.
    pub fn admin(
        &self,
        target: AdminTarget,
        admin: AdminState,
        who: &str,
        why: &str,
        now: Timestamp,
    ) {
        let mut inner = self.lock();
        inner.state.apply_admin(&self.deployment, &target, admin);
        let change = Change {
            at: now,
            target: describe(&self.deployment, &target),
            admin,
            who: who.to_owned(),
            why: why.to_owned(),
        };
        tracing::info!(target = %change.target, ?admin, who, why, "admin action");
        inner.history.push_back(change);
        if inner.history.len() > HISTORY_LEN {
            inner.history.pop_front();
        }
        self.publish(&mut inner, now);
    }

    /// Switches to a new GeoIP database (the client classes are rebuilt).
    pub fn set_geo(&self, geo: Arc<GeoDb>, now: Timestamp) -> Result<(), geoip_data::GeoError> {
        let classes = Arc::new(build_classes(&self.deployment, &geo)?);
        let mut inner = self.lock();
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

    /// When the answers must next be rebuilt because telemetry turns stale.
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let inner = self.lock();
        crate::snapshot::next_staleness_deadline(&self.deployment, &inner.state, now)
    }

    /// The most recent changes, oldest first.
    pub fn history(&self) -> Vec<Change> {
        self.lock().history.iter().cloned().collect()
    }
}

/// `member s3/fra-1`, `site fra`, `service s3`.
pub fn describe(deployment: &Deployment, target: &AdminTarget) -> String {
    match target {
        AdminTarget::Member(id) => {
            let member = deployment.member(*id);
            format!(
                "member {}/{}",
                deployment.service(member.service).name,
                member.node
            )
        }
        AdminTarget::Site(id) => format!("site {}", deployment.site(*id).name),
        AdminTarget::Service(id) => format!("service {}", deployment.service(*id).name),
    }
}
