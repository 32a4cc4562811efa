//! Load feedback end to end: a member's own agent-check responder (the HAProxy protocol a
//! storage node speaks) says `drain`, then `ready 10%`; the real site agent reads it, the
//! store replicates it, and the real gslb-dns node and the real L4 proxy follow: the member
//! leaves new answers and new connections, then gets about a tenth of its share of each.

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::{ProxyNode, assert_eventually};

use crate::proxy::{IdentityServer, connect_from, proxy_address, tcp_proxy_config};

/// An agent-check responder on `ip` that sends whatever `reply` holds now.
fn responder(ip: &str, reply: Arc<Mutex<&'static str>>) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let now = *reply.lock().unwrap();
            let _ = stream.write_all(now.as_bytes());
        }
    });
    port
}

#[test]
fn drain_then_ten_percent_from_the_node_itself_steers_dns_rotations_and_proxy_picks() {
    let servers = [
        IdentityServer::start("lf1", "127.0.53.1"),
        IdentityServer::start("lf2", "127.0.53.2"),
    ];
    let reply = Arc::new(Mutex::new("ready 100%\n"));
    let agent_port = responder("127.0.53.1", reply.clone());
    let base = format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"
client_networks = ["127.1.0.0/16"]

[[service]]
name = "files"
ttl = 0
max_answers = 1
policy = "weighted"
check = {{ kind = "tcp" }}
members = [
    {{ site = "fra", node = "lf1", address = "127.0.53.1", port = {}, agent_port = {agent_port} }},
    {{ site = "fra", node = "lf2", address = "127.0.53.2", port = {} }},
]
"#,
        servers[0].addr.port(),
        servers[1].addr.port()
    );
    let (node, _agent, _metrics) = tests::node_and_fra_agent(&base);
    let listen = proxy_address("127.0.53.100");
    let proxy_metrics = proxy_address("127.0.53.100");
    let extra = format!(
        "state_from = [\"{}\"]\nmetrics = \"{proxy_metrics}\"\nrtt_report_interval = \"0s\"",
        node.admin.unwrap()
    );
    let _proxy = ProxyNode::start(&tcp_proxy_config(&base, listen, &extra), 1, &[]);
    let weight = |member: &str| {
        tests::metric(
            proxy_metrics,
            &format!("portico_proxy_member_weight{{service=\"files\",member=\"{member}\"}}"),
        )
    };
    // `queries` answers for a fra client: how many named lf1.
    let dns_share = |queries: usize| {
        let names = vec!["files.storage.example"; queries];
        let mut args = vec!["-b", "127.1.0.9"];
        args.extend(names);
        let answers = node.short(&args);
        assert_eq!(
            answers.len(),
            queries,
            "one address per answer: {answers:?}"
        );
        answers.iter().filter(|a| *a == "127.0.53.1").count()
    };
    // New connections from `clients` distinct fra clients: how many reached lf1.
    let proxy_share = |clients: u32| {
        (1..=clients)
            .map(|i| {
                let source: IpAddr = format!("127.1.{}.{}", i / 250, 1 + i % 250)
                    .parse()
                    .unwrap();
                connect_from(source, listen).1
            })
            .filter(|name| name == "lf1")
            .count()
    };
    assert_eventually!(
        Duration::from_secs(15),
        weight("lf1") == 100 && weight("lf2") == 100,
        "the proxy never got both members at full weight"
    );
    let even = dns_share(100);
    assert!(
        (40..=60).contains(&even),
        "equal weights: lf1 in {even} of 100 answers"
    );

    *reply.lock().unwrap() = "drain\n";
    assert_eventually!(
        Duration::from_secs(5),
        weight("lf1") == 0,
        "the proxy still gives the drained member new work"
    );
    assert_eq!(dns_share(50), 0, "a drained member is in new answers");
    assert_eq!(proxy_share(60), 0, "a drained member got new connections");
    let state = node.get_json("/api/v1/state");
    let lf1 = &state["services"][0]["members"][0];
    assert_eq!(lf1["agent_admin"], "drained", "{lf1}");

    // `ready` lifts the drain, `10%` sets the share.
    *reply.lock().unwrap() = "ready 10%\n";
    assert_eventually!(
        Duration::from_secs(5),
        weight("lf1") == 10,
        "the proxy never took lf1 back at 10% (weight {})",
        weight("lf1")
    );
    let dns = dns_share(220);
    let picks = proxy_share(400);
    eprintln!(
        "load feedback: at 10%, lf1 got {dns} of 220 DNS answers and {picks} of 400 proxy picks"
    );
    // 10 against 100: a share of 1/11 (20 of 220, 36 of 400), within sampling noise.
    assert!((12..=30).contains(&dns), "lf1 in {dns} of 220 answers");
    assert!(
        (18..=60).contains(&picks),
        "lf1 got {picks} of 400 connections"
    );
}
