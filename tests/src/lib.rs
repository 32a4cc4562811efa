//! Harness for Portico's end-to-end tests: start the real binaries on loopback with
//! ephemeral ports and temporary directories, drive them with real clients (`dig`, `kdig`,
//! `unbound`), and clean up after themselves.
//!
//! What it is not: a mock of anything. Binaries come from `target/<profile>/` (the test
//! command builds them first with `cargo build --workspace --bins`).

pub mod delay_link;
pub mod netns;
pub mod relay;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Retries an assertion until it holds or `timeout` passes (for asynchronous effects).
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!($($msg)+);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }};
}

/// Path of a workspace binary built next to this test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The workspace root (for checked-in files such as the test GeoIP database).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "portico-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago on `ip` (for programs that cannot report the port
/// they bound, such as unbound).
pub fn free_port(ip: &str) -> u16 {
    let udp = UdpSocket::bind((ip, 0)).expect("bind an ephemeral UDP port");
    let port = udp.local_addr().expect("local addr").port();
    // The TCP side must be free too.
    match std::net::TcpListener::bind((ip, port)) {
        Ok(_) => port,
        Err(_) => free_port(ip),
    }
}

/// A running `gslb-dns` process, killed on drop.
#[derive(Debug)]
pub struct DnsNode {
    child: Child,
    args: Vec<String>,
    pub dns: SocketAddr,
    pub dns_v6: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub dir: TempDir,
    stderr: mpsc::Receiver<String>,
}

impl DnsNode {
    /// Starts `gslb-dns` on `config` (TOML text) listening on 127.0.0.1:0 (and [::1]:0 when
    /// `ipv6`), with the admin API on 127.0.0.1:0; waits for its banner.
    pub fn start(config: &str, ipv6: bool) -> DnsNode {
        let mut listen = vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
        if ipv6 {
            listen.extend(["--listen", "[::1]:0"]);
        }
        Self::start_with(Some(config), &listen)
    }

    /// Starts `gslb-dns` with no configuration file (the embedded default) on ephemeral ports.
    pub fn start_default() -> DnsNode {
        Self::start_with(
            None,
            &[
                "--listen",
                "127.0.0.1:0",
                "--listen",
                "[::1]:0",
                "--admin",
                "127.0.0.1:0",
            ],
        )
    }

    /// Starts `gslb-dns` in a fresh directory (its working directory, so the store's data
    /// lands there) with `config` written to `portico.toml` and the extra `args`.
    pub fn start_with(config: Option<&str>, args: &[&str]) -> DnsNode {
        let dir = TempDir::new("dns");
        let mut all: Vec<String> = Vec::new();
        if let Some(config) = config {
            let path = dir.write("portico.toml", config);
            all.extend(["--config".to_owned(), path.display().to_string()]);
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let (child, stderr, dns, admin) = spawn_node(&all, &dir);
        DnsNode {
            child,
            args: all,
            dns: dns[0],
            dns_v6: dns.iter().copied().find(SocketAddr::is_ipv6),
            admin,
            dir,
            stderr,
        }
    }

    /// Kills the process with SIGKILL (no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// What the process wrote to standard error since the last call (it keeps running).
    pub fn new_log_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Rewrites `portico.toml` in the node's directory (read at the next start).
    pub fn rewrite_config(&self, config: &str) {
        self.dir.write("portico.toml", config);
    }

    /// Starts the process again with the same arguments and directory (the store's data
    /// survives); ephemeral DNS and admin ports change.
    pub fn restart(&mut self) {
        self.kill();
        let (child, stderr, dns, admin) = spawn_node(&self.args, &self.dir);
        self.child = child;
        self.stderr = stderr;
        self.dns = dns[0];
        self.dns_v6 = dns.iter().copied().find(SocketAddr::is_ipv6);
        self.admin = admin;
    }

    /// `dig @node -p port <args> +time=2 +tries=1`.
    pub fn dig(&self, args: &[&str]) -> String {
        dig_at(self.dns, args)
    }

    /// Short answers (`+short`) of `dig`.
    pub fn short(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["+short"];
        all.extend_from_slice(args);
        let mut lines: Vec<String> = self.dig(&all).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// An HTTP request to the admin API; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.admin.expect("admin API enabled"), method, path, body)
    }

    /// A JSON GET of the admin API.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

type Spawned = (
    Child,
    mpsc::Receiver<String>,
    Vec<SocketAddr>,
    Option<SocketAddr>,
);

/// Runs `gslb-dns` with `args` in `dir` and reads its banner for the bound addresses.
fn spawn_node(args: &[String], dir: &TempDir) -> Spawned {
    let mut child = Command::new(binary("gslb-dns"))
        .args(args)
        .current_dir(dir.path())
        .env("PORTICO_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gslb-dns");
    let stderr = forward_lines(child.stderr.take().expect("stderr"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut dns = Vec::new();
    let mut admin = None;
    for line in &mut stdout {
        let line = line.expect("read banner");
        if let Some(rest) = line.strip_prefix("gslb-dns: authoritative for ") {
            let list = rest.split(" on ").nth(1).expect("addresses");
            let list = list.trim_end_matches(" (UDP and TCP)");
            dns = list
                .split(", ")
                .map(|a| a.parse().expect("address"))
                .collect();
        }
        if let Some(rest) = line.strip_prefix("admin API: http://") {
            admin = Some(
                rest.split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("admin address"),
            );
        }
        if line.starts_with("try:") {
            break;
        }
    }
    if dns.is_empty() {
        let _ = child.kill();
        std::thread::sleep(Duration::from_millis(100));
        let errors: Vec<String> = stderr.try_iter().collect();
        panic!("gslb-dns did not start:\n{}", errors.join("\n"));
    }
    // Keep reading so the pipe never fills.
    std::thread::spawn(move || stdout.for_each(drop));
    (child, stderr, dns, admin)
}

impl Drop for DnsNode {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards a child's stream line by line into a channel (so its pipe never fills).
fn forward_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `portico --api <api> <args>`; (exit code, stdout, stderr).
pub fn portico_at(api: &[SocketAddr], args: &[&str]) -> (i32, String, String) {
    let apis: Vec<String> = api.iter().map(ToString::to_string).collect();
    let output = run(Command::new(binary("portico"))
        .args(["--api", &apis.join(",")])
        .args(args));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `dig` against `server` and returns its standard output.
pub fn dig_at(server: SocketAddr, args: &[&str]) -> String {
    let output = run(Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The sorted `+short` A answers of `server` for `name`, asked as a client in `subnet`
/// (ECS).
pub fn answers_for(server: SocketAddr, name: &str, subnet: &str) -> Vec<String> {
    let mut lines: Vec<String> =
        dig_at(server, &["+short", name, "A", &format!("+subnet={subnet}")])
            .lines()
            .map(str::to_owned)
            .collect();
    lines.sort();
    lines
}

/// Runs `kdig` against `server` and returns its standard output.
pub fn kdig_at(server: SocketAddr, args: &[&str]) -> String {
    let output = run(Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+retry=0"])
        .args(args));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command, panicking with a clear message when the tool is missing.
pub fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (the README's test command installs dnsutils, knot-dnsutils and unbound)",
            command.get_program()
        )
    })
}

/// The status line's value of `dig` output (`NOERROR`, `NXDOMAIN`, ...).
pub fn status(dig_output: &str) -> &str {
    dig_output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO REPLY")
}

/// The flags of `dig` output's header line, e.g. `["qr", "aa", "rd"]`.
pub fn flags(dig_output: &str) -> Vec<String> {
    dig_output
        .lines()
        .find(|l| l.starts_with(";; flags:"))
        .map(|l| {
            l.trim_start_matches(";; flags:")
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one raw UDP packet and returns the reply, if one comes within `wait`.
pub fn udp_exchange(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).expect("bind client socket");
    socket.set_read_timeout(Some(wait)).expect("timeout");
    socket.send_to(packet, server).expect("send");
    let mut buf = [0u8; 65535];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) if from == server => return Some(buf[..len].to_vec()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The runtime the harness's API calls run on (the tests themselves are threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the harness runtime")
    })
}

/// Portico's API client for one node (the client every Portico process uses).
pub fn api_client(addr: SocketAddr) -> portico_client::ApiClient {
    let mut options = portico_client::ClientOptions::new(vec![addr.to_string()]);
    options.connect_timeout = Duration::from_secs(2);
    options.timeout = Duration::from_secs(10);
    portico_client::ApiClient::new(options).expect("an API client")
}

/// One request to the admin API through Portico's API client; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    try_http(addr, method, path, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// [`http`] that reports connection errors instead of panicking.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    try_http_with(addr, method, path, body, &[])
}

/// [`http`] with extra request headers (e.g. `("Authorization", "Bearer ...")`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    try_http_with(addr, method, path, body, headers)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

/// [`try_http`] with extra request headers.
pub fn try_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let method = portico_client::Method::from_bytes(method.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let client = api_client(addr);
    let body = body.map(|b| b.as_bytes().to_vec());
    runtime()
        .block_on(client.raw(method, path, headers, body))
        .map(|(status, bytes)| (status, String::from_utf8_lossy(&bytes).into_owned()))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Follows a node's watch stream (after `from`) through Portico's API client until `done`
/// says so; every line read, as typed.
pub fn watch_until(
    addr: SocketAddr,
    from: Option<u64>,
    within: Duration,
    mut done: impl FnMut(&topology::wire::views::WatchLine) -> bool,
) -> Vec<topology::wire::views::WatchLine> {
    use portico_client::watch::WatchEvent;
    let client = api_client(addr);
    runtime().block_on(async {
        let mut watch = client.watch(from).await.expect("the watch stream opens");
        let mut lines = Vec::new();
        let read = tokio::time::timeout(within, async {
            loop {
                match watch.next().await.expect("the watch stream stays open") {
                    Some(WatchEvent::Line(line)) => {
                        let stop = done(&line);
                        lines.push(*line);
                        if stop {
                            return;
                        }
                    }
                    Some(WatchEvent::Undecodable(error)) => panic!("an unreadable line: {error}"),
                    None => panic!("the watch stream ended"),
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "the watch stream did not show it within {within:?}"
        );
        lines
    })
}

/// A real S3 node (s3s-fs, which checks SigV4) as its own process, so it can be stopped.
#[derive(Debug)]
pub struct S3Node {
    child: Child,
    pub addr: SocketAddr,
    pub root: TempDir,
}

pub const ACCESS_KEY: &str = "PORTICOTESTKEY";
pub const SECRET_KEY: &str = "portico/test/secret";

impl S3Node {
    /// Starts s3-node on `ip` (an ephemeral port) with a bucket named `bucket`.
    pub fn start(ip: &str) -> S3Node {
        Self::start_with(ip, &[])
    }

    /// [`S3Node::start`] with extra arguments (e.g. `--domain s3.test`).
    pub fn start_with(ip: &str, extra: &[&str]) -> S3Node {
        let root = TempDir::new("s3");
        let serve = root.path().to_path_buf();
        Self::spawn(ip, root, &serve, extra)
    }

    /// A node serving `shared` (several nodes may share one directory, as the nodes of
    /// one storage cluster share one namespace), logging each request to
    /// [`S3Node::access_log`].
    pub fn start_shared(ip: &str, shared: &Path) -> S3Node {
        let root = TempDir::new("s3-log");
        let log = root.path().join("access.log");
        Self::spawn(ip, root, shared, &["--access-log", log.to_str().unwrap()])
    }

    /// The requests this node received (`METHOD TARGET LENGTH` lines), when started by
    /// [`S3Node::start_shared`].
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// [`S3Node::start`] on the given address (several nodes on one port, one per IP, as a
    /// peer's health checks configured per port want them).
    pub fn start_at(listen: SocketAddr) -> S3Node {
        let root = TempDir::new("s3");
        let serve = root.path().to_path_buf();
        let (child, addr) = Self::spawn_at(&listen.to_string(), &serve, &[]);
        S3Node { child, addr, root }
    }

    fn spawn(ip: &str, root: TempDir, serve: &Path, extra: &[&str]) -> S3Node {
        let (child, addr) = Self::spawn_at(&format!("{ip}:0"), serve, extra);
        S3Node { child, addr, root }
    }

    /// Kills the node and starts it again on the same address, serving the same directory
    /// (a node started by [`S3Node::start`]).
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = Self::spawn_at(&self.addr.to_string(), self.root.path(), &[]);
        self.child = child;
    }

    fn spawn_at(listen: &str, serve: &Path, extra: &[&str]) -> (Child, SocketAddr) {
        std::fs::create_dir_all(serve.join("bucket")).unwrap();
        let mut child = Command::new(binary("s3-node"))
            .args([
                "--listen",
                listen,
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .args(extra)
            .arg(serve)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3-node");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("s3-node address");
        (child, addr)
    }

    /// Kills the node (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`-STOP`, `-CONT`, `-KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for S3Node {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (clock ticks, user plus system) and resident memory (KiB) of a process, from
/// `/proc` (zeros when it is gone).
pub fn process_usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (field(11) + field(12), rss_kib)
}

/// A child process (a site agent, say), killed and reaped on drop.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `proxy` process, killed on drop.
#[derive(Debug)]
pub struct ProxyNode {
    child: Child,
    pub dir: TempDir,
    stderr: mpsc::Receiver<String>,
    /// Standard error read so far (see [`ProxyNode::log`]).
    seen: std::sync::Mutex<Vec<String>>,
}

impl ProxyNode {
    /// Starts `proxy --config <config> <args>` and waits until it has logged `listeners`
    /// listening lines.
    pub fn start(config: &str, listeners: usize, args: &[&str]) -> ProxyNode {
        Self::start_as(None, config, listeners, args)
    }

    /// [`ProxyNode::start`] as the user and group `uid` (an unprivileged one, as a systemd
    /// unit's `User=` runs it), or as this process's user for `None`.
    pub fn start_as(uid: Option<u32>, config: &str, listeners: usize, args: &[&str]) -> ProxyNode {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("proxy");
        let path = dir.write("proxy.toml", config);
        let mut command = Command::new(binary("proxy"));
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        let mut child = command
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("PORTICO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start proxy");
        let stderr = forward_lines(child.stderr.take().expect("stderr"));
        let node = ProxyNode {
            child,
            dir,
            stderr,
            seen: std::sync::Mutex::new(Vec::new()),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let listening = node
                .log()
                .iter()
                .filter(|l| l.contains("listening"))
                .count();
            if listening >= listeners {
                return node;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy did not start:\n{}", node.log().join("\n"));
    }

    /// Everything the proxy wrote to standard error so far.
    pub fn log(&self) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(self.stderr.try_iter());
        seen.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a drain) without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The peak resident memory of the process in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ProxyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portico demo` on ports free on every address it binds, stopped on drop.
#[derive(Debug)]
pub struct DemoFabric {
    child: Child,
    /// The banner it printed, up to "demo ready".
    pub banner: Vec<String>,
    /// The three gslb-dns nodes' DNS and admin addresses (fra, iad, sin).
    pub dns: Vec<SocketAddr>,
    pub admin: Vec<SocketAddr>,
    /// The per-site S3 proxies (fra, iad, sin).
    pub proxies: Vec<SocketAddr>,
}

impl DemoFabric {
    pub fn start() -> DemoFabric {
        let node_ips = ["127.0.1.53", "127.0.2.53", "127.0.3.53"];
        let member_ips = [
            "127.0.10.1",
            "127.0.10.2",
            "127.0.20.1",
            "127.0.20.2",
            "127.0.30.1",
            "127.0.30.2",
        ];
        let proxy_ips = ["127.0.10.100", "127.0.20.100", "127.0.30.100"];
        let mut taken = Vec::new();
        let mut port_on = |ips: &[&str]| -> u16 {
            loop {
                let port = free_port(ips[0]);
                let free = !taken.contains(&port)
                    && ips.iter().all(|ip| {
                        std::net::TcpListener::bind((*ip, port)).is_ok()
                            && UdpSocket::bind((*ip, port)).is_ok()
                    });
                if free {
                    taken.push(port);
                    return port;
                }
            }
        };
        let dns_port = port_on(&node_ips);
        let admin_port = port_on(&node_ips);
        let raft_port = port_on(&node_ips);
        let storage_port = port_on(&member_ips);
        let proxy_port = port_on(&proxy_ips);
        let mut child = Command::new(binary("portico"))
            .args([
                "demo",
                "--dns-port",
                &dns_port.to_string(),
                "--admin-port",
                &admin_port.to_string(),
                "--raft-port",
                &raft_port.to_string(),
                "--storage-port",
                &storage_port.to_string(),
                "--proxy-port",
                &proxy_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start portico demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        for line in &mut lines {
            let line = line.expect("demo output");
            let ready = line.starts_with("demo ready");
            banner.push(line);
            if ready {
                break;
            }
        }
        assert!(
            banner.last().is_some_and(|l| l.starts_with("demo ready")),
            "the demo did not start: {banner:?}"
        );
        std::thread::spawn(move || lines.for_each(drop));
        let at = |ips: &[&str], port: u16| -> Vec<SocketAddr> {
            ips.iter()
                .map(|ip| format!("{ip}:{port}").parse().unwrap())
                .collect()
        };
        DemoFabric {
            child,
            banner,
            dns: at(&node_ips, dns_port),
            admin: at(&node_ips, admin_port),
            proxies: at(&proxy_ips, proxy_port),
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `within` for the exit status.
    pub fn interrupt(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Runs `portico --api <node 1> <args>`; (exit code, stdout, stderr).
    pub fn portico(&self, args: &[&str]) -> (i32, String, String) {
        portico_at(&self.admin[..1], args)
    }
}

impl Drop for DemoFabric {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A site agent's report as JSON, as the agent sends it (the typed wire message): members
/// `(service, node, health, reason)`, up or down, at full weight.
pub fn agent_report(
    site: &str,
    agent: &str,
    sequence: u64,
    members: &[(&str, &str, &str, &str)],
) -> String {
    use topology::wire::{AgentReport, MemberObservation};
    let report = AgentReport {
        site: site.into(),
        agent: agent.into(),
        sequence,
        sent_at: topology::Timestamp(sequence),
        members: members
            .iter()
            .map(|(service, node, health, reason)| MemberObservation {
                service: (*service).into(),
                node: (*node).into(),
                health: match *health {
                    "up" => topology::Health::Up,
                    "down" => topology::Health::Down,
                    _ => topology::Health::Unknown,
                },
                reason: (*reason).into(),
                latency_us: Some((sequence % 1000) as u32),
                weight_percent: 100,
                agent_admin: topology::AdminState::Active,
                address: None,
                passive_confirmed: None,
            })
            .collect(),
        vantage: Vec::new(),
    };
    serde_json::to_string(&report).expect("a report encodes")
}

/// The head of an S3 request to `to`, signed (SigV4) with [`ACCESS_KEY`] and [`SECRET_KEY`]
/// for `Host: to`; `payload_sha256_hex` is the body's hash or `UNSIGNED-PAYLOAD`.
pub fn signed_s3_head(
    to: SocketAddr,
    method: &str,
    path: &str,
    payload_sha256_hex: &str,
    content_length: u64,
) -> Vec<u8> {
    use site_agent::sigv4;
    let host = to.to_string();
    let request = sigv4::Request {
        method,
        host: &host,
        path,
        query: &[],
        payload_sha256_hex,
    };
    let credentials = sigv4::Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        session_token: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {content_length}\r\n");
    for (name, value) in sigv4::sign(&request, &credentials, "us-east-1", "s3", now) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The value of metric `name` (with its labels, if any) on the `/metrics` page served at
/// `at`, or 0 when the page does not have it.
pub fn metric(at: SocketAddr, name: &str) -> u64 {
    let (_, text) = http(at, "GET", "/metrics", None);
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A deployment of three sites (fra, iad, sin, their clients in 127.{1,2,3}.0.0/16) and the
/// service `s3` with `members` (site, node, address) probed by the inline table `check`.
pub fn three_site_deployment(members: &[(&str, &str, SocketAddr)], check: &str) -> String {
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
check = {check}
members = [{}]
"#,
        list.join(", ")
    )
}

/// Three gslb-dns nodes on 127.0.{1,2,3}.1 forming one store (plain raft on loopback),
/// each with `config` and its `[store]` section, DNS and admin on ephemeral ports.
pub fn three_node_store(config: &str) -> Vec<DnsNode> {
    let raft: Vec<SocketAddr> = (1..=3)
        .map(|i| {
            let ip = format!("127.0.{i}.1");
            format!("{ip}:{}", free_port(&ip))
                .parse()
                .expect("an address")
        })
        .collect();
    let nodes_toml: Vec<String> = raft
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{{ id = {}, raft = \"{a}\" }}", i + 1))
        .collect();
    (1..=3)
        .map(|id| {
            let config = format!(
                "{config}\n[store]\nnode_id = {id}\ndata_dir = \"data\"\ninsecure_plaintext = true\nnodes = [{}]\n",
                nodes_toml.join(", ")
            );
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
        .collect()
}

/// A `site-agent` for `site` on `config`, reporting to `report_to` in order (with the test
/// S3 credentials and `extra` arguments), killed on drop.
pub fn site_agent(config: &Path, site: &str, report_to: &[SocketAddr], extra: &[&str]) -> Running {
    site_agent_logging(config, site, report_to, extra, "warn", Stdio::null())
}

/// [`site_agent`], logging at `filter` (`PORTICO_LOG`) to `stderr`.
pub fn site_agent_logging(
    config: &Path,
    site: &str,
    report_to: &[SocketAddr],
    extra: &[&str],
    filter: &str,
    stderr: Stdio,
) -> Running {
    let mut command = Command::new(binary("site-agent"));
    command.arg("--config").arg(config).args(["--site", site]);
    for node in report_to {
        command.args(["--report-to", &node.to_string()]);
    }
    Running(
        command
            .args(extra)
            .env("PORTICO_S3_ACCESS_KEY", ACCESS_KEY)
            .env("PORTICO_S3_SECRET_KEY", SECRET_KEY)
            .env("PORTICO_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start site-agent"),
    )
}

/// One gslb-dns node on `config` (DNS and admin on ephemeral loopback ports) and the
/// site agent of `fra` reporting to it, its `/metrics` served at the returned address
/// (once it listens).
pub fn node_and_fra_agent(config: &str) -> (DnsNode, Running, SocketAddr) {
    let node = DnsNode::start_with(
        Some(config),
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    );
    let config_path = node.dir.write("agent.toml", config);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("an address");
    let agent = site_agent(
        &config_path,
        "fra",
        &[node.admin.expect("the admin address")],
        &["--metrics", &metrics.to_string()],
    );
    assert_eventually!(
        Duration::from_secs(10),
        std::net::TcpStream::connect(metrics).is_ok(),
        "the agent's metrics never listened"
    );
    (node, agent, metrics)
}

/// A benchmark knob: the environment variable `name` as a number, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `unbound`, a real recursive resolver for the zone `storage.example.` only (a
/// fake root on an unused loopback address, so it never reaches past this machine), killed
/// on drop.
pub struct Unbound {
    child: Child,
    _dir: TempDir,
}

impl Unbound {
    /// Starts unbound listening on 127.0.0.1:`port`; `server` holds extra `server:` lines
    /// (each indented four spaces), `stub` the `stub-zone:` lines after its name (the
    /// zone's servers: `stub-addr: ...`). The configuration is checked first
    /// (`unbound-checkconf`).
    pub fn start(port: u16, server: &str, stub: &str) -> Unbound {
        let dir = TempDir::new("unbound");
        dir.write(
            "root.hints",
            ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.254\n",
        );
        let config = format!(
            r#"server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    root-hints: "{dir}/root.hints"
    qname-minimisation: no
    local-zone: "storage.example." transparent
{server}
stub-zone:
    name: "storage.example."
{stub}
"#,
            dir = dir.path().display(),
        );
        let path = dir.write("unbound.conf", config);
        let check = run(Command::new("unbound-checkconf").arg(&path));
        assert!(
            check.status.success(),
            "unbound.conf: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound (apt-get install unbound)");
        Unbound { child, _dir: dir }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
