//! The admin API of the running binary: state, explain, drain, metrics.

use std::time::Duration;

use tests::{DnsNode, assert_eventually};

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
