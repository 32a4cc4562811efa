//! `portico`: the operator's command line, talking to any gslb-dns node's admin API through
//! the typed API client (the next node is tried when one cannot be reached), and
//! `portico demo`, a whole fabric in one process.
//!
//! Human tables by default, `--json` for scripts. Exit codes: 0 done; 1 the API refused or
//! failed the request (a configuration that does not validate, a drill that did not
//! converge); 2 bad usage; 3 no API could be reached.
#![allow(clippy::print_stdout)]

/// `println!` that ends the program quietly on a closed pipe ([`show::say`]).
macro_rules! say {
    ($($arg:tt)*) => { $crate::show::say(format_args!($($arg)*)) };
}

mod demo;
mod show;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portico_client::{ApiClient, ClientError, ClientOptions};
use topology::wire::Target;
use topology::wire::config::{ConfigApply, ConfigOutcome, ConfigRollback};
use topology::wire::drill::{DrillMode, DrillRequest, DrillStatus};
use topology::wire::views::ActionRequest;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Operate a Portico fabric through a gslb-dns node's admin API"
)]
struct Cli {
    /// The admin API to talk to: any gslb-dns node, or several separated by commas (tried
    /// in order when one cannot be reached).
    #[arg(
        long,
        global = true,
        env = "PORTICO_API",
        default_value = "127.0.0.1:8053"
    )]
    api: String,
    /// A file holding a bearer token (first line); or set PORTICO_TOKEN.
    #[arg(long, global = true, env = "PORTICO_TOKEN_FILE")]
    token_file: Option<String>,
    /// The CA that signs the API's certificate: the API is then reached over HTTPS.
    #[arg(long, global = true, env = "PORTICO_CA")]
    ca: Option<String>,
    /// A client certificate proving an identity (with --key; needs --ca).
    #[arg(long, global = true, env = "PORTICO_CERT", requires = "key")]
    cert: Option<String>,
    /// The client certificate's key.
    #[arg(long, global = true, env = "PORTICO_KEY", requires = "cert")]
    key: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Sites, the store, and how many members of each service can take traffic.
    Status,
    /// Every member: health, admin state, weight, latency, eligibility.
    Members {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        site: Option<String>,
    },
    /// Why a client gets its answer.
    Explain {
        /// The name (`s3` or `s3.storage.example.`).
        name: String,
        /// The client address or subnet (as ECS would carry it).
        #[arg(long)]
        client: String,
        /// A or AAAA.
        #[arg(long, default_value = "A")]
        r#type: String,
        /// What-if: as if these were down (`site:iad`, `member:s3/fra-1`; repeatable).
        #[arg(long)]
        without: Vec<String>,
    },
    /// Stop new answers for a site, a member (`service/node`) or a service.
    Drain(TargetArgs),
    /// Undo drain, maintenance or force-down.
    Undrain(TargetArgs),
    /// Put a target in maintenance.
    Maintenance(TargetArgs),
    /// Mark a target down whatever its probes say.
    ForceDown(TargetArgs),
    /// Recent state changes: who, what, why.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run a DR drill: drain (or fail) a site or member, measure how fast every node's answers
    /// move, restore it, print the report.
    Drill {
        /// The site.
        site: String,
        /// Only this member of the site (`service/node`).
        #[arg(long)]
        member: Option<String>,
        /// drain or fail.
        #[arg(long, default_value = "drain")]
        mode: String,
        /// The service to watch (default: all with members at the site).
        #[arg(long)]
        service: Option<String>,
        /// Client subnets to ask as (repeatable; default: one per site).
        #[arg(long = "vantage")]
        vantages: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        #[arg(long)]
        why: Option<String>,
    },
    /// The replicated deployment (zone, sites, services, members): show it, compare a file
    /// with it, apply a file, its versions, roll back.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start a whole three-site fabric on loopback (see `portico demo --help`).
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// The deployment document the answers come from, and its version.
    Show,
    /// What applying FILE would change: names added, removed and changed, and for each
    /// client region whether its answer moves. Changes nothing.
    Diff { file: String },
    /// Make FILE's deployment (its `[zone]`, `[[site]]` and `[[service]]` tables) the
    /// store's: validated, then one replicated change, applied at one log index on every
    /// node.
    Apply {
        file: String,
        /// Why (kept in the history).
        #[arg(long)]
        why: String,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse unless the store is at this version (what `diff` compared against).
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// The versions the store keeps: who, why, when, what changed.
    History,
    /// Apply the document of a kept VERSION again, as a new version.
    Rollback {
        version: u64,
        #[arg(long)]
        why: String,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// `site NAME`, `member SERVICE/NODE` or `service NAME`.
    kind: String,
    name: String,
    #[arg(long)]
    why: Option<String>,
    #[arg(long)]
    who: Option<String>,
}

/// Why the command failed, and its exit code.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let code = match &error {
            ClientError::Unreachable { .. } => 3,
            ClientError::NoNodes | ClientError::BadAddress(_) => 2,
            _ => 1,
        };
        let message = match &error {
            ClientError::Refused { body, .. } if body.key.is_some() => format!(
                "{error}\n  key: {}{}",
                body.key.as_deref().unwrap_or(""),
                body.line.map(|l| format!(", line {l}")).unwrap_or_default()
            ),
            _ => error.to_string(),
        };
        Failure(code, message)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Commands::Demo(args) => demo::run(args).map_err(|e| Failure(1, format!("{e:#}"))),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure(1, format!("cannot start the runtime: {e}")))
            .and_then(|runtime| runtime.block_on(run(&cli))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("portico: {message}");
            ExitCode::from(code)
        }
    }
}

fn client(cli: &Cli) -> Result<ApiClient, Failure> {
    let token = match &cli.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Failure(2, format!("--token-file {path}: {e}")))
                .and_then(|text| {
                    topology::config::client_token(&text)
                        .map(str::to_owned)
                        .ok_or_else(|| Failure(2, format!("--token-file {path}: no token in it")))
                })?,
        ),
        None => std::env::var("PORTICO_TOKEN").ok(),
    };
    let nodes = cli
        .api
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let mut options = ClientOptions::new(nodes);
    options.token = token;
    options.tls = match (&cli.ca, &cli.cert, &cli.key) {
        (None, None, None) => None,
        (None, _, _) => return Err(Failure(2, "--cert needs --ca (the API's CA)".into())),
        (Some(ca), cert, key) => Some(portico_client::tls::ClientTls {
            ca: ca.into(),
            identity: cert
                .as_ref()
                .zip(key.as_ref())
                .map(|(c, k)| (c.into(), k.into())),
        }),
    };
    options.connect_timeout = Duration::from_secs(3);
    options.timeout = Duration::from_secs(15);
    Ok(ApiClient::new(options)?)
}

fn read_file(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure(2, format!("{path}: {e}")))
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let api = client(cli)?;
    match &cli.command {
        Commands::Status => {
            let state = api.state().await?;
            let store = api.store_status().await?;
            if cli.json {
                show::json(&serde_json::json!({ "state": state, "store": store }));
            } else {
                show::status(&state, &store);
            }
        }
        Commands::Members { service, site } => {
            let state = api.state().await?;
            let rows = show::member_rows(&state, service.as_deref(), site.as_deref());
            if cli.json {
                show::json(&rows);
            } else {
                show::members(&rows);
            }
        }
        Commands::Explain {
            name,
            client,
            r#type,
            without,
        } => {
            let without = (!without.is_empty()).then(|| without.join(","));
            let explain = api
                .explain(name, client, r#type, without.as_deref())
                .await?;
            if cli.json {
                show::json(&explain);
            } else {
                show::explain(&explain);
            }
        }
        Commands::Drain(t) => action(&api, cli, "drain", t).await?,
        Commands::Undrain(t) => action(&api, cli, "undrain", t).await?,
        Commands::Maintenance(t) => action(&api, cli, "maintenance", t).await?,
        Commands::ForceDown(t) => action(&api, cli, "force-down", t).await?,
        Commands::History { limit } => {
            let history = api.history().await?;
            let recent: Vec<_> = history.changes.iter().rev().take(*limit).collect();
            if cli.json {
                show::json(&recent);
            } else {
                show::history(&recent);
            }
        }
        Commands::Drill {
            site,
            member,
            mode,
            service,
            vantages,
            timeout,
            why,
        } => {
            let mode = match mode.as_str() {
                "drain" => DrillMode::Drain,
                "fail" => DrillMode::Fail,
                other => return Err(Failure(2, format!("--mode {other:?}: drain or fail"))),
            };
            let vantages = vantages
                .iter()
                .map(|v| {
                    v.parse()
                        .map_err(|_| Failure(2, format!("--vantage {v:?} is not a subnet")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let request = DrillRequest {
                site: site.clone(),
                member: member.clone(),
                mode: Some(mode),
                service: service.clone(),
                vantages: Some(vantages),
                timeout_ms: Some(timeout * 1000),
                why: why.clone(),
                ..DrillRequest::default()
            };
            let report = api
                .drill(&request, Duration::from_secs(timeout * 3 + 30))
                .await?;
            if cli.json {
                show::json(&report);
            } else {
                say!("{}", report.summary.trim_end());
            }
            if report.status != DrillStatus::Converged {
                return Err(Failure(
                    1,
                    format!("drill {}: {:?}", report.id, report.status).to_lowercase(),
                ));
            }
        }
        Commands::Config(command) => config(&api, cli, command).await?,
        Commands::Demo(_) => unreachable!("handled in main"),
    }
    Ok(())
}

async fn config(api: &ApiClient, cli: &Cli, command: &ConfigCommand) -> Result<(), Failure> {
    match command {
        ConfigCommand::Show => {
            let config = api.config().await?;
            if cli.json {
                show::json(&config);
            } else {
                show::config(&config);
            }
        }
        ConfigCommand::Diff { file } => {
            let apply = ConfigApply {
                document: read_file(file)?,
                expect_version: None,
                why: "diff".into(),
                who: None,
            };
            let outcome = api.config_apply(&apply, true).await?;
            print_outcome(cli, &outcome);
        }
        ConfigCommand::Apply {
            file,
            why,
            dry_run,
            expect_version,
        } => {
            let apply = ConfigApply {
                document: read_file(file)?,
                expect_version: *expect_version,
                why: why.clone(),
                who: None,
            };
            let outcome = api.config_apply(&apply, *dry_run).await?;
            print_outcome(cli, &outcome);
        }
        ConfigCommand::History => {
            let history = api.config_history().await?;
            if cli.json {
                show::json(&history);
            } else {
                show::config_history(&history);
            }
        }
        ConfigCommand::Rollback {
            version,
            why,
            dry_run,
        } => {
            let rollback = ConfigRollback {
                version: *version,
                why: why.clone(),
                who: None,
            };
            let outcome = api.config_rollback(&rollback, *dry_run).await?;
            print_outcome(cli, &outcome);
        }
    }
    Ok(())
}

fn print_outcome(cli: &Cli, outcome: &ConfigOutcome) {
    if cli.json {
        show::json(outcome);
    } else {
        show::outcome(outcome);
    }
}

async fn action(
    api: &ApiClient,
    cli: &Cli,
    action: &str,
    target: &TargetArgs,
) -> Result<(), Failure> {
    let parsed = match target.kind.as_str() {
        "site" => Target::Site {
            site: target.name.clone(),
        },
        "service" => Target::Service {
            service: target.name.clone(),
        },
        "member" => {
            let (service, node) = target.name.split_once('/').ok_or_else(|| {
                Failure(
                    2,
                    format!("member {:?}: expected SERVICE/NODE", target.name),
                )
            })?;
            Target::Member {
                service: service.into(),
                node: node.into(),
            }
        }
        other => {
            return Err(Failure(
                2,
                format!("{other:?}: expected site, member or service"),
            ));
        }
    };
    let request = ActionRequest {
        who: target.who.clone(),
        why: target.why.clone(),
    };
    let done = api.action(&parsed, action, &request).await?;
    if cli.json {
        show::json(&done);
    } else {
        say!(
            "{} {}: {} (store index {})",
            target.kind,
            target.name,
            show::admin(done.admin),
            done.index
        );
    }
    Ok(())
}
