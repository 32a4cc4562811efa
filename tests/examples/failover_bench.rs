//! Failover benchmark: three real gslb-dns processes (the raft store, on 127.0.{1,2,3}.1),
//! a site agent per site with the documented default check (s3, interval 500 ms, timeout
//! 400 ms, rise 2, fall 2, fall_hard 1, fast_interval 100 ms, watch on) and real S3 nodes.
//! `KILLS` times each:
//!
//! - **hard**: the S3 node `fra-1` is killed (SIGKILL: connections refused), then
//!   restarted on the same address;
//! - **hang**: `fra-1` is stopped (SIGSTOP: the kernel still accepts, nothing answers),
//!   then continued;
//! - **proxied**: a hard kill while clients (16 addresses) send a request every 10 ms through fra's S3
//!   proxy: the proxy's ejection report (passive health) races the agent's probes;
//! - **site**: the whole of fra at once: its agent (SIGKILL) and both its S3 nodes. With
//!   its agent silent, the store asks iad's and sin's agents to probe fra's members across
//!   sites; nobody reaches them, so fra leaves when its telemetry turns stale (`stale_after`,
//!   2 s at the default check), with no member ever reported down by its own agent. Timed
//!   until the last node answers a fra client with neither fra member. (gdnsd's `multifo`
//!   over fra's two members fails open when both are down, so it has no figure here.)
//!
//! Measured: from the kill to the moment the last of the three DNS nodes stops answering
//! `fra-1` to a fra client (each node asked every 5 ms over UDP); p50, p95 and max. Between
//! kills the member must be back in every node's answers.
//!
//! Side by side, on the same kills: gdnsd (when installed; `run.sh` installs it) serving the
//! same name from `multifo` over fra-1 and fra-2 with its fastest documented monitoring
//! (`http_status`, `interval` 2 s, its minimum, `timeout` 1 s, `down_thresh` and
//! `up_thresh` 1), asked the same way.
//!
//! Run with `bench/failover/run.sh` (release build). Knobs: KILLS (default 20), MODES (a
//! comma-separated subset of `hard,hang,proxied,site`, all by default), WATCH (`false`
//! turns the agents' watch connections off: the check's `watch = false`), OUTLIER_MS (600,
//! and 1.5 s at least for hangs: a kill slower than this prints the store's history of the
//! member around it and, but for hangs, the last lines of fra's agent's debug log).
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portico_client::dns::{Question, ask};
use tests::{ProxyNode, Running, S3Node, TempDir, free_port, runtime};

/// gdnsd serving `s3.storage.example` from `multifo` over the fra members on `port`, with
/// its fastest monitoring; killed on drop.
struct Gdnsd {
    dns: SocketAddr,
    _running: Running,
    _dir: TempDir,
}

impl Gdnsd {
    fn start(port: u16) -> Option<Gdnsd> {
        if std::process::Command::new("gdnsd")
            .arg("-h")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_err()
        {
            println!("gdnsd is not installed (bench/failover/run.sh installs it): no peer figures");
            return None;
        }
        let dir = TempDir::new("gdnsd");
        let dns: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("an address");
        for sub in ["zones", "run", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("gdnsd directories");
        }
        let root = dir.path().display();
        dir.write(
            "config",
            format!(
                "options => {{ listen => [ {dns} ], min_ttl => 0, run_dir => {root}/run, state_dir => {root}/state }}\n\
                 service_types => {{ s3http => {{ plugin => http_status, port => {port}, url_path => /, \
                 ok_codes => [ 200, 403 ], up_thresh => 1, ok_thresh => 1, down_thresh => 1, interval => 2, timeout => 1 }} }}\n\
                 plugins => {{ multifo => {{ s3 => {{ service_types => [ s3http ], fra1 => 127.0.10.1, fra2 => 127.0.10.2 }} }} }}\n"
            ),
        );
        dir.write(
            "zones/storage.example",
            "$TTL 1\n@ 3600 SOA ns1 hostmaster 1 3600 600 86400 1\n@ 3600 NS ns1\nns1 3600 A 127.0.0.1\ns3 1/1 DYNA multifo!s3\n",
        );
        let log = std::fs::File::create(dir.path().join("gdnsd.log")).expect("gdnsd log");
        let child = std::process::Command::new("gdnsd")
            .arg("-c")
            .arg(dir.path())
            .args(["-f", "start"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start gdnsd");
        Some(Gdnsd {
            dns,
            _running: Running(child),
            _dir: dir,
        })
    }
}

/// Clients of the proxy at `proxy`: a request on a new connection every 10 ms until
/// `stop`, each from the next of 16 source addresses (the proxy keeps a client on its member
/// by address, so one address would only ever use one of fra's two members).
fn client(proxy: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let connect = move |source: u8| -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::from(([127, 0, 11, source], 0)).into())?;
        socket.connect_timeout(&proxy.into(), Duration::from_secs(1))?;
        Ok(socket.into())
    };
    std::thread::spawn(move || {
        let mut sent = 0u32;
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            if let Ok(mut stream) = connect(1 + (sent % 16) as u8) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.write_all(
                    b"GET /bucket/object HTTP/1.1\r\nHost: s3\r\nConnection: close\r\n\r\n",
                );
                let mut reply = Vec::new();
                let _ = stream.read_to_end(&mut reply);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What `dns` answers a fra client for the service (empty on no answer).
async fn answer(dns: SocketAddr) -> Vec<IpAddr> {
    let question = Question {
        name: "s3.storage.example.".into(),
        aaaa: false,
        subnet: Some("127.1.0.0/24".parse().expect("a subnet")),
        recursive: false,
    };
    match ask(dns, &question, Duration::from_millis(200)).await {
        Ok(answer) => answer.addresses,
        Err(_) => Vec::new(),
    }
}

/// Waits until every node's answer satisfies `done` (asked in turn, each until it does);
/// the time it took, or `None` after `limit`.
async fn until_every(
    nodes: &[SocketAddr],
    limit: Duration,
    done: impl Fn(&[IpAddr]) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    let mut finished = vec![false; nodes.len()];
    while started.elapsed() < limit {
        for (i, dns) in nodes.iter().enumerate() {
            if !finished[i] {
                let answers = answer(*dns).await;
                finished[i] = !answers.is_empty() && done(&answers);
            }
        }
        if finished.iter().all(|d| *d) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Waits until every node's answer does (`present`) or does not contain `address`.
async fn until_all(
    nodes: &[SocketAddr],
    address: IpAddr,
    present: bool,
    limit: Duration,
) -> Option<Duration> {
    until_every(nodes, limit, |answers| {
        answers.contains(&address) == present
    })
    .await
}

/// Waits until no node's answer contains any of `addresses`.
async fn until_none(
    nodes: &[SocketAddr],
    addresses: &[IpAddr],
    limit: Duration,
) -> Option<Duration> {
    until_every(nodes, limit, |answers| {
        !answers.iter().any(|a| addresses.contains(a))
    })
    .await
}

/// Prints what the history says of `fra-1` around a slow kill (times from the kill), to
/// tell a late verdict from a slow apply.
/// With `agent_log`, also the last lines of fra's agent's debug log.
fn outlier(
    admin: SocketAddr,
    killed_ms: i64,
    took: Duration,
    kill: usize,
    agent_log: Option<&std::path::Path>,
) {
    let (_, body) = tests::http(admin, "GET", "/api/v1/history", None);
    let history: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let changes: Vec<String> = history["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["target"] == "member s3/fra-1")
        .filter_map(|c| {
            let at = c["at"].as_i64()? - killed_ms;
            (at > -2000).then(|| format!("{at:+} ms {} ({})", c["change"], c["who"]))
        })
        .collect();
    println!(
        "  outlier {:.3}s (kill {kill}): {changes:?}",
        took.as_secs_f64()
    );
    let Some(agent_log) = agent_log else {
        return;
    };
    let log = std::fs::read_to_string(agent_log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines[lines.len().saturating_sub(12)..] {
        println!("    fra agent: {line}");
    }
}

fn main() {
    let kills = tests::env_number("KILLS", 20) as usize;
    // fra's members share a port, as gdnsd's per-port health checks want them.
    let port = free_port("127.0.10.1");
    let on = |ip: &str| format!("{ip}:{port}").parse().expect("an address");
    let mut s3 = vec![
        ("fra", "fra-1", S3Node::start_at(on("127.0.10.1"))),
        ("fra", "fra-2", S3Node::start_at(on("127.0.10.2"))),
        ("iad", "iad-1", S3Node::start("127.0.20.1")),
        ("sin", "sin-1", S3Node::start("127.0.30.1")),
    ];
    let members: Vec<(&str, &str, SocketAddr)> =
        s3.iter().map(|(s, n, node)| (*s, *n, node.addr)).collect();
    // WATCH=false turns the agents' watch connections off: what a host that dies (rather
    // than a process) looks like, found by the probes alone (or the proxy's report).
    let watch = std::env::var("WATCH").map_or(true, |v| v != "false");
    let base = tests::three_site_deployment(
        &members,
        &format!(r#"{{ kind = "s3", bucket = "bucket", watch = {watch} }}"#),
    );
    let nodes = tests::three_node_store(&base);
    let config_path = nodes[0].dir.write("agents.toml", &base);
    // fra's agent logs at debug level to a file: an outlier prints what it did around
    // the kill.
    let agent_log = nodes[0].dir.path().join("fra-agent.log");
    let agent = |i: usize, site: &str| {
        let order: Vec<SocketAddr> = (0..3).map(|j| nodes[(i + j) % 3].admin.unwrap()).collect();
        if site != "fra" {
            return tests::site_agent(&config_path, site, &order, &[]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&agent_log)
            .expect("the agent's log file");
        tests::site_agent_logging(
            &config_path,
            site,
            &order,
            &[],
            "warn,site_agent=debug",
            log.into(),
        )
    };
    let mut agents: Vec<Option<Running>> = ["fra", "iad", "sin"]
        .iter()
        .enumerate()
        .map(|(i, site)| Some(agent(i, site)))
        .collect();
    let dns: Vec<SocketAddr> = nodes.iter().map(|n| n.dns).collect();
    let admin = nodes[0].admin.expect("the admin API");
    let proxy: SocketAddr = format!("127.0.10.100:{}", free_port("127.0.10.100"))
        .parse()
        .expect("an address");
    let state_from: Vec<String> = nodes
        .iter()
        .map(|n| format!("\"{}\"", n.admin.unwrap()))
        .collect();
    let _proxy = ProxyNode::start(
        &format!(
            "{base}\n[proxy]\nsite = \"fra\"\nstate_from = [{}]\nrtt_report_interval = \"0s\"\n\n\
             [[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{proxy}\"\nservice = \"s3\"\n",
            state_from.join(", ")
        ),
        1,
        &[],
    );
    let victim: IpAddr = s3[0].2.addr.ip();
    let rt = runtime();
    rt.block_on(until_all(&dns, victim, true, Duration::from_secs(30)))
        .expect("fra-1 never answered on every node");
    // Steady state first: a leader known to every node and every member up by its own
    // agent's verdict (the first answers come before the first reports, and the first
    // report may meet an election still running).
    let settled = Instant::now();
    while !nodes.iter().all(|node| {
        let admin = node.admin.expect("the admin API");
        let json = |path| {
            serde_json::from_str::<serde_json::Value>(&tests::http(admin, "GET", path, None).1)
                .unwrap_or_default()
        };
        let state = json("/api/v1/state");
        json("/api/v1/store")["node"]["leader"]
            .as_u64()
            .unwrap_or(0)
            != 0
            && state["services"][0]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 4 && m.iter().all(|m| m["health"] == "up"))
    }) {
        assert!(
            settled.elapsed() < Duration::from_secs(30),
            "the store never settled: a leader and every member up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let peer = Gdnsd::start(port);
    let peer_dns: Vec<SocketAddr> = peer.iter().map(|p| p.dns).collect();
    rt.block_on(until_all(&peer_dns, victim, true, Duration::from_secs(30)))
        .expect("gdnsd never answered fra-1");
    println!(
        "failover bench: 3 gslb-dns nodes, default s3 check (watch = {watch}), {kills} kills each; \
         kill -> the last node stops answering fra-1"
    );
    let fra: Vec<IpAddr> = vec![s3[0].2.addr.ip(), s3[1].2.addr.ip()];
    // A kill slower than this prints what the history and fra's agent say of it.
    let outlier_after = Duration::from_millis(tests::env_number("OUTLIER_MS", 600));
    let modes = std::env::var("MODES").unwrap_or_else(|_| "hard,hang,proxied,site".into());
    for mode in modes.split(',').map(str::trim) {
        assert!(
            ["hard", "hang", "proxied", "site"].contains(&mode),
            "MODES names hard, hang, proxied and site, not {mode:?}"
        );
        let mut times = Vec::new();
        let mut missed = 0;
        let mut peer_times = Vec::new();
        let mut peer_missed = 0;
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = (mode == "proxied").then(|| client(proxy, stop.clone()));
        for _ in 0..kills {
            // Let the member settle (rise) and the schedule drift between runs.
            std::thread::sleep(Duration::from_millis(300 + (times.len() as u64 * 37) % 500));
            let killed_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            match mode {
                "hang" => s3[0].2.signal("-STOP"),
                "site" => {
                    drop(agents[0].take());
                    s3[0].2.kill();
                    s3[1].2.kill();
                }
                _ => s3[0].2.kill(),
            }
            let (ours, theirs) = rt.block_on(async {
                if mode == "site" {
                    (until_none(&dns, &fra, Duration::from_secs(10)).await, None)
                } else {
                    tokio::join!(
                        until_all(&dns, victim, false, Duration::from_secs(10)),
                        until_all(&peer_dns, victim, false, Duration::from_secs(10)),
                    )
                }
            });
            if !peer_dns.is_empty() && mode != "site" {
                match theirs {
                    Some(took) => peer_times.push(took),
                    None => peer_missed += 1,
                }
            }
            match ours {
                // Both were asked concurrently from the kill on: each its own time.
                Some(took) => {
                    times.push(took);
                    // A hang takes its timeouts (about a second) by design.
                    let slow = if mode == "hang" {
                        outlier_after.max(Duration::from_millis(1500))
                    } else {
                        outlier_after
                    };
                    if took > slow && mode != "site" {
                        // A hang's outlier is its timeouts: only its history.
                        let log = (mode != "hang").then_some(agent_log.as_path());
                        outlier(admin, killed_ms, took, times.len(), log);
                    }
                }
                None => missed += 1,
            }
            match mode {
                "hang" => s3[0].2.signal("-CONT"),
                "site" => {
                    s3[0].2.restart();
                    s3[1].2.restart();
                    agents[0] = Some(agent(0, "fra"));
                }
                _ => s3[0].2.restart(),
            }
            rt.block_on(until_all(&dns, victim, true, Duration::from_secs(30)))
                .expect("fra-1 never came back on every node");
            rt.block_on(until_all(&peer_dns, victim, true, Duration::from_secs(30)))
                .expect("fra-1 never came back in gdnsd's answers");
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(traffic) = traffic {
            let _ = traffic.join();
        }
        times.sort();
        println!(
            "{mode:<7} n={} p50={:.3}s p95={:.3}s max={:.3}s missed={missed}",
            times.len(),
            percentile(&times, 0.5).as_secs_f64(),
            percentile(&times, 0.95).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64(),
        );
        if !peer_dns.is_empty() && mode != "site" {
            peer_times.sort();
            println!(
                "{:<7} n={} p50={:.3}s p95={:.3}s max={:.3}s missed={peer_missed}  (gdnsd, same kills)",
                "",
                peer_times.len(),
                percentile(&peer_times, 0.5).as_secs_f64(),
                percentile(&peer_times, 0.95).as_secs_f64(),
                peer_times.last().copied().unwrap_or_default().as_secs_f64(),
            );
        }
    }
    drop(s3.drain(..));
}
