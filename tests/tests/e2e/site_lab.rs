//! A whole site lost, for real: a lab of network namespaces, one per site (a gslb-dns node of
//! the three-node store, its site agent, its S3 proxy and two real S3 nodes), a router
//! between them and a client namespace with `unbound`, whose only way to the zone is the
//! delegation's NS set (one node per site, with glue, as `docs/operations.md` prescribes).
//! The store runs over mutual TLS, the admin API over HTTPS with per-site tokens. Dual
//! stack: sin's storage nodes and proxy are IPv6-only and sin's node speaks raft, takes
//! reports and serves its proxy over IPv6.
//!
//! Then fra loses its link (the router's side of its veth goes down): the resolver keeps
//! answering through the surviving NS, fra leaves the answers, S3 GETs through iad's proxy
//! never fail; the link comes back and everything converges. Then fra is partitioned from
//! the other sites but not from its clients: its node degrades and answers from its last
//! state, the other two drop fra (nobody reaches its storage); healed, all converge.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::netns::Lab;
use tests::{DnsNode, ProxyNode, Running, S3Node, TempDir, Unbound, binary};

use crate::pki::Pki;

/// (site, its number N: the site's namespace has 10.99.N.0/24 and fd00:99:N::/64)
const SITES: [(&str, u8); 3] = [("fra", 1), ("iad", 2), ("sin", 3)];
const OPERATOR: &str = "lab-operator-token-0123456789";

fn token(role: &str, site: &str) -> String {
    format!("lab-{role}-{site}-token-0123456789")
}

/// The node's address in site `n` (IPv4 but for sin's raft and admin API, which are IPv6).
fn node_ip(n: u8) -> String {
    format!("10.99.{n}.2")
}
fn node_ip6(n: u8) -> String {
    format!("fd00:99:{n}::2")
}
/// Where a site's node takes API calls (sin's over IPv6).
fn admin_addr(n: u8) -> String {
    if n == 3 {
        format!("[{}]:8053", node_ip6(n))
    } else {
        format!("{}:8053", node_ip(n))
    }
}
/// A site's storage node `i` (IPv4 for fra and iad, IPv6 only for sin).
fn storage_ip(n: u8, i: u8) -> String {
    if n == 3 {
        format!("fd00:99:{n}::1{i}")
    } else {
        format!("10.99.{n}.1{i}")
    }
}
fn proxy_addr(n: u8) -> SocketAddr {
    if n == 3 {
        format!("[fd00:99:{n}::100]:9000").parse().unwrap()
    } else {
        format!("10.99.{n}.100:9000").parse().unwrap()
    }
}

/// The namespaces, links, addresses and routes: a router (`wan`) with one veth per site and
/// one to the client.
fn build(lab: &Lab) {
    lab.add("wan");
    lab.sysctl("wan", "net.ipv4.ip_forward=1");
    lab.sysctl("wan", "net.ipv6.conf.all.forwarding=1");
    lab.sysctl("wan", "net.ipv6.conf.default.forwarding=1");
    let mut ends: Vec<(String, u8)> = SITES.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect();
    ends.push(("client".to_owned(), 100));
    for (name, n) in &ends {
        lab.add(name);
        let router_side = format!("to-{name}");
        lab.link(name, "eth0", "wan", &router_side);
        lab.address("wan", &router_side, &format!("10.99.{n}.1/24"));
        lab.address("wan", &router_side, &format!("fd00:99:{n}::1/64"));
        lab.address(name, "eth0", &format!("10.99.{n}.2/24"));
        lab.address(name, "eth0", &format!("fd00:99:{n}::2/64"));
        lab.ip(
            name,
            &["route", "add", "default", "via", &format!("10.99.{n}.1")],
        );
        lab.ip(
            name,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:99:{n}::1"),
            ],
        );
    }
    for (site, n) in SITES {
        for i in 1..=2 {
            let prefix = if n == 3 { 64 } else { 24 };
            lab.address(site, "eth0", &format!("{}/{prefix}", storage_ip(n, i)));
        }
        let proxy = proxy_addr(n).ip().to_string();
        lab.address(
            site,
            "eth0",
            &format!("{proxy}/{}", if n == 3 { 64 } else { 24 }),
        );
    }
}

/// The deployment every process reads: the zone's NS set names one node per site, with
/// glue; the client namespace is a client network of fra.
fn deployment(storage: &[(u8, u8, SocketAddr)]) -> String {
    let members: Vec<String> = storage
        .iter()
        .map(|(n, i, addr)| {
            let site = SITES[usize::from(*n) - 1].0;
            format!(
                "{{ site = \"{site}\", node = \"{site}-{i}\", address = \"{}\", port = {} }}",
                addr.ip(),
                addr.port()
            )
        })
        .collect();
    format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns-fra", "ns-iad", "ns-sin"]
records = [
    "ns-fra 3600 IN A 10.99.1.2",
    "ns-fra 3600 IN AAAA fd00:99:1::2",
    "ns-iad 3600 IN A 10.99.2.2",
    "ns-iad 3600 IN AAAA fd00:99:2::2",
    "ns-sin 3600 IN A 10.99.3.2",
    "ns-sin 3600 IN AAAA fd00:99:3::2",
]

[dns]
debug_queries = true
debug_networks = ["10.99.0.0/16", "fd00:99::/48"]

[[site]]
name = "fra"
location = {{ lat = 50.1109, lon = 8.6821 }}
client_networks = ["10.99.100.0/24", "fd00:99:100::/64"]
[[site]]
name = "iad"
location = {{ lat = 39.0438, lon = -77.4874 }}
[[site]]
name = "sin"
location = {{ lat = 1.3521, lon = 103.8198 }}

[[service]]
name = "s3"
ttl = 1
check = {{ kind = "s3", bucket = "bucket" }}
members = [{}]
"#,
        members.join(", ")
    )
}

/// The admin API and store sections of node `n`.
fn node_sections(pki_dir: &TempDir, pki: &Pki, tokens: &std::path::Path, n: u8) -> String {
    let raft: Vec<String> = SITES
        .iter()
        .map(|(_, m)| {
            let raft = if *m == 3 {
                format!("[{}]:7000", node_ip6(*m))
            } else {
                format!("{}:7000", node_ip(*m))
            };
            format!("{{ id = {m}, raft = \"{raft}\" }}")
        })
        .collect();
    format!(
        "\n[admin]\ntoken_file = \"{tokens}\"\nreads = \"token\"\ntls = {{ cert = \"{dir}/admin-{n}.pem\", key = \"{dir}/admin-{n}.key\" }}\n\
         \n[store]\nnode_id = {n}\ndata_dir = \"data\"\ntick_interval = \"50ms\"\nelection_ticks = 10\nheartbeat_ticks = 2\n\
         nodes = [{}]\n{}",
        raft.join(", "),
        pki.store_tls(u64::from(n)),
        tokens = tokens.display(),
        dir = pki_dir.path().display(),
    )
}

/// The API endpoints a site's agent or proxy uses: its own site's node first.
fn endpoints(n: u8) -> String {
    let order: Vec<String> = (0..3)
        .map(|k| format!("\"{}\"", admin_addr((n - 1 + k) % 3 + 1)))
        .collect();
    order.join(", ")
}

/// unbound in the client namespace, on port 53: no forwarders, the zone's servers found
/// by priming the delegation's NS set from the three node addresses (stub-prime), so it
/// uses the NS names and glue the zone serves.
fn start_unbound() -> Unbound {
    Unbound::start(
        53,
        "    do-ip6: yes",
        "    stub-prime: yes\n    stub-addr: 10.99.1.2\n    stub-addr: 10.99.2.2\n    stub-addr: 10.99.3.2",
    )
}

/// `dig +short` through the client's resolver (run inside the client namespace): the
/// answers, or `None` when the resolver gave no answer (timeout, SERVFAIL, empty).
fn resolve(qtype: &str) -> Option<Vec<String>> {
    let output = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "+time=3",
            "+tries=1",
            "s3.storage.example",
            qtype,
        ])
        .output()
        .expect("dig");
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains("status: NOERROR") {
        return None;
    }
    let mut answers: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(&format!("\t{qtype}\t")))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    answers.sort();
    (!answers.is_empty()).then_some(answers)
}

/// `dig +short` asked of one node directly (from the client namespace).
fn ask_node(n: u8, name: &str, qtype: &str) -> Vec<String> {
    let output = std::process::Command::new("dig")
        .args([
            &format!("@{}", node_ip(n)),
            "+time=1",
            "+tries=1",
            "+short",
            name,
            qtype,
        ])
        .output()
        .expect("dig");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(|l| l.trim_matches('"').to_owned())
        .collect();
    lines.sort();
    lines
}

/// Node `n`'s state view (`GET /api/v1/state` over HTTPS with the operator's token, by
/// `curl` from the client namespace), or `Null` when it does not answer.
fn state(n: u8, ca: &std::path::Path) -> serde_json::Value {
    api(n, ca, "/api/v1/state")
}

/// `GET path` of node `n`'s admin API as the operator (see [`state`]).
fn api(n: u8, ca: &std::path::Path, path: &str) -> serde_json::Value {
    let output = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {OPERATOR}")])
        .arg(format!("https://{}{path}", admin_addr(n)))
        .output()
        .expect("curl");
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

/// What node `n` says of each member, for a failure's message.
fn members_summary(n: u8, ca: &std::path::Path) -> Vec<String> {
    state(n, ca)["services"][0]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} {} eligible={} {} {}",
                m["node"], m["health"], m["eligible"], m["ineligible"], m["note"]
            )
        })
        .collect()
}

/// Whether node `n` holds every member eligible (each site's agent heard, over IPv6 for
/// sin's).
fn all_eligible(n: u8, ca: &std::path::Path) -> bool {
    state(n, ca)["services"][0]["members"]
        .as_array()
        .is_some_and(|m| m.len() == 6 && m.iter().all(|m| m["eligible"] == true))
}

/// What the nodes logged since last asked, but routine lines (for a failure's message).
fn node_logs(nodes: &[DnsNode]) -> Vec<String> {
    nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.new_log_lines()
                .into_iter()
                .map(move |l| format!("node {}: {l}", i + 1))
        })
        .filter(|l| !l.contains(" INFO ") || l.contains("raft") || l.contains("store"))
        .collect()
}

/// Node `n`'s explanation of a fra client's answer (`_explain` TXT, asked from the client
/// namespace, inside `dns.debug_networks`).
fn explain(lab: &Lab, n: u8) -> Vec<String> {
    lab.within("client", || {
        ask_node(n, "_explain.s3.storage.example", "TXT")
    })
}

/// A signed S3 request over a new connection (2 s to connect, 3 s to answer): the status
/// and body, or what failed.
fn s3(to: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    use site_agent::sigv4;
    let mut stream =
        TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let payload = if body.is_empty() {
        sigv4::EMPTY_PAYLOAD_SHA256.to_string()
    } else {
        sigv4::sha256_hex(body)
    };
    let head = tests::signed_s3_head(to, method, path, &payload, body.len() as u64);
    stream.write_all(&head).map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| e.to_string())?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((status, body))
}

const OBJECT: &[u8] = b"the object every site serves";

/// GETs the object through `proxy` every 100 ms until `stop`: (attempts, failures).
fn keep_getting(proxy: SocketAddr, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let (mut attempts, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        attempts += 1;
        match s3(proxy, "GET", "/bucket/object", b"") {
            Ok((200, body)) if body == OBJECT => {}
            other => failures.push(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (attempts, failures)
}

/// Asks the resolver every 200 ms until `stop`: (attempts, failures).
fn keep_resolving(stop: Arc<AtomicBool>) -> (usize, usize) {
    let (mut attempts, mut failures) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        attempts += 1;
        if resolve("A").is_none() {
            failures += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (attempts, failures)
}

/// Polls `what` every 100 ms until it holds: the time it took (panics after `limit`).
fn until(limit: Duration, what: &str, holds: impl FnMut() -> bool) -> Duration {
    until_or(limit, what, holds, String::new)
}

/// [`until`], with `describe` saying what was seen when it panics.
fn until_or(
    limit: Duration,
    what: &str,
    mut holds: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    while !holds() {
        assert!(
            started.elapsed() < limit,
            "{what}: not after {limit:?}. {}",
            describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Blackholes (or, with `heal`, restores) the routes between fra and the other sites, in
/// both directions; the client keeps reaching fra.
fn partition(lab: &Lab, heal: bool) {
    let verb = if heal { "del" } else { "add" };
    for other in [2u8, 3] {
        for (from, to) in [(1u8, other), (other, 1)] {
            let site = SITES[usize::from(from) - 1].0;
            lab.ip(
                site,
                &["route", verb, "blackhole", &format!("10.99.{to}.0/24")],
            );
            lab.ip(
                site,
                &[
                    "-6",
                    "route",
                    verb,
                    "blackhole",
                    &format!("fd00:99:{to}::/64"),
                ],
            );
        }
    }
}

#[test]
fn a_whole_site_lost_or_partitioned_in_a_lab_of_namespaces() {
    // Dropped last: every process below is gone before the namespaces are deleted.
    let lab = Lab::new("pl", &["10.99.0.0/16", "fd00:99::/48"]);
    build(&lab);

    let pki_dir = TempDir::new("lab-pki");
    let pki = Pki::new(pki_dir.path(), "lab-ca");
    for (_, n) in SITES {
        let ips = [node_ip(n), node_ip6(n)];
        pki.issue(
            &format!("node-{n}"),
            &[&format!("node-{n}.portico")],
            &[&ips[0], &ips[1]],
        );
        pki.issue(&format!("admin-{n}"), &[], &[&ips[0], &ips[1]]);
    }
    let mut token_lines = format!("ops {OPERATOR} operator\n");
    for (site, _) in SITES {
        token_lines.push_str(&format!(
            "agent-{site} {} agent:{site}\nproxy-{site} {} proxy:{site}\n",
            token("agent", site),
            token("proxy", site)
        ));
    }
    let tokens = pki_dir.write("tokens", token_lines);

    // Real S3 nodes serving one shared directory (one storage namespace across sites, as
    // an active-active storage system presents it).
    let shared = TempDir::new("lab-storage");
    let mut storage: Vec<S3Node> = Vec::new();
    let mut members = Vec::new();
    for (site, n) in SITES {
        for i in 1..=2u8 {
            let ip = storage_ip(n, i);
            let listen = if n == 3 { format!("[{ip}]") } else { ip };
            let node = lab.within(site, || S3Node::start_shared(&listen, shared.path()));
            members.push((n, i, node.addr));
            storage.push(node);
        }
    }
    let base = deployment(&members);

    let mut nodes: Vec<DnsNode> = Vec::new();
    for (site, n) in SITES {
        let config = format!("{base}{}", node_sections(&pki_dir, &pki, &tokens, n));
        let (v4, v6) = (
            format!("{}:53", node_ip(n)),
            format!("[{}]:53", node_ip6(n)),
        );
        let admin = admin_addr(n);
        nodes.push(lab.within(site, || {
            DnsNode::start_with(
                Some(&config),
                &["--listen", &v4, "--listen", &v6, "--admin", &admin],
            )
        }));
    }

    let mut agents: Vec<Running> = Vec::new();
    let mut proxies: Vec<ProxyNode> = Vec::new();
    for (site, n) in SITES {
        let agent_token = pki_dir.write(&format!("agent-{site}.token"), token("agent", site));
        let agent_config = pki_dir.write(
            &format!("agent-{site}.toml"),
            format!(
                "{base}\n[site_agent]\nreport_to = [{}]\ntoken_file = \"{}\"\napi_ca = \"{}\"\n",
                endpoints(n),
                agent_token.display(),
                pki.ca.display()
            ),
        );
        agents.push(lab.within(site, || {
            Running(
                std::process::Command::new(binary("site-agent"))
                    .arg("--config")
                    .arg(&agent_config)
                    .args(["--site", site])
                    .env("PORTICO_S3_ACCESS_KEY", tests::ACCESS_KEY)
                    .env("PORTICO_S3_SECRET_KEY", tests::SECRET_KEY)
                    .env("PORTICO_LOG", "warn")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start site-agent"),
            )
        }));
        let proxy_token = pki_dir.write(&format!("proxy-{site}.token"), token("proxy", site));
        let proxy_config = format!(
            "{base}\n[proxy]\nsite = \"{site}\"\nstate_from = [{}]\ntoken_file = \"{}\"\napi_ca = \"{}\"\n\n\
             [[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{}\"\nservice = \"s3\"\n",
            endpoints(n),
            proxy_token.display(),
            pki.ca.display(),
            proxy_addr(n)
        );
        proxies.push(lab.within(site, || ProxyNode::start(&proxy_config, 1, &[])));
    }
    let _unbound = lab.within("client", start_unbound);

    let fra = vec!["10.99.1.11".to_owned(), "10.99.1.12".to_owned()];
    let iad = vec!["10.99.2.11".to_owned(), "10.99.2.12".to_owned()];
    let sin6 = vec!["fd00:99:3::11".to_owned(), "fd00:99:3::12".to_owned()];
    let every_node_answers = |expected: &[String]| {
        lab.within("client", || {
            (1..=3).all(|n| ask_node(n, "s3.storage.example", "A") == expected)
        })
    };

    // Everything up: the store formed (raft over TLS, sin's over IPv6), every agent's
    // reports applied on every node (sin's agent probing IPv6-only storage and reporting
    // over IPv6), the resolver primed from the NS set and glue.
    until(
        Duration::from_secs(30),
        "every node holds every member up",
        || lab.within("client", || (1..=3).all(|n| all_eligible(n, &pki.ca))),
    );
    assert!(every_node_answers(&fra));
    lab.within("client", || {
        until(
            Duration::from_secs(15),
            "the resolver answers fra's members",
            || resolve("A").as_ref() == Some(&fra),
        );
        // AAAA: only sin has IPv6 members, probed and reported over IPv6.
        until(
            Duration::from_secs(10),
            "AAAA answers sin's IPv6 members",
            || resolve("AAAA").as_ref() == Some(&sin6),
        );
        let ns = ask_node(2, "storage.example", "NS");
        assert_eq!(
            ns,
            [
                "ns-fra.storage.example.",
                "ns-iad.storage.example.",
                "ns-sin.storage.example."
            ]
        );
    });
    let put = lab.within("client", || {
        s3(proxy_addr(2), "PUT", "/bucket/object", OBJECT)
    });
    assert_eq!(put.as_ref().map(|(s, _)| *s), Ok(200), "{put:?}");
    for (site, n) in SITES {
        // (once the proxy follows the store; sin's: IPv6 to IPv6-only storage)
        until(
            Duration::from_secs(10),
            &format!("a GET through {site}'s proxy"),
            || {
                lab.within("client", || s3(proxy_addr(n), "GET", "/bucket/object", b""))
                    == Ok((200, OBJECT.to_vec()))
            },
        );
    }

    // fra's link goes down: node, agent, proxy and storage all gone at once.
    let stop = Arc::new(AtomicBool::new(false));
    let (resolving, getting) = std::thread::scope(|scope| {
        let resolving = {
            let stop = stop.clone();
            let lab = &lab;
            scope.spawn(move || lab.within("client", || keep_resolving(stop)))
        };
        let getting = {
            let stop = stop.clone();
            let lab = &lab;
            scope.spawn(move || lab.within("client", || keep_getting(proxy_addr(2), stop)))
        };
        std::thread::sleep(Duration::from_millis(500));
        lab.ip("wan", &["link", "set", "to-fra", "down"]);
        let left = lab.within("client", || {
            until(
                Duration::from_secs(15),
                "fra leaves the resolver's answers",
                || resolve("A").as_ref() == Some(&iad),
            )
        });
        eprintln!("site lab: fra's link down -> the resolver answers iad after {left:?}");
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        (resolving.join().unwrap(), getting.join().unwrap())
    });
    eprintln!(
        "site lab: while fra was lost: {} of {} resolutions failed, {} of {} GETs through iad's proxy failed",
        resolving.1,
        resolving.0,
        getting.1.len(),
        getting.0
    );
    assert_eq!(
        resolving.1, 0,
        "the resolver kept answering through the surviving NS"
    );
    assert!(
        getting.1.is_empty(),
        "GETs through iad failed: {:?}",
        getting.1
    );
    assert!(
        lab.within("client", || (2..=3).all(|n| ask_node(
            n,
            "s3.storage.example",
            "A"
        ) == iad)),
        "the surviving nodes answer iad"
    );
    // Why, as the surviving nodes explain it: fra's agent is silent and nobody reaches its
    // storage.
    let why = explain(&lab, 2);
    assert!(
        why.iter()
            .any(|l| l.contains("fra-1 site telemetry stale")
                && l.contains("unreachable from iad, sin")),
        "{why:?}"
    );

    // The link comes back: the other sites' probes reach fra's storage at once, then fra's
    // node catches up and its own agent reports again.
    lab.ip("wan", &["link", "set", "to-fra", "up"]);
    let back = until(
        Duration::from_secs(20),
        "every node answers fra again",
        || every_node_answers(&fra),
    );
    let reporting = until_or(
        Duration::from_secs(20),
        "fra's agent reports again",
        || {
            lab.within("client", || {
                (1..=3).all(|n| {
                    let view = state(n, &pki.ca);
                    all_eligible(n, &pki.ca)
                        && view["services"][0]["members"]
                            .as_array()
                            .is_some_and(|m| m.iter().all(|m| m["note"].is_null()))
                })
            })
        },
        || {
            let logs = node_logs(&nodes);
            format!(
                "{:#?}\n{}",
                lab.within("client", || (1..=3)
                    .map(|n| members_summary(n, &pki.ca))
                    .collect::<Vec<_>>()),
                logs.join("\n")
            )
        },
    );
    let status = |n: u8| lab.within("client", || ask_node(n, "_status.storage.example", "TXT"));
    let rejoined = until(
        Duration::from_secs(20),
        "fra's node rejoins the store",
        || status(1).iter().any(|l| l.contains("degraded no")),
    );
    eprintln!(
        "site lab: fra's link up -> every node answers fra after {back:?}, fra's own agent heard {reporting:?} and its node out of degraded {rejoined:?} later"
    );
    lab.within("client", || {
        until(
            Duration::from_secs(10),
            "the resolver answers fra again",
            || resolve("A").as_ref() == Some(&fra),
        )
    });

    // fra is cut off from the other sites but not from its clients.
    partition(&lab, false);
    let cut = Instant::now();
    until(Duration::from_secs(15), "fra's node degrades", || {
        status(1).iter().any(|l| l.contains("degraded since"))
    });
    let degraded = cut.elapsed();
    until(Duration::from_secs(15), "the majority drops fra", || {
        lab.within("client", || {
            (2..=3).all(|n| ask_node(n, "s3.storage.example", "A") == iad)
        })
    });
    let dropped = cut.elapsed();
    eprintln!(
        "site lab: fra partitioned -> its node degraded after {degraded:?}, iad and sin drop fra after {dropped:?}"
    );
    // fra's node answers from its last state, and fra's own clients still reach fra's
    // storage through its proxy.
    lab.within("client", || {
        assert_eq!(ask_node(1, "s3.storage.example", "A"), fra);
        assert_eq!(
            s3(proxy_addr(1), "GET", "/bucket/object", b""),
            Ok((200, OBJECT.to_vec()))
        );
    });
    assert!(
        status(2).iter().any(|l| l.contains("degraded no")),
        "the majority is not degraded: {:?}",
        status(2)
    );

    // Healed: one store again, fra answered by all.
    partition(&lab, true);
    // Converged: every member eligible on every node, and every raft link up again (fra's
    // to sin's node is IPv6).
    let converged = || {
        every_node_answers(&fra)
            && status(1).iter().any(|l| l.contains("degraded no"))
            && lab.within("client", || {
                (1..=3).all(|n| {
                    all_eligible(n, &pki.ca)
                        && api(n, &pki.ca, "/api/v1/store")["peers"]
                            .as_array()
                            .is_some_and(|p| {
                                p.len() == 2 && p.iter().all(|p| p["connected"] == true)
                            })
                })
            })
    };
    let started = Instant::now();
    while !converged() {
        if started.elapsed() > Duration::from_secs(20) {
            let views: Vec<(Vec<String>, Vec<String>, Vec<String>)> = (1..=3)
                .map(|n| {
                    (
                        lab.within("client", || ask_node(n, "s3.storage.example", "A")),
                        status(n),
                        explain(&lab, n),
                    )
                })
                .collect();
            let stores: Vec<serde_json::Value> = lab.within("client", || {
                (1..=3).map(|n| api(n, &pki.ca, "/api/v1/store")).collect()
            });
            let logs = node_logs(&nodes);
            panic!(
                "no convergence 20 s after the partition healed: {views:#?}\n{stores:#?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let healed = started.elapsed();
    eprintln!("site lab: partition healed -> converged after {healed:?}");
    drop(proxies);
    drop(agents);
    drop(nodes);
    drop(storage);
}
