//! The agent's run loop: one task per member (probe, feedback, hysteresis; spread over the
//! interval so probes do not all fire at once; one probe in flight per member; a bounded
//! number in flight overall), one reporter that sends the site's state every interval, and
//! at once on any change, through the API client (a timeout per node, the next node when
//! one fails), and a follower of the store's deployment: a member added to the site starts
//! being probed, a removed one stops, without a restart.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portico_client::ApiClient;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use topology::config::SiteAgentSettings;
use topology::hysteresis::Thresholds;
use topology::wire::AgentReport;
use topology::{Deployment, Timestamp};

use crate::feedback::read_feedback;
use crate::metrics::ReportCounters;
use crate::sigv4::Credentials;
use crate::target::{Carried, Target, carried_probe, hedged_probe, targets, unix_now};
use crate::tracker::{Tracker, Trackers};
use crate::vantage::Vantage;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    pub site: String,
    /// The deployment to start from (this agent's file); the store's replaces it.
    pub deployment: Arc<Deployment>,
    pub settings: SiteAgentSettings,
    pub s3_credentials: Option<Credentials>,
    /// The store's API (the nodes of `report_to`, with the agent's token).
    pub api: Arc<ApiClient>,
    /// The agent's name in reports (host name by default).
    pub name: String,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// Where a member's first probe falls inside the interval (stable per member).
fn offset(target: &Target) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&target.service, &target.node).hash(&mut hasher);
    let interval = target.check.interval.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % interval)
}

/// Probes one member forever.
async fn member_loop(
    target: Target,
    trackers: Trackers,
    changed: Arc<Notify>,
    limit: Arc<Semaphore>,
    credentials: Option<Credentials>,
) {
    tokio::time::sleep(offset(&target)).await;
    let key = (target.service.clone(), target.node.clone());
    // A dying service process closes the watch connection: probe at once (not for a slot
    // of a discovered group, whose address moves).
    let watcher = (target.check.watch && target.discover.is_none()).then(|| {
        let (trackers, key) = (trackers.clone(), key.clone());
        crate::watch::Watcher::start(target.addr, target.check.clone(), move || {
            trackers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .map(|t| t.wake.clone())
                .unwrap_or_default()
        })
    });
    let mut next = Instant::now();
    let mut carried: Option<Carried> = None;
    loop {
        // A slot of a discovered group probes whatever address it holds now, if any.
        let mut target = target.clone();
        if target.discover.is_some() {
            let address = trackers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .and_then(Tracker::address);
            let Some(ip) = address else {
                next += target.check.interval;
                tokio::time::sleep_until(next.max(Instant::now()).into()).await;
                continue;
            };
            target.addr = SocketAddr::new(ip, target.addr.port());
            target.agent = target.agent.map(|a| SocketAddr::new(ip, a.port()));
        }
        let wake = trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map(|t| t.wake.clone())
            .unwrap_or_default();
        let started = Instant::now();
        let verdict = match carried.take() {
            // The last probe's hedge is still out: it races a fresh attempt as this probe.
            Some(hedge) => match limit.acquire().await {
                Ok(_permit) => carried_probe(hedge, &target, credentials.as_ref()).await,
                Err(_) => return,
            },
            None => match limit.acquire().await {
                Ok(_permit) => {
                    let (verdict, hedge) = hedged_probe(&target, credentials.as_ref()).await;
                    carried = hedge;
                    verdict
                }
                Err(_) => return,
            },
        };
        if verdict.ok
            && let Some(watcher) = &watcher
        {
            watcher.served();
        }
        if !verdict.ok {
            // A wake-up that came while this probe ran (the watch connection closing as
            // the process died) has its answer already: this failure.
            let _ = tokio::time::timeout(Duration::ZERO, wake.notified()).await;
        }
        let feedback = match target.agent {
            Some(agent) => match read_feedback(agent, target.check.timeout).await {
                Ok(feedback) => Some(feedback),
                Err(e) => {
                    tracing::debug!(service = %target.service, node = %target.node, error = %e, "no load feedback");
                    None
                }
            },
            None => None,
        };
        let (notify, suspect) = {
            let mut trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
            let tracker = trackers
                .entry(key.clone())
                .or_insert_with(|| Tracker::new(&target.service, &target.node));
            let admin_changed = feedback
                .as_ref()
                .is_some_and(|f| tracker.observe_feedback(f));
            let confirmed_before = tracker.passive_confirmed();
            let health = tracker.observe_probe(&verdict, Thresholds::of(&target.check));
            if let Some(health) = health {
                tracing::info!(service = %target.service, node = %target.node, ?health, reason = %verdict.reason, latency_ms = verdict.latency.as_millis() as u64, "member state changed");
            }
            if admin_changed {
                tracing::info!(service = %target.service, node = %target.node, feedback = ?feedback, "load-feedback admin state changed");
            }
            let confirmed = tracker.passive_confirmed() != confirmed_before;
            if confirmed {
                tracing::info!(service = %target.service, node = %target.node, mark = ?tracker.passive_confirmed(), "probes confirm the member serves: passive mark answered");
            }
            (
                health.is_some() || admin_changed || confirmed,
                tracker.suspect() || tracker.confirming(),
            )
        };
        if notify {
            changed.notify_one();
        }
        // A failure that has not decided anything yet, or a passive mark being confirmed:
        // probe again soon (from this probe's start), so a dead member is down after `fall`
        // fast probes, not `fall` intervals, and a recovered one confirmed after `rise`.
        // Otherwise keep the regular schedule; a new passive mark wakes the task at once.
        let now = Instant::now();
        if suspect {
            next = (started + target.check.fast_interval).max(now);
        } else {
            next += target.check.interval;
            if next < now {
                next = now + target.check.interval;
            }
        }
        if carried.is_some() {
            // The next probe is already out (the hedge of this one).
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = wake.notified() => next = Instant::now(),
        }
    }
}

/// Resolves a discovered group's name every `interval` and fills its slots (stably);
/// a failed resolution keeps the current addresses.
async fn discover_loop(
    service: String,
    name: String,
    slots: Vec<String>,
    trackers: Trackers,
    changed: Arc<Notify>,
    resolver: Option<SocketAddr>,
    interval: Duration,
) {
    loop {
        match crate::discover::resolve(&name, resolver, Duration::from_secs(2)).await {
            Ok(found) => {
                let mut trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
                let current: Vec<Option<std::net::IpAddr>> = slots
                    .iter()
                    .map(|node| {
                        trackers
                            .get(&(service.clone(), node.clone()))
                            .and_then(Tracker::address)
                    })
                    .collect();
                let next = crate::discover::assign(&current, &found);
                let mut any = false;
                for (node, address) in slots.iter().zip(next) {
                    if let Some(tracker) = trackers.get_mut(&(service.clone(), node.clone()))
                        && tracker.set_address(address)
                    {
                        tracing::info!(%service, %node, ?address, %name, "discovered address");
                        any = true;
                    }
                }
                if any {
                    changed.notify_one();
                }
            }
            Err(e) => {
                tracing::warn!(%service, %name, error = %e, "discovery failed; keeping the current addresses")
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Sends the site's state: every `every`, and at once when `changed` fires. The client
/// tries the next node when one fails or does not answer within `report_timeout`; a round
/// no node took is retried with backoff, and the next report always carries the latest
/// state, so nothing is lost while the store is unreachable.
async fn report_loop(
    setup: AgentSetup,
    trackers: Trackers,
    vantage: Arc<Vantage>,
    changed: Arc<Notify>,
    every: watch::Receiver<Duration>,
    counters: Arc<ReportCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sequence = unix_now().as_millis() as u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        sequence += 1;
        let members = {
            let trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
            trackers
                .values()
                .map(|t| t.observation(setup.settings.slow_probe))
                .collect()
        };
        let report = AgentReport {
            site: setup.site.clone(),
            agent: setup.name.clone(),
            sequence,
            sent_at: Timestamp(unix_now().as_millis() as u64),
            members,
            vantage: vantage.observations(),
        };
        let sent = std::time::Instant::now();
        let wait = match setup.api.report(&report).await {
            Ok(written) => {
                tracing::debug!(
                    sequence,
                    took_us = sent.elapsed().as_micros() as u64,
                    "report taken"
                );
                await_passive(&trackers, &written.passive);
                vantage.ask(&written.vantage);
                counters
                    .sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                *every.borrow()
            }
            Err(e) => {
                counters
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "no gslb-dns node took the report; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(1));
                backoff
            }
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Takes the passive marks the store named in its answer to a report: each new one is to be
/// confirmed by fresh probes, starting at once.
fn await_passive(trackers: &Trackers, pending: &[topology::wire::PassivePending]) {
    if pending.is_empty() {
        return;
    }
    let mut trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
    for mark in pending {
        if let Some(tracker) = trackers.get_mut(&(mark.service.clone(), mark.node.clone()))
            && tracker.await_passive(mark.mark)
        {
            tracing::info!(service = %mark.service, node = %mark.node, mark = mark.mark, "a proxy marked this member passively down: probing to confirm");
            tracker.wake.notify_one();
        }
    }
}

/// Asks the store for its deployment every `interval`; a new version that reads is sent
/// on `deployments`. A store that cannot be asked leaves the agent with what it has.
async fn follow_deployment(
    api: Arc<ApiClient>,
    interval: Duration,
    deployments: watch::Sender<Arc<Deployment>>,
) {
    let mut version = None;
    loop {
        match api.config().await {
            Ok(config) if config.version > 0 && Some(config.version) != version => {
                let serial = config.at.map_or(0, |at| at.0 / 1000);
                match Deployment::from_document(&config.document, serial) {
                    Ok(deployment) => {
                        tracing::info!(
                            version = config.version,
                            "following the store's deployment"
                        );
                        version = Some(config.version);
                        deployments.send_if_modified(|current| {
                            let new = **current != deployment;
                            if new {
                                *current = Arc::new(deployment);
                            }
                            new
                        });
                    }
                    Err(e) => {
                        tracing::error!(version = config.version, error = %e, "the store's deployment does not read here; probing what this agent has")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot ask the store for its deployment"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// The probe and discovery tasks of the current targets.
struct Probing {
    members: BTreeMap<(String, String), (Target, JoinHandle<()>)>,
    discovery: Vec<JoinHandle<()>>,
}

impl Probing {
    fn stop(self) {
        for (_, (_, task)) in self.members {
            task.abort();
        }
        for task in self.discovery {
            task.abort();
        }
    }
}

/// Two targets probe alike (same address, port, check and discovery).
fn same_probe(a: &Target, b: &Target) -> bool {
    a.addr == b.addr && a.agent == b.agent && a.check == b.check && a.discover == b.discover
}

/// What the agent shares between its tasks.
#[derive(Clone)]
struct Shared {
    setup: AgentSetup,
    trackers: Trackers,
    changed: Arc<Notify>,
    limit: Arc<Semaphore>,
}

impl Shared {
    /// Starts (or keeps) a probe task per target and a resolver per discovered group;
    /// stops the tasks of members no longer there.
    fn probe(&self, targets: Vec<Target>, previous: Option<Probing>) -> Probing {
        let mut old = previous.map(|p| {
            for task in p.discovery {
                task.abort();
            }
            p.members
        });
        let mut members = BTreeMap::new();
        let mut trackers = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        for target in &targets {
            let key = (target.service.clone(), target.node.clone());
            let kept = old
                .as_mut()
                .and_then(|old| old.remove(&key))
                .filter(|(was, _)| same_probe(was, target));
            let task = match kept {
                Some((_, task)) => task,
                None => {
                    // A new or changed probe starts from "no verdict yet".
                    trackers.insert(key.clone(), Tracker::new(&target.service, &target.node));
                    tokio::spawn(member_loop(
                        target.clone(),
                        self.trackers.clone(),
                        self.changed.clone(),
                        self.limit.clone(),
                        self.setup.s3_credentials.clone(),
                    ))
                }
            };
            members.insert(key, (target.clone(), task));
        }
        for (key, (_, task)) in old.into_iter().flatten() {
            task.abort();
            trackers.remove(&key);
        }
        drop(trackers);
        let mut groups: crate::discover::Groups = BTreeMap::new();
        for target in &targets {
            if let Some(name) = &target.discover {
                groups
                    .entry((target.service.clone(), name.clone()))
                    .or_default()
                    .push(target.node.clone());
            }
        }
        let discovery = groups
            .into_iter()
            .map(|((service, name), slots)| {
                tokio::spawn(discover_loop(
                    service,
                    name,
                    slots,
                    self.trackers.clone(),
                    self.changed.clone(),
                    self.setup.settings.resolver,
                    self.setup.settings.discover_interval,
                ))
            })
            .collect();
        self.changed.notify_one();
        Probing { members, discovery }
    }
}

/// The report interval for `targets`: the shortest check interval, at most 1 s (the
/// answer to a report is how the agent learns of passive marks to confirm).
fn report_interval(targets: &[Target]) -> Duration {
    targets
        .iter()
        .map(|t| t.check.interval)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1))
}

/// Runs the agent until `shutdown`: probes this site's members of `setup.deployment`,
/// then of each deployment version the store has.
pub async fn run(setup: AgentSetup, mut shutdown: watch::Receiver<bool>) {
    let shared = Shared {
        trackers: Arc::new(Mutex::new(BTreeMap::new())),
        changed: Arc::new(Notify::new()),
        limit: Arc::new(Semaphore::new(setup.settings.max_concurrent_probes)),
        setup: setup.clone(),
    };
    let first = match targets(&setup.deployment, &setup.site) {
        Ok(targets) => targets,
        Err(e) => {
            tracing::error!(error = %e, "cannot probe this site's members");
            Vec::new()
        }
    };
    let (interval, intervals) = watch::channel(report_interval(&first));
    let mut probing = shared.probe(first, None);
    let (deployments, mut deployment) = watch::channel(setup.deployment.clone());
    let follower = tokio::spawn(follow_deployment(
        setup.api.clone(),
        setup.settings.config_interval,
        deployments,
    ));
    let counters = Arc::new(ReportCounters::default());
    let mut tasks = vec![follower];
    if let Some(addr) = setup.metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let (trackers, counters, slow) = (
                    shared.trackers.clone(),
                    counters.clone(),
                    setup.settings.slow_probe,
                );
                tasks.push(tokio::spawn(portico_client::process::serve_metrics(
                    listener,
                    move || crate::metrics::render(&trackers, &counters, slow),
                )));
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve metrics"),
        }
    }
    let vantage = Arc::new(Vantage::default());
    tasks.push(tokio::spawn(crate::vantage::run(
        vantage.clone(),
        deployment.clone(),
        setup.s3_credentials.clone(),
        shared.limit.clone(),
        shared.changed.clone(),
    )));
    let reporter = tokio::spawn(report_loop(
        setup.clone(),
        shared.trackers.clone(),
        vantage,
        shared.changed.clone(),
        intervals,
        counters,
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            changed = deployment.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = deployment.borrow_and_update().clone();
                match targets(&next, &setup.site) {
                    Ok(targets) => {
                        tracing::info!(members = targets.len(), "probing the members of the store's deployment");
                        let _ = interval.send(report_interval(&targets));
                        probing = shared.probe(targets, Some(probing));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot probe the new deployment's members; keeping the current probes"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = reporter.await;
    probing.stop();
    for task in tasks {
        task.abort();
    }
}
