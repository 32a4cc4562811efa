use std::sync::atomic::Ordering;
use std::time::Duration;

use topology::wire::views::{GeoipView, MemberView, ServiceView, StateView, StoreView};
use topology::{AdminState, Health, Policy, Timestamp, WhenAllDown};

use super::*;

/// The default configuration's `s3` members as the store would show them, with
/// `proxy_weight` from `weight_of(node)`.
fn view(weight_of: impl Fn(&str) -> u32, address_of: impl Fn(&str) -> Option<IpAddr>) -> StateView {
    let config = topology::Config::default_config(0);
    let d = &config.deployment;
    let members = d
        .members
        .iter()
        .map(|m| MemberView {
            node: m.node.clone(),
            site: d.site(m.site).name.clone(),
            address: address_of(&m.node).unwrap_or(m.address),
            port: None,
            health: Health::Up,
            reason: "ok".into(),
            admin: AdminState::Active,
            weight: m.weight,
            weight_percent: 100,
            eligible: true,
            ineligible: None,
            proxy_weight: weight_of(&m.node),
            agent_admin: AdminState::Active,
            latency_us: None,
            passive: None,
            vantage: Vec::new(),
            note: None,
        })
        .collect();
    StateView {
        wire_version: topology::wire::WIRE_VERSION,
        generation: 1,
        built_at_ms: Timestamp(0),
        zone: "storage.example.".into(),
        config_version: 1,
        store: StoreView::default(),
        degraded: false,
        sites: Vec::new(),
        services: vec![ServiceView {
            name: "s3".into(),
            fqdn: "s3.storage.example.".into(),
            policy: Policy::Topology,
            ttl: 1,
            max_answers: 2,
            min_healthy: 1,
            when_all_down: WhenAllDown::AnswerAll,
            members,
        }],
        geoip: GeoipView {
            database_type: "test".into(),
            build_epoch: 0,
            client_class_blocks: 0,
        },
    }
}

fn ports() -> Vec<ServicePorts> {
    vec![ServicePorts {
        service: "s3".into(),
        backend_port: Some(9000),
        listen_port: 9000,
    }]
}

#[test]
fn the_store_weights_decide_who_gets_new_work_and_ejection_is_passive() {
    let config = topology::Config::default_config(0);
    let first_upstreams = Upstreams::from_deployment(&config.deployment, "fra", &ports());
    let pool = first_upstreams.pool("s3").unwrap();
    assert_eq!(pool.members.len(), 2, "fra has two s3 members");
    let client: IpAddr = "127.1.0.9".parse().unwrap();
    let first = pool.by_client(client, 1, &[]).unwrap();
    for _ in 0..10 {
        assert_eq!(pool.by_client(client, 1, &[]).unwrap().key, first.key);
    }
    // The store drains it: the client moves; undrained, it comes back.
    let drained = view(|n| if n == first.node { 0 } else { 100 }, |_| None);
    let upstreams = Upstreams::from_view(&drained, 5, "fra", &ports(), &first_upstreams);
    let other = upstreams
        .pool("s3")
        .unwrap()
        .by_client(client, 1, &[])
        .unwrap();
    assert_ne!(other.key, first.key);
    let back = Upstreams::from_view(&view(|_| 100, |_| None), 6, "fra", &ports(), &upstreams);
    let pool = back.pool("s3").unwrap();
    assert_eq!(pool.by_client(client, 1, &[]).unwrap().key, first.key);
    assert_eq!(back.index, 6);
    // Two failures in a row eject it (one success in between resets); it comes back
    // after eject_for.
    let member = pool.by_client(client, 1, &[]).unwrap();
    assert!(!member.failed(10, 2, Duration::from_millis(100)));
    member.succeeded();
    assert!(!member.failed(20, 2, Duration::from_millis(100)));
    assert!(member.failed(30, 2, Duration::from_millis(100)));
    assert_ne!(pool.by_client(client, 31, &[]).unwrap().key, first.key);
    assert!(
        pool.least_outstanding(31, &[other.key]).is_none(),
        "the only other member is excluded and the first is ejected"
    );
    assert_eq!(pool.by_client(client, 131, &[]).unwrap().key, first.key);
    assert_eq!(member.live.ejections.load(Ordering::Relaxed), 1);
}

#[test]
fn an_ejection_ends_when_the_store_has_the_member_back() {
    let client: IpAddr = "127.1.0.9".parse().unwrap();
    let up = Upstreams::from_view(
        &view(|_| 100, |_| None),
        1,
        "fra",
        &ports(),
        &Upstreams::default(),
    );
    let member = up.pool("s3").unwrap().by_client(client, 1, &[]).unwrap();
    let eject_for = Duration::from_secs(10);
    assert!(member.failed(10, 1, eject_for));
    // The store still counts it (its agent has not seen the failure yet): still ejected.
    let same = Upstreams::from_view(&view(|_| 100, |_| None), 2, "fra", &ports(), &up);
    let pool = same.pool("s3").unwrap();
    assert_ne!(pool.by_client(client, 20, &[]).unwrap().key, member.key);
    // The store takes it out (the proxy's report, or the agent), then back (probes
    // confirmed it): the ejection ends with it, long before eject_for.
    let out = view(|n| if n == member.node { 0 } else { 100 }, |_| None);
    let down = Upstreams::from_view(&out, 3, "fra", &ports(), &same);
    let back = Upstreams::from_view(&view(|_| 100, |_| None), 4, "fra", &ports(), &down);
    let pool = back.pool("s3").unwrap();
    assert_eq!(pool.by_client(client, 30, &[]).unwrap().key, member.key);
    // An ejection the store never echoed runs its course.
    assert!(member.failed(40, 1, eject_for));
    let again = Upstreams::from_view(&view(|_| 100, |_| None), 5, "fra", &ports(), &back);
    let pool = again.pool("s3").unwrap();
    assert_ne!(pool.by_client(client, 50, &[]).unwrap().key, member.key);
    assert_eq!(pool.by_client(client, 10_041, &[]).unwrap().key, member.key);
}

#[test]
fn what_the_proxy_saw_follows_a_member_into_the_next_snapshot() {
    let start = Upstreams::from_view(
        &view(|_| 100, |_| None),
        1,
        "fra",
        &ports(),
        &Upstreams::default(),
    );
    let member = start.pool("s3").unwrap().members[0].clone();
    member.live.outstanding.store(7, Ordering::Relaxed);
    let moved: IpAddr = "127.0.10.77".parse().unwrap();
    let node = member.node.clone();
    let next = Upstreams::from_view(
        &view(|_| 100, |n| (n == node).then_some(moved)),
        2,
        "fra",
        &ports(),
        &start,
    );
    let same = next
        .pool("s3")
        .unwrap()
        .members
        .iter()
        .find(|m| m.node == member.node)
        .unwrap();
    assert_eq!(same.live.outstanding.load(Ordering::Relaxed), 7);
    assert_eq!(
        same.address,
        SocketAddr::new(moved, 9000),
        "a discovered address moves"
    );
    // Another site's members never appear here.
    assert!(next.members().all(|m| m.node.starts_with("fra-")));
}

#[test]
fn least_outstanding_prefers_the_idle_member_and_respects_weight() {
    let a = (1u64, 100u32, 3u32);
    let b = (2u64, 100u32, 0u32);
    for start in 0..4 {
        assert_eq!(pick_least_outstanding(&[a, b], start, &[]), Some(2));
    }
    // With four times the weight, a's 3 in flight weigh less than b's 1.
    let a = (1, 400, 3);
    let b = (2, 100, 1);
    assert_eq!(pick_least_outstanding(&[a, b], 0, &[]), Some(1));
    // Ties go to the first from `start`, so rotating spreads them.
    let tie = [(1, 100, 0), (2, 100, 0)];
    assert_eq!(pick_least_outstanding(&tie, 0, &[]), Some(1));
    assert_eq!(pick_least_outstanding(&tie, 1, &[]), Some(2));
    assert_eq!(pick_least_outstanding(&tie, 0, &[1]), Some(2));
    assert_eq!(
        pick_least_outstanding(&[(1, 0, 0)], 0, &[]),
        None,
        "weight 0"
    );
}

#[test]
fn ejection_is_a_state_machine_of_time_passed_in() {
    let mut ejection = Ejection::default();
    assert!(!ejection.failed(0, 3, 50));
    assert!(!ejection.failed(1, 3, 50));
    assert!(ejection.failed(2, 3, 50));
    assert!(ejection.ejected(51) && !ejection.ejected(52));
    ejection.succeeded();
    assert!(
        !ejection.failed(60, 3, 50),
        "the count starts again after ejection"
    );
}
