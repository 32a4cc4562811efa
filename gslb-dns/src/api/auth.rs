//! Who may use the admin API. Mutations (admin actions, drills, agent reports, RTT posts,
//! membership changes) need a bearer token from `admin.token_file` once one is configured;
//! without one they are taken from loopback clients only. Reads follow `admin.reads`.
//! `/metrics`, `/healthz` and the dashboard's static files are always open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use topology::model::ReadAccess;
use topology::wire::ErrorBody;

/// The tokens (with their names) and the read policy.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Vec<(String, Vec<u8>)>,
    reads: ReadAccess,
}

/// The name of whoever made a request: the token's name, or `loopback`.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Tokens shorter than this are refused: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

impl Auth {
    /// Loads `token_file` (one token per line, `token` or `name token`; blank lines and
    /// `#` comments skipped). An unreadable file or a short token is an error.
    pub fn load(token_file: Option<&str>, reads: ReadAccess) -> anyhow::Result<Auth> {
        let mut tokens = Vec::new();
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("`admin.token_file`: {path}: {e}"))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (name, token) = match fields.as_slice() {
                    [token] => (format!("token-{}", i + 1), *token),
                    [name, token] => ((*name).to_string(), *token),
                    _ => anyhow::bail!(
                        "`admin.token_file`: {path}, line {}: expected `token` or `name token`",
                        i + 1
                    ),
                };
                if token.len() < MIN_TOKEN_LEN {
                    anyhow::bail!(
                        "`admin.token_file`: {path}, line {}: tokens must be at least {MIN_TOKEN_LEN} characters",
                        i + 1
                    );
                }
                tokens.push((name, token.as_bytes().to_vec()));
            }
            if tokens.is_empty() {
                anyhow::bail!("`admin.token_file`: {path} holds no token");
            }
        }
        Ok(Auth { tokens, reads })
    }

    /// Anyone may do anything from loopback; reads elsewhere per `reads` (for tests and
    /// embedding).
    pub fn loopback_only() -> Auth {
        Auth {
            tokens: Vec::new(),
            reads: ReadAccess::Loopback,
        }
    }

    /// The name of the token presented, if it is one of ours (compared in constant time).
    fn check(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.tokens {
            if constant_time_eq(token, presented) {
                found = Some(name.as_str());
            }
        }
        found
    }

    pub fn tokens_configured(&self) -> bool {
        !self.tokens.is_empty()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"portico\"")],
        axum::Json(ErrorBody {
            error: message.to_owned(),
            retry_after_ms: None,
            key: None,
            line: None,
        }),
    )
        .into_response()
}

fn always_open(path: &str) -> bool {
    path == "/metrics" || path == "/healthz" || path == "/" || path.starts_with("/ui/")
}

/// The middleware: lets a request through (with its [`Caller`]) or answers 401/403.
pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let mutation = !matches!(*request.method(), Method::GET | Method::HEAD);
    let loopback = peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().as_bytes().to_vec());
    let caller = match &presented {
        Some(token) => match auth.check(token) {
            Some(name) => Some(name.to_string()),
            None => return refuse(StatusCode::UNAUTHORIZED, "invalid bearer token"),
        },
        None => None,
    };
    if !always_open(&path) {
        let allowed = if mutation {
            caller.is_some() || (!auth.tokens_configured() && loopback)
        } else {
            match auth.reads {
                ReadAccess::Open => true,
                ReadAccess::Loopback => loopback || caller.is_some(),
                ReadAccess::Token => caller.is_some() || (!auth.tokens_configured() && loopback),
            }
        };
        if !allowed {
            let message = if auth.tokens_configured() {
                "this request needs `Authorization: Bearer <token>` (a token from admin.token_file)"
            } else {
                "only loopback clients may do this until admin.token_file is configured"
            };
            let status = if auth.tokens_configured() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            return refuse(status, message);
        }
    }
    let name = caller.unwrap_or_else(|| {
        if loopback {
            "loopback".into()
        } else {
            peer.ip().to_string()
        }
    });
    request.extensions_mut().insert(Caller(name));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("portico-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(
            &good,
            "# operators\nalice 0123456789abcdef0123\n\nsecond-token-without-name\n",
        )
        .unwrap();
        let auth = Auth::load(Some(good.to_str().unwrap()), ReadAccess::Loopback).unwrap();
        assert_eq!(auth.check(b"0123456789abcdef0123"), Some("alice"));
        assert_eq!(auth.check(b"second-token-without-name"), Some("token-4"));
        assert_eq!(auth.check(b"0123456789abcdef012"), None);
        assert_eq!(auth.check(b""), None);
        let short = dir.join("short");
        std::fs::write(&short, "bob short\n").unwrap();
        let error = Auth::load(Some(short.to_str().unwrap()), ReadAccess::Loopback).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let empty = dir.join("empty");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert!(Auth::load(Some(empty.to_str().unwrap()), ReadAccess::Loopback).is_err());
        assert!(Auth::load(Some("/nonexistent/tokens"), ReadAccess::Loopback).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
