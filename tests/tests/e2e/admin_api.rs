//! The admin API of the running binary: state, explain, drain, metrics.

use std::time::Duration;

use tests::{DnsNode, assert_eventually, http_with};

use crate::CONFIG;

#[test]
fn drain_a_site_and_undrain_it() {
    let node = DnsNode::start(CONFIG, false);
    let fra = ["127.0.10.1", "127.0.10.2"];
    assert_eq!(node.short(&["-b", "127.1.0.9", "s3.storage.example"]), fra);
    let (status, body) = node.http(
        "POST",
        "/api/v1/sites/fra/drain",
        Some(r#"{"who":"e2e","why":"drill"}"#),
    );
    assert_eq!(status, 200, "{body}");
    // Frankfurt's clients now go to the next nearest site, Ashburn.
    assert_eventually!(
        Duration::from_secs(3),
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]) == ["127.0.20.1", "127.0.20.2"],
        "drained site still answered"
    );
    let (_, history) = node.http("GET", "/api/v1/history", None);
    assert!(
        history.contains("site fra") && history.contains("drill") && history.contains("e2e"),
        "{history}"
    );
    let (status, _) = node.http("POST", "/api/v1/sites/fra/undrain", None);
    assert_eq!(status, 200);
    assert_eventually!(
        Duration::from_secs(3),
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]) == fra,
        "undrained site not back"
    );
}

#[test]
fn force_down_a_member() {
    let node = DnsNode::start(CONFIG, false);
    let (status, body) = node.http("POST", "/api/v1/members/s3/fra-1/force-down", None);
    assert_eq!(status, 200, "{body}");
    assert_eventually!(
        Duration::from_secs(3),
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]) == ["127.0.10.2"],
        "forced-down member still answered"
    );
    let (_, state) = node.http("GET", "/api/v1/state", None);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let member = &state["services"][0]["members"][0];
    assert_eq!(member["node"], "fra-1");
    assert_eq!(member["admin"], "forced-down");
    assert_eq!(member["eligible"], false);
}

#[test]
fn explain_gives_the_reasoning() {
    let node = DnsNode::start(CONFIG, false);
    let (status, body) = node.http(
        "GET",
        "/api/v1/explain?name=s3.storage.example&client=198.51.100.0/24",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let explain: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(explain["located_by"], "GeoIP database");
    assert_eq!(explain["ecs_scope"], 24);
    assert_eq!(explain["explain"]["outcome"]["site"], "iad");
    assert_eq!(
        explain["explain"]["answers"],
        serde_json::json!(["127.0.20.1", "127.0.20.2"])
    );
    assert_eq!(explain["explain"]["location"]["location"]["country"], "US");
    // Bad input: clear 4xx JSON errors.
    let (status, body) = node.http(
        "GET",
        "/api/v1/explain?name=nope.storage.example&client=1.2.3.4",
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not a GSLB service"), "{body}");
    let (status, body) = node.http("GET", "/api/v1/explain?name=s3&client=banana", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = node.http("POST", "/api/v1/sites/nowhere/drain", None);
    assert_eq!(status, 404);
    let (status, _) = node.http("POST", "/api/v1/sites/fra/explode", None);
    assert_eq!(status, 404);
}

#[test]
fn metrics_count_queries_by_rcode_service_and_site() {
    let node = DnsNode::start(CONFIG, false);
    node.short(&["-b", "127.2.0.9", "s3.storage.example"]);
    node.short(&["nope.storage.example"]);
    let (status, metrics) = node.http("GET", "/metrics", None);
    assert_eq!(status, 200);
    let value = |line_start: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line_start} missing in\n{metrics}"))
    };
    assert!(value("portico_dns_queries_total{rcode=\"NXDOMAIN\"}") >= 1);
    assert!(value("portico_dns_service_queries_total{service=\"s3\"}") >= 1);
    assert!(value("portico_dns_answers_total{service=\"s3\",site=\"iad\"}") >= 1);
    assert_eq!(
        value("portico_member_up{service=\"s3\",site=\"fra\",node=\"fra-1\"}"),
        1
    );
}

#[test]
fn watch_streams_applied_state_and_resumes_from_an_index() {
    let node = DnsNode::start(CONFIG, false);
    let admin = node.admin.unwrap();
    let within = Duration::from_secs(5);
    let first = tests::watch_until(admin, None, within, |_| true);
    let start = first[0].index;
    assert!(!first[0].degraded);
    assert_eq!(first[0].config_version, 1, "the seeded deployment");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        tests::http(admin, "POST", "/api/v1/members/s3/fra-2/drain", None)
    });
    // Resuming after `start`: newer states only, until the drain shows.
    let drained = |line: &topology::wire::views::WatchLine| {
        line.state.services[0].members[1].admin == topology::AdminState::Drained
    };
    let lines = tests::watch_until(admin, Some(start), within, drained);
    assert_eq!(writer.join().unwrap().0, 200);
    let indexes: Vec<u64> = lines.iter().map(|l| l.index).collect();
    assert!(indexes[0] > start, "resumed after {start}: {indexes:?}");
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "increasing: {indexes:?}"
    );
    assert!(drained(lines.last().unwrap()));
    assert_eq!(
        lines.last().unwrap().state.services[0].members[1].node,
        "fra-2"
    );
}

#[test]
fn agent_reports_are_applied_once_and_in_order() {
    let node = DnsNode::start(CONFIG, false);
    let report = |sequence: u64, health: &str| {
        tests::agent_report(
            "fra",
            "agent-fra",
            sequence,
            &[("s3", "fra-1", health, "probe")],
        )
    };
    let (status, body) = node.http("POST", "/api/v1/reports", Some(&report(1, "down")));
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.http("POST", "/api/v1/reports", Some(&report(1, "up")));
    assert_eq!(status, 422, "a repeated sequence is refused: {body}");
    assert!(body.contains("not newer"), "{body}");
    let (status, body) = node.http(
        "POST",
        "/api/v1/reports",
        Some(r#"{"site":"ams","agent":"x","sequence":1,"sent_at":1,"members":[]}"#),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = node.http("POST", "/api/v1/reports", Some(r#"{"site":"fra"}"#));
    assert_eq!(status, 400, "{body}");
    // A report without a field the store needs is refused, naming it; a field it does
    // not know (a newer agent's) is not.
    let without_weight = report(2, "up").replace(",\"weight_percent\":100", "");
    let (status, body) = node.http("POST", "/api/v1/reports", Some(&without_weight));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("missing field `weight_percent`"), "{body}");
    let with_more = report(3, "down").replace("\"reason\":", "\"rack\":\"r12\",\"reason\":");
    let (status, body) = node.http("POST", "/api/v1/reports", Some(&with_more));
    assert_eq!(status, 200, "{body}");
    let state = node.get_json("/api/v1/state");
    // s3 has no check in this configuration: members stay statically up, the report's
    // record is kept (it counts once a check is configured).
    assert_eq!(state["services"][0]["members"][0]["health"], "up");
    let history = node.get_json("/api/v1/history");
    assert!(
        history.to_string().contains("health down: probe"),
        "{history}"
    );
}

#[test]
fn rtt_samples_steer_the_latency_policy() {
    let node = DnsNode::start(CONFIG, false);
    let fast = |source: &str| node.short(&["-b", source, "fast.storage.example"]);
    assert_eq!(
        fast("127.1.5.9"),
        ["127.0.10.31"],
        "no samples yet: the client's own site"
    );
    let (status, body) = node.http(
        "POST",
        "/api/v1/rtt",
        Some(r#"{"site":"iad","samples":[{"prefix":"127.1.5.0/24","rtt_us":2000,"samples":40}]}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = node.http(
        "POST",
        "/api/v1/rtt",
        Some(r#"{"site":"fra","samples":[{"prefix":"127.1.5.0/24","rtt_us":9000,"samples":40}]}"#),
    );
    assert_eq!(status, 200);
    assert_eventually!(
        Duration::from_secs(3),
        fast("127.1.5.9") == ["127.0.20.31"],
        "the lowest RTT did not win"
    );
    assert_eq!(
        fast("127.1.6.9"),
        ["127.0.10.31"],
        "a prefix without samples keeps its own site"
    );
    let out = node.dig(&["fast.storage.example", "+subnet=127.1.5.0/24"]);
    assert!(
        out.contains("CLIENT-SUBNET: 127.1.5.0/24/24"),
        "scope of the measured prefix: {out}"
    );
    let (_, explain) = node.http("GET", "/api/v1/explain?name=fast&client=127.1.5.9", None);
    assert!(explain.contains("measured RTT"), "{explain}");
}

#[test]
fn tokens_guard_mutations_and_reads_and_name_the_caller() {
    let dir = tests::TempDir::new("tokens");
    let tokens = dir.write(
        "tokens",
        "# operators\nalice alice-0123456789abcdef\nagents-0123456789abcdef\n",
    );
    let config = format!(
        "{CONFIG}\n[admin]\ntoken_file = \"{}\"\nreads = \"token\"\n",
        tokens.display()
    );
    let node = DnsNode::start(&config, false);
    let admin = node.admin.unwrap();
    let bearer = |token: &str| format!("Bearer {token}");
    let drain = "/api/v1/members/s3/fra-1/drain";
    let body = Some(r#"{"why":"disk swap"}"#);
    // No token, a wrong token: 401 with a JSON error and a challenge; nothing applied.
    let (status, text) = http_with(admin, "POST", drain, body, &[]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("\"error\"") && text.contains("Bearer"),
        "{text}"
    );
    let wrong = bearer("alice-0123456789abcdeX");
    let (status, _) = http_with(admin, "POST", drain, body, &[("Authorization", &wrong)]);
    assert_eq!(status, 401);
    // Reads need a token too with reads = "token"; /metrics and /healthz stay open.
    assert_eq!(http_with(admin, "GET", "/api/v1/state", None, &[]).0, 401);
    assert_eq!(http_with(admin, "GET", "/metrics", None, &[]).0, 200);
    assert_eq!(http_with(admin, "GET", "/healthz", None, &[]).0, 200);
    let alice = bearer("alice-0123456789abcdef");
    let (status, state) = http_with(
        admin,
        "GET",
        "/api/v1/state",
        None,
        &[("Authorization", &alice)],
    );
    assert_eq!(status, 200, "{state}");
    assert!(
        !state.contains("\"admin\":\"drained\""),
        "the refused drain was not applied"
    );
    // The right token: applied, and the history names the token's owner.
    let (status, text) = http_with(admin, "POST", drain, body, &[("Authorization", &alice)]);
    assert_eq!(status, 200, "{text}");
    let (_, history) = http_with(
        admin,
        "GET",
        "/api/v1/history",
        None,
        &[("Authorization", &alice)],
    );
    assert!(
        history.contains("\"who\":\"alice\"") && history.contains("disk swap"),
        "{history}"
    );
    // An unnamed token works too (agents, proxies).
    let agents = bearer("agents-0123456789abcdef");
    let (status, _) = http_with(
        admin,
        "POST",
        "/api/v1/members/s3/fra-1/undrain",
        None,
        &[("Authorization", &agents)],
    );
    assert_eq!(status, 200);
    // Malformed bodies still get a clear 400 once authorized.
    let (status, text) = http_with(
        admin,
        "POST",
        drain,
        Some("{not json"),
        &[("Authorization", &alice)],
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"error\""), "{text}");
}

#[test]
fn a_token_file_that_cannot_be_used_stops_the_start() {
    let dir = tests::TempDir::new("tokens");
    let short = dir.write("tokens", "bob tooshort\n");
    let config = format!("{CONFIG}\n[admin]\ntoken_file = \"{}\"\n", short.display());
    let path = dir.write("portico.toml", config);
    let output = tests::run(
        std::process::Command::new(tests::binary("gslb-dns"))
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin.token_file") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn drills_and_the_dashboard_through_the_api() {
    let node = DnsNode::start(CONFIG, false);
    // The dashboard page is served from the binary.
    let (status, page) = node.http("GET", "/", None);
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>Portico</title>") && page.contains("/api/v1/watch"),
        "{page}"
    );
    // Bad drill requests get 4xx with a JSON error and change nothing.
    for (body, expected) in [
        ("{not json", 400),
        (r#"{"site":"fra","mode":"explode"}"#, 400),
        (r#"{"site":"fra","colour":"red"}"#, 400),
        (r#"{"site":"atlantis"}"#, 404),
        (r#"{"site":"fra","member":"s3/iad-1"}"#, 400),
        (r#"{"site":"fra","member":"nope"}"#, 400),
    ] {
        let (status, text) = node.http("POST", "/api/v1/drills?wait=true", Some(body));
        assert_eq!(status, expected, "{body}: {text}");
        assert!(text.contains("\"error\""), "{body}: {text}");
    }
    assert_eq!(
        node.get_json("/api/v1/drills")["drills"],
        serde_json::json!([])
    );
    assert_eq!(node.http("GET", "/api/v1/drills/7", None).0, 404);
    // A drill of one node: fra's clients move to iad, then fra is restored.
    let (status, text) = node.http(
        "POST",
        "/api/v1/drills?wait=true",
        Some(r#"{"site":"fra","service":"s3","vantages":["127.1.0.0/24","127.2.0.0/24"],"timeout_ms":3000}"#),
    );
    assert_eq!(status, 200, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["status"], "converged", "{text}");
    assert_eq!(report["restored"], true);
    let vantages = report["nodes"][0]["vantages"].as_array().unwrap();
    assert_eq!(vantages[0]["answered_before"], true);
    assert_eq!(vantages[1]["answered_before"], false);
    assert_eq!(vantages[1]["converged_ms"], 0);
    let id = report["id"].as_u64().unwrap();
    assert_eq!(
        node.get_json(&format!("/api/v1/drills/{id}"))["status"],
        "converged"
    );
    assert_eq!(node.get_json("/api/v1/drills")["drills"][0]["id"], id);
    assert_eq!(
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]),
        ["127.0.10.1", "127.0.10.2"],
        "fra is back"
    );
    // Without ?wait the drill runs in the background: 202 with where to find the report.
    let (status, text) = node.http(
        "POST",
        "/api/v1/drills",
        Some(r#"{"site":"fra","timeout_ms":2000}"#),
    );
    assert_eq!(status, 202, "{text}");
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    let report = format!("/api/v1/drills/{}", started["id"]);
    assert_eventually!(
        Duration::from_secs(10),
        node.http("GET", &report, None).0 == 200,
        "the background drill left no report"
    );
}

#[test]
fn service_actions_and_malformed_bodies() {
    let node = DnsNode::start(CONFIG, false);
    // A whole service in maintenance, then back.
    let (status, text) = node.http(
        "POST",
        "/api/v1/services/s3/maintenance",
        Some(r#"{"why":"upgrade"}"#),
    );
    assert_eq!(status, 200, "{text}");
    let state = node.get_json("/api/v1/state");
    let s3 = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "s3")
        .unwrap();
    assert!(
        s3["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["admin"] == "maintenance")
    );
    assert_eq!(node.http("POST", "/api/v1/services/s3/clear", None).0, 200);
    // Unknown names and actions are 404, malformed bodies 400, each with a JSON error.
    for (path, body, expected) in [
        ("/api/v1/services/nope/drain", None, 404),
        ("/api/v1/services/s3/explode", None, 404),
        ("/api/v1/sites/fra/drain", Some("[1,2]"), 400),
        ("/api/v1/reports", Some("{\"site\":"), 400),
        ("/api/v1/reports", Some(r#"{"site":"fra"}"#), 400),
        ("/api/v1/rtt", Some("not json"), 400),
        (
            "/api/v1/rtt",
            Some(r#"{"site":"atlantis","samples":[]}"#),
            404,
        ),
        (
            "/api/v1/store/nodes",
            Some(r#"{"id":0,"raft":"127.0.0.1:1"}"#),
            400,
        ),
        (
            "/api/v1/store/nodes",
            Some(r#"{"id":9,"raft":"nowhere"}"#),
            400,
        ),
    ] {
        let (status, text) = node.http("POST", path, body);
        assert_eq!(status, expected, "{path} {body:?}: {text}");
        assert!(text.contains("\"error\""), "{path}: {text}");
    }
    assert_eq!(node.http("DELETE", "/api/v1/store/nodes/42", None).0, 404);
    assert_eq!(node.http("GET", "/api/v1/explain?name=s3", None).0, 400);
    let (status, text) = node.http(
        "GET",
        "/api/v1/explain?name=s3&client=127.2.0.9&without=moon:x",
        None,
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = node.http(
        "GET",
        "/api/v1/explain?name=s3&client=127.2.0.9&without=site:iad",
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("\"site\":\"iad\",\"spilled_to\""),
        "iad is not the answer when it is down: {text}"
    );
}

#[test]
fn a_client_leaving_mid_drill_does_not_skip_the_restore() {
    // Node 2 is a learner that never runs: its DNS address answers nothing, so a drill that
    // asks it cannot converge and runs until its timeout.
    let raft = format!("127.0.0.1:{}", tests::free_port("127.0.0.1"));
    let config = format!(
        "{CONFIG}\n[store]\nnode_id = 1\ntick_interval = \"50ms\"\ninsecure_plaintext = true\nnodes = [{{ id = 1, raft = \"{raft}\" }}, {{ id = 2, raft = \"127.0.0.1:9\", dns = \"127.0.99.99:53\", learner = true }}]\n"
    );
    let node = DnsNode::start(&config, false);
    assert_eventually!(
        Duration::from_secs(10),
        node.get_json("/api/v1/store")["node"]["leader"] == 1,
        "no leader"
    );
    // Start a drill and leave before it ends.
    let admin = node.admin.unwrap();
    let body = r#"{"site":"fra","service":"s3","vantages":["127.1.0.0/24"],"timeout_ms":2000}"#;
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    let request = format!(
        "POST /api/v1/drills?wait=true HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    assert_eventually!(
        Duration::from_secs(5),
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]) == ["127.0.20.1", "127.0.20.2"],
        "the drill did not drain fra"
    );
    drop(stream);
    // The drill goes on without its client: it times out on node 2 and restores fra.
    assert_eventually!(
        Duration::from_secs(10),
        node.get_json("/api/v1/drills")["drills"][0]["status"] == "timeout",
        "no report: {}",
        node.get_json("/api/v1/drills")
    );
    let report = &node.get_json("/api/v1/drills")["drills"][0];
    assert_eq!(report["restored"], true, "{report}");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        node.short(&["-b", "127.1.0.9", "s3.storage.example"]),
        ["127.0.10.1", "127.0.10.2"],
        "fra restored"
    );
}

#[test]
fn the_timeline_counts_each_sites_answers_per_second_and_marks_the_drain() {
    let node = DnsNode::start(CONFIG, false);
    let fra = ["127.0.10.1", "127.0.10.2"];
    let iad = ["127.0.20.1", "127.0.20.2"];
    // Every answer a fra client gets, counted by the site it names.
    let mut sent = std::collections::BTreeMap::from([("fra", 0u64), ("iad", 0u64)]);
    let ask = |sent: &mut std::collections::BTreeMap<&str, u64>| {
        let answer = node.short(&["-b", "127.1.0.9", "s3.storage.example"]);
        let site = match answer.as_slice() {
            a if a == fra => "fra",
            a if a == iad => "iad",
            other => panic!("an answer of neither site: {other:?}"),
        };
        *sent.get_mut(site).unwrap() += 1;
        site
    };
    let timeline = |node: &DnsNode| {
        let view = node.get_json("/api/v1/timeline");
        let sites: Vec<String> = view["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        let mut totals = std::collections::BTreeMap::new();
        for point in view["points"].as_array().unwrap() {
            for (site, n) in sites.iter().zip(point["answers"].as_array().unwrap()) {
                *totals.entry(site.clone()).or_insert(0u64) += n.as_u64().unwrap();
            }
        }
        (view, totals)
    };
    for _ in 0..12 {
        assert_eq!(ask(&mut sent), "fra");
    }
    let (status, body) = node.http(
        "POST",
        "/api/v1/sites/fra/drain",
        Some(r#"{"who":"e2e","why":"timeline"}"#),
    );
    assert_eq!(status, 200, "{body}");
    while ask(&mut sent) == "fra" {
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..7 {
        assert_eq!(ask(&mut sent), "iad");
    }
    // Sampled once a second: within a few seconds the window holds every answer, each
    // under the site it named.
    assert_eventually!(
        Duration::from_secs(4),
        {
            let (_, totals) = timeline(&node);
            totals.get("fra") == Some(&sent["fra"])
                && totals.get("iad") == Some(&sent["iad"])
                && totals.get("sin") == Some(&0)
        },
        "the timeline's totals {:?} are not the answers sent {sent:?}",
        timeline(&node).1
    );
    let (view, _) = timeline(&node);
    assert_eq!(view["step_ms"], 1000);
    let events = view["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["target"] == "site fra"
            && e["change"] == "admin drained"
            && e["why"] == "timeline"),
        "the drain is marked: {events:?}"
    );
    // The drain falls between the last fra answers and the first iad ones.
    let drained_at = events.iter().find(|e| e["target"] == "site fra").unwrap()["at"]
        .as_u64()
        .unwrap();
    let points = view["points"].as_array().unwrap();
    let last_fra = points
        .iter()
        .filter(|p| p["answers"][0].as_u64().unwrap() > 0)
        .map(|p| p["at"].as_u64().unwrap())
        .max()
        .unwrap();
    let first_iad = points
        .iter()
        .filter(|p| p["answers"][1].as_u64().unwrap() > 0)
        .map(|p| p["at"].as_u64().unwrap())
        .min()
        .unwrap();
    // (a point covers the second before its time)
    assert!(
        first_iad >= drained_at && last_fra <= drained_at + 1000,
        "fra answered until {last_fra}, the drain at {drained_at}, iad from {first_iad}"
    );
}
