//! Messages between Portico's processes, typed on both ends: what site agents and proxies
//! post to the store, the commands the store replicates ([`Envelope`]), and every view the
//! admin API answers with ([`views`], [`config`], [`drill`]). The server, the proxy, the
//! agent and the `portico` CLI read and write these same types.
//!
//! Compatibility across versions: readers accept fields they do not know (a newer peer may
//! send more), so reports, samples and views deny no unknown field. The requests an
//! operator makes (actions, drills, configuration changes, membership) do: a typo, or a
//! feature the server does not have, is an error rather than silently ignored. A field a
//! reader needs is never defaulted: a message without it is refused, so a renamed field
//! cannot silently turn into "weight 100" or "not drained". Replicated commands carry a format
//! version in their [`Envelope`]; a replica that meets a newer one stops applying instead
//! of guessing.

pub mod config;
pub mod drill;
pub mod views;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::{AdminState, Health, Timestamp};

/// The format version this build writes. Version 2 added [`Command::Deployment`], version 3
/// [`Command::PassiveReport`] and the agent's [`MemberObservation::passive_confirmed`],
/// version 4 the agent's [`AgentReport::vantage`].
pub const WIRE_VERSION: u16 = 4;

/// The oldest envelope version this build still applies (entries already in a log).
pub const OLDEST_WIRE_VERSION: u16 = 1;

/// The longest `who`, `why`, reason or agent name a replicated command keeps when it is
/// applied (longer text is cut at a character boundary). Applying must not change between
/// builds, so this stays; what the API accepts is [`MAX_ACCEPTED_TEXT`].
pub const MAX_TEXT: usize = 512;

/// The longest `who`, `why`, note, probe reason or agent name the admin API accepts; a
/// longer one is refused (400) before anything is proposed.
pub const MAX_ACCEPTED_TEXT: usize = 256;

/// `text` cut to at most [`MAX_TEXT`] bytes, at a character boundary.
pub fn bounded_text(text: &str) -> String {
    clipped(text, MAX_TEXT)
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Refuses a text field over [`MAX_ACCEPTED_TEXT`] bytes, naming the field.
pub fn accepted_text(field: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_ACCEPTED_TEXT {
        return Err(format!(
            "`{field}` is {} bytes; at most {MAX_ACCEPTED_TEXT} are accepted",
            text.len()
        ));
    }
    Ok(())
}

/// One replicated command, with who proposed it and when (the proposing node's clock:
/// time is carried in commands, never read while applying).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    /// Unique per proposal (`<node>-<counter>`), so a node can tell when its proposal applied.
    pub id: String,
    pub proposed_at: Timestamp,
    pub command: Command,
}

/// What the store applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Command {
    /// A site agent's batch of observations.
    AgentReport(AgentReport),
    /// An operator's decision.
    Admin(AdminAction),
    /// Client RTT aggregates measured by a proxy.
    RttSamples(RttReport),
    /// A new version of the deployment (zone, sites, services, members).
    Deployment(config::DeploymentChange),
    /// Members a proxy saw fail on the data path.
    PassiveReport(PassiveReport),
}

/// What a proxy saw on the data path: members whose connections failed `eject_after` times
/// in a row. The store marks them passively down (see [`crate::PassiveMark`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveReport {
    pub site: String,
    /// The proxy's name, for the history.
    pub proxy: String,
    pub members: Vec<PassiveObservation>,
}

/// One member a proxy saw fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveObservation {
    pub service: String,
    pub node: String,
    /// What failed (`3 failures in a row: connect_refused`).
    pub reason: String,
}

/// A passive mark an agent is asked to confirm: the answer to its report lists the marks
/// on its site's members, and the agent names the one its fresh probes answer in
/// [`MemberObservation::passive_confirmed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassivePending {
    pub service: String,
    pub node: String,
    /// The mark's index ([`crate::PassiveMark::index`]).
    pub mark: u64,
}

impl Command {
    /// The oldest wire version that can apply this command: what its envelope carries, so
    /// a replica not yet upgraded stops only on a command it truly cannot apply (during a
    /// rolling upgrade, agent reports and admin actions keep flowing to every node).
    pub fn wire_version(&self) -> u16 {
        match self {
            Command::AgentReport(report) if !report.vantage.is_empty() => 4,
            Command::AgentReport(report)
                if report.members.iter().any(|m| m.passive_confirmed.is_some()) =>
            {
                3
            }
            Command::AgentReport(_) | Command::Admin(_) | Command::RttSamples(_) => 1,
            Command::Deployment(_) => 2,
            Command::PassiveReport(_) => 3,
        }
    }
}

/// A site agent's report: the state of the members it probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub site: String,
    /// The agent's name (host), for the history.
    pub agent: String,
    /// Increases with every report of this agent; older reports are ignored.
    pub sequence: u64,
    /// The agent's clock when it sent the report.
    pub sent_at: Timestamp,
    pub members: Vec<MemberObservation>,
    /// Members of other sites this agent probed across sites because the store asked
    /// ([`Written::vantage`]): their own site's agent has gone silent. Absent from agents
    /// before version 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage: Vec<VantageObservation>,
}

/// What an agent's probe of another site's member found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VantageObservation {
    pub service: String,
    pub node: String,
    /// Whether the member served the check (its last probe).
    pub up: bool,
    pub reason: String,
}

/// One member as the agent sees it (after rise/fall).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberObservation {
    pub service: String,
    pub node: String,
    pub health: Health,
    pub reason: String,
    /// Smoothed probe latency, when the probe measured one.
    pub latency_us: Option<u32>,
    /// Load-feedback weight in percent (100 = as configured).
    pub weight_percent: u32,
    /// What the node's load-feedback agent asked for: `drained` or `maintenance` until it
    /// says `ready` again.
    pub agent_admin: AdminState,
    /// For a slot of a discovered group: the address the agent assigned to it (`None`
    /// when the name resolves to fewer addresses than there are slots).
    pub address: Option<std::net::IpAddr>,
    /// The newest passive mark (by index) that `rise` probes in a row, all made after the
    /// agent learned of it, found the member serving. Absent from agents before version 3,
    /// which confirm nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_confirmed: Option<u64>,
}

/// What an admin action applies to, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    Member { service: String, node: String },
    Site { site: String },
    Service { service: String },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Member { service, node } => write!(f, "member {service}/{node}"),
            Target::Site { site } => write!(f, "site {site}"),
            Target::Service { service } => write!(f, "service {service}"),
        }
    }
}

/// An operator's action: set the admin state of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminAction {
    pub target: Target,
    pub admin: AdminState,
    /// The authenticated identity that asked.
    pub who: String,
    pub why: String,
    /// A `who` the request itself gave, kept as a note (it proves nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// RTT aggregates a proxy measured for client prefixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttReport {
    pub site: String,
    pub samples: Vec<RttSample>,
}

/// The smoothed RTT from a site to the clients of one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttSample {
    pub prefix: IpNet,
    pub rtt_us: u32,
    pub samples: u32,
}

/// The answer to an accepted write (a report, RTT samples): the log index it applied at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub index: u64,
    /// For an agent's report: the passive marks on its site's members it is to confirm
    /// (none from a node before version 3, which sets no marks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passive: Vec<PassivePending>,
    /// For an agent's report: the other sites whose agents have gone quiet, whose members
    /// this agent is asked to probe across sites and report in [`AgentReport::vantage`]
    /// (none from a node before version 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage: Vec<String>,
}

/// Every error the admin API answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// For 503: when to try again.
    pub retry_after_ms: Option<u64>,
    /// For a refused configuration: the key it is about, and its line in the document sent.
    pub key: Option<String>,
    pub line: Option<usize>,
}

#[cfg(test)]
mod tests;
