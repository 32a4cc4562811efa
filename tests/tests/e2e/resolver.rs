//! A real recursive resolver in front: unbound with a stub zone to gslb-dns and
//! `send-client-subnet`, queried from clients in two sites' networks.

use std::time::Duration;

use tests::{DnsNode, Unbound, assert_eventually, dig_at, free_port};

use crate::CONFIG;

/// unbound with `send-client-subnet` (ECS /24) and a stub zone to `upstream`.
fn start_unbound(port: u16, upstream: std::net::SocketAddr) -> Unbound {
    Unbound::start(
        port,
        "    do-ip6: no\n    module-config: \"subnetcache iterator\"\n    send-client-subnet: 127.0.0.1\n    max-client-subnet-ipv4: 24",
        &format!("    stub-addr: 127.0.0.1@{}", upstream.port()),
    )
}

#[test]
fn clients_behind_unbound_get_their_own_site() {
    let node = DnsNode::start(CONFIG, false);
    let port = free_port("127.0.0.1");
    let _unbound = start_unbound(port, node.dns);
    let resolver: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ask = |source: &str| {
        let mut lines: Vec<String> = dig_at(
            resolver,
            &["+short", "-b", source, "s3.storage.example", "A"],
        )
        .lines()
        .map(str::to_owned)
        .collect();
        lines.sort();
        lines
    };
    assert_eventually!(
        Duration::from_secs(10),
        ask("127.1.0.77") == ["127.0.10.1", "127.0.10.2"],
        "unbound did not come up or answered wrong for a fra client: {:?}",
        ask("127.1.0.77")
    );
    assert_eq!(
        ask("127.2.0.77"),
        ["127.0.20.1", "127.0.20.2"],
        "an iad client behind the same resolver"
    );
    assert_eq!(
        ask("127.3.5.77"),
        ["127.0.30.1", "127.0.30.2"],
        "a sin client"
    );
    assert_eq!(
        ask("127.1.9.1"),
        ["127.0.10.1", "127.0.10.2"],
        "fra again, from unbound's subnet cache or not"
    );
}
