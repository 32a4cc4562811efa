//! Who may use the admin API, and as whom.
//!
//! Every request passes [`guard`] first. Browser safety: its `Host` must be one of
//! `admin.names`, the address it reached, or `localhost` on loopback (no DNS rebinding); an
//! `Origin`, when it carries one, must be the API's own; a mutation must say
//! `Content-Type: application/json` (no form or `no-cors` request from another page).
//! Then the caller's [`Identity`]: a bearer token from `admin.token_file` (each with a
//! [`Role`]), else a client certificate naming a role (`operator.<cluster>`,
//! `reader.<cluster>`, `agent.<site>.<cluster>`, `proxy.<site>.<cluster>`), else nobody.
//! Without a token file a loopback caller is the operator; reads without an identity
//! follow `admin.reads`. Each route needs a role: reads any, reports an agent (of the
//! report's site, checked by the handler), RTT samples a proxy (likewise), everything else
//! the operator. `/metrics`, `/healthz` and the dashboard page need no identity.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls_pki_types::CertificateDer;
use topology::model::ReadAccess;
use topology::wire::{ErrorBody, accepted_text};

use super::error::ApiError;
use crate::metrics::{AdminCounters, Refusal};
use crate::store::Attribution;

/// What an identity may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Operator,
    /// Reads only.
    Reader,
    /// Reads, and reports for its site.
    Agent(String),
    /// Reads (the watch stream), and RTT samples for its site.
    Proxy(String),
}

impl Role {
    /// `operator`, `reader`, `agent:SITE` or `proxy:SITE`.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.split_once(':') {
            None if text == "operator" => Ok(Role::Operator),
            None if text == "reader" => Ok(Role::Reader),
            Some(("agent", site)) if !site.is_empty() => Ok(Role::Agent(site.to_owned())),
            Some(("proxy", site)) if !site.is_empty() => Ok(Role::Proxy(site.to_owned())),
            _ => Err(format!(
                "unknown role {text:?} (operator, reader, agent:SITE or proxy:SITE)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Operator => f.write_str("operator"),
            Role::Reader => f.write_str("reader"),
            Role::Agent(site) => write!(f, "agent:{site}"),
            Role::Proxy(site) => write!(f, "proxy:{site}"),
        }
    }
}

/// Who made a request: a token's name, a certificate's name, `loopback`, or (for a read
/// without an identity) the client's address as a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

impl Identity {
    fn forbidden(&self, what: &str) -> ApiError {
        ApiError::Forbidden(format!("{} ({}) may not {what}", self.name, self.role))
    }

    /// Reports may come from the operator or from the agent of `site`.
    pub fn may_report_for(&self, site: &str) -> Result<(), ApiError> {
        match &self.role {
            Role::Operator => Ok(()),
            Role::Agent(own) if own == site => Ok(()),
            _ => Err(self.forbidden(&format!("report for site {site:?}"))),
        }
    }

    /// What proxies post (RTT samples, passive reports: `what`) may come from the operator
    /// or from a proxy of `site`.
    pub fn may_post_as_proxy_for(&self, site: &str, what: &str) -> Result<(), ApiError> {
        match &self.role {
            Role::Operator => Ok(()),
            Role::Proxy(own) if own == site => Ok(()),
            _ => Err(self.forbidden(&format!("post {what} for site {site:?}"))),
        }
    }

    /// The attribution of a change this identity asks for; `who` and `why` over the length
    /// the store accepts are refused.
    pub fn attribution(&self, who: Option<String>, why: String) -> Result<Attribution, ApiError> {
        accepted_text("why", &why).map_err(ApiError::BadRequest)?;
        if let Some(who) = &who {
            accepted_text("who", who).map_err(ApiError::BadRequest)?;
        }
        Ok(Attribution {
            who: self.name.clone(),
            why,
            note: who.filter(|w| *w != self.name),
        })
    }
}

/// One line of the token file.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    role: Role,
    secret: Vec<u8>,
}

/// The tokens and the read policy.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Vec<Token>,
    reads: ReadAccess,
}

/// Tokens shorter than this are refused: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

impl Auth {
    /// Loads `token_file`: one identity per line, `name token [role]` (the role defaults to
    /// `operator`; a line of a token alone is the operator `token-<line>`); blank lines and
    /// `#` comments skipped. An unreadable file, a short token or an unknown role is an
    /// error naming the line.
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
                let at = |why: String| {
                    anyhow::anyhow!("`admin.token_file`: {path}, line {}: {why}", i + 1)
                };
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (name, secret, role) = match fields.as_slice() {
                    [token] => (format!("token-{}", i + 1), *token, Role::Operator),
                    [name, token] => ((*name).to_string(), *token, Role::Operator),
                    [name, token, role] => {
                        ((*name).to_string(), *token, Role::parse(role).map_err(at)?)
                    }
                    _ => return Err(at("expected `name token [role]`".into())),
                };
                if secret.len() < MIN_TOKEN_LEN {
                    return Err(at(format!(
                        "tokens must be at least {MIN_TOKEN_LEN} characters"
                    )));
                }
                accepted_text("name", &name).map_err(at)?;
                tokens.push(Token {
                    name,
                    role,
                    secret: secret.as_bytes().to_vec(),
                });
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

    /// The identity of the token presented, if it is one of ours (compared in constant
    /// time against every token).
    fn check(&self, presented: &[u8]) -> Option<Identity> {
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(&token.secret, presented) {
                found = Some(Identity {
                    name: token.name.clone(),
                    role: token.role.clone(),
                });
            }
        }
        found
    }

    pub fn tokens_configured(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The site names the token file's roles refer to.
    pub fn sites(&self) -> Vec<&str> {
        self.tokens
            .iter()
            .filter_map(|t| match &t.role {
                Role::Agent(site) | Role::Proxy(site) => Some(site.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity a verified client certificate proves: the one role among its DNS names
/// (`operator.<cluster>`, `reader.<cluster>`, `agent.<site>.<cluster>`,
/// `proxy.<site>.<cluster>` for the `sites` known), `None` when it names none, an error when
/// it names several.
pub fn certificate_identity<'a>(
    certificate: &CertificateDer<'_>,
    cluster: &str,
    sites: impl Iterator<Item = &'a str>,
) -> Result<Option<Identity>, String> {
    let mut candidates = vec![
        (format!("operator.{cluster}"), Role::Operator),
        (format!("reader.{cluster}"), Role::Reader),
    ];
    for site in sites {
        candidates.push((
            format!("agent.{site}.{cluster}"),
            Role::Agent(site.to_owned()),
        ));
        candidates.push((
            format!("proxy.{site}.{cluster}"),
            Role::Proxy(site.to_owned()),
        ));
    }
    let named: Vec<Identity> = candidates
        .into_iter()
        .filter(|(name, _)| portico_client::tls::names(certificate, name))
        .map(|(name, role)| Identity { name, role })
        .collect();
    match named.len() {
        0 => Ok(None),
        1 => Ok(named.into_iter().next()),
        _ => Err(format!(
            "the client certificate names several roles ({}): it must name one",
            named
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What the server knows of a request's connection (set on every request).
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// The address the client reached.
    pub local: SocketAddr,
    pub tls: bool,
    /// The identity the client certificate proves, if one was presented.
    pub certificate: Option<Result<Identity, String>>,
}

/// What [`guard`] checks requests against.
#[derive(Debug)]
pub struct Gate {
    pub auth: Auth,
    /// `admin.names` (lowercase, each `host` or `host:port`).
    pub names: Vec<String>,
    pub counters: Arc<AdminCounters>,
}

fn refuse(counters: &AdminCounters, why: Refusal, status: StatusCode, message: String) -> Response {
    counters.refused(why);
    let body = axum::Json(ErrorBody {
        error: message,
        retry_after_ms: None,
        key: None,
        line: None,
    });
    if status == StatusCode::UNAUTHORIZED {
        return (
            status,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"portico\"")],
            body,
        )
            .into_response();
    }
    (status, body).into_response()
}

fn always_open(path: &str) -> bool {
    path == "/metrics" || path == "/healthz" || path == "/" || path.starts_with("/ui/")
}

/// `host[:port]` split, for names and bracketed IPv6 addresses.
fn split_host(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return (authority, None);
        };
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// Whether a `Host` names this API: one of `names`, the address the client reached, or
/// `localhost` when that is loopback; with a port, the port reached.
fn host_allowed(host: &str, local: SocketAddr, names: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let (name, port) = split_host(&host);
    if port.is_some_and(|p| p != local.port()) {
        return false;
    }
    if names.iter().any(|n| *n == host || *n == name) {
        return true;
    }
    let local_ip = local.ip().to_canonical();
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical() == local_ip,
        Err(_) => name == "localhost" && local_ip.is_loopback(),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// What a route needs, by method and path.
enum Need {
    Nothing,
    Read,
    /// An agent or the operator (the handler checks the site).
    Report,
    /// A proxy or the operator (the handler checks the site).
    Proxy,
    Operator,
}

fn need(method: &Method, path: &str) -> Need {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match (read, path) {
        (true, path) if always_open(path) => Need::Nothing,
        (true, _) => Need::Read,
        (false, "/api/v1/reports") => Need::Report,
        (false, "/api/v1/rtt" | "/api/v1/passive") => Need::Proxy,
        (false, _) => Need::Operator,
    }
}

/// The middleware: lets a request through with its [`Identity`], or refuses it.
pub async fn guard(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let Some(connection) = request.extensions().get::<Connection>().cloned() else {
        return ApiError::Unavailable("no connection information".into()).into_response();
    };
    let refusals = &*gate.counters;
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, connection.local, &gate.names) {
        return refuse(
            refusals,
            Refusal::Host,
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {host:?} is not a name of this API (admin.names, or the address {})",
                connection.local
            ),
        );
    }
    let scheme = if connection.tls { "https" } else { "http" };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = format!("{scheme}://{}", host.to_ascii_lowercase());
        if !origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&own)) {
            return refuse(
                refusals,
                Refusal::Origin,
                StatusCode::FORBIDDEN,
                format!("requests from another origin ({origin:?}) are refused; this API is {own}"),
            );
        }
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let need = need(&method, &path);
    if !matches!(need, Need::Nothing | Need::Read) && !is_json(headers) {
        return refuse(
            refusals,
            Refusal::ContentType,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "changes must be sent as `Content-Type: application/json`".into(),
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().as_bytes().to_vec());
    let loopback = connection.peer.ip().to_canonical().is_loopback();
    let auth = &gate.auth;
    let identity = match (&presented, &connection.certificate) {
        (Some(token), _) => match auth.check(token) {
            Some(identity) => Some(identity),
            None => {
                return refuse(
                    refusals,
                    Refusal::Unauthenticated,
                    StatusCode::UNAUTHORIZED,
                    "invalid bearer token".into(),
                );
            }
        },
        (None, Some(Ok(identity))) => Some(identity.clone()),
        (None, Some(Err(why))) => {
            return refuse(
                refusals,
                Refusal::Forbidden,
                StatusCode::FORBIDDEN,
                why.clone(),
            );
        }
        (None, None) if loopback && !auth.tokens_configured() => Some(Identity {
            name: "loopback".into(),
            role: Role::Operator,
        }),
        (None, None) => None,
    };
    let anonymous_reads = match auth.reads {
        ReadAccess::Open => true,
        ReadAccess::Loopback => loopback,
        ReadAccess::Token => false,
    };
    let allowed = match (&need, &identity) {
        (Need::Nothing, _) => true,
        (Need::Read, Some(_)) => true,
        (Need::Read, None) => anonymous_reads,
        (Need::Report, Some(i)) => matches!(i.role, Role::Operator | Role::Agent(_)),
        (Need::Proxy, Some(i)) => matches!(i.role, Role::Operator | Role::Proxy(_)),
        (Need::Operator, Some(i)) => i.role == Role::Operator,
        (_, None) => false,
    };
    if !allowed {
        return match identity {
            Some(identity) => refuse(
                refusals,
                Refusal::Forbidden,
                StatusCode::FORBIDDEN,
                format!(
                    "{} ({}) may not {method} {path}",
                    identity.name, identity.role
                ),
            ),
            None if auth.tokens_configured() || connection.tls => refuse(
                refusals,
                Refusal::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                "this request needs an identity: `Authorization: Bearer <token>` (a token from admin.token_file) or a client certificate naming a role".into(),
            ),
            None => refuse(
                refusals,
                Refusal::Unauthenticated,
                StatusCode::FORBIDDEN,
                "only loopback clients may do this until admin.token_file is configured".into(),
            ),
        };
    }
    let identity = identity.unwrap_or_else(|| Identity {
        name: if loopback {
            "loopback".into()
        } else {
            connection.peer.ip().to_string()
        },
        role: Role::Reader,
    });
    request.extensions_mut().insert(identity);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_carry_roles_and_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("portico-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(
            &good,
            "# operators\nalice 0123456789abcdef0123\n\nsecond-token-without-name\nfra-agent fra-agent-token-0001 agent:fra\nwatcher reader-token-00000001 reader\n",
        )
        .unwrap();
        let auth = Auth::load(Some(good.to_str().unwrap()), ReadAccess::Loopback).unwrap();
        let identity = |t: &[u8]| auth.check(t).map(|i| (i.name, i.role));
        assert_eq!(
            identity(b"0123456789abcdef0123"),
            Some(("alice".into(), Role::Operator))
        );
        assert_eq!(
            identity(b"second-token-without-name"),
            Some(("token-4".into(), Role::Operator))
        );
        assert_eq!(
            identity(b"fra-agent-token-0001"),
            Some(("fra-agent".into(), Role::Agent("fra".into())))
        );
        assert_eq!(
            identity(b"reader-token-00000001"),
            Some(("watcher".into(), Role::Reader))
        );
        assert_eq!(auth.check(b"0123456789abcdef012"), None);
        assert_eq!(auth.check(b""), None);
        assert_eq!(auth.sites(), ["fra"]);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            Auth::load(Some(path.to_str().unwrap()), ReadAccess::Loopback)
                .unwrap_err()
                .to_string()
        };
        assert!(write("short", "bob short\n").contains("line 1"));
        let error = write("role", "# x\nbob 0123456789abcdef0123 admin\n");
        assert!(
            error.contains("line 2") && error.contains("unknown role \"admin\""),
            "{error}"
        );
        assert!(write("agent", "a 0123456789abcdef0123 agent:\n").contains("unknown role"));
        assert!(write("four", "a b c d\n").contains("name token [role]"));
        assert!(write("empty", "# nothing\n").contains("holds no token"));
        assert!(Auth::load(Some("/nonexistent/tokens"), ReadAccess::Loopback).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn roles_limit_reports_and_samples_to_their_site() {
        let agent = Identity {
            name: "fra-agent".into(),
            role: Role::Agent("fra".into()),
        };
        assert!(agent.may_report_for("fra").is_ok());
        let refused = agent.may_report_for("iad").unwrap_err().to_string();
        assert!(
            refused.contains("fra-agent (agent:fra) may not report for site \"iad\""),
            "{refused}"
        );
        assert!(agent.may_post_as_proxy_for("fra", "RTT samples").is_err());
        let proxy = Identity {
            name: "p".into(),
            role: Role::Proxy("iad".into()),
        };
        assert!(proxy.may_post_as_proxy_for("iad", "RTT samples").is_ok());
        let refused = proxy
            .may_post_as_proxy_for("fra", "passive reports")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("p (proxy:iad) may not post passive reports for site \"fra\""),
            "{refused}"
        );
        assert!(proxy.may_report_for("iad").is_err());
        let operator = Identity {
            name: "ops".into(),
            role: Role::Operator,
        };
        assert!(
            operator.may_report_for("iad").is_ok()
                && operator.may_post_as_proxy_for("x", "RTT samples").is_ok()
        );
    }

    #[test]
    fn a_body_who_is_only_a_note_and_long_text_is_refused() {
        let operator = Identity {
            name: "alice".into(),
            role: Role::Operator,
        };
        let a = operator
            .attribution(Some("bob".into()), "swap".into())
            .unwrap();
        assert_eq!((a.who.as_str(), a.note.as_deref()), ("alice", Some("bob")));
        let same = operator
            .attribution(Some("alice".into()), "".into())
            .unwrap();
        assert_eq!(same.note, None);
        let long = operator.attribution(None, "x".repeat(10_000)).unwrap_err();
        assert!(matches!(long, ApiError::BadRequest(ref m) if m.contains("`why`")));
    }

    #[test]
    fn hosts_are_this_apis_names_or_the_address_reached() {
        let local: SocketAddr = "127.0.0.1:8053".parse().unwrap();
        let names = vec!["dns1.example.net".to_owned()];
        for good in [
            "127.0.0.1:8053",
            "localhost:8053",
            "LOCALHOST",
            "dns1.example.net",
            "dns1.example.net:8053",
        ] {
            assert!(host_allowed(good, local, &names), "{good}");
        }
        for bad in ["evil.example:8053", "127.0.0.1:9999", "", "127.0.0.2:8053"] {
            assert!(!host_allowed(bad, local, &names), "{bad}");
        }
        let v6: SocketAddr = "[::1]:8053".parse().unwrap();
        assert!(host_allowed("[::1]:8053", v6, &[]));
        assert!(!host_allowed("[::2]:8053", v6, &[]));
        let public: SocketAddr = "192.0.2.1:443".parse().unwrap();
        assert!(!host_allowed("localhost:443", public, &[]));
        assert!(host_allowed("192.0.2.1", public, &[]));
    }
}
