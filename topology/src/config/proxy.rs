//! The proxy's section (`[proxy]` with its `[[proxy.listener]]` and `[[proxy.listener.route]]`
//! tables): checked here like the rest, so a bad listener is rejected with its key and line
//! before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use super::fields::{Invalid, duration, invalid, socket_addr};
use super::locate::KeyPath;
use super::raw::{RawListener, RawProxy, RawRoute, RawService, RawSite};

type Result<T> = std::result::Result<T, Invalid>;

/// `[proxy]`: one proxy process of one site.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The site whose members this proxy forwards to (`--site` replaces it).
    pub site: Option<String>,
    /// gslb-dns admin API addresses whose state stream (`/api/v1/watch`) the proxy follows,
    /// tried in order; RTT aggregates are posted to the same nodes.
    pub state_from: Vec<SocketAddr>,
    /// A file holding the bearer token for the store's API (first line).
    pub token_file: Option<String>,
    /// The API's CA (and this proxy's certificate): set, the API is reached over HTTPS.
    pub api_tls: Option<crate::model::ApiClientTls>,
    /// Where `/metrics` is served (none: not served).
    pub metrics: Option<SocketAddr>,
    /// On SIGTERM/SIGINT: stop accepting, then let sessions finish for at most this long.
    pub drain_timeout: Duration,
    /// How often client RTT aggregates are posted to the store (0: never).
    pub rtt_report_interval: Duration,
    pub rtt_prefix_v4: u8,
    pub rtt_prefix_v6: u8,
    /// One line per connection (L4) or request (S3) on standard error.
    pub access_log: bool,
    /// Passive failure detection: this many consecutive connect failures eject a member...
    pub eject_after: u32,
    /// ...for this long (or until the store reports it again after that).
    pub eject_for: Duration,
    /// An ejection is also reported to the store (`POST /api/v1/passive`), which takes the
    /// member out of every node's answers and every proxy's choices until its site agent
    /// confirms recovery.
    pub report_ejections: bool,
    pub listeners: Vec<Listener>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            site: None,
            state_from: Vec::new(),
            token_file: None,
            api_tls: None,
            metrics: None,
            drain_timeout: Duration::from_secs(30),
            rtt_report_interval: Duration::from_secs(10),
            rtt_prefix_v4: 24,
            rtt_prefix_v6: 56,
            access_log: false,
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            report_ejections: true,
            listeners: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Any TCP protocol (NFS, SMB, ...): whole connections, persistent by client address.
    Tcp,
    /// S3 over HTTP/1.1: per-request routing.
    S3,
}

/// `[[proxy.listener]]`.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: ListenerProtocol,
    pub listen: SocketAddr,
    /// The service whose members (at this proxy's site) serve what no route claims.
    pub service: String,
    /// The members' port; default: the member's `port`, else the listen port.
    pub backend_port: Option<u16>,
    pub connect_timeout: Duration,
    /// TCP: no byte either way for this long closes the session. S3: a keep-alive
    /// connection idle between requests for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Open connections one client address may hold.
    pub max_per_client: usize,
    /// TCP: forward with `splice(2)` through a pipe (zero copy); false: a plain copy.
    pub splice: bool,
    /// S3: terminate TLS with this certificate chain and key (PEM files).
    pub tls: Option<ListenerTls>,
    /// S3: speak TLS to the members.
    pub backend_tls: Option<BackendTls>,
    /// S3: virtual-hosted-style domains (`bucket.<domain>`); other hosts are path style.
    pub domains: Vec<String>,
    pub limits: HttpLimits,
    /// S3: how many other members a failed request may be tried on (only when safe).
    pub retries: u32,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct BackendTls {
    /// PEM CA bundle; none: the platform's web PKI roots are not used, so this is required
    /// unless the members' certificates chain to the bundled test CA of the caller.
    pub ca: Option<String>,
    /// The name to verify; default: the member's address.
    pub server_name: Option<String>,
}

/// Bounds on what a client may send before a request is forwarded.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// The whole request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line: usize,
    /// The whole head must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// A body that moves no byte for this long is abandoned.
    pub body_idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// `[[proxy.listener.route]]`: every condition given must hold; the first route that
/// matches picks the service.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub service: String,
    /// The request declares a Content-Length of at least this many bytes.
    pub min_content_length: Option<u64>,
    /// The request declares a Content-Length of at most this many bytes.
    pub max_content_length: Option<u64>,
    /// Upper-case methods; empty: any.
    pub methods: Vec<String>,
    /// The Host without port, exactly, or `*.suffix`.
    pub host: Option<String>,
    pub bucket: Option<String>,
    /// A header name (lower case) and, optionally, the value it must have exactly.
    pub header: Option<(String, Option<String>)>,
    /// Any of these query parameters is present (e.g. `uploadId`, `uploads` for multipart).
    pub query: Vec<String>,
}

pub(super) fn validate(
    raw: &RawProxy,
    services: &[RawService],
    sites: &[RawSite],
) -> Result<ProxySettings> {
    let key = KeyPath::from("proxy");
    let defaults = ProxySettings::default();
    let state_from = raw
        .state_from
        .iter()
        .enumerate()
        .map(|(i, text)| socket_addr(key.key("state_from").index(i), text))
        .collect::<Result<Vec<_>>>()?;
    let metrics = raw
        .metrics
        .as_deref()
        .map(|text| socket_addr(key.key("metrics"), text))
        .transpose()?;
    let prefix = |name: &str, value: Option<u8>, default: u8, max: u8| match value {
        None => Ok(default),
        Some(len) if (1..=max).contains(&len) => Ok(len),
        Some(_) => Err(invalid(key.key(name), format!("must be within 1..={max}"))),
    };
    let eject_after = raw.eject_after.unwrap_or(defaults.eject_after);
    if eject_after == 0 {
        return Err(invalid(key.key("eject_after"), "must be at least 1"));
    }
    let mut listeners = Vec::new();
    for (i, listener) in raw.listeners.iter().enumerate() {
        let lkey = key.key("listener").index(i);
        if listeners.iter().any(|l: &Listener| l.name == listener.name) {
            return Err(invalid(
                lkey.key("name"),
                format!("listener {:?} is defined twice", listener.name),
            ));
        }
        listeners.push(validate_listener(&lkey, listener, services, sites, raw)?);
    }
    for (i, a) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|b| b.listen == a.listen) {
            return Err(invalid(
                key.key("listener").index(i).key("listen"),
                format!("{} is already used by another listener", a.listen),
            ));
        }
    }
    Ok(ProxySettings {
        site: raw.site.clone(),
        state_from,
        token_file: raw.token_file.clone(),
        api_tls: super::fields::api_tls(&key, &raw.api_ca, &raw.api_cert, &raw.api_key)?,
        metrics,
        drain_timeout: duration(
            key.key("drain_timeout"),
            raw.drain_timeout.as_deref(),
            defaults.drain_timeout,
        )?,
        rtt_report_interval: duration(
            key.key("rtt_report_interval"),
            raw.rtt_report_interval.as_deref(),
            defaults.rtt_report_interval,
        )?,
        rtt_prefix_v4: prefix("rtt_prefix_v4", raw.rtt_prefix_v4, 24, 32)?,
        rtt_prefix_v6: prefix("rtt_prefix_v6", raw.rtt_prefix_v6, 56, 128)?,
        access_log: raw.access_log.unwrap_or(false),
        eject_after,
        eject_for: duration(
            key.key("eject_for"),
            raw.eject_for.as_deref(),
            defaults.eject_for,
        )?,
        report_ejections: raw.report_ejections.unwrap_or(defaults.report_ejections),
        listeners,
    })
}

fn validate_listener(
    key: &KeyPath,
    raw: &RawListener,
    services: &[RawService],
    sites: &[RawSite],
    proxy: &RawProxy,
) -> Result<Listener> {
    let protocol = match raw.protocol.as_str() {
        "tcp" => ListenerProtocol::Tcp,
        "s3" => ListenerProtocol::S3,
        other => {
            return Err(invalid(
                key.key("protocol"),
                format!("unknown protocol {other:?} (expected \"tcp\" or \"s3\")"),
            ));
        }
    };
    let known_service = |skey: KeyPath, name: &str| -> Result<String> {
        let Some(service) = services.iter().find(|s| s.name == name) else {
            return Err(invalid(skey, format!("no service named {name:?}")));
        };
        // A service with no member at this proxy's site would refuse every connection.
        if let Some(site) = &proxy.site
            && sites.iter().any(|s| &s.name == site)
            && !service.members.iter().any(|m| &m.site == site)
        {
            return Err(invalid(
                skey,
                format!("service {name:?} has no member at site {site:?}"),
            ));
        }
        Ok(name.to_string())
    };
    let service = known_service(key.key("service"), &raw.service)?;
    let tcp_only = |name: &str, given: bool| {
        if given && protocol == ListenerProtocol::S3 {
            Err(invalid(key.key(name), "only for protocol \"tcp\""))
        } else {
            Ok(())
        }
    };
    let s3_only = |name: &str, given: bool| {
        if given && protocol == ListenerProtocol::Tcp {
            Err(invalid(key.key(name), "only for protocol \"s3\""))
        } else {
            Ok(())
        }
    };
    tcp_only("splice", raw.splice.is_some())?;
    s3_only("tls", raw.tls.is_some())?;
    s3_only("backend_tls", raw.backend_tls.is_some())?;
    s3_only("domains", !raw.domains.is_empty())?;
    s3_only("route", !raw.routes.is_empty())?;
    s3_only("max_header_bytes", raw.max_header_bytes.is_some())?;
    s3_only("max_headers", raw.max_headers.is_some())?;
    s3_only("max_request_line", raw.max_request_line.is_some())?;
    s3_only("header_timeout", raw.header_timeout.is_some())?;
    s3_only("body_idle_timeout", raw.body_idle_timeout.is_some())?;
    s3_only("retries", raw.retries.is_some())?;
    let defaults = HttpLimits::default();
    let at_least = |name: &str, value: Option<usize>, min: usize, default: usize| match value {
        None => Ok(default),
        Some(v) if v >= min => Ok(v),
        Some(_) => Err(invalid(key.key(name), format!("must be at least {min}"))),
    };
    let max_header_bytes = at_least(
        "max_header_bytes",
        raw.max_header_bytes,
        1024,
        defaults.max_header_bytes,
    )?;
    let limits = HttpLimits {
        max_header_bytes,
        max_headers: at_least("max_headers", raw.max_headers, 8, defaults.max_headers)?,
        max_request_line: at_least(
            "max_request_line",
            raw.max_request_line,
            256,
            // Unset, it follows a smaller head limit down.
            defaults.max_request_line.min(max_header_bytes),
        )?,
        header_timeout: duration(
            key.key("header_timeout"),
            raw.header_timeout.as_deref(),
            defaults.header_timeout,
        )?,
        body_idle_timeout: duration(
            key.key("body_idle_timeout"),
            raw.body_idle_timeout.as_deref(),
            defaults.body_idle_timeout,
        )?,
    };
    if limits.max_request_line > limits.max_header_bytes {
        return Err(invalid(
            key.key("max_request_line"),
            "must not exceed max_header_bytes",
        ));
    }
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let rkey = key.key("route").index(i);
            validate_route(
                &rkey,
                route,
                known_service(rkey.key("service"), &route.service)?,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let max_connections = at_least("max_connections", raw.max_connections, 1, 10_000)?;
    let max_per_client = at_least("max_per_client", raw.max_per_client, 1, 1024)?;
    let default_idle = match protocol {
        ListenerProtocol::Tcp => Duration::from_secs(600),
        ListenerProtocol::S3 => Duration::from_secs(60),
    };
    Ok(Listener {
        name: raw.name.clone(),
        protocol,
        listen: socket_addr(key.key("listen"), &raw.listen)?,
        service,
        backend_port: raw.backend_port,
        connect_timeout: duration(
            key.key("connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(3),
        )?,
        idle_timeout: duration(
            key.key("idle_timeout"),
            raw.idle_timeout.as_deref(),
            default_idle,
        )?,
        max_connections,
        max_per_client,
        splice: raw.splice.unwrap_or(true),
        tls: raw.tls.as_ref().map(|tls| ListenerTls {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        }),
        backend_tls: raw.backend_tls.as_ref().map(|tls| BackendTls {
            ca: tls.ca.clone(),
            server_name: tls.server_name.clone(),
        }),
        domains: raw
            .domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        limits,
        retries: raw.retries.unwrap_or(1),
        routes,
    })
}

fn validate_route(key: &KeyPath, raw: &RawRoute, service: String) -> Result<Route> {
    if let (Some(min), Some(max)) = (raw.min_content_length, raw.max_content_length)
        && min > max
    {
        return Err(invalid(
            key.key("min_content_length"),
            "must not exceed max_content_length",
        ));
    }
    let methods = raw
        .methods
        .iter()
        .enumerate()
        .map(|(i, method)| {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                Err(invalid(
                    key.key("methods").index(i),
                    format!("{method:?} is not an HTTP method"),
                ))
            } else {
                Ok(method.to_ascii_uppercase())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let header = match &raw.header {
        None => None,
        Some(text) => {
            let (name, value) = match text.split_once(':') {
                None => (text.trim(), None),
                Some((name, value)) => (name.trim(), Some(value.trim().to_string())),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(invalid(
                    key.key("header"),
                    "expected \"name\" or \"name: value\"",
                ));
            }
            Some((name.to_ascii_lowercase(), value))
        }
    };
    let route = Route {
        service,
        min_content_length: raw.min_content_length,
        max_content_length: raw.max_content_length,
        methods,
        host: raw
            .host
            .as_ref()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
        bucket: raw.bucket.clone(),
        header,
        query: raw.query.clone(),
    };
    Ok(route)
}
