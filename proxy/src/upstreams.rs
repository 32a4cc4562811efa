//! The members this proxy forwards to: an immutable snapshot ([`Upstreams`]) built from the
//! store's view of this site (weights for new work, discovered addresses, ports) and
//! published with `ArcSwap`; each request or connection loads it once. What the proxy
//! observes of a member itself (work in flight, passive failures and ejection) lives in a
//! [`Live`] record that follows the member from one snapshot to the next.
//!
//! Choosing a member is pure: [`pick_by_client`] (weighted rendezvous, so every proxy of
//! the site agrees) and [`pick_least_outstanding`] over candidates, and [`Ejection`] is a
//! state machine with the time passed in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use topology::Deployment;
use topology::wire::views::StateView;

/// Passive failure detection of one member: `after` consecutive failures eject it for a
/// while. Pure; `now_ms` is passed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ejection {
    failures: u32,
    /// Ejected until this time (0: not ejected).
    until_ms: u64,
}

impl Ejection {
    /// Counts a failure; true when it ejects the member (for `eject_for_ms`).
    pub fn failed(&mut self, now_ms: u64, after: u32, eject_for_ms: u64) -> bool {
        self.failures += 1;
        if self.failures >= after {
            self.failures = 0;
            self.until_ms = now_ms + eject_for_ms;
            return true;
        }
        false
    }

    /// A success: the failures in a row start again from zero.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The store says the member serves again (its agent's probes confirmed it after it
    /// was out of the answers): the ejection, if any, ends now rather than at its time.
    pub fn lift(&mut self) -> bool {
        let lifted = self.until_ms != 0;
        *self = Ejection::default();
        lifted
    }

    pub fn ejected(&self, now_ms: u64) -> bool {
        self.until_ms > now_ms
    }
}

/// Among `candidates` (`(key, weight)`), the member `client` goes to, skipping `exclude`
/// (members already tried for this connection): weighted rendezvous hashing.
pub fn pick_by_client(client: IpAddr, candidates: &[(u64, u32)], exclude: &[u64]) -> Option<u64> {
    let open: Vec<(u64, u32)> = candidates
        .iter()
        .copied()
        .filter(|(key, _)| !exclude.contains(key))
        .collect();
    topology::rendezvous::pick(client, &open)
}

/// Among `candidates` (`(key, weight, in flight)`), the one with the least work in flight
/// per unit of weight, skipping `exclude` and weight 0; ties go to the first from `start`
/// (rotate `start` to spread them).
pub fn pick_least_outstanding(
    candidates: &[(u64, u32, u32)],
    start: usize,
    exclude: &[u64],
) -> Option<u64> {
    let n = candidates.len();
    let mut best: Option<(u64, u64, u64)> = None;
    for i in 0..n {
        let (key, weight, outstanding) = candidates[(start + i) % n];
        if weight == 0 || exclude.contains(&key) {
            continue;
        }
        let (load, weight) = (u64::from(outstanding) + 1, u64::from(weight));
        // load / weight < best_load / best_weight, without division.
        let better =
            best.is_none_or(|(_, best_load, best_weight)| load * best_weight < best_load * weight);
        if better {
            best = Some((key, load, weight));
        }
    }
    best.map(|(key, _, _)| key)
}

/// What the proxy itself observes of a member, kept across snapshots.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests (S3) or connections (L4) in flight.
    pub outstanding: AtomicU32,
    ejection: Mutex<Ejection>,
    /// How many times passive detection ejected it.
    pub ejections: AtomicU64,
}

/// One member of one service at this site, as of one snapshot.
#[derive(Debug)]
pub struct Member {
    pub service: String,
    pub node: String,
    /// Stable key for rendezvous hashing (of the node name).
    pub key: u64,
    pub address: SocketAddr,
    /// The store's weight for new work (0: drained, down, undiscovered...).
    pub weight: u32,
    pub live: Arc<Live>,
}

impl Member {
    /// The weight for new work now: the store's, or 0 while ejected.
    pub fn weight_at(&self, now_ms: u64) -> u32 {
        if self.ejected(now_ms) { 0 } else { self.weight }
    }

    pub fn ejected(&self, now_ms: u64) -> bool {
        self.live
            .ejection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ejected(now_ms)
    }

    /// A connection or an exchange failed; true when this ejects the member.
    pub fn failed(&self, now_ms: u64, after: u32, eject_for: Duration) -> bool {
        let ejected = self
            .live
            .ejection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(now_ms, after, eject_for.as_millis() as u64);
        if ejected {
            self.live.ejections.fetch_add(1, Ordering::Relaxed);
        }
        ejected
    }

    pub fn succeeded(&self) {
        self.live
            .ejection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .succeeded();
    }
}

/// The members of one service at this site.
#[derive(Debug)]
pub struct Pool {
    pub service: String,
    pub members: Vec<Arc<Member>>,
    /// Rotates ties in least-outstanding choice.
    turn: AtomicU32,
}

impl Pool {
    fn find(&self, key: u64) -> Option<Arc<Member>> {
        self.members.iter().find(|m| m.key == key).cloned()
    }

    /// The member for `client` (rendezvous), skipping `exclude`.
    pub fn by_client(&self, client: IpAddr, now_ms: u64, exclude: &[u64]) -> Option<Arc<Member>> {
        let candidates: Vec<(u64, u32)> = self
            .members
            .iter()
            .map(|m| (m.key, m.weight_at(now_ms)))
            .collect();
        self.find(pick_by_client(client, &candidates, exclude)?)
    }

    /// The member with the least work in flight per weight, skipping `exclude`.
    pub fn least_outstanding(&self, now_ms: u64, exclude: &[u64]) -> Option<Arc<Member>> {
        let candidates: Vec<(u64, u32, u32)> = self
            .members
            .iter()
            .map(|m| {
                (
                    m.key,
                    m.weight_at(now_ms),
                    m.live.outstanding.load(Ordering::Relaxed),
                )
            })
            .collect();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        self.find(pick_least_outstanding(&candidates, start, exclude)?)
    }
}

/// A service this proxy forwards to, and the member port: the listener's `backend_port`,
/// else the member's own port, else the listener's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePorts {
    pub service: String,
    pub backend_port: Option<u16>,
    pub listen_port: u16,
}

/// Every pool this proxy uses, as of one state of the store.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub by_service: HashMap<String, Arc<Pool>>,
    /// The store index this snapshot reflects (0: the configuration file).
    pub index: u64,
}

/// A member as a source describes it, before it becomes a [`Member`].
struct Described {
    node: String,
    address: IpAddr,
    port: Option<u16>,
    weight: u32,
}

impl Upstreams {
    pub fn pool(&self, service: &str) -> Option<&Arc<Pool>> {
        self.by_service.get(service)
    }

    pub fn members(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.by_service.values().flat_map(|p| p.members.iter())
    }

    /// From this proxy's configuration file, until the store speaks: configured weights,
    /// and discovered slots without an address yet at weight 0.
    pub fn from_deployment(
        deployment: &Deployment,
        site: &str,
        services: &[ServicePorts],
    ) -> Upstreams {
        Upstreams::build(services, 0, &Upstreams::default(), |service| {
            let id = deployment.service_by_name(service)?;
            Some(
                deployment
                    .service(id)
                    .members
                    .iter()
                    .map(|m| deployment.member(*m))
                    .filter(|m| deployment.site(m.site).name == site)
                    .map(|m| Described {
                        node: m.node.clone(),
                        address: m.address,
                        port: m.port,
                        weight: if m.discover.is_some() { 0 } else { m.weight },
                    })
                    .collect(),
            )
        })
    }

    /// From a state of the store (a line of the watch stream), keeping what the proxy
    /// observed of members that were in `previous`.
    pub fn from_view(
        view: &StateView,
        index: u64,
        site: &str,
        services: &[ServicePorts],
        previous: &Upstreams,
    ) -> Upstreams {
        Upstreams::build(services, index, previous, |service| {
            let service = view.services.iter().find(|s| s.name == service)?;
            Some(
                service
                    .members
                    .iter()
                    .filter(|m| m.site == site)
                    .map(|m| Described {
                        node: m.node.clone(),
                        address: m.address,
                        port: m.port,
                        weight: m.proxy_weight,
                    })
                    .collect(),
            )
        })
    }

    fn build(
        services: &[ServicePorts],
        index: u64,
        previous: &Upstreams,
        describe: impl Fn(&str) -> Option<Vec<Described>>,
    ) -> Upstreams {
        let mut by_service = HashMap::new();
        for ports in services {
            if by_service.contains_key(&ports.service) {
                continue;
            }
            let members = describe(&ports.service)
                .unwrap_or_default()
                .into_iter()
                .map(|d| {
                    let before = previous
                        .pool(&ports.service)
                        .and_then(|p| p.members.iter().find(|m| m.node == d.node));
                    let live = before.map(|m| m.live.clone()).unwrap_or_default();
                    // Out of the store's picks (down, passively marked, drained) and now
                    // back: the agent's probes confirmed it serves, so what this proxy saw
                    // before no longer keeps it out (a restarted node takes work at once,
                    // not when the local ejection runs out).
                    if before.is_some_and(|m| m.weight == 0)
                        && d.weight > 0
                        && live.ejection.lock().unwrap_or_else(|e| e.into_inner()).lift()
                    {
                        tracing::info!(service = %ports.service, member = %d.node, "the store has the member back: ejection lifted");
                    }
                    let port = ports.backend_port.or(d.port).unwrap_or(ports.listen_port);
                    Arc::new(Member {
                        service: ports.service.clone(),
                        key: topology::rendezvous::key_of(&d.node),
                        node: d.node,
                        address: SocketAddr::new(d.address, port),
                        weight: d.weight,
                        live,
                    })
                })
                .collect();
            by_service.insert(
                ports.service.clone(),
                Arc::new(Pool {
                    service: ports.service.clone(),
                    members,
                    turn: AtomicU32::new(0),
                }),
            );
        }
        Upstreams { by_service, index }
    }
}

/// Milliseconds since the proxy started (monotonic), for ejections.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    pub fn millis(&self) -> u64 {
        // Offset by one so that 0 can mean "never ejected".
        self.0.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests;
