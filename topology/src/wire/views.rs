//! What the admin API answers with: the state as the answers see it ([`StateView`], one
//! line of the watch stream is a [`WatchLine`]), the store's status, the history, explain.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::explain::Explain;
use crate::model::Coordinates;
use crate::model::{Policy, WhenAllDown};
use crate::state::{AdminState, Health, Timestamp};

/// `GET /api/v1/state`: sites, services and members as this node's answers see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateView {
    /// The wire format version of the node that answered.
    pub wire_version: u16,
    /// Increases with every answer table this node published.
    pub generation: u64,
    /// When the answers were evaluated (frozen at the loss of quorum while degraded).
    pub built_at_ms: Timestamp,
    pub zone: String,
    /// The deployment version the answers come from (0: the node's own file, the store
    /// has none yet).
    pub config_version: u64,
    pub store: StoreView,
    /// No quorum: answers come from the last applied state.
    pub degraded: bool,
    pub sites: Vec<SiteView>,
    pub services: Vec<ServiceView>,
    pub geoip: GeoipView,
}

/// One line of `GET /api/v1/watch`: the whole state at an applied index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchLine {
    /// The wire format version of the node that sent it.
    pub version: u16,
    /// The store's applied index this state reflects.
    pub index: u64,
    pub config_version: u64,
    pub degraded: bool,
    pub state: StateView,
}

/// The replicated store as the answering node saw it when it built the answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreView {
    pub node_id: u64,
    /// The log index of the machine the answers come from.
    pub applied: u64,
    pub leader: u64,
    pub term: u64,
    /// Set while the node has no quorum: answers come from the last applied state, with
    /// staleness evaluated at this moment.
    pub degraded_since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteView {
    pub name: String,
    pub location: Option<Coordinates>,
    pub client_networks: Vec<IpNet>,
    pub admin: AdminState,
    /// When the site's agent last reported (the store's clock); `None`: never.
    pub last_report_ms: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub fqdn: String,
    pub policy: Policy,
    pub ttl: u32,
    pub max_answers: usize,
    pub min_healthy: usize,
    pub when_all_down: WhenAllDown,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub node: String,
    pub site: String,
    /// The address answered (for a slot of a discovered group, the one discovered).
    pub address: IpAddr,
    /// The member's own port (probes and proxies use it over the check's or listener's).
    pub port: Option<u16>,
    pub health: Health,
    pub reason: String,
    pub admin: AdminState,
    /// The configured weight.
    pub weight: u32,
    /// Load feedback, in percent of the configured weight.
    pub weight_percent: u32,
    /// Whether DNS answers may name it now.
    pub eligible: bool,
    pub ineligible: Option<String>,
    /// The weight the site's proxies give it for new connections (0: none).
    pub proxy_weight: u32,
    /// What the node's own load-feedback agent asked for.
    pub agent_admin: AdminState,
    /// Smoothed probe latency, when probes report one.
    pub latency_us: Option<u32>,
    /// A proxy's passive mark, until the agent confirms recovery (absent from nodes
    /// before wire version 3, which set none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<crate::state::PassiveMark>,
    /// While its site's agent is silent: what the other sites' agents found probing it
    /// (absent from nodes before wire version 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage: Vec<crate::state::VantageSeen>,
    /// Why it is answered although its site's telemetry is lost
    /// (`telemetry lost, confirmed by iad, sin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoipView {
    pub database_type: String,
    pub build_epoch: u64,
    pub client_class_blocks: usize,
}

/// `GET /healthz` (open to everyone): the node is up, and which wire format it speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthz {
    pub status: String,
    pub wire_version: u16,
}

/// `GET /api/v1/store`: raft's view from the answering node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub node: NodeStatus,
    pub peers: Vec<PeerState>,
    /// Nodes added through membership changes, with their addresses.
    pub nodes: BTreeMap<u64, NodeAddress>,
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub role: String,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// No leader known (or this node cannot reach a quorum) for longer than an election
    /// timeout: answers come from the last applied state.
    pub degraded: bool,
    /// Since when (this node's clock); staleness is frozen at this moment while degraded.
    pub degraded_since: Option<Timestamp>,
    pub proposals: u64,
    pub proposals_failed: u64,
    pub snapshots_taken: u64,
    pub snapshot_index: u64,
    /// Mean time from proposal to local apply over the last proposals, in microseconds.
    pub apply_latency_us: u64,
    /// The node stopped applying (a storage failure, or an entry it cannot read).
    pub failed: Option<String>,
    /// The newest wire format this node's build reads.
    pub wire_version: u16,
}

/// A peer as the raft transport sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerState {
    pub id: u64,
    pub address: String,
    pub connected: bool,
}

/// Where a store node listens, carried in its membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    pub raft: String,
    pub api: Option<String>,
}

/// One entry of the change history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    pub at: Timestamp,
    pub target: String,
    pub change: String,
    /// The authenticated identity (or the agent, or the node) behind the change.
    pub who: String,
    pub why: String,
    /// A `who` the request gave, when it differs from the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /api/v1/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Oldest first.
    pub changes: Vec<Change>,
}

/// `GET /api/v1/timeline`: one node's service answers per site over its last minutes, and
/// the store's changes in that window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineView {
    pub wire_version: u16,
    /// The time between two points.
    pub step_ms: u64,
    /// The sites, in the order of each point's `answers`.
    pub sites: Vec<String>,
    /// Oldest first.
    pub points: Vec<TimelinePoint>,
    /// The history's changes from the first point on (health, admin, drills, deployments).
    pub events: Vec<Change>,
}

/// The answers this node gave in the step ending at `at`, per site (as [`TimelineView::sites`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at: Timestamp,
    pub answers: Vec<u64>,
}

/// A smoothed RTT from a site to a client prefix, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttEntry {
    pub rtt_us: u32,
    pub samples: u32,
    pub at: Timestamp,
}

/// `GET /api/v1/rtt`: site -> client prefix -> RTT, as applied on the answering node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttTable {
    pub applied: u64,
    pub rtt: BTreeMap<String, BTreeMap<IpNet, RttEntry>>,
}

/// `GET /api/v1/explain`: why a client gets its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainView {
    pub name: String,
    pub client: IpAddr,
    pub located_by: String,
    /// The network that decided the location.
    pub network: Option<String>,
    pub client_class: u32,
    pub ecs_scope: u8,
    pub generation: u64,
    pub config_version: u64,
    /// The what-if asked for (`site:iad,member:s3/fra-1`), if any.
    pub what_if: Option<String>,
    pub explain: Explain,
}

/// The body of an admin action (`POST .../drain` and friends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub who: Option<String>,
    pub why: Option<String>,
}

/// What an admin action did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDone {
    pub target: String,
    pub admin: AdminState,
    pub index: u64,
}

/// `POST /api/v1/store/nodes`: add a learner or a voter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub id: u64,
    pub raft: String,
    pub api: Option<String>,
    /// Join as a learner (a read replica that does not vote); default true.
    pub learner: Option<bool>,
}

/// A membership change was proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipProposed {
    pub proposed: String,
    pub id: u64,
}
