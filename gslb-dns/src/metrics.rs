//! Counters of the DNS front, sharded per worker (each UDP thread and the TCP side own a
//! shard, so the hot path never contends on a cache line), summed when scraped, and the
//! Prometheus text rendering of counters and state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use topology::Deployment;

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

    /// Total queries answered with `rcode` (for tests and the state API).
    pub fn queries_with_rcode(&self, rcode: u16) -> u64 {
        self.sum(usize::from(rcode).min(RCODES - 1))
    }

    /// The Prometheus text exposition of the counters and of `snapshot`'s state.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let deployment = &snapshot.deployment;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_owned()
        };
        let mut lines = Vec::new();
        let name = family(
            "portico_dns_queries_total",
            "counter",
            "DNS queries answered, by response code.",
        );
        for (i, rcode) in RCODE_NAMES.iter().enumerate() {
            let value = self.sum(i);
            if value > 0 || i <= 5 {
                lines.push(format!("{name}{{rcode=\"{rcode}\"}} {value}"));
            }
        }
        let _ = writeln!(out, "{}", lines.join("\n"));
        let simple = [
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
        ];
        for (name, help, index) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                self.sum(index)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portico_dns_service_queries_total Queries for GSLB service names.\n# TYPE portico_dns_service_queries_total counter"
        );
        for (i, service) in deployment.services.iter().enumerate() {
            let _ = writeln!(
                out,
                "portico_dns_service_queries_total{{service=\"{}\"}} {}",
                service.name,
                self.sum(FIXED + i)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portico_dns_answers_total Service answers, by the site they send clients to.\n# TYPE portico_dns_answers_total counter"
        );
        for (i, service) in deployment.services.iter().enumerate() {
            for (j, site) in deployment.sites.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "portico_dns_answers_total{{service=\"{}\",site=\"{}\"}} {}",
                    service.name,
                    site.name,
                    self.sum(FIXED + self.services + i * self.sites + j)
                );
            }
        }
        render_state(&mut out, snapshot);
        let _ = writeln!(
            out,
            "# HELP portico_geoip_reloads_total GeoIP database reloads.\n# TYPE portico_geoip_reloads_total counter\nportico_geoip_reloads_total {}",
            self.geoip_reloads.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP portico_geoip_reload_errors_total GeoIP database files that failed to load (the old one stays).\n# TYPE portico_geoip_reload_errors_total counter\nportico_geoip_reload_errors_total {}",
            self.geoip_reload_errors.load(Ordering::Relaxed)
        );
        out
    }
}

fn render_state(out: &mut String, snapshot: &Snapshot) {
    let deployment = &snapshot.deployment;
    let state = &snapshot.state;
    let _ = writeln!(
        out,
        "# HELP portico_member_up Member health as last reported (1 up, 0 down or unknown).\n# TYPE portico_member_up gauge"
    );
    for member in &deployment.members {
        let up = state.member(member.id).health == topology::Health::Up;
        let _ = writeln!(
            out,
            "portico_member_up{{service=\"{}\",site=\"{}\",node=\"{}\"}} {}",
            deployment.service(member.service).name,
            deployment.site(member.site).name,
            member.node,
            u8::from(up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP portico_member_eligible Whether the member can be handed out now.\n# TYPE portico_member_eligible gauge"
    );
    for member in &deployment.members {
        let family = if member.address.is_ipv4() {
            topology::Family::V4
        } else {
            topology::Family::V6
        };
        let eligible = topology::select::member_verdict(
            deployment,
            state,
            member.id,
            family,
            snapshot.built_at,
        )
        .is_ok();
        let _ = writeln!(
            out,
            "portico_member_eligible{{service=\"{}\",site=\"{}\",node=\"{}\"}} {}",
            deployment.service(member.service).name,
            deployment.site(member.site).name,
            member.node,
            u8::from(eligible)
        );
    }
    let _ = writeln!(
        out,
        "# HELP portico_snapshot_generation Answer snapshots published since start.\n# TYPE portico_snapshot_generation gauge\nportico_snapshot_generation {}",
        snapshot.generation
    );
    let _ = writeln!(
        out,
        "# HELP portico_client_class_blocks Prefix blocks in the client-class table.\n# TYPE portico_client_class_blocks gauge\nportico_client_class_blocks {}",
        snapshot.classes.blocks()
    );
    let _ = writeln!(
        out,
        "# HELP portico_geoip_build_epoch Build time of the GeoIP database in use.\n# TYPE portico_geoip_build_epoch gauge\nportico_geoip_build_epoch {}",
        snapshot.geo.build_epoch()
    );
}
