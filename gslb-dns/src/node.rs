//! One DNS node, wired: the configuration loaded and validated, the GeoIP database opened,
//! the zone encoded and the first snapshot built, all before any port is bound; then the
//! DNS listeners, the admin API, the raft transport and the tasks that follow the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use geoip_data::{GeoDb, WatchedDb};
use portico_client::tls::ClientTls;
use state_store::clock::now;
use tokio::sync::watch;
use topology::Config;

use crate::api::ApiContext;
use crate::api::auth::{Auth, Gate};
use crate::api::server::{ServeOptions, ServerTls};
use crate::control::Control;
use crate::drill::Drills;
use crate::metrics::Metrics;
use crate::store::Store;

/// Reads and validates a configuration file, or the embedded default when `path` is `None`.
/// Nothing is bound yet; errors name the file, the line and the key.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(portico_client::process::read_config(path)?)
}

/// A running DNS node.
pub struct RunningNode {
    pub control: Arc<Control>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
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
    let Config {
        deployment,
        node,
        document,
        ..
    } = config;
    let mut watched = match &node.geoip.database {
        // Served from a private copy in the data directory: an updater rewriting the file
        // in place cannot pull it from under the running node.
        Some(path) => Some({
            let scratch = std::path::Path::new(&node.store.data_dir);
            std::fs::create_dir_all(scratch).with_context(|| {
                format!("cannot create the data directory {}", scratch.display())
            })?;
            WatchedDb::open_private(path, scratch).context("cannot open the GeoIP database")?
        }),
        None => None,
    };
    let geo = watched
        .as_ref()
        .map_or_else(|| Arc::new(GeoDb::test_database()), WatchedDb::current);
    let auth = Auth::load(node.admin.token_file.as_deref(), node.admin.reads)?;
    let metrics = Arc::new(Metrics::new());
    let dns_settings = Arc::new(node.dns.clone());
    let control = Arc::new(Control::new(
        Arc::new(deployment),
        dns_settings.clone(),
        geo,
        metrics.counters.clone(),
        now(),
    )?);
    // The other nodes' APIs are HTTPS too when this one's is, under the same CA.
    let peer_api_tls = node.admin.tls.as_ref().and_then(|t| {
        t.ca.as_ref().map(|ca| ClientTls {
            ca: ca.into(),
            identity: None,
        })
    });
    let store = Arc::new(Store::open(&node.store, peer_api_tls)?);

    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let workers = match dns_settings.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut dns = Vec::new();
    let mut udp_threads = Vec::new();
    let mut tasks = Vec::new();
    for listen in &dns_settings.listen {
        let (sockets, tcp) = bind_dns(*listen, workers).await?;
        let bound = tcp.local_addr()?;
        udp_threads.extend(
            crate::dns::udp::spawn(
                sockets,
                control.published(),
                metrics.counters.clone(),
                stop.clone(),
            )
            .context("cannot start the UDP workers")?,
        );
        tasks.push(tokio::spawn(crate::dns::tcp::serve(
            tcp,
            control.published(),
            metrics.counters.clone(),
            crate::dns::tcp::TcpLimits::from(&*dns_settings),
            shutdown_rx.clone(),
        )));
        dns.push(bound);
    }
    let timeline = Arc::new(crate::timeline::Timeline::new());
    tasks.push(tokio::spawn(crate::timeline::sample(
        timeline.clone(),
        metrics.counters.clone(),
        shutdown_rx.clone(),
    )));
    let mut admin_bound = None;
    let admin_tls = match &node.admin.tls {
        Some(files) => Some(Arc::new(
            ServerTls::load(files).context("cannot load the admin API's TLS files (admin.tls)")?,
        )),
        None => None,
    };
    if let Some(listen) = node.admin.listen {
        if let Some(why) = node.admin.exposure_error() {
            anyhow::bail!("`admin.tls`: {why}");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind the admin API on {listen}"))?;
        admin_bound = Some(listener.local_addr()?);
        let drills_dir = std::path::PathBuf::from(&node.store.data_dir)
            .join(format!("node-{}", node.store.node_id))
            .join("drills");
        let context = ApiContext {
            control: control.clone(),
            metrics: metrics.clone(),
            store: store.clone(),
            dns: dns.clone(),
            drills: Arc::new(Drills::new(Some(drills_dir))),
            file_document: Arc::new(document.clone()),
            timeline: timeline.clone(),
        };
        let gate = Arc::new(Gate {
            auth,
            names: node.admin.names.clone(),
            counters: metrics.admin.clone(),
        });
        let options = ServeOptions {
            max_connections: node.admin.max_connections,
            header_timeout: node.admin.header_timeout,
            cluster: node.store.cluster.clone(),
        };
        tasks.push(tokio::spawn(crate::api::server::serve(
            listener,
            crate::api::app(context, gate, node.admin.request_timeout),
            admin_tls.clone(),
            options,
            control.clone(),
            metrics.admin.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(raft) = store.raft_listen.filter(|_| node.store.nodes.len() > 1) {
        let listener = tokio::net::TcpListener::bind(raft)
            .await
            .with_context(|| format!("cannot bind the store's raft transport on {raft}"))?;
        tasks.push(tokio::spawn(state_store::transport::serve(
            listener,
            store.transport.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::store::follow_machine(
        store.clone(),
        control.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::store::follow_status(
        store.clone(),
        control.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::store::bootstrap(
        store.clone(),
        control.clone(),
        document,
        shutdown_rx.clone(),
    )));
    // A store of this node alone seeds its deployment at once: wait for that before
    // taking requests, so the first write finds the deployment it names.
    if node.store.initial_voters() == [node.store.node_id] {
        let mut applied = store.node.subscribe();
        let seeded = applied.wait_for(|p| p.machine.current_version().is_some());
        if tokio::time::timeout(node.store.propose_timeout, seeded)
            .await
            .is_err()
        {
            tracing::warn!("the store has no deployment yet; answering from this node's file");
        }
    }
    tasks.push(tokio::spawn(refresh_on_staleness(
        control.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(reload_tls_on_hangup(
        store.tls.clone(),
        admin_tls,
        metrics.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(watched) = watched.take() {
        tasks.push(tokio::spawn(reload_geoip(
            watched,
            node.geoip.reload_interval,
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
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
        let sockets = crate::dns::udp::bind_all(listen, workers)
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

/// Rebuilds the answers when a site's telemetry turns stale: sleeps until the next
/// deadline, or until new answers are published (which may bring a nearer one).
async fn refresh_on_staleness(control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut applied = control.watch_applied();
    let mut last = now();
    loop {
        let current = now();
        let wait = match control.next_deadline(last) {
            Some(deadline) if deadline <= current => {
                control.refresh(current);
                last = current;
                continue;
            }
            Some(deadline) => Duration::from_millis(deadline.0 - current.0),
            // Nothing turns stale unless something changes first (a report, or quorum
            // back after degradation, which new answers do not always signal): look again
            // now and then.
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = applied.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Polls the GeoIP file and switches to a new database when it changes; a file that fails
/// to load leaves the old database in place.
async fn reload_geoip(
    mut watched: WatchedDb,
    interval: Duration,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        match watched.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => match control.set_geo(watched.current(), now()) {
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

/// Reads the TLS files again on SIGHUP (certificates renewed in place): connections made
/// after use the new files; a file that fails to load leaves the old configuration in place.
async fn reload_tls_on_hangup(
    store: Option<state_store::Tls>,
    admin: Option<Arc<ServerTls>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files reload only on a restart");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {}
            _ = shutdown.changed() => return,
        }
        if store.is_none() && admin.is_none() {
            tracing::info!("SIGHUP: no TLS files to reload");
        }
        let reloads = [
            ("the store's", store.as_ref().map(|t| t.reload())),
            ("the admin API's", admin.as_ref().map(|t| t.reload())),
        ];
        for (whose, reloaded) in reloads {
            match reloaded {
                None => {}
                Some(Ok(())) => {
                    metrics.tls_reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("SIGHUP: {whose} TLS files reloaded");
                }
                Some(Err(e)) => {
                    metrics.tls_reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "SIGHUP: {whose} TLS files cannot be used; keeping the ones loaded");
                }
            }
        }
    }
}
