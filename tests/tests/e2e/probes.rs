//! The site agent's probes against real servers started by the test: samba `smbd` for SMB
//! (NEGOTIATE up, stopped or hung -> down).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use site_agent::probe::{bounded, smb, tcp};
use tests::{TempDir, free_port};

/// One smbd instance on its own loopback address and port (BACKENDS.md).
pub(crate) struct Smbd {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: TempDir,
}

impl Smbd {
    pub(crate) fn start(ip: &str) -> Smbd {
        let dir = TempDir::new("smbd");
        let port = free_port(ip);
        for sub in [
            "private", "state", "cache", "lock", "pid", "ncalrpc", "log", "share",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let d = dir.path().display();
        let config = format!(
            "[global]\n  server role = standalone server\n  interfaces = {ip}/8\n  bind interfaces only = yes\n  smb ports = {port}\n  disable netbios = yes\n  private dir = {d}/private\n  state directory = {d}/state\n  cache directory = {d}/cache\n  lock directory = {d}/lock\n  pid directory = {d}/pid\n  ncalrpc dir = {d}/ncalrpc\n  log file = {d}/log/log.%m\n  map to guest = Bad User\n  guest account = root\n  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n  server min protocol = SMB2_02\n  rpc start on demand helpers = no\n[share]\n  path = {d}/share\n  read only = no\n  guest ok = yes\n  guest only = yes\n  force user = root\n"
        );
        let path = dir.write("smb.conf", config);
        let child = Command::new("smbd")
            .args([
                "--foreground",
                "--no-process-group",
                "--debug-stdout",
                "-d1",
                "-s",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smbd (apt-get install samba)");
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let smbd = Smbd { child, addr, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return smbd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("smbd did not listen on {addr}");
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn smb_negotiate_up_hung_and_stopped() {
    let rt = runtime();
    let mut smbd = Smbd::start("127.0.5.1");
    let timeout = Duration::from_millis(400);
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert!(verdict.ok, "NEGOTIATE against smbd: {verdict:?}");
    let ip = smbd.addr.ip().to_string();
    let deep = rt.block_on(bounded(timeout, smb::deep_probe(smbd.addr, &ip, "share")));
    assert!(deep.ok, "TREE_CONNECT to the share: {deep:?}");
    // The share's directory removed: NEGOTIATE still passes, the deep check fails.
    std::fs::remove_dir_all(smbd.dir.path().join("share")).unwrap();
    let deep = rt.block_on(bounded(timeout, smb::deep_probe(smbd.addr, &ip, "share")));
    assert!(!deep.ok, "the deep check sees the share gone: {deep:?}");
    assert!(deep.reason.starts_with("TREE_CONNECT share"), "{deep:?}");
    assert!(
        rt.block_on(bounded(timeout, smb::probe(smbd.addr))).ok,
        "NEGOTIATE still passes"
    );
    std::fs::create_dir_all(smbd.dir.path().join("share")).unwrap();
    assert!(rt.block_on(bounded(timeout, tcp::probe(smbd.addr))).ok);
    // Hung: TCP still accepts (the kernel does), NEGOTIATE never answers.
    smbd.signal("-STOP");
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert_eq!(verdict.reason, "timeout", "{verdict:?}");
    assert!(
        verdict.latency >= timeout && verdict.latency < timeout * 3,
        "one timeout: {verdict:?}"
    );
    smbd.signal("-CONT");
    assert!(
        rt.block_on(bounded(timeout, smb::probe(smbd.addr))).ok,
        "back after CONT"
    );
    // Stopped: refused.
    let _ = smbd.child.kill();
    let _ = smbd.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert!(!verdict.ok);
    assert_eq!(verdict.reason, "refused", "{verdict:?}");
}

use tests::{ACCESS_KEY, S3Node, SECRET_KEY};

fn s3_check(secret: &str) -> site_agent::probe::s3::S3Check {
    site_agent::probe::s3::S3Check {
        bucket: "bucket".into(),
        region: "us-east-1".into(),
        credentials: site_agent::sigv4::Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: secret.into(),
            session_token: None,
        },
        virtual_host: None,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn s3_probe_reasons_and_hysteresis_against_a_real_s3_node() {
    use site_agent::probe::s3;
    use topology::Health;
    use topology::hysteresis::{Hysteresis, Thresholds};
    let rt = runtime();
    let node = S3Node::start("127.0.10.41");
    let timeout = Duration::from_millis(400);
    let addr = node.addr;
    let probe = |secret: &str| {
        rt.block_on(bounded(
            timeout,
            s3::probe(
                addr,
                &site_agent::probe::http::Transport::Plain,
                &s3_check(secret),
                now(),
            ),
        ))
    };
    let verdict = probe(SECRET_KEY);
    assert!(verdict.ok, "signed HEAD bucket: {verdict:?}");
    let denied = probe("wrong-secret");
    assert!(denied.reason.starts_with("403"), "wrong credentials");
    assert!(denied.hard, "an error answer is the member's own word");
    std::fs::remove_dir_all(node.root.path().join("bucket")).unwrap();
    let gone = probe(SECRET_KEY);
    assert_eq!((gone.reason.as_str(), gone.hard), ("404 bucket gone", true));
    std::fs::create_dir_all(node.root.path().join("bucket")).unwrap();
    assert!(probe(SECRET_KEY).ok, "bucket back");
    // Hung (kill -STOP): each probe costs one timeout, a soft failure (the network could
    // explain it); fall 2 takes the member down, fall_hard does not apply.
    let thresholds = Thresholds {
        rise: 2,
        fall: 2,
        fall_hard: 1,
    };
    let mut hysteresis = Hysteresis::default();
    for expected in [None, Some(Health::Up)] {
        let verdict = probe(SECRET_KEY);
        assert_eq!(hysteresis.observe(verdict.result(), thresholds), expected);
    }
    node.signal("-STOP");
    for expected in [None, Some(Health::Down)] {
        let verdict = probe(SECRET_KEY);
        assert_eq!((verdict.reason.as_str(), verdict.hard), ("timeout", false));
        assert_eq!(hysteresis.observe(verdict.result(), thresholds), expected);
    }
    // kill -CONT: up again after `rise` successes.
    node.signal("-CONT");
    for expected in [None, Some(Health::Up)] {
        let verdict = probe(SECRET_KEY);
        assert!(verdict.ok, "{verdict:?}");
        assert_eq!(hysteresis.observe(verdict.result(), thresholds), expected);
    }
    // Killed: refused, a hard failure, down after one probe.
    drop(node);
    let verdict = probe(SECRET_KEY);
    assert_eq!((verdict.reason.as_str(), verdict.hard), ("refused", true));
    assert_eq!(
        hysteresis.observe(verdict.result(), thresholds),
        Some(Health::Down)
    );
}

/// An agent-check responder that sends `reply` to every connection, as a storage node's
/// load-feedback agent does.
fn responder(reply: &'static str) -> SocketAddr {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    addr
}

/// A reply and the weight, admin word and health it must give.
type Expected = (
    &'static str,
    Option<u32>,
    Option<topology::agent_check::AgentAdmin>,
    Option<topology::agent_check::AgentHealth>,
);

#[test]
fn agent_check_words_from_a_live_responder() {
    use site_agent::feedback::read_feedback;
    use topology::agent_check::{AgentAdmin, AgentHealth};
    let rt = runtime();
    let timeout = Duration::from_millis(300);
    let read = |reply: &'static str| rt.block_on(read_feedback(responder(reply), timeout));
    let cases: Vec<Expected> = vec![
        ("75%\n", Some(75), None, None),
        ("up 50%\n", Some(50), None, Some(AgentHealth::Up)),
        ("drain\n", None, Some(AgentAdmin::Drain), None),
        ("maint\n", None, Some(AgentAdmin::Maint), None),
        ("ready\n", None, Some(AgentAdmin::Ready), None),
        ("down #disk full\n", None, None, Some(AgentHealth::Down)),
        ("fail\n", None, None, Some(AgentHealth::Down)),
        ("stopped\n", None, None, Some(AgentHealth::Down)),
        ("maxconn:10 up\n", None, None, Some(AgentHealth::Up)),
    ];
    for (reply, weight, admin, health) in cases {
        let feedback = read(reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
        assert_eq!(
            (feedback.weight_percent, feedback.admin, feedback.health),
            (weight, admin, health),
            "{reply:?}"
        );
    }
    assert_eq!(
        read("down #disk full\n").unwrap().reason.as_deref(),
        Some("disk full")
    );
    assert!(
        read("down#x\n").unwrap_err().contains("unknown agent word"),
        "HAProxy rejects down#x"
    );
    // Nobody listening: an error for the caller to log, not a verdict on health.
    let closed = free_port("127.0.0.1");
    let unreachable = rt.block_on(read_feedback(
        format!("127.0.0.1:{closed}").parse().unwrap(),
        timeout,
    ));
    assert!(unreachable.unwrap_err().contains("unreachable"));
}

/// A read-only NFSv3 export holding one file, `hello.txt` ([`HELLO`]), served by nfsserve
/// (a user-space NFS server) in the test process.
pub(crate) struct TestExport;

/// The contents of the export's `hello.txt`.
pub(crate) const HELLO: &[u8] =
    b"hello from a user-space NFSv3 server, through whatever is in between\n";

fn hello_attributes() -> nfsserve::nfs::fattr3 {
    nfsserve::nfs::fattr3 {
        ftype: nfsserve::nfs::ftype3::NF3REG,
        mode: 0o644,
        nlink: 1,
        size: HELLO.len() as u64,
        used: HELLO.len() as u64,
        fileid: 2,
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl nfsserve::vfs::NFSFileSystem for TestExport {
    fn capabilities(&self) -> nfsserve::vfs::VFSCapabilities {
        nfsserve::vfs::VFSCapabilities::ReadOnly
    }
    fn root_dir(&self) -> nfsserve::nfs::fileid3 {
        1
    }
    async fn lookup(
        &self,
        dir: u64,
        name: &nfsserve::nfs::filename3,
    ) -> Result<u64, nfsserve::nfs::nfsstat3> {
        match (dir, name.0.as_slice()) {
            (1, b"hello.txt") => Ok(2),
            (1, b".") => Ok(1),
            _ => Err(nfsserve::nfs::nfsstat3::NFS3ERR_NOENT),
        }
    }
    async fn getattr(&self, id: u64) -> Result<nfsserve::nfs::fattr3, nfsserve::nfs::nfsstat3> {
        if id == 2 {
            return Ok(hello_attributes());
        }
        if id != 1 {
            return Err(nfsserve::nfs::nfsstat3::NFS3ERR_NOENT);
        }
        Ok(nfsserve::nfs::fattr3 {
            ftype: nfsserve::nfs::ftype3::NF3DIR,
            mode: 0o755,
            nlink: 2,
            fileid: 1,
            ..Default::default()
        })
    }
    async fn setattr(
        &self,
        _: u64,
        _: nfsserve::nfs::sattr3,
    ) -> Result<nfsserve::nfs::fattr3, nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn read(
        &self,
        id: u64,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsserve::nfs::nfsstat3> {
        if id != 2 {
            return Err(nfsserve::nfs::nfsstat3::NFS3ERR_ISDIR);
        }
        let start = (offset as usize).min(HELLO.len());
        let end = (start + count as usize).min(HELLO.len());
        Ok((HELLO[start..end].to_vec(), end == HELLO.len()))
    }
    async fn write(
        &self,
        _: u64,
        _: u64,
        _: &[u8],
    ) -> Result<nfsserve::nfs::fattr3, nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn create(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
        _: nfsserve::nfs::sattr3,
    ) -> Result<(u64, nfsserve::nfs::fattr3), nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn create_exclusive(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
    ) -> Result<u64, nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn mkdir(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
    ) -> Result<(u64, nfsserve::nfs::fattr3), nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn remove(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
    ) -> Result<(), nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn rename(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
        _: u64,
        _: &nfsserve::nfs::filename3,
    ) -> Result<(), nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn readdir(
        &self,
        _: u64,
        start_after: u64,
        _: usize,
    ) -> Result<nfsserve::vfs::ReadDirResult, nfsserve::nfs::nfsstat3> {
        if start_after >= 2 {
            return Ok(nfsserve::vfs::ReadDirResult {
                entries: Vec::new(),
                end: true,
            });
        }
        Ok(nfsserve::vfs::ReadDirResult {
            entries: vec![nfsserve::vfs::DirEntry {
                fileid: 2,
                name: nfsserve::nfs::nfsstring(b"hello.txt".to_vec()),
                attr: hello_attributes(),
            }],
            end: true,
        })
    }
    async fn symlink(
        &self,
        _: u64,
        _: &nfsserve::nfs::filename3,
        _: &nfsserve::nfs::nfspath3,
        _: &nfsserve::nfs::sattr3,
    ) -> Result<(u64, nfsserve::nfs::fattr3), nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_ROFS)
    }
    async fn readlink(&self, _: u64) -> Result<nfsserve::nfs::nfspath3, nfsserve::nfs::nfsstat3> {
        Err(nfsserve::nfs::nfsstat3::NFS3ERR_NOTSUPP)
    }
}

#[test]
fn nfs_rpc_null_up_prog_mismatch_and_refused() {
    use nfsserve::tcp::{NFSTcp, NFSTcpListener};
    use site_agent::probe::nfs;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ip = "127.0.6.1";
    let port = free_port(ip);
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let server = rt.spawn(async move {
        let mut listener = NFSTcpListener::bind(&format!("{ip}:{port}"), TestExport)
            .await
            .expect("nfsserve bind");
        listener.with_export_name("export");
        let _ = listener.handle_forever().await;
    });
    let timeout = Duration::from_millis(400);
    let probe = |version| {
        rt.block_on(bounded(
            timeout,
            nfs::probe(addr, nfs::NFS_PROGRAM, version),
        ))
    };
    let mut up = probe(3);
    for _ in 0..50 {
        if up.ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        up = probe(3);
    }
    assert!(up.ok, "RPC NULL to NFSv3: {up:?}");
    let mismatch = probe(4);
    assert!(
        mismatch.reason.starts_with("PROG_MISMATCH"),
        "nfsserve serves v3 only: {mismatch:?}"
    );
    let unavailable = rt.block_on(bounded(timeout, nfs::probe(addr, 100_099, 1)));
    assert!(!unavailable.ok, "an unknown program: {unavailable:?}");
    // The deep check: MOUNT the export, GETATTR its root.
    let deep = rt.block_on(bounded(timeout, nfs::deep_probe(addr, addr, "/export")));
    assert!(deep.ok, "MOUNT /export and GETATTR: {deep:?}");
    let missing = rt.block_on(bounded(
        timeout,
        nfs::deep_probe(addr, addr, "/no-such-export"),
    ));
    assert!(
        missing.reason.starts_with("MOUNT /no-such-export"),
        "a missing export fails the deep check: {missing:?}"
    );
    server.abort();
    let _ = rt.block_on(server);
    std::thread::sleep(Duration::from_millis(100));
    let refused = probe(3);
    assert_eq!(refused.reason, "refused", "{refused:?}");
}

/// A minimal HTTPS server (rustls) answering every request with `200 ready`.
fn https_server(
    rt: &tokio::runtime::Runtime,
    ip: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(format!("{ip}:0")))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = tls.read(&mut request).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nready",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[test]
fn http_probe_over_tls_verifies_the_server() {
    use site_agent::probe::http::{self, HttpCheck};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pki = TempDir::new("https");
    let ca = crate::cluster::certificates(&pki, "probe-ca", &[(1, "127.0.7.1")]);
    let other_ca = crate::cluster::certificates(&pki, "other-ca", &[(2, "127.0.7.2")]);
    let addr = https_server(
        &rt,
        "127.0.7.1",
        &pki.path().join("node-1.pem"),
        &pki.path().join("node-1.key"),
    );
    let check = |body: Option<&str>| HttpCheck {
        path: "/ready".into(),
        host: None,
        body_contains: body.map(str::to_owned),
    };
    let timeout = Duration::from_millis(800);
    let trusted = site_agent::tls::transport(Some(&ca), "127.0.7.1").unwrap();
    let verdict = rt.block_on(bounded(
        timeout,
        http::probe(addr, &trusted, &check(Some("ready"))),
    ));
    assert!(verdict.ok, "HTTPS with the right CA: {verdict:?}");
    let verdict = rt.block_on(bounded(
        timeout,
        http::probe(addr, &trusted, &check(Some("nope"))),
    ));
    assert!(verdict.reason.contains("body lacks"), "{verdict:?}");
    let untrusted = site_agent::tls::transport(Some(&other_ca), "127.0.7.1").unwrap();
    let verdict = rt.block_on(bounded(
        timeout,
        http::probe(addr, &untrusted, &check(None)),
    ));
    assert!(
        verdict.reason.starts_with("TLS:"),
        "a server the CA does not vouch for: {verdict:?}"
    );
    assert!(site_agent::tls::transport(Some("/nonexistent/ca.pem"), "127.0.7.1").is_err());
}

#[test]
fn s3_probe_in_virtual_hosted_style() {
    use site_agent::probe::http::Transport;
    use site_agent::probe::s3;
    let rt = runtime();
    let node = tests::S3Node::start_with("127.0.10.42", &["--domain", "s3.test"]);
    let mut check = s3_check(SECRET_KEY);
    check.virtual_host = Some("s3.test".into());
    let timeout = Duration::from_millis(400);
    let verdict = rt.block_on(bounded(
        timeout,
        s3::probe(node.addr, &Transport::Plain, &check, now()),
    ));
    assert!(verdict.ok, "HEAD / with Host bucket.s3.test: {verdict:?}");
    check.bucket = "missing".into();
    let verdict = rt.block_on(bounded(
        timeout,
        s3::probe(node.addr, &Transport::Plain, &check, now()),
    ));
    assert_eq!(verdict.reason, "404 bucket gone");
}
