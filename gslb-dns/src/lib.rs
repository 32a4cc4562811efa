//! `gslb-dns`: Portico's authoritative GSLB DNS node.
//!
//! What it is: the wiring of one DNS node. It loads and validates the deployment's
//! configuration, opens the GeoIP database, encodes the zone, precomputes every service
//! answer into a [`Snapshot`] published with `ArcSwap`, and serves DNS over UDP and TCP
//! ([`dns`]) plus the admin HTTP API ([`admin`]). [`start`] runs a node in-process (tests do
//! that); `main.rs` is a thin command-line shell around it.
//!
//! What it is not: answer selection lives in `topology` (pure); GeoIP decoding in
//! `geoip-data`. Dynamic state is held in memory by [`control::Control`] for now; the
//! raft-replicated store takes over that role behind the same snapshot.

pub mod admin;
pub mod auth;
pub mod control;
pub mod demo;
pub mod dns;
pub mod drill;
pub mod metrics;
pub mod snapshot;
pub mod store;
pub mod store_api;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use geoip_data::{GeoDb, WatchedDb};
use tokio::sync::watch;
use topology::Config;

pub use control::Control;
pub use snapshot::Snapshot;

/// Seconds since the epoch (the default SOA serial).
fn unix_seconds() -> u64 {
    admin::now().0 / 1000
}

/// Reads and validates a configuration file, or the embedded default when `path` is `None`.
/// Nothing is bound yet; errors name the file, the line and the key.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::default_config(unix_seconds())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration {}", path.display()))?;
            Config::from_toml(&text, unix_seconds())
                .with_context(|| format!("invalid configuration {}", path.display()))
        }
    }
}

/// A running DNS node.
pub struct RunningNode {
    pub control: Arc<Control>,
    pub store: Arc<store::Store>,
    pub metrics: Arc<metrics::Metrics>,
    /// Bound DNS addresses (UDP and TCP share each).
    pub dns: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("dns", &self.dns)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Starts a node: GeoIP, zone and first snapshot are prepared before any port is bound.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    let deployment = config.deployment;
    let mut watched = match &deployment.geoip.database {
        Some(path) => Some(WatchedDb::open(path).context("cannot open the GeoIP database")?),
        None => None,
    };
    let geo = watched
        .as_ref()
        .map_or_else(|| Arc::new(GeoDb::test_database()), WatchedDb::current);
    let settings = deployment.dns.clone();
    let admin_listen = deployment.admin.listen;
    let reload_interval = deployment.geoip.reload_interval;
    let auth = Arc::new(auth::Auth::load(
        deployment.admin.token_file.as_deref(),
        deployment.admin.reads,
    )?);
    let metrics = Arc::new(metrics::Metrics::new(&deployment));
    let deployment = Arc::new(deployment);
    let control = Arc::new(Control::new(deployment.clone(), geo, admin::now())?);
    let store = Arc::new(store::Store::open(deployment.clone())?);

    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let workers = match settings.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut dns = Vec::new();
    let mut udp_threads = Vec::new();
    let mut tasks = Vec::new();
    for listen in &settings.listen {
        let (sockets, tcp) = bind_dns(*listen, workers).await?;
        let bound = tcp.local_addr()?;
        udp_threads.extend(
            dns::udp::spawn(sockets, control.published(), metrics.clone(), stop.clone())
                .context("cannot start the UDP workers")?,
        );
        tasks.push(tokio::spawn(dns::tcp::serve(
            tcp,
            control.published(),
            metrics.clone(),
            settings.tcp_idle_timeout,
            settings.tcp_max_connections,
            shutdown_rx.clone(),
        )));
        dns.push(bound);
    }
    let mut admin_bound = None;
    if let Some(listen) = admin_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind the admin API on {listen}"))?;
        admin_bound = Some(listener.local_addr()?);
        let drills_dir = std::path::PathBuf::from(&deployment.store.data_dir)
            .join(format!("node-{}", deployment.store.node_id))
            .join("drills");
        let router = admin::router(admin::AdminContext {
            control: control.clone(),
            metrics: metrics.clone(),
            store: store.clone(),
            dns: dns.clone(),
            drills: Arc::new(drill::Drills::new(Some(drills_dir))),
        })
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::authorize,
        ));
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.changed().await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API stopped");
            }
        }));
    }
    if let Some(raft) = store
        .raft_listen
        .filter(|_| deployment.store.nodes.len() > 1)
    {
        let listener = tokio::net::TcpListener::bind(raft)
            .await
            .with_context(|| format!("cannot bind the store's raft transport on {raft}"))?;
        tasks.push(tokio::spawn(state_store::transport::serve(
            listener,
            store.node.handle(),
            store.tls.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(store::follow_machine(
        store.clone(),
        control.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(store::follow_status(
        store.clone(),
        control.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(refresh_on_staleness(
        control.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(watched) = watched.take() {
        tasks.push(tokio::spawn(reload_geoip(
            watched,
            reload_interval,
            control.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )));
    }
    Ok(RunningNode {
        control,
        store,
        metrics,
        dns,
        admin: admin_bound,
        stop,
        shutdown,
        udp_threads,
        tasks,
    })
}

impl RunningNode {
    /// Stops every listener and waits for the workers.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        // Graceful, within bounds: a long-lived watch stream or a slow client must not hold
        // the node up; whatever has not ended after the grace period is cut.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        let threads = self.udp_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Binds UDP and TCP on the same address. With port 0 the UDP port is picked first; if
/// TCP cannot have the same port (another socket holds it), both are tried again.
async fn bind_dns(
    listen: SocketAddr,
    workers: usize,
) -> anyhow::Result<(Vec<std::net::UdpSocket>, tokio::net::TcpListener)> {
    let mut attempts = 0;
    loop {
        let sockets = dns::udp::bind_all(listen, workers)
            .with_context(|| format!("cannot bind DNS UDP on {listen}"))?;
        let bound = sockets[0].local_addr()?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((sockets, tcp)),
            Err(e) if listen.port() == 0 && attempts < 20 => {
                attempts += 1;
                tracing::debug!(%bound, error = %e, "TCP port taken; picking another port");
            }
            Err(e) => return Err(e).with_context(|| format!("cannot bind DNS TCP on {bound}")),
        }
    }
}

/// Rebuilds the answers when a site's telemetry turns stale.
async fn refresh_on_staleness(control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut last = admin::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
        let now = admin::now();
        if control
            .next_deadline(last)
            .is_some_and(|deadline| deadline <= now)
        {
            control.refresh(now);
            last = now;
        }
    }
}

/// Polls the GeoIP file and switches to a new database when it changes; a file that fails
/// to load leaves the old database in place.
async fn reload_geoip(
    mut watched: WatchedDb,
    interval: Duration,
    control: Arc<Control>,
    metrics: Arc<metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        match watched.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => match control.set_geo(watched.current(), admin::now()) {
                Ok(()) => {
                    metrics.geoip_reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(path = %watched.path().display(), "GeoIP database reloaded");
                }
                Err(e) => {
                    metrics.geoip_reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "GeoIP database reloaded but unusable; keeping the old one");
                }
            },
            Err(e) => {
                metrics.geoip_reload_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, path = %watched.path().display(), "GeoIP reload failed; keeping the old database");
            }
        }
    }
}

/// Logs to standard error: the level filter from `RUST_LOG` (else `default`), JSON lines
/// when `PORTICO_LOG_FORMAT=json`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if std::env::var("PORTICO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
