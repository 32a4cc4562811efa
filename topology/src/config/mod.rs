//! One TOML document describes a whole deployment. [`Config::from_toml`] parses it from a
//! string (no file I/O here) and validates it into a [`Deployment`]; every error names the
//! key and the line.

pub mod duration;
mod locate;
mod proxy;
mod raw;
mod validate;

pub use locate::KeyPath;
pub use proxy::{
    BackendTls, HttpLimits, Listener, ListenerProtocol, ListenerTls, ProxySettings, Route,
};

use crate::model::Deployment;

/// The embedded default configuration: three sites (fra, iad, sin) on loopback and the
/// service `s3`. The same text is checked in as `docs/examples/portico.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

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
            discover_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// A parsed and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub deployment: Deployment,
    pub components: ComponentSections,
}

/// A configuration that cannot be used; the message names the key and, when known, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("line {line}, column {column}: `{key}`: {message}")]
    Syntax {
        key: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}`{key}`: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        key: String,
        line: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    /// The key path the error is about.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

/// An error found while validating, before its line is looked up.
#[derive(Debug, Clone)]
pub(crate) struct Invalid {
    pub key: KeyPath,
    pub message: String,
}

impl Config {
    /// Parses and validates a configuration document. `now_unix` (seconds) is the default SOA
    /// serial when the document sets none.
    pub fn from_toml(source: &str, now_unix: u64) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(source).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = locate::line_column(source, offset);
            let mut key = locate::path_at(source, offset).to_string();
            if key.is_empty() {
                key = "(document)".into();
            }
            ConfigError::Syntax {
                key,
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        validate::validate(raw, now_unix).map_err(|invalid| {
            let line = locate::span_of(source, &invalid.key)
                .map(|span| locate::line_column(source, span.start).0);
            ConfigError::Invalid {
                key: invalid.key.to_string(),
                line,
                message: invalid.message,
            }
        })
    }

    /// The embedded default configuration.
    pub fn default_config(now_unix: u64) -> Config {
        Config::from_toml(DEFAULT_CONFIG, now_unix)
            .expect("the embedded default configuration is valid")
    }
}

#[cfg(test)]
mod tests;

/// The token a client presents, from the text of its token file: the first line that is
/// neither blank nor a `#` comment; of `name token`, the token.
pub fn client_token(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .and_then(|line| line.split_whitespace().last())
}
