//! `gslb-dns`: run Portico's authoritative GSLB DNS node. With no arguments it serves the
//! embedded default configuration on 127.0.0.1:5353 and [::1]:5353.
#![allow(clippy::print_stdout)] // a command-line program: stdout is its output

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Portico's authoritative GSLB DNS server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); without it the embedded default configuration is used.
    #[arg(short, long, env = "PORTICO_CONFIG")]
    config: Option<PathBuf>,
    /// DNS listen address, replacing `dns.listen` (repeatable).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Admin API listen address, replacing `admin.listen`.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// This node's id in the store cluster, replacing `store.node_id`.
    #[arg(long)]
    node_id: Option<u64>,
    /// Where the store keeps its data, replacing `store.data_dir` (a `node-<id>` directory
    /// is made inside).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Validate the configuration, print a summary and exit (0 = valid, 2 = invalid).
    #[arg(long)]
    check_config: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", topology::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    portico_client::process::init_logging("info");
    let mut config = match gslb_dns::load_config(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gslb-dns: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !args.listen.is_empty() {
        config.node.dns.listen = args.listen.clone();
    }
    if let Some(admin) = args.admin {
        config.node.admin.listen = Some(admin);
    }
    if let Some(dir) = &args.data_dir {
        config.node.store.data_dir = dir.display().to_string();
    }
    if let Some(id) = args.node_id {
        let store = &config.node.store;
        if !store.nodes.is_empty() && !store.nodes.iter().any(|n| n.id == id) {
            eprintln!("gslb-dns: --node-id {id} is not in store.nodes");
            return ExitCode::from(2);
        }
        config.node.store.node_id = id;
    }
    // The listen address may have come from the command line: check it as the file's is.
    if let Some(why) = config.node.admin.exposure_error() {
        eprintln!("gslb-dns: `admin.tls`: {why}");
        return ExitCode::from(2);
    }
    if args.check_config {
        let d = &config.deployment;
        println!(
            "configuration OK: zone {}, {} sites, {} services, {} members, {} static records",
            d.zone.origin,
            d.sites.len(),
            d.services.len(),
            d.members.len(),
            d.zone.records.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gslb-dns: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let test_geoip = config.node.geoip.database.is_none();
    runtime.block_on(async move {
        let node = match gslb_dns::start(config).await {
            Ok(node) => node,
            Err(e) => {
                eprintln!("gslb-dns: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&node, test_geoip);
        portico_client::process::wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Where the node listens, and dig lines to try against it.
fn print_banner(node: &gslb_dns::RunningNode, test_geoip: bool) {
    let snapshot = node.control.snapshot();
    let deployment = &snapshot.deployment;
    let Some(dns) = node.dns.first() else { return };
    let listening: Vec<String> = node.dns.iter().map(ToString::to_string).collect();
    println!(
        "gslb-dns: authoritative for {} on {} (UDP and TCP)",
        deployment.zone.origin,
        listening.join(", ")
    );
    if let Some(admin) = node.admin {
        println!("admin API: http://{admin}/api/v1/state  metrics: http://{admin}/metrics");
    }
    println!("try:");
    let host = dns.ip();
    let port = dns.port();
    for service in &deployment.services {
        let name = service.fqdn.as_str().trim_end_matches('.');
        for site in &deployment.sites {
            if let Some(net) = site.client_networks.first() {
                println!(
                    "  dig @{host} -p {port} {name} A +subnet={net}    # a client of {}",
                    site.name
                );
            }
        }
        if test_geoip {
            for (net, place) in [
                ("192.0.2.0/24", "Frankfurt"),
                ("198.51.100.0/24", "Ashburn"),
                ("203.0.113.0/24", "Singapore"),
            ] {
                println!(
                    "  dig @{host} -p {port} {name} A +subnet={net}    # GeoIP test data: {place}"
                );
            }
        }
        if snapshot.dns.debug_queries {
            println!(
                "  dig @{host} -p {port} _explain.{name} TXT +subnet=198.51.100.0/24    # why that answer"
            );
        }
    }
    if let Some(record) = deployment.zone.records.first() {
        println!("  dig @{host} -p {port} {} ANY +tcp", record.owner);
    }
}
