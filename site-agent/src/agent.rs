//! The agent's run loop: one task per member (probe, feedback, hysteresis; spread over the
//! interval so probes do not all fire at once; one probe in flight per member; a bounded
//! number in flight overall) and one reporter that sends the site's state every interval,
//! and at once on any change, to the first gslb-dns node that takes it.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use topology::config::SiteAgentSettings;
use topology::wire::AgentReport;
use topology::{Check, CheckKind, Deployment, Member, Timestamp};

use crate::feedback::read_feedback;
use crate::metrics::ReportCounters;
use crate::probe::http::Transport;
use crate::probe::{self, Verdict, bounded};
use crate::sigv4::Credentials;
use crate::tracker::Tracker;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    pub site: String,
    pub deployment: Arc<Deployment>,
    pub settings: SiteAgentSettings,
    pub s3_credentials: Option<Credentials>,
    /// Bearer token for the store's API (`site_agent.token_file` or `PORTICO_TOKEN`).
    pub api_token: Option<String>,
    /// The agent's name in reports (host name by default).
    pub name: String,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// One member to probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub node: String,
    pub addr: SocketAddr,
    pub agent: Option<SocketAddr>,
    pub check: Check,
    /// Plain or TLS, for the `s3` and `http` kinds.
    pub transport: Transport,
    /// For a slot of a discovered group: the name whose addresses fill the group.
    pub discover: Option<String>,
}

/// The members of `site` that have a check, with where and how to probe them. Fails on a
/// TLS setup that cannot work (a missing CA file, a bad server name).
pub fn targets(deployment: &Deployment, site: &str) -> Result<Vec<Target>, String> {
    let Some(site) = deployment.site_by_name(site) else {
        return Ok(Vec::new());
    };
    let mut targets = Vec::new();
    for m in deployment
        .members
        .iter()
        .filter(|m: &&Member| m.site == site)
    {
        let service = deployment.service(m.service);
        let Some(check) = service.check.clone() else {
            continue;
        };
        let transport = if check.tls {
            let name = check
                .server_name
                .clone()
                .unwrap_or_else(|| m.address.to_string());
            crate::tls::transport(check.ca_file.as_deref(), &name)
                .map_err(|e| format!("service {}: {e}", service.name))?
        } else {
            Transport::Plain
        };
        targets.push(Target {
            service: service.name.clone(),
            node: m.node.clone(),
            addr: SocketAddr::new(m.address, m.port.unwrap_or_else(|| check.default_port())),
            agent: m.agent_port.map(|p| SocketAddr::new(m.address, p)),
            check,
            transport,
            discover: m.discover.as_ref().map(|n| n.as_str().to_owned()),
        });
    }
    Ok(targets)
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the probe the target's check asks for.
async fn run_probe(target: &Target, credentials: Option<&Credentials>) -> Verdict {
    let check = &target.check;
    let work = async {
        match check.kind {
            CheckKind::Tcp => probe::tcp::probe(target.addr).await,
            CheckKind::Smb if check.deep => {
                let server = check
                    .server_name
                    .clone()
                    .unwrap_or_else(|| target.addr.ip().to_string());
                let share = check
                    .path
                    .as_deref()
                    .unwrap_or("share")
                    .trim_start_matches('/');
                probe::smb::deep_probe(target.addr, &server, share).await
            }
            CheckKind::Smb => probe::smb::probe(target.addr).await,
            CheckKind::Nfs if check.deep => {
                let mount = SocketAddr::new(
                    target.addr.ip(),
                    check.mount_port.unwrap_or(target.addr.port()),
                );
                let export = check.path.as_deref().unwrap_or("/");
                probe::nfs::deep_probe(target.addr, mount, export).await
            }
            CheckKind::Nfs => {
                probe::nfs::probe(target.addr, probe::nfs::NFS_PROGRAM, check.version).await
            }
            CheckKind::Http => {
                let http = probe::http::HttpCheck {
                    path: check.path.clone().unwrap_or_else(|| "/".into()),
                    host: None,
                    body_contains: check.body.clone(),
                };
                probe::http::probe(target.addr, &target.transport, &http).await
            }
            CheckKind::S3 => {
                let s3 = probe::s3::S3Check {
                    bucket: check
                        .bucket
                        .clone()
                        .unwrap_or_else(|| "portico-health".into()),
                    region: check.region.clone(),
                    credentials: credentials.cloned().unwrap_or(Credentials {
                        access_key: String::new(),
                        secret_key: String::new(),
                        session_token: None,
                    }),
                    virtual_host: check.virtual_host.clone(),
                };
                probe::s3::probe(target.addr, &target.transport, &s3, unix_now().as_secs()).await
            }
        }
    };
    bounded(check.timeout, work).await
}

/// Where a member's first probe falls inside the interval (stable per member).
fn offset(target: &Target) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&target.service, &target.node).hash(&mut hasher);
    let interval = target.check.interval.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % interval)
}

/// Every member's tracker, shared by the probe tasks, the reporter and the metrics.
pub type Trackers = Arc<Mutex<BTreeMap<(String, String), Tracker>>>;

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
    let mut next = Instant::now();
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
        let verdict = match limit.acquire().await {
            Ok(_permit) => run_probe(&target, credentials.as_ref()).await,
            Err(_) => return,
        };
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
        let notify = {
            let mut trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
            let tracker = trackers
                .entry(key.clone())
                .or_insert_with(|| Tracker::new(&target.service, &target.node));
            let admin_changed = feedback
                .as_ref()
                .is_some_and(|f| tracker.observe_feedback(f));
            let health = tracker.observe_probe(
                verdict.ok,
                &verdict.reason,
                verdict.latency,
                target.check.rise,
                target.check.fall,
            );
            if let Some(health) = health {
                tracing::info!(service = %target.service, node = %target.node, ?health, reason = %verdict.reason, latency_ms = verdict.latency.as_millis() as u64, "member state changed");
            }
            if admin_changed {
                tracing::info!(service = %target.service, node = %target.node, feedback = ?feedback, "load-feedback admin state changed");
            }
            health.is_some() || admin_changed
        };
        if notify {
            changed.notify_one();
        }
        next += target.check.interval;
        let now = Instant::now();
        if next < now {
            next = now + target.check.interval;
        }
        tokio::time::sleep_until(next.into()).await;
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

/// Sends the site's state: every `every`, and at once when `changed` fires. A failed send
/// moves to the next node and retries with backoff; the next report always carries the
/// latest state, so nothing is lost while the store is unreachable.
async fn report_loop(
    setup: AgentSetup,
    trackers: Trackers,
    changed: Arc<Notify>,
    every: Duration,
    counters: Arc<ReportCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sequence = unix_now().as_millis() as u64;
    let mut current = 0usize;
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
        };
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let mut delivered = false;
        for attempt in 0..setup.settings.report_to.len() {
            let node =
                setup.settings.report_to[(current + attempt) % setup.settings.report_to.len()];
            let mut headers = vec![
                ("Host".to_owned(), node.to_string()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ];
            if let Some(token) = &setup.api_token {
                headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
            }
            match probe::http::exchange_with_body(
                node,
                &Transport::Plain,
                "POST",
                "/api/v1/reports",
                &headers,
                &body,
            )
            .await
            {
                Ok(response) if response.status == 200 => {
                    current = (current + attempt) % setup.settings.report_to.len();
                    delivered = true;
                    break;
                }
                Ok(response) => {
                    tracing::debug!(%node, status = response.status, "report not taken")
                }
                Err(e) => tracing::debug!(%node, error = %e, "report not sent"),
            }
        }
        let counter = if delivered {
            &counters.sent
        } else {
            &counters.failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = if delivered {
            backoff = Duration::from_millis(50);
            every
        } else {
            tracing::warn!("no gslb-dns node took the report; retrying");
            current += 1;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            backoff
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs the agent until `shutdown`.
pub async fn run(setup: AgentSetup, targets: Vec<Target>, shutdown: watch::Receiver<bool>) {
    let trackers: Trackers = Arc::new(Mutex::new(
        targets
            .iter()
            .map(|t| {
                (
                    (t.service.clone(), t.node.clone()),
                    Tracker::new(&t.service, &t.node),
                )
            })
            .collect(),
    ));
    let changed = Arc::new(Notify::new());
    let limit = Arc::new(Semaphore::new(setup.settings.max_concurrent_probes));
    let every = targets
        .iter()
        .map(|t| t.check.interval)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let mut tasks = Vec::new();
    let mut groups: crate::discover::Groups = BTreeMap::new();
    for target in &targets {
        if let Some(name) = &target.discover {
            groups
                .entry((target.service.clone(), name.clone()))
                .or_default()
                .push(target.node.clone());
        }
    }
    for ((service, name), slots) in groups {
        tasks.push(tokio::spawn(discover_loop(
            service,
            name,
            slots,
            trackers.clone(),
            changed.clone(),
            setup.settings.resolver,
            setup.settings.discover_interval,
        )));
    }
    for target in targets {
        tasks.push(tokio::spawn(member_loop(
            target,
            trackers.clone(),
            changed.clone(),
            limit.clone(),
            setup.s3_credentials.clone(),
        )));
    }
    let counters = Arc::new(ReportCounters::default());
    if let Some(addr) = setup.metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => tasks.push(tokio::spawn(crate::metrics::serve(
                listener,
                trackers.clone(),
                counters.clone(),
                setup.settings.slow_probe,
            ))),
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve metrics"),
        }
    }
    report_loop(setup, trackers, changed, every, counters, shutdown).await;
    for task in tasks {
        task.abort();
    }
}
