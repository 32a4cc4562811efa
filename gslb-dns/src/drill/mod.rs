//! DR drills: drain (or fail) a site or one member through the store, ask every gslb-dns
//! node from several client subnets (ECS) every `interval` until no answer names the
//! target, record per node and vantage how long that took, restore the target (also after
//! a timeout or an error), measure how fast it comes back, and keep a report (JSON and text)
//! in memory and under `<data_dir>/drills/`. The drain and the restore are admin actions, so
//! the replicated history records both, the restore with the drill's result.
//!
//! Planning is pure ([`plan`]); running needs the store (to write) and DNS (to ask).

pub mod plan;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use portico_client::dns::{Answer, Question, ask as dns_ask};
use topology::AdminState;
use topology::wire::drill::{DrillReport, DrillStatus, NodeResult, VantageResult};
use topology::wire::{AdminAction, Command};

pub use plan::{Plan, PlanError, plan};

use crate::control::Control;
use crate::store::Store;

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

    /// A new drill's id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks a drill as running; `false` when one already is.
    pub fn begin(&self) -> bool {
        !self.running.swap(true, Ordering::SeqCst)
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

/// What a running drill writes through and keeps its report in.
#[derive(Debug, Clone)]
pub struct DrillContext {
    pub store: Arc<Store>,
    pub control: Arc<Control>,
    pub drills: Arc<Drills>,
}

/// The DNS nodes a drill asks: this one first, then every store node with a `dns`
/// address; the store nodes without one are listed apart.
pub fn nodes_to_ask(
    store: &Store,
    own_dns: &[SocketAddr],
) -> (Vec<(String, SocketAddr)>, Vec<u64>) {
    let own_id = store.node.id();
    let mut nodes = Vec::new();
    if let Some(own) = own_dns.first() {
        nodes.push((format!("node {own_id} (this node)"), *own));
    }
    let mut not_queried = Vec::new();
    for node in store.settings().nodes.iter().filter(|n| n.id != own_id) {
        match node.dns {
            Some(dns) => nodes.push((format!("node {}", node.id), dns)),
            None => not_queried.push(node.id),
        }
    }
    (nodes, not_queried)
}

/// What every (node, vantage) answers now: whether a drilled address is among the answers.
async fn ask(
    plan: &Plan,
    node: SocketAddr,
    vantage: IpNet,
) -> Result<(bool, Vec<std::net::IpAddr>), String> {
    let mut all = Vec::new();
    for (_, name, aaaa) in &plan.names {
        let question = Question {
            name: name.clone(),
            aaaa: *aaaa,
            subnet: Some(vantage),
            recursive: false,
        };
        let answer = dns_ask(node, &question, Duration::from_millis(500))
            .await
            .map_err(|e| e.to_string())?;
        if answer.rcode != Answer::NOERROR {
            return Err(answer.rcode_name());
        }
        all.extend(answer.addresses);
    }
    let present = all.iter().any(|a| plan.drilled.contains(a));
    Ok((present, all))
}

/// Runs a planned drill to its end (the caller has called [`Drills::begin`]).
pub async fn run(ctx: DrillContext, plan: Plan) -> DrillReport {
    let started_at_ms = state_store::clock::now().0;
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
            note: plan.note.clone(),
        })
    };
    let admin = plan.admin();
    let mut error = None;
    let mut applied_ms = 0;
    match ctx
        .store
        .write(&ctx.control, action(admin, plan.why.clone()))
        .await
    {
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
        let restore = action(
            AdminState::Active,
            format!("restore after drill #{}: {outcome}", plan.id),
        );
        match ctx.store.write(&ctx.control, restore).await {
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
        (Some(_), _) => DrillStatus::Error,
        (None, true) => DrillStatus::Converged,
        (None, false) => DrillStatus::Timeout,
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
        status,
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
        status_name(report.status),
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

fn status_name(status: DrillStatus) -> &'static str {
    match status {
        DrillStatus::Converged => "converged",
        DrillStatus::Timeout => "timeout",
        DrillStatus::Error => "error",
    }
}
