//! The site agent's reports through the API client: a gslb-dns node that stops answering
//! (SIGSTOP: its port still accepts, nothing answers) costs one report timeout, then the
//! next node takes the report; the site never leaves the answers of the others.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::{DnsNode, assert_eventually, binary};

use crate::deployment::three_nodes;

/// fra and iad, each with one member behind a `tcp` check (500 ms, as by default).
fn config(fra: SocketAddr, iad: SocketAddr) -> String {
    format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"
location = {{ lat = 50.11, lon = 8.68 }}
client_networks = ["127.1.0.0/16"]

[[site]]
name = "iad"
location = {{ lat = 39.04, lon = -77.49 }}
client_networks = ["127.2.0.0/16"]

[[service]]
name = "s3"
check = {{ kind = "tcp", interval = "500ms" }}
stale_after = "3s"
members = [
    {{ site = "fra", node = "fra-1", address = "{}", port = {} }},
    {{ site = "iad", node = "iad-1", address = "{}", port = {} }},
]
"#,
        fra.ip(),
        fra.port(),
        iad.ip(),
        iad.port()
    )
}

use tests::Running as Agent;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// When `node` last saw fra's agent report (the store's clock), ms.
fn fra_last_report(node: &DnsNode) -> u64 {
    let state = node.get_json("/api/v1/state");
    state["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "fra")
        .and_then(|s| s["last_report_ms"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_stopped_node_costs_one_report_timeout_and_the_next_node_takes_the_report() {
    // Members that accept connections: the tcp check passes.
    let fra_member = TcpListener::bind("127.0.10.61:0").unwrap();
    let iad_member = TcpListener::bind("127.0.20.61:0").unwrap();
    let text = config(
        fra_member.local_addr().unwrap(),
        iad_member.local_addr().unwrap(),
    );
    let nodes = three_nodes(&text);
    let leader_of = |node: &DnsNode| {
        node.get_json("/api/v1/store")["node"]["leader"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eventually!(
        Duration::from_secs(15),
        leader_of(&nodes[0]) > 0 && nodes[0].get_json("/api/v1/config")["version"] == 1,
        "no leader, or no deployment"
    );
    let leader = leader_of(&nodes[0]) as usize;
    // The agent reports to a follower first: stopping it leaves a quorum.
    let follower = (1..=3).find(|i| *i != leader).unwrap() - 1;
    let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
    let file = nodes[0].dir.write("agent.toml", &text);
    let mut command = Command::new(binary("site-agent"));
    command.arg("--config").arg(&file).args(["--site", "fra"]);
    for i in std::iter::once(follower).chain(others.iter().copied()) {
        command.args(["--report-to", &nodes[i].admin.unwrap().to_string()]);
    }
    let _agent = Agent(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start site-agent"),
    );
    let fra = ["127.0.10.61"];
    assert_eventually!(
        Duration::from_secs(10),
        nodes
            .iter()
            .all(|n| n.short(&["-b", "127.1.0.9", "s3.storage.example"]) == fra),
        "the agent's reports never made fra's member answer everywhere"
    );

    nodes[follower].signal("-STOP");
    let stopped_at = now_ms();
    let started = Instant::now();
    // The next node takes a report made after the stop within 2 s (one report timeout of
    // 1 s, plus at most one report interval): the first report stamp after the stop, as
    // the other nodes' state shows it, is the measure. Meanwhile fra stays in their answers.
    let mut first_stamp = None;
    while started.elapsed() < Duration::from_secs(4) {
        if first_stamp.is_none() {
            let stamps: Vec<u64> = others.iter().map(|i| fra_last_report(&nodes[*i])).collect();
            if stamps.iter().all(|s| *s > stopped_at) {
                first_stamp = stamps.into_iter().min();
            }
        }
        for i in &others {
            assert_eq!(
                nodes[*i].short(&["-b", "127.1.0.9", "s3.storage.example"]),
                fra,
                "fra left the answers of node {}",
                i + 1
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[follower].signal("-CONT");
    let stamp = first_stamp.expect("no other node took a report after the stop");
    let taken = Duration::from_millis(stamp - stopped_at);
    eprintln!("agent reports: node stopped -> the next node took a report after {taken:?}");
    assert!(
        taken < Duration::from_secs(2),
        "the next node took a report only after {taken:?}"
    );
}
