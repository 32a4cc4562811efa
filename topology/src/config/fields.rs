//! What every section's validation shares: the error it finds (its key, before the line is
//! looked up) and the checks of common field kinds.

use std::net::SocketAddr;
use std::time::Duration;

use super::duration::parse_duration;
use super::locate::KeyPath;

type Result<T> = std::result::Result<T, Invalid>;

/// An error found while validating, before its line is looked up.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub key: KeyPath,
    pub message: String,
}

pub(super) fn invalid(key: KeyPath, message: impl Into<String>) -> Invalid {
    Invalid {
        key,
        message: message.into(),
    }
}

pub(super) fn duration(key: KeyPath, text: Option<&str>, default: Duration) -> Result<Duration> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|e| invalid(key, e)),
    }
}

pub(super) fn socket_addr(key: KeyPath, text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        invalid(
            key,
            format!("{text:?} is not an address:port (like 127.0.0.1:5353 or [::1]:5353)"),
        )
    })
}

/// A client's TLS settings from `<key>.api_ca`, `api_cert` and `api_key` (the certificate
/// and its key go together, and need the CA).
pub(super) fn api_tls(
    key: &KeyPath,
    ca: &Option<String>,
    cert: &Option<String>,
    private_key: &Option<String>,
) -> Result<Option<crate::model::ApiClientTls>> {
    let identity = match (cert, private_key) {
        (Some(cert), Some(private_key)) => Some((cert.clone(), private_key.clone())),
        (None, None) => None,
        (Some(_), None) => return Err(invalid(key.key("api_key"), "api_cert needs its api_key")),
        (None, Some(_)) => return Err(invalid(key.key("api_cert"), "api_key needs its api_cert")),
    };
    match ca {
        Some(ca) => Ok(Some(crate::model::ApiClientTls {
            ca: ca.clone(),
            identity,
        })),
        None if identity.is_some() => Err(invalid(
            key.key("api_ca"),
            "a client certificate is for a TLS API: set api_ca, the CA its certificate chains to",
        )),
        None => Ok(None),
    }
}
