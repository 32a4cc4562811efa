//! The TOML document as written by the operator: serde types, every table
//! `deny_unknown_fields`. [`super::validate`] turns them into checked types.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub zone: RawZone,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub geoip: RawGeoip,
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub site_agent: Option<RawSiteAgent>,
    #[serde(default)]
    pub proxy: Option<RawProxy>,
}

/// A deployment document: the replicated tables of a configuration, and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub zone: RawZone,
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
}

/// The top-level tables a deployment document holds.
pub const DEPLOYMENT_TABLES: [&str; 3] = ["zone", "site", "service"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: String,
    pub ns: Vec<String>,
    #[serde(default = "default_ns_ttl")]
    pub ns_ttl: u32,
    #[serde(default = "default_record_ttl")]
    pub default_ttl: u32,
    #[serde(default)]
    pub soa: RawSoa,
    #[serde(default)]
    pub records: Vec<String>,
}

fn default_ns_ttl() -> u32 {
    3600
}
fn default_record_ttl() -> u32 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    /// Primary server; defaults to the first NS.
    pub mname: Option<String>,
    #[serde(default = "default_rname")]
    pub rname: String,
    /// Defaults to the configuration's load time in seconds since the epoch (set by the shell).
    pub serial: Option<u32>,
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    pub retry: u32,
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    #[serde(default = "default_minimum")]
    pub minimum: u32,
    #[serde(default = "default_ns_ttl")]
    pub ttl: u32,
}

impl Default for RawSoa {
    fn default() -> Self {
        RawSoa {
            mname: None,
            rname: default_rname(),
            serial: None,
            refresh: default_refresh(),
            retry: default_retry(),
            expire: default_expire(),
            minimum: default_minimum(),
            ttl: default_ns_ttl(),
        }
    }
}

fn default_rname() -> String {
    "hostmaster".into()
}
fn default_refresh() -> u32 {
    3600
}
fn default_retry() -> u32 {
    600
}
fn default_expire() -> u32 {
    86400
}
fn default_minimum() -> u32 {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub listen: Option<Vec<String>>,
    pub udp_workers: Option<usize>,
    pub max_udp_payload: Option<u16>,
    pub tcp_idle_timeout: Option<String>,
    pub tcp_max_connections: Option<usize>,
    pub tcp_max_per_client: Option<usize>,
    pub tcp_max_queries: Option<u32>,
    pub tcp_write_timeout: Option<String>,
    pub rtt_max_age: Option<String>,
    pub ecs: Option<bool>,
    pub debug_queries: Option<bool>,
    pub debug_networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub enabled: Option<bool>,
    pub token_file: Option<String>,
    pub reads: Option<String>,
    pub tls: Option<RawAdminTls>,
    pub insecure_plaintext: Option<bool>,
    #[serde(default)]
    pub names: Vec<String>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub request_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminTls {
    pub cert: String,
    pub key: String,
    pub ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoip {
    pub database: Option<String>,
    pub reload_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: String,
    pub location: Option<RawLocation>,
    #[serde(default)]
    pub client_networks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "default_service_ttl")]
    pub ttl: u32,
    #[serde(default = "default_max_answers")]
    pub max_answers: usize,
    #[serde(default = "default_min_healthy")]
    pub min_healthy: usize,
    #[serde(default = "default_when_all_down")]
    pub when_all_down: String,
    #[serde(default)]
    pub spill: bool,
    #[serde(default)]
    pub failover_order: Vec<String>,
    #[serde(default)]
    pub unknown_client_order: Vec<String>,
    pub stale_after: Option<String>,
    pub check: Option<RawCheck>,
    pub members: Vec<RawMember>,
}

fn default_policy() -> String {
    "topology".into()
}
fn default_service_ttl() -> u32 {
    1
}
fn default_max_answers() -> usize {
    2
}
fn default_min_healthy() -> usize {
    1
}
fn default_when_all_down() -> String {
    "answer-all".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub fall_hard: Option<u32>,
    pub fast_interval: Option<String>,
    pub watch: Option<bool>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub body: Option<String>,
    pub version: Option<u32>,
    #[serde(default)]
    pub deep: bool,
    pub mount_port: Option<u16>,
    pub virtual_host: Option<String>,
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub site: String,
    pub node: Option<String>,
    pub address: Option<String>,
    /// A DNS name whose A/AAAA records are the group's addresses (e.g. a VIP pool).
    pub discover: Option<String>,
    /// How many addresses the group holds at most (slots), with `discover`.
    pub slots: Option<usize>,
    pub weight: Option<u32>,
    pub port: Option<u16>,
    pub agent_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteAgent {
    pub site: Option<String>,
    #[serde(default)]
    pub report_to: Vec<String>,
    pub max_concurrent_probes: Option<usize>,
    pub slow_probe: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key_file: Option<String>,
    pub resolver: Option<String>,
    pub discover_interval: Option<String>,
    pub token_file: Option<String>,
    pub report_timeout: Option<String>,
    pub config_interval: Option<String>,
    pub api_ca: Option<String>,
    pub api_cert: Option<String>,
    pub api_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub site: Option<String>,
    pub token_file: Option<String>,
    pub api_ca: Option<String>,
    pub api_cert: Option<String>,
    pub api_key: Option<String>,
    #[serde(default)]
    pub state_from: Vec<String>,
    pub metrics: Option<String>,
    pub drain_timeout: Option<String>,
    pub rtt_report_interval: Option<String>,
    pub rtt_prefix_v4: Option<u8>,
    pub rtt_prefix_v6: Option<u8>,
    pub access_log: Option<bool>,
    pub eject_after: Option<u32>,
    pub eject_for: Option<String>,
    pub report_ejections: Option<bool>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub protocol: String,
    pub listen: String,
    pub service: String,
    pub backend_port: Option<u16>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_per_client: Option<usize>,
    pub splice: Option<bool>,
    pub tls: Option<RawListenerTls>,
    pub backend_tls: Option<RawBackendTls>,
    #[serde(default)]
    pub domains: Vec<String>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_request_line: Option<usize>,
    pub header_timeout: Option<String>,
    pub body_idle_timeout: Option<String>,
    pub retries: Option<u32>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTls {
    pub ca: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub service: String,
    pub min_content_length: Option<u64>,
    pub max_content_length: Option<u64>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub host: Option<String>,
    pub bucket: Option<String>,
    pub header: Option<String>,
    #[serde(default)]
    pub query: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub node_id: Option<u64>,
    pub data_dir: Option<String>,
    pub tick_interval: Option<String>,
    pub election_ticks: Option<usize>,
    pub heartbeat_ticks: Option<usize>,
    pub snapshot_threshold: Option<u64>,
    pub propose_timeout: Option<String>,
    #[serde(default)]
    pub nodes: Vec<RawStoreNode>,
    pub tls: Option<RawTls>,
    pub cluster: Option<String>,
    pub insecure_plaintext: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreNode {
    pub id: u64,
    pub raft: String,
    pub api: Option<String>,
    pub dns: Option<String>,
    pub site: Option<String>,
    #[serde(default)]
    pub learner: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub ca: String,
}
