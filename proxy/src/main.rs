//! `proxy`: Portico's per-site data path (see the `proxy` library and `docs/proxy.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "proxy",
    version,
    about = "Portico's per-site S3 (L7) and NFS/SMB (L4) proxy"
)]
struct Args {
    /// The configuration file (TOML); without it, the embedded default configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The site this proxy serves (replaces `proxy.site`).
    #[arg(long)]
    site: Option<String>,
    /// gslb-dns admin API addresses to follow (replaces `proxy.state_from`).
    #[arg(long = "state-from")]
    state_from: Vec<SocketAddr>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<topology::Config> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match path {
        None => Ok(topology::Config::default_config(now)),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            topology::Config::from_toml(&text, now)
                .with_context(|| format!("in {}", path.display()))
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    proxy::init_logging();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(args.config.as_ref())?;
    let prepared = proxy::prepare(
        &config,
        args.site.clone(),
        args.state_from.clone(),
        args.check_config,
    )?;
    let Some(prepared) = prepared else {
        eprintln!(
            "proxy: configuration OK ({} listeners)",
            config.components.proxy.listeners.len()
        );
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(proxy::run(prepared, shutdown_signal()))?;
    // Sessions still open past the drain deadline are cut by the process exit.
    std::process::exit(0)
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
