//! Answer selection (DESIGN section 4): a pure function of the deployment, the state, the
//! client's class, the address family and the time. It returns every rotation of the answer
//! (the DNS front hands them out in turn) and the reasoning behind it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::geo::ClientLocation;
use crate::model::{Deployment, MemberId, Policy, Service, ServiceId, SiteId, WhenAllDown};
use crate::state::{AdminState, Health, MemberState, State, Timestamp};

/// Upper bound of answer rotations kept per (service, class, family).
pub const MAX_VARIANTS: usize = 64;

/// The address family a query asks for (A or AAAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    #[serde(rename = "A")]
    V4,
    #[serde(rename = "AAAA")]
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(address: &std::net::IpAddr) -> Family {
        if address.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// Where a client is, reduced to what changes answers: the sites ordered nearest first
/// (`None` when the location is unknown). Clients with equal classes get equal answers, so
/// answers are precomputed per class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ClientClass {
    pub order: Option<Vec<SiteId>>,
    /// For clients whose prefix has RTT samples: the sites by measured RTT (lowest first),
    /// then the rest in `order`. Used by the `latency` policy.
    pub latency: Option<Vec<SiteId>>,
}

/// Orders the sites for a location: its own site first (site networks), then nearest by
/// great-circle distance; sites without coordinates last, in configuration order.
pub fn classify(deployment: &Deployment, location: &ClientLocation) -> ClientClass {
    let local = match location {
        ClientLocation::SiteNetwork { site } => Some(*site),
        _ => None,
    };
    let origin = location.coordinates(&deployment.sites);
    if local.is_none() && origin.is_none() {
        return ClientClass {
            order: None,
            latency: None,
        };
    }
    let mut order: Vec<SiteId> = deployment
        .site_ids()
        .filter(|s| Some(*s) != local)
        .collect();
    if let Some(origin) = origin {
        order.sort_by(|a, b| {
            let distance = |s: &SiteId| {
                deployment
                    .site(*s)
                    .location
                    .map_or(f64::INFINITY, |c| c.distance_km(&origin))
            };
            distance(a).total_cmp(&distance(b))
        });
    }
    if let Some(local) = local {
        order.insert(0, local);
    }
    ClientClass {
        order: Some(order),
        latency: None,
    }
}

/// Why a member cannot be handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum Ineligible {
    OtherFamily,
    /// A slot of a discovered group with no address (the name resolves to fewer).
    NotDiscovered,
    Down(String),
    Unknown,
    Drained,
    Maintenance,
    ForcedDown,
    /// The node's load-feedback agent said `drain`.
    AgentDrained,
    /// The node's load-feedback agent said `maint`.
    AgentMaintenance,
    SiteDrained,
    SiteMaintenance,
    SiteForcedDown,
    /// The site's agent has not reported within `stale_after` (age in ms, `None` = never).
    SiteStale(Option<u64>),
    /// The site's agent is silent and the other sites' agents, probing the member across
    /// sites, did not reach it (the age of the last report, and who tried).
    SiteUnreachable(u64, Vec<String>),
    ZeroWeight,
    /// A proxy saw its connections fail; out until the agent's probes confirm recovery
    /// (what failed, and which proxy saw it).
    Passive(String),
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ineligible::OtherFamily => write!(f, "address of the other family"),
            Ineligible::NotDiscovered => write!(f, "no address discovered for this slot"),
            Ineligible::Down(reason) => write!(f, "down: {reason}"),
            Ineligible::Unknown => write!(f, "health unknown"),
            Ineligible::Drained => write!(f, "drained"),
            Ineligible::Maintenance => write!(f, "in maintenance"),
            Ineligible::ForcedDown => write!(f, "forced down"),
            Ineligible::AgentDrained => write!(f, "drained by its load-feedback agent"),
            Ineligible::AgentMaintenance => write!(f, "in maintenance by its load-feedback agent"),
            Ineligible::SiteDrained => write!(f, "site drained"),
            Ineligible::SiteMaintenance => write!(f, "site in maintenance"),
            Ineligible::SiteForcedDown => write!(f, "site forced down"),
            Ineligible::SiteStale(Some(age)) => write!(f, "site telemetry stale ({age} ms old)"),
            Ineligible::SiteStale(None) => write!(f, "site agent never reported"),
            Ineligible::SiteUnreachable(age, from) => write!(
                f,
                "site telemetry stale ({age} ms old), unreachable from {}",
                from.join(", ")
            ),
            Ineligible::ZeroWeight => write!(f, "load feedback weight 0"),
            Ineligible::Passive(seen) => write!(f, "passively down: {seen}"),
        }
    }
}

/// How strictly eligibility is judged: normally, or failing open when nothing is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    Normal,
    /// Health and staleness ignored; admin decisions still respected.
    IgnoreHealth,
    /// Everything ignored but the address family.
    IgnoreAll,
}

/// The effective weight of an eligible member, or why it is not eligible.
pub fn member_verdict(
    deployment: &Deployment,
    state: &State,
    member: MemberId,
    family: Family,
    now: Timestamp,
) -> Result<u32, Ineligible> {
    verdict(deployment, state, member, family, now, Strictness::Normal)
}

/// The weight a site's proxy gives a member for new connections, or why it gets none.
/// Unlike [`member_verdict`], a site's own admin state and staleness do not count: draining
/// a site moves new clients away in DNS while its proxies keep serving whoever still comes,
/// and health not yet known is left to the proxy's passive checks. A member drained or in
/// maintenance (by an operator or its own agent), down, undiscovered or at weight 0 gets
/// no new connection.
pub fn proxy_verdict(
    deployment: &Deployment,
    state: &State,
    id: MemberId,
) -> Result<u32, Ineligible> {
    let member = deployment.member(id);
    let ms = state.member(id);
    if member.discover.is_some() && ms.address.is_none() {
        return Err(Ineligible::NotDiscovered);
    }
    member_admin(ms)?;
    if ms.health == Health::Down {
        return Err(Ineligible::Down(ms.reason.clone()));
    }
    passive(ms)?;
    match effective_weight(member.weight, ms.weight_percent) {
        0 => Err(Ineligible::ZeroWeight),
        weight => Ok(weight),
    }
}

/// Whether a proxy's passive mark holds the member out.
fn passive(ms: &MemberState) -> Result<(), Ineligible> {
    match &ms.passive {
        Some(mark) => Err(Ineligible::Passive(format!(
            "{} (proxy {}, awaiting the agent's confirmation)",
            mark.reason, mark.by
        ))),
        None => Ok(()),
    }
}

/// What the member's operators and its own load-feedback agent decided for it.
fn member_admin(ms: &MemberState) -> Result<(), Ineligible> {
    match ms.admin {
        AdminState::Active => {}
        AdminState::Drained => return Err(Ineligible::Drained),
        AdminState::Maintenance => return Err(Ineligible::Maintenance),
        AdminState::ForcedDown => return Err(Ineligible::ForcedDown),
    }
    match ms.agent_admin {
        AdminState::Active => Ok(()),
        AdminState::Drained => Err(Ineligible::AgentDrained),
        AdminState::Maintenance | AdminState::ForcedDown => Err(Ineligible::AgentMaintenance),
    }
}

fn verdict(
    deployment: &Deployment,
    state: &State,
    id: MemberId,
    family: Family,
    now: Timestamp,
    strictness: Strictness,
) -> Result<u32, Ineligible> {
    let member = deployment.member(id);
    let ms = state.member(id);
    if member.discover.is_some() && ms.address.is_none() {
        return Err(Ineligible::NotDiscovered);
    }
    if Family::of(&state.address_of(deployment, id)) != family {
        return Err(Ineligible::OtherFamily);
    }
    let weight = effective_weight(member.weight, ms.weight_percent);
    if strictness == Strictness::IgnoreAll {
        return Ok(weight.max(1));
    }
    let site = state.site(member.site);
    match site.admin {
        AdminState::Active => {}
        AdminState::Drained => return Err(Ineligible::SiteDrained),
        AdminState::Maintenance => return Err(Ineligible::SiteMaintenance),
        AdminState::ForcedDown => return Err(Ineligible::SiteForcedDown),
    }
    member_admin(ms)?;
    if strictness == Strictness::IgnoreHealth {
        return Ok(weight.max(1));
    }
    match ms.health {
        Health::Up => {}
        Health::Down => return Err(Ineligible::Down(ms.reason.clone())),
        Health::Unknown => return Err(Ineligible::Unknown),
    }
    passive(ms)?;
    let service = deployment.service(member.service);
    if service.check.is_some() {
        let stale_after = service.stale_after.as_millis() as u64;
        match site.last_report.map(|t| now.saturating_since(t)) {
            None => return Err(Ineligible::SiteStale(None)),
            Some(age) if age > stale_after => match vantage(ms, stale_after, now) {
                Vantage::Confirmed(_) => {}
                Vantage::Unreachable(from) => {
                    return Err(Ineligible::SiteUnreachable(age, from));
                }
                Vantage::Unasked => return Err(Ineligible::SiteStale(Some(age))),
            },
            Some(_) => {}
        }
    }
    if weight == 0 {
        return Err(Ineligible::ZeroWeight);
    }
    Ok(weight)
}

/// What the other sites' agents said of a member, counting only what they reported within
/// `fresh_ms` of `now`.
enum Vantage {
    /// At least one found it serving (the sites that did).
    Confirmed(Vec<String>),
    /// Some tried, none reached it (the sites that tried).
    Unreachable(Vec<String>),
    /// Nobody has probed it lately.
    Unasked,
}

fn vantage(ms: &MemberState, fresh_ms: u64, now: Timestamp) -> Vantage {
    let fresh: Vec<&crate::state::VantageSeen> = ms
        .vantage
        .iter()
        .filter(|v| now.saturating_since(v.at) <= fresh_ms)
        .collect();
    let up: Vec<String> = fresh
        .iter()
        .filter(|v| v.up)
        .map(|v| v.site.clone())
        .collect();
    if !up.is_empty() {
        Vantage::Confirmed(up)
    } else if fresh.is_empty() {
        Vantage::Unasked
    } else {
        Vantage::Unreachable(fresh.iter().map(|v| v.site.clone()).collect())
    }
}

/// For a member answered although its site's agent is silent (`stale_after` has passed):
/// the other sites whose agents found it serving, which is what keeps it in answers.
/// `None` while its own agent reports (or when it is not answered at all).
pub fn confirmed_by_vantage(
    deployment: &Deployment,
    state: &State,
    id: MemberId,
    now: Timestamp,
) -> Option<Vec<String>> {
    let member = deployment.member(id);
    let service = deployment.service(member.service);
    service.check.as_ref()?;
    let stale_after = service.stale_after.as_millis() as u64;
    let age = now.saturating_since(state.site(member.site).last_report?);
    if age <= stale_after {
        return None;
    }
    match vantage(state.member(id), stale_after, now) {
        Vantage::Confirmed(sites) => Some(sites),
        _ => None,
    }
}

/// How a member kept in answers by other sites' probes is flagged.
pub fn telemetry_lost_note(sites: &[String]) -> String {
    format!("telemetry lost, confirmed by {}", sites.join(", "))
}

/// Whether `eligible` members are enough for a site to take the service's clients: at
/// least one, and at least `min_healthy`.
fn enough_eligible(service: &Service, eligible: usize) -> bool {
    eligible > 0 && eligible >= service.min_healthy
}

/// Whether `site` can take `service`'s clients asking for `family` at `now`: the one
/// definition of site availability, for answers and for drills.
pub fn site_available(
    deployment: &Deployment,
    state: &State,
    service_id: ServiceId,
    site: SiteId,
    family: Family,
    now: Timestamp,
) -> bool {
    let service = deployment.service(service_id);
    let eligible = service
        .members
        .iter()
        .filter(|m| deployment.member(**m).site == site)
        .filter(|m| member_verdict(deployment, state, **m, family, now).is_ok())
        .count();
    enough_eligible(service, eligible)
}

/// The configured weight scaled by load feedback. Only 0 % takes a member out: any other
/// percentage leaves at least 1, so a small weight (say 1 at 50 %) does not round down to
/// "load feedback weight 0"; huge percentages saturate instead of wrapping.
fn effective_weight(weight: u32, percent: u32) -> u32 {
    if percent == 0 {
        return 0;
    }
    u32::try_from(u64::from(weight) * u64::from(percent) / 100)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// One way to answer: the members in answer order and the site that was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub members: Vec<MemberId>,
    pub site: Option<SiteId>,
}

/// How the answer was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// The first available site in the order.
    Site {
        site: String,
        spilled_to: Vec<String>,
    },
    /// Spread across the available sites (`weighted`, `round-robin`).
    Spread { sites: Vec<String> },
    /// No site was available: answered as if members were healthy (`when_all_down`).
    FailOpen { site: String },
    /// Nothing to answer.
    Nodata { why: String },
}

/// A site as selection saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    pub site: String,
    pub rank: usize,
    pub distance_km: Option<f64>,
    pub eligible: usize,
    pub available: bool,
    pub members: Vec<MemberReport>,
}

impl SiteReport {
    /// `#0 fra available eligible=2`: the site's line in an explanation.
    pub fn headline(&self) -> String {
        format!(
            "#{} {} {} eligible={}",
            self.rank,
            self.site,
            if self.available {
                "available"
            } else {
                "unavailable"
            },
            self.eligible
        )
    }
}

/// A member as selection saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub node: String,
    pub address: std::net::IpAddr,
    pub weight: Option<u32>,
    pub ineligible: Option<Ineligible>,
    /// Answered although its site's telemetry is lost: the other sites that found it
    /// serving (`telemetry lost, confirmed by iad, sin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The reasoning behind a [`Selection`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub service: String,
    pub policy: Policy,
    pub family: Family,
    pub location_known: bool,
    pub order_source: Cow<'static, str>,
    pub sites: Vec<SiteReport>,
    pub outcome: Outcome,
    pub ttl: u32,
}

/// Every rotation of the answer, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub variants: Vec<Variant>,
    pub explanation: Explanation,
}

impl Selection {
    /// The addresses of the first rotation: what the next query gets.
    pub fn first_addresses(&self, deployment: &Deployment, state: &State) -> Vec<std::net::IpAddr> {
        self.variants
            .first()
            .map(|v| {
                v.members
                    .iter()
                    .map(|m| state.address_of(deployment, *m))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The sites in the order the policy considers them, and what decided that order.
fn site_order(
    deployment: &Deployment,
    service: ServiceId,
    class: &ClientClass,
) -> (Vec<SiteId>, &'static str) {
    let service = deployment.service(service);
    let with_rest = |first: &[SiteId]| {
        let mut order = first.to_vec();
        order.extend(deployment.site_ids().filter(|s| !first.contains(s)));
        order
    };
    match service.policy {
        Policy::Failover => (with_rest(&service.failover_order), "failover_order"),
        Policy::Weighted | Policy::RoundRobin => (with_rest(&[]), "configuration order"),
        Policy::Latency if class.latency.is_some() => (
            class.latency.clone().unwrap_or_default(),
            "measured RTT for the client's prefix, then distance",
        ),
        Policy::LeastLoad => match &class.order {
            Some(order) => (
                order.clone(),
                "most headroom (load feedback), ties by the client's site, then distance",
            ),
            None if service.unknown_client_order.is_empty() => (
                with_rest(&[]),
                "most headroom (load feedback), ties by configuration order",
            ),
            None => (
                with_rest(&service.unknown_client_order),
                "most headroom (load feedback), ties by unknown_client_order",
            ),
        },
        Policy::Topology | Policy::Latency => match &class.order {
            Some(order) => (order.clone(), "client's site, then distance"),
            None if service.unknown_client_order.is_empty() => {
                (with_rest(&[]), "location unknown: configuration order")
            }
            None => (
                with_rest(&service.unknown_client_order),
                "location unknown: unknown_client_order",
            ),
        },
    }
}

/// Selects the answers of `service` for clients of `class` asking for `family` at `now`.
pub fn select(
    deployment: &Deployment,
    state: &State,
    service_id: ServiceId,
    family: Family,
    class: &ClientClass,
    now: Timestamp,
) -> Selection {
    let service = deployment.service(service_id);
    let (order, order_source) = site_order(deployment, service_id, class);
    let candidates = |strictness| -> Vec<Vec<(MemberId, u32)>> {
        order
            .iter()
            .map(|site| {
                let mut eligible: Vec<(MemberId, u32)> = service
                    .members
                    .iter()
                    .filter(|m| deployment.member(**m).site == *site)
                    .filter_map(|m| {
                        verdict(deployment, state, *m, family, now, strictness)
                            .ok()
                            .map(|w| (*m, w))
                    })
                    .collect();
                eligible.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                eligible
            })
            .collect()
    };
    let normal = candidates(Strictness::Normal);
    let sites: Vec<SiteReport> = order
        .iter()
        .zip(&normal)
        .enumerate()
        .map(|(rank, (site, eligible))| SiteReport {
            site: deployment.site(*site).name.clone(),
            rank,
            distance_km: None,
            eligible: eligible.len(),
            available: enough_eligible(service, eligible.len()),
            members: service
                .members
                .iter()
                .filter(|m| deployment.member(**m).site == *site)
                .map(|m| {
                    let member = deployment.member(*m);
                    let v = member_verdict(deployment, state, *m, family, now);
                    MemberReport {
                        node: member.node.clone(),
                        address: state.address_of(deployment, *m),
                        weight: v.as_ref().ok().copied(),
                        note: v
                            .is_ok()
                            .then(|| confirmed_by_vantage(deployment, state, *m, now))
                            .flatten()
                            .map(|sites| telemetry_lost_note(&sites)),
                        ineligible: v.err(),
                    }
                })
                .collect(),
        })
        .collect();
    let mut available: Vec<usize> = (0..order.len()).filter(|i| sites[*i].available).collect();
    if service.policy == Policy::LeastLoad {
        // Most headroom first; the sort is stable, so equal headroom keeps the client's
        // topology order (its own site, then the nearest).
        available.sort_by_key(|i| {
            std::cmp::Reverse(headroom_percent(
                deployment,
                service,
                order[*i],
                &normal[*i],
            ))
        });
    }
    let spread = matches!(service.policy, Policy::Weighted | Policy::RoundRobin);
    let name = |i: usize| deployment.site(order[i]).name.clone();
    let (variants, outcome) = if !available.is_empty() {
        if spread {
            let variants = spread_variants(
                service.policy,
                &order,
                &normal,
                &available,
                service.max_answers,
            );
            let outcome = Outcome::Spread {
                sites: available.iter().map(|i| name(*i)).collect(),
            };
            (variants, outcome)
        } else {
            let first = available[0];
            let mut variants = site_variants(order[first], &normal[first], service.max_answers);
            let mut spilled_to = Vec::new();
            if service.spill {
                for &next in &available[1..] {
                    if variants
                        .first()
                        .is_some_and(|v| v.members.len() >= service.max_answers)
                    {
                        break;
                    }
                    spilled_to.push(name(next));
                    // The spilled members rotate too, so no one node of the next site takes
                    // all the spilled load.
                    let extra = normal[next].len();
                    for (i, variant) in variants.iter_mut().enumerate() {
                        let room = service.max_answers - variant.members.len();
                        variant
                            .members
                            .extend((0..room.min(extra)).map(|j| normal[next][(i + j) % extra].0));
                    }
                }
            }
            (
                variants,
                Outcome::Site {
                    site: name(first),
                    spilled_to,
                },
            )
        }
    } else {
        match service.when_all_down {
            WhenAllDown::Nodata => (
                Vec::new(),
                Outcome::Nodata {
                    why: "no site is available and when_all_down = nodata".into(),
                },
            ),
            // Fail open in steps: eligible members of sites below min_healthy first (a
            // healthy member beats one known to be down), then health ignored, then all.
            WhenAllDown::AnswerAll => fail_open(&order, service.max_answers, || {
                [
                    Strictness::Normal,
                    Strictness::IgnoreHealth,
                    Strictness::IgnoreAll,
                ]
                .into_iter()
                .map(&candidates)
                .find(|c| c.iter().any(|site| !site.is_empty()))
            })
            .map(|(variants, i)| (variants, Outcome::FailOpen { site: name(i) }))
            .unwrap_or_else(|| {
                (
                    Vec::new(),
                    Outcome::Nodata {
                        why: format!("no member has an address of this family ({family:?})"),
                    },
                )
            }),
        }
    };
    Selection {
        variants,
        explanation: Explanation {
            service: service.name.clone(),
            policy: service.policy,
            family,
            location_known: class.order.is_some(),
            order_source: Cow::Borrowed(order_source),
            sites,
            outcome,
            ttl: service.ttl,
        },
    }
}

/// How much of a site's configured capacity is left, in whole percent: the effective
/// weights of its eligible members (load feedback lowers them) over the configured weights
/// of all its members. Whole percents keep tiny load differences from flipping answers.
pub fn headroom_percent(
    deployment: &Deployment,
    service: &Service,
    site: SiteId,
    eligible: &[(MemberId, u32)],
) -> u64 {
    let configured: u64 = service
        .members
        .iter()
        .map(|m| deployment.member(*m))
        .filter(|m| m.site == site)
        .map(|m| u64::from(m.weight))
        .sum();
    let left: u64 = eligible.iter().map(|(_, weight)| u64::from(*weight)).sum();
    (left * 100).checked_div(configured).unwrap_or(0)
}

fn fail_open(
    order: &[SiteId],
    max_answers: usize,
    candidates: impl FnOnce() -> Option<Vec<Vec<(MemberId, u32)>>>,
) -> Option<(Vec<Variant>, usize)> {
    let lists = candidates()?;
    let first = lists.iter().position(|l| !l.is_empty())?;
    Some((
        site_variants(order[first], &lists[first], max_answers),
        first,
    ))
}

/// Rotations of one site's eligible members: the first answer follows the weights (smooth
/// weighted round robin), the others follow in weight order.
fn site_variants(site: SiteId, members: &[(MemberId, u32)], max_answers: usize) -> Vec<Variant> {
    let n = members.len();
    let k = max_answers.min(n);
    let weights: Vec<u32> = members.iter().map(|(_, w)| *w).collect();
    smooth_weighted_sequence(&weights, MAX_VARIANTS)
        .into_iter()
        .map(|first| Variant {
            members: (0..k).map(|j| members[(first + j) % n].0).collect(),
            site: Some(site),
        })
        .collect()
}

fn spread_variants(
    policy: Policy,
    order: &[SiteId],
    lists: &[Vec<(MemberId, u32)>],
    available: &[usize],
    max_answers: usize,
) -> Vec<Variant> {
    let weights: Vec<u32> = available
        .iter()
        .map(|i| match policy {
            Policy::Weighted => lists[*i]
                .iter()
                .fold(0u32, |sum, (_, w)| sum.saturating_add(*w)),
            _ => 1,
        })
        .collect();
    let per_site: Vec<Vec<Variant>> = available
        .iter()
        .map(|i| site_variants(order[*i], &lists[*i], max_answers))
        .collect();
    let sequence = smooth_weighted_sequence(&weights, MAX_VARIANTS);
    let rounds = per_site.iter().map(Vec::len).max().unwrap_or(1);
    let mut used = vec![0usize; available.len()];
    let mut variants = Vec::new();
    'fill: for _ in 0..rounds {
        for &slot in &sequence {
            if variants.len() == MAX_VARIANTS {
                break 'fill;
            }
            let rotations = &per_site[slot];
            variants.push(rotations[used[slot] % rotations.len()].clone());
            used[slot] += 1;
        }
    }
    variants
}

/// Smooth weighted round robin (as nginx does it): indices in an order where each appears in
/// proportion to its weight, evenly interleaved. Weights are scaled so the cycle is at most
/// `cap` long (or as long as the number of non-zero weights, if that is more); every index
/// with a non-zero weight appears at least once, an index with weight 0 never.
pub fn smooth_weighted_sequence(weights: &[u32], cap: usize) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut scaled: Vec<u64> = weights.iter().map(|w| u64::from(*w / divisor)).collect();
    let total: u64 = scaled.iter().sum();
    let budget = cap.max(scaled.iter().filter(|w| **w > 0).count()) as u64;
    if total > budget {
        scaled = scaled
            .iter()
            .map(|w| match *w {
                0 => 0,
                w => ((u128::from(w) * u128::from(budget) / u128::from(total)) as u64).max(1),
            })
            .collect();
        // Raising small weights to 1 may overshoot the budget: take it from the largest.
        let mut sum: u64 = scaled.iter().sum();
        while sum > budget {
            let largest = (0..scaled.len()).max_by_key(|i| scaled[*i]).unwrap_or(0);
            scaled[largest] -= 1;
            sum -= 1;
        }
    }
    let total: i64 = scaled.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; scaled.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&scaled) {
            *c += *w as i64;
        }
        let best = (0..current.len())
            .max_by(|a, b| current[*a].cmp(&current[*b]).then(b.cmp(a)))
            .unwrap_or(0);
        current[best] -= total;
        sequence.push(best);
    }
    sequence
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
