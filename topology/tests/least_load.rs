//! Golden tests of the `least-load` policy: the site with the most headroom (the effective
//! weights of its eligible members, after load feedback, over its configured weights) wins;
//! equal headroom falls back to the client's topology order (own site, then distance).

use std::net::IpAddr;

use topology::{ClassTable, Config, Family, Health, State, Timestamp, select};

const CONFIG: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"
location = { lat = 50.1109, lon = 8.6821 }
client_networks = ["127.1.0.0/16"]
[[site]]
name = "iad"
location = { lat = 39.0438, lon = -77.4874 }
client_networks = ["127.2.0.0/16"]
[[site]]
name = "sin"
location = { lat = 1.3521, lon = 103.8198 }
client_networks = ["127.3.0.0/16"]

[[service]]
name = "s3"
policy = "least-load"
max_answers = 1
members = [
    { site = "fra", node = "fra-1", address = "10.0.1.1", weight = 100 },
    { site = "fra", node = "fra-2", address = "10.0.1.2", weight = 100 },
    { site = "iad", node = "iad-1", address = "10.0.2.1", weight = 200 },
    { site = "sin", node = "sin-1", address = "10.0.3.1", weight = 100 },
]
"#;

/// One case: the client, the load-feedback percentages (node, percent), the nodes that
/// are down, and the expected site of the first answer.
type Case<'a> = (&'a str, &'a [(&'a str, u32)], &'a [&'a str], &'a str);

fn check(cases: &[Case<'_>]) {
    let deployment = Config::from_toml(CONFIG, 1).unwrap().deployment;
    let table = ClassTable::build(&deployment, std::iter::empty());
    let service = deployment.service_by_name("s3").unwrap();
    for (client, loads, down, expected) in cases {
        let mut state = State::initial(&deployment);
        for member in &deployment.members {
            let ms = state.member_mut(member.id);
            ms.health = if down.contains(&member.node.as_str()) {
                Health::Down
            } else {
                Health::Up
            };
            if let Some((_, percent)) = loads.iter().find(|(node, _)| *node == member.node) {
                ms.weight_percent = *percent;
            }
        }
        let ip: IpAddr = client.parse().unwrap();
        let (class, _) = table.lookup(ip);
        let selection = select(
            &deployment,
            &state,
            service,
            Family::V4,
            table.class(class),
            Timestamp(0),
        );
        let first = deployment.member(selection.variants[0].members[0]);
        let site = &deployment.site(first.site).name;
        assert_eq!(
            site, expected,
            "client {client}, loads {loads:?}, down {down:?}: {:?}",
            selection.explanation.outcome
        );
    }
}

#[test]
fn golden_least_load() {
    check(&[
        // All idle: equal headroom (100 %), so each client keeps its own site.
        ("127.1.0.1", &[], &[], "fra"),
        ("127.2.0.1", &[], &[], "iad"),
        ("127.3.0.1", &[], &[], "sin"),
        // fra's nodes report 50 %: fra has 50 % headroom, the others 100 %; a fra client
        // goes to the nearest of those (iad), an iad client stays.
        ("127.1.0.1", &[("fra-1", 50), ("fra-2", 50)], &[], "iad"),
        ("127.2.0.1", &[("fra-1", 50), ("fra-2", 50)], &[], "iad"),
        // One fra node down: fra keeps 50 % of its capacity.
        ("127.1.0.1", &[], &["fra-1"], "iad"),
        // Everyone loaded, sin least: every client goes to sin.
        (
            "127.1.0.1",
            &[("fra-1", 40), ("fra-2", 40), ("iad-1", 60), ("sin-1", 90)],
            &[],
            "sin",
        ),
        (
            "127.2.0.1",
            &[("fra-1", 40), ("fra-2", 40), ("iad-1", 60), ("sin-1", 90)],
            &[],
            "sin",
        ),
        // Headroom is relative to a site's configured weight: iad at 75 % of 200 still
        // has less headroom (75 %) than fra at 80 % of 200 (80 %).
        (
            "127.2.0.1",
            &[("fra-1", 80), ("fra-2", 80), ("iad-1", 75), ("sin-1", 50)],
            &[],
            "fra",
        ),
        // Within a percent is a tie: the client's own site wins.
        (
            "127.2.0.1",
            &[("fra-1", 80), ("fra-2", 81), ("iad-1", 80), ("sin-1", 50)],
            &[],
            "iad",
        ),
        // A drained-to-zero site (agent weight 0) is not available at all.
        ("127.3.0.1", &[("sin-1", 0)], &[], "fra"),
        // An unknown client: the most headroom, ties in configuration order.
        ("10.9.9.9", &[("fra-1", 10)], &[], "iad"),
        ("10.9.9.9", &[], &[], "fra"),
    ]);
}
