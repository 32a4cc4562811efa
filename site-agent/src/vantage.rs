//! Cross-site probes: the other half of a site's verdict when its own agent goes silent.
//!
//! A silent agent says nothing about its site's storage: the agent may have died, or lost
//! its way to the store, while the members serve their clients as before. So the store asks
//! the agents of the other sites (in its answer to their reports, [`Written::vantage`]) to
//! probe the quiet site's members across sites with the same checks, and keeps the site in
//! answers while any of them reaches its members ("telemetry lost, confirmed by iad, sin");
//! a site nobody reaches leaves when its telemetry turns stale.
//!
//! Each probe here is one hedged check (a lost segment delays it rather than failing it);
//! no rise/fall: the store wants to know, once its site's own agent has gone quiet, whether
//! the member answers now. Results are reported only while the store asks for the site and
//! only while fresh, so an old "serving" is never repeated as new.
//!
//! [`Written::vantage`]: topology::wire::Written::vantage

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use topology::Deployment;
use topology::wire::VantageObservation;

use crate::sigv4::Credentials;
use crate::target::{Target, hedged_probe, targets};

/// A result older than this is not reported (the probe loop renews results every check
/// interval; this covers a probe that hangs up to its timeout, then some).
const FRESH_FOR: Duration = Duration::from_secs(3);

/// The sites the store asked this agent to probe, and what the probes found.
#[derive(Default)]
pub struct Vantage {
    inner: Mutex<Inner>,
    /// Woken when the store names a site not asked before.
    asked: Notify,
}

#[derive(Default)]
struct Inner {
    sites: BTreeSet<String>,
    /// `(service, node)` -> the latest probe of that member of another site.
    seen: BTreeMap<(String, String), Seen>,
}

struct Seen {
    site: String,
    up: bool,
    reason: String,
    at: Instant,
}

impl Vantage {
    /// Takes the store's answer to a report: the sites to probe now (replacing the last
    /// answer's). A site no longer named is not probed and its results are dropped.
    pub fn ask(&self, sites: &[String]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: BTreeSet<String> = sites.iter().cloned().collect();
        if wanted == inner.sites {
            return;
        }
        let new = wanted.difference(&inner.sites).next().is_some();
        for site in inner.sites.difference(&wanted) {
            tracing::info!(%site, "the store no longer asks for cross-site probes of this site");
        }
        for site in wanted.difference(&inner.sites) {
            tracing::warn!(%site, "that site's agent is quiet: probing its members from here, as the store asks");
        }
        inner.seen.retain(|_, seen| wanted.contains(&seen.site));
        inner.sites = wanted;
        drop(inner);
        if new {
            self.asked.notify_one();
        }
    }

    /// The sites being probed.
    pub fn sites(&self) -> BTreeSet<String> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sites
            .clone()
    }

    /// What to report: the fresh results for the sites the store asks about.
    pub fn observations(&self) -> Vec<VantageObservation> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .seen
            .iter()
            .filter(|(_, seen)| seen.at.elapsed() <= FRESH_FOR && inner.sites.contains(&seen.site))
            .map(|((service, node), seen)| VantageObservation {
                service: service.clone(),
                node: node.clone(),
                up: seen.up,
                reason: seen.reason.clone(),
            })
            .collect()
    }

    /// Records one probe's result; true when it differs from the last one (up or down, or
    /// the first), which is worth a report at once.
    fn record(&self, site: &str, target: &Target, up: bool, reason: String) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.sites.contains(site) {
            return false;
        }
        let key = (target.service.clone(), target.node.clone());
        let changed = inner.seen.get(&key).is_none_or(|seen| seen.up != up);
        inner.seen.insert(
            key,
            Seen {
                site: site.to_owned(),
                up,
                reason,
                at: Instant::now(),
            },
        );
        changed
    }
}

/// The deployment and sites the targets were made for, and the targets (by site).
type Cached = (Arc<Deployment>, BTreeSet<String>, Vec<(String, Target)>);

/// How often the members of the sites asked about are probed: their shortest check
/// interval.
fn probe_interval(targets: &[(String, Target)]) -> Duration {
    targets
        .iter()
        .map(|(_, t)| t.check.interval)
        .min()
        .unwrap_or(Duration::from_millis(500))
}

/// Probes the members of the sites the store asks about, every check interval, until the
/// agent stops. A result that changes wakes the reporter (`changed`).
pub async fn run(
    vantage: Arc<Vantage>,
    deployment: watch::Receiver<Arc<Deployment>>,
    credentials: Option<Credentials>,
    limit: Arc<Semaphore>,
    changed: Arc<Notify>,
) {
    // The targets of the sites asked about, rebuilt when either changes.
    let mut cached: Option<Cached> = None;
    loop {
        let sites = vantage.sites();
        if sites.is_empty() {
            cached = None;
            vantage.asked.notified().await;
            continue;
        }
        let current = deployment.borrow().clone();
        let fresh = cached
            .as_ref()
            .is_none_or(|(d, s, _)| !Arc::ptr_eq(d, &current) || *s != sites);
        if fresh {
            let mut all = Vec::new();
            for site in &sites {
                match targets(&current, site) {
                    Ok(found) => all.extend(found.into_iter().map(|t| (site.clone(), t))),
                    Err(e) => {
                        tracing::error!(%site, error = %e, "cannot probe that site's members")
                    }
                }
            }
            cached = Some((current, sites, all));
        }
        let Some((_, _, targets)) = &cached else {
            continue;
        };
        let started = Instant::now();
        let mut probes = tokio::task::JoinSet::new();
        for (site, target) in targets.iter().cloned() {
            let (limit, credentials) = (limit.clone(), credentials.clone());
            probes.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return None;
                };
                let (verdict, hedge) = hedged_probe(&target, credentials.as_ref()).await;
                if let Some(hedge) = hedge {
                    hedge.abort();
                }
                Some((site, target, verdict))
            });
        }
        let mut any = false;
        while let Some(done) = probes.join_next().await {
            if let Ok(Some((site, target, verdict))) = done {
                any |= vantage.record(&site, &target, verdict.ok, verdict.reason.clone());
            }
        }
        if any {
            changed.notify_one();
        }
        let next = started + probe_interval(targets);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = vantage.asked.notified() => {}
        }
    }
}
