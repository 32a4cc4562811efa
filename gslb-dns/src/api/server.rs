//! The admin API's HTTP server: its own accept loop on hyper, so every connection is
//! bounded before it proves anything. At most `admin.max_connections` are open (more are
//! closed as they come); the TLS handshake and every request's headers must arrive within
//! `admin.header_timeout` (a slowloris holds nothing), a request head is at most
//! [`MAX_HEAD`]; the body and the answer within `admin.request_timeout` ([`bounded`]). With
//! `[admin.tls]` it is HTTPS only (rustls, ring), with the files reloadable on SIGHUP and
//! client certificates verified against `admin.tls.ca` when set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use portico_client::tls::{self, TlsError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tower::ServiceExt as _;

use super::auth::{Connection, certificate_identity};
use super::error::ApiError;
use crate::control::Control;
use crate::metrics::AdminCounters;

/// The largest request head (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest request body (a deployment document, a batch of RTT samples).
pub const MAX_BODY: usize = 2 << 20;
/// How long open connections get to finish when the node stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The admin API's certificate and key, and the CA of client certificates; read again by
/// [`ServerTls::reload`].
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

fn acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("certificate", cert, e))?;
    let builder = match ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            // A client certificate is one way to prove an identity, a token the other:
            // connections without one are let through to the token check.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(tls::read_roots(ca)?, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::new("CA", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(tls::read_chain(cert)?, tls::read_key(key)?)
        .map_err(|e| TlsError::new("certificate", cert, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl ServerTls {
    pub fn load(files: &topology::model::AdminTls) -> Result<ServerTls, TlsError> {
        let cert = PathBuf::from(&files.cert);
        let key = PathBuf::from(&files.key);
        let ca = files.ca.as_ref().map(PathBuf::from);
        let current = RwLock::new(acceptor(&cert, &key, ca.as_deref())?);
        Ok(ServerTls {
            cert,
            key,
            ca,
            current,
        })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.cert, &self.key, self.ca.as_deref())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How the server bounds its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// The store's cluster name: client certificates name roles under it.
    pub cluster: String,
}

/// What every connection needs.
struct Shared {
    app: Router,
    tls: Option<Arc<ServerTls>>,
    options: ServeOptions,
    control: Arc<Control>,
    counters: Arc<AdminCounters>,
}

/// Serves `app` on `listener` until `shutdown` changes; then open connections get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    options: ServeOptions,
    control: Arc<Control>,
    counters: Arc<AdminCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let shared = Arc::new(Shared {
        app,
        tls,
        options,
        control,
        counters,
    });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "admin API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.counters.over_limit.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "admin API connection refused: admin.max_connections are open");
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            shared.counters.open.fetch_add(1, Ordering::Relaxed);
            connection(stream, peer, &shared, shutdown).await;
            shared.counters.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = &shared.tls else {
        let connection = Connection {
            peer,
            local,
            tls: false,
            certificate: None,
        };
        return http(stream, connection, shared, shutdown).await;
    };
    let handshake =
        tokio::time::timeout(shared.options.header_timeout, tls.acceptor().accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            shared
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "admin API TLS handshake failed");
            return;
        }
        Err(_) => {
            shared
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|certificate| {
            let snapshot = shared.control.snapshot();
            let sites = snapshot.deployment.sites.iter().map(|s| s.name.as_str());
            // A certificate that names no role proves nothing: a token may still.
            certificate_identity(certificate, &shared.options.cluster, sites).transpose()
        });
    let connection = Connection {
        peer,
        local,
        tls: true,
        certificate,
    };
    http(stream, connection, shared, shutdown).await;
}

/// HTTP/1.1 on one connection, each request carrying what is known of the connection.
async fn http<IO>(
    io: IO,
    connection: Connection,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(connection.clone());
            request
                .extensions_mut()
                .insert(ConnectInfo(connection.peer));
            app.clone().oneshot(request.map(Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.options.header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin API connection ended");
            }
        }
        _ = shutdown.changed() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, served).await;
        }
    }
}

/// The request bounds: the body read whole (at most [`MAX_BODY`]) within `limit`, then the
/// handler given `limit` to start its answer; a drill that is waited for is bounded by its
/// own timeout instead (at most five minutes).
pub async fn bounded(
    State((limit, counters)): State<(Duration, Arc<AdminCounters>)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            return ApiError::TooLarge(format!(
                "the request body is over {MAX_BODY} bytes, or broken: {e}"
            ))
            .into_response();
        }
        Err(_) => {
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return ApiError::Timeout(format!(
                "the request body did not arrive within {limit:?} (admin.request_timeout)"
            ))
            .into_response();
        }
    };
    let waited_drill = parts.uri.path() == "/api/v1/drills"
        && parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "wait=true"));
    let request = Request::from_parts(parts, Body::from(bytes));
    if waited_drill {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
            ApiError::Unavailable(format!(
                "no answer within {limit:?} (admin.request_timeout)"
            ))
            .into_response()
        }
    }
}
