//! The replicated store across real processes: three (or four) gslb-dns nodes on their own
//! 127.0.N.x addresses, raft traffic through fault-injecting relays, kill -9, restarts from
//! the data directory, membership changes, a partition, and an admin drain seen by `dig` on
//! every node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tests::relay::Relay;
use tests::{DnsNode, assert_eventually, free_port};

use crate::CONFIG;

/// A service whose members are health-checked by site agents: stale after 1 s without
/// reports, NODATA when no site is available.
const CHECKED_SERVICE: &str = r#"
[[service]]
name = "files"
check = { kind = "tcp", interval = "200ms" }
stale_after = "1s"
when_all_down = "nodata"
members = [
    { site = "fra", node = "fra-f", address = "127.0.10.21" },
    { site = "iad", node = "iad-f", address = "127.0.20.21" },
    { site = "sin", node = "sin-f", address = "127.0.30.21" },
]
"#;

struct Cluster {
    nodes: Vec<DnsNode>,
    /// (from, to) -> the relay `from` dials to reach `to` (1-based ids).
    relays: BTreeMap<(u64, u64), Relay>,
    raft: Vec<SocketAddr>,
}

pub(crate) fn store_section(id: u64, nodes: &[(u64, SocketAddr, bool)]) -> String {
    let list: Vec<String> = nodes
        .iter()
        .map(|(n, raft, learner)| format!("{{ id = {n}, raft = \"{raft}\", learner = {learner} }}"))
        .collect();
    format!(
        "\n[store]\nnode_id = {id}\ndata_dir = \"data\"\ntick_interval = \"50ms\"\nelection_ticks = 10\nheartbeat_ticks = 2\nsnapshot_threshold = 40\npropose_timeout = \"3s\"\ninsecure_plaintext = true\nnodes = [{}]\n",
        list.join(", ")
    )
}

impl Cluster {
    /// Starts `size` voters; node `i` listens on 127.0.`i`.1 and reaches each peer through its
    /// own relay, so any link can be cut.
    fn start(size: u64) -> Cluster {
        let raft: Vec<SocketAddr> = (1..=size)
            .map(|i| {
                let ip = format!("127.0.{i}.1");
                format!("{ip}:{}", free_port(&ip)).parse().unwrap()
            })
            .collect();
        let mut relays = BTreeMap::new();
        for from in 1..=size {
            for to in 1..=size {
                if from != to {
                    relays.insert((from, to), Relay::start(raft[to as usize - 1]));
                }
            }
        }
        let nodes = (1..=size)
            .map(|id| {
                let view: Vec<(u64, SocketAddr, bool)> = (1..=size)
                    .map(|n| {
                        let address = if n == id {
                            raft[n as usize - 1]
                        } else {
                            relays[&(id, n)].addr
                        };
                        (n, address, false)
                    })
                    .collect();
                let config = format!("{CONFIG}{CHECKED_SERVICE}{}", store_section(id, &view));
                let ip = format!("127.0.{id}.1");
                DnsNode::start_with(
                    Some(&config),
                    &[
                        "--listen",
                        &format!("{ip}:0"),
                        "--admin",
                        &format!("{ip}:0"),
                    ],
                )
            })
            .collect();
        let cluster = Cluster {
            nodes,
            relays,
            raft,
        };
        cluster.wait_for_leader(&[1, 2, 3]);
        cluster
    }

    fn node(&self, id: u64) -> &DnsNode {
        &self.nodes[id as usize - 1]
    }

    fn status(&self, id: u64) -> serde_json::Value {
        self.node(id).get_json("/api/v1/store")["node"].clone()
    }

    /// The leader all of `ids` agree on.
    fn wait_for_leader(&self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leaders: BTreeSet<u64> = ids
                .iter()
                .map(|id| self.status(*id)["leader"].as_u64().unwrap_or(0))
                .collect();
            if leaders.len() == 1 && !leaders.contains(&0) {
                return *leaders.iter().next().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?}: {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts every link to and from `id`.
    fn isolate(&self, id: u64, cut: bool) {
        for ((from, to), relay) in &self.relays {
            if *from == id || *to == id {
                if cut { relay.block() } else { relay.unblock() }
            }
        }
    }

    fn applied(&self, id: u64) -> u64 {
        self.status(id)["applied"].as_u64().unwrap_or(0)
    }
}

/// Posts one RTT sample with a unique prefix to `node`; true when acknowledged.
fn write(node: &DnsNode, n: u32) -> bool {
    let body = format!(
        r#"{{"site":"fra","samples":[{{"prefix":"10.{}.{}.0/24","rtt_us":{n},"samples":1}}]}}"#,
        n >> 8,
        n & 0xFF
    );
    let Some(admin) = node.admin else {
        return false;
    };
    matches!(
        tests::try_http(admin, "POST", "/api/v1/rtt", Some(&body)),
        Ok((200, _))
    )
}

fn prefixes(node: &DnsNode) -> BTreeSet<String> {
    let table = node.get_json("/api/v1/rtt");
    table["rtt"]["fra"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_drain_posted_to_one_node_changes_dig_on_all_three() {
    let cluster = Cluster::start(3);
    let fra = vec!["127.0.10.1".to_owned(), "127.0.10.2".to_owned()];
    let iad = vec!["127.0.20.1".to_owned(), "127.0.20.2".to_owned()];
    for id in 1..=3 {
        assert_eq!(
            cluster
                .node(id)
                .short(&["-b", "127.1.0.9", "s3.storage.example"]),
            fra
        );
    }
    let (status, body) = cluster.node(2).http(
        "POST",
        "/api/v1/sites/fra/drain",
        Some(r#"{"who":"e2e","why":"drill"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let posted = Instant::now();
    let mut moved = BTreeMap::new();
    while moved.len() < 3 {
        for id in 1..=3u64 {
            if !moved.contains_key(&id)
                && cluster
                    .node(id)
                    .short(&["-b", "127.1.0.9", "s3.storage.example"])
                    == iad
            {
                moved.insert(id, posted.elapsed());
            }
        }
        assert!(
            posted.elapsed() < Duration::from_secs(5),
            "not every node moved: {moved:?}"
        );
    }
    let last = moved.values().max().unwrap();
    eprintln!(
        "drain: POST returned -> last node answering the new way: {last:?} (per node {moved:?})"
    );
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write_and_it_catches_up_on_restart() {
    let mut cluster = Cluster::start(3);
    let mut acknowledged = BTreeSet::new();
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let mut n = 0u32;
    for round in 0..90 {
        if round == 30 {
            cluster.nodes[leader as usize - 1].kill();
        }
        let target = 1 + (round % 3) as u64;
        if round >= 30 && target == leader {
            continue;
        }
        n += 1;
        if write(cluster.node(target), n) {
            acknowledged.insert(format!("10.{}.{}.0/24", n >> 8, n & 0xFF));
        }
    }
    assert!(
        acknowledged.len() > 40,
        "the surviving majority kept committing: {} acknowledged",
        acknowledged.len()
    );
    cluster.nodes[leader as usize - 1].restart();
    cluster.wait_for_leader(&[1, 2, 3]);
    let target = cluster.applied(if leader == 1 { 2 } else { 1 });
    assert_eventually!(
        Duration::from_secs(10),
        (1..=3).all(|id| cluster.applied(id) >= target),
        "the restarted node did not catch up"
    );
    for id in 1..=3 {
        let present = prefixes(cluster.node(id));
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|p| !present.contains(*p))
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lost acknowledged writes: {missing:?}"
        );
    }
}

#[test]
fn a_learner_joins_then_a_voter_is_removed() {
    let cluster = Cluster::start(3);
    // Node 4 knows the cluster; the cluster learns of node 4 through the admin API.
    let ip = "127.0.4.1";
    let raft4: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
    let mut view: Vec<(u64, SocketAddr, bool)> = (1..=3)
        .map(|n| (n, cluster.raft[n as usize - 1], false))
        .collect();
    view.push((4, raft4, true));
    let config = format!("{CONFIG}{}", store_section(4, &view));
    let learner = DnsNode::start_with(
        Some(&config),
        &[
            "--listen",
            &format!("{ip}:0"),
            "--admin",
            &format!("{ip}:0"),
        ],
    );
    for n in 1..=5 {
        assert!(write(cluster.node(1), n), "write {n}");
    }
    let (status, body) = cluster.node(1).http(
        "POST",
        "/api/v1/store/nodes",
        Some(&format!(r#"{{"id":4,"raft":"{raft4}","learner":true}}"#)),
    );
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(10),
        learner.get_json("/api/v1/store")["node"]["applied"].as_u64() >= Some(cluster.applied(1))
            && prefixes(&learner).len() == 5,
        "the learner did not catch up: {}",
        learner.get_json("/api/v1/store")
    );
    assert_eq!(cluster.status(1)["learners"], serde_json::json!([4]));
    // A learner is a read replica: it answers DNS from the replicated state.
    let (status, _) = cluster
        .node(1)
        .http("POST", "/api/v1/sites/fra/drain", None);
    assert_eq!(status, 200);
    assert_eventually!(
        Duration::from_secs(5),
        learner.short(&["-b", "127.1.0.9", "s3.storage.example"]) == ["127.0.20.1", "127.0.20.2"],
        "the learner does not follow the drain"
    );
    let (status, body) = cluster
        .node(1)
        .http("DELETE", "/api/v1/store/nodes/3", None);
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(5),
        cluster.status(1)["voters"] == serde_json::json!([1, 2]),
        "node 3 still a voter: {}",
        cluster.status(1)
    );
    // A removed leader steps down and the two voters elect one; clients retry meanwhile.
    assert_eventually!(
        Duration::from_secs(10),
        write(cluster.node(2), 6),
        "two voters do not commit: {} | {} | {}",
        cluster.status(1),
        cluster.status(2),
        cluster.status(3)
    );
}

#[test]
fn a_partitioned_node_degrades_keeps_answering_and_converges_after_healing() {
    let cluster = Cluster::start(3);
    assert!(write(cluster.node(1), 1));
    cluster.isolate(3, true);
    // The majority keeps committing.
    let mut committed = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while committed < 5 && Instant::now() < deadline {
        for id in [1, 2] {
            if write(cluster.node(id), 100 + committed) {
                committed += 1;
            }
        }
    }
    assert!(committed >= 5, "the majority side did not commit");
    // The isolated node reports degraded everywhere it can, and still answers.
    assert_eventually!(
        Duration::from_secs(10),
        cluster.status(3)["degraded"] == true,
        "node 3 not degraded: {}",
        cluster.status(3)
    );
    let (_, metrics) = cluster.node(3).http("GET", "/metrics", None);
    assert!(
        metrics.lines().any(|l| l == "portico_store_degraded 1"),
        "metrics say degraded"
    );
    assert_eventually!(
        Duration::from_secs(2),
        cluster
            .node(3)
            .dig(&["+short", "_status.storage.example", "TXT"])
            .contains("degraded since"),
        "TXT does not say degraded"
    );
    assert_eq!(
        cluster
            .node(3)
            .short(&["-b", "127.2.0.9", "s3.storage.example"]),
        ["127.0.20.1", "127.0.20.2"],
        "answers from the last known state"
    );
    let (status, _) = cluster.node(3).http(
        "POST",
        "/api/v1/rtt",
        Some(r#"{"site":"fra","samples":[]}"#),
    );
    assert_eq!(
        status, 503,
        "writes on the minority side are refused with a retry hint"
    );
    // Heal: node 3 converges and is no longer degraded.
    cluster.isolate(3, false);
    let target = cluster.applied(1);
    assert_eventually!(
        Duration::from_secs(10),
        cluster.status(3)["degraded"] == false && cluster.applied(3) >= target,
        "node 3 did not converge: {}",
        cluster.status(3)
    );
    assert_eq!(prefixes(cluster.node(3)), prefixes(cluster.node(1)));
}

/// A stand-in for the three site agents: every 200 ms, a report that every member of
/// `files` is up, posted to the first of `targets` that takes it.
struct Agents {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agents {
    fn start(targets: Vec<SocketAddr>) -> Agents {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sequence = 0u64;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                sequence += 1;
                for (site, node) in [("fra", "fra-f"), ("iad", "iad-f"), ("sin", "sin-f")] {
                    let body = tests::agent_report(
                        site,
                        &format!("agent-{site}"),
                        sequence,
                        &[("files", node, "up", "connect ok")],
                    );
                    for target in &targets {
                        if matches!(
                            tests::try_http(*target, "POST", "/api/v1/reports", Some(&body)),
                            Ok((200, _))
                        ) {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Agents {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn staleness_is_frozen_while_degraded_and_applies_when_reports_stop() {
    let cluster = Cluster::start(3);
    let files = |id: u64| {
        cluster
            .node(id)
            .short(&["-b", "127.2.0.9", "files.storage.example"])
    };
    let mut agents = Agents::start(vec![
        cluster.node(1).admin.unwrap(),
        cluster.node(2).admin.unwrap(),
    ]);
    assert_eventually!(
        Duration::from_secs(10),
        (1..=3).all(|id| files(id) == ["127.0.20.21"]),
        "reports did not make the members eligible"
    );
    cluster.isolate(3, true);
    assert_eventually!(
        Duration::from_secs(10),
        cluster.status(3)["degraded"] == true,
        "node 3 not degraded"
    );
    // Well past stale_after: the majority still hears the agents, and the isolated node,
    // which cannot, keeps its last known good answers instead of failing every site.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        files(1),
        ["127.0.20.21"],
        "the majority side sees fresh reports"
    );
    assert_eq!(
        files(3),
        ["127.0.20.21"],
        "staleness frozen on the degraded node"
    );
    cluster.isolate(3, false);
    assert_eventually!(
        Duration::from_secs(10),
        cluster.status(3)["degraded"] == false,
        "node 3 still degraded"
    );
    // Agents stop reporting: after stale_after every node treats every site as down.
    agents.stop();
    assert_eventually!(
        Duration::from_secs(5),
        (1..=3).all(|id| files(id).is_empty()),
        "stale sites still answered: {:?}",
        (1..=3).map(files).collect::<Vec<_>>()
    );
}

/// A CA and node certificates (IP SANs) written as PEM files into `dir`.
pub(crate) fn certificates(dir: &tests::TempDir, ca_name: &str, nodes: &[(u64, &str)]) -> String {
    let pki = crate::pki::Pki::new(dir.path(), ca_name);
    for (id, ip) in nodes {
        pki.node(*id, ip);
    }
    pki.ca.display().to_string()
}

#[test]
fn mutual_tls_between_nodes_admits_only_the_clusters_ca() {
    let pki = tests::TempDir::new("pki");
    let ips: Vec<String> = (1..=3).map(|i| format!("127.0.{i}.1")).collect();
    let ca = certificates(&pki, "portico-ca", &[(1, &ips[0]), (2, &ips[1])]);
    // Node 3's certificate comes from another CA: the others must refuse it.
    let rogue_ca = certificates(&pki, "rogue-ca", &[(3, &ips[2])]);
    let raft: Vec<(u64, SocketAddr, bool)> = (1..=3)
        .map(|i| {
            (
                i,
                format!(
                    "{}:{}",
                    ips[i as usize - 1],
                    free_port(&ips[i as usize - 1])
                )
                .parse()
                .unwrap(),
                false,
            )
        })
        .collect();
    let nodes: Vec<DnsNode> = (1..=3u64)
        .map(|id| {
            let ca_file = if id == 3 { &rogue_ca } else { &ca };
            let tls = format!(
                "tls = {{ cert = \"{0}/node-{id}.pem\", key = \"{0}/node-{id}.key\", ca = \"{ca_file}\" }}\n",
                pki.path().display()
            );
            let store = store_section(id, &raft).replace("insecure_plaintext = true\n", "");
            let config = format!("{CONFIG}{store}{tls}");
            let ip = &ips[id as usize - 1];
            DnsNode::start_with(Some(&config), &["--listen", &format!("{ip}:0"), "--admin", &format!("{ip}:0")])
        })
        .collect();
    let status = |id: usize| nodes[id - 1].get_json("/api/v1/store")["node"].clone();
    assert_eventually!(
        Duration::from_secs(10),
        status(1)["leader"] != 0 && status(1)["leader"] == status(2)["leader"],
        "nodes 1 and 2 formed no quorum over TLS: {} {}",
        status(1),
        status(2)
    );
    let (code, body) = nodes[0].http("POST", "/api/v1/sites/fra/drain", None);
    assert_eq!(code, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(5),
        nodes[1].short(&["-b", "127.1.0.9", "s3.storage.example"]) == ["127.0.20.1", "127.0.20.2"],
        "the drain did not replicate over TLS"
    );
    // The rogue node never joins: it learns no leader and never applies the drain.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        status(3)["leader"],
        0,
        "a node with a foreign CA joined: {}",
        status(3)
    );
    assert_eq!(
        nodes[2].short(&["-b", "127.1.0.9", "s3.storage.example"]),
        ["127.0.10.1", "127.0.10.2"]
    );
}
