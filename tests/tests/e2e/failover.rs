//! Failover end to end: three sites, each with a gslb-dns node (together the raft store),
//! a site agent and two real S3 nodes on the site's own 127.0.N.x addresses. Kill one S3
//! node and measure until no gslb-dns node answers it; stop a whole site's agent and
//! measure until the site leaves every answer.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{ACCESS_KEY, DnsNode, S3Node, SECRET_KEY, assert_eventually, binary, free_port};

use crate::cluster::store_section;

use tests::Running as Agent;

fn config(members: &[(&str, &str, SocketAddr)]) -> String {
    let list: Vec<String> = members
        .iter()
        .map(|(site, node, addr)| {
            format!(
                "{{ site = \"{site}\", node = \"{node}\", address = \"{}\", port = {} }}",
                addr.ip(),
                addr.port()
            )
        })
        .collect();
    format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"
location = {{ lat = 50.1109, lon = 8.6821 }}
client_networks = ["127.1.0.0/16"]
[[site]]
name = "iad"
location = {{ lat = 39.0438, lon = -77.4874 }}
client_networks = ["127.2.0.0/16"]
[[site]]
name = "sin"
location = {{ lat = 1.3521, lon = 103.8198 }}
client_networks = ["127.3.0.0/16"]

[[service]]
name = "s3"
ttl = 1
check = {{ kind = "s3", interval = "500ms", timeout = "400ms", rise = 2, fall = 2, bucket = "bucket" }}
members = [{}]
"#,
        list.join(", ")
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
            let mut command = Command::new(binary("site-agent"));
            command
                .arg("--config")
                .arg(&config_path)
                .args(["--site", site]);
            // Each agent reports to its own site's node first, then the others.
            for j in 0..3 {
                command.args([
                    "--report-to",
                    &nodes[(i + j) % 3].admin.unwrap().to_string(),
                ]);
            }
            if *site == "fra" {
                command.args(["--metrics", &format!("127.0.0.1:{metrics_port}")]);
            }
            Agent(
                command
                    .env("PORTICO_S3_ACCESS_KEY", ACCESS_KEY)
                    .env("PORTICO_S3_SECRET_KEY", SECRET_KEY)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start site-agent"),
            )
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
    // A whole site's agent goes silent: after stale_after (4 intervals) the site is down
    // for everyone and fra's clients go to the next nearest site.
    drop(agents.remove(0));
    let silent = time_until_gone(&nodes, "127.0.10.2", Duration::from_secs(6));
    eprintln!("failover: site agent stopped -> site out of every answer in {silent:?}");
    all_answer(&nodes, &["127.0.20.1", "127.0.20.2"]);
}
