//! Member discovery by DNS: a member group names a VIP pool; the site agent resolves it
//! (through a storage cluster's own DNS, here a second gslb-dns serving static records) and
//! Portico's answers follow the pool as VIPs come and go, with no configuration change.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::{DnsNode, assert_eventually, binary, free_port};

use tests::Running as Agent;

fn pool_dns(port: u16, vips: &[&str]) -> DnsNode {
    let records: Vec<String> = vips
        .iter()
        .map(|v| format!("\"pool 1 IN A {v}\""))
        .collect();
    let config = format!(
        "[zone]\norigin = \"vast.example.\"\nns = [\"ns1\"]\nrecords = [{}]\n[admin]\nenabled = false\n[[site]]\nname = \"dc\"\n",
        records.join(", ")
    );
    let listen = format!("127.0.0.1:{port}");
    DnsNode::start_with(Some(&config), &["--listen", &listen])
}

#[test]
fn answers_follow_a_discovered_vip_pool() {
    // Storage VIPs: something listening on each, on one port.
    let port = free_port("127.0.40.1");
    let _listeners: Vec<TcpListener> = ["127.0.40.1", "127.0.40.2", "127.0.40.3"]
        .iter()
        .map(|ip| TcpListener::bind((*ip, port)).expect("bind a VIP"))
        .collect();
    let dns_port = free_port("127.0.0.1");
    let mut pool = pool_dns(dns_port, &["127.0.40.1", "127.0.40.2"]);
    let config = format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[site_agent]
resolver = "127.0.0.1:{dns_port}"
discover_interval = "300ms"

[[site]]
name = "fra"
client_networks = ["127.1.0.0/16"]

[[service]]
name = "files"
check = {{ kind = "tcp", interval = "200ms", timeout = "150ms", rise = 1, fall = 1 }}
members = [{{ site = "fra", node = "pool", discover = "pool.vast.example.", slots = 3, port = {port} }}]
"#
    );
    let portico = DnsNode::start_with(
        Some(&config),
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    );
    let config_path = portico.dir.write("agent.toml", &config);
    let _agent = Agent(
        Command::new(binary("site-agent"))
            .arg("--config")
            .arg(&config_path)
            .args([
                "--site",
                "fra",
                "--report-to",
                &portico.admin.unwrap().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start site-agent"),
    );
    let answers = || portico.short(&["-b", "127.1.0.9", "files.storage.example"]);
    assert_eventually!(
        Duration::from_secs(10),
        answers() == ["127.0.40.1", "127.0.40.2"],
        "discovered VIPs not answered: {:?}",
        answers()
    );
    // The pool changes: .1 leaves, .3 arrives.
    pool.kill();
    drop(pool);
    let _pool = pool_dns(dns_port, &["127.0.40.2", "127.0.40.3"]);
    assert_eventually!(
        Duration::from_secs(10),
        answers() == ["127.0.40.2", "127.0.40.3"],
        "answers did not follow the pool: {:?}",
        answers()
    );
    let state = portico.get_json("/api/v1/state");
    let members = state["services"][0]["members"].as_array().unwrap().clone();
    let addresses: Vec<String> = members
        .iter()
        .map(|m| m["address"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        addresses.contains(&"127.0.40.2".to_owned())
            && addresses.contains(&"127.0.40.3".to_owned()),
        "{addresses:?}"
    );
}
