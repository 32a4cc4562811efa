//! The checked configuration: what validation yields for a node, and for the site agent's
//! and the proxy's sections.

use super::proxy::ProxySettings;
use crate::model::{Deployment, NodeSettings};

/// Component sections other than the DNS node's, kept as parsed for their binaries.
#[derive(Debug, Clone, Default)]
pub struct ComponentSections {
    pub site_agent: SiteAgentSettings,
    pub proxy: ProxySettings,
}

/// The site agent's section (`[site_agent]`).
#[derive(Debug, Clone)]
pub struct SiteAgentSettings {
    /// The site this agent probes (`--site` replaces it).
    pub site: Option<String>,
    /// gslb-dns admin API addresses to report to, tried in order.
    pub report_to: Vec<std::net::SocketAddr>,
    /// Probes in flight at once, at most.
    pub max_concurrent_probes: usize,
    /// A member whose smoothed probe latency exceeds this gets a smoothly lower weight.
    pub slow_probe: std::time::Duration,
    /// S3 credentials for `s3` checks (the secret from a file, or from the environment:
    /// `PORTICO_S3_ACCESS_KEY`, `PORTICO_S3_SECRET_KEY`).
    pub s3_access_key: Option<String>,
    pub s3_secret_key_file: Option<String>,
    /// DNS server for discovered member groups (default: the system's resolver).
    pub resolver: Option<std::net::SocketAddr>,
    /// How often discovered groups are resolved again.
    pub discover_interval: std::time::Duration,
    /// A file holding the bearer token for the store's API (first line).
    pub token_file: Option<String>,
    /// The API's CA (and this agent's certificate): set, the API is reached over HTTPS.
    pub api_tls: Option<crate::model::ApiClientTls>,
    /// How long one report may take at one gslb-dns node before the next is tried.
    pub report_timeout: std::time::Duration,
    /// How often the agent asks the store for its deployment (a new member to probe).
    pub config_interval: std::time::Duration,
}

impl Default for SiteAgentSettings {
    fn default() -> Self {
        SiteAgentSettings {
            site: None,
            report_to: Vec::new(),
            max_concurrent_probes: 64,
            slow_probe: std::time::Duration::from_millis(200),
            s3_access_key: None,
            s3_secret_key_file: None,
            resolver: None,
            token_file: None,
            api_tls: None,
            discover_interval: std::time::Duration::from_secs(5),
            report_timeout: std::time::Duration::from_secs(1),
            config_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// A parsed and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The deployment as this file describes it (the store's replicated copy wins once the
    /// store has one).
    pub deployment: Deployment,
    /// This node's own settings.
    pub node: NodeSettings,
    pub components: ComponentSections,
    /// The file's deployment tables as a canonical document (what a seed or a
    /// `portico config apply` replicates).
    pub document: String,
}

/// The largest deployment document the store takes (a raft entry carries it whole).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
