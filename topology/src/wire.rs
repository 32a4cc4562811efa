//! Messages between Portico's processes: what site agents and proxies post to the store,
//! and the commands the store replicates. Serde types, versioned: every replicated command
//! travels in an [`Envelope`] with a format version, so a node can refuse what it does not
//! understand instead of misreading it.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::{AdminState, Health, Timestamp};

/// The format version this build writes and reads.
pub const WIRE_VERSION: u16 = 1;

/// One replicated command, with who proposed it and when (the proposing node's clock:
/// time is carried in commands, never read while applying).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// A site agent's report: the state of the members it probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    pub site: String,
    /// The agent's name (host), for the history.
    pub agent: String,
    /// Increases with every report of this agent; older reports are ignored.
    pub sequence: u64,
    /// The agent's clock when it sent the report.
    pub sent_at: Timestamp,
    pub members: Vec<MemberObservation>,
}

/// One member as the agent sees it (after rise/fall).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberObservation {
    pub service: String,
    pub node: String,
    pub health: Health,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub latency_us: Option<u32>,
    /// Load-feedback weight in percent (100 = as configured).
    #[serde(default = "hundred")]
    pub weight_percent: u32,
    /// What the node's load-feedback agent asked for: `drained` or `maintenance` until it
    /// says `ready` again.
    #[serde(default)]
    pub agent_admin: AdminState,
    /// For a slot of a discovered group: the address the agent assigned to it (`None`
    /// when the name resolves to fewer addresses than there are slots).
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
}

fn hundred() -> u32 {
    100
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
#[serde(deny_unknown_fields)]
pub struct AdminAction {
    pub target: Target,
    pub admin: AdminState,
    pub who: String,
    pub why: String,
}

/// RTT aggregates a proxy measured for client prefixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RttReport {
    pub site: String,
    pub samples: Vec<RttSample>,
}

/// The smoothed RTT from a site to the clients of one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RttSample {
    pub prefix: IpNet,
    pub rtt_us: u32,
    pub samples: u32,
}
