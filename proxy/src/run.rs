//! Preparing and running a proxy: the configuration checked and every port bound before
//! anything runs ([`prepare`]), then the listeners, the store link, the RTT poster and
//! `/metrics` until the shutdown future completes, and a drain ([`run`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use portico_client::{ApiClient, ClientOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::watch;
use tokio_rustls::rustls;
use topology::config::{Listener, ListenerProtocol, ProxySettings};

use crate::metrics::{self, Metrics};
use crate::rtt::RttTable;
use crate::shared::{Sessions, Shared};
use crate::upstreams::{Clock, ServicePorts, Upstreams};
use crate::{s3, store_link, tcp};

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
    /// The store's API, when `state_from` names nodes.
    api: Option<Arc<ApiClient>>,
    /// Ejections to report to the store, when it is followed and `report_ejections` holds.
    ejections: Option<tokio::sync::mpsc::Receiver<topology::wire::PassiveObservation>>,
    drain: watch::Sender<bool>,
}

/// Ejections waiting to be reported; more are dropped (and counted) until the poster
/// catches up.
const EJECTIONS_QUEUED: usize = 256;

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
    let api = if settings.state_from.is_empty() {
        None
    } else {
        let mut options = ClientOptions::new(
            settings
                .state_from
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
        options.token = api_token;
        options.tls = settings.api_tls.as_ref().map(Into::into);
        options.timeout = Duration::from_secs(3);
        Some(Arc::new(
            ApiClient::new(options).context("`proxy.state_from`")?,
        ))
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
    let services: Vec<ServicePorts> = settings
        .listeners
        .iter()
        .flat_map(|l| {
            std::iter::once(l.service.clone())
                .chain(l.routes.iter().map(|r| r.service.clone()))
                .map(move |service| ServicePorts {
                    service,
                    backend_port: l.backend_port,
                    listen_port: l.listen.port(),
                })
        })
        .collect();
    let upstreams = Upstreams::from_deployment(&config.deployment, &site, &services);
    let (drain, draining) = watch::channel(false);
    let (passive, ejections) = match &api {
        Some(_) if settings.report_ejections => {
            let (sender, receiver) = tokio::sync::mpsc::channel(EJECTIONS_QUEUED);
            (Some(sender), Some(receiver))
        }
        _ => (None, None),
    };
    let shared = Arc::new(Shared {
        site: site.clone(),
        services,
        upstreams: ArcSwap::from_pointee(upstreams),
        clock: Clock::default(),
        eject_after: settings.eject_after,
        eject_for: settings.eject_for,
        metrics: Metrics::default(),
        rtt: RttTable::new(settings.rtt_prefix_v4, settings.rtt_prefix_v6),
        draining,
        sessions: Sessions::default(),
        access_log: settings.access_log,
        pipes: crate::pipes::PipePool::for_this_process(),
        passive,
    });
    Ok(Some(Prepared {
        settings,
        site,
        sockets,
        metrics_socket,
        tls,
        shared,
        api,
        ejections,
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
        api,
        ejections,
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
                    idle: s3::upstream::IdlePool::default(),
                });
                tokio::spawn(s3::serve(socket, ctx))
            }
        });
    }
    // Background tasks, stopped when the proxy has drained.
    let mut background = Vec::new();
    if let Some(socket) = metrics_socket {
        let socket = tokio::net::TcpListener::from_std(socket)?;
        let page = shared.clone();
        background.push(tokio::spawn(metrics::serve(socket, move || {
            page.metrics
                .render(&page.upstreams.load(), &page.clock, &page.pipes)
        })));
    }
    match api {
        None => tracing::warn!(
            "no `proxy.state_from`: members keep their configured weights; only passive checks apply"
        ),
        Some(api) => {
            background.push(tokio::spawn(store_link::follow(
                api.clone(),
                shared.clone(),
            )));
            if let Some(ejections) = ejections {
                background.push(tokio::spawn(store_link::post_passive(
                    api.clone(),
                    ejections,
                    format!("{site}-proxy-{}", std::process::id()),
                    shared.clone(),
                )));
            }
            if !settings.rtt_report_interval.is_zero() {
                background.push(tokio::spawn(store_link::post_rtt(
                    api,
                    settings.rtt_report_interval,
                    shared.clone(),
                )));
            }
        }
    }
    shutdown.await;
    tracing::info!(open = shared.sessions.open(), timeout = ?settings.drain_timeout, "draining: no new connections");
    let _ = drain.send(true);
    for task in listening {
        let _ = task.await;
    }
    shared
        .sessions
        .drained(tokio::time::Instant::now() + settings.drain_timeout)
        .await;
    tracing::info!(left = shared.sessions.open(), "drained; exiting");
    for task in background {
        task.abort();
    }
    Ok(())
}
