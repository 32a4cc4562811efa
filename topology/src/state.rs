//! The runtime state of a deployment: member health, load-feedback weight and admin state,
//! and per site the time of its agent's last report. Plain values: whoever owns the state
//! (the DNS node now, the replicated store later) changes it and publishes a new snapshot.

use serde::{Deserialize, Serialize};

use crate::model::{Deployment, MemberId, SiteId};

/// Milliseconds since the Unix epoch, always passed in (the model reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn saturating_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// What the member's site agent last said of it (after rise/fall).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    /// No verdict yet.
    Unknown,
}

/// What an operator (or the node's own load-feedback agent) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    #[default]
    Active,
    /// No new answers; existing clients finish.
    Drained,
    /// Out for maintenance: no answers.
    Maintenance,
    /// Treated as down whatever the probes say.
    ForcedDown,
}

/// The dynamic state of one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub health: Health,
    /// Why the health is what it is (probe failure reason, "static", ...).
    pub reason: String,
    /// Load-feedback weight in percent of the configured weight (100 = as configured).
    pub weight_percent: u32,
    pub admin: AdminState,
    /// What the node's own load-feedback agent asked for (`drain`, `maint`); only the agent
    /// undoes it (`ready`).
    pub agent_admin: AdminState,
    /// For a slot of a discovered group: the address the site agent found for it.
    pub address: Option<std::net::IpAddr>,
    /// Smoothed probe latency in microseconds, when probes report one.
    pub latency_us: Option<u32>,
    /// A proxy of the member's site saw its connections fail: out of answers and proxy
    /// choices until the site agent's probes confirm it serves again.
    pub passive: Option<PassiveMark>,
    /// While the member's own site agent is silent: what the agents of other sites found
    /// probing it across sites, one entry per vantage site (see [`VantageSeen`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage: Vec<VantageSeen>,
}

/// What one other site's agent found when the store asked it to probe a member whose own
/// site's agent had gone silent: a site whose members still answer from elsewhere keeps
/// its clients while its telemetry is lost; one nobody reaches is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VantageSeen {
    /// The site whose agent probed.
    pub site: String,
    /// Whether its last probe found the member serving.
    pub up: bool,
    /// When it reported (the proposing node's clock).
    pub at: Timestamp,
    pub reason: String,
}

/// A member marked down by what a proxy saw on the data path (failed connects, resets),
/// until its site agent confirms recovery with fresh probes made after it learned of the
/// mark. The mark is named by the log index that set it, so the confirmation names exactly
/// the mark it answers (no clocks compared across machines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveMark {
    /// The store's log index of the report that set it.
    pub index: u64,
    /// When it was set (the proposing node's clock).
    pub at: Timestamp,
    /// The proxy that saw the failures.
    pub by: String,
    pub reason: String,
}

/// The dynamic state of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub admin: AdminState,
    /// When the site's agent last reported (the store's view); `None` = never.
    pub last_report: Option<Timestamp>,
}

/// All dynamic state, indexed like the [`Deployment`] it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub members: Vec<MemberState>,
    pub sites: Vec<SiteState>,
}

impl State {
    /// The state before any report: members of services without a check are statically up,
    /// the others unknown.
    pub fn initial(deployment: &Deployment) -> State {
        State {
            members: deployment
                .members
                .iter()
                .map(|m| {
                    let checked = deployment.service(m.service).check.is_some();
                    MemberState {
                        health: if checked { Health::Unknown } else { Health::Up },
                        reason: if checked {
                            "no report yet"
                        } else {
                            "static (no check configured)"
                        }
                        .into(),
                        weight_percent: 100,
                        admin: AdminState::Active,
                        agent_admin: AdminState::Active,
                        address: None,
                        latency_us: None,
                        passive: None,
                        vantage: Vec::new(),
                    }
                })
                .collect(),
            sites: deployment
                .sites
                .iter()
                .map(|_| SiteState {
                    admin: AdminState::Active,
                    last_report: None,
                })
                .collect(),
        }
    }

    pub fn member(&self, id: MemberId) -> &MemberState {
        &self.members[id.0 as usize]
    }
    /// The address a member is answered with: the discovered one for a slot of a group,
    /// else the configured one.
    pub fn address_of(&self, deployment: &Deployment, id: MemberId) -> std::net::IpAddr {
        self.member(id)
            .address
            .unwrap_or(deployment.member(id).address)
    }

    pub fn member_mut(&mut self, id: MemberId) -> &mut MemberState {
        &mut self.members[id.0 as usize]
    }
    pub fn site(&self, id: SiteId) -> &SiteState {
        &self.sites[id.0 as usize]
    }
    pub fn site_mut(&mut self, id: SiteId) -> &mut SiteState {
        &mut self.sites[id.0 as usize]
    }
}
