//! The deployment as replicated state, across real processes and the real CLI: a change
//! applied with `portico config apply` reaches every node at one log index, `rollback`
//! restores the old answers everywhere, a node whose file is stale answers from the store,
//! and a configuration that does not validate changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tests::{DnsNode, TempDir, assert_eventually, free_port, portico_at};

use crate::cluster::store_section;

/// The deployment of these tests: two sites, a service without checks (members are
/// statically up, so answers follow the deployment alone).
const BASE: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]
soa = { rname = "hostmaster", serial = 7 }
records = ["ns1 3600 IN A 127.0.0.1"]

[dns]
tcp_idle_timeout = "2s"

[[site]]
name = "fra"
location = { lat = 50.11, lon = 8.68 }
client_networks = ["127.1.0.0/16"]

[[site]]
name = "iad"
location = { lat = 39.04, lon = -77.49 }
client_networks = ["127.2.0.0/16"]

[[service]]
name = "s3"
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
]
"#;

/// BASE with a third site, `lon`, its client network and a member there.
fn with_lon() -> String {
    BASE.replace(
        "{ site = \"iad\", node = \"iad-1\", address = \"127.0.20.1\" },",
        "{ site = \"iad\", node = \"iad-1\", address = \"127.0.20.1\" },\n    { site = \"lon\", node = \"lon-1\", address = \"127.0.40.1\" },",
    ) + "\n[[site]]\nname = \"lon\"\nlocation = { lat = 51.5, lon = -0.12 }\nclient_networks = [\"127.4.0.0/16\"]\n"
}

/// What `node` answers a client of `subnet` for `s3`.
fn answer(node: SocketAddr, subnet: &str) -> Vec<String> {
    tests::answers_for(node, "s3.storage.example", subnet)
}

/// The deployment version and the log index it applied at, as `node`'s API says.
fn version(node: &DnsNode) -> (u64, u64) {
    let config = node.get_json("/api/v1/config");
    (
        config["version"].as_u64().unwrap(),
        config["index"].as_u64().unwrap(),
    )
}

/// Three voters on 127.0.{41,42,43}.1, each with `config` as its file.
pub(crate) fn three_nodes(config: &str) -> Vec<DnsNode> {
    let raft: Vec<SocketAddr> = (1..=3)
        .map(|i| {
            let ip = format!("127.0.{}.1", 40 + i);
            format!("{ip}:{}", free_port(&ip)).parse().unwrap()
        })
        .collect();
    let view: Vec<(u64, SocketAddr, bool)> = (1..=3u64)
        .map(|n| (n, raft[n as usize - 1], false))
        .collect();
    (1..=3u64)
        .map(|id| {
            let ip = format!("127.0.{}.1", 40 + id);
            DnsNode::start_with(
                Some(&format!("{config}{}", store_section(id, &view))),
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

#[test]
fn a_config_change_reaches_every_node_at_one_index_and_rollback_restores_it() {
    let mut nodes = three_nodes(BASE);
    // The leader seeds the store from its file: version 1 everywhere.
    assert_eventually!(
        Duration::from_secs(15),
        nodes.iter().all(|n| version(n).0 == 1),
        "the store was not seeded"
    );
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.admin.unwrap()).collect();
    let lon_clients = "127.4.0.0/24";
    let before: Vec<Vec<String>> = nodes.iter().map(|n| answer(n.dns, lon_clients)).collect();
    assert!(
        before
            .iter()
            .all(|a| a == &before[0] && !a.contains(&"127.0.40.1".to_owned())),
        "{before:?}"
    );
    let dir = TempDir::new("deployment");
    let file = dir.write("portico.toml", with_lon());
    let file = file.to_str().unwrap();

    // diff: the names, and the region whose answer moves; nothing changes.
    let (code, out, err) = portico_at(&apis[..1], &["config", "diff", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("+ site lon") && out.contains("+ member s3/lon-1"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("clients of lon (127.4.0.0/16)") && l.contains("lon [127.0.40.1]")),
        "{out}"
    );
    assert_eq!(version(&nodes[0]).0, 1, "diff changes nothing");

    // apply, through a list of nodes whose first cannot be reached: the next takes it.
    let unreachable: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (code, out, err) = portico_at(
        &[unreachable, apis[1]],
        &["config", "apply", file, "--why", "open london"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("deployment version 2 applied at store index"),
        "{out}"
    );
    assert_eventually!(
        Duration::from_secs(5),
        nodes.iter().all(|n| version(n).0 == 2),
        "not every node has version 2"
    );
    let indexes: Vec<u64> = nodes.iter().map(|n| version(n).1).collect();
    assert!(
        indexes.iter().all(|i| *i == indexes[0]),
        "every node switched at the same index: {indexes:?}"
    );
    for node in &nodes {
        assert_eq!(
            answer(node.dns, lon_clients),
            ["127.0.40.1"],
            "{}",
            node.dns
        );
        assert_eq!(answer(node.dns, "127.1.0.0/24"), ["127.0.10.1"]);
    }

    // A node whose file is stale (it lacks lon) restarts: it warns, and answers from the
    // store's version.
    nodes[2].restart();
    assert_eventually!(
        Duration::from_secs(10),
        answer(nodes[2].dns, lon_clients) == ["127.0.40.1"],
        "the restarted node does not answer from the store's version"
    );
    let config = nodes[2].get_json("/api/v1/config");
    assert_eq!(config["version"], 2);
    assert_eq!(config["file_differs"], true, "{config}");
    let mut warned = false;
    for _ in 0..50 {
        warned |= nodes[2]
            .new_log_lines()
            .iter()
            .any(|l| l.contains("describes another deployment than the store's version 2"));
        if warned {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(warned, "the stale node did not warn");

    // The history names who and why; rollback restores the old answers everywhere.
    let (code, out, _) = portico_at(&apis[..1], &["config", "history"]);
    assert_eq!(code, 0);
    assert!(out.contains("open london") && out.contains("2*"), "{out}");
    let (code, out, err) = portico_at(
        &apis[..1],
        &["config", "rollback", "1", "--why", "close london"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("- site lon"), "{out}");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.admin.unwrap()).collect();
    assert_eventually!(
        Duration::from_secs(5),
        nodes.iter().all(|n| version(n).0 == 3),
        "not every node rolled back"
    );
    let indexes: Vec<u64> = nodes.iter().map(|n| version(n).1).collect();
    assert!(indexes.iter().all(|i| *i == indexes[0]), "{indexes:?}");
    for (node, before) in nodes.iter().zip(&before) {
        assert_eq!(&answer(node.dns, lon_clients), before, "{}", node.dns);
    }
    let history = tests::http(apis[2], "GET", "/api/v1/config/history", None).1;
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let last = &history["versions"][2];
    assert_eq!(last["rollback_of"], 1, "{history}");
    assert_eq!(last["why"], "close london");
    assert_eq!(last["who"], "loopback", "the caller without a token");
    let changes = nodes[1].get_json("/api/v1/history");
    assert!(
        changes["changes"].as_array().unwrap().iter().any(|c| {
            c["target"] == "deployment" && c["why"] == "open london" && c["who"] == "loopback"
        }),
        "{changes}"
    );
}

#[test]
fn a_configuration_that_does_not_validate_is_refused_with_its_key_and_changes_nothing() {
    let node = DnsNode::start(BASE, false);
    let api = [node.admin.unwrap()];
    // The node seeds the store from its file just after it starts answering.
    assert_eventually!(
        Duration::from_secs(5),
        version(&node).0 == 1,
        "the store was never seeded"
    );
    let history_before = node.get_json("/api/v1/history");
    let dir = TempDir::new("bad-config");
    for (text, key) in [
        (
            BASE.replace(
                "{ site = \"iad\", node = \"iad-1\"",
                "{ site = \"ams\", node = \"iad-1\"",
            ),
            "service[0].members[1].site",
        ),
        (
            BASE.replace("127.2.0.0/16", "127.2.0.0/33"),
            "site[1].client_networks[0]",
        ),
    ] {
        let file = dir.write("bad.toml", &text);
        let (code, out, err) = portico_at(
            &api,
            &["config", "apply", file.to_str().unwrap(), "--why", "typo"],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("422") && err.contains(key), "{key}: {err}");
        assert!(err.contains("line "), "the line is named: {err}");
    }
    // A change against another version than the store's is refused too.
    let good = dir.write("good.toml", with_lon());
    let (code, _, err) = portico_at(
        &api,
        &[
            "config",
            "apply",
            good.to_str().unwrap(),
            "--why",
            "late",
            "--expect-version",
            "7",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("409") && err.contains("version 1, not 7"),
        "{err}"
    );
    // --dry-run says what would change and changes nothing.
    let (code, out, _) = portico_at(
        &api,
        &[
            "config",
            "apply",
            good.to_str().unwrap(),
            "--why",
            "look",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("nothing applied") && out.contains("+ site lon"),
        "{out}"
    );
    assert_eq!(version(&node).0, 1, "nothing changed");
    assert_eq!(node.get_json("/api/v1/history"), history_before);
    assert_eq!(
        answer(node.dns, "127.4.0.0/24"),
        answer(node.dns, "127.1.0.0/24")
    );
    // An unreadable file is a usage error.
    let (code, _, _) = portico_at(
        &api,
        &["config", "apply", "/nonexistent.toml", "--why", "x"],
    );
    assert_eq!(code, 2);
}
