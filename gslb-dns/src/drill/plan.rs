//! Planning a drill, pure: the request checked against the deployment and the state the
//! answers come from (names exist, the target is active, and at least one site stays
//! available for every watched service, by the same `site_available` the answers use).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use topology::select::site_available;
use topology::wire::Target;
use topology::wire::drill::{DrillMode, DrillRequest};
use topology::{AdminState, Family, MemberId, State};

use crate::dns::Snapshot;
use crate::store::Attribution;

/// Why a drill cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused in the current state (the target is not active, or nothing would be left).
    #[error("{0}")]
    Refused(String),
}

/// A drill checked and ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: u64,
    pub target: Target,
    pub mode: DrillMode,
    /// (service, name to ask, AAAA?) per service watched.
    pub names: Vec<(String, String, bool)>,
    /// The addresses whose absence means "converged".
    pub drilled: Vec<IpAddr>,
    /// The DNS nodes to ask (name, address).
    pub nodes: Vec<(String, SocketAddr)>,
    /// Store nodes without a DNS address: not asked.
    pub not_queried: Vec<u64>,
    pub vantages: Vec<IpNet>,
    pub timeout: Duration,
    pub interval: Duration,
    pub who: String,
    pub why: String,
    /// The request's own `who`, when it differs from the identity that asked.
    pub note: Option<String>,
}

impl Plan {
    /// The admin state the drill sets.
    pub fn admin(&self) -> AdminState {
        match self.mode {
            DrillMode::Drain => AdminState::Drained,
            DrillMode::Fail => AdminState::ForcedDown,
        }
    }
}

/// Checks `request` against `snapshot`. `nodes` are the DNS nodes to ask, `not_queried` the
/// store nodes that cannot be; `by` is who asked (with the request's `why`, or a default).
pub fn plan(
    snapshot: &Snapshot,
    request: &DrillRequest,
    nodes: Vec<(String, SocketAddr)>,
    not_queried: Vec<u64>,
    by: &Attribution,
    id: u64,
) -> Result<Plan, PlanError> {
    let deployment = &snapshot.deployment;
    let site = deployment
        .site_by_name(&request.site)
        .ok_or_else(|| PlanError::NotFound(format!("no site {:?}", request.site)))?;
    let member: Option<MemberId> = match &request.member {
        None => None,
        Some(text) => {
            let (service, node) = text.split_once('/').ok_or_else(|| {
                PlanError::Invalid(format!("member {text:?}: expected service/node"))
            })?;
            let id = deployment.member_by_name(service, node).ok_or_else(|| {
                PlanError::NotFound(format!("no member {node:?} in service {service:?}"))
            })?;
            if deployment.member(id).site != site {
                return Err(PlanError::Invalid(format!(
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
                .ok_or_else(|| PlanError::NotFound(format!("no service {name:?}")))?,
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
        return Err(PlanError::Invalid(format!(
            "site {} has no members to drill",
            request.site
        )));
    }
    let mode = request.mode.unwrap_or_default();
    let admin = match mode {
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
        return Err(PlanError::Refused(format!(
            "{target} is {current:?} already: a drill starts from an active target and restores it"
        )));
    }
    // Would anything be left? Site availability as the answers judge it, on the drilled
    // state, for either address family.
    let mut drilled_state: State = (*snapshot.state).clone();
    match member {
        Some(id) => drilled_state.member_mut(id).admin = admin,
        None => drilled_state.site_mut(site).admin = admin,
    }
    for service_id in &services {
        let left = deployment.site_ids().any(|s| {
            [Family::V4, Family::V6].into_iter().any(|family| {
                site_available(
                    deployment,
                    &drilled_state,
                    *service_id,
                    s,
                    family,
                    snapshot.built_at,
                )
            })
        });
        if !left {
            return Err(PlanError::Refused(format!(
                "refused: draining {target} would leave service {} with no healthy site",
                deployment.service(*service_id).name
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
    let vantages: Vec<IpNet> = match &request.vantages {
        Some(vantages) if !vantages.is_empty() => vantages.iter().map(IpNet::trunc).collect(),
        _ => deployment
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
            .collect(),
    };
    if vantages.is_empty() {
        return Err(PlanError::Invalid(
            "no vantage subnets: no site has client_networks; give \"vantages\"".into(),
        ));
    }
    let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(10_000).clamp(500, 300_000));
    let interval = Duration::from_millis(request.interval_ms.unwrap_or(50).clamp(10, 5_000));
    Ok(Plan {
        id,
        target,
        mode,
        names,
        drilled,
        nodes,
        not_queried,
        vantages,
        timeout,
        interval,
        who: by.who.clone(),
        why: if by.why.is_empty() {
            "DR drill".into()
        } else {
            by.why.clone()
        },
        note: by.note.clone(),
    })
}
