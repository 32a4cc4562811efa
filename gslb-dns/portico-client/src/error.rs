//! Why a call to the admin API failed.

use reqwest::Method;
use topology::wire::ErrorBody;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no admin API address given")]
    NoNodes,
    #[error("{0:?} is not an admin API address (host:port, http://host:port or https://host:port)")]
    BadAddress(String),
    /// A token would travel in clear to a host off loopback.
    #[error(
        "{0}: a token is never sent over plain HTTP off loopback; reach the API over HTTPS (api_ca, or --ca)"
    )]
    CleartextToken(String),
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No node answered (connection refused, timed out, or every node was unavailable).
    #[error("{method} {path}: no admin API answered ({tried})")]
    Unreachable {
        method: Method,
        path: String,
        tried: String,
    },
    /// A node answered with an error.
    #[error("{method} {path}: {status}: {}", body.error)]
    Refused {
        method: Method,
        path: String,
        status: u16,
        body: Box<ErrorBody>,
    },
    /// A node answered with something this client cannot read (a missing field, say).
    #[error("{method} {path}: the answer is not what this client reads: {error}")]
    Decode {
        method: Method,
        path: String,
        error: String,
    },
}

impl ClientError {
    /// The HTTP status of a refused call.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}
