//! The members this proxy forwards to, per service, with what the store says of them
//! (weight for new connections, discovered address) and what the proxy saw itself
//! (requests outstanding, consecutive connect failures, ejection).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use topology::Deployment;

/// One member of one service at this site.
#[derive(Debug)]
pub struct Backend {
    pub service: String,
    pub node: String,
    /// Stable key for rendezvous hashing (of the node name).
    pub key: u64,
    /// The configured weight (used until the store speaks).
    configured_weight: u32,
    /// The weight for new connections, from the store (0: none).
    weight: AtomicU32,
    address: Mutex<IpAddr>,
    port: u16,
    /// Requests (S3) or connections (L4) in flight.
    pub outstanding: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the proxy started until which the member is ejected (0: not).
    ejected_until_ms: AtomicU64,
    /// How many times passive detection ejected it.
    pub ejections: AtomicU64,
    /// Idle upstream connections kept for reuse (S3).
    pub idle: Mutex<Vec<crate::s3::upstream::Idle>>,
}

impl Backend {
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(
            *self.address.lock().unwrap_or_else(|e| e.into_inner()),
            self.port,
        )
    }

    /// The store's weight for new connections, or 0 while ejected by passive detection.
    pub fn weight(&self, now: &Clock) -> u32 {
        if self.ejected_until_ms.load(Ordering::Relaxed) > now.millis() {
            0
        } else {
            self.weight.load(Ordering::Relaxed)
        }
    }

    pub fn store_weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now: &Clock) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now.millis()
    }

    /// A connection attempt or exchange failed: after `eject_after` in a row the member
    /// takes no new work for `eject_for`.
    pub fn failed(&self, clock: &Clock, eject_after: u32, eject_for: Duration) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= eject_after {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms.store(
                clock.millis() + eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
            self.ejections.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn succeeded(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the proxy started (monotonic).
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock::default()
    }
    pub fn millis(&self) -> u64 {
        // Offset by one so that 0 can mean "never ejected".
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// The members of one service at this site.
#[derive(Debug)]
pub struct Pool {
    pub service: String,
    pub members: Vec<Arc<Backend>>,
    /// Rotates ties in least-outstanding choice.
    turn: AtomicU32,
}

impl Pool {
    /// Rendezvous choice of the member for `client`, skipping `exclude` (members already
    /// tried for this connection). Every proxy of the site with the same view agrees.
    pub fn by_client(
        &self,
        client: IpAddr,
        clock: &Clock,
        exclude: &[u64],
    ) -> Option<Arc<Backend>> {
        let candidates: Vec<(u64, u32)> = self
            .members
            .iter()
            .filter(|m| !exclude.contains(&m.key))
            .map(|m| (m.key, m.weight(clock)))
            .collect();
        let key = topology::rendezvous::pick(client, &candidates)?;
        self.members.iter().find(|m| m.key == key).cloned()
    }

    /// The member with the fewest outstanding requests per unit of weight, skipping
    /// `exclude`; ties rotate.
    pub fn least_outstanding(&self, clock: &Clock, exclude: &[u64]) -> Option<Arc<Backend>> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize % n;
        let mut best: Option<(&Arc<Backend>, u64, u64)> = None;
        for i in 0..n {
            let member = &self.members[(start + i) % n];
            let weight = u64::from(member.weight(clock));
            if weight == 0 || exclude.contains(&member.key) {
                continue;
            }
            let load = u64::from(member.outstanding.load(Ordering::Relaxed)) + 1;
            // load / weight < best_load / best_weight, without division.
            let better = match best {
                None => true,
                Some((_, best_load, best_weight)) => load * best_weight < best_load * weight,
            };
            if better {
                best = Some((member, load, weight));
            }
        }
        best.map(|(member, _, _)| member.clone())
    }
}

/// All pools this proxy uses, by service name.
#[derive(Debug)]
pub struct Pools {
    pub site: String,
    pub by_service: HashMap<String, Arc<Pool>>,
    pub clock: Clock,
    pub eject_after: u32,
    pub eject_for: Duration,
}

impl Pools {
    /// The members at `site` of each service in `services`, on `port_of(service)` unless a
    /// member names its own port.
    pub fn new(
        deployment: &Deployment,
        site: &str,
        services: &[(String, Option<u16>, u16)],
        eject_after: u32,
        eject_for: Duration,
    ) -> Pools {
        let mut by_service = HashMap::new();
        for (name, backend_port, listen_port) in services {
            if by_service.contains_key(name) {
                continue;
            }
            let Some(service) = deployment.services.iter().find(|s| &s.name == name) else {
                continue;
            };
            let members = service
                .members
                .iter()
                .map(|id| deployment.member(*id))
                .filter(|m| deployment.site(m.site).name == site)
                .map(|m| {
                    Arc::new(Backend {
                        service: name.clone(),
                        node: m.node.clone(),
                        key: topology::rendezvous::key_of(&m.node),
                        configured_weight: m.weight,
                        // Discovered slots have no address until the store names one.
                        weight: AtomicU32::new(if m.discover.is_some() { 0 } else { m.weight }),
                        address: Mutex::new(m.address),
                        port: backend_port.or(m.port).unwrap_or(*listen_port),
                        outstanding: AtomicU32::new(0),
                        consecutive_failures: AtomicU32::new(0),
                        ejected_until_ms: AtomicU64::new(0),
                        ejections: AtomicU64::new(0),
                        idle: Mutex::new(Vec::new()),
                    })
                })
                .collect();
            by_service.insert(
                name.clone(),
                Arc::new(Pool {
                    service: name.clone(),
                    members,
                    turn: AtomicU32::new(0),
                }),
            );
        }
        Pools {
            site: site.to_string(),
            by_service,
            clock: Clock::new(),
            eject_after,
            eject_for,
        }
    }

    pub fn pool(&self, service: &str) -> Option<&Arc<Pool>> {
        self.by_service.get(service)
    }

    /// Applies one state from the store (a line of `/api/v1/watch`): weights and
    /// discovered addresses of this site's members. Returns how many members changed.
    pub fn apply_state(&self, state: &serde_json::Value) -> usize {
        let mut changed = 0;
        let Some(services) = state.get("services").and_then(|s| s.as_array()) else {
            return 0;
        };
        for service in services {
            let Some(pool) = service
                .get("name")
                .and_then(|n| n.as_str())
                .and_then(|n| self.by_service.get(n))
            else {
                continue;
            };
            let Some(members) = service.get("members").and_then(|m| m.as_array()) else {
                continue;
            };
            for view in members {
                let node = view.get("node").and_then(|n| n.as_str());
                let Some(backend) = pool.members.iter().find(|b| Some(b.node.as_str()) == node)
                else {
                    continue;
                };
                let weight = view
                    .get("proxy_weight")
                    .and_then(|w| w.as_u64())
                    .map(|w| w.min(u64::from(u32::MAX)) as u32)
                    .unwrap_or(backend.configured_weight);
                if backend.weight.swap(weight, Ordering::Relaxed) != weight {
                    changed += 1;
                }
                if let Some(address) = view
                    .get("address")
                    .and_then(|a| a.as_str())
                    .and_then(|a| a.parse::<IpAddr>().ok())
                {
                    let mut current = backend.address.lock().unwrap_or_else(|e| e.into_inner());
                    if *current != address {
                        *current = address;
                        backend
                            .idle
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clear();
                        changed += 1;
                    }
                }
            }
        }
        changed
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.by_service.values().flat_map(|p| p.members.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Pools {
        let config = topology::Config::default_config(0);
        Pools::new(
            &config.deployment,
            "fra",
            &[("s3".to_string(), Some(9000), 9000)],
            2,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn store_weights_and_ejection_decide_who_gets_new_work() {
        let pools = pools();
        let pool = pools.pool("s3").unwrap();
        assert_eq!(pool.members.len(), 2, "fra has two s3 members");
        let client: IpAddr = "127.1.0.9".parse().unwrap();
        let first = pool.by_client(client, &pools.clock, &[]).unwrap();
        // The same client always lands on the same member.
        for _ in 0..10 {
            assert_eq!(
                pool.by_client(client, &pools.clock, &[]).unwrap().key,
                first.key
            );
        }
        // The store drains it: the client moves, and back when it is undrained.
        let state = serde_json::json!({"services": [{"name": "s3", "members": [
            {"node": first.node, "proxy_weight": 0, "address": first.address().ip().to_string()}
        ]}]});
        assert_eq!(pools.apply_state(&state), 1);
        let other = pool.by_client(client, &pools.clock, &[]).unwrap();
        assert_ne!(other.key, first.key);
        let state = serde_json::json!({"services": [{"name": "s3", "members": [
            {"node": first.node, "proxy_weight": 100}
        ]}]});
        pools.apply_state(&state);
        assert_eq!(
            pool.by_client(client, &pools.clock, &[]).unwrap().key,
            first.key
        );
        // Two failures in a row eject it; one success in between resets the count.
        assert!(!first.failed(&pools.clock, 2, Duration::from_secs(60)));
        first.succeeded();
        assert!(!first.failed(&pools.clock, 2, Duration::from_secs(60)));
        assert!(first.failed(&pools.clock, 2, Duration::from_secs(60)));
        assert_ne!(
            pool.by_client(client, &pools.clock, &[]).unwrap().key,
            first.key
        );
        assert!(
            pool.least_outstanding(&pools.clock, &[other.key]).is_none(),
            "the only other member is excluded and the first is ejected"
        );
    }

    #[test]
    fn least_outstanding_prefers_the_idle_member_and_respects_weight() {
        let pools = pools();
        let pool = pools.pool("s3").unwrap();
        let (a, b) = (&pool.members[0], &pool.members[1]);
        a.outstanding.store(3, Ordering::Relaxed);
        for _ in 0..5 {
            assert_eq!(
                pool.least_outstanding(&pools.clock, &[]).unwrap().key,
                b.key
            );
        }
        // With four times the weight, a's 3 in flight weigh less than b's 1.
        b.outstanding.store(1, Ordering::Relaxed);
        let state = serde_json::json!({"services": [{"name": "s3", "members": [
            {"node": a.node, "proxy_weight": 400}, {"node": b.node, "proxy_weight": 100}
        ]}]});
        pools.apply_state(&state);
        assert_eq!(
            pool.least_outstanding(&pools.clock, &[]).unwrap().key,
            a.key
        );
    }
}
