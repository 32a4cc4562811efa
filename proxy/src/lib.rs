//! Portico's per-site data path. L4 listeners forward NFS, SMB or any TCP to the member
//! rendezvous hashing picks for the client; S3 listeners route each request by rules to a
//! pool and the least busy member. Member weights, drains and discovered addresses come from
//! the state store's stream; RTTs of client connections go back to it.
//!
//! [`prepare`] checks a configuration and binds every port; [`run`] serves until its
//! shutdown future completes, then drains. The `proxy` binary and `portico demo` use both.

pub mod backends;
pub mod metrics;
pub mod rtt;
pub mod s3;
pub mod store_link;
mod sys;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::{Notify, watch};
use tokio_rustls::rustls;
use topology::config::{Listener, ListenerProtocol, ProxySettings};

use backends::{Backend, Pools};

/// What every listener and task of the proxy shares.
#[derive(Debug)]
pub struct Shared {
    pub pools: Pools,
    pub metrics: metrics::Metrics,
    pub rtt: rtt::RttTable,
    /// Becomes true on SIGTERM/SIGINT: listeners stop accepting, keep-alive ends.
    pub draining: watch::Receiver<bool>,
    pub sessions: Sessions,
    pub access_log: bool,
    /// Bearer token for the store's API (`proxy.token_file` or `PORTICO_TOKEN`).
    pub api_token: Option<String>,
}

impl Shared {
    /// A member failed to connect or answer: counted, and ejected after enough in a row.
    pub fn upstream_failure(
        &self,
        listener: &metrics::ListenerMetrics,
        member: &Backend,
        kind: &'static str,
    ) {
        listener.upstream_error(kind);
        if member.failed(
            &self.pools.clock,
            self.pools.eject_after,
            self.pools.eject_for,
        ) {
            tracing::warn!(member = %member.node, service = %member.service, kind, "member ejected after repeated failures");
        }
    }
}

/// Accepts until the proxy drains: at most `max_connections` open at once (a connection
/// over it goes to `refuse`), each served by its own task from `serve`, counted as a
/// session so a drain can wait for it.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    max_connections: usize,
    shared: Arc<Shared>,
    metrics: Arc<metrics::ListenerMetrics>,
    refuse: impl Fn(tokio::net::TcpStream),
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut draining = shared.draining.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = draining.wait_for(|d| *d) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(listener = %metrics.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::ListenerMetrics::add(&metrics.refused, 1);
            refuse(stream);
            continue;
        };
        metrics::ListenerMetrics::add(&metrics.connections, 1);
        let _ = stream.set_nodelay(true);
        let session = serve(stream, peer);
        let shared = shared.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _session = shared.sessions.enter();
            metrics.active.fetch_add(1, Ordering::Relaxed);
            session.await;
            metrics.active.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Open client sessions, so a drain can wait for them.
#[derive(Debug, Default)]
pub struct Sessions {
    open: AtomicUsize,
    closed: Notify,
}

pub struct SessionGuard<'a>(&'a Sessions);

impl Sessions {
    pub fn enter(&self) -> SessionGuard<'_> {
        self.open.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self)
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

/// Checks what only the command line could have made wrong (the site may come from
/// `--site`): every listener's services have members at this site.
fn check_site(
    config: &topology::Config,
    settings: &ProxySettings,
    site: &str,
) -> anyhow::Result<()> {
    let deployment = &config.deployment;
    if !deployment.sites.iter().any(|s| s.name == site) {
        bail!("no site named {site:?}");
    }
    for (i, listener) in settings.listeners.iter().enumerate() {
        let services = std::iter::once((format!("proxy.listener[{i}].service"), &listener.service))
            .chain(listener.routes.iter().enumerate().map(|(j, r)| {
                (
                    format!("proxy.listener[{i}].route[{j}].service"),
                    &r.service,
                )
            }));
        for (key, service) in services {
            let has_member = deployment
                .services
                .iter()
                .filter(|s| &s.name == service)
                .any(|s| {
                    s.members
                        .iter()
                        .any(|m| deployment.site(deployment.member(*m).site).name == site)
                });
            if !has_member {
                bail!("`{key}`: service {service:?} has no member at site {site:?}");
            }
        }
    }
    Ok(())
}

fn server_tls(
    listener: &Listener,
    index: usize,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let Some(tls) = &listener.tls else {
        return Ok(None);
    };
    let key = format!("proxy.listener[{index}].tls");
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("`{key}.cert`: {}", tls.cert))?;
    if certs.is_empty() {
        bail!("`{key}.cert`: {} holds no certificate", tls.cert);
    }
    let private = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("`{key}.key`: {}", tls.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .with_context(|| format!("`{key}`: certificate and key do not fit"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn backend_tls(
    listener: &Listener,
    index: usize,
) -> anyhow::Result<Option<Arc<s3::upstream::BackendTls>>> {
    let Some(tls) = &listener.backend_tls else {
        return Ok(None);
    };
    let key = format!("proxy.listener[{index}].backend_tls");
    let ca = tls
        .ca
        .as_deref()
        .unwrap_or("/etc/ssl/certs/ca-certificates.crt");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("`{key}.ca`: {ca}"))?
    {
        // A system bundle may hold certificates rustls does not take; skip those.
        let _ = roots.add(certificate.with_context(|| format!("`{key}.ca`: {ca}"))?);
    }
    if roots.is_empty() {
        bail!("`{key}.ca`: {ca} holds no usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = tls
        .server_name
        .as_ref()
        .map(|name| {
            ServerName::try_from(name.clone())
                .with_context(|| format!("`{key}.server_name`: {name:?}"))
        })
        .transpose()?;
    Ok(Some(Arc::new(s3::upstream::BackendTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })))
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A proxy ready to run: its configuration checked and every port bound.
pub struct Prepared {
    settings: ProxySettings,
    site: String,
    sockets: Vec<std::net::TcpListener>,
    metrics_socket: Option<std::net::TcpListener>,
    tls: Vec<(
        Option<tokio_rustls::TlsAcceptor>,
        Option<Arc<s3::upstream::BackendTls>>,
    )>,
    shared: Arc<Shared>,
    drain: watch::Sender<bool>,
}

/// Checks `config` for a proxy of `site` (default `proxy.site`), following `state_from`
/// (default `proxy.state_from`), and binds every listener; with `check_only`, binds nothing
/// and returns `None`.
pub fn prepare(
    config: &topology::Config,
    site: Option<String>,
    state_from: Vec<SocketAddr>,
    check_only: bool,
) -> anyhow::Result<Option<Prepared>> {
    let mut settings = config.components.proxy.clone();
    if !state_from.is_empty() {
        settings.state_from = state_from;
    }
    let site = site
        .or_else(|| settings.site.clone())
        .context("no site: set `proxy.site` or pass --site")?;
    if settings.listeners.is_empty() {
        bail!("`proxy.listener`: no listener configured, nothing to forward");
    }
    check_site(config, &settings, &site)?;
    let api_token = match &settings.token_file {
        Some(path) => Some(
            topology::config::client_token(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("`proxy.token_file`: {path}"))?,
            )
            .with_context(|| format!("`proxy.token_file`: {path} holds no token"))?
            .to_owned(),
        ),
        None => std::env::var("PORTICO_TOKEN").ok(),
    };
    let mut tls = Vec::new();
    for (i, listener) in settings.listeners.iter().enumerate() {
        tls.push((server_tls(listener, i)?, backend_tls(listener, i)?));
    }
    if check_only {
        return Ok(None);
    }
    // Every port is bound before anything runs: a taken port fails the start.
    let mut sockets = Vec::new();
    for (i, listener) in settings.listeners.iter().enumerate() {
        sockets.push(bind(listener.listen).with_context(|| {
            format!("`proxy.listener[{i}].listen`: binding {}", listener.listen)
        })?);
    }
    let metrics_socket = settings
        .metrics
        .map(|address| {
            metrics::bind(address).with_context(|| format!("`proxy.metrics`: binding {address}"))
        })
        .transpose()?;
    let services: Vec<(String, Option<u16>, u16)> = settings
        .listeners
        .iter()
        .flat_map(|l| {
            std::iter::once(l.service.clone())
                .chain(l.routes.iter().map(|r| r.service.clone()))
                .map(move |service| (service, l.backend_port, l.listen.port()))
        })
        .collect();
    let pools = Pools::new(
        &config.deployment,
        &site,
        &services,
        settings.eject_after,
        settings.eject_for,
    );
    let (drain, draining) = watch::channel(false);
    let shared = Arc::new(Shared {
        pools,
        metrics: metrics::Metrics::default(),
        rtt: rtt::RttTable::new(settings.rtt_prefix_v4, settings.rtt_prefix_v6),
        draining,
        sessions: Sessions::default(),
        access_log: settings.access_log,
        api_token,
    });
    Ok(Some(Prepared {
        settings,
        site,
        sockets,
        metrics_socket,
        tls,
        shared,
        drain,
    }))
}

/// Serves until `shutdown` completes, then drains: listeners close at once, open sessions
/// get `drain_timeout` to finish.
pub async fn run(
    prepared: Prepared,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Prepared {
        settings,
        site,
        sockets,
        metrics_socket,
        tls,
        shared,
        drain,
    } = prepared;
    let mut listening = Vec::new();
    for ((listener, socket), (server_tls, backend_tls)) in
        settings.listeners.iter().zip(sockets).zip(tls)
    {
        let socket = tokio::net::TcpListener::from_std(socket)?;
        tracing::info!(listener = %listener.name, protocol = ?listener.protocol, listen = %listener.listen, service = %listener.service, site = %site, "listening");
        listening.push(match listener.protocol {
            ListenerProtocol::Tcp => tokio::spawn(tcp::serve(
                socket,
                listener.clone(),
                shared.clone(),
                shared.metrics.listener(&listener.name),
            )),
            ListenerProtocol::S3 => {
                let ctx = Arc::new(s3::S3Listener {
                    config: listener.clone(),
                    metrics: shared.metrics.listener(&listener.name),
                    shared: shared.clone(),
                    tls: server_tls,
                    backend_tls,
                });
                tokio::spawn(s3::serve(socket, ctx))
            }
        });
    }
    // Background tasks, stopped when the proxy has drained.
    let mut background = Vec::new();
    if let Some(socket) = metrics_socket {
        let socket = tokio::net::TcpListener::from_std(socket)?;
        background.push(tokio::spawn(metrics::serve(socket, shared.clone())));
    }
    if settings.state_from.is_empty() {
        tracing::warn!(
            "no `proxy.state_from`: members keep their configured weights; only passive checks apply"
        );
    } else {
        background.push(tokio::spawn(store_link::follow(
            settings.state_from.clone(),
            shared.clone(),
        )));
        if !settings.rtt_report_interval.is_zero() {
            background.push(tokio::spawn(store_link::post_rtt(
                settings.state_from.clone(),
                settings.rtt_report_interval,
                shared.clone(),
            )));
        }
    }
    shutdown.await;
    tracing::info!(open = shared.sessions.open(), timeout = ?settings.drain_timeout, "draining: no new connections");
    let _ = drain.send(true);
    for task in listening {
        let _ = task.await;
    }
    let deadline = tokio::time::Instant::now() + settings.drain_timeout;
    loop {
        let closed = shared.sessions.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if shared.sessions.open() == 0 || tokio::time::timeout_at(deadline, closed).await.is_err() {
            break;
        }
    }
    tracing::info!(left = shared.sessions.open(), "drained; exiting");
    for task in background {
        task.abort();
    }
    Ok(())
}

/// Logs to standard error: the level filter from `PORTICO_LOG` (default `info`), JSON lines
/// when `PORTICO_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if std::env::var("PORTICO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
