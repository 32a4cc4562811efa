//! Golden tests of the `latency` policy: the lowest measured RTT for the client's prefix,
//! falling back to distance (the `topology` order) where no samples exist.

use std::net::IpAddr;

use ipnet::IpNet;
use topology::{ClassTable, Config, Family, Health, SiteId, State, Timestamp, select};

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

[[service]]
name = "fast"
policy = "latency"
max_answers = 1
members = [
    { site = "fra", address = "10.0.1.1" },
    { site = "iad", address = "10.0.2.1" },
    { site = "sin", address = "10.0.3.1" },
]

[[service]]
name = "near"
policy = "topology"
max_answers = 1
members = [
    { site = "fra", address = "10.1.1.1" },
    { site = "iad", address = "10.1.2.1" },
    { site = "sin", address = "10.1.3.1" },
]
"#;

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// (service, client, iad down?, expected answer, expected ECS scope)
fn check(cases: &[(&str, &str, bool, &str, u8)]) {
    let deployment = Config::from_toml(CONFIG, 1).unwrap().deployment;
    let (fra, iad, sin) = (SiteId(0), SiteId(1), SiteId(2));
    let rtt = vec![
        (net("127.1.5.0/24"), vec![(fra, 9_000), (iad, 2_000)]),
        (net("10.9.9.0/24"), vec![(sin, 100)]),
        (net("127.2.7.0/24"), vec![(iad, 50_000), (fra, 50_000)]),
    ];
    let table = ClassTable::build_with_rtt(&deployment, std::iter::empty(), rtt);
    for (service, client, iad_down, expected, scope) in cases {
        let mut state = State::initial(&deployment);
        if *iad_down {
            for member in deployment.members.iter().filter(|m| m.site == iad) {
                state.member_mut(member.id).health = Health::Down;
            }
        }
        let ip: IpAddr = client.parse().unwrap();
        let (class, block) = table.lookup(ip);
        let service_id = deployment.service_by_name(service).unwrap();
        let selection = select(
            &deployment,
            &state,
            service_id,
            Family::V4,
            table.class(class),
            Timestamp(0),
        );
        let answer = deployment
            .member(selection.variants[0].members[0])
            .address
            .to_string();
        assert_eq!(
            answer, *expected,
            "{service} for {client} (iad down: {iad_down})"
        );
        assert_eq!(block, *scope, "{service} for {client}: scope");
    }
}

#[test]
fn golden_latency() {
    check(&[
        // A fra client whose /24 measured iad faster: latency picks iad, topology stays local.
        ("fast", "127.1.5.7", false, "10.0.2.1", 24),
        ("near", "127.1.5.7", false, "10.1.1.1", 24),
        // Its neighbours without samples fall back to distance: their own site (in the
        // largest block around the measured /24, here 127.1.6.0/23).
        ("fast", "127.1.6.7", false, "10.0.1.1", 23),
        // iad down: the next lowest RTT (fra).
        ("fast", "127.1.5.7", true, "10.0.1.1", 24),
        // An unknown client with samples only from sin: sin, though config order says fra.
        ("fast", "10.9.9.1", false, "10.0.3.1", 24),
        ("near", "10.9.9.1", false, "10.1.1.1", 24),
        // Equal RTTs: the tie goes to the lower site id (fra), not to the local site.
        ("fast", "127.2.7.1", false, "10.0.1.1", 24),
        ("near", "127.2.7.1", false, "10.1.2.1", 24),
    ]);
}
