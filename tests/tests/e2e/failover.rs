//! Failover end to end: three sites, each with a gslb-dns node (together the raft store),
//! a site agent and two real S3 nodes on the site's own 127.0.N.x addresses. Kill one S3
//! node and measure until no gslb-dns node answers it; stop a whole site's agent: the
//! other sites' agents keep it in answers while they reach its storage, and it leaves once
//! nobody does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tests::{DnsNode, S3Node, assert_eventually, free_port};

use crate::cluster::store_section;

use tests::Running as Agent;

/// The three-site deployment with the failover tests' check.
fn config(members: &[(&str, &str, SocketAddr)]) -> String {
    tests::three_site_deployment(
        members,
        r#"{ kind = "s3", interval = "500ms", timeout = "400ms", rise = 2, fall = 2, bucket = "bucket" }"#,
    )
}

/// Polls every node's answer for a fra client until every node answers without `gone`.
fn time_until_gone(nodes: &[DnsNode], gone: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let answers: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]))
            .collect();
        if answers
            .iter()
            .all(|a| !a.is_empty() && !a.iter().any(|x| x == gone))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{gone} still answered after {limit:?}: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every node answers a fra client with exactly `expected` (allowing a moment to settle).
fn all_answer(nodes: &[DnsNode], expected: &[&str]) {
    assert_eventually!(
        Duration::from_secs(3),
        nodes
            .iter()
            .all(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]) == expected),
        "not every node answers {expected:?}: {:?}",
        nodes
            .iter()
            .map(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn node_death_and_a_silent_site_leave_every_answer() {
    let mut s3: Vec<(String, String, S3Node)> = Vec::new();
    for (site, n) in [("fra", 10), ("iad", 20), ("sin", 30)] {
        for i in 1..=2 {
            s3.push((
                site.into(),
                format!("{site}-{i}"),
                S3Node::start(&format!("127.0.{n}.{i}")),
            ));
        }
    }
    let members: Vec<(&str, &str, SocketAddr)> = s3
        .iter()
        .map(|(s, n, node)| (s.as_str(), n.as_str(), node.addr))
        .collect();
    let base = config(&members);
    let raft: Vec<(u64, SocketAddr, bool)> = (1..=3u64)
        .map(|i| {
            let ip = format!("127.0.{i}.1");
            (
                i,
                format!("{ip}:{}", free_port(&ip)).parse().unwrap(),
                false,
            )
        })
        .collect();
    let nodes: Vec<DnsNode> = (1..=3u64)
        .map(|id| {
            let ip = format!("127.0.{id}.1");
            DnsNode::start_with(
                Some(&format!("{base}{}", store_section(id, &raft))),
                &[
                    "--listen",
                    &format!("{ip}:0"),
                    "--admin",
                    &format!("{ip}:0"),
                ],
            )
        })
        .collect();
    let config_path = nodes[0].dir.write("agents.toml", &base);
    let metrics_port = free_port("127.0.0.1");
    let mut agents: Vec<Agent> = ["fra", "iad", "sin"]
        .iter()
        .enumerate()
        .map(|(i, site)| {
            // Each agent reports to its own site's node first, then the others.
            let order: Vec<SocketAddr> =
                (0..3).map(|j| nodes[(i + j) % 3].admin.unwrap()).collect();
            let metrics = format!("127.0.0.1:{metrics_port}");
            let extra: &[&str] = if *site == "fra" {
                &["--metrics", &metrics]
            } else {
                &[]
            };
            tests::site_agent(&config_path, site, &order, extra)
        })
        .collect();
    let fra = ["127.0.10.1", "127.0.10.2"];
    assert_eventually!(
        Duration::from_secs(15),
        nodes
            .iter()
            .all(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]) == fra),
        "agents' reports never made fra's members answer everywhere: {:?}",
        nodes
            .iter()
            .map(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]))
            .collect::<Vec<_>>()
    );
    // A node dies.
    s3[0].2.kill();
    let node_death = time_until_gone(&nodes, "127.0.10.1", Duration::from_secs(5));
    eprintln!("failover: S3 node killed -> out of every gslb-dns answer in {node_death:?}");
    all_answer(&nodes, &["127.0.10.2"]);
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (_, metrics) = tests::http(metrics_addr, "GET", "/metrics", None);
    assert!(
        metrics.contains("portico_agent_member_up{service=\"s3\",node=\"fra-1\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portico_agent_member_up{service=\"s3\",node=\"fra-2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"refused\""),
        "failures by reason: {metrics}"
    );
    // fra's agent goes silent while its storage serves: the store asks iad's and sin's
    // agents to probe fra's members across sites, and fra keeps its clients past
    // stale_after (2 s: 4 intervals), flagged, on every node.
    drop(agents.remove(0));
    let silenced = Instant::now();
    while silenced.elapsed() < Duration::from_secs(6) {
        for node in &nodes {
            let answer = node.short(&["-b", "127.1.0.9", "s3.storage.example"]);
            assert_eq!(
                answer,
                ["127.0.10.2"],
                "{:?} after fra's agent stopped: a site whose members answer from the other sites stays",
                silenced.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in &nodes {
        let state = node.get_json("/api/v1/state");
        let member = state["services"][0]["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["node"] == "fra-2")
            .expect("fra-2 in the state view")
            .clone();
        assert_eq!(member["eligible"], true, "{member}");
        assert_eq!(
            member["note"], "telemetry lost, confirmed by iad, sin",
            "{member}"
        );
        let vantage: Vec<(&str, bool)> = member["vantage"]
            .as_array()
            .expect("what each vantage said")
            .iter()
            .map(|v| (v["site"].as_str().unwrap(), v["up"].as_bool().unwrap()))
            .collect();
        assert_eq!(vantage, [("iad", true), ("sin", true)], "{member}");
    }
    let (_, explain) = nodes[2].http(
        "GET",
        "/api/v1/explain?name=s3.storage.example&client=127.1.0.9",
        None,
    );
    assert!(
        explain.contains("telemetry lost, confirmed by iad, sin"),
        "the explanation names the vantages: {explain}"
    );
    // Now its storage dies too: nobody reaches fra, and it leaves every answer as soon as
    // the other sites' probes say so (its telemetry is already stale).
    s3[1].2.kill();
    let unreachable = time_until_gone(&nodes, "127.0.10.2", Duration::from_secs(3));
    eprintln!(
        "failover: silent site's last member killed -> site out of every answer in {unreachable:?}"
    );
    all_answer(&nodes, &["127.0.20.1", "127.0.20.2"]);
    let state = nodes[0].get_json("/api/v1/state");
    let member = state["services"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == "fra-2")
        .unwrap()
        .clone();
    let why = member["ineligible"].as_str().unwrap_or_default();
    assert!(
        why.contains("unreachable from iad, sin"),
        "why fra-2 is out: {member}"
    );
}

#[test]
fn a_silent_site_whose_storage_died_with_its_agent_leaves_within_the_stale_budget() {
    let mut s3: Vec<(String, String, S3Node)> = Vec::new();
    for (site, n) in [("fra", 10), ("iad", 20), ("sin", 30)] {
        s3.push((
            site.into(),
            format!("{site}-1"),
            S3Node::start(&format!("127.0.{n}.1")),
        ));
    }
    let members: Vec<(&str, &str, SocketAddr)> = s3
        .iter()
        .map(|(s, n, node)| (s.as_str(), n.as_str(), node.addr))
        .collect();
    let base = config(&members);
    let node = DnsNode::start_with(
        Some(&base),
        &["--listen", "127.0.1.1:0", "--admin", "127.0.1.1:0"],
    );
    let config_path = node.dir.write("agents.toml", &base);
    let mut agents: Vec<Agent> = ["fra", "iad", "sin"]
        .iter()
        .map(|site| tests::site_agent(&config_path, site, &[node.admin.unwrap()], &[]))
        .collect();
    let nodes = [node];
    assert_eventually!(
        Duration::from_secs(15),
        nodes[0].get_json("/api/v1/state")["services"][0]["members"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["eligible"] == true)),
        "the agents never made every member eligible"
    );
    all_answer(&nodes, &["127.0.10.1"]);
    // The whole site goes at once: its agent and its storage.
    drop(agents.remove(0));
    s3[0].2.kill();
    let gone = time_until_gone(&nodes, "127.0.10.1", Duration::from_secs(4));
    eprintln!("failover: site agent and storage killed -> site out of the answers in {gone:?}");
    // stale_after is 2 s: nobody reaches fra, so nothing holds it past that.
    assert!(
        gone < Duration::from_millis(2_600),
        "a site nobody reaches left after {gone:?}"
    );
    all_answer(&nodes, &["127.0.20.1"]);
}

#[test]
fn a_refusal_is_down_at_once_and_a_hang_after_fast_re_probes() {
    // A long interval, so that only the fast paths can explain a quick verdict: fall 3, but
    // a hard failure (refused) counts at fall_hard 1, and after a first timeout the next
    // probes come fast_interval apart, not interval.
    let refused = S3Node::start("127.0.10.61");
    let hung = S3Node::start("127.0.10.62");
    let steady = S3Node::start("127.0.10.63");
    let base = config(&[
        ("fra", "fra-refused", refused.addr),
        ("fra", "fra-hung", hung.addr),
        ("fra", "fra-steady", steady.addr),
    ])
    .replace(
        "interval = \"500ms\", timeout = \"400ms\", rise = 2, fall = 2,",
        "interval = \"5s\", timeout = \"400ms\", rise = 1, fall = 3, fall_hard = 1, \
         fast_interval = \"100ms\",",
    )
    .replace("ttl = 1", "ttl = 1\nmax_answers = 3");
    assert!(base.contains("fall_hard = 1"));
    let (node, _agent, metrics) = tests::node_and_fra_agent(&base);
    // Every member probed up once (the first probe of each falls somewhere in its first
    // interval), and answered.
    let up = |member: &str| {
        tests::metric(
            metrics,
            &format!("portico_agent_member_up{{service=\"s3\",node=\"{member}\"}}"),
        )
    };
    assert_eventually!(
        Duration::from_secs(15),
        ["fra-refused", "fra-hung", "fra-steady"]
            .iter()
            .all(|m| up(m) == 1),
        "the members were never all probed up"
    );
    let all = ["127.0.10.61", "127.0.10.62", "127.0.10.63"];
    assert_eventually!(
        Duration::from_secs(5),
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]) == all,
        "the members never all answered: {:?}",
        node.short(&["-b", "127.1.0.9", "s3.storage.example"])
    );
    let failures = |member: &str, reason: &str| {
        tests::metric(
            metrics,
            &format!(
                "portico_agent_probe_failures_total{{service=\"s3\",node=\"{member}\",reason=\"{reason}\"}}"
            ),
        )
    };

    // Killed: the next probe fails hard, and that one probe is the verdict.
    let nodes = std::slice::from_ref(&node);
    drop(refused);
    time_until_gone(nodes, "127.0.10.61", Duration::from_secs(15));
    // Refused, or reset when the probe meets the dying process. The agent's watch
    // connection closing wakes a probe at once, and may race a probe already under way:
    // one or two hard failures, never the three that fall would need.
    let hard = failures("fra-refused", "refused") + failures("fra-refused", "reset");
    assert!(
        (1..=2).contains(&hard),
        "down on its first hard failure (fall_hard 1), not after fall 3: {}",
        tests::http(metrics, "GET", "/metrics", None).1
    );

    // Hung: timeouts are soft, so fall 3 holds, but after the first one the probes come
    // 100 ms apart: the member is out well before the next regular probe (5 s on; two
    // more regular probes would take 10 s).
    hung.signal("-STOP");
    assert_eventually!(
        Duration::from_secs(15),
        failures("fra-hung", "timeout") >= 1,
        "the hung member's first timeout"
    );
    let from_first = time_until_gone(nodes, "127.0.10.62", Duration::from_secs(15));
    assert_eq!(
        failures("fra-hung", "timeout"),
        3,
        "down after exactly fall timeouts"
    );
    assert!(
        from_first < Duration::from_secs(3),
        "fast re-probes decided it, not the 5 s interval: {from_first:?}"
    );
    node.short(&["-b", "127.1.0.9", "s3.storage.example"])
        .iter()
        .for_each(|a| assert_eq!(a, "127.0.10.63", "only the steady member answers"));
    eprintln!(
        "failover: refused -> down after 1 probe; hang -> down {from_first:?} after its first timeout"
    );
    hung.signal("-CONT");
}

/// A generated GeoIP2-City-layout database of 3.5 million networks (the size of a
/// GeoLite2-City file), written once next to the test binaries and reused.
fn real_size_database() -> std::path::PathBuf {
    let path = tests::binary("make-test-mmdb").with_file_name("city-3500000.mmdb");
    if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) {
        let partial = path.with_extension("partial");
        let status = std::process::Command::new(tests::binary("make-test-mmdb"))
            .args(["--networks", "3500000"])
            .arg(&partial)
            .status()
            .expect("run make-test-mmdb");
        assert!(status.success(), "make-test-mmdb failed");
        std::fs::rename(&partial, &path).expect("move the database into place");
    }
    path
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_real_size_geoip_database_holds_up_neither_failover_nor_memory() {
    let db = real_size_database();
    let doomed = S3Node::start("127.0.10.71");
    let steady = S3Node::start("127.0.10.72");
    let base = config(&[
        ("fra", "fra-doomed", doomed.addr),
        ("fra", "fra-steady", steady.addr),
    ])
    .replace("ttl = 1", "ttl = 1\nmax_answers = 2")
        + &format!("\n[geoip]\ndatabase = \"{}\"\n", db.display());
    let node = DnsNode::start_with(
        Some(&base),
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    );
    let pid = node.pid();
    // A client of the database (its networks start at 1.0.0.0, in Europe and elsewhere)
    // gets an answer by GeoIP: the classes were built from the big file.
    let geo_answer = node.short(&["+subnet=1.0.0.0/24", "s3.storage.example"]);
    assert!(!geo_answer.is_empty(), "a GeoIP client gets an answer");
    let config_path = node.dir.write("agent.toml", &base);
    let _agent = tests::site_agent(&config_path, "fra", &[node.admin.unwrap()], &[]);
    all_answer(std::slice::from_ref(&node), &["127.0.10.71", "127.0.10.72"]);
    let steady_kib = status_kib(pid, "VmRSS:");

    // RTT reports once a second per site, as proxies post them, all through the test.
    let admin = node.admin.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, site) in ["fra", "iad", "sin"].iter().enumerate() {
                    let samples: Vec<String> = (0..200u32)
                        .map(|k| {
                            format!(
                                r#"{{"prefix":"1.0.{k}.0/24","rtt_us":{},"samples":20}}"#,
                                1000 + 700 * ((k + rounds + i as u32) % 3)
                            )
                        })
                        .collect();
                    let body = format!(r#"{{"site":"{site}","samples":[{}]}}"#, samples.join(","));
                    let (status, text) = tests::http(admin, "POST", "/api/v1/rtt", Some(&body));
                    assert_eq!(status, 200, "RTT report: {text}");
                }
                rounds += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            rounds
        })
    };
    std::thread::sleep(Duration::from_secs(3));

    // A hard kill still leaves the answers as fast as without the database.
    drop(doomed);
    let gone = time_until_gone(
        std::slice::from_ref(&node),
        "127.0.10.71",
        Duration::from_secs(10),
    );
    assert!(
        gone < Duration::from_secs(2),
        "a refused member left the answers after {gone:?} with RTT reports applying"
    );
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = reporter.join().expect("the reporter");
    assert!(rounds >= 8, "{rounds} rounds of RTT reports");
    let rtt = node.get_json("/api/v1/rtt");
    assert!(
        rtt.to_string().contains("1.0.199.0/24"),
        "the reports were applied: {rtt}"
    );
    // Memory: the classes of 3.5 M networks take a few MiB, RTT reports add no classes
    // table each, and the file itself is not resident (a debug build: bench/geoip measures
    // the release figures).
    let (after_kib, peak_kib) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    assert!(
        after_kib < steady_kib + 8 * 1024,
        "RSS grew from {steady_kib} KiB to {after_kib} KiB over {rounds} rounds of RTT reports"
    );
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB");
    eprintln!(
        "real-size GeoIP: gone after {gone:?}; RSS {steady_kib} -> {after_kib} KiB over {rounds} rounds, peak {peak_kib} KiB"
    );
}
