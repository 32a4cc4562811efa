//! The replicated state machine: what every node holds once it has applied the log, and the
//! pure [`apply`] that gets it there. Records are keyed by name (`service/node`, site), not by
//! configuration index, so a snapshot survives a configuration that adds or reorders
//! members; [`Machine::state`] projects them onto a [`Deployment`] as a `topology::State`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topology::wire::{AdminAction, AgentReport, Command, Envelope, RttReport, Target};
use topology::{AdminState, Deployment, Health, MemberState, SiteState, State, Timestamp};

/// How many changes the history keeps.
pub const HISTORY_LEN: usize = 1000;
/// How many RTT prefixes a site keeps (the oldest are dropped first).
pub const RTT_PREFIXES_PER_SITE: usize = 65_536;

/// One member's replicated record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub health: Health,
    pub reason: String,
    pub latency_us: Option<u32>,
    pub weight_percent: u32,
    pub admin: AdminState,
    /// Set by the node's load-feedback agent through its site agent's reports.
    #[serde(default)]
    pub agent_admin: AdminState,
    /// For a slot of a discovered group: its current address.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// When the health last changed (the proposing node's clock).
    pub changed_at: Option<Timestamp>,
}

impl Default for MemberRecord {
    fn default() -> Self {
        MemberRecord {
            health: Health::Unknown,
            reason: "no report yet".into(),
            latency_us: None,
            weight_percent: 100,
            admin: AdminState::Active,
            agent_admin: AdminState::Active,
            address: None,
            changed_at: None,
        }
    }
}

/// One site's replicated record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRecord {
    pub admin: AdminState,
    /// When its agent last reported (the proposing node's clock).
    pub last_report: Option<Timestamp>,
}

impl Default for SiteRecord {
    fn default() -> Self {
        SiteRecord {
            admin: AdminState::Active,
            last_report: None,
        }
    }
}

/// An agent's progress: reports with a sequence at or below `sequence` are old news.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentProgress {
    pub site: String,
    pub sequence: u64,
    pub sent_at: Timestamp,
    pub received_at: Timestamp,
}

/// A smoothed RTT from a site to a client prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttEntry {
    pub rtt_us: u32,
    pub samples: u32,
    pub at: Timestamp,
}

/// One entry of the change history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    pub at: Timestamp,
    pub target: String,
    pub change: String,
    pub who: String,
    pub why: String,
}

/// Everything the store replicates. Each part is shared copy-on-write (`Arc`), so the
/// node publishes a snapshot of the machine after every applied batch for the price of a
/// few reference counts, and applying a command copies only the parts it changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Machine {
    /// `service/node` -> record.
    pub members: Arc<BTreeMap<String, MemberRecord>>,
    pub sites: Arc<BTreeMap<String, SiteRecord>>,
    pub agents: Arc<BTreeMap<String, AgentProgress>>,
    /// site -> prefix -> RTT.
    pub rtt: Arc<BTreeMap<String, BTreeMap<IpNet, RttEntry>>>,
    pub history: Arc<VecDeque<Change>>,
    /// Addresses of nodes added through membership changes (node id -> addresses).
    #[serde(default)]
    pub nodes: Arc<BTreeMap<u64, NodeAddress>>,
    /// The log index this machine reflects.
    pub applied: u64,
}

/// Where a store node listens, carried in its membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    pub raft: String,
    #[serde(default)]
    pub api: Option<String>,
}

/// What applying one command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Valid but not applied (an old report, an unknown name), with the reason.
    Ignored(String),
}

fn member_key(service: &str, node: &str) -> String {
    format!("{service}/{node}")
}

impl Machine {
    /// Projects the records onto `deployment`: members and sites without a record get the
    /// initial state (statically up without a check, unknown with one).
    pub fn state(&self, deployment: &Deployment) -> State {
        let mut state = State::initial(deployment);
        for member in &deployment.members {
            let service = &deployment.service(member.service).name;
            if let Some(record) = self.members.get(&member_key(service, &member.node)) {
                let target = state.member_mut(member.id);
                let checked = deployment.service(member.service).check.is_some();
                // A service without a check stays statically up whatever was reported.
                if checked {
                    target.health = record.health;
                    target.reason = record.reason.clone();
                }
                *target = MemberState {
                    weight_percent: record.weight_percent,
                    admin: record.admin,
                    agent_admin: record.agent_admin,
                    address: record.address.filter(|_| member.discover.is_some()),
                    latency_us: record.latency_us,
                    ..target.clone()
                };
            }
        }
        for id in deployment.site_ids() {
            if let Some(record) = self.sites.get(&deployment.site(id).name) {
                *state.site_mut(id) = SiteState {
                    admin: record.admin,
                    last_report: record.last_report,
                };
            }
        }
        state
    }

    fn record(
        &mut self,
        index: u64,
        at: Timestamp,
        target: String,
        change: String,
        who: &str,
        why: &str,
    ) {
        let history = Arc::make_mut(&mut self.history);
        history.push_back(Change {
            index,
            at,
            target,
            change,
            who: who.to_owned(),
            why: why.to_owned(),
        });
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
    }
}

/// Applies one committed entry. Pure: the result depends only on the arguments (time comes
/// from the envelope), so every replica reaches the same machine.
pub fn apply(
    deployment: &Deployment,
    machine: &mut Machine,
    index: u64,
    envelope: &Envelope,
) -> Outcome {
    machine.applied = machine.applied.max(index);
    let at = envelope.proposed_at;
    match &envelope.command {
        Command::AgentReport(report) => apply_report(deployment, machine, index, at, report),
        Command::Admin(action) => apply_admin(deployment, machine, index, at, action),
        Command::RttSamples(report) => apply_rtt(deployment, machine, at, report),
    }
}

fn apply_report(
    deployment: &Deployment,
    machine: &mut Machine,
    index: u64,
    at: Timestamp,
    report: &AgentReport,
) -> Outcome {
    let Some(site) = deployment.site_by_name(&report.site) else {
        return Outcome::Ignored(format!("no site {:?}", report.site));
    };
    if let Some(progress) = machine.agents.get(&report.agent)
        && report.sequence <= progress.sequence
    {
        return Outcome::Ignored(format!(
            "report {} of agent {:?} is not newer than {}",
            report.sequence, report.agent, progress.sequence
        ));
    }
    Arc::make_mut(&mut machine.agents).insert(
        report.agent.clone(),
        AgentProgress {
            site: report.site.clone(),
            sequence: report.sequence,
            sent_at: report.sent_at,
            received_at: at,
        },
    );
    Arc::make_mut(&mut machine.sites)
        .entry(report.site.clone())
        .or_default()
        .last_report = Some(at);
    let mut ignored = Vec::new();
    for observation in &report.members {
        let known = deployment
            .member_by_name(&observation.service, &observation.node)
            .map(|id| deployment.member(id));
        // An agent speaks only for its own site's members.
        if known.is_none_or(|m| m.site != site) {
            ignored.push(member_key(&observation.service, &observation.node));
            continue;
        }
        let key = member_key(&observation.service, &observation.node);
        let record = Arc::make_mut(&mut machine.members)
            .entry(key.clone())
            .or_default();
        let mut changes = Vec::new();
        record.reason = observation.reason.clone();
        record.latency_us = observation.latency_us;
        record.weight_percent = observation.weight_percent;
        if record.address != observation.address {
            record.address = observation.address;
            let change = match observation.address {
                Some(address) => format!("discovered address {address}"),
                None => "no discovered address".to_owned(),
            };
            changes.push((change, "discovery"));
        }
        if record.agent_admin != observation.agent_admin {
            record.agent_admin = observation.agent_admin;
            let change = format!("agent admin {:?}", observation.agent_admin).to_lowercase();
            changes.push((change, "load feedback"));
        }
        if record.health != observation.health {
            record.health = observation.health;
            record.changed_at = Some(at);
            let change =
                format!("health {:?}: {}", observation.health, observation.reason).to_lowercase();
            changes.push((change, "agent report"));
        }
        for (change, why) in changes {
            machine.record(
                index,
                at,
                format!("member {key}"),
                change,
                &report.agent,
                why,
            );
        }
    }
    if ignored.is_empty() {
        Outcome::Applied
    } else {
        Outcome::Ignored(format!(
            "not members of site {}: {}",
            report.site,
            ignored.join(", ")
        ))
    }
}

fn apply_admin(
    deployment: &Deployment,
    machine: &mut Machine,
    index: u64,
    at: Timestamp,
    action: &AdminAction,
) -> Outcome {
    let keys: Vec<String> = match &action.target {
        Target::Member { service, node } => {
            if deployment.member_by_name(service, node).is_none() {
                return Outcome::Ignored(format!("no member {service}/{node}"));
            }
            vec![member_key(service, node)]
        }
        Target::Service { service } => match deployment.service_by_name(service) {
            Some(id) => deployment
                .service(id)
                .members
                .iter()
                .map(|m| member_key(service, &deployment.member(*m).node))
                .collect(),
            None => return Outcome::Ignored(format!("no service {service:?}")),
        },
        Target::Site { site } => {
            if deployment.site_by_name(site).is_none() {
                return Outcome::Ignored(format!("no site {site:?}"));
            }
            Arc::make_mut(&mut machine.sites)
                .entry(site.clone())
                .or_default()
                .admin = action.admin;
            Vec::new()
        }
    };
    for key in keys {
        Arc::make_mut(&mut machine.members)
            .entry(key)
            .or_default()
            .admin = action.admin;
    }
    let change = format!(
        "admin {}",
        serde_json::to_value(action.admin)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    machine.record(
        index,
        at,
        action.target.to_string(),
        change,
        &action.who,
        &action.why,
    );
    Outcome::Applied
}

fn apply_rtt(
    deployment: &Deployment,
    machine: &mut Machine,
    at: Timestamp,
    report: &RttReport,
) -> Outcome {
    if deployment.site_by_name(&report.site).is_none() {
        return Outcome::Ignored(format!("no site {:?}", report.site));
    }
    let prefixes = Arc::make_mut(&mut machine.rtt)
        .entry(report.site.clone())
        .or_default();
    for sample in &report.samples {
        prefixes.insert(
            sample.prefix.trunc(),
            RttEntry {
                rtt_us: sample.rtt_us,
                samples: sample.samples,
                at,
            },
        );
    }
    while prefixes.len() > RTT_PREFIXES_PER_SITE {
        let oldest = prefixes.iter().min_by_key(|(_, e)| e.at).map(|(p, _)| *p);
        match oldest {
            Some(prefix) => prefixes.remove(&prefix),
            None => break,
        };
    }
    Outcome::Applied
}

#[cfg(test)]
mod tests;
