//! `proxy`: Portico's per-site data path (see the `proxy` library and `docs/proxy.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

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

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    portico_client::process::init_logging("info");
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = portico_client::process::read_config(args.config.as_deref())?;
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
    runtime.block_on(proxy::run(
        prepared,
        portico_client::process::wait_for_signal(),
    ))?;
    // Sessions still open past the drain deadline are cut by the process exit.
    std::process::exit(0)
}
