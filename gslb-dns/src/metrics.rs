//! Counters of the DNS front, sharded per worker (each UDP thread and the TCP side own a
//! shard, so the hot path never contends on a cache line), summed when scraped, and the
//! Prometheus text rendering of counters and state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use state_store::{NodeStatus, PeerState};
use topology::{Deployment, Family};

use crate::dns::Outcome;
use crate::snapshot::Snapshot;

const RCODES: usize = 17;
const RCODE_NAMES: [&str; RCODES] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
    "BADVERS",
];

/// One worker's counters: by rcode, dropped, truncated, TCP queries, per service, per
/// (service, site) answer.
#[derive(Debug)]
pub struct Shard {
    counters: Box<[AtomicU64]>,
    services: usize,
    sites: usize,
}

const DROPPED: usize = RCODES;
const TRUNCATED: usize = RCODES + 1;
const TCP: usize = RCODES + 2;
const FIXED: usize = RCODES + 3;

impl Shard {
    fn new(services: usize, sites: usize) -> Shard {
        let len = FIXED + services + services * sites;
        Shard {
            counters: (0..len).map(|_| AtomicU64::new(0)).collect(),
            services,
            sites,
        }
    }

    fn bump(&self, index: usize) {
        self.counters[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one handled packet.
    pub fn record(&self, outcome: &Outcome, tcp: bool) {
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
        if let Some(service) = outcome.service {
            let service = service.0 as usize;
            self.bump(FIXED + service);
            if let Some(site) = outcome.site {
                self.bump(FIXED + self.services + service * self.sites + site.0 as usize);
            }
        }
    }

    fn get(&self, index: usize) -> u64 {
        self.counters[index].load(Ordering::Relaxed)
    }
}

/// All shards; new shards are handed to workers as they start.
#[derive(Debug)]
pub struct Metrics {
    shards: Mutex<Vec<Arc<Shard>>>,
    services: usize,
    sites: usize,
    pub geoip_reload_errors: AtomicU64,
    pub geoip_reloads: AtomicU64,
}

impl Metrics {
    pub fn new(deployment: &Deployment) -> Metrics {
        Metrics {
            shards: Mutex::new(Vec::new()),
            services: deployment.services.len(),
            sites: deployment.sites.len(),
            geoip_reload_errors: AtomicU64::new(0),
            geoip_reloads: AtomicU64::new(0),
        }
    }

    /// A new shard for one worker.
    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::new(self.services, self.sites));
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        shard
    }

    fn sum(&self, index: usize) -> u64 {
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.get(index))
            .sum()
    }

    /// The Prometheus text exposition of the counters, of `snapshot`'s state and of the
    /// store's status.
    pub fn render(&self, snapshot: &Snapshot, store: &NodeStatus, peers: &[PeerState]) -> String {
        let deployment = &snapshot.deployment;
        let mut out = Exposition::default();
        out.family(
            "portico_dns_queries_total",
            "counter",
            "DNS queries answered, by response code.",
        );
        for (i, rcode) in RCODE_NAMES.iter().enumerate() {
            let value = self.sum(i);
            if value > 0 || i <= 5 {
                out.sample("portico_dns_queries_total", &[("rcode", rcode)], value);
            }
        }
        for (name, help, index) in [
            (
                "portico_dns_dropped_total",
                "Packets given no reply (responses, runts).",
                DROPPED,
            ),
            (
                "portico_dns_truncated_total",
                "UDP replies truncated (TC set).",
                TRUNCATED,
            ),
            (
                "portico_dns_tcp_queries_total",
                "Queries received over TCP.",
                TCP,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], self.sum(index));
        }
        out.family(
            "portico_dns_service_queries_total",
            "counter",
            "Queries for GSLB service names.",
        );
        for (i, service) in deployment.services.iter().enumerate() {
            out.sample(
                "portico_dns_service_queries_total",
                &[("service", &service.name)],
                self.sum(FIXED + i),
            );
        }
        out.family(
            "portico_dns_answers_total",
            "counter",
            "Service answers, by the site they send clients to.",
        );
        for (i, service) in deployment.services.iter().enumerate() {
            for (j, site) in deployment.sites.iter().enumerate() {
                let value = self.sum(FIXED + self.services + i * self.sites + j);
                out.sample(
                    "portico_dns_answers_total",
                    &[("service", &service.name), ("site", &site.name)],
                    value,
                );
            }
        }
        render_state(&mut out, snapshot);
        render_store(&mut out, store, peers);
        for (name, help, counter) in [
            (
                "portico_geoip_reloads_total",
                "GeoIP database reloads.",
                &self.geoip_reloads,
            ),
            (
                "portico_geoip_reload_errors_total",
                "GeoIP database files that failed to load (the old one stays).",
                &self.geoip_reload_errors,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], counter.load(Ordering::Relaxed));
        }
        out.0
    }
}

/// Prometheus text format, written line by line.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn render_store(out: &mut Exposition, store: &NodeStatus, peers: &[PeerState]) {
    let is_leader = u64::from(store.leader == store.id && store.id != 0);
    for (name, kind, help, value) in [
        (
            "portico_store_leader",
            "gauge",
            "1 when this node is the raft leader.",
            is_leader,
        ),
        (
            "portico_store_leader_id",
            "gauge",
            "The leader this node knows (0: none).",
            store.leader,
        ),
        ("portico_store_term", "gauge", "Raft term.", store.term),
        (
            "portico_store_commit_index",
            "gauge",
            "Raft commit index.",
            store.commit,
        ),
        (
            "portico_store_applied_index",
            "gauge",
            "Index of the last applied entry.",
            store.applied,
        ),
        (
            "portico_store_degraded",
            "gauge",
            "1 while this node has no quorum and answers from its last applied state.",
            u64::from(store.degraded),
        ),
        (
            "portico_store_proposals_total",
            "counter",
            "Proposals made through this node.",
            store.proposals,
        ),
        (
            "portico_store_proposals_failed_total",
            "counter",
            "Proposals refused at once (no leader, dropped).",
            store.proposals_failed,
        ),
        (
            "portico_store_apply_latency_microseconds",
            "gauge",
            "Mean time from proposal to local apply, recent proposals.",
            store.apply_latency_us,
        ),
        (
            "portico_store_snapshots_total",
            "counter",
            "Snapshots taken (log compactions) since start.",
            store.snapshots_taken,
        ),
        (
            "portico_store_snapshot_index",
            "gauge",
            "Index of the latest snapshot.",
            store.snapshot_index,
        ),
        (
            "portico_store_voters",
            "gauge",
            "Voters in the cluster configuration.",
            store.voters.len() as u64,
        ),
        (
            "portico_store_learners",
            "gauge",
            "Learners in the cluster configuration.",
            store.learners.len() as u64,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    out.family(
        "portico_store_peer_connected",
        "gauge",
        "1 while the raft connection to a peer is up.",
    );
    for peer in peers {
        let id = peer.id.to_string();
        out.sample(
            "portico_store_peer_connected",
            &[("peer", &id), ("address", &peer.address)],
            u64::from(peer.connected),
        );
    }
}

/// A per-member 0/1 gauge.
type MemberGauge<'a> = dyn Fn(&topology::Member) -> bool + 'a;

fn render_state(out: &mut Exposition, snapshot: &Snapshot) {
    let deployment = &snapshot.deployment;
    let state = &snapshot.state;
    let member_gauges: [(&str, &str, &MemberGauge<'_>); 2] = [
        (
            "portico_member_up",
            "Member health as last reported (1 up, 0 down or unknown).",
            &|m| state.member(m.id).health == topology::Health::Up,
        ),
        (
            "portico_member_eligible",
            "Whether the member can be handed out now.",
            &|m| {
                topology::select::member_verdict(
                    deployment,
                    state,
                    m.id,
                    Family::of(&state.address_of(deployment, m.id)),
                    snapshot.built_at,
                )
                .is_ok()
            },
        ),
    ];
    for (name, help, value) in member_gauges {
        out.family(name, "gauge", help);
        for member in &deployment.members {
            let labels = [
                ("service", deployment.service(member.service).name.as_str()),
                ("site", deployment.site(member.site).name.as_str()),
                ("node", member.node.as_str()),
            ];
            out.sample(name, &labels, u64::from(value(member)));
        }
    }
    for (name, help, value) in [
        (
            "portico_snapshot_generation",
            "Answer snapshots published since start.",
            snapshot.generation,
        ),
        (
            "portico_client_class_blocks",
            "Prefix blocks in the client-class table.",
            snapshot.classes.blocks() as u64,
        ),
        (
            "portico_geoip_build_epoch",
            "Build time of the GeoIP database in use.",
            snapshot.geo.build_epoch(),
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
}
