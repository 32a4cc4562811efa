//! The node's `/metrics`: the DNS front's counters, the state of every member, the store's
//! status and GeoIP reloads, in the Prometheus text format ([`topology::exposition`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use state_store::TransportCounters;
use topology::Family;
use topology::exposition::{Exposition, Kind};
use topology::wire::views::{NodeStatus, PeerState};

use crate::dns::Snapshot;
use crate::dns::counters::{Counters, RCODES};

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

/// Why the admin API refused a request (all before any handler ran, but an agent or proxy
/// writing for another site, which the handler finds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `Host` that is not one of the API's names (DNS rebinding).
    Host,
    /// An `Origin` other than the API's own (a page elsewhere).
    Origin,
    /// A change not sent as JSON (a form, a `no-cors` fetch).
    ContentType,
    /// No identity, or a token that is not one of ours.
    Unauthenticated,
    /// An identity whose role does not allow it.
    Forbidden,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::Host,
        Refusal::Origin,
        Refusal::ContentType,
        Refusal::Unauthenticated,
        Refusal::Forbidden,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::ContentType => "content_type",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
        }
    }
}

/// The admin API's connections and refusals.
#[derive(Debug, Default)]
pub struct AdminCounters {
    refusals: [AtomicU64; 5],
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once: `admin.max_connections` were open.
    pub over_limit: AtomicU64,
    /// TLS handshakes that failed or did not finish within the header timeout.
    pub handshake_failures: AtomicU64,
    /// Requests whose body or answer took longer than `admin.request_timeout`.
    pub timeouts: AtomicU64,
}

impl AdminCounters {
    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        Refusal::ALL
            .iter()
            .map(|r| (r.name(), self.refusals[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Everything the node counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The DNS front's counters (shards handed to the workers).
    pub counters: Arc<Counters>,
    pub geoip_reload_errors: AtomicU64,
    pub geoip_reloads: AtomicU64,
    /// TLS files read again on SIGHUP, and those that could not be used.
    pub tls_reloads: AtomicU64,
    pub tls_reload_errors: AtomicU64,
    pub admin: Arc<AdminCounters>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The page: counters, `snapshot`'s state and the store's status.
    pub fn render(
        &self,
        snapshot: &Snapshot,
        store: &NodeStatus,
        peers: &[PeerState],
        transport: &TransportCounters,
    ) -> String {
        let mut out = Exposition::new();
        let counters = &self.counters;
        out.family(
            "portico_dns_queries_total",
            Kind::Counter,
            "DNS queries answered, by response code.",
        );
        for (i, (rcode, value)) in RCODE_NAMES.iter().zip(counters.by_rcode()).enumerate() {
            if value > 0 || i <= 5 {
                out.sample("portico_dns_queries_total", &[("rcode", rcode)], value);
            }
        }
        out.single(
            "portico_dns_dropped_total",
            Kind::Counter,
            "Packets given no reply (responses, runts).",
            counters.dropped(),
        );
        out.single(
            "portico_dns_truncated_total",
            Kind::Counter,
            "UDP replies truncated (TC set).",
            counters.truncated(),
        );
        out.single(
            "portico_dns_tcp_queries_total",
            Kind::Counter,
            "Queries received over TCP.",
            counters.tcp(),
        );
        out.single(
            "portico_dns_tcp_connections",
            Kind::Gauge,
            "TCP connections open now.",
            counters.tcp_open.load(std::sync::atomic::Ordering::Relaxed),
        );
        out.family(
            "portico_dns_tcp_closed_total",
            Kind::Counter,
            "TCP connections the server closed or turned away, by reason.",
        );
        for why in crate::dns::counters::TcpClose::ALL {
            out.sample(
                "portico_dns_tcp_closed_total",
                &[("reason", why.label())],
                counters.tcp_closed(why),
            );
        }
        out.family(
            "portico_dns_service_queries_total",
            Kind::Counter,
            "Queries for GSLB service names.",
        );
        for (service, value) in counters.by_service() {
            out.sample(
                "portico_dns_service_queries_total",
                &[("service", &service)],
                value,
            );
        }
        out.family(
            "portico_dns_answers_total",
            Kind::Counter,
            "Service answers, by the site they send clients to.",
        );
        for (service, site, value) in counters.by_service_and_site() {
            out.sample(
                "portico_dns_answers_total",
                &[("service", &service), ("site", &site)],
                value,
            );
        }
        render_state(&mut out, snapshot);
        render_store(&mut out, store, peers);
        out.family(
            "portico_store_peer_rejected_total",
            Kind::Counter,
            "Inbound raft connections closed, by reason (identity: a certificate naming another node; sender: messages from another node than the first, or from an unknown one).",
        );
        for (reason, value) in transport.rejected() {
            out.sample(
                "portico_store_peer_rejected_total",
                &[("reason", reason)],
                value,
            );
        }
        out.single(
            "portico_store_inbound_dropped_total",
            Kind::Counter,
            "Raft messages from peers dropped because the node's input queue was full.",
            transport.dropped.load(Ordering::Relaxed),
        );
        out.single(
            "portico_store_chunked_messages_sent_total",
            Kind::Counter,
            "Raft messages sent in several frames (snapshots larger than one frame).",
            transport.chunked_sent.load(Ordering::Relaxed),
        );
        out.single(
            "portico_store_largest_message_bytes",
            Kind::Gauge,
            "The largest raft message this node sent or received, in octets.",
            transport.largest_message.load(Ordering::Relaxed),
        );
        out.single(
            "portico_geoip_reloads_total",
            Kind::Counter,
            "GeoIP database reloads.",
            self.geoip_reloads.load(Ordering::Relaxed),
        );
        out.single(
            "portico_geoip_reload_errors_total",
            Kind::Counter,
            "GeoIP database files that failed to load (the old one stays).",
            self.geoip_reload_errors.load(Ordering::Relaxed),
        );
        render_admin(&mut out, &self.admin);
        out.single(
            "portico_tls_reloads_total",
            Kind::Counter,
            "TLS files (store, admin API) read again on SIGHUP.",
            self.tls_reloads.load(Ordering::Relaxed),
        );
        out.single(
            "portico_tls_reload_errors_total",
            Kind::Counter,
            "TLS reloads that failed (the files loaded before stay in use).",
            self.tls_reload_errors.load(Ordering::Relaxed),
        );
        out.finish()
    }
}

fn render_admin(out: &mut Exposition, admin: &AdminCounters) {
    out.family(
        "portico_admin_refused_total",
        Kind::Counter,
        "Admin API requests refused, by reason (host, origin, content_type, unauthenticated, forbidden: a role that does not allow it, or an agent or proxy writing for another site).",
    );
    for (reason, value) in admin.refusals() {
        out.sample("portico_admin_refused_total", &[("reason", reason)], value);
    }
    for (name, kind, help, value) in [
        (
            "portico_admin_connections",
            Kind::Gauge,
            "Admin API connections open.",
            &admin.open,
        ),
        (
            "portico_admin_connections_over_limit_total",
            Kind::Counter,
            "Admin API connections closed at once because admin.max_connections were open.",
            &admin.over_limit,
        ),
        (
            "portico_admin_tls_handshake_failures_total",
            Kind::Counter,
            "Admin API TLS handshakes that failed or took longer than admin.header_timeout.",
            &admin.handshake_failures,
        ),
        (
            "portico_admin_request_timeouts_total",
            Kind::Counter,
            "Admin API requests whose body or answer took longer than admin.request_timeout.",
            &admin.timeouts,
        ),
    ] {
        out.single(name, kind, help, value.load(Ordering::Relaxed));
    }
}

fn render_store(out: &mut Exposition, store: &NodeStatus, peers: &[PeerState]) {
    let is_leader = u64::from(store.leader == store.id && store.id != 0);
    for (name, kind, help, value) in [
        (
            "portico_store_leader",
            Kind::Gauge,
            "1 when this node is the raft leader.",
            is_leader,
        ),
        (
            "portico_store_leader_id",
            Kind::Gauge,
            "The leader this node knows (0: none).",
            store.leader,
        ),
        ("portico_store_term", Kind::Gauge, "Raft term.", store.term),
        (
            "portico_store_commit_index",
            Kind::Gauge,
            "Raft commit index.",
            store.commit,
        ),
        (
            "portico_store_applied_index",
            Kind::Gauge,
            "Index of the last applied entry.",
            store.applied,
        ),
        (
            "portico_store_degraded",
            Kind::Gauge,
            "1 while this node has no quorum and answers from its last applied state.",
            u64::from(store.degraded),
        ),
        (
            "portico_store_failed",
            Kind::Gauge,
            "1 once this node stopped applying (a storage failure, or an entry this build cannot read).",
            u64::from(store.failed.is_some()),
        ),
        (
            "portico_store_proposals_total",
            Kind::Counter,
            "Proposals made through this node.",
            store.proposals,
        ),
        (
            "portico_store_proposals_failed_total",
            Kind::Counter,
            "Proposals refused at once (no leader, dropped).",
            store.proposals_failed,
        ),
        (
            "portico_store_apply_latency_microseconds",
            Kind::Gauge,
            "Mean time from proposal to local apply, recent proposals.",
            store.apply_latency_us,
        ),
        (
            "portico_store_snapshots_total",
            Kind::Counter,
            "Snapshots taken (log compactions) since start.",
            store.snapshots_taken,
        ),
        (
            "portico_store_snapshot_index",
            Kind::Gauge,
            "Index of the latest snapshot.",
            store.snapshot_index,
        ),
        (
            "portico_store_voters",
            Kind::Gauge,
            "Voters in the cluster configuration.",
            store.voters.len() as u64,
        ),
        (
            "portico_store_learners",
            Kind::Gauge,
            "Learners in the cluster configuration.",
            store.learners.len() as u64,
        ),
    ] {
        out.single(name, kind, help, value);
    }
    out.family(
        "portico_store_peer_connected",
        Kind::Gauge,
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
        out.family(name, Kind::Gauge, help);
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
            "portico_config_version",
            "The deployment version the answers come from (0: the node's own file).",
            snapshot.config_version,
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
        out.single(name, Kind::Gauge, help, value);
    }
}
