//! `portico demo`: a whole three-site fabric on loopback in one process, on the embedded
//! default configuration's sites, client networks, members and GeoIP test data:
//!
//! - three gslb-dns nodes (one per site, `127.0.{1,2,3}.53`) forming the raft store;
//! - six storage nodes on the members' addresses (`127.0.{10,20,30}.{1,2}`): small
//!   in-memory S3-speaking servers (bucket `demo`; no authentication, a demo only);
//! - a site agent per site, probing its members with signed S3 `HEAD /demo` checks;
//! - an S3 proxy per site on `127.0.{10,20,30}.100`, following the store.
//!
//! It prints the dashboard URL and a `dig` line per region, and stops everything on Ctrl-C.
#![allow(clippy::print_stdout)]

mod storage;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use portico_client::{ApiClient, ClientOptions};

use storage::{BUCKET, Objects, storage_node};

/// `portico demo`'s options (the defaults suit a fresh machine).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// DNS port of every gslb-dns node.
    #[arg(long, default_value_t = 5353)]
    pub dns_port: u16,
    /// Admin API (and dashboard) port of every gslb-dns node.
    #[arg(long, default_value_t = 8053)]
    pub admin_port: u16,
    /// Raft port of every gslb-dns node.
    #[arg(long, default_value_t = 7053)]
    pub raft_port: u16,
    /// Port of the storage nodes.
    #[arg(long, default_value_t = 9000)]
    pub storage_port: u16,
    /// Port of the per-site S3 proxies.
    #[arg(long, default_value_t = 8080)]
    pub proxy_port: u16,
    /// Where the store keeps its data (default: a fresh temporary directory, removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

const SITES: [&str; 3] = ["fra", "iad", "sin"];
const DEMO_ACCESS_KEY: &str = "PORTICODEMO";
const DEMO_SECRET_KEY: &str = "portico-demo-secret";

fn node_ip(i: usize) -> IpAddr {
    IpAddr::from([127, 0, i as u8 + 1, 53])
}

/// The demo's configuration text: the embedded default with an S3 check on `s3` and a
/// store of three nodes.
fn base_config(args: &DemoArgs) -> anyhow::Result<String> {
    let default = topology::DEFAULT_CONFIG;
    let anchor = "[[service]]\nname = \"s3\"\n";
    if !default.contains(anchor) {
        bail!("the embedded default configuration has no service s3");
    }
    let check = format!(
        "{anchor}check = {{ kind = \"s3\", bucket = \"{BUCKET}\", port = {}, interval = \"500ms\", timeout = \"400ms\", rise = 2, fall = 2 }}\nstale_after = \"3s\"\n",
        args.storage_port
    );
    let mut text = default.replacen(anchor, &check, 1);
    let nodes: Vec<String> = (0..3)
        .map(|i| {
            let ip = node_ip(i);
            format!(
                "{{ id = {}, raft = \"{ip}:{}\", api = \"{ip}:{}\", dns = \"{ip}:{}\", site = \"{}\" }}",
                i + 1,
                args.raft_port,
                args.admin_port,
                args.dns_port,
                SITES[i]
            )
        })
        .collect();
    text.push_str(&format!(
        "\n[store]\ntick_interval = \"50ms\"\nelection_ticks = 10\nheartbeat_ticks = 2\n# Every node on loopback, in one process: raft without TLS is allowed here only.\ninsecure_plaintext = true\nnodes = [{}]\n",
        nodes.join(", ")
    ));
    Ok(text)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the demo until Ctrl-C (or SIGTERM).
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    portico_client::process::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args.clone()))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let text = base_config(&args)?;
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("portico-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);

    // Storage nodes first, so the agents find them up.
    let base = topology::Config::from_toml(&text, now_unix()).context("the demo configuration")?;
    let deployment = Arc::new(base.deployment.clone());
    // The nodes of a site share one namespace, as the nodes of one storage cluster do.
    let mut storage = Vec::new();
    let mut namespaces: HashMap<topology::SiteId, Objects> = HashMap::new();
    for member in &deployment.members {
        let address = SocketAddr::new(member.address, args.storage_port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("storage node {} on {address}", member.node))?;
        let objects = namespaces.entry(member.site).or_default().clone();
        storage.push(tokio::spawn(storage_node(
            listener,
            member.node.clone(),
            objects,
        )));
    }

    // Three gslb-dns nodes: one store.
    let mut nodes = Vec::new();
    for (i, site) in SITES.iter().enumerate() {
        let mut config = topology::Config::from_toml(&text, now_unix())?;
        let ip = node_ip(i);
        config.node.dns.listen = vec![SocketAddr::new(ip, args.dns_port)];
        config.node.admin.listen = Some(SocketAddr::new(ip, args.admin_port));
        config.node.store.node_id = i as u64 + 1;
        config.node.store.data_dir = dir.display().to_string();
        let node = gslb_dns::start(config)
            .await
            .with_context(|| format!("gslb-dns node {} ({site})", i + 1))?;
        nodes.push(node);
    }
    let admins: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(node_ip(i), args.admin_port))
        .collect();

    // A site agent per site.
    let mut agents = Vec::new();
    for site in SITES {
        let mut settings = base.components.site_agent.clone();
        settings.report_to = admins.clone();
        let mut options = ClientOptions::new(admins.iter().map(ToString::to_string).collect());
        options.timeout = settings.report_timeout;
        let api = Arc::new(ApiClient::new(options)?);
        let setup = site_agent::agent::AgentSetup {
            site: site.to_string(),
            deployment: deployment.clone(),
            settings,
            s3_credentials: Some(site_agent::sigv4::Credentials {
                access_key: DEMO_ACCESS_KEY.into(),
                secret_key: DEMO_SECRET_KEY.into(),
                session_token: None,
            }),
            api,
            name: format!("demo-{site}-agent"),
            metrics: None,
        };
        agents.push(tokio::spawn(site_agent::agent::run(setup, stopped.clone())));
    }

    // An S3 proxy per site.
    let mut proxies = Vec::new();
    for (k, site) in SITES.iter().enumerate() {
        let listen = SocketAddr::new(
            IpAddr::from([127, 0, (k as u8 + 1) * 10, 100]),
            args.proxy_port,
        );
        let state_from: Vec<String> = admins.iter().map(|a| format!("\"{a}\"")).collect();
        let proxy_text = format!(
            "{text}\n[proxy]\nsite = \"{site}\"\nstate_from = [{}]\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{listen}\"\nservice = \"s3\"\nbackend_port = {}\n",
            state_from.join(", "),
            args.storage_port
        );
        let config = topology::Config::from_toml(&proxy_text, now_unix())?;
        let prepared = proxy::prepare(&config, None, Vec::new(), false)?
            .context("the proxy was only checked")?;
        let mut stopping = stopped.clone();
        proxies.push((
            listen,
            tokio::spawn(proxy::run(prepared, async move {
                let _ = stopping.wait_for(|s| *s).await;
            })),
        ));
    }

    println!(
        "Portico demo: three sites (fra, iad, sin) on loopback; store data in {}",
        dir.display()
    );
    println!();
    println!("dashboard: http://{}/", admins[0]);
    for (i, site) in SITES.iter().enumerate() {
        println!(
            "gslb-dns node {} ({site}): DNS {} admin http://{}/",
            i + 1,
            nodes[i].dns[0],
            admins[i]
        );
    }
    println!();
    let regions = [
        ("fra", "127.1.0.0/24"),
        ("iad", "127.2.0.0/24"),
        ("sin", "127.3.0.0/24"),
    ];
    for (i, (site, subnet)) in regions.iter().enumerate() {
        println!(
            "{site} clients: dig @{} -p {} s3.storage.example A +subnet={subnet}",
            nodes[i].dns[0].ip(),
            nodes[i].dns[0].port()
        );
    }
    println!();
    let (fra_proxy, _) = &proxies[0];
    println!(
        "S3 through fra's proxy: curl -X PUT --data hello http://{fra_proxy}/{BUCKET}/hello; curl http://{fra_proxy}/{BUCKET}/hello"
    );
    println!(
        "operate: portico --api {} status | members | explain s3 --client 127.2.0.9 | drain site iad | drill iad",
        admins[0]
    );
    println!("demo ready; Ctrl-C stops it");

    portico_client::process::wait_for_signal().await;
    println!("stopping the demo");
    let _ = stop.send(true);
    for agent in agents {
        let _ = agent.await;
    }
    for (_, proxy) in proxies {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), proxy).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    for node in storage {
        node.abort();
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("demo stopped");
    Ok(())
}
