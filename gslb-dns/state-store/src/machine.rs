//! The replicated state machine: what every node holds once it has applied the log, and the
//! pure [`apply`] that gets it there. The deployment itself (zone, sites, services, members)
//! is part of the machine, versioned, so `apply` depends on nothing but the machine, the
//! index and the command: replicas that apply the same log reach equal machines whatever
//! their files say. Records are keyed by name (`service/node`, site), not by configuration
//! index, so they survive a deployment that adds or reorders members; [`Machine::state`]
//! projects them onto a [`Deployment`] as a `topology::State`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topology::wire::config::{ConfigVersion, DeploymentChange, DeploymentDiff};
use topology::wire::views::{Change, NodeAddress, RttEntry};
use topology::wire::{
    AdminAction, AgentReport, Command, Envelope, PassiveReport, RttReport, Target, bounded_text,
};
use topology::{
    AdminState, Deployment, Health, MemberState, PassiveMark, SiteState, State, Timestamp,
    VantageSeen,
};

/// How many changes the history keeps.
pub const HISTORY_LEN: usize = 1000;
/// How many agents a site's progress is kept for; a new one beyond that replaces the one
/// heard from longest ago (agents named after their process come and go with restarts).
pub const AGENTS_PER_SITE: usize = 32;
/// How many RTT prefixes a site keeps (the oldest are dropped first).
pub const RTT_PREFIXES_PER_SITE: usize = 65_536;
/// How many deployment versions the store keeps for history and rollback...
pub const CONFIG_VERSIONS_KEPT: usize = 64;
/// ...and how many bytes of their documents at most (the current one is always kept).
pub const CONFIG_BYTES_KEPT: usize = 8 << 20;

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
    /// Set by a proxy's passive report, cleared by the agent's confirmation.
    #[serde(default)]
    pub passive: Option<PassiveMark>,
    /// What other sites' agents found probing it while its own site's agent was silent
    /// (one entry per vantage site, by site name; cleared when its own agent reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage: Vec<VantageSeen>,
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
            passive: None,
            vantage: Vec::new(),
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
    /// The deployment versions kept, oldest first; the last is the current one.
    #[serde(default)]
    pub config_versions: Arc<VecDeque<StoredVersion>>,
    /// The current version's document, read (not serialized: rebuilt from the document by
    /// [`Machine::rehydrate`]).
    #[serde(skip)]
    deployment: ReadDeployment,
    /// The log index this machine reflects.
    pub applied: u64,
}

/// A deployment version with its document (what a rollback restores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    pub record: ConfigVersion,
    pub document: String,
    /// The SOA serial used when the document sets none (the change's time, in seconds).
    pub default_serial: u64,
}

/// The current deployment as read from its document. Derived data: equal documents give
/// equal deployments, so it takes no part in comparing machines.
#[derive(Debug, Clone, Default)]
struct ReadDeployment(Option<Arc<Deployment>>);

impl PartialEq for ReadDeployment {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Who a history entry names, why, and the request's note.
struct By<'a> {
    who: &'a str,
    why: &'a str,
    note: Option<&'a str>,
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
    /// The deployment every answer comes from, once the store has one.
    pub fn deployment(&self) -> Option<&Arc<Deployment>> {
        self.deployment.0.as_ref()
    }

    /// The current deployment version and its document (`None`: the store has none yet).
    pub fn current_version(&self) -> Option<&StoredVersion> {
        self.config_versions.back()
    }

    /// The current version number (0: none yet).
    pub fn version(&self) -> u64 {
        self.current_version().map_or(0, |v| v.record.version)
    }

    /// A kept version, for a rollback.
    pub fn stored_version(&self, version: u64) -> Option<&StoredVersion> {
        self.config_versions
            .iter()
            .find(|v| v.record.version == version)
    }

    /// Reads the current version's document again (after the machine was restored from a
    /// snapshot, which does not carry the read deployment).
    pub fn rehydrate(&mut self) -> Result<(), topology::ConfigError> {
        self.deployment = match self.current_version() {
            None => ReadDeployment(None),
            Some(current) => ReadDeployment(Some(Arc::new(Deployment::from_document(
                &current.document,
                current.default_serial,
            )?))),
        };
        Ok(())
    }

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
                    target.passive = record.passive.clone();
                    target.vantage = record.vantage.clone();
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

    fn record(&mut self, index: u64, at: Timestamp, target: String, change: String, by: By<'_>) {
        let history = Arc::make_mut(&mut self.history);
        history.push_back(Change {
            index,
            at,
            target,
            change,
            who: bounded_text(by.who),
            why: bounded_text(by.why),
            note: by.note.map(bounded_text),
        });
        while history.len() > HISTORY_LEN {
            history.pop_front();
        }
    }
}

/// Applies one committed entry. Pure: the result depends only on the machine, the index
/// and the envelope (time comes from the envelope, the deployment from the machine), so
/// every replica reaches the same machine.
pub fn apply(machine: &mut Machine, index: u64, envelope: &Envelope) -> Outcome {
    machine.applied = machine.applied.max(index);
    let at = envelope.proposed_at;
    if let Command::Deployment(change) = &envelope.command {
        return apply_deployment(machine, index, at, change);
    }
    let Some(deployment) = machine.deployment().cloned() else {
        return Outcome::Ignored("the store has no deployment yet".into());
    };
    match &envelope.command {
        Command::AgentReport(report) => apply_report(&deployment, machine, index, at, report),
        Command::Admin(action) => apply_admin(&deployment, machine, index, at, action),
        Command::RttSamples(report) => apply_rtt(&deployment, machine, at, report),
        Command::PassiveReport(report) => apply_passive(&deployment, machine, index, at, report),
        Command::Deployment(_) => unreachable!("applied above"),
    }
}

/// A new deployment version: checked against the expected version, read, diffed against
/// the current one; records of names it no longer has are dropped.
fn apply_deployment(
    machine: &mut Machine,
    index: u64,
    at: Timestamp,
    change: &DeploymentChange,
) -> Outcome {
    let current = machine.version();
    if let Some(expected) = change.expect_version
        && expected != current
    {
        return Outcome::Ignored(format!(
            "the deployment is at version {current}, not {expected}: compare with the current version and apply again"
        ));
    }
    if machine
        .current_version()
        .is_some_and(|v| v.document == change.document)
    {
        return Outcome::Ignored(format!(
            "version {current} already is this deployment: nothing to change"
        ));
    }
    let default_serial = at.0 / 1000;
    let deployment = match Deployment::from_document(&change.document, default_serial) {
        Ok(deployment) => Arc::new(deployment),
        Err(e) => return Outcome::Ignored(format!("the deployment is not valid: {e}")),
    };
    let diff = match machine.deployment() {
        Some(old) => topology::diff::diff(old, &deployment),
        None => DeploymentDiff {
            added: deployment
                .sites
                .iter()
                .map(|s| format!("site {}", s.name))
                .chain(
                    deployment
                        .services
                        .iter()
                        .map(|s| format!("service {}", s.name)),
                )
                .collect(),
            ..DeploymentDiff::default()
        },
    };
    let version = current + 1;
    let record = ConfigVersion {
        version,
        index,
        at,
        who: bounded_text(&change.who),
        why: bounded_text(&change.why),
        note: change.note.as_deref().map(bounded_text),
        rollback_of: change.rollback_of,
        diff,
    };
    let summary = format!("version {version}: {}", record.diff.summary());
    let versions = Arc::make_mut(&mut machine.config_versions);
    versions.push_back(StoredVersion {
        record,
        document: change.document.clone(),
        default_serial,
    });
    while versions.len() > CONFIG_VERSIONS_KEPT
        || (versions.len() > 1
            && versions.iter().map(|v| v.document.len()).sum::<usize>() > CONFIG_BYTES_KEPT)
    {
        versions.pop_front();
    }
    prune(machine, &deployment);
    machine.deployment = ReadDeployment(Some(deployment));
    machine.record(
        index,
        at,
        "deployment".into(),
        summary,
        By {
            who: &change.who,
            why: &change.why,
            note: change.note.as_deref(),
        },
    );
    Outcome::Applied
}

/// Drops what belongs to names `deployment` no longer has: member and site records, RTT
/// samples of removed sites, their cross-site probes, the progress of their agents.
fn prune(machine: &mut Machine, deployment: &Deployment) {
    let members: std::collections::HashSet<String> = deployment
        .members
        .iter()
        .map(|m| member_key(&deployment.service(m.service).name, &m.node))
        .collect();
    let known_site = |site: &str| deployment.site_by_name(site).is_some();
    if machine.members.keys().any(|k| !members.contains(k)) {
        Arc::make_mut(&mut machine.members).retain(|k, _| members.contains(k));
    }
    if machine
        .members
        .values()
        .any(|r| r.vantage.iter().any(|v| !known_site(&v.site)))
    {
        for record in Arc::make_mut(&mut machine.members).values_mut() {
            record.vantage.retain(|v| known_site(&v.site));
        }
    }
    if machine.sites.keys().any(|s| !known_site(s)) {
        Arc::make_mut(&mut machine.sites).retain(|s, _| known_site(s));
    }
    if machine.rtt.keys().any(|s| !known_site(s)) {
        Arc::make_mut(&mut machine.rtt).retain(|s, _| known_site(s));
    }
    if machine.agents.values().any(|a| !known_site(&a.site)) {
        Arc::make_mut(&mut machine.agents).retain(|_, a| known_site(&a.site));
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
    let agent = bounded_text(&report.agent);
    if let Some(progress) = machine.agents.get(&agent)
        && report.sequence <= progress.sequence
    {
        return Outcome::Ignored(format!(
            "report {} of agent {:?} is not newer than {}",
            report.sequence, report.agent, progress.sequence
        ));
    }
    let agents = Arc::make_mut(&mut machine.agents);
    if !agents.contains_key(&agent) {
        let mut of_site: Vec<(&String, &AgentProgress)> = agents
            .iter()
            .filter(|(_, a)| a.site == report.site)
            .collect();
        if of_site.len() >= AGENTS_PER_SITE {
            of_site.sort_by_key(|(name, a)| (a.received_at, (*name).clone()));
            let stalest = of_site[0].0.clone();
            agents.remove(&stalest);
        }
    }
    agents.insert(
        agent.clone(),
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
        record.reason = bounded_text(&observation.reason);
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
        // Its own agent speaks again: what other sites saw while it was silent is moot.
        record.vantage.clear();
        // The agent's fresh probes answer a passive mark it was told of: the member serves.
        if let Some(mark) = &record.passive
            && observation.health == Health::Up
            && observation
                .passive_confirmed
                .is_some_and(|confirmed| confirmed >= mark.index)
        {
            let change = format!("passive mark of index {} cleared", mark.index);
            record.passive = None;
            changes.push((change, "the agent's probes confirm it serves"));
        }
        for (change, why) in changes {
            machine.record(
                index,
                at,
                format!("member {key}"),
                change,
                By {
                    who: &report.agent,
                    why,
                    note: None,
                },
            );
        }
    }
    let foreign = apply_vantage(deployment, machine, index, at, site, report);
    match (ignored.is_empty(), foreign.is_empty()) {
        (true, true) => Outcome::Applied,
        (false, _) => Outcome::Ignored(format!(
            "not members of site {}: {}",
            report.site,
            ignored.join(", ")
        )),
        (true, false) => Outcome::Ignored(format!(
            "not members of another site: {}",
            foreign.join(", ")
        )),
    }
}

/// The cross-site probes in an agent's report: each member of another site it names gets
/// this site's entry in its vantage list (what keeps a site whose agent is silent in
/// answers, or takes it out). Returns the members named that are not of another site.
fn apply_vantage(
    deployment: &Deployment,
    machine: &mut Machine,
    index: u64,
    at: Timestamp,
    site: topology::SiteId,
    report: &AgentReport,
) -> Vec<String> {
    let mut ignored = Vec::new();
    for observation in &report.vantage {
        let key = member_key(&observation.service, &observation.node);
        let known = deployment
            .member_by_name(&observation.service, &observation.node)
            .map(|id| deployment.member(id));
        if known.is_none_or(|m| m.site == site) {
            ignored.push(key);
            continue;
        }
        let record = Arc::make_mut(&mut machine.members)
            .entry(key.clone())
            .or_default();
        let seen = VantageSeen {
            site: report.site.clone(),
            up: observation.up,
            at,
            reason: bounded_text(&observation.reason),
        };
        let before = record.vantage.iter().position(|v| v.site == report.site);
        let flipped = before.is_none_or(|i| record.vantage[i].up != seen.up);
        let change = format!(
            "{} from {}: {}",
            if seen.up { "serving" } else { "unreachable" },
            report.site,
            seen.reason
        );
        match before {
            Some(i) => record.vantage[i] = seen,
            None => {
                record.vantage.push(seen);
                record.vantage.sort_by(|a, b| a.site.cmp(&b.site));
            }
        }
        if flipped {
            machine.record(
                index,
                at,
                format!("member {key}"),
                change,
                By {
                    who: &report.agent,
                    why: "cross-site probe: its site's agent is silent",
                    note: None,
                },
            );
        }
    }
    ignored
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
        By {
            who: &action.who,
            why: &action.why,
            note: action.note.as_deref(),
        },
    );
    Outcome::Applied
}

/// The largest share of a service's members at one site that passive marks may hold: a
/// proxy that cannot reach most of its members is more likely broken itself (its network,
/// its file descriptors) than they are, so past this its reports mark nothing more (as
/// Envoy's `max_ejection_percent`). One member may always be marked.
pub fn passive_limit(members_at_site: usize) -> usize {
    (members_at_site / 2).max(1)
}

/// A proxy's passive report: each member it names (of its own site, of a service with a
/// check, so an agent can confirm recovery, and not already down or marked) is marked,
/// within [`passive_limit`].
fn apply_passive(
    deployment: &Deployment,
    machine: &mut Machine,
    index: u64,
    at: Timestamp,
    report: &PassiveReport,
) -> Outcome {
    let Some(site) = deployment.site_by_name(&report.site) else {
        return Outcome::Ignored(format!("no site {:?}", report.site));
    };
    let mut ignored = Vec::new();
    for observation in &report.members {
        let key = member_key(&observation.service, &observation.node);
        let Some(id) = deployment.member_by_name(&observation.service, &observation.node) else {
            ignored.push(format!("{key}: no such member"));
            continue;
        };
        let member = deployment.member(id);
        let service = deployment.service(member.service);
        if member.site != site {
            ignored.push(format!("{key}: not a member of site {}", report.site));
            continue;
        }
        if service.check.is_none() {
            ignored.push(format!("{key}: no check could confirm its recovery"));
            continue;
        }
        let record = machine.members.get(&key);
        if record.is_some_and(|r| r.passive.is_some() || r.health == Health::Down) {
            continue;
        }
        let peers: Vec<String> = service
            .members
            .iter()
            .map(|m| deployment.member(*m))
            .filter(|m| m.site == site)
            .map(|m| member_key(&service.name, &m.node))
            .collect();
        let marked = peers
            .iter()
            .filter(|k| machine.members.get(*k).is_some_and(|r| r.passive.is_some()))
            .count();
        if marked + 1 > passive_limit(peers.len()) {
            ignored.push(format!(
                "{key}: {marked} of {} members of {} at {} already marked passively",
                peers.len(),
                service.name,
                report.site
            ));
            continue;
        }
        let reason = bounded_text(&observation.reason);
        let change = format!("passive down: {reason}");
        Arc::make_mut(&mut machine.members)
            .entry(key.clone())
            .or_default()
            .passive = Some(PassiveMark {
            index,
            at,
            by: bounded_text(&report.proxy),
            reason,
        });
        machine.record(
            index,
            at,
            format!("member {key}"),
            change,
            By {
                who: &report.proxy,
                why: "proxy data path",
                note: None,
            },
        );
    }
    if ignored.is_empty() {
        Outcome::Applied
    } else {
        Outcome::Ignored(ignored.join("; "))
    }
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
