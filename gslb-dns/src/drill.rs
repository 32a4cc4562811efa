//! DR drills: drain (or fail) a site or one member through the store, ask every gslb-dns
//! node from several client subnets (ECS) every `interval` until no answer names the
//! target, record per node and vantage how long that took, restore the target (also after
//! a timeout or an error), measure how fast it comes back, and keep a report (JSON and text)
//! in memory and under `<data_dir>/drills/`. The drain and the restore are admin actions, so
//! the replicated history records both, the restore with the drill's result.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topology::select::member_verdict;
use topology::wire::{AdminAction, Command, Target};
use topology::{AdminState, Family, MemberId, State};

use crate::admin::{AdminContext, ApiError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillMode {
    /// An admin drain: no new answers, as for planned maintenance.
    #[default]
    Drain,
    /// Forced down: as if the site (or member) had failed.
    Fail,
}

/// `POST /api/v1/drills`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    pub site: String,
    /// `service/node`: drill one member of the site instead of the whole site.
    #[serde(default)]
    pub member: Option<String>,
    #[serde(default)]
    pub mode: DrillMode,
    /// The service whose answers are watched (default: the member's, or every service
    /// with members at the site).
    #[serde(default)]
    pub service: Option<String>,
    /// Client subnets to ask as (default: one /24 or /56 of each site's client networks).
    #[serde(default)]
    pub vantages: Vec<IpNet>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub who: Option<String>,
    #[serde(default)]
    pub why: Option<String>,
}

/// One (node, vantage) pair's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct VantageResult {
    pub vantage: IpNet,
    /// The target was in this vantage's answers before the drill (false also when the node
    /// did not answer; then only an answer without the target counts as converged).
    pub answered_before: bool,
    /// Milliseconds from the drill's start until the target left the answers (0 when it
    /// was not in them); `None`: it never left within the timeout.
    pub converged_ms: Option<u64>,
    /// Milliseconds from the restore until the target was back (vantages that had it).
    pub restored_ms: Option<u64>,
    pub last_answer: Vec<IpAddr>,
    pub errors: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub dns: SocketAddr,
    pub vantages: Vec<VantageResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub id: u64,
    pub target: String,
    pub mode: DrillMode,
    pub services: Vec<String>,
    pub who: String,
    pub why: String,
    pub started_at_ms: u64,
    /// How long the store took to apply the drain, ms.
    pub applied_ms: u64,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    /// `converged`, `timeout` or `error`.
    pub status: String,
    /// The slowest (node, vantage) convergence, ms.
    pub max_converged_ms: Option<u64>,
    pub max_restored_ms: Option<u64>,
    pub restored: bool,
    pub nodes: Vec<NodeResult>,
    /// Store nodes without a `dns` address: not asked.
    pub not_queried: Vec<u64>,
    pub error: Option<String>,
    pub summary: String,
}

/// Drills run and their reports (the last 50), and the one-at-a-time guard.
#[derive(Debug)]
pub struct Drills {
    running: AtomicBool,
    next: AtomicU64,
    reports: Mutex<VecDeque<DrillReport>>,
    dir: Option<PathBuf>,
}

impl Drills {
    pub fn new(dir: Option<PathBuf>) -> Drills {
        Drills {
            running: AtomicBool::new(false),
            next: AtomicU64::new(1),
            reports: Mutex::new(VecDeque::new()),
            dir,
        }
    }

    pub fn reports(&self) -> Vec<DrillReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    pub fn report(&self, id: u64) -> Option<DrillReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    fn keep(&self, report: &DrillReport) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports.push_back(report.clone());
        while reports.len() > 50 {
            reports.pop_front();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::create_dir_all(dir);
            let base = dir.join(format!("drill-{}-{}", report.started_at_ms, report.id));
            let _ = std::fs::write(
                base.with_extension("json"),
                serde_json::to_vec_pretty(report).unwrap_or_default(),
            );
            let _ = std::fs::write(base.with_extension("txt"), &report.summary);
        }
    }
}

/// A drill checked and ready to run.
#[derive(Debug)]
pub struct Plan {
    pub id: u64,
    target: Target,
    mode: DrillMode,
    /// (name to ask, AAAA?) per service watched.
    names: Vec<(String, String, bool)>,
    /// The addresses whose absence means "converged".
    drilled: Vec<IpAddr>,
    nodes: Vec<(String, SocketAddr)>,
    not_queried: Vec<u64>,
    vantages: Vec<IpNet>,
    timeout: Duration,
    interval: Duration,
    who: String,
    why: String,
}

/// Checks a request against the deployment and the state: names exist, the target is
/// active, and the drill leaves every watched service at least one healthy site.
pub fn plan(ctx: &AdminContext, request: &DrillRequest, caller: &str) -> Result<Plan, ApiError> {
    let snapshot = ctx.control.snapshot();
    let deployment = &snapshot.deployment;
    let site = deployment
        .site_by_name(&request.site)
        .ok_or_else(|| ApiError::NotFound(format!("no site {:?}", request.site)))?;
    let member: Option<MemberId> = match &request.member {
        None => None,
        Some(text) => {
            let (service, node) = text.split_once('/').ok_or_else(|| {
                ApiError::BadRequest(format!("member {text:?}: expected service/node"))
            })?;
            let id = deployment.member_by_name(service, node).ok_or_else(|| {
                ApiError::NotFound(format!("no member {node:?} in service {service:?}"))
            })?;
            if deployment.member(id).site != site {
                return Err(ApiError::BadRequest(format!(
                    "member {text} is not at site {}",
                    request.site
                )));
            }
            Some(id)
        }
    };
    let services: Vec<_> = match (&request.service, member) {
        (Some(name), _) => vec![
            deployment
                .service_by_name(name)
                .ok_or_else(|| ApiError::NotFound(format!("no service {name:?}")))?,
        ],
        (None, Some(id)) => vec![deployment.member(id).service],
        (None, None) => deployment
            .service_ids()
            .filter(|s| {
                deployment
                    .service(*s)
                    .members
                    .iter()
                    .any(|m| deployment.member(*m).site == site)
            })
            .collect(),
    };
    if services.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "site {} has no members to drill",
            request.site
        )));
    }
    let admin = match request.mode {
        DrillMode::Drain => AdminState::Drained,
        DrillMode::Fail => AdminState::ForcedDown,
    };
    let (target, current) = match member {
        Some(id) => {
            let m = deployment.member(id);
            (
                Target::Member {
                    service: deployment.service(m.service).name.clone(),
                    node: m.node.clone(),
                },
                snapshot.state.member(id).admin,
            )
        }
        None => (
            Target::Site {
                site: request.site.clone(),
            },
            snapshot.state.site(site).admin,
        ),
    };
    if current != AdminState::Active {
        return Err(ApiError::Conflict(format!(
            "{target} is {current:?} already: a drill starts from an active target and restores it"
        )));
    }
    // Would anything be left? The same verdicts the answers use, on the drilled state.
    let mut drilled_state: State = (*snapshot.state).clone();
    match member {
        Some(id) => drilled_state.member_mut(id).admin = admin,
        None => drilled_state.site_mut(site).admin = admin,
    }
    for service_id in &services {
        let service = deployment.service(*service_id);
        let healthy_site = deployment.site_ids().any(|s| {
            let eligible = service
                .members
                .iter()
                .filter(|m| deployment.member(**m).site == s)
                .filter(|m| {
                    [Family::V4, Family::V6].iter().any(|f| {
                        member_verdict(deployment, &drilled_state, **m, *f, snapshot.built_at)
                            .is_ok()
                    })
                })
                .count();
            eligible > 0 && eligible >= service.min_healthy
        });
        if !healthy_site {
            return Err(ApiError::Conflict(format!(
                "refused: draining {target} would leave service {} with no healthy site",
                service.name
            )));
        }
    }
    let drilled: Vec<IpAddr> = services
        .iter()
        .flat_map(|s| deployment.service(*s).members.iter().copied())
        .filter(|m| match member {
            Some(id) => *m == id,
            None => deployment.member(*m).site == site,
        })
        .map(|m| snapshot.state.address_of(deployment, m))
        .collect();
    let names = services
        .iter()
        .map(|s| {
            let service = deployment.service(*s);
            let aaaa = !drilled.iter().any(IpAddr::is_ipv4);
            (service.name.clone(), service.fqdn.to_string(), aaaa)
        })
        .collect();
    let vantages: Vec<IpNet> = if request.vantages.is_empty() {
        deployment
            .sites
            .iter()
            .filter_map(|s| s.client_networks.first())
            .map(|net| {
                let len = match net {
                    IpNet::V4(_) => net.prefix_len().max(24),
                    IpNet::V6(_) => net.prefix_len().max(56),
                };
                IpNet::new(net.addr(), len)
                    .map(|n| n.trunc())
                    .unwrap_or(*net)
            })
            .collect()
    } else {
        request.vantages.iter().map(IpNet::trunc).collect()
    };
    if vantages.is_empty() {
        return Err(ApiError::BadRequest(
            "no vantage subnets: no site has client_networks; give \"vantages\"".into(),
        ));
    }
    let own_id = snapshot.store.node_id;
    let mut nodes = Vec::new();
    if let Some(own) = ctx.dns.first() {
        nodes.push((format!("node {own_id} (this node)"), *own));
    }
    let mut not_queried = Vec::new();
    for node in deployment.store.nodes.iter().filter(|n| n.id != own_id) {
        match node.dns {
            Some(dns) => nodes.push((format!("node {}", node.id), dns)),
            None => not_queried.push(node.id),
        }
    }
    let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(10_000).clamp(500, 300_000));
    let interval = Duration::from_millis(request.interval_ms.unwrap_or(50).clamp(10, 5_000));
    let id = ctx.drills.next.fetch_add(1, Ordering::Relaxed);
    Ok(Plan {
        id,
        target,
        mode: request.mode,
        names,
        drilled,
        nodes,
        not_queried,
        vantages,
        timeout,
        interval,
        who: request.who.clone().unwrap_or_else(|| caller.to_string()),
        why: request.why.clone().unwrap_or_else(|| "DR drill".into()),
    })
}

/// Marks a drill as running; `false` when one already is.
pub fn begin(ctx: &AdminContext) -> bool {
    !ctx.drills.running.swap(true, Ordering::SeqCst)
}

/// What every (node, vantage) answers now: whether a drilled address is among the answers.
async fn ask(plan: &Plan, node: SocketAddr, vantage: IpNet) -> Result<(bool, Vec<IpAddr>), String> {
    let mut all = Vec::new();
    for (_, name, aaaa) in &plan.names {
        let answer =
            crate::dns::client::addresses(node, name, *aaaa, vantage, Duration::from_millis(500))
                .await?;
        all.extend(answer);
    }
    let present = all.iter().any(|a| plan.drilled.contains(a));
    Ok((present, all))
}

/// Runs a planned drill to its end (the caller has called [`begin`]).
pub async fn run(ctx: AdminContext, plan: Plan) -> DrillReport {
    let started_at_ms = crate::admin::now().0;
    let mut results: Vec<NodeResult> = plan
        .nodes
        .iter()
        .map(|(name, dns)| NodeResult {
            node: name.clone(),
            dns: *dns,
            vantages: plan
                .vantages
                .iter()
                .map(|v| VantageResult {
                    vantage: *v,
                    answered_before: false,
                    converged_ms: None,
                    restored_ms: None,
                    last_answer: Vec::new(),
                    errors: 0,
                })
                .collect(),
        })
        .collect();
    // Before: which vantages see the target at all.
    for node in results.iter_mut() {
        for v in node.vantages.iter_mut() {
            match ask(&plan, node.dns, v.vantage).await {
                Ok((present, answer)) => {
                    v.answered_before = present;
                    v.last_answer = answer;
                }
                Err(_) => v.errors += 1,
            }
        }
    }
    let started = Instant::now();
    let action = |admin: AdminState, why: String| {
        Command::Admin(AdminAction {
            target: plan.target.clone(),
            admin,
            who: format!("drill #{} ({})", plan.id, plan.who),
            why,
        })
    };
    let admin = match plan.mode {
        DrillMode::Drain => AdminState::Drained,
        DrillMode::Fail => AdminState::ForcedDown,
    };
    let mut error = None;
    let mut applied_ms = 0;
    match crate::store_api::propose(&ctx, action(admin, plan.why.clone())).await {
        Ok(_) => applied_ms = started.elapsed().as_millis() as u64,
        Err(e) => error = Some(format!("the drain was not applied: {e}")),
    }
    if error.is_none() {
        for node in results.iter_mut() {
            // Not answered with the target before (and the node did answer): nothing to wait
            // for. A node that did not answer must answer, without the target, to count.
            for v in node
                .vantages
                .iter_mut()
                .filter(|v| !v.answered_before && v.errors == 0)
            {
                v.converged_ms = Some(0);
            }
        }
        while started.elapsed() < plan.timeout {
            let round = Instant::now();
            let pending: Vec<(usize, usize)> = results
                .iter()
                .enumerate()
                .flat_map(|(n, node)| {
                    node.vantages
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.converged_ms.is_none())
                        .map(move |(i, _)| (n, i))
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            let asked = futures_util::future::join_all(pending.iter().map(|(n, i)| {
                let node = results[*n].dns;
                let vantage = results[*n].vantages[*i].vantage;
                let plan = &plan;
                async move { ask(plan, node, vantage).await }
            }))
            .await;
            let at = started.elapsed().as_millis() as u64;
            for ((n, i), outcome) in pending.into_iter().zip(asked) {
                let v = &mut results[n].vantages[i];
                match outcome {
                    Ok((present, answer)) => {
                        v.last_answer = answer;
                        if !present {
                            v.converged_ms = Some(at);
                        }
                    }
                    Err(_) => v.errors += 1,
                }
            }
            tokio::time::sleep(plan.interval.saturating_sub(round.elapsed())).await;
        }
    }
    let converged = error.is_none()
        && results
            .iter()
            .all(|n| n.vantages.iter().all(|v| v.converged_ms.is_some()));
    let max_converged_ms = results
        .iter()
        .flat_map(|n| n.vantages.iter().filter_map(|v| v.converged_ms))
        .max();
    let outcome = match (&error, converged) {
        (Some(e), _) => format!("error: {e}"),
        (None, true) => format!("converged in {} ms", max_converged_ms.unwrap_or(0)),
        (None, false) => format!("not converged within {} ms", plan.timeout.as_millis()),
    };
    // Restore, whatever happened; retried, since a restore must not be lost.
    let mut restored = false;
    let restore_started = Instant::now();
    for attempt in 0..10 {
        match crate::store_api::propose(
            &ctx,
            action(
                AdminState::Active,
                format!("restore after drill #{}: {outcome}", plan.id),
            ),
        )
        .await
        {
            Ok(_) => {
                restored = true;
                break;
            }
            Err(e) => {
                tracing::warn!(drill = plan.id, attempt, error = %e, "restore not applied yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if !restored && error.is_none() {
        error = Some("the restore could not be applied: restore the target by hand".into());
    }
    if restored {
        while restore_started.elapsed() < plan.timeout {
            let mut waiting = false;
            for node in results.iter_mut() {
                for v in node
                    .vantages
                    .iter_mut()
                    .filter(|v| v.answered_before && v.restored_ms.is_none())
                {
                    waiting = true;
                    if let Ok((true, answer)) = ask(&plan, node.dns, v.vantage).await {
                        v.last_answer = answer;
                        v.restored_ms = Some(restore_started.elapsed().as_millis() as u64);
                    }
                }
            }
            if !waiting {
                break;
            }
            tokio::time::sleep(plan.interval).await;
        }
    }
    let max_restored_ms = results
        .iter()
        .flat_map(|n| n.vantages.iter().filter_map(|v| v.restored_ms))
        .max();
    let status = match (&error, converged) {
        (Some(_), _) => "error",
        (None, true) => "converged",
        (None, false) => "timeout",
    };
    let mut report = DrillReport {
        id: plan.id,
        target: plan.target.to_string(),
        mode: plan.mode,
        services: plan.names.iter().map(|(name, _, _)| name.clone()).collect(),
        who: plan.who.clone(),
        why: plan.why.clone(),
        started_at_ms,
        applied_ms,
        timeout_ms: plan.timeout.as_millis() as u64,
        interval_ms: plan.interval.as_millis() as u64,
        status: status.into(),
        max_converged_ms,
        max_restored_ms,
        restored,
        nodes: results,
        not_queried: plan.not_queried.clone(),
        error,
        summary: String::new(),
    };
    report.summary = summary(&report);
    ctx.drills.keep(&report);
    ctx.drills.running.store(false, Ordering::SeqCst);
    report
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "never".to_string(), |v| format!("{v} ms"))
}

/// The readable report.
pub fn summary(report: &DrillReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DR drill #{}: {:?} {} (services {}) by {}: {}",
        report.id,
        report.mode,
        report.target,
        report.services.join(", "),
        report.who,
        report.why
    );
    let _ = writeln!(
        out,
        "status {}; applied by the store in {} ms; out of every answer after {}; back after {}; restored: {}",
        report.status,
        report.applied_ms,
        ms(report.max_converged_ms),
        ms(report.max_restored_ms),
        if report.restored { "yes" } else { "NO" }
    );
    for node in &report.nodes {
        let _ = writeln!(out, "  {} at {}", node.node, node.dns);
        for v in &node.vantages {
            let before = if v.answered_before {
                "answered with the target"
            } else {
                "not answered with it"
            };
            let _ = writeln!(
                out,
                "    {:<20} {before:<25} gone after {:<9} back after {}",
                v.vantage.to_string(),
                ms(v.converged_ms),
                if v.answered_before {
                    ms(v.restored_ms)
                } else {
                    "-".into()
                }
            );
        }
    }
    if !report.not_queried.is_empty() {
        let _ = writeln!(
            out,
            "  not asked (no `dns` address in [[store.nodes]]): {:?}",
            report.not_queried
        );
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "  error: {error}");
    }
    out
}
