//! DR drills on the wire: the request, and the report every (node, vantage) contributes to.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    pub site: String,
    /// `service/node`: drill one member of the site instead of the whole site.
    pub member: Option<String>,
    /// Default: drain.
    pub mode: Option<DrillMode>,
    /// The service whose answers are watched (default: the member's, or every service
    /// with members at the site).
    pub service: Option<String>,
    /// Client subnets to ask as (default: one /24 or /56 of each site's client networks).
    pub vantages: Option<Vec<IpNet>>,
    pub timeout_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    pub who: Option<String>,
    pub why: Option<String>,
}

/// One (node, vantage) pair's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub node: String,
    pub dns: SocketAddr,
    pub vantages: Vec<VantageResult>,
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillStatus {
    Converged,
    Timeout,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub status: DrillStatus,
    /// The slowest (node, vantage) convergence, ms.
    pub max_converged_ms: Option<u64>,
    pub max_restored_ms: Option<u64>,
    pub restored: bool,
    pub nodes: Vec<NodeResult>,
    /// Store nodes without a `dns` address: not asked.
    pub not_queried: Vec<u64>,
    pub error: Option<String>,
    /// The report as text.
    pub summary: String,
}

/// `POST /api/v1/drills` without `wait`: the drill runs; its report will be here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillStarted {
    pub id: u64,
    pub status: String,
    pub report: String,
}

/// `GET /api/v1/drills`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillList {
    pub drills: Vec<DrillReport>,
}
