//! A hostile network against the real binaries: floods and lies at the raft port, the admin
//! API and DNS over TCP, with a cluster that must keep committing and answering meanwhile;
//! and the L4 proxy as an unprivileged user, under many sessions and one greedy address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tests::{DnsNode, ProxyNode, TempDir, assert_eventually, free_port, process_usage, runtime};

use crate::CONFIG;
use crate::cluster::store_section;
use crate::pki::Pki;

/// Three voters with mutual TLS on 127.0.{51,52,53}.1, their certificates from a CA in
/// `dir` (`node-N.pem`, `node-N.key`, `portico-ca.pem`), once every node has the seeded
/// deployment.
fn tls_cluster(dir: &TempDir) -> (Vec<DnsNode>, Vec<SocketAddr>, Pki) {
    let ips: Vec<String> = (1..=3).map(|i| format!("127.0.{}.1", 50 + i)).collect();
    let pki = Pki::new(dir.path(), "portico-ca");
    let raft: Vec<(u64, SocketAddr, bool)> = (1..=3u64)
        .map(|i| {
            let ip = &ips[i as usize - 1];
            pki.node(i, ip);
            (i, format!("{ip}:{}", free_port(ip)).parse().unwrap(), false)
        })
        .collect();
    let nodes = (1..=3u64)
        .map(|id| {
            let store = store_section(id, &raft).replace("insecure_plaintext = true\n", "");
            let ip = &ips[id as usize - 1];
            DnsNode::start_with(
                Some(&format!("{CONFIG}{store}{}", pki.store_tls(id))),
                &[
                    "--listen",
                    &format!("{ip}:0"),
                    "--admin",
                    &format!("{ip}:0"),
                ],
            )
        })
        .collect::<Vec<DnsNode>>();
    assert_eventually!(
        Duration::from_secs(15),
        nodes
            .iter()
            .all(|n| n.get_json("/api/v1/config")["version"] == 1),
        "the TLS cluster did not form"
    );
    (nodes, raft.iter().map(|(_, a, _)| *a).collect(), pki)
}

/// A TLS connection to `to` presenting `cert`/`key` (of the cluster's CA), expecting the
/// server to be `server` (`node-1.portico`).
fn tls_client(
    pki: &TempDir,
    cert: &str,
    server: &str,
    to: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let dir = pki.path();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{cert}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{cert}.key"))).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("portico-ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server.to_owned()).unwrap();
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
        connector
            .connect(name, tcp)
            .await
            .expect("the TLS handshake")
    })
}

/// A raft heartbeat as protobuf: `msg_type` 8 (MsgHeartbeat), `to`, `from`, `term`.
fn heartbeat(to: u8, from: u8, term: u8) -> Vec<u8> {
    let message = [0x08, 8, 0x10, to, 0x18, from, 0x20, term];
    let mut frame = (message.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&message);
    frame
}

/// Whether the other end closed the connection (read returns end of stream or an error).
/// True when the peer closed (or reset) the connection, after whatever it sent first (a TLS
/// alert); false when it is still open after the stream's read timeout.
fn closed_by_peer(stream: &mut impl Read) -> bool {
    let mut buffer = [0u8; 512];
    for _ in 0..64 {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
    false
}

fn rejected(node: &DnsNode, reason: &str) -> u64 {
    metric(
        node,
        &format!("portico_store_peer_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn the_raft_port_takes_nothing_from_strangers_or_impostors() {
    let pki = TempDir::new("hostile-pki");
    let (nodes, raft, _ca) = tls_cluster(&pki);
    let target = raft[0];
    let (_, rss_before) = process_usage(nodes[0].pid());
    let answer = |node: &DnsNode| node.short(&["-b", "127.1.0.9", "s3.storage.example"]);
    let before = answer(&nodes[0]);

    // Writes go on through the attack: a drain and an undrain, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, committed, admin) = (stop.clone(), committed.clone(), nodes[1].admin.unwrap());
        std::thread::spawn(move || {
            let mut drained = false;
            while !stop.load(Ordering::Relaxed) {
                let action = if drained { "undrain" } else { "drain" };
                let path = format!("/api/v1/members/s3/sin-2/{action}");
                if tests::try_http(admin, "POST", &path, Some("{}")).is_ok_and(|(s, _)| s == 200) {
                    committed.fetch_add(1, Ordering::Relaxed);
                    drained = !drained;
                }
            }
        })
    };
    let started = Instant::now();
    // A stranger: a 64 MiB frame header, garbage, 500 half-open connections, in the clear.
    let attacker = |i: u32| -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::from(([127, 0, 66, 1 + (i % 200) as u8], 0)).into())?;
        socket.connect_timeout(&target.into(), Duration::from_secs(1))?;
        Ok(socket.into())
    };
    let mut header = attacker(0).unwrap();
    header.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
    header
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(closed_by_peer(&mut header), "a 64 MiB header kept open");
    let mut garbage = attacker(1).unwrap();
    let _ = garbage.write_all(&[0x16, 3, 1, 0, 200]); // a TLS record header, then junk
    let _ = garbage.write_all(&vec![0xAB; 64 * 1024]);
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(closed_by_peer(&mut garbage), "garbage kept open");
    let mut half_open: Vec<TcpStream> = (0..500).filter_map(|i| attacker(i + 2).ok()).collect();
    assert!(
        half_open.len() >= 400,
        "{} connections made",
        half_open.len()
    );
    // Every one of them is closed: over the caps at once, the rest after the handshake
    // timeout (3 s).
    for stream in &mut half_open {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let mut open_after = 0;
    for stream in &mut half_open {
        if !closed_by_peer(stream) {
            open_after += 1;
        }
    }
    assert_eq!(open_after, 0, "half-open connections left open");

    // An impostor: node 2's valid certificate, speaking as node 3.
    let mut impostor = tls_client(&pki, "node-2", "node-1.portico", target);
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        impostor.write_all(&heartbeat(1, 3, 99)).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), impostor.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the impostor's connection stayed open"
        );
    });
    // Node 2's certificate with a 64 MiB frame header: refused on the header.
    let mut greedy = tls_client(&pki, "node-2", "node-1.portico", target);
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        greedy.write_all(&heartbeat(1, 2, 1)).await.unwrap();
        greedy
            .write_all(&(64u32 << 20).to_be_bytes())
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), greedy.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a 64 MiB frame kept open"
        );
    });
    let attacked_for = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let commits = committed.load(Ordering::Relaxed);
    let (_, rss_after) = process_usage(nodes[0].pid());
    eprintln!(
        "raft port attack: {commits} writes committed in {attacked_for:?} ({:.0}/s); node 1 RSS {} -> {} KiB",
        commits as f64 / attacked_for.as_secs_f64(),
        rss_before,
        rss_after
    );
    assert!(
        commits as f64 / attacked_for.as_secs_f64() > 5.0,
        "the cluster stopped committing under the attack: {commits} in {attacked_for:?}"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        rejected(&nodes[0], "identity") >= 1,
        "the impostor was not counted"
    );
    assert!(rejected(&nodes[0], "size") >= 1);
    assert!(rejected(&nodes[0], "connections") + rejected(&nodes[0], "timeout") >= 400);
    // The impostor changed nothing: same leader, same answers, every node committing.
    assert_eq!(answer(&nodes[0]), before);
    let status: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| n.get_json("/api/v1/store")["node"].clone())
        .collect();
    assert!(
        status
            .iter()
            .all(|s| s["leader"] == status[0]["leader"] && s["term"] != 99),
        "{status:?}"
    );
}

#[test]
fn a_store_of_several_nodes_without_tls_does_not_start() {
    let dir = TempDir::new("no-tls");
    let config = format!(
        "{CONFIG}\n[store]\nnode_id = 1\nnodes = [{{ id = 1, raft = \"10.9.0.1:7001\" }}, {{ id = 2, raft = \"10.9.0.2:7001\" }}]\n"
    );
    let file = dir.write("portico.toml", &config);
    for args in [vec!["--check-config"], vec!["--listen", "127.0.0.1:0"]] {
        let output = tests::run(
            std::process::Command::new(tests::binary("gslb-dns"))
                .arg("--config")
                .arg(&file)
                .args(&args),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("`store.tls`"), "{args:?}: {stderr}");
    }
    // Plaintext asked for by name, but not on loopback: refused too.
    let plaintext = config.replace("nodes = [", "insecure_plaintext = true\nnodes = [");
    let file = dir.write("plaintext.toml", &plaintext);
    let output = tests::run(
        std::process::Command::new(tests::binary("gslb-dns"))
            .arg("--config")
            .arg(&file)
            .arg("--check-config"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`store.insecure_plaintext`") && stderr.contains("loopback"),
        "{stderr}"
    );
}

/// The value of a node's metric `name` (with its labels, if any).
fn metric(node: &DnsNode, name: &str) -> u64 {
    tests::metric(node.admin.expect("admin API enabled"), name)
}

#[test]
fn a_large_state_reaches_a_new_node_in_bounded_frames() {
    // 5,000 members and 50,000 RTT prefixes: a snapshot of several frames' worth.
    const MEMBERS: usize = 5_000;
    const PREFIXES: usize = 50_000;
    let sites = ["fra", "iad", "sin"];
    let mut bulk = String::from("\n[[service]]\nname = \"bulk\"\nmembers = [\n");
    for i in 0..MEMBERS {
        bulk.push_str(&format!(
            "    {{ site = \"{}\", node = \"b-{i}\", address = \"127.60.{}.{}\" }},\n",
            sites[i % 3],
            i / 250,
            i % 250 + 1
        ));
    }
    bulk.push_str("]\n");
    let dir = TempDir::new("large-state");
    let pki = crate::pki::Pki::new(dir.path(), "portico-ca");
    let ips = ["127.0.54.1", "127.0.55.1"];
    pki.node(1, ips[0]);
    pki.node(2, ips[1]);
    let raft: Vec<(u64, SocketAddr, bool)> = (1..=2u64)
        .map(|i| {
            let ip = ips[i as usize - 1];
            (
                i,
                format!("{ip}:{}", free_port(ip)).parse().unwrap(),
                i == 2,
            )
        })
        .collect();
    let start = |id: u64| {
        let store = store_section(id, &raft).replace("insecure_plaintext = true\n", "");
        let ip = ips[id as usize - 1];
        DnsNode::start_with(
            Some(&format!("{CONFIG}{bulk}{store}{}", pki.store_tls(id))),
            &[
                "--listen",
                &format!("{ip}:0"),
                "--admin",
                &format!("{ip}:0"),
            ],
        )
    };
    let first = start(1);
    // Every member reported on, with its reason, by its site's agent.
    for (s, site) in sites.iter().enumerate() {
        let names: Vec<String> = (s..MEMBERS).step_by(3).map(|i| format!("b-{i}")).collect();
        let members: Vec<(&str, &str, &str, &str)> = names
            .iter()
            .map(|n| ("bulk", n.as_str(), "up", "s3 GET 200 in 1 ms"))
            .collect();
        let report = tests::agent_report(site, &format!("{site}-agent"), 1, &members);
        let (status, body) = first.http("POST", "/api/v1/reports", Some(&report));
        assert_eq!(status, 200, "{body}");
    }
    for batch in 0..10 {
        let samples: Vec<String> = (0..PREFIXES / 10)
            .map(|i| {
                let n = batch * (PREFIXES / 10) + i;
                format!(
                    r#"{{"prefix":"10.{}.{}.0/24","rtt_us":{},"samples":3}}"#,
                    n / 256,
                    n % 256,
                    1000 + n
                )
            })
            .collect();
        let body = format!(r#"{{"site":"fra","samples":[{}]}}"#, samples.join(","));
        let (status, answer) = first.http("POST", "/api/v1/rtt", Some(&body));
        assert_eq!(status, 200, "{answer}");
    }
    let rtt_count = |node: &DnsNode| {
        node.get_json("/api/v1/rtt")["rtt"]["fra"]
            .as_object()
            .map_or(0, |m| m.len())
    };
    assert_eq!(rtt_count(&first), PREFIXES);

    // Node 2 joins as a learner: the leader snapshots for it and sends it in frames.
    let second = start(2);
    let (status, body) = first.http(
        "POST",
        "/api/v1/store/nodes",
        Some(&format!(
            r#"{{"id":2,"raft":"{}","learner":true}}"#,
            raft[1].1
        )),
    );
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(30),
        rtt_count(&second) == PREFIXES,
        "the learner has {} of {PREFIXES} prefixes: {}",
        rtt_count(&second),
        second.get_json("/api/v1/store")
    );
    let largest = metric(&first, "portico_store_largest_message_bytes");
    eprintln!(
        "large state: the largest raft message was {largest} octets, in {} chunked sends",
        metric(&first, "portico_store_chunked_messages_sent_total")
    );
    assert!(
        largest > 4 << 20,
        "the snapshot ({largest} octets) fits one frame: the test proves nothing"
    );
    assert!(metric(&first, "portico_store_chunked_messages_sent_total") >= 1);
    assert!(metric(&second, "portico_store_largest_message_bytes") >= largest);
    // The learner holds what the leader holds: every member's state and the RTT table.
    let members = |node: &DnsNode| {
        let state = node.get_json("/api/v1/state");
        let bulk = state["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "bulk")
            .cloned()
            .unwrap();
        bulk["members"].clone()
    };
    let on_second = members(&second);
    assert_eq!(on_second.as_array().map(Vec::len), Some(MEMBERS));
    assert_eq!(on_second, members(&first));
    assert_eq!(
        second.get_json("/api/v1/rtt")["rtt"],
        first.get_json("/api/v1/rtt")["rtt"]
    );
}

/// The certificate a node's raft port presents to a client with node 2's certificate.
fn presented_certificate(pki: &TempDir, to: SocketAddr) -> Vec<u8> {
    let stream = tls_client(pki, "node-2", "node-1.portico", to);
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn store_certificates_reload_on_sighup_and_a_bad_file_changes_nothing() {
    let dir = TempDir::new("reload-pki");
    let (nodes, raft, ca) = tls_cluster(&dir);
    let first = pem_der(&dir.path().join("node-1.pem"));
    assert_eq!(presented_certificate(&dir, raft[0]), first);
    // The certificate is renewed in place, then the node is told.
    let (renewed, _) = ca.node(1, "127.0.51.1");
    let second = pem_der(&renewed);
    assert_ne!(first, second);
    assert_eq!(
        presented_certificate(&dir, raft[0]),
        first,
        "changed before SIGHUP"
    );
    nodes[0].signal("-HUP");
    assert_eventually!(
        Duration::from_secs(5),
        presented_certificate(&dir, raft[0]) == second,
        "the renewed certificate is not in use after SIGHUP"
    );
    assert_eq!(metric(&nodes[0], "portico_tls_reloads_total"), 1);
    // A key file that cannot be read: the node keeps the certificate it has.
    std::fs::write(dir.path().join("node-1.key"), "not a key").unwrap();
    nodes[0].signal("-HUP");
    assert_eventually!(
        Duration::from_secs(5),
        metric(&nodes[0], "portico_tls_reload_errors_total") == 1,
        "the failed reload was not counted"
    );
    assert_eq!(presented_certificate(&dir, raft[0]), second);
    // And the cluster still commits, with node 1 among the voters.
    let (status, body) = nodes[0].http("POST", "/api/v1/sites/sin/drain", None);
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(5),
        nodes
            .iter()
            .all(|n| n.get_json("/api/v1/store")["node"]["applied"]
                == nodes[0].get_json("/api/v1/store")["node"]["applied"]),
        "the nodes did not converge after the reloads"
    );
    assert!(
        nodes[0]
            .new_log_lines()
            .iter()
            .any(|l| l.contains("keeping the ones loaded"))
    );
}

/// A TCP connection to `to` from the loopback address `from`.
fn tcp_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let source: SocketAddr = format!("{from}:0").parse().expect("an address");
    socket.bind(&source.into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// Whether the server has closed `stream` (it reads end-of-file or a reset now).
fn closed_now(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

/// A TCP-framed query for `name` of `qtype`.
fn framed(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

fn tcp_closed(node: &DnsNode, reason: &str) -> u64 {
    metric(
        node,
        &format!("portico_dns_tcp_closed_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn dns_over_tcp_is_bounded_per_client_per_connection_and_for_debug_names() {
    let config = CONFIG
        .replace("tcp_idle_timeout = \"1s\"", "tcp_idle_timeout = \"10s\"")
        .replace(
            "debug_queries = true",
            "debug_queries = true\ntcp_max_per_client = 64\ntcp_write_timeout = \"1s\"\n\
             debug_networks = [\"127.0.0.1/32\"]",
        );
    let node = DnsNode::start_with(
        Some(&config),
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    );
    let dns = node.dns;
    let rss_before = process_usage(node.pid()).1;

    // 2,000 connections from one address: 64 stay open, the rest are closed at once.
    let mut held: Vec<TcpStream> = (0..2_000)
        .filter_map(|_| tcp_from("127.0.0.1", dns).ok())
        .collect();
    let attempted = held.len() as u64;
    assert!(attempted >= 1_900, "only {attempted} connects went through");
    assert_eventually!(
        Duration::from_secs(10),
        tcp_closed(&node, "per_client") >= attempted - 64,
        "the connections over the per-client cap are turned away: {}",
        tcp_closed(&node, "per_client")
    );
    std::thread::sleep(Duration::from_millis(300));
    let open = held
        .iter_mut()
        .map(closed_now)
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 64, "the per-client cap holds");
    assert_eq!(metric(&node, "portico_dns_tcp_connections"), 64);
    // Another address still gets its answers over TCP; the capped one does not.
    let out = tests::dig_at(dns, &["-b", "127.0.0.2", "+tcp", "static.storage.example"]);
    assert!(out.contains("127.0.0.53"), "{out}");
    let out = tests::dig_at(dns, &["-b", "127.0.0.1", "+tcp", "static.storage.example"]);
    assert!(
        !out.contains("127.0.0.53"),
        "the capped address is over its limit: {out}"
    );
    let rss_held = process_usage(node.pid()).1;
    drop(held);
    assert_eventually!(
        Duration::from_secs(5),
        metric(&node, "portico_dns_tcp_connections") == 0,
        "closed connections are given back"
    );

    // 10,000 pipelined queries for a 570-octet answer, never reading a reply: the server's
    // writes stall, and after tcp_write_timeout it closes the connection.
    let mut greedy = tcp_from("127.0.0.3", dns).expect("connect");
    greedy
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let batch: Vec<u8> = (0..10_000u16)
        .flat_map(|id| framed(id, "big.storage.example", 16))
        .collect();
    let started = Instant::now();
    let writer = {
        let mut greedy = greedy.try_clone().unwrap();
        std::thread::spawn(move || greedy.write_all(&batch).is_ok())
    };
    assert_eventually!(
        Duration::from_secs(15),
        tcp_closed(&node, "write_timeout") == 1,
        "a client that never reads loses its connection"
    );
    let bounded_after = started.elapsed();
    let _ = writer.join();
    // The replies the kernel buffered come first, then the end of the stream (or a reset).
    greedy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = Vec::new();
    if let Err(e) = greedy.read_to_end(&mut sink) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server closed the connection: {e}"
        );
    }
    assert_eq!(metric(&node, "portico_dns_tcp_connections"), 0);

    // A client that reads gets its 10,000 answers (dns.tcp_max_queries), then the server
    // closes the connection.
    let mut reader = tcp_from("127.0.0.4", dns).expect("connect");
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = {
        let mut stream = reader.try_clone().unwrap();
        std::thread::spawn(move || {
            for chunk in 0..11u16 {
                let batch: Vec<u8> = (0..1_000u16)
                    .flat_map(|i| framed(chunk * 1_000 + i, "static.storage.example", 1))
                    .collect();
                if stream.write_all(&batch).is_err() {
                    break;
                }
            }
        })
    };
    let mut replies = 0u32;
    let mut len = [0u8; 2];
    while reader.read_exact(&mut len).is_ok() {
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        reader.read_exact(&mut reply).expect("a whole reply");
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), replies as u16);
        replies += 1;
    }
    let _ = writer.join();
    assert_eq!(replies, 10_000, "answers up to the per-connection limit");
    assert_eventually!(
        Duration::from_secs(5),
        tcp_closed(&node, "query_limit") == 1,
        "counted as closed at the query limit"
    );

    // _explain and _status answer only dns.debug_networks (127.0.0.1/32 here).
    for name in ["_explain.s3.storage.example", "_status.storage.example"] {
        let out = tests::dig_at(dns, &["-b", "127.0.0.2", name, "TXT"]);
        assert!(
            out.contains("status: REFUSED"),
            "{name} from 127.0.0.2: {out}"
        );
        let out = tests::dig_at(dns, &["-b", "127.0.0.1", name, "TXT"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("TXT\t"),
            "{name}: {out}"
        );
    }
    eprintln!(
        "dns tcp: {attempted} connects from one address, 64 held; RSS {rss_before} KiB before, \
         {rss_held} KiB holding them; a non-reading pipeliner closed after {bounded_after:?}"
    );
}

/// The size of the pipe another process holds as `path` (`/proc/<pid>/fd/<n>`), opened
/// without waiting for a writer.
fn pipe_size(path: &std::path::Path) -> Option<i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .ok()?;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETPIPE_SZ).ok()
}

/// The pipes process `pid` has open (`pipe:[inode]`).
fn pipe_names(pid: u32) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let link = std::fs::read_link(entry.path()).ok()?;
            let link = link.to_string_lossy().into_owned();
            link.starts_with("pipe:").then(|| (link, entry.path()))
        })
        .collect()
}

/// Pipes of process `pid` but those in `inherited`: how many, and the smallest size
/// (`F_GETPIPE_SZ`, read through `/proc/<pid>/fd`), or `None` when it has none.
fn pipes_of(pid: u32, inherited: &std::collections::HashSet<String>) -> Option<(usize, usize)> {
    let mut seen = std::collections::HashSet::new();
    let mut smallest = usize::MAX;
    for (link, path) in pipe_names(pid) {
        if inherited.contains(&link) || !seen.insert(link) {
            continue;
        }
        if let Some(size) = pipe_size(&path) {
            smallest = smallest.min(size as usize);
        }
    }
    (!seen.is_empty()).then_some((seen.len(), smallest))
}

#[test]
fn the_l4_proxy_as_an_unprivileged_user_keeps_full_pipes_and_caps_one_address() {
    const SESSIONS: usize = 200;
    const BYTES: usize = 2 * 1024 * 1024;
    const NOBODY: u32 = 65534;
    // An echo member.
    let rt = runtime();
    let member = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.23.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    });
    let listen = crate::proxy::proxy_address("127.0.23.100");
    let metrics = crate::proxy::proxy_address("127.0.23.101");
    let base = crate::proxy::deployment(&[("files", vec![("echo", member)])]);
    let config = crate::proxy::tcp_proxy_config(&base, listen, &format!("metrics = \"{metrics}\""));
    let proxy = ProxyNode::start_as(Some(NOBODY), &config, 1, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "the proxy runs unprivileged"
    );

    // 200 sessions at once, each echoing 2 MiB, while the proxy's pipes are watched (but
    // the standard error pipe and any the harness left open in it: the ones of a new
    // process that has not forwarded a byte yet, but the pool's first).
    let pool_pipe_size = 1024 * 1024;
    let inherited: std::collections::HashSet<String> = pipe_names(proxy.pid())
        .into_iter()
        .filter(|(_, path)| pipe_size(path) != Some(pool_pipe_size))
        .map(|(link, _)| link)
        .collect();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watching, pid) = (watching.clone(), proxy.pid());
        std::thread::spawn(move || {
            let (mut most, mut smallest, mut samples) = (0, usize::MAX, 0);
            while watching.load(Ordering::SeqCst) {
                if let Some((count, size)) = pipes_of(pid, &inherited) {
                    most = most.max(count);
                    smallest = smallest.min(size);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (most, smallest, samples)
        })
    };
    let started = Instant::now();
    let echoed: Vec<usize> = rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(SESSIONS));
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    let source = format!("127.0.24.{}:0", i % 100 + 1).parse().unwrap();
                    socket.bind(source).unwrap();
                    let stream = socket.connect(listen).await.expect("connect");
                    let (mut read, mut write) = stream.into_split();
                    barrier.wait().await;
                    let pattern = i as u8;
                    let sender = tokio::spawn(async move {
                        let chunk = vec![pattern; 64 * 1024];
                        for _ in 0..BYTES / chunk.len() {
                            write.write_all(&chunk).await.unwrap();
                        }
                        write.shutdown().await.unwrap();
                    });
                    let mut back = Vec::with_capacity(BYTES);
                    read.read_to_end(&mut back).await.unwrap();
                    sender.await.unwrap();
                    assert!(
                        back.iter().all(|&b| b == pattern),
                        "session {i}'s own bytes"
                    );
                    back.len()
                })
            })
            .collect();
        let mut echoed = Vec::new();
        for session in sessions {
            echoed.push(session.await.unwrap());
        }
        echoed
    });
    let took = started.elapsed();
    watching.store(false, Ordering::SeqCst);
    let (most_pipes, smallest_pipe, samples) = watcher.join().unwrap();
    assert!(
        echoed.iter().all(|&n| n == BYTES),
        "every session echoed in full"
    );
    assert!(samples > 0, "the pipes were watched");
    assert!(
        smallest_pipe >= 64 * 1024,
        "no pipe under 64 KiB (the kernel's 8 KiB fallback): smallest {smallest_pipe}"
    );
    let budget = tests::metric(metrics, "portico_proxy_pipes_max") as usize;
    assert!(
        (1..=48).contains(&budget),
        "within three quarters of pipe-user-pages-soft: {budget}"
    );
    assert!(
        most_pipes <= budget + 2,
        "{most_pipes} pipes, budget {budget}"
    );
    assert_eq!(
        tests::metric(metrics, "portico_proxy_pipes_undersized_total"),
        0
    );
    assert_eq!(
        tests::metric(metrics, "portico_proxy_pipe_size_bytes"),
        1024 * 1024,
        "the size asked for, read back"
    );
    let copied = tests::metric(metrics, "portico_proxy_copied_chunks_total");

    // One address opens 20,000 connections: it keeps max_per_client (1024 by default), the
    // rest are closed at once, and another address still gets through.
    let mut open: Vec<TcpStream> = Vec::new();
    let mut connected = 0u32;
    for i in 0..20_000u32 {
        if let Ok(stream) = tcp_from("127.0.23.10", listen) {
            connected += 1;
            open.push(stream);
        }
        if i % 1_000 == 999 {
            std::thread::sleep(Duration::from_millis(50));
            open.retain_mut(|s| !closed_now(s));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    open.retain_mut(|s| !closed_now(s));
    assert!(
        connected >= 19_000,
        "only {connected} connects went through"
    );
    assert_eq!(open.len(), 1024, "the per-client cap holds");
    let refused = tests::metric(
        metrics,
        "portico_proxy_connections_refused_total{listener=\"tcp\",reason=\"per_client\"}",
    );
    assert_eq!(refused, u64::from(connected) - 1024);
    let mut other = tcp_from("127.0.23.11", listen).expect("another address connects");
    other.write_all(b"still served\n").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut echo = [0u8; 13];
    other.read_exact(&mut echo).expect("echoed");
    assert_eq!(&echo, b"still served\n");
    eprintln!(
        "proxy as uid {NOBODY}: {SESSIONS} sessions x {BYTES} B echoed in {took:?}; at most \
         {most_pipes} pipes (budget {budget}), smallest {smallest_pipe} B; {copied} chunks \
         copied; {connected} connects from one address, {} kept, {refused} refused",
        open.len()
    );
}
