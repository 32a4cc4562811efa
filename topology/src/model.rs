//! The checked deployment: what [`crate::config::Config::from_toml`] (a node's file) or
//! [`Deployment::from_document`] (the store's replicated copy) yields once every reference,
//! address and number has been validated. Sites, services and members are addressed by
//! dense indices so the runtime [`crate::State`] can be plain vectors.
//!
//! Two kinds of settings: the [`Deployment`] (zone, sites, services, members, checks) is the
//! same on every node and lives in the replicated store; [`NodeSettings`] (listen addresses,
//! data directory, TLS files, node id) belong to one node and stay in its file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::name::DomainName;
use crate::records::StaticRecord;

/// Latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

impl Coordinates {
    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

/// Index of a site in [`Deployment::sites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SiteId(pub u16);

/// Index of a service in [`Deployment::services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceId(pub u16);

/// Index of a member in [`Deployment::members`] (members of all services, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub u32);

/// A whole deployment: the zone, the sites, the services and their members. Replicated:
/// every node answers from the same one, switched at the same log index.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub zone: Zone,
    pub sites: Vec<Site>,
    pub services: Vec<Service>,
    pub members: Vec<Member>,
}

/// What belongs to one DNS node and stays in its file: where it listens, where it keeps its
/// data, which node of the store it is.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub dns: DnsSettings,
    pub admin: AdminSettings,
    pub geoip: GeoipSettings,
    pub store: StoreSettings,
}

impl Deployment {
    pub fn site(&self, id: SiteId) -> &Site {
        &self.sites[id.0 as usize]
    }
    pub fn service(&self, id: ServiceId) -> &Service {
        &self.services[id.0 as usize]
    }
    pub fn member(&self, id: MemberId) -> &Member {
        &self.members[id.0 as usize]
    }
    pub fn site_by_name(&self, name: &str) -> Option<SiteId> {
        self.sites
            .iter()
            .position(|s| s.name == name)
            .map(|i| SiteId(i as u16))
    }
    pub fn service_by_name(&self, name: &str) -> Option<ServiceId> {
        self.services
            .iter()
            .position(|s| s.name == name)
            .map(|i| ServiceId(i as u16))
    }
    /// The service answering for `fqdn`, if any.
    pub fn service_by_fqdn(&self, fqdn: &DomainName) -> Option<ServiceId> {
        self.services
            .iter()
            .position(|s| &s.fqdn == fqdn)
            .map(|i| ServiceId(i as u16))
    }
    /// A member by service name and node name.
    pub fn member_by_name(&self, service: &str, node: &str) -> Option<MemberId> {
        let service = self.service_by_name(service)?;
        self.service(service)
            .members
            .iter()
            .copied()
            .find(|m| self.member(*m).node == node)
    }
    pub fn site_ids(&self) -> impl Iterator<Item = SiteId> + use<> {
        (0..self.sites.len() as u16).map(SiteId)
    }
    pub fn service_ids(&self) -> impl Iterator<Item = ServiceId> + use<> {
        (0..self.services.len() as u16).map(ServiceId)
    }
}

/// The authoritative zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub origin: DomainName,
    pub ns: Vec<DomainName>,
    pub ns_ttl: u32,
    pub soa: Soa,
    pub records: Vec<StaticRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Soa {
    pub mname: DomainName,
    pub rname: DomainName,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Site {
    pub name: String,
    pub location: Option<Coordinates>,
    pub client_networks: Vec<IpNet>,
}

/// How a service orders sites for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The client's own site, then the nearest by great-circle distance.
    Topology,
    /// Lowest measured RTT for the client's prefix; falls back to `topology` without samples.
    Latency,
    /// A fixed priority list (`failover_order`), whatever the client.
    Failover,
    /// Across all available sites, in proportion to their members' weights.
    Weighted,
    /// Across all available sites in turn.
    RoundRobin,
    /// The least loaded site; falls back to `topology` until load reports exist.
    LeastLoad,
}

impl Policy {
    pub const NAMES: &'static [&'static str] = &[
        "topology",
        "latency",
        "failover",
        "weighted",
        "round-robin",
        "least-load",
    ];

    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<Policy> {
        Some(match text {
            "topology" => Policy::Topology,
            "latency" => Policy::Latency,
            "failover" => Policy::Failover,
            "weighted" => Policy::Weighted,
            "round-robin" => Policy::RoundRobin,
            "least-load" => Policy::LeastLoad,
            _ => return None,
        })
    }
}

/// What to answer when no site is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenAllDown {
    /// Fail open: answer as if every member were healthy (as Route 53 does).
    AnswerAll,
    /// Answer NODATA.
    Nodata,
}

/// A GSLB service name and how it is answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub fqdn: DomainName,
    pub policy: Policy,
    pub ttl: u32,
    pub max_answers: usize,
    pub min_healthy: usize,
    pub when_all_down: WhenAllDown,
    /// Fill up to `max_answers` from the next available sites.
    pub spill: bool,
    /// Site priority for the `failover` policy (sites not listed follow in configuration order).
    pub failover_order: Vec<SiteId>,
    /// Site order for clients whose location is unknown (default: configuration order).
    pub unknown_client_order: Vec<SiteId>,
    /// A site whose agent has not reported for this long is down for everyone.
    #[serde(with = "crate::config::duration::serde_millis")]
    pub stale_after: Duration,
    /// Health check run by the site agents; without one, members are statically up.
    pub check: Option<Check>,
    pub members: Vec<MemberId>,
}

/// A storage-readiness probe, as the site agent runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub kind: CheckKind,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub interval: Duration,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Failures in a row that bring a member down when the last is hard (refused, reset, an
    /// error answer); at most `fall`.
    pub fall_hard: u32,
    /// After a failure that has not brought the member down, the next probe comes this soon
    /// (from the start of the last), until `fall` is reached or a probe succeeds.
    #[serde(with = "crate::config::duration::serde_millis")]
    pub fast_interval: Duration,
    /// Between probes, hold an idle connection to the member's port: a service process that
    /// dies closes it (the kernel does), and the member is probed at once instead of at
    /// the next interval.
    pub watch: bool,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub bucket: Option<String>,
    /// S3 region for signing (default `us-east-1`).
    pub region: String,
    /// `http`: a string the body must contain.
    pub body: Option<String>,
    /// `nfs`: the NFS version the NULL call asks for (3 or 4, default 3).
    pub version: u32,
    /// `nfs`: also MOUNT the export `path` and GETATTR its root (NFSv3); `smb`: also open an
    /// anonymous session and TREE_CONNECT to the share `path`.
    pub deep: bool,
    /// `nfs` deep check: the MOUNT protocol's port (default: the NFS port, as user-space
    /// servers serve both on one port).
    pub mount_port: Option<u16>,
    /// `s3`: virtual-hosted style, `HEAD /` with `Host: <bucket>.<virtual_host>` (default:
    /// path style, `HEAD /<bucket>`).
    pub virtual_host: Option<String>,
    /// `s3` and `http`: HTTPS (rustls), trusting `ca_file` (or the system's CAs) and
    /// verifying `server_name` (or the member's address).
    pub tls: bool,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
}

impl Check {
    /// The port probed when the member sets none.
    pub fn default_port(&self) -> u16 {
        self.port.unwrap_or(match self.kind {
            CheckKind::S3 | CheckKind::Http if self.tls => 443,
            CheckKind::S3 | CheckKind::Http => 80,
            CheckKind::Nfs => 2049,
            CheckKind::Smb => 445,
            CheckKind::Tcp => 80,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    S3,
    Nfs,
    Smb,
    Tcp,
    Http,
}

/// One storage node (or VIP) that can be handed out for a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub id: MemberId,
    pub service: ServiceId,
    pub site: SiteId,
    /// Unique within the service; defaults to the address (for a discovered group,
    /// `<group>-<slot>`).
    pub node: String,
    /// The configured address; for a slot of a discovered group a placeholder, the address
    /// comes from the state (`MemberState::address`).
    pub address: IpAddr,
    /// The DNS name the site agent resolves to fill this group's slots.
    pub discover: Option<DomainName>,
    /// Configured share, 1..=1000 (default 100); load feedback scales it.
    pub weight: u32,
    /// The port probes use on this member (overrides the check's port).
    pub port: Option<u16>,
    pub agent_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsSettings {
    pub listen: Vec<SocketAddr>,
    /// UDP receive loops per listen address; 0 = one per CPU.
    pub udp_workers: usize,
    pub max_udp_payload: u16,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    /// TCP connections one client address may hold open at once.
    pub tcp_max_per_client: usize,
    /// Queries answered on one TCP connection before the server closes it.
    pub tcp_max_queries: u32,
    /// A TCP reply the client does not read within this closes the connection.
    #[serde(with = "crate::config::duration::serde_millis")]
    pub tcp_write_timeout: Duration,
    /// RTT samples older than this no longer steer `latency` answers (a proxy that stopped
    /// seeing a prefix's clients must not keep them on its site forever).
    #[serde(with = "crate::config::duration::serde_millis")]
    pub rtt_max_age: Duration,
    /// Honour EDNS Client Subnet.
    pub ecs: bool,
    /// Answer `_explain.<service>` TXT queries with the selection's reasoning.
    pub debug_queries: bool,
    /// Sources that may ask `_explain` and `_status` (others get REFUSED): the answers are
    /// large (amplification) and tell the cluster's inner state.
    pub debug_networks: Vec<IpNet>,
}

impl DnsSettings {
    /// Whether `source` may read the `_explain` and `_status` names.
    pub fn debug_allowed(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        self.debug_networks.iter().any(|net| net.contains(&source))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub listen: Option<SocketAddr>,
    /// Identities, one per line (`name token [role]`); mutations need one.
    pub token_file: Option<String>,
    /// Who may read without a token.
    pub reads: ReadAccess,
    /// HTTPS for the API, and the CA of client certificates.
    pub tls: Option<AdminTls>,
    /// Serve plain HTTP on an address other than loopback (tokens then travel in clear).
    pub insecure_plaintext: bool,
    /// The names clients reach the API by (`Host`), besides the address it listens on.
    pub names: Vec<String>,
    /// Connections open at once; more are closed as they come.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    #[serde(with = "crate::config::duration::serde_millis")]
    pub header_timeout: Duration,
    /// A request's body must arrive, and its answer start, within this (a drill that is
    /// waited for is bounded by its own timeout instead).
    #[serde(with = "crate::config::duration::serde_millis")]
    pub request_timeout: Duration,
}

/// How a client (a site agent, a proxy) verifies a TLS admin API, and its own certificate
/// when it proves its identity with one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiClientTls {
    pub ca: String,
    /// Certificate and key files, both or neither.
    pub identity: Option<(String, String)>,
}

/// The admin API's TLS files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminTls {
    pub cert: String,
    pub key: String,
    /// Client certificates signed by this CA prove an identity (their role in a DNS name,
    /// see `docs/security.md`); the node also verifies other nodes' APIs against it.
    pub ca: Option<String>,
}

impl AdminSettings {
    /// Why the API may not listen on `listen` as configured: plain HTTP off loopback without
    /// `insecure_plaintext`. Checked when the file is read, and again after a command-line
    /// override of the address.
    pub fn exposure_error(&self) -> Option<String> {
        let listen = self.listen?;
        if self.tls.is_some() || self.insecure_plaintext || listen.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "the admin API would serve plain HTTP on {listen}, off loopback, where tokens travel in clear: set admin.tls = {{ cert, key }} (or admin.insecure_plaintext = true)"
        ))
    }
}

/// Who may use the admin API's read endpoints without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadAccess {
    /// Anyone who can reach the API.
    Open,
    /// Clients on loopback; others need a token.
    Loopback,
    /// Everyone needs a token (loopback too, once tokens are configured).
    Token,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeoipSettings {
    /// A MaxMind DB file; `None` means the embedded test database.
    pub database: Option<String>,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub reload_interval: Duration,
}

/// The replicated store's cluster and timing.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSettings {
    /// This node's id (from `store.node_id` or `--node-id`).
    pub node_id: u64,
    pub data_dir: String,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub tick_interval: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_threshold: u64,
    #[serde(with = "crate::config::duration::serde_millis")]
    pub propose_timeout: Duration,
    /// Every node of the cluster; empty means a cluster of this node alone.
    pub nodes: Vec<StoreNode>,
    pub tls: Option<TlsFiles>,
    /// The cluster's name: node certificates name `node-<id>.<cluster>`.
    pub cluster: String,
    /// Raft without TLS (only allowed when every node's raft address is loopback).
    pub insecure_plaintext: bool,
}

impl StoreSettings {
    /// The name a node's certificate must carry (a DNS subject alternative name): how a
    /// peer proves it is node `id` of this cluster.
    pub fn node_identity(&self, id: u64) -> String {
        node_identity(&self.cluster, id)
    }

    /// The voters a new cluster starts with (nodes not marked `learner`).
    pub fn initial_voters(&self) -> Vec<u64> {
        if self.nodes.is_empty() {
            return vec![self.node_id];
        }
        self.nodes
            .iter()
            .filter(|n| !n.learner)
            .map(|n| n.id)
            .collect()
    }

    /// This node's entry, if the cluster is listed.
    pub fn this_node(&self) -> Option<&StoreNode> {
        self.nodes.iter().find(|n| n.id == self.node_id)
    }
}

/// The name a store node's certificate carries as a DNS subject alternative name:
/// `node-<id>.<cluster>`. Peers check it on both ends of every raft connection.
pub fn node_identity(cluster: &str, id: u64) -> String {
    format!("node-{id}.{cluster}")
}

/// One node of the store cluster.
#[derive(Debug, Clone, Serialize)]
pub struct StoreNode {
    pub id: u64,
    /// Where its raft transport listens.
    pub raft: SocketAddr,
    /// Where its admin and ingest API listens.
    pub api: Option<SocketAddr>,
    /// Where it answers DNS (drills query every node they know this of).
    pub dns: Option<SocketAddr>,
    /// The site it serves (a name: node settings do not depend on the replicated deployment).
    pub site: Option<String>,
    /// Not an initial voter: it joins later through the admin API.
    pub learner: bool,
}

/// Certificate files for mutual TLS between store nodes (PEM).
#[derive(Debug, Clone, Serialize)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    pub ca: String,
}
