//! Counters of the DNS front, sharded per worker (each UDP thread and the TCP side own a
//! shard, so the hot path never contends on a cache line) and summed when scraped.
//!
//! Per-service and per-site counters are kept by name, not by the deployment's dense ids
//! (a new deployment version renumbers them): every name gets a slot once, for the life of
//! the process, and each snapshot carries the slots of its deployment
//! ([`MetricSlots`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use topology::Deployment;

use super::Outcome;
use super::snapshot::MetricSlots;

/// Response codes counted one by one (higher ones share the last slot).
pub const RCODES: usize = 17;

/// Service and site names counted separately, at most; later names are counted in the
/// totals only.
pub const MAX_SERVICES: usize = 256;
pub const MAX_SITES: usize = 64;

const DROPPED: usize = RCODES;
const TRUNCATED: usize = RCODES + 1;
const TCP: usize = RCODES + 2;
const FIXED: usize = RCODES + 3;
const LEN: usize = FIXED + MAX_SERVICES + MAX_SERVICES * MAX_SITES;

/// One worker's counters: by rcode, dropped, truncated, TCP queries, per service, per
/// (service, site) answer.
#[derive(Debug)]
pub struct Shard {
    counters: Box<[AtomicU64]>,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            counters: (0..LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bump(&self, index: usize) {
        self.counters[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one handled packet, its service and site through `slots`.
    pub fn record(&self, outcome: &Outcome, tcp: bool, slots: &MetricSlots) {
        if !outcome.reply {
            return self.bump(DROPPED);
        }
        self.bump(usize::from(outcome.rcode).min(RCODES - 1));
        if outcome.truncated {
            self.bump(TRUNCATED);
        }
        if tcp {
            self.bump(TCP);
        }
        let service = outcome
            .service
            .and_then(|s| slots.services.get(s.0 as usize).copied().flatten());
        if let Some(service) = service.map(usize::from) {
            self.bump(FIXED + service);
            let site = outcome
                .site
                .and_then(|s| slots.sites.get(s.0 as usize).copied().flatten());
            if let Some(site) = site.map(usize::from) {
                self.bump(FIXED + MAX_SERVICES + service * MAX_SITES + site);
            }
        }
    }

    fn get(&self, index: usize) -> u64 {
        self.counters[index].load(Ordering::Relaxed)
    }
}

/// All shards, and the names behind the slots.
#[derive(Debug, Default)]
pub struct Counters {
    shards: Mutex<Vec<Arc<Shard>>>,
    names: Mutex<Names>,
    /// TCP connections open now.
    pub tcp_open: AtomicU64,
    tcp_closed: [AtomicU64; TcpClose::ALL.len()],
}

/// Why the server closed (or turned away) a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// The server holds `dns.tcp_max_connections` already.
    Limit,
    /// This client address holds `dns.tcp_max_per_client` already.
    PerClient,
    /// The client did not read its replies within `dns.tcp_write_timeout`.
    WriteTimeout,
    /// The connection had its `dns.tcp_max_queries`.
    QueryLimit,
    /// Nothing arrived within `dns.tcp_idle_timeout`.
    Idle,
}

impl TcpClose {
    pub const ALL: [TcpClose; 5] = [
        TcpClose::Limit,
        TcpClose::PerClient,
        TcpClose::WriteTimeout,
        TcpClose::QueryLimit,
        TcpClose::Idle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TcpClose::Limit => "limit",
            TcpClose::PerClient => "per_client",
            TcpClose::WriteTimeout => "write_timeout",
            TcpClose::QueryLimit => "query_limit",
            TcpClose::Idle => "idle",
        }
    }
}

#[derive(Debug, Default)]
struct Names {
    services: BTreeMap<String, u16>,
    sites: BTreeMap<String, u16>,
}

fn slot_of(names: &mut BTreeMap<String, u16>, name: &str, max: usize) -> Option<u16> {
    if let Some(slot) = names.get(name) {
        return Some(*slot);
    }
    let next = names.len();
    (next < max).then(|| {
        names.insert(name.to_owned(), next as u16);
        next as u16
    })
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    /// A new shard for one worker.
    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::new());
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        shard
    }

    /// The slots of `deployment`'s services and sites (new names get new slots).
    pub fn slots(&self, deployment: &Deployment) -> MetricSlots {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let names = &mut *names;
        MetricSlots {
            services: deployment
                .services
                .iter()
                .map(|s| slot_of(&mut names.services, &s.name, MAX_SERVICES))
                .collect(),
            sites: deployment
                .sites
                .iter()
                .map(|s| slot_of(&mut names.sites, &s.name, MAX_SITES))
                .collect(),
        }
    }

    fn sum(&self, index: usize) -> u64 {
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.get(index))
            .sum()
    }

    /// Queries by response code (index = rcode; the last slot holds the rest).
    pub fn by_rcode(&self) -> [u64; RCODES] {
        std::array::from_fn(|i| self.sum(i))
    }

    pub fn dropped(&self) -> u64 {
        self.sum(DROPPED)
    }

    pub fn truncated(&self) -> u64 {
        self.sum(TRUNCATED)
    }

    pub fn tcp(&self) -> u64 {
        self.sum(TCP)
    }

    pub fn tcp_closed(&self, why: TcpClose) -> u64 {
        self.tcp_closed[why as usize].load(Ordering::Relaxed)
    }

    pub fn count_tcp_close(&self, why: TcpClose) {
        self.tcp_closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Queries per service name, for every name counted so far.
    pub fn by_service(&self) -> Vec<(String, u64)> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .services
            .iter()
            .map(|(name, slot)| (name.clone(), self.sum(FIXED + usize::from(*slot))))
            .collect()
    }

    /// Answers per (service, site) name.
    pub fn by_service_and_site(&self) -> Vec<(String, String, u64)> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (service, s) in &names.services {
            for (site, t) in &names.sites {
                let index = FIXED + MAX_SERVICES + usize::from(*s) * MAX_SITES + usize::from(*t);
                out.push((service.clone(), site.clone(), self.sum(index)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_slot_across_deployments() {
        let counters = Counters::new();
        let shard = counters.shard();
        let config = topology::Config::default_config(0);
        let slots = counters.slots(&config.deployment);
        let outcome = Outcome {
            reply: true,
            rcode: 0,
            service: Some(topology::ServiceId(0)),
            site: Some(topology::SiteId(1)),
            truncated: false,
        };
        shard.record(&outcome, false, &slots);
        // The same names in another order keep their slots: iad is site 0 now.
        let mut reordered = config.deployment.clone();
        reordered.sites.rotate_left(1);
        let slots = counters.slots(&reordered);
        let outcome = Outcome {
            site: Some(topology::SiteId(0)),
            ..outcome
        };
        shard.record(&outcome, true, &slots);
        assert_eq!(counters.by_service(), [("s3".to_string(), 2)]);
        let iad: Vec<u64> = counters
            .by_service_and_site()
            .into_iter()
            .filter(|(_, site, _)| site == "iad")
            .map(|(_, _, n)| n)
            .collect();
        assert_eq!(iad, [2], "counted by name, not by position");
        assert_eq!(counters.by_rcode()[0], 2);
        assert_eq!(counters.tcp(), 1);
    }
}
