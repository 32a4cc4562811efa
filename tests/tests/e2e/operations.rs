//! The operator's side against `portico demo` (three gslb-dns nodes forming the store, an
//! agent and a proxy per site, storage nodes): the demo itself with `dig`, the `portico`
//! CLI (tables, `--json`, exit codes), DR drills (convergence, restore, refusal), and the
//! dashboard in real headless Chromium.

use std::process::Command;
use std::time::Duration;

use tests::{DemoFabric, TempDir, assert_eventually, run};

/// The sorted `+short` answers of `node` for a client in `subnet`.
fn answers(node: std::net::SocketAddr, subnet: &str) -> Vec<String> {
    tests::answers_for(node, "s3.storage.example", subnet)
}

const REGIONS: [(&str, &str, [&str; 2]); 3] = [
    ("fra", "127.1.0.0/24", ["127.0.10.1", "127.0.10.2"]),
    ("iad", "127.2.0.0/24", ["127.0.20.1", "127.0.20.2"]),
    ("sin", "127.3.0.0/24", ["127.0.30.1", "127.0.30.2"]),
];

#[test]
fn the_demo_answers_every_region_and_stops_cleanly() {
    let mut demo = DemoFabric::start();
    let banner = demo.banner.join("\n");
    assert!(
        banner.contains(&format!("dashboard: http://{}/", demo.admin[0])),
        "{banner}"
    );
    for (i, (site, subnet, expected)) in REGIONS.iter().enumerate() {
        // The banner's dig line for the region, run as printed.
        let line = demo
            .banner
            .iter()
            .find(|l| l.starts_with(&format!("{site} clients: dig ")))
            .unwrap_or_else(|| panic!("no dig line for {site}: {banner}"));
        assert!(line.contains(&format!("+subnet={subnet}")), "{line}");
        let args: Vec<&str> = line
            .split("dig ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eventually!(
            Duration::from_secs(10),
            {
                let output = run(Command::new("dig").args(&args).arg("+short"));
                let mut got: Vec<String> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                got.sort();
                got == *expected
            },
            "{site}: {line}"
        );
        // Every node answers the same for the region (once it has applied what the first
        // one had: replicas apply the same log a few milliseconds apart).
        for node in &demo.dns {
            assert_eventually!(
                Duration::from_secs(2),
                answers(*node, subnet) == *expected,
                "{site} at {node} (region {i}): {:?}",
                answers(*node, subnet)
            );
        }
    }
    // The proxies carry S3 to the storage nodes (fra's proxy, fra's nodes).
    let proxy = demo.proxies[0];
    assert_eq!(
        tests::http(proxy, "PUT", "/demo/hello", Some("hello")).0,
        200
    );
    assert_eq!(
        tests::http(proxy, "GET", "/demo/hello", None),
        (200, "hello".to_string())
    );
    let status = demo.interrupt(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not stop cleanly on Ctrl-C: {status:?}"
    );
    for (i, node) in demo.dns.iter().enumerate() {
        assert!(
            std::net::UdpSocket::bind(node).is_ok(),
            "node {i}'s DNS port is still held after the demo stopped"
        );
    }
}

#[test]
fn cli_and_drills_against_a_three_site_fabric() {
    let demo = DemoFabric::start();
    // Wait for every site's agent to have reported.
    assert_eventually!(
        Duration::from_secs(15),
        {
            let (code, out, _) = demo.portico(&["members", "--json"]);
            code == 0
                && serde_json::from_str::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .is_some_and(|m| m.len() == 6 && m.iter().all(|m| m["eligible"] == true))
        },
        "members never all eligible: {:?}",
        demo.portico(&["members"])
    );
    let (code, out, _) = demo.portico(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("SITE")
            && out.contains("fra")
            && out.contains("2/2")
            && out.contains("leader"),
        "{out}"
    );
    let (code, out, _) = demo.portico(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"]["sites"].as_array().unwrap().len(), 3);
    assert!(status["store"]["node"]["leader"].as_u64().unwrap() > 0);
    let (code, out, _) = demo.portico(&["members", "--site", "iad"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("iad-1") && out.contains("iad-2") && !out.contains("fra-1"),
        "{out}"
    );
    let (code, out, _) = demo.portico(&["explain", "s3", "--client", "127.2.0.9"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("answer: site iad") && out.contains("127.0.20.1"),
        "{out}"
    );

    // Drain and undrain a member, seen in the answers and the history.
    let (code, out, err) = demo.portico(&["drain", "member", "s3/fra-1", "--why", "disk swap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eventually!(
        Duration::from_secs(5),
        answers(demo.dns[1], "127.1.0.0/24") == ["127.0.10.2"],
        "the drained member is still answered"
    );
    let (code, out, _) = demo.portico(&["history", "--limit", "5"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("member s3/fra-1") && out.contains("disk swap"),
        "{out}"
    );
    assert_eq!(demo.portico(&["undrain", "member", "s3/fra-1"]).0, 0);

    // Exit codes scripts can trust.
    let (code, _, err) = demo.portico(&["drain", "site", "atlantis"]);
    assert_eq!(code, 1, "an unknown site: {err}");
    assert!(err.contains("404") && err.contains("atlantis"), "{err}");
    let (code, _, _) = demo.portico(&["drain", "planet", "x"]);
    assert_eq!(code, 2, "a bad target kind is a usage error");
    let unreachable =
        run(Command::new(tests::binary("portico")).args(["--api", "127.0.0.1:1", "status"]));
    assert_eq!(unreachable.status.code(), Some(3));

    // A drill: every node, every vantage; the report is plausible and iad comes back.
    let (code, out, err) = demo.portico(&["drill", "iad", "--json", "--timeout", "10"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "converged", "{out}");
    assert_eq!(report["restored"], true);
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "all three nodes asked: {out}");
    for node in nodes {
        for v in node["vantages"].as_array().unwrap() {
            let converged = v["converged_ms"].as_u64().expect("converged");
            assert!(converged < 3000, "{node}");
            if v["vantage"] == "127.2.0.0/24" {
                assert_eq!(v["answered_before"], true, "iad's clients had iad before");
                assert!(v["restored_ms"].as_u64().is_some_and(|ms| ms < 3000), "{v}");
            }
        }
    }
    assert!(
        report["summary"].as_str().unwrap().contains("converged"),
        "{out}"
    );
    assert_eq!(
        answers(demo.dns[2], "127.2.0.0/24"),
        ["127.0.20.1", "127.0.20.2"],
        "iad restored"
    );
    let (_, history, _) = demo.portico(&["history", "--limit", "3"]);
    assert!(
        history.contains("drill #") && history.contains("restore after drill"),
        "{history}"
    );
    let (code, listed, _) = demo.portico(&["--json", "history"]);
    assert_eq!(code, 0);
    assert!(
        listed.contains("converged in"),
        "the drill's result is kept in the history"
    );

    // A drill that would leave no healthy site is refused, and changes nothing.
    assert_eq!(demo.portico(&["drain", "site", "fra"]).0, 0);
    assert_eq!(demo.portico(&["drain", "site", "sin"]).0, 0);
    let (code, _, err) = demo.portico(&["drill", "iad"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("409") && err.contains("no healthy site"),
        "{err}"
    );
    assert_eq!(
        answers(demo.dns[0], "127.2.0.0/24"),
        ["127.0.20.1", "127.0.20.2"]
    );
    assert_eq!(demo.portico(&["undrain", "site", "fra"]).0, 0);
    assert_eq!(demo.portico(&["undrain", "site", "sin"]).0, 0);
}

/// Headless Chromium through the DevTools protocol, for the browser tests: `chromium()`
/// starts it and yields `call`, `evaluate` and `wait_for` on its first page.
pub(crate) const CDP: &str = r#"
import base64, contextlib, json, os, socket, subprocess, sys, tempfile, time, urllib.request
import websocket

@contextlib.contextmanager
def chromium():
    # Port 0: Chromium picks its DevTools port and writes it to DevToolsActivePort in the
    # profile (no race with another test for a port chosen here).
    profile = tempfile.mkdtemp(prefix="portico-chromium-")
    log = open(os.path.join(profile, "stderr.log"), "w")
    chrome = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--window-size=1400,1100", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 60
        page = None
        while page is None and time.time() < deadline and chrome.poll() is None:
            try:
                with open(os.path.join(profile, "DevToolsActivePort")) as f:
                    port = int(f.readline())
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                page = next(p for p in pages if p["type"] == "page")
            except Exception:
                time.sleep(0.1)
        if page is None:
            log.flush()
            with open(os.path.join(profile, "stderr.log")) as f:
                tail = f.read()[-2000:]
            sys.exit(f"chromium did not start (exit {chrome.poll()}): {tail}")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        counter = [0]
        def call(method, **params):
            counter[0] += 1
            ws.send(json.dumps({"id": counter[0], "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == counter[0]:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]
        def evaluate(expression):
            return call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)["result"].get("value")
        def wait_for(expression, what, seconds=15):
            deadline = time.time() + seconds
            while time.time() < deadline:
                value = evaluate(expression)
                if value:
                    return value
                time.sleep(0.1)
            sys.exit(f"timed out waiting for {what}: {evaluate('document.body.innerText')[:2000]}")
        call("Page.enable")
        yield call, evaluate, wait_for
    finally:
        chrome.terminate()
        chrome.wait(timeout=10)
"#;

/// Loads the dashboard, checks what it rendered, clicks a member's drain button with a real
/// mouse event, waits for the row to say drained, and saves a screenshot.
const DASHBOARD: &str = r#"
url, screenshot, button, row = sys.argv[1:5]
with chromium() as (call, evaluate, wait_for):
    call("Page.navigate", url=url)
    wait_for("document.querySelectorAll('#members tbody tr').length >= 6", "the members table")
    wait_for("document.querySelectorAll('#regions tbody tr').length >= 3", "the regions table")
    rendered = {
        "sites": evaluate("[...document.querySelectorAll('#sites tbody tr')].map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent)"),
        "members": evaluate("document.querySelectorAll('#members tbody tr').length"),
        "regions": evaluate("[...document.querySelectorAll('#regions tbody tr')].map(r => r.cells[0].textContent + ' -> ' + r.cells[2].textContent)"),
        "store": evaluate("document.getElementById('store').textContent"),
        "before": evaluate(f"document.querySelector('#{row}').cells[5].textContent"),
        "sparklines": evaluate("document.querySelectorAll('svg.spark').length"),
        "deployment": wait_for("document.querySelector('#version-1') && document.getElementById('deployment').textContent", "the deployment panel"),
        "versions": evaluate("[...document.querySelectorAll('#versions tbody tr')].map(r => r.cells[0].textContent + ' ' + r.cells[3].textContent)"),
    }
    x, y = evaluate(f"(() => {{ const b = document.getElementById('{button}'); b.scrollIntoView({{block: 'center'}}); const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
    for kind in ("mousePressed", "mouseReleased"):
        call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    wait_for(f"document.querySelector('#{row}').cells[5].textContent === 'drained'", "the drained row")
    rendered["after"] = evaluate(f"document.querySelector('#{row}').cells[5].textContent")
    # The timeline (redrawn every 2 s): a line per site, the drain marked on it.
    wait_for("[...document.querySelectorAll('#timeline .event.admin title')].some(t => t.textContent.includes('member s3/iad-2: admin drained'))", "the drain on the timeline")
    rendered["timeline_sites"] = evaluate("[...document.querySelectorAll('#timeline .site-line')].map(l => l.dataset.site)")
    rendered["timeline_points"] = evaluate("Math.max(...[...document.querySelectorAll('#timeline .site-line')].map(l => l.getAttribute('points').split(' ').length))")
    rendered["timeline_legend"] = evaluate("document.getElementById('timeline-legend').textContent")
    rendered["message"] = evaluate("document.getElementById('message').textContent")
    rendered["feed"] = evaluate("document.getElementById('feed').textContent")
    call("Runtime.evaluate", expression="window.scrollTo(0, 0)")
    wait_for("document.getElementById('timeline-legend').textContent.match(/peak [1-9]/)", "answers on the timeline")
    time.sleep(2.5)
    shot = call("Page.captureScreenshot", format="png")
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(json.dumps(rendered))
"#;

#[test]
fn the_dashboard_in_headless_chromium_shows_the_fabric_and_drains_a_member() {
    let demo = DemoFabric::start();
    assert_eventually!(
        Duration::from_secs(15),
        demo.portico(&["members", "--json"])
            .1
            .matches("\"eligible\": true")
            .count()
            == 6,
        "members never all eligible"
    );
    let dir = TempDir::new("browser");
    let script = dir.write("browser.py", format!("{CDP}{DASHBOARD}"));
    let screenshot = dir.path().join("dashboard.png");
    // Clients of the three regions ask the node the page comes from while it is open, so
    // its timeline has answers to draw.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, dns) = (stop.clone(), demo.dns[0]);
        std::thread::spawn(move || {
            let mut asked = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let region = ["127.1.0.0/24", "127.2.0.0/24", "127.3.0.0/24"][asked as usize % 3];
                tests::answers_for(dns, "s3.storage.example", region);
                asked += 1;
            }
            asked
        })
    };
    let output = run(Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://{}/", demo.admin[0]))
        .arg(&screenshot)
        .arg("drain-s3-iad-2")
        .arg("member-s3-iad-2"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = traffic.join().unwrap();
    assert!(asked > 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let sites = rendered["sites"].to_string();
    assert!(
        sites.contains("fra active")
            && sites.contains("iad active")
            && sites.contains("sin active"),
        "{rendered}"
    );
    assert_eq!(rendered["members"], 6);
    let regions = rendered["regions"].to_string();
    assert!(
        regions.contains("fra (127.1.0.0/16) -> fra")
            && regions.contains("sin (127.3.0.0/16) -> sin"),
        "{rendered}"
    );
    assert!(
        rendered["store"].as_str().unwrap().contains("leader"),
        "{rendered}"
    );
    assert_eq!(rendered["sparklines"], 6);
    // The deployment panel: the version the answers come from, who made it and why.
    let deployment = rendered["deployment"].as_str().unwrap();
    assert!(
        deployment.starts_with("Version 1, applied at store index")
            && deployment.contains("seeded from node"),
        "{rendered}"
    );
    assert!(
        rendered["versions"]
            .to_string()
            .contains("1 (current) node"),
        "{rendered}"
    );
    assert_eq!(rendered["before"], "active");
    assert_eq!(rendered["after"], "drained");
    assert_eq!(
        rendered["timeline_sites"],
        serde_json::json!(["fra", "iad", "sin"]),
        "{rendered}"
    );
    assert!(
        rendered["timeline_points"].as_u64().unwrap() >= 2,
        "{rendered}"
    );
    assert!(
        rendered["timeline_legend"]
            .as_str()
            .unwrap()
            .contains("iad: "),
        "{rendered}"
    );
    assert!(
        rendered["feed"]
            .as_str()
            .unwrap()
            .contains("member s3/iad-2"),
        "{rendered}"
    );
    // The click changed the fabric, not only the page: DNS no longer answers iad-2.
    assert_eventually!(
        Duration::from_secs(5),
        answers(demo.dns[0], "127.2.0.0/24") == ["127.0.20.1"],
        "the dashboard's drain did not reach the answers"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot of {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("PORTICO_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
}
