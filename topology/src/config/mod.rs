//! One TOML document describes a whole deployment. [`Config::from_toml`] parses it from a
//! string (no file I/O here) and validates it into a [`Deployment`] and the node's own
//! [`NodeSettings`]; every error names the key and the line.
//!
//! The deployment part (`[zone]`, `[[site]]`, `[[service]]`) is what the store replicates:
//! [`deployment_document`] cuts it out of a file as canonical TOML, and
//! [`Deployment::from_document`] reads it back on every node.

mod checked;
pub mod duration;
mod fields;
mod locate;
mod proxy;
mod raw;
mod validate;

pub use checked::{ComponentSections, Config, MAX_DOCUMENT_BYTES, SiteAgentSettings};
pub use locate::KeyPath;
pub use proxy::{
    BackendTls, HttpLimits, Listener, ListenerProtocol, ListenerTls, ProxySettings, Route,
};

use fields::Invalid;

use crate::model::Deployment;

/// The embedded default configuration: three sites (fra, iad, sin) on loopback and the
/// service `s3`. The same text is checked in as `docs/examples/portico.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

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

/// Parses `source` into `T` and validates it with `check`; errors carry the key and line
/// of `source`.
fn parse_checked<R: serde::de::DeserializeOwned, T>(
    source: &str,
    check: impl FnOnce(R) -> Result<T, Invalid>,
) -> Result<T, ConfigError> {
    let raw: R = toml::from_str(source).map_err(|e| {
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
    check(raw).map_err(|invalid| {
        let line = locate::span_of(source, &invalid.key)
            .map(|span| locate::line_column(source, span.start).0);
        ConfigError::Invalid {
            key: invalid.key.to_string(),
            line,
            message: invalid.message,
        }
    })
}

impl Config {
    /// Parses and validates a configuration document. `now_unix` (seconds) is the default SOA
    /// serial when the document sets none.
    pub fn from_toml(source: &str, now_unix: u64) -> Result<Config, ConfigError> {
        let mut config = parse_checked(source, |raw: raw::RawConfig| {
            validate::validate(raw, now_unix)
        })?;
        config.document = deployment_document(source)?;
        Ok(config)
    }

    /// The embedded default configuration.
    pub fn default_config(now_unix: u64) -> Config {
        Config::from_toml(DEFAULT_CONFIG, now_unix)
            .expect("the embedded default configuration is valid")
    }
}

impl Deployment {
    /// Reads a deployment document (only `[zone]`, `[[site]]` and `[[service]]`), as the
    /// store replicates it. `default_serial` is the SOA serial when the document sets none.
    pub fn from_document(document: &str, default_serial: u64) -> Result<Deployment, ConfigError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(ConfigError::Invalid {
                key: "(document)".into(),
                line: None,
                message: format!(
                    "{} bytes: a deployment document is at most {MAX_DOCUMENT_BYTES} bytes",
                    document.len()
                ),
            });
        }
        parse_checked(document, |raw: raw::RawDeployment| {
            validate::deployment(&raw.zone, &raw.sites, &raw.services, default_serial)
        })
    }
}

/// The deployment tables of a configuration file (`[zone]`, `[[site]]`, `[[service]]`) as a
/// canonical TOML document: node settings and comments left out, keys in a fixed order, so
/// equal deployments give equal documents.
pub fn deployment_document(source: &str) -> Result<String, ConfigError> {
    let table: toml::Table = toml::from_str(source).map_err(|e| ConfigError::Syntax {
        key: "(document)".into(),
        line: 0,
        column: 0,
        message: e.message().trim().to_owned(),
    })?;
    let kept: toml::Table = table
        .into_iter()
        .filter(|(key, _)| raw::DEPLOYMENT_TABLES.contains(&key.as_str()))
        .collect();
    toml::to_string(&kept).map_err(|e| ConfigError::Invalid {
        key: "(document)".into(),
        line: None,
        message: e.to_string(),
    })
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
