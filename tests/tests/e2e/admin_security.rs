//! The admin API against a hostile network, with the real binaries: identities and their
//! roles, HTTPS with agents, proxies and the CLI as clients (and a client with the wrong
//! CA), client certificates naming roles, a page on another origin in headless Chromium,
//! a slowloris, text over the limit, and plain HTTP refused off loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portico_client::{ApiClient, ClientOptions, Method};
use tests::{
    DnsNode, ProxyNode, Running, TempDir, assert_eventually, binary, http_with, metric, run,
};

use crate::CONFIG;
use crate::pki::Pki;

const OPERATOR: &str = "operator-token-0123456789";
const FRA_AGENT: &str = "agent-fra-token-0123456789";
const FRA_PROXY: &str = "proxy-fra-token-0123456789";
const READER: &str = "reader-token-0123456789";

fn token_file(dir: &TempDir) -> std::path::PathBuf {
    dir.write(
        "tokens",
        format!(
            "# name token role\nops {OPERATOR} operator\nfra-agent {FRA_AGENT} agent:fra\nfra-proxy {FRA_PROXY} proxy:fra\nwatcher {READER} reader\n"
        ),
    )
}

fn refused(admin: SocketAddr, reason: &str) -> u64 {
    metric(
        admin,
        &format!("portico_admin_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Waits until the node's store holds its deployment (the first history entry).
fn seeded(node: &DnsNode) {
    assert_eventually!(
        Duration::from_secs(10),
        node.get_json("/api/v1/config")["version"] == 1,
        "no deployment in the store"
    );
}

#[test]
fn roles_keep_each_identity_to_its_site_and_its_job() {
    let dir = TempDir::new("roles");
    let tokens = token_file(&dir);
    let config = format!(
        "{CONFIG}\n[admin]\ntoken_file = \"{}\"\nreads = \"token\"\n",
        tokens.display()
    );
    let node = DnsNode::start(&config, false);
    let admin = node.admin.unwrap();
    let as_ = |token: &str, method: &str, path: &str, body: Option<&str>| {
        let bearer = format!("Bearer {token}");
        http_with(admin, method, path, body, &[("Authorization", &bearer)])
    };
    let read = |path: &str| -> serde_json::Value {
        let (status, body) = as_(READER, "GET", path, None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eventually!(
        Duration::from_secs(10),
        read("/api/v1/config")["version"] == 1,
        "no deployment in the store"
    );
    let state_before = read("/api/v1/state")["services"].clone();
    let history_before = read("/api/v1/history")["changes"].clone();
    let voters_before = read("/api/v1/store")["node"]["voters"].clone();

    let iad_down = tests::agent_report("iad", "fra-agent", 1, &[("s3", "iad-1", "down", "x")]);
    let fra_up = tests::agent_report("fra", "fra-agent", 2, &[("s3", "fra-1", "up", "ok")]);
    let rtt = |site: &str| {
        format!(
            r#"{{"site":"{site}","samples":[{{"prefix":"10.9.0.0/24","rtt_us":900,"samples":1}}]}}"#
        )
    };
    let voter = r#"{"id":9,"raft":"127.0.0.1:9","learner":false}"#;
    // What each identity may not do: 403, with a message naming it.
    for (token, method, path, body, who) in [
        (
            FRA_AGENT,
            "POST",
            "/api/v1/reports",
            Some(iad_down.as_str()),
            "fra-agent (agent:fra) may not report for site \"iad\"",
        ),
        (
            FRA_AGENT,
            "POST",
            "/api/v1/sites/iad/drain",
            None,
            "fra-agent (agent:fra) may not POST /api/v1/sites/iad/drain",
        ),
        (
            FRA_AGENT,
            "POST",
            "/api/v1/store/nodes",
            Some(voter),
            "fra-agent (agent:fra) may not POST",
        ),
        (
            FRA_AGENT,
            "POST",
            "/api/v1/rtt",
            Some(rtt("fra").as_str()),
            "may not POST /api/v1/rtt",
        ),
        (
            FRA_PROXY,
            "POST",
            "/api/v1/rtt",
            Some(rtt("iad").as_str()),
            "fra-proxy (proxy:fra) may not post RTT samples for site \"iad\"",
        ),
        (
            FRA_PROXY,
            "POST",
            "/api/v1/reports",
            Some(fra_up.as_str()),
            "may not POST /api/v1/reports",
        ),
        (
            READER,
            "POST",
            "/api/v1/members/s3/fra-1/drain",
            None,
            "watcher (reader) may not POST",
        ),
        (
            READER,
            "POST",
            "/api/v1/config/rollback",
            Some(r#"{"version":1,"why":"x"}"#),
            "watcher (reader) may not POST",
        ),
    ] {
        let (status, answer) = as_(token, method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(who),
            "{method} {path}: {answer}"
        );
    }
    // Nothing changed: read back.
    assert_eq!(read("/api/v1/state")["services"], state_before);
    assert_eq!(read("/api/v1/history")["changes"], history_before);
    assert_eq!(read("/api/v1/store")["node"]["voters"], voters_before);
    assert!(read("/api/v1/rtt")["rtt"].as_object().unwrap().is_empty());
    assert_eq!(refused(admin, "forbidden"), 8);

    // What each may do.
    assert_eq!(
        as_(FRA_AGENT, "POST", "/api/v1/reports", Some(&fra_up)).0,
        200
    );
    assert_eq!(
        as_(FRA_PROXY, "POST", "/api/v1/rtt", Some(&rtt("fra"))).0,
        200
    );
    assert_eq!(as_(FRA_PROXY, "GET", "/api/v1/state", None).0, 200);
    let (status, answer) = as_(
        OPERATOR,
        "POST",
        "/api/v1/sites/iad/drain",
        Some(r#"{"who":"mallory","why":"switch maintenance"}"#),
    );
    assert_eq!(status, 200, "{answer}");
    // The history names the identity; the body's `who` is only a note.
    let changes = read("/api/v1/history")["changes"].clone();
    let drain = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "site iad")
        .unwrap_or_else(|| panic!("{changes}"));
    assert_eq!(drain["who"], "ops");
    assert_eq!(drain["note"], "mallory");
    assert_eq!(drain["why"], "switch maintenance");
    assert_eq!(
        read("/api/v1/rtt")["rtt"]["fra"]["10.9.0.0/24"]["rtt_us"],
        900
    );
}

#[test]
fn text_over_the_limit_is_refused_and_nothing_is_replicated() {
    let node = DnsNode::start(CONFIG, false);
    let admin = node.admin.unwrap();
    seeded(&node);
    let history = || node.get_json("/api/v1/history")["changes"].clone();
    let before = history();
    let why = "w".repeat(10_000);
    let (status, body) = http_with(
        admin,
        "POST",
        "/api/v1/sites/fra/drain",
        Some(&format!(r#"{{"why":"{why}"}}"#)),
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`why` is 10000 bytes; at most 256"), "{body}");
    let agent = "a".repeat(300);
    let report = tests::agent_report("fra", &agent, 1, &[("s3", "fra-1", "up", "ok")]);
    let (status, body) = http_with(admin, "POST", "/api/v1/reports", Some(&report), &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`agent`"), "{body}");
    let reason = "r".repeat(257);
    let report = tests::agent_report("fra", "fra-agent", 1, &[("s3", "fra-1", "up", &reason)]);
    let (status, body) = http_with(admin, "POST", "/api/v1/reports", Some(&report), &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`members[0].reason`"), "{body}");
    assert_eq!(history(), before);
    assert!(
        node.get_json("/api/v1/state")["sites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["admin"] == "active")
    );
}

#[test]
fn a_slowloris_is_cut_at_the_header_timeout_while_the_api_answers() {
    let config = format!("{CONFIG}\n[admin]\nheader_timeout = \"1s\"\nmax_connections = 512\n");
    let node = DnsNode::start(&config, false);
    let admin = node.admin.unwrap();
    // 100 connections: half send nothing, half a header a byte at a time.
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(admin).unwrap())
        .collect();
    let started = Instant::now();
    for (i, stream) in slow.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if i % 2 == 1 {
            let _ = stream.write_all(b"GET /api/v1/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        }
    }
    assert_eventually!(
        Duration::from_secs(2),
        metric(admin, "portico_admin_connections") >= 100,
        "the slow connections were not open"
    );
    // The API answers meanwhile, and the trickle keeps coming.
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for stream in slow.iter_mut().skip(1).step_by(2) {
            let _ = stream.write_all(b"a");
        }
        let (status, _) = http_with(admin, "GET", "/api/v1/state", None, &[]);
        assert_eq!(status, 200);
        answered += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered >= 5);
    // Every slow connection was closed by the server, none answered with a state.
    for (i, stream) in slow.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        assert!(
            read.is_ok(),
            "connection {i} still open after {:?}",
            started.elapsed()
        );
        assert!(
            !String::from_utf8_lossy(&answer).contains("\"services\""),
            "connection {i} was answered"
        );
    }
    assert_eventually!(
        Duration::from_secs(2),
        metric(admin, "portico_admin_connections") <= 2,
        "connections left open"
    );
}

#[test]
fn plain_http_off_loopback_does_not_start_unless_asked_for_by_name() {
    let dir = TempDir::new("exposed");
    let check = |config: &str, args: &[&str]| {
        let file = dir.write("portico.toml", config);
        let output = run(Command::new(binary("gslb-dns"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .arg("--check-config"));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let exposed = format!("{CONFIG}\n[admin]\nlisten = \"10.9.9.9:8053\"\n");
    let (code, stderr) = check(&exposed, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`admin.tls`") && stderr.contains("plain HTTP on 10.9.9.9:8053"),
        "{stderr}"
    );
    // The same through the command line.
    let (code, stderr) = check(CONFIG, &["--admin", "0.0.0.0:8053"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`admin.tls`"), "{stderr}");
    // Asked for by name, it is allowed.
    let (code, stderr) = check(
        &exposed.replace("[admin]\n", "[admin]\ninsecure_plaintext = true\n"),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// An API client for a TLS node: its CA, optionally a client certificate, optionally a
/// token.
fn tls_client(
    admin: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> ApiClient {
    let mut options = ClientOptions::new(vec![admin.to_string()]);
    options.token = token.map(str::to_owned);
    options.tls = Some(portico_client::tls::ClientTls {
        ca: ca.to_owned(),
        identity: identity.map(|(c, k)| (c.to_owned(), k.to_owned())),
    });
    options.timeout = Duration::from_secs(5);
    ApiClient::new(options).expect("a TLS client")
}

fn call(client: &ApiClient, method: Method, path: &str, body: Option<&str>) -> (u16, String) {
    tests::runtime()
        .block_on(client.raw(method, path, &[], body.map(|b| b.as_bytes().to_vec())))
        .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn agents_proxies_and_the_cli_work_over_https_and_a_wrong_ca_is_refused() {
    let dir = TempDir::new("admin-tls");
    let pki = Pki::new(dir.path(), "admin-ca");
    let ip = "127.0.61.1";
    let (cert, key) = pki.issue("admin", &["portico-admin.test"], &[ip]);
    let (operator_cert, operator_key) = pki.issue("operator", &["operator.portico"], &[]);
    let (agent_cert, agent_key) = pki.issue("agent-fra", &["agent.fra.portico"], &[]);
    let (greedy_cert, greedy_key) =
        pki.issue("greedy", &["operator.portico", "reader.portico"], &[]);
    let rogue = Pki::new(dir.path(), "rogue-ca");
    let tokens = token_file(&dir);
    // fra's member accepts connections: its tcp check passes, and the proxy forwards to it.
    let member = TcpListener::bind("127.0.10.71:0").unwrap();
    let member_addr = member.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in member.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"storage\n");
        }
    });
    let base = crate::proxy::deployment(&[("nfs", vec![("fra-1", member_addr)])]).replace(
        "name = \"nfs\"\n",
        "name = \"nfs\"\ncheck = { kind = \"tcp\", interval = \"300ms\" }\n",
    );
    let admin_section = format!(
        "\n[admin]\ntoken_file = \"{}\"\nreads = \"token\"\ntls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n",
        tokens.display(),
        cert.display(),
        key.display(),
        pki.ca.display()
    );
    let node = DnsNode::start_with(
        Some(&format!("{base}{admin_section}")),
        &[
            "--listen",
            &format!("{ip}:0"),
            "--admin",
            &format!("{ip}:0"),
        ],
    );
    let admin = node.admin.unwrap();
    let operator = tls_client(admin, &pki.ca, None, Some(OPERATOR));
    assert_eventually!(
        Duration::from_secs(10),
        call(&operator, Method::GET, "/api/v1/config", None)
            .1
            .contains("\"version\":1"),
        "the node has no deployment over HTTPS"
    );

    // Plain HTTP to the TLS port: no HTTP answer, only the TLS layer's refusal.
    let mut plain = TcpStream::connect(admin).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(format!("GET /api/v1/state HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {answer:?}"
    );

    // The site agent and the proxy, each with its token and the CA.
    let clients = format!(
        "{base}\n[site_agent]\nreport_to = [\"{admin}\"]\ntoken_file = \"{}\"\napi_ca = \"{}\"\n",
        dir.write("agent.token", FRA_AGENT).display(),
        pki.ca.display()
    );
    let file = dir.write("agent.toml", &clients);
    let _agent = Running(
        Command::new(binary("site-agent"))
            .arg("--config")
            .arg(&file)
            .args(["--site", "fra"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start site-agent"),
    );
    let member_health = || {
        let state: serde_json::Value =
            serde_json::from_str(&call(&operator, Method::GET, "/api/v1/state", None).1).unwrap();
        state["services"][0]["members"][0]["health"].clone()
    };
    assert_eventually!(
        Duration::from_secs(10),
        member_health() == "up",
        "the agent's reports did not arrive over HTTPS"
    );
    let listen = crate::proxy::proxy_address("127.0.61.100");
    let proxy_config = format!(
        "{base}\n[proxy]\nsite = \"fra\"\nstate_from = [\"{admin}\"]\ntoken_file = \"{}\"\napi_ca = \"{}\"\nrtt_report_interval = \"300ms\"\n\n[[proxy.listener]]\nname = \"nfs\"\nprotocol = \"tcp\"\nlisten = \"{listen}\"\nservice = \"nfs\"\n",
        dir.write("proxy.token", FRA_PROXY).display(),
        pki.ca.display()
    );
    let proxy = ProxyNode::start(&proxy_config, 1, &[]);
    // The proxy forwards once it follows the store's state (over HTTPS), then posts RTT.
    assert_eventually!(
        Duration::from_secs(10),
        {
            let mut line = String::new();
            TcpStream::connect(listen)
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.read_to_string(&mut line)
                })
                .is_ok()
                && line == "storage\n"
        },
        "the proxy did not forward: {}",
        proxy.log().join("\n")
    );
    assert_eventually!(
        Duration::from_secs(10),
        call(&operator, Method::GET, "/api/v1/rtt", None)
            .1
            .contains("\"fra\":{\"127.0.0.0/24\""),
        "the proxy's RTT samples did not arrive: {}",
        call(&operator, Method::GET, "/api/v1/rtt", None).1
    );

    // The CLI with the CA and a token; then with the wrong CA.
    let cli = |args: &[&str]| {
        let output = run(Command::new(binary("portico"))
            .args(["--api", &admin.to_string()])
            .args(args));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let token = dir.write("operator.token", OPERATOR);
    let ca = pki.ca.display().to_string();
    let token = token.display().to_string();
    let (code, stdout, stderr) = cli(&["--ca", &ca, "--token-file", &token, "status"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("fra"), "{stdout}");
    let rogue_ca = rogue.ca.display().to_string();
    let (code, _, stderr) = cli(&["--ca", &rogue_ca, "--token-file", &token, "status"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    // Without a CA the CLI will not send the token to an address off loopback in clear;
    // here (loopback) it tries plain HTTP, which the TLS port does not answer.
    let (code, _, stderr) = cli(&["--token-file", &token, "status"]);
    assert_ne!(code, Some(0), "{stderr}");

    // Client certificates as identities: the operator's drains, the agent's may not.
    let by_cert = |cert: &Path, key: &Path| tls_client(admin, &pki.ca, Some((cert, key)), None);
    let agent = by_cert(&agent_cert, &agent_key);
    let (status, body) = call(&agent, Method::POST, "/api/v1/sites/fra/drain", None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("agent.fra.portico (agent:fra)"), "{body}");
    let (status, body) = call(
        &by_cert(&greedy_cert, &greedy_key),
        Method::GET,
        "/api/v1/state",
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("several roles"), "{body}");
    let (status, body) = call(
        &by_cert(&operator_cert, &operator_key),
        Method::POST,
        "/api/v1/sites/fra/drain",
        Some(r#"{"why":"certificate test"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let history = call(&operator, Method::GET, "/api/v1/history", None).1;
    assert!(
        history.contains("\"who\":\"operator.portico\""),
        "{history}"
    );
    // A certificate of another CA does not get through the handshake.
    let (rogue_cert, rogue_key) = rogue.issue("rogue-operator", &["operator.portico"], &[]);
    let error = tests::runtime()
        .block_on(by_cert(&rogue_cert, &rogue_key).state())
        .unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}

/// A page on another origin (127.0.77.1) attacks the API of the default setup (no token
/// file: loopback callers may change things) the ways a browser allows: `no-cors` fetches
/// with a JSON body as text, a fetch with a JSON type (preflighted), and form posts.
const CROSS_SITE: &str = r#"
import http.server, threading
api = sys.argv[1]
page = f"""<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="f1" method="POST" enctype="text/plain" target="sink1" action="{api}/api/v1/store/nodes"><input name='{{"id":9,"raft":"127.0.0.1:9","learner":false,"x":"' value='"}}'></form>
<form id="f2" method="POST" target="sink2" action="{api}/api/v1/sites/fra/force-down"><input name="why" value="csrf"></form>
<script>
window.attack = (async () => {{
  const results = [];
  const voter = JSON.stringify({{id: 9, raft: "127.0.0.1:9", learner: false}});
  for (const [path, body] of [["/api/v1/sites/iad/drain", "{{}}"], ["/api/v1/store/nodes", voter]]) {{
    try {{ await fetch("{api}" + path, {{method: "POST", mode: "no-cors", body}}); results.push("no-cors sent"); }}
    catch (e) {{ results.push("no-cors error " + e); }}
  }}
  try {{
    await fetch("{api}/api/v1/sites/sin/drain", {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}});
    results.push("cors answered");
  }} catch (e) {{ results.push("cors blocked"); }}
  document.getElementById("f1").submit();
  document.getElementById("f2").submit();
  await new Promise(r => setTimeout(r, 1500));
  return results;
}})();
</script></body></html>""".encode()

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.77.1", 0), Page)
threading.Thread(target=server.serve_forever, daemon=True).start()
with chromium() as (call, evaluate, wait_for):
    call("Page.navigate", url=f"http://127.0.77.1:{server.server_port}/")
    wait_for("typeof window.attack !== 'undefined'", "the attack page")
    print(json.dumps(evaluate("window.attack")))
"#;

#[test]
fn a_page_on_another_origin_changes_nothing_through_headless_chromium() {
    let node = DnsNode::start(CONFIG, false);
    let admin = node.admin.unwrap();
    seeded(&node);
    let before = (
        node.get_json("/api/v1/history")["changes"].clone(),
        node.get_json("/api/v1/store")["node"]["voters"].clone(),
        node.get_json("/api/v1/state")["sites"].clone(),
    );
    let dir = TempDir::new("csrf");
    let script = dir.write("csrf.py", format!("{}{CROSS_SITE}", crate::operations::CDP));
    let output = run(Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://{admin}")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<String> = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        results,
        ["no-cors sent", "no-cors sent", "cors blocked"],
        "{stdout}"
    );
    // The requests reached the API (two no-cors fetches, the preflight, two forms) and
    // were refused for their origin; nothing changed.
    assert!(
        refused(admin, "origin") >= 5,
        "{}",
        refused(admin, "origin")
    );
    let after = (
        node.get_json("/api/v1/history")["changes"].clone(),
        node.get_json("/api/v1/store")["node"]["voters"].clone(),
        node.get_json("/api/v1/state")["sites"].clone(),
    );
    assert_eq!(after, before);
    // DNS rebinding: a name the API does not have, pointing at its address.
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!(
                "POST /api/v1/sites/fra/drain HTTP/1.1\r\nHost: rebound.example:{}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                admin.port()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert_eq!(refused(admin, "host"), 1);
    assert_eq!(node.get_json("/api/v1/history")["changes"], before.0);
}
