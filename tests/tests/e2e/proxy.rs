//! The per-site proxy against real clients and servers: boto3 to s3s-fs nodes (SigV4
//! checked) through the S3 listener, `smbclient` to samba and `nfs-cp` (libnfs) to a
//! user-space NFS server through L4 listeners, rendezvous persistence across proxies and
//! node loss, a member killed mid-download, a drain from the store, and abuse.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use site_agent::sigv4;
use tests::{
    ACCESS_KEY, DnsNode, ProxyNode, S3Node, SECRET_KEY, TempDir, assert_eventually, free_port,
    http, run,
};

/// A deployment of one site (`fra`) with `services` (name, members as (node, address)).
pub(crate) fn deployment(services: &[(&str, Vec<(&str, SocketAddr)>)]) -> String {
    let mut text = String::from(
        "[zone]\norigin = \"storage.example.\"\nns = [\"ns1\"]\nrecords = [\"ns1 3600 IN A 127.0.0.1\"]\n\n\
         [[site]]\nname = \"fra\"\nlocation = { lat = 50.1, lon = 8.7 }\nclient_networks = [\"127.1.0.0/16\"]\n\n\
         [[site]]\nname = \"iad\"\nlocation = { lat = 39.0, lon = -77.5 }\nclient_networks = [\"127.2.0.0/16\"]\n",
    );
    for (name, members) in services {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{name}\"\nttl = 0\nmembers = [\n"
        ));
        for (node, address) in members {
            text.push_str(&format!(
                "    {{ site = \"fra\", node = \"{node}\", address = \"{}\", port = {} }},\n",
                address.ip(),
                address.port()
            ));
        }
        text.push_str("]\n");
    }
    text
}

pub(crate) fn proxy_address(ip: &str) -> SocketAddr {
    format!("{ip}:{}", free_port(ip)).parse().unwrap()
}

/// A signed S3 request over one new connection to `to`; returns (status, head, body).
fn s3_request(to: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(&signed_head(to, method, path, body))
        .unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream)
}

/// A signed head for `body` (its hash signed too).
fn signed_head(to: SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let payload = if body.is_empty() {
        sigv4::EMPTY_PAYLOAD_SHA256.to_string()
    } else {
        sigv4::sha256_hex(body)
    };
    tests::signed_s3_head(to, method, path, &payload, body.len() as u64)
}

/// Reads one response (Content-Length framed) to its end.
fn read_response<S: Read>(stream: &mut S) -> (u16, String, Vec<u8>) {
    let (status, head, length, mut reader) = read_head(stream);
    let mut body = vec![0u8; length];
    if let Err(e) = reader.read_exact(&mut body) {
        panic!("{e}: the body of {length} bytes after {head:?} did not arrive");
    }
    (status, head, body)
}

fn read_head<S: Read>(stream: &mut S) -> (u16, String, usize, BufReader<&mut S>) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    (status, head, length, reader)
}

/// Runs a Python script with Debian's python3 (and its python3-boto3).
fn python(script: &str, args: &[&str]) -> String {
    let dir = TempDir::new("py");
    let path = dir.write("client.py", script);
    let output = run(Command::new("/usr/bin/python3").arg(&path).args(args));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

const BOTO3_CLIENT: &str = r#"
import boto3, hashlib, json, os, sys
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, work, access_key, secret_key = sys.argv[1:5]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=access_key, aws_secret_access_key=secret_key,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
small = os.urandom(1000)
s3.put_object(Bucket="bucket", Key="small.bin", Body=small)
medium = os.urandom(3 * 1024 * 1024)
s3.put_object(Bucket="bucket", Key="medium.bin", Body=medium)
assert s3.head_object(Bucket="bucket", Key="medium.bin")["ContentLength"] == len(medium)
assert s3.get_object(Bucket="bucket", Key="small.bin")["Body"].read() == small
ranged = s3.get_object(Bucket="bucket", Key="medium.bin", Range="bytes=100-199")["Body"].read()
assert ranged == medium[100:200], "ranged GET"

path = os.path.join(work, "big.bin")
sent = hashlib.sha256()
with open(path, "wb") as f:
    for _ in range(256):
        chunk = os.urandom(1 << 20)
        sent.update(chunk)
        f.write(chunk)
transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=32 << 20, max_concurrency=4)
s3.upload_file(path, "bucket", "big.bin", Config=transfer)
back = path + ".back"
s3.download_file("bucket", "big.bin", back, Config=transfer)
received = hashlib.sha256()
with open(back, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        received.update(chunk)
size = s3.head_object(Bucket="bucket", Key="big.bin")["ContentLength"]
print(json.dumps({"sent": sent.hexdigest(), "received": received.hexdigest(), "size": size}))
"#;

#[test]
fn s3_through_the_proxy_with_boto3_small_objects_on_flash_large_on_capacity() {
    let shared = TempDir::new("s3-shared");
    let flash = S3Node::start_shared("127.0.11.1", shared.path());
    let capacity = S3Node::start_shared("127.0.11.2", shared.path());
    let base = deployment(&[
        ("s3-flash", vec![("fra-flash", flash.addr)]),
        ("s3-capacity", vec![("fra-capacity", capacity.addr)]),
    ]);
    let dns = DnsNode::start(&base, false);
    let listen = proxy_address("127.0.11.100");
    let metrics = proxy_address("127.0.11.100");
    let config = format!(
        r#"{base}
[proxy]
site = "fra"
state_from = ["{admin}"]
rtt_report_interval = "500ms"
metrics = "{metrics}"
access_log = true

[[proxy.listener]]
name = "s3"
protocol = "s3"
listen = "{listen}"
service = "s3-flash"

# Multipart uploads stay on one pool, whatever their parts' sizes.
[[proxy.listener.route]]
service = "s3-capacity"
query = ["uploads", "uploadId"]

[[proxy.listener.route]]
service = "s3-capacity"
min_content_length = 1048576
"#,
        admin = dns.admin.unwrap()
    );
    let proxy = ProxyNode::start(&config, 1, &[]);
    let work = TempDir::new("boto3");
    let output = python(
        BOTO3_CLIENT,
        &[
            &format!("http://{listen}"),
            work.path().to_str().unwrap(),
            ACCESS_KEY,
            SECRET_KEY,
        ],
    );
    let result: serde_json::Value = serde_json::from_str(output.trim()).unwrap();
    assert_eq!(result["size"], 256 * 1024 * 1024);
    assert_eq!(
        result["sent"], result["received"],
        "the 256 MiB object comes back intact"
    );

    let flash_log = flash.access_log();
    let capacity_log = capacity.access_log();
    assert!(
        flash_log.contains(&"PUT /bucket/small.bin 1000".to_string()),
        "the small object lands on the flash pool: {flash_log:?}"
    );
    assert!(
        capacity_log.contains(&"PUT /bucket/medium.bin 3145728".to_string()),
        "the 3 MiB object lands on the capacity pool: {capacity_log:?}"
    );
    let parts = capacity_log
        .iter()
        .filter(|l| l.starts_with("PUT /bucket/big.bin?") && l.contains("uploadId="))
        .count();
    assert_eq!(parts, 8, "all 8 parts go to capacity: {capacity_log:?}");
    assert!(
        capacity_log
            .iter()
            .any(|l| l.starts_with("POST /bucket/big.bin?uploads"))
    );
    assert!(
        !flash_log
            .iter()
            .any(|l| l.contains("uploadId") || l.starts_with("PUT /bucket/medium.bin")),
        "nothing large reached flash: {flash_log:?}"
    );
    let peak = proxy.peak_rss_kib();
    assert!(
        peak > 0 && peak < 64 * 1024,
        "proxy peak RSS {peak} KiB after 256 MiB up and down"
    );
    let (status, text) = http(metrics, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        text.contains("portico_proxy_routes_total{listener=\"s3\",service=\"s3-capacity\"}"),
        "{text}"
    );
    assert!(text.contains("portico_proxy_requests_total{listener=\"s3\",code=\"200\"}"));
    assert!(
        text.lines().any(|l| l == "portico_proxy_store_connected 1"),
        "{text}"
    );
    // The proxy posted the RTT of its clients (127.0.0.1) to the store.
    assert_eventually!(
        Duration::from_secs(10),
        dns.get_json("/api/v1/rtt")["rtt"]["fra"]
            .as_object()
            .is_some_and(|prefixes| prefixes.contains_key("127.0.0.0/24")),
        "no RTT from the proxy in the store: {}",
        dns.get_json("/api/v1/rtt")
    );
}

#[test]
fn s3_over_tls_at_the_proxy_and_towards_the_members() {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let node = S3Node::start("127.0.21.10");
    let pki = TempDir::new("proxy-pki");
    let ca = crate::cluster::certificates(&pki, "s3-ca", &[(1, "127.0.21.1")]);
    let tls_listen = proxy_address("127.0.21.1");
    let plain_listen = proxy_address("127.0.21.2");
    let base = deployment(&[
        ("s3", vec![("n1", node.addr)]),
        ("s3-tls", vec![("p1", tls_listen)]),
    ]);
    // P1 terminates TLS in front of the node; P2 speaks TLS to its member, P1.
    let terminating = format!(
        "{base}\n[proxy]\nsite = \"fra\"\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{tls_listen}\"\nservice = \"s3\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
        pki.path().join("node-1.pem").display(),
        pki.path().join("node-1.key").display()
    );
    let originating = format!(
        "{base}\n[proxy]\nsite = \"fra\"\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{plain_listen}\"\nservice = \"s3-tls\"\nbackend_tls = {{ ca = \"{ca}\" }}\n"
    );
    let _p1 = ProxyNode::start(&terminating, 1, &[]);
    let _p2 = ProxyNode::start(&originating, 1, &[]);
    // plain -> P2 -> TLS -> P1 -> node: the signature (for P2's address) still verifies.
    let (status, head, _) = s3_request(plain_listen, "PUT", "/bucket/tls.txt", b"over tls");
    assert_eq!(status, 200, "{head}");
    // HTTPS straight to P1.
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(tls_listen.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(tls_listen).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(&signed_head(tls_listen, "GET", "/bucket/tls.txt", b""))
        .unwrap();
    let (status, head, body) = read_response(&mut tls);
    assert_eq!((status, body.as_slice()), (200, &b"over tls"[..]), "{head}");
    // Plain HTTP at the TLS listener gets no HTTP answer.
    let answer = exchange_until_close(tls_listen, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!answer.contains("HTTP/1.1"), "{answer}");
}

#[test]
fn smb_and_nfs_through_the_l4_proxy() {
    use nfsserve::tcp::{NFSTcp, NFSTcpListener};
    let smbd = crate::probes::Smbd::start("127.0.12.1");
    let nfs_ip = "127.0.12.2";
    let nfs_port = free_port(nfs_ip);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let mut listener =
            NFSTcpListener::bind(&format!("{nfs_ip}:{nfs_port}"), crate::probes::TestExport)
                .await
                .expect("nfsserve bind");
        listener.with_export_name("export");
        let _ = listener.handle_forever().await;
    });
    let nfs: SocketAddr = format!("{nfs_ip}:{nfs_port}").parse().unwrap();
    let smb_listen = proxy_address("127.0.12.100");
    let nfs_listen = proxy_address("127.0.12.100");
    let config = format!(
        r#"{}
[proxy]
site = "fra"

[[proxy.listener]]
name = "smb"
protocol = "tcp"
listen = "{smb_listen}"
service = "smb"

[[proxy.listener]]
name = "nfs"
protocol = "tcp"
listen = "{nfs_listen}"
service = "nfs"
"#,
        deployment(&[
            ("smb", vec![("fra-smb", smbd.addr)]),
            ("nfs", vec![("fra-nfs", nfs)]),
        ])
    );
    let _proxy = ProxyNode::start(&config, 2, &[]);

    let work = TempDir::new("smbclient");
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4099) as u8)
        .collect();
    let local = work.write("up.bin", &payload);
    let back = work.path().join("down.bin");
    let output = run(Command::new("smbclient")
        .args(["-p", &smb_listen.port().to_string()])
        .arg(format!("//{}/share", smb_listen.ip()))
        .args(["-N", "-c"])
        .arg(format!(
            "put {} through-proxy.bin; get through-proxy.bin {}",
            local.display(),
            back.display()
        )));
    assert!(
        output.status.success(),
        "smbclient through the proxy: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(&back).unwrap(), payload, "SMB round trip");
    assert_eq!(
        std::fs::read(smbd.dir.path().join("share/through-proxy.bin")).unwrap(),
        payload,
        "the file is on the samba share"
    );

    let copied = work.path().join("hello.txt");
    let url = format!(
        "nfs://{}/export/hello.txt?nfsport={port}&mountport={port}&version=3",
        nfs_listen.ip(),
        port = nfs_listen.port()
    );
    let output = run(Command::new("nfs-cp").arg(&url).arg(&copied));
    assert!(
        output.status.success(),
        "nfs-cp {url}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(&copied).unwrap(), crate::probes::HELLO);
}

/// A TCP server that greets each connection with its name, then echoes lines; `kill`
/// closes its listener and every open connection, as a node that died.
pub(crate) struct IdentityServer {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl IdentityServer {
    pub(crate) fn start(name: &'static str, ip: &str) -> IdentityServer {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (count, halt, streams) = (accepted.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                streams.lock().unwrap().push(stream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = stream.write_all(format!("{name}\n").as_bytes());
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        let _ = stream.write_all(line.as_bytes());
                        line.clear();
                    }
                    // The client is done: close (the clone kept for `kill` holds it open).
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        IdentityServer {
            addr,
            accepted,
            stop,
            open,
        }
    }

    fn kill(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // The listener is closed once the accept loop has seen the stop.
        assert_eventually!(
            Duration::from_secs(5),
            TcpStream::connect(self.addr).is_err(),
            "{} still accepts",
            self.addr
        );
    }
}

/// Connects from `source` to `to` and reads the greeting.
pub(crate) fn connect_from(source: IpAddr, to: SocketAddr) -> (TcpStream, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut name = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        name.push(byte[0]);
    }
    (stream, String::from_utf8(name).unwrap())
}

pub(crate) fn tcp_proxy_config(base: &str, listen: SocketAddr, extra: &str) -> String {
    format!(
        "{base}\n[proxy]\nsite = \"fra\"\n{extra}\n[[proxy.listener]]\nname = \"tcp\"\nprotocol = \"tcp\"\nlisten = \"{listen}\"\nservice = \"files\"\n"
    )
}

#[test]
fn l4_persistence_across_connections_and_proxies_and_node_loss() {
    let servers = [
        IdentityServer::start("p1", "127.0.13.1"),
        IdentityServer::start("p2", "127.0.13.2"),
        IdentityServer::start("p3", "127.0.13.3"),
    ];
    let base = deployment(&[(
        "files",
        vec![
            ("p1", servers[0].addr),
            ("p2", servers[1].addr),
            ("p3", servers[2].addr),
        ],
    )]);
    let a = proxy_address("127.0.13.100");
    let b = proxy_address("127.0.13.101");
    let _proxy_a = ProxyNode::start(&tcp_proxy_config(&base, a, ""), 1, &[]);
    let _proxy_b = ProxyNode::start(&tcp_proxy_config(&base, b, ""), 1, &[]);
    let clients: Vec<IpAddr> = (1..=40)
        .map(|i| format!("127.0.14.{i}").parse().unwrap())
        .collect();
    let member_of = |client: IpAddr| -> String {
        let names: Vec<String> = [a, a, a, b, b, b]
            .iter()
            .map(|proxy| connect_from(client, *proxy).1)
            .collect();
        assert!(
            names.iter().all(|n| *n == names[0]),
            "{client} moved between connections or proxies: {names:?}"
        );
        names[0].clone()
    };
    let before: Vec<String> = clients.iter().map(|c| member_of(*c)).collect();
    for name in ["p1", "p2", "p3"] {
        assert!(
            before.iter().any(|n| n == name),
            "{name} got no client: {before:?}"
        );
    }
    servers[0].kill();
    let after: Vec<String> = clients.iter().map(|c| member_of(*c)).collect();
    for ((client, was), is) in clients.iter().zip(&before).zip(&after) {
        if was == "p1" {
            assert_ne!(is, "p1", "{client} still on the dead member");
        } else {
            assert_eq!(was, is, "{client} moved though its member lives");
        }
    }
}

#[test]
fn backend_killed_mid_download_is_never_a_clean_success() {
    let shared = TempDir::new("s3-shared");
    let mut nodes = [
        S3Node::start_shared("127.0.16.1", shared.path()),
        S3Node::start_shared("127.0.16.2", shared.path()),
    ];
    let base = deployment(&[("s3", vec![("n1", nodes[0].addr), ("n2", nodes[1].addr)])]);
    let listen = proxy_address("127.0.16.100");
    let config = format!(
        "{base}\n[proxy]\nsite = \"fra\"\neject_after = 1\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{listen}\"\nservice = \"s3\"\n"
    );
    let _proxy = ProxyNode::start(&config, 1, &[]);
    let object: Vec<u8> = (0..48 * 1024 * 1024u32)
        .map(|i| (i ^ (i >> 11)) as u8)
        .collect();
    let (status, head, _) = s3_request(listen, "PUT", "/bucket/big.bin", &object);
    assert_eq!(status, 200, "{head}");

    let mut stream = TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&signed_head(listen, "GET", "/bucket/big.bin", b""))
        .unwrap();
    let (status, head, length, mut reader) = read_head(&mut stream);
    assert_eq!((status, length), (200, object.len()), "{head}");
    let mut first = vec![0u8; 1024 * 1024];
    reader.read_exact(&mut first).unwrap();
    let serving = nodes
        .iter()
        .position(|n| {
            n.access_log()
                .iter()
                .any(|l| l.starts_with("GET /bucket/big.bin"))
        })
        .expect("one node serves the download");
    nodes[serving].kill();
    let mut rest = Vec::new();
    let outcome = reader.read_to_end(&mut rest);
    let received = first.len() + rest.len();
    assert!(
        received < object.len(),
        "a download cut by a dead member must not complete ({received} bytes, {outcome:?})"
    );
    // The next request goes to the living member and completes.
    let (status, head, body) = s3_request(listen, "GET", "/bucket/big.bin", b"");
    assert_eq!(status, 200, "{head}");
    assert!(
        body == object,
        "the retry on the other member is complete and intact"
    );
    let other = 1 - serving;
    assert_eq!(
        nodes[other]
            .access_log()
            .iter()
            .filter(|l| l.starts_with("GET /bucket/big.bin"))
            .count(),
        1
    );
}

#[test]
fn a_drain_from_the_store_stops_new_connections_and_lets_open_ones_finish() {
    let servers = [
        IdentityServer::start("d1", "127.0.15.1"),
        IdentityServer::start("d2", "127.0.15.2"),
    ];
    let base = deployment(&[(
        "files",
        vec![("d1", servers[0].addr), ("d2", servers[1].addr)],
    )]);
    // The store wants tokens for everything: the proxy follows it with its own.
    let secrets = TempDir::new("tokens");
    let tokens = secrets.write(
        "tokens",
        "ops ops-token-0123456789\nproxy proxy-token-0123456789\n",
    );
    let proxy_token = secrets.write("proxy.token", "proxy-token-0123456789\n");
    let mut dns = DnsNode::start(
        &format!(
            "{base}\n[admin]\ntoken_file = \"{}\"\nreads = \"token\"\n",
            tokens.display()
        ),
        false,
    );
    let listen = proxy_address("127.0.15.100");
    let metrics = proxy_address("127.0.15.100");
    let extra = format!(
        "state_from = [\"{}\"]\ndrain_timeout = \"20s\"\nmetrics = \"{metrics}\"\ntoken_file = \"{}\"",
        dns.admin.unwrap(),
        proxy_token.display()
    );
    let mut proxy = ProxyNode::start(&tcp_proxy_config(&base, listen, &extra), 1, &[]);
    // A client whose sessions land on d1, with one session kept open.
    let client = (1..=50)
        .map(|i| format!("127.0.17.{i}").parse::<IpAddr>().unwrap())
        .find(|c| connect_from(*c, listen).1 == "d1")
        .expect("some client lands on d1");
    let (mut open, name) = connect_from(client, listen);
    assert_eq!(name, "d1");
    assert_eventually!(
        Duration::from_secs(5),
        http(metrics, "GET", "/metrics", None)
            .1
            .lines()
            .any(|l| l == "portico_proxy_store_connected 1"),
        "the proxy did not connect to the store with its token"
    );
    let (status, body) = tests::http_with(
        dns.admin.unwrap(),
        "POST",
        "/api/v1/members/files/d1/drain",
        Some(r#"{"why":"disk swap"}"#),
        &[("Authorization", "Bearer ops-token-0123456789")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(5),
        connect_from(client, listen).1 == "d2",
        "new sessions of {client} still reach the drained member"
    );
    let accepted = servers[0].accepted.load(Ordering::SeqCst);
    for i in 1..=30 {
        let source: IpAddr = format!("127.0.18.{i}").parse().unwrap();
        assert_eq!(connect_from(source, listen).1, "d2");
    }
    assert_eq!(
        servers[0].accepted.load(Ordering::SeqCst),
        accepted,
        "no new connection reached the drained member"
    );
    // The session opened before the drain still works.
    open.write_all(b"still here\n").unwrap();
    let mut echo = String::new();
    BufReader::new(&mut open).read_line(&mut echo).unwrap();
    assert_eq!(echo, "still here\n");

    // The store is lost: the proxy keeps the last state it had, and says so.
    dns.kill();
    assert_eventually!(
        Duration::from_secs(5),
        http(metrics, "GET", "/metrics", None)
            .1
            .lines()
            .any(|l| l == "portico_proxy_store_connected 0"),
        "the proxy does not report the lost store"
    );
    assert_eq!(
        connect_from(client, listen).1,
        "d2",
        "the drain holds without the store"
    );

    // The proxy's own drain: SIGTERM stops accepting but waits for the open session.
    proxy.terminate();
    assert_eventually!(
        Duration::from_secs(5),
        TcpStream::connect(listen).is_err(),
        "the draining proxy still accepts"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        proxy.try_wait().is_none(),
        "the proxy left before its session ended"
    );
    open.write_all(b"during the drain\n").unwrap();
    let mut echo = String::new();
    BufReader::new(&mut open).read_line(&mut echo).unwrap();
    assert_eq!(echo, "during the drain\n");
    drop(open);
    assert_eventually!(
        Duration::from_secs(5),
        proxy.try_wait().is_some_and(|status| status.success()),
        "the proxy did not exit cleanly once its last session ended"
    );
}

/// Sends `request` on a new connection and reads until the proxy closes it (or 5 s).
fn exchange_until_close(to: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let result = stream.read_to_end(&mut response);
    assert!(result.is_ok(), "the connection was not closed: {result:?}");
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn slowloris_oversized_heads_and_smuggling_are_refused_while_normal_clients_go_on() {
    let node = S3Node::start("127.0.19.1");
    let base = deployment(&[("s3", vec![("n1", node.addr)])]);
    let listen = proxy_address("127.0.19.100");
    let config = format!(
        "{base}\n[proxy]\nsite = \"fra\"\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{listen}\"\nservice = \"s3\"\nheader_timeout = \"1s\"\nbody_idle_timeout = \"1s\"\nmax_header_bytes = 4096\n"
    );
    let _proxy = ProxyNode::start(&config, 1, &[]);
    let (status, head, _) = s3_request(listen, "PUT", "/bucket/hello.txt", b"hello");
    assert_eq!(status, 200, "{head}");

    // A normal client keeps going throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (status, _, body) = s3_request(listen, "GET", "/bucket/hello.txt", b"");
                statuses.push((status, body == b"hello"));
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        })
    };

    // Slowloris: heads that trickle in get 408 after the header timeout.
    let started = Instant::now();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(listen).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(250)))
                    .unwrap();
                let _ = stream.write_all(b"GET /bucket/hello.txt HTTP/1.1\r\nHost: x\r\n");
                let mut response = Vec::new();
                for _ in 0..40 {
                    if stream.write_all(b"X").is_err() {
                        break;
                    }
                    let mut buffer = [0u8; 1024];
                    match stream.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => response.extend_from_slice(&buffer[..n]),
                        Err(_) => {}
                    }
                }
                String::from_utf8_lossy(&response).into_owned()
            })
        })
        .collect();
    for handle in slow {
        let response = handle.join().unwrap();
        assert!(
            response.starts_with("HTTP/1.1 408 ")
                && response.contains("<Code>RequestTimeout</Code>"),
            "slowloris: {response:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(8));

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let response = exchange_until_close(listen, big.as_bytes());
    assert!(
        response.starts_with("HTTP/1.1 431 ") && response.contains("RequestHeaderSectionTooLarge"),
        "{response}"
    );
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(5000));
    let response = exchange_until_close(listen, long_line.as_bytes());
    assert!(response.starts_with("HTTP/1.1 414 "), "{response}");
    let many = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: 1\r\n".repeat(120)
    );
    assert!(exchange_until_close(listen, many.as_bytes()).starts_with("HTTP/1.1 431 "));

    for smuggled in [
        "POST /bucket/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "POST /bucket/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        "POST /bucket/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST /bucket/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST /bucket/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ] {
        let response = exchange_until_close(listen, smuggled.as_bytes());
        assert!(
            response.starts_with("HTTP/1.1 400 ")
                && response.contains("Connection: close")
                && response.contains("<Code>InvalidRequest</Code>"),
            "{smuggled:?}: {response}"
        );
        assert_eq!(
            response.matches("HTTP/1.1").count(),
            1,
            "nothing after the refusal was taken as a request"
        );
    }
    // A body that stalls is abandoned after body_idle_timeout: the connection closes.
    let stalled = Instant::now();
    let mut stream = TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = signed_head(listen, "PUT", "/bucket/stalled", &[b'x'; 100]);
    head.extend_from_slice(&[b'x'; 10]);
    stream.write_all(&head).unwrap();
    let mut rest = Vec::new();
    assert!(
        stream.read_to_end(&mut rest).is_ok(),
        "a stalled upload keeps its connection"
    );
    assert!(
        stalled.elapsed() >= Duration::from_millis(900)
            && stalled.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        stalled.elapsed()
    );

    stop.store(true, Ordering::SeqCst);
    let statuses = normal.join().unwrap();
    assert!(statuses.len() >= 10, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == (200, true)),
        "the normal client failed during the abuse: {statuses:?}"
    );
}

/// A member that answers `100 Continue` to a head asking for it, then echoes the exact bytes
/// it received (head and chunked body) as its response body.
fn echo_member() -> SocketAddr {
    let listener = TcpListener::bind("127.0.22.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            let mut continued = false;
            // Until the chunked body's final blank line (the first "\r\n\r\n" ends the head).
            while received.windows(4).filter(|w| *w == b"\r\n\r\n").count() < 2 {
                let Ok(n) = stream.read(&mut buffer) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
                let head_done = received.windows(4).any(|w| w == b"\r\n\r\n");
                if head_done && !continued {
                    continued = true;
                    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                received.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&received);
        }
    });
    addr
}

#[test]
fn heads_and_chunked_bodies_reach_the_member_byte_for_byte_after_100_continue() {
    let member = echo_member();
    let base = deployment(&[("s3", vec![("echo", member)])]);
    let listen = proxy_address("127.0.22.100");
    let config = format!(
        "{base}\n[proxy]\nsite = \"fra\"\n\n[[proxy.listener]]\nname = \"s3\"\nprotocol = \"s3\"\nlisten = \"{listen}\"\nservice = \"s3\"\n"
    );
    let _proxy = ProxyNode::start(&config, 1, &[]);
    // Odd but legal: mixed case, repeated x-amz-meta, spacing kept, aws-chunked signatures
    // in chunk extensions and a trailer.
    let head = format!(
        "PUT /bucket/Key%20With%20Spaces?x-id=PutObject HTTP/1.1\r\nHOST: {listen}\r\nx-amz-meta-A: 1\r\nx-amz-meta-a:   two  \r\nContent-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 13\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\nAuthorization: AWS4-HMAC-SHA256 Credential=K/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n"
    );
    let body = "6;chunk-signature=aa\r\nchunk-\r\n7;chunk-signature=bb\r\nencoded\r\n0;chunk-signature=cc\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n";
    let mut stream = TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The client waits for the member's 100 Continue, relayed by the proxy.
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    let (status, response, echoed) = read_response(&mut stream);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        format!("{head}{body}"),
        "the member received exactly what the client sent"
    );
}
