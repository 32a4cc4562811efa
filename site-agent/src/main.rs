//! `site-agent`: probes the storage nodes of one site and reports to the state store.
#![allow(clippy::print_stdout)] // a command-line program: stdout is its output

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use portico_client::{ApiClient, ClientOptions};
use site_agent::agent::{AgentSetup, run};
use site_agent::sigv4::Credentials;
use site_agent::target::targets;

/// Portico's site agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); without it the embedded default configuration is used.
    #[arg(short, long, env = "PORTICO_CONFIG")]
    config: Option<PathBuf>,
    /// The site to probe, replacing `site_agent.site`.
    #[arg(long)]
    site: Option<String>,
    /// A gslb-dns admin API address to report to, replacing `site_agent.report_to`
    /// (repeatable; tried in order).
    #[arg(long)]
    report_to: Vec<SocketAddr>,
    /// The agent's name in reports (default: the site's name and the process id).
    #[arg(long)]
    name: Option<String>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

fn load(args: &Args) -> anyhow::Result<AgentSetup> {
    let config = portico_client::process::read_config(args.config.as_deref())?;
    let mut settings = config.components.site_agent.clone();
    if !args.report_to.is_empty() {
        settings.report_to = args.report_to.clone();
    }
    let site = args
        .site
        .clone()
        .or_else(|| settings.site.clone())
        .context("no site: set site_agent.site or --site")?;
    if config.deployment.site_by_name(&site).is_none() {
        anyhow::bail!("--site {site:?}: no such site in the configuration");
    }
    if settings.report_to.is_empty() {
        anyhow::bail!("nowhere to report: set site_agent.report_to or --report-to");
    }
    let access_key = settings
        .s3_access_key
        .clone()
        .or_else(|| std::env::var("PORTICO_S3_ACCESS_KEY").ok());
    let secret_key = match &settings.s3_secret_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("site_agent.s3_secret_key_file {path}"))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("PORTICO_S3_SECRET_KEY").ok(),
    };
    let s3_credentials = match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Some(Credentials {
            access_key,
            secret_key,
            session_token: std::env::var("PORTICO_S3_SESSION_TOKEN").ok(),
        }),
        _ => None,
    };
    let api_token = match &settings.token_file {
        Some(path) => Some(
            topology::config::client_token(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("site_agent.token_file {path}"))?,
            )
            .with_context(|| format!("site_agent.token_file {path}: no token in it"))?
            .to_owned(),
        ),
        None => std::env::var("PORTICO_TOKEN").ok(),
    };
    let deployment = Arc::new(config.deployment);
    // Credentials are needed only when this site has members behind an s3 check.
    let site_id = deployment.site_by_name(&site);
    let needs_s3 = deployment.members.iter().any(|m| {
        Some(m.site) == site_id
            && deployment
                .service(m.service)
                .check
                .as_ref()
                .is_some_and(|c| c.kind == topology::CheckKind::S3)
    });
    if needs_s3 && s3_credentials.is_none() {
        anyhow::bail!(
            "s3 checks need credentials: site_agent.s3_access_key and s3_secret_key_file, or PORTICO_S3_ACCESS_KEY and PORTICO_S3_SECRET_KEY"
        );
    }
    let mut options =
        ClientOptions::new(settings.report_to.iter().map(ToString::to_string).collect());
    options.token = api_token;
    options.tls = settings.api_tls.as_ref().map(Into::into);
    options.timeout = settings.report_timeout;
    let api = Arc::new(ApiClient::new(options).context("site_agent.report_to")?);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{site}-agent-{}", std::process::id()));
    topology::wire::accepted_text("--name", &name).map_err(anyhow::Error::msg)?;
    Ok(AgentSetup {
        name,
        site,
        deployment,
        settings,
        s3_credentials,
        api,
        metrics: args.metrics,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    portico_client::process::init_logging("info");
    let setup = match load(&args) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("site-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("site-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let targets = match targets(&setup.deployment, &setup.site) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("site-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let members = targets.len();
    let report_to: Vec<String> = setup
        .settings
        .report_to
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "site-agent for site {}: {members} members, reporting to {}",
        setup.site,
        report_to.join(", ")
    );
    runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            portico_client::process::wait_for_signal().await;
            let _ = stop.send(true);
        });
        run(setup, stopped).await;
    });
    ExitCode::SUCCESS
}
