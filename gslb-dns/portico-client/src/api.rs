//! The admin-API client: typed calls over [`topology::wire`], each with a connect and a
//! total timeout, tried on the next node when one cannot be reached or cannot take writes
//! (503), and sticking to the node that answered last.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use reqwest::Method;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use topology::wire::config::{
    ConfigApply, ConfigHistory, ConfigOutcome, ConfigRollback, ConfigView,
};
use topology::wire::drill::{DrillList, DrillReport, DrillRequest, DrillStarted};
use topology::wire::views::{
    ActionDone, ActionRequest, ExplainView, Healthz, History, RttTable, StateView, StoreStatus,
};
use topology::wire::{AgentReport, ErrorBody, PassiveReport, RttReport, Target, Written};

pub use crate::error::ClientError;
use crate::watch::Watch;

/// How long to wait before trying again when every node said 503 (no leader for a moment).
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(200);

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Admin API addresses (`host:port` or `http://host:port`), tried in this order.
    pub nodes: Vec<String>,
    /// The bearer token sent with every request (never over plain HTTP off loopback).
    pub token: Option<String>,
    /// The API is HTTPS: its certificate must chain to this CA; with an identity, the
    /// client presents its certificate.
    pub tls: Option<crate::tls::ClientTls>,
    pub connect_timeout: Duration,
    /// The longest one request may take, answer included (a call may ask for longer).
    pub timeout: Duration,
}

impl ClientOptions {
    /// Defaults: 1 s to connect, 5 s per request, no token.
    pub fn new(nodes: Vec<String>) -> ClientOptions {
        ClientOptions {
            nodes,
            token: None,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A client of one fabric's admin API (any of its gslb-dns nodes).
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    nodes: Vec<Url>,
    token: Option<String>,
    timeout: Duration,
    /// The node tried first: the one that answered last.
    preferred: AtomicUsize,
}

/// A node's base URL from `host:port`, `http://host:port` or `https://host:port`; without a
/// scheme, `https` when the client has TLS settings.
fn base_url(text: &str, tls: bool) -> Result<Url, ClientError> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else if tls {
        format!("https://{text}")
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|_| ClientError::BadAddress(text.to_owned()))?;
    let known = matches!(url.scheme(), "http" | "https");
    if !known || url.host().is_none() || url.port_or_known_default().is_none() {
        return Err(ClientError::BadAddress(text.to_owned()));
    }
    if url.scheme() == "https" && !tls {
        return Err(ClientError::Setup(format!(
            "{text}: HTTPS needs the CA that signs the API's certificate (api_ca, or --ca)"
        )));
    }
    Ok(url)
}

/// Whether a URL's host is this machine (a token may go there in clear).
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl ApiClient {
    pub fn new(options: ClientOptions) -> Result<ApiClient, ClientError> {
        if options.nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let nodes = options
            .nodes
            .iter()
            .map(|n| base_url(n, options.tls.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        if options.token.is_some()
            && let Some(clear) = nodes
                .iter()
                .find(|u| u.scheme() == "http" && !is_loopback(u))
        {
            return Err(ClientError::CleartextToken(
                clear.as_str().trim_end_matches('/').to_owned(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(tls) = &options.tls {
            let config = tls
                .config()
                .map_err(|e| ClientError::Setup(e.to_string()))?;
            builder = builder.use_preconfigured_tls(config);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(ApiClient {
            http,
            nodes,
            token: options.token,
            timeout: options.timeout,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .collect()
    }

    /// The node the next call goes to first.
    pub fn preferred(&self) -> String {
        let i = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        self.nodes[i].as_str().trim_end_matches('/').to_owned()
    }

    /// One request as given: `target` is a path with its query, `headers` are added; a
    /// change (or a body) without a `Content-Type` header is sent as JSON. The status and body as they
    /// came, tried on each node like any call. For tools and tests that look at the
    /// exchange itself (a refusal's status, a malformed body's answer).
    pub async fn raw(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, bytes::Bytes), ClientError> {
        let (status, bytes) = self
            .exchange_with(method, target, &[], headers, body, self.timeout)
            .await?;
        Ok((status.as_u16(), bytes))
    }

    /// Sends one request, trying each node once from the preferred one; the first answer
    /// that is not "unreachable" or 503 decides. Returns the status and body.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        self.exchange_with(method, path, query, &[], body, timeout)
            .await
    }

    async fn exchange_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        // A store between leaders answers 503 everywhere for a moment: try the nodes
        // again, within the request's time, before saying so.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let start = self.preferred.load(Ordering::Relaxed);
            let mut tried = Vec::new();
            let mut unavailable = None;
            for attempt in 0..self.nodes.len() {
                let i = (start + attempt) % self.nodes.len();
                let mut url = self.nodes[i].join(path).map_err(|_| ClientError::Decode {
                    method: method.clone(),
                    path: path.to_owned(),
                    error: "not a path".into(),
                })?;
                if !query.is_empty() {
                    url.query_pairs_mut()
                        .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
                }
                let mut request = self.http.request(method.clone(), url).timeout(timeout);
                if let Some(token) = &self.token {
                    request = request.bearer_auth(token);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                // Every change is JSON, a body or not: the API refuses any other (a form
                // posted by a page elsewhere).
                let change = !matches!(method, Method::GET | Method::HEAD);
                let typed = headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
                if (change || body.is_some()) && !typed {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                if let Some(body) = &body {
                    request = request.body(body.clone());
                }
                let node = self.nodes[i].as_str().trim_end_matches('/');
                let answered = async {
                    let response = request.send().await?;
                    let status = response.status();
                    Ok::<_, reqwest::Error>((status, response.bytes().await?))
                }
                .await;
                match answered {
                    Ok((StatusCode::SERVICE_UNAVAILABLE, body)) => {
                        tracing::debug!(%node, %path, "unavailable; trying the next node");
                        tried.push(format!("{node}: 503 {}", error_body(&body).error));
                        unavailable = Some((StatusCode::SERVICE_UNAVAILABLE, body));
                    }
                    Ok((status, body)) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok((status, body));
                    }
                    Err(e) => {
                        tracing::debug!(%node, %path, error = %e, "no answer; trying the next node");
                        tried.push(format!("{node}: {}", describe(&e)));
                    }
                }
            }
            match unavailable {
                Some(_) if tokio::time::Instant::now() + UNAVAILABLE_PAUSE < deadline => {
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                Some(answer) => return Ok(answer),
                None => {
                    return Err(ClientError::Unreachable {
                        method,
                        path: path.to_owned(),
                        tried: tried.join("; "),
                    });
                }
            }
        }
    }

    /// A call with a JSON body (or none) and a JSON answer of type `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Decode {
                method: method.clone(),
                path: path.to_owned(),
                error: format!("cannot encode the request: {e}"),
            })?;
        let (status, bytes) = self
            .exchange(
                method.clone(),
                path,
                query,
                body,
                timeout.unwrap_or(self.timeout),
            )
            .await?;
        if !status.is_success() {
            return Err(ClientError::Refused {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                body: Box::new(error_body(&bytes)),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method,
            path: path.to_owned(),
            error: e.to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, query, None::<&()>, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], Some(body), None).await
    }

    /// `/healthz`: up, and the wire version it speaks (open: no token needed).
    pub async fn health(&self) -> Result<Healthz, ClientError> {
        self.get("/healthz", &[]).await
    }

    pub async fn state(&self) -> Result<StateView, ClientError> {
        self.get("/api/v1/state", &[]).await
    }

    pub async fn store_status(&self) -> Result<StoreStatus, ClientError> {
        self.get("/api/v1/store", &[]).await
    }

    pub async fn history(&self) -> Result<History, ClientError> {
        self.get("/api/v1/history", &[]).await
    }

    pub async fn rtt_table(&self) -> Result<RttTable, ClientError> {
        self.get("/api/v1/rtt", &[]).await
    }

    /// Why `client` (an address or subnet) gets its answer for `name`; `without` is a
    /// what-if (`site:iad,member:s3/fra-1`).
    pub async fn explain(
        &self,
        name: &str,
        client: &str,
        record_type: &str,
        without: Option<&str>,
    ) -> Result<ExplainView, ClientError> {
        let mut query = vec![
            ("name", name.to_owned()),
            ("client", client.to_owned()),
            ("type", record_type.to_owned()),
        ];
        if let Some(without) = without {
            query.push(("without", without.to_owned()));
        }
        self.get("/api/v1/explain", &query).await
    }

    /// `action` (drain, undrain, maintenance, force-down) on a target.
    pub async fn action(
        &self,
        target: &Target,
        action: &str,
        request: &ActionRequest,
    ) -> Result<ActionDone, ClientError> {
        let path = match target {
            Target::Site { site } => format!("/api/v1/sites/{}/{action}", segment(site)),
            Target::Service { service } => {
                format!("/api/v1/services/{}/{action}", segment(service))
            }
            Target::Member { service, node } => format!(
                "/api/v1/members/{}/{}/{action}",
                segment(service),
                segment(node)
            ),
        };
        self.post(&path, request).await
    }

    /// A site agent's report.
    pub async fn report(&self, report: &AgentReport) -> Result<Written, ClientError> {
        self.post("/api/v1/reports", report).await
    }

    /// A proxy's RTT aggregates.
    pub async fn rtt(&self, report: &RttReport) -> Result<Written, ClientError> {
        self.post("/api/v1/rtt", report).await
    }

    /// Members a proxy saw fail on the data path.
    pub async fn passive(&self, report: &PassiveReport) -> Result<Written, ClientError> {
        self.post("/api/v1/passive", report).await
    }

    /// Runs a drill and waits for its report (for at most `wait`).
    pub async fn drill(
        &self,
        request: &DrillRequest,
        wait: Duration,
    ) -> Result<DrillReport, ClientError> {
        self.call(
            Method::POST,
            "/api/v1/drills",
            &[("wait", "true".into())],
            Some(request),
            Some(wait),
        )
        .await
    }

    /// Starts a drill in the background.
    pub async fn start_drill(&self, request: &DrillRequest) -> Result<DrillStarted, ClientError> {
        self.post("/api/v1/drills", request).await
    }

    pub async fn drills(&self) -> Result<DrillList, ClientError> {
        self.get("/api/v1/drills", &[]).await
    }

    /// The deployment the answering node answers from.
    pub async fn config(&self) -> Result<ConfigView, ClientError> {
        self.get("/api/v1/config", &[]).await
    }

    pub async fn config_history(&self) -> Result<ConfigHistory, ClientError> {
        self.get("/api/v1/config/history", &[]).await
    }

    /// Applies (or with `dry_run` compares) a deployment.
    pub async fn config_apply(
        &self,
        apply: &ConfigApply,
        dry_run: bool,
    ) -> Result<ConfigOutcome, ClientError> {
        self.call(
            Method::POST,
            "/api/v1/config",
            &[("dry_run", dry_run.to_string())],
            Some(apply),
            None,
        )
        .await
    }

    /// Restores the document of an earlier version (as a new version).
    pub async fn config_rollback(
        &self,
        rollback: &ConfigRollback,
        dry_run: bool,
    ) -> Result<ConfigOutcome, ClientError> {
        self.call(
            Method::POST,
            "/api/v1/config/rollback",
            &[("dry_run", dry_run.to_string())],
            Some(rollback),
            None,
        )
        .await
    }

    /// Opens the watch stream (after `from`, if given) on the first node that takes it.
    pub async fn watch(&self, from: Option<u64>) -> Result<Watch, ClientError> {
        let path = "/api/v1/watch";
        let start = self.preferred.load(Ordering::Relaxed);
        let mut tried = Vec::new();
        for attempt in 0..self.nodes.len() {
            let i = (start + attempt) % self.nodes.len();
            let node = self.nodes[i].as_str().trim_end_matches('/').to_owned();
            let mut url = self.nodes[i].join(path).expect("a fixed path");
            if let Some(from) = from {
                url.query_pairs_mut().append_pair("from", &from.to_string());
            }
            // No total timeout: the stream lasts. The head must come within the timeout;
            // then the stream's own idle timeout watches it.
            let mut request = self
                .http
                .get(url)
                .timeout(Duration::from_secs(365 * 24 * 3600))
                .header(reqwest::header::ACCEPT, "application/x-ndjson");
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            match tokio::time::timeout(self.timeout, request.send()).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(Watch::new(node, response));
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    let body = response.bytes().await.unwrap_or_default();
                    if status != StatusCode::SERVICE_UNAVAILABLE {
                        return Err(ClientError::Refused {
                            method: Method::GET,
                            path: path.into(),
                            status: status.as_u16(),
                            body: Box::new(error_body(&body)),
                        });
                    }
                    tried.push(format!("{node}: 503"));
                }
                Ok(Err(e)) => tried.push(format!("{node}: {}", describe(&e))),
                Err(_) => tried.push(format!("{node}: no answer within {:?}", self.timeout)),
            }
        }
        Err(ClientError::Unreachable {
            method: Method::GET,
            path: path.into(),
            tried: tried.join("; "),
        })
    }
}

/// The API's error body, or the text of an answer that is not one.
fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            .trim()
            .to_owned(),
        retry_after_ms: None,
        key: None,
        line: None,
    })
}

/// A reqwest error in a few words (its chain, without the URL repeated).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_segments() {
        assert_eq!(
            base_url("127.0.0.1:8053", false).unwrap().as_str(),
            "http://127.0.0.1:8053/"
        );
        assert_eq!(
            base_url("127.0.0.1:8053", true).unwrap().as_str(),
            "https://127.0.0.1:8053/"
        );
        assert_eq!(
            base_url("http://[::1]:8053", true).unwrap().as_str(),
            "http://[::1]:8053/"
        );
        assert!(base_url("ftp://x:1", false).is_err());
        assert!(base_url("not an address", false).is_err());
        let https = base_url("https://dns1.example.net:8053", false).unwrap_err();
        assert!(https.to_string().contains("needs the CA"), "{https}");
        assert_eq!(segment("s3/fra 1"), "s3%2Ffra%201");
        assert!(matches!(
            ApiClient::new(ClientOptions::new(Vec::new())),
            Err(ClientError::NoNodes)
        ));
    }

    #[test]
    fn a_token_never_goes_over_plain_http_off_loopback() {
        let with_token = |nodes: &[&str]| {
            let mut options = ClientOptions::new(nodes.iter().map(|n| n.to_string()).collect());
            options.token = Some("0123456789abcdef0123".into());
            ApiClient::new(options)
        };
        assert!(with_token(&["127.0.0.1:8053", "[::1]:8053", "localhost:8053"]).is_ok());
        let refused = with_token(&["127.0.0.1:8053", "10.1.2.3:8053"]).unwrap_err();
        assert!(
            matches!(&refused, ClientError::CleartextToken(n) if n == "http://10.1.2.3:8053"),
            "{refused}"
        );
        // No token: nothing to leak.
        assert!(ApiClient::new(ClientOptions::new(vec!["10.1.2.3:8053".into()])).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_fabric_is_named_with_every_node_tried() {
        // Two ports nothing listens on.
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string()
        };
        let client = ApiClient::new(ClientOptions::new(vec![free(), free()])).unwrap();
        let err = client.state().await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert_eq!(
            err.to_string().matches("cannot connect").count(),
            2,
            "{err}"
        );
    }
}
