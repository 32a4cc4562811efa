//! `portico`: the operator's command line, talking to any gslb-dns node's admin API.
//!
//! Human tables by default, `--json` for scripts. Exit codes: 0 done; 1 the API refused or
//! failed the request (or a drill did not converge); 2 bad usage; 3 the API could not be
//! reached.
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Operate a Portico fabric through a gslb-dns node's admin API"
)]
struct Cli {
    /// The admin API to talk to (any gslb-dns node).
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
    /// Start a whole three-site fabric on loopback (see `portico demo --help`).
    Demo(gslb_dns::demo::DemoArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Commands::Demo(args) => gslb_dns::demo::run(args).map_err(|e| Failure(1, format!("{e:#}"))),
        _ => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("portico: {message}");
            ExitCode::from(code)
        }
    }
}

struct Api {
    address: SocketAddr,
    token: Option<String>,
}

impl Api {
    fn new(cli: &Cli) -> Result<Api, Failure> {
        let address = cli
            .api
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Failure(2, format!("--api {:?} is not host:port", cli.api)))?;
        let token = match &cli.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure(2, format!("--token-file {path}: {e}")))
                    .and_then(|text| {
                        topology::config::client_token(&text)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                Failure(2, format!("--token-file {path}: no token in it"))
                            })
                    })?,
            ),
            None => std::env::var("PORTICO_TOKEN").ok(),
        };
        Ok(Api { address, token })
    }

    /// One request; the JSON body of a 2xx answer, else a failure with the API's error.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        wait: Duration,
    ) -> Result<Value, Failure> {
        let unreachable = |e: std::io::Error| {
            Failure(
                3,
                format!("cannot reach the admin API at {}: {e}", self.address),
            )
        };
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(3))
            .map_err(unreachable)?;
        stream.set_read_timeout(Some(wait)).map_err(unreachable)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let authorization = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        let value: Value = serde_json::from_str(&payload).unwrap_or(Value::String(payload.clone()));
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let error = value
                .get("error")
                .and_then(Value::as_str)
                .map_or(payload.clone(), str::to_owned);
            Err(Failure(1, format!("{method} {path}: {status}: {error}")))
        }
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let api = Api::new(cli)?;
    let quick = Duration::from_secs(15);
    match &cli.command {
        Commands::Status => {
            let state = api.call("GET", "/api/v1/state", None, quick)?;
            let store = api.call("GET", "/api/v1/store", None, quick)?;
            if cli.json {
                print_json(&serde_json::json!({ "state": state, "store": store }));
            } else {
                print_status(&state, &store);
            }
        }
        Commands::Members { service, site } => {
            let state = api.call("GET", "/api/v1/state", None, quick)?;
            let members = member_rows(&state, service.as_deref(), site.as_deref());
            if cli.json {
                print_json(&Value::Array(members));
            } else {
                print_members(&members);
            }
        }
        Commands::Explain {
            name,
            client,
            r#type,
            without,
        } => {
            let mut path = format!(
                "/api/v1/explain?name={}&client={}&type={}",
                encode(name),
                encode(client),
                encode(r#type)
            );
            if !without.is_empty() {
                path.push_str(&format!("&without={}", encode(&without.join(","))));
            }
            let explain = api.call("GET", &path, None, quick)?;
            if cli.json {
                print_json(&explain);
            } else {
                print_explain(&explain);
            }
        }
        Commands::Drain(t) => action(&api, cli, "drain", t)?,
        Commands::Undrain(t) => action(&api, cli, "undrain", t)?,
        Commands::Maintenance(t) => action(&api, cli, "maintenance", t)?,
        Commands::ForceDown(t) => action(&api, cli, "force-down", t)?,
        Commands::History { limit } => {
            let history = api.call("GET", "/api/v1/history", None, quick)?;
            let changes: Vec<Value> = history["changes"].as_array().cloned().unwrap_or_default();
            let recent: Vec<Value> = changes.iter().rev().take(*limit).cloned().collect();
            if cli.json {
                print_json(&Value::Array(recent));
            } else {
                let rows: Vec<Vec<String>> = recent
                    .iter()
                    .map(|c| {
                        vec![
                            age(c["at"].as_u64()),
                            text(&c["target"]),
                            text(&c["change"]),
                            text(&c["who"]),
                            text(&c["why"]),
                        ]
                    })
                    .collect();
                table(&["WHEN", "TARGET", "CHANGE", "WHO", "WHY"], &rows);
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
            if mode != "drain" && mode != "fail" {
                return Err(Failure(2, format!("--mode {mode:?}: drain or fail")));
            }
            let body = serde_json::json!({
                "site": site,
                "member": member,
                "mode": mode,
                "service": service,
                "vantages": vantages,
                "timeout_ms": timeout * 1000,
                "why": why,
            });
            let report = api.call(
                "POST",
                "/api/v1/drills?wait=true",
                Some(&body),
                Duration::from_secs(timeout * 3 + 30),
            )?;
            if cli.json {
                print_json(&report);
            } else {
                print!("{}", text(&report["summary"]));
            }
            if report["status"] != "converged" {
                return Err(Failure(
                    1,
                    format!("drill {}: {}", report["id"], text(&report["status"])),
                ));
            }
        }
        Commands::Demo(_) => unreachable!("handled in main"),
    }
    Ok(())
}

fn action(api: &Api, cli: &Cli, action: &str, target: &TargetArgs) -> Result<(), Failure> {
    let path = match target.kind.as_str() {
        "site" => format!("/api/v1/sites/{}/{action}", encode(&target.name)),
        "service" => format!("/api/v1/services/{}/{action}", encode(&target.name)),
        "member" => {
            let (service, node) = target.name.split_once('/').ok_or_else(|| {
                Failure(
                    2,
                    format!("member {:?}: expected SERVICE/NODE", target.name),
                )
            })?;
            format!(
                "/api/v1/members/{}/{}/{action}",
                encode(service),
                encode(node)
            )
        }
        other => {
            return Err(Failure(
                2,
                format!("{other:?}: expected site, member or service"),
            ));
        }
    };
    let mut body = serde_json::Map::new();
    if let Some(who) = &target.who {
        body.insert("who".into(), who.clone().into());
    }
    if let Some(why) = &target.why {
        body.insert("why".into(), why.clone().into());
    }
    let result = api.call(
        "POST",
        &path,
        Some(&Value::Object(body)),
        Duration::from_secs(15),
    )?;
    if cli.json {
        print_json(&result);
    } else {
        println!(
            "{} {}: {} (store index {})",
            target.kind,
            target.name,
            text(&result["admin"]),
            result["index"]
        );
    }
    Ok(())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "3s ago", "never".
fn age(at_ms: Option<u64>) -> String {
    match at_ms {
        None => "never".into(),
        Some(at) => {
            let seconds = now_ms().saturating_sub(at) / 1000;
            match seconds {
                0..120 => format!("{seconds}s ago"),
                120..7200 => format!("{}m ago", seconds / 60),
                _ => format!("{}h ago", seconds / 3600),
            }
        }
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn member_rows(state: &Value, service: Option<&str>, site: Option<&str>) -> Vec<Value> {
    let mut rows = Vec::new();
    for s in state["services"].as_array().into_iter().flatten() {
        if service.is_some_and(|name| s["name"] != name) {
            continue;
        }
        for m in s["members"].as_array().into_iter().flatten() {
            if site.is_some_and(|name| m["site"] != name) {
                continue;
            }
            let mut row = m.clone();
            row["service"] = s["name"].clone();
            rows.push(row);
        }
    }
    rows
}

fn print_members(rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                text(&m["service"]),
                text(&m["node"]),
                text(&m["site"]),
                text(&m["address"]),
                text(&m["health"]),
                text(&m["admin"]),
                format!("{}%", m["weight_percent"]),
                m["latency_us"]
                    .as_u64()
                    .map_or("-".into(), |us| format!("{:.1}ms", us as f64 / 1000.0)),
                if m["eligible"] == true {
                    "yes".into()
                } else {
                    format!("no: {}", text(&m["ineligible"]))
                },
            ]
        })
        .collect();
    table(
        &[
            "SERVICE", "MEMBER", "SITE", "ADDRESS", "HEALTH", "ADMIN", "WEIGHT", "LATENCY",
            "ELIGIBLE",
        ],
        &cells,
    );
}

fn print_status(state: &Value, store: &Value) {
    let node = &store["node"];
    println!(
        "zone {}  store: node {} {} (leader {}, term {}, applied {}){}",
        text(&state["zone"]),
        node["id"],
        text(&node["role"]),
        node["leader"],
        node["term"],
        node["applied"],
        if state["degraded"] == true {
            "  DEGRADED: answering from the last known state"
        } else {
            ""
        }
    );
    println!();
    let sites: Vec<Vec<String>> = state["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|site| {
            let name = text(&site["name"]);
            let members: Vec<&Value> = state["services"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["members"].as_array().into_iter().flatten())
                .filter(|m| m["site"] == site["name"])
                .collect();
            let eligible = members.iter().filter(|m| m["eligible"] == true).count();
            vec![
                name,
                text(&site["admin"]),
                format!("{eligible}/{}", members.len()),
                age(site["last_report_ms"].as_u64()),
            ]
        })
        .collect();
    table(&["SITE", "ADMIN", "ELIGIBLE", "LAST REPORT"], &sites);
    println!();
    let services: Vec<Vec<String>> = state["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let members = s["members"].as_array().cloned().unwrap_or_default();
            let eligible = members.iter().filter(|m| m["eligible"] == true).count();
            vec![
                text(&s["name"]),
                text(&s["fqdn"]),
                text(&s["policy"]),
                format!("{}s", s["ttl"]),
                format!("{eligible}/{}", members.len()),
            ]
        })
        .collect();
    table(&["SERVICE", "NAME", "POLICY", "TTL", "ELIGIBLE"], &services);
}

fn print_explain(explain: &Value) {
    let e = &explain["explain"];
    let outcome = &e["outcome"];
    println!(
        "client {} (located by {}; ECS scope /{})",
        text(&explain["client"]),
        text(&explain["located_by"]),
        explain["ecs_scope"]
    );
    println!(
        "policy {}, order by {}; answer: {} {}",
        text(&e["policy"]),
        text(&e["order_source"]),
        text(&outcome["kind"]),
        text(&outcome["site"])
    );
    if let Some(addresses) = e["answers"].as_array() {
        let list: Vec<String> = addresses.iter().map(text).collect();
        println!("addresses: {}", list.join(" "));
    }
    for site in e["sites"].as_array().into_iter().flatten() {
        println!(
            "  #{} {} {} eligible={}",
            site["rank"],
            text(&site["site"]),
            if site["available"] == true {
                "available"
            } else {
                "unavailable"
            },
            site["eligible"]
        );
        for m in site["members"].as_array().into_iter().flatten() {
            if !m["ineligible"].is_null() {
                println!(
                    "      {} {}: {}",
                    text(&m["node"]),
                    text(&m["address"]),
                    text(&m["ineligible"])
                );
            }
        }
    }
}
