//! Golden tests of the pure `apply`: a list of commands in, the machine (and its projection
//! onto the deployment) out.

use std::sync::Arc;

use topology::wire::config::DeploymentChange;
use topology::wire::{
    AdminAction, AgentReport, Command, Envelope, MemberObservation, RttReport, RttSample, Target,
    WIRE_VERSION,
};
use topology::{AdminState, Config, Deployment, Health, Timestamp};

use super::*;
use Health::{Down, Up};

const CONFIG: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"
[[site]]
name = "iad"

[[service]]
name = "s3"
check = { kind = "s3", interval = "500ms" }
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "fra", node = "fra-2", address = "127.0.10.2" },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
]

[[service]]
name = "static"
members = [{ site = "fra", node = "f", address = "127.0.10.9" }]
"#;

fn deployment() -> Arc<Deployment> {
    Arc::new(
        Config::from_toml(CONFIG, 1)
            .expect("test config")
            .deployment,
    )
}

/// A deployment change to the document of `config` (a whole configuration file).
fn change(config: &str, expect_version: Option<u64>) -> Command {
    Command::Deployment(DeploymentChange {
        document: topology::deployment_document(config).expect("document"),
        expect_version,
        who: "ops".into(),
        why: "test".into(),
        rollback_of: None,
        note: None,
    })
}

fn envelope(at: u64, command: Command) -> Envelope {
    Envelope {
        version: WIRE_VERSION,
        id: format!("t-{at}"),
        proposed_at: Timestamp(at),
        command,
    }
}

fn report(
    site: &str,
    agent: &str,
    sequence: u64,
    members: &[(&str, Health, &str, u32)],
) -> Command {
    Command::AgentReport(AgentReport {
        site: site.into(),
        agent: agent.into(),
        sequence,
        sent_at: Timestamp(sequence),
        members: members
            .iter()
            .map(|(node, health, reason, weight)| MemberObservation {
                service: "s3".into(),
                node: (*node).into(),
                health: *health,
                reason: (*reason).into(),
                latency_us: Some(900),
                weight_percent: *weight,
                agent_admin: AdminState::Active,
                address: None,
                passive_confirmed: None,
            })
            .collect(),
        vantage: Vec::new(),
    })
}

fn passive(site: &str, members: &[(&str, &str)]) -> Command {
    Command::PassiveReport(topology::wire::PassiveReport {
        site: site.into(),
        proxy: format!("{site}-proxy"),
        members: members
            .iter()
            .map(|(service, node)| topology::wire::PassiveObservation {
                service: (*service).into(),
                node: (*node).into(),
                reason: "3 failures in a row: connect_refused".into(),
            })
            .collect(),
    })
}

/// An agent report of fra-1 up, confirming passive mark `confirmed`.
fn confirming(sequence: u64, confirmed: Option<u64>) -> Command {
    let Command::AgentReport(mut report) =
        report("fra", "agent-fra", sequence, &[("fra-1", Up, "ok", 100)])
    else {
        unreachable!()
    };
    report.members[0].passive_confirmed = confirmed;
    Command::AgentReport(report)
}

fn admin(target: Target, admin: AdminState) -> Command {
    Command::Admin(AdminAction {
        target,
        admin,
        who: "ops".into(),
        why: "test".into(),
        note: None,
    })
}

fn member(service: &str, node: &str) -> Target {
    Target::Member {
        service: service.into(),
        node: node.into(),
    }
}

/// Seeds the test deployment at index 1 (time 1000), then applies `commands` (proposed at
/// 2000, 3000, ...); returns the machine and the commands' outcomes.
fn run(commands: Vec<Command>) -> (Machine, Vec<Outcome>) {
    let mut machine = Machine::default();
    assert_eq!(
        apply(&mut machine, 1, &envelope(1000, change(CONFIG, Some(0)))),
        Outcome::Applied
    );
    let outcomes = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| {
            let index = i as u64 + 2;
            apply(
                &mut machine,
                index,
                &envelope((i as u64 + 2) * 1000, command),
            )
        })
        .collect();
    (machine, outcomes)
}

/// The projected health, admin state and weight of a member.
fn projected(machine: &Machine, service: &str, node: &str) -> (Health, AdminState, u32) {
    let deployment = deployment();
    let state = machine.state(&deployment);
    let id = deployment.member_by_name(service, node).expect("member");
    let m = state.member(id);
    (m.health, m.admin, m.weight_percent)
}

#[test]
fn golden_apply() {
    use Health::Unknown;
    struct Case {
        name: &'static str,
        commands: Vec<Command>,
        outcomes: Vec<bool>,
        expect: Vec<(&'static str, &'static str, (Health, AdminState, u32))>,
    }
    let active = AdminState::Active;
    let cases = vec![
        Case {
            name: "nothing applied: checked members unknown, unchecked statically up",
            commands: vec![],
            outcomes: vec![],
            expect: vec![
                ("s3", "fra-1", (Unknown, active, 100)),
                ("static", "f", (Up, active, 100)),
            ],
        },
        Case {
            name: "a report sets health and load-feedback weight",
            commands: vec![report(
                "fra",
                "agent-fra",
                1,
                &[
                    ("fra-1", Up, "ok", 100),
                    ("fra-2", Down, "404 bucket gone", 100),
                ],
            )],
            outcomes: vec![true],
            expect: vec![
                ("s3", "fra-1", (Up, active, 100)),
                ("s3", "fra-2", (Down, active, 100)),
            ],
        },
        Case {
            name: "an older or repeated sequence is ignored",
            commands: vec![
                report("fra", "agent-fra", 5, &[("fra-1", Up, "ok", 60)]),
                report("fra", "agent-fra", 5, &[("fra-1", Down, "dup", 100)]),
                report("fra", "agent-fra", 4, &[("fra-1", Down, "old", 100)]),
            ],
            outcomes: vec![true, false, false],
            expect: vec![("s3", "fra-1", (Up, active, 60))],
        },
        Case {
            name: "an agent cannot speak for another site's members",
            commands: vec![report(
                "fra",
                "agent-fra",
                1,
                &[("fra-1", Up, "ok", 100), ("iad-1", Down, "lies", 100)],
            )],
            outcomes: vec![false],
            expect: vec![
                ("s3", "fra-1", (Up, active, 100)),
                ("s3", "iad-1", (Unknown, active, 100)),
            ],
        },
        Case {
            name: "a report for an unknown site is ignored",
            commands: vec![report("ams", "agent-ams", 1, &[])],
            outcomes: vec![false],
            expect: vec![],
        },
        Case {
            name: "admin actions on a member, then undone",
            commands: vec![
                admin(member("s3", "fra-1"), AdminState::Drained),
                admin(member("s3", "fra-2"), AdminState::ForcedDown),
                admin(member("s3", "fra-1"), AdminState::Active),
            ],
            outcomes: vec![true, true, true],
            expect: vec![
                ("s3", "fra-1", (Unknown, active, 100)),
                ("s3", "fra-2", (Unknown, AdminState::ForcedDown, 100)),
            ],
        },
        Case {
            name: "an admin action on a service reaches every member",
            commands: vec![admin(
                Target::Service {
                    service: "s3".into(),
                },
                AdminState::Maintenance,
            )],
            outcomes: vec![true],
            expect: vec![
                ("s3", "fra-1", (Unknown, AdminState::Maintenance, 100)),
                ("s3", "iad-1", (Unknown, AdminState::Maintenance, 100)),
                ("static", "f", (Up, active, 100)),
            ],
        },
        Case {
            name: "unknown targets are ignored",
            commands: vec![
                admin(member("s3", "nope"), AdminState::Drained),
                admin(Target::Site { site: "ams".into() }, AdminState::Drained),
                admin(
                    Target::Service {
                        service: "nfs".into(),
                    },
                    AdminState::Drained,
                ),
            ],
            outcomes: vec![false, false, false],
            expect: vec![],
        },
        Case {
            name: "a service without a check stays up whatever is reported",
            commands: vec![],
            outcomes: vec![],
            expect: vec![("static", "f", (Up, active, 100))],
        },
    ];
    for case in cases {
        let (machine, outcomes) = run(case.commands);
        let applied: Vec<bool> = outcomes.iter().map(|o| *o == Outcome::Applied).collect();
        assert_eq!(
            applied, case.outcomes,
            "{}: outcomes {outcomes:?}",
            case.name
        );
        for (service, node, expected) in case.expect {
            assert_eq!(
                projected(&machine, service, node),
                expected,
                "{}: {service}/{node}",
                case.name
            );
        }
    }
}

#[test]
fn reports_stamp_the_site_with_the_proposers_clock_and_record_history() {
    let (machine, _) = run(vec![
        report("fra", "agent-fra", 1, &[("fra-1", Up, "ok", 100)]),
        report("fra", "agent-fra", 2, &[("fra-1", Up, "ok", 100)]),
        report("fra", "agent-fra", 3, &[("fra-1", Down, "timeout", 100)]),
        admin(Target::Site { site: "iad".into() }, AdminState::Drained),
    ]);
    assert_eq!(machine.sites["fra"].last_report, Some(Timestamp(4000)));
    assert_eq!(machine.sites["iad"].admin, AdminState::Drained);
    assert_eq!(machine.agents["agent-fra"].sequence, 3);
    let history: Vec<(String, String)> = machine
        .history
        .iter()
        .filter(|c| c.target != "deployment")
        .map(|c| (c.target.clone(), c.change.clone()))
        .collect();
    assert_eq!(
        history,
        vec![
            ("member s3/fra-1".into(), "health up: ok".into()),
            ("member s3/fra-1".into(), "health down: timeout".into()),
            ("site iad".into(), "admin drained".into()),
        ],
        "only changes are recorded, not repeated reports"
    );
    assert_eq!(machine.history[3].who, "ops");
    assert_eq!(machine.applied, 5);
    let deployment = deployment();
    let state = machine.state(&deployment);
    let fra = deployment.site_by_name("fra").unwrap();
    assert_eq!(state.site(fra).last_report, Some(Timestamp(4000)));
}

#[test]
fn only_the_agent_undoes_what_the_agent_set() {
    let with_agent = |sequence, agent_admin| {
        Command::AgentReport(AgentReport {
            site: "fra".into(),
            agent: "agent-fra".into(),
            sequence,
            sent_at: Timestamp(sequence),
            members: vec![MemberObservation {
                service: "s3".into(),
                node: "fra-1".into(),
                health: Up,
                reason: "ok".into(),
                latency_us: None,
                weight_percent: 100,
                agent_admin,
                address: None,
                passive_confirmed: None,
            }],
            vantage: Vec::new(),
        })
    };
    let (machine, _) = run(vec![
        with_agent(1, AdminState::Drained),
        // An operator's undrain does not undo the agent's drain.
        admin(member("s3", "fra-1"), AdminState::Active),
    ]);
    let deployment = deployment();
    let id = deployment.member_by_name("s3", "fra-1").unwrap();
    let state = machine.state(&deployment);
    assert_eq!(state.member(id).agent_admin, AdminState::Drained);
    assert_eq!(
        topology::select::member_verdict(
            &deployment,
            &state,
            id,
            topology::Family::V4,
            Timestamp(1500)
        ),
        Err(topology::select::Ineligible::AgentDrained)
    );
    let (machine, _) = run(vec![
        with_agent(1, AdminState::Maintenance),
        with_agent(2, AdminState::Active),
    ]);
    assert_eq!(
        machine.state(&deployment).member(id).agent_admin,
        AdminState::Active,
        "`ready` from the agent"
    );
    assert!(
        machine
            .history
            .iter()
            .any(|c| c.change == "agent admin maintenance")
    );
}

#[test]
fn rtt_samples_keep_the_latest_per_prefix() {
    let sample = |prefix: &str, rtt_us| RttSample {
        prefix: prefix.parse().unwrap(),
        rtt_us,
        samples: 3,
    };
    let (machine, outcomes) = run(vec![
        Command::RttSamples(RttReport {
            site: "fra".into(),
            samples: vec![
                sample("198.51.100.7/24", 900),
                sample("2001:db8::/56", 1500),
            ],
        }),
        Command::RttSamples(RttReport {
            site: "fra".into(),
            samples: vec![sample("198.51.100.0/24", 700)],
        }),
        Command::RttSamples(RttReport {
            site: "ams".into(),
            samples: vec![sample("198.51.100.0/24", 1)],
        }),
    ]);
    assert_eq!(outcomes[2], Outcome::Ignored("no site \"ams\"".into()));
    let fra = &machine.rtt["fra"];
    assert_eq!(
        fra.len(),
        2,
        "prefixes are truncated to their network: {fra:?}"
    );
    assert_eq!(fra[&"198.51.100.0/24".parse().unwrap()].rtt_us, 700);
}

#[test]
fn apply_is_deterministic_and_snapshots_round_trip() {
    let commands = || {
        vec![
            report("fra", "agent-fra", 1, &[("fra-1", Up, "ok", 80)]),
            admin(member("s3", "fra-2"), AdminState::Drained),
            report("iad", "agent-iad", 1, &[("iad-1", Down, "503", 100)]),
        ]
    };
    let (a, _) = run(commands());
    let (b, _) = run(commands());
    assert_eq!(a, b);
    let mut restored: Machine = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(restored, a);
    assert!(restored.deployment().is_none(), "not serialized");
    restored.rehydrate().unwrap();
    assert_eq!(restored.deployment(), a.deployment());
}

/// CONFIG with a third site, `ams`, and a member there.
fn with_ams() -> String {
    CONFIG.replace(
        "[[site]]\nname = \"iad\"",
        "[[site]]\nname = \"iad\"\n[[site]]\nname = \"ams\"",
    )
    .replace(
        "{ site = \"iad\", node = \"iad-1\", address = \"127.0.20.1\" },",
        "{ site = \"iad\", node = \"iad-1\", address = \"127.0.20.1\" },\n    { site = \"ams\", node = \"ams-1\", address = \"127.0.40.1\" },",
    )
}

#[test]
fn the_deployment_is_replicated_state_and_versioned() {
    let (machine, outcomes) = run(vec![
        // Before the change, ams is unknown to every replica alike.
        report("ams", "agent-ams", 1, &[]),
        change(&with_ams(), Some(1)),
        report("ams", "agent-ams", 2, &[("ams-1", Up, "ok", 100)]),
    ]);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Ignored("no site \"ams\"".into()),
            Outcome::Applied,
            Outcome::Applied
        ]
    );
    assert_eq!(machine.version(), 2);
    let current = machine.current_version().unwrap();
    assert_eq!(current.record.index, 3);
    assert_eq!(current.record.diff.added, ["site ams", "member s3/ams-1"]);
    let deployment = machine.deployment().unwrap().clone();
    let id = deployment.member_by_name("s3", "ams-1").unwrap();
    assert_eq!(machine.state(&deployment).member(id).health, Up);
    assert!(
        machine.history.iter().any(|c| c.target == "deployment"
            && c.change == "version 2: 2 added"
            && c.who == "ops")
    );
    assert_eq!(machine.stored_version(1).unwrap().record.version, 1);
}

#[test]
fn a_stale_invalid_or_unchanged_deployment_changes_nothing() {
    let bad = CONFIG.replace(
        "name = \"iad\"",
        "name = \"iad\"\nclient_networks = [\"10.0.0.0/33\"]",
    );
    let (machine, outcomes) = run(vec![
        change(&with_ams(), Some(0)),
        change(&bad, None),
        change(CONFIG, None),
    ]);
    assert!(
        matches!(&outcomes[0], Outcome::Ignored(why) if why.contains("at version 1, not 0")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Outcome::Ignored(why) if why.contains("site[1].client_networks[0]")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Outcome::Ignored(why) if why.contains("nothing to change")),
        "{outcomes:?}"
    );
    assert_eq!(machine.version(), 1);
    assert_eq!(
        machine.deployment().unwrap().as_ref(),
        deployment().as_ref()
    );
}

#[test]
fn records_of_removed_names_are_dropped_and_do_not_come_back_with_them() {
    let (machine, _) = run(vec![
        change(&with_ams(), None),
        report("ams", "agent-ams", 1, &[("ams-1", Down, "dead", 100)]),
        admin(Target::Site { site: "ams".into() }, AdminState::Drained),
        change(CONFIG, None),
    ]);
    assert!(!machine.members.contains_key("s3/ams-1"));
    assert!(!machine.sites.contains_key("ams"));
    assert!(!machine.agents.contains_key("agent-ams"));
    assert!(machine.members.contains_key("s3/fra-1") || machine.members.is_empty());
    assert_eq!(machine.version(), 3);
}

#[test]
fn nothing_applies_before_the_store_has_a_deployment() {
    let mut machine = Machine::default();
    let outcome = apply(
        &mut machine,
        1,
        &envelope(1, report("fra", "agent-fra", 1, &[])),
    );
    assert_eq!(
        outcome,
        Outcome::Ignored("the store has no deployment yet".into())
    );
    assert_eq!(machine.applied, 1);
}

#[test]
fn a_site_keeps_a_bounded_number_of_agents_dropping_the_longest_silent() {
    // One agent per restart (a new name each time), far more than a site keeps.
    let mut commands = Vec::new();
    for n in 0..AGENTS_PER_SITE + 10 {
        commands.push(report(
            "fra",
            &format!("fra-agent-{n}"),
            1,
            &[("fra-1", Up, "ok", 100)],
        ));
    }
    commands.push(report("iad", "iad-agent", 1, &[("iad-1", Up, "ok", 100)]));
    let (machine, outcomes) = run(commands);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Applied),
        "{outcomes:?}"
    );
    let fra: Vec<&String> = machine
        .agents
        .iter()
        .filter(|(_, a)| a.site == "fra")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(fra.len(), AGENTS_PER_SITE);
    // The first ten were heard from longest ago; the newest are all kept.
    for n in 0..10 {
        assert!(
            !fra.contains(&&format!("fra-agent-{n}")),
            "fra-agent-{n} kept"
        );
    }
    assert!(fra.contains(&&format!("fra-agent-{}", AGENTS_PER_SITE + 9)));
    // Another site's agents are not touched.
    assert!(machine.agents.contains_key("iad-agent"));
}

#[test]
fn a_passive_mark_holds_a_member_out_until_its_agent_confirms_it() {
    let both_up = report(
        "fra",
        "agent-fra",
        1,
        &[("fra-1", Up, "ok", 100), ("fra-2", Up, "ok", 100)],
    );
    let (machine, outcomes) = run(vec![
        both_up,
        // index 3: marks fra-1.
        passive("fra", &[("s3", "fra-1")]),
        // index 4: fra-2 would leave fra with no member: past the limit (one of two).
        passive("fra", &[("s3", "fra-2")]),
        // index 5: a proxy speaks for its own site only; index 6: nothing could confirm the
        // recovery of a member without a check.
        passive("iad", &[("s3", "fra-1"), ("s3", "nope")]),
        passive("fra", &[("static", "f")]),
        // index 7: a report without a confirmation, then one of an older mark.
        confirming(2, None),
        confirming(3, Some(2)),
    ]);
    assert_eq!(outcomes[1], Outcome::Applied);
    let Outcome::Ignored(why) = &outcomes[2] else {
        panic!("{:?}", outcomes[2])
    };
    assert!(
        why.contains("1 of 2 members of s3 at fra already marked"),
        "{why}"
    );
    let Outcome::Ignored(why) = &outcomes[3] else {
        panic!("{:?}", outcomes[3])
    };
    assert!(why.contains("s3/fra-1: not a member of site iad"), "{why}");
    assert!(why.contains("s3/nope: no such member"), "{why}");
    assert_eq!(
        outcomes[4],
        Outcome::Ignored("static/f: no check could confirm its recovery".into())
    );

    let deployment = deployment();
    let verdict = |machine: &Machine, node: &str| {
        let id = deployment.member_by_name("s3", node).unwrap();
        let state = machine.state(&deployment);
        (
            topology::select::member_verdict(
                &deployment,
                &state,
                id,
                topology::Family::V4,
                Timestamp(7000),
            ),
            topology::select::proxy_verdict(&deployment, &state, id),
        )
    };
    let mark = machine.members["s3/fra-1"].passive.clone().expect("marked");
    assert_eq!(
        (mark.index, mark.at, mark.by.as_str()),
        (3, Timestamp(3000), "fra-proxy")
    );
    let (dns, proxy) = verdict(&machine, "fra-1");
    let Err(topology::select::Ineligible::Passive(seen)) = dns else {
        panic!("{dns:?}")
    };
    assert_eq!(
        seen,
        "3 failures in a row: connect_refused (proxy fra-proxy, awaiting the agent's confirmation)"
    );
    assert!(proxy.is_err(), "the site's proxies stop using it too");
    assert_eq!(
        projected(&machine, "s3", "fra-1").0,
        Up,
        "the agent's own verdict stands"
    );
    assert_eq!(verdict(&machine, "fra-2").0, Ok(100));

    // The agent confirms the mark it was told of: the member is back.
    let mut machine = machine;
    assert_eq!(
        apply(&mut machine, 9, &envelope(9000, confirming(4, Some(3)))),
        Outcome::Applied
    );
    assert!(machine.members["s3/fra-1"].passive.is_none());
    assert_eq!(verdict(&machine, "fra-1").0, Ok(100));
    let changes: Vec<&str> = machine
        .history
        .iter()
        .filter(|c| c.target == "member s3/fra-1")
        .map(|c| c.change.as_str())
        .collect();
    assert_eq!(
        changes,
        [
            "health up: ok",
            "passive down: 3 failures in a row: connect_refused",
            "passive mark of index 3 cleared"
        ]
    );
    // A member the agent already says is down gets no mark (nothing to add).
    let down = report("fra", "agent-fra", 5, &[("fra-2", Down, "refused", 100)]);
    assert_eq!(
        apply(&mut machine, 10, &envelope(10_000, down)),
        Outcome::Applied
    );
    assert_eq!(
        apply(
            &mut machine,
            11,
            &envelope(11_000, passive("fra", &[("s3", "fra-2")]))
        ),
        Outcome::Applied
    );
    assert!(machine.members["s3/fra-2"].passive.is_none());
}

#[test]
fn commands_carry_the_oldest_wire_version_that_applies_them() {
    assert_eq!(
        report("fra", "a", 1, &[("fra-1", Up, "ok", 100)]).wire_version(),
        1
    );
    assert_eq!(confirming(1, Some(3)).wire_version(), 3);
    assert_eq!(passive("fra", &[("s3", "fra-1")]).wire_version(), 3);
    assert_eq!(change(CONFIG, None).wire_version(), 2);
    assert!(passive("fra", &[]).wire_version() <= WIRE_VERSION);
}

/// `report` with cross-site probes of `(node, up)` (members of service `s3`).
fn with_vantage(report: Command, seen: &[(&str, bool)]) -> Command {
    let Command::AgentReport(mut report) = report else {
        unreachable!("an agent report");
    };
    report.vantage = seen
        .iter()
        .map(|(node, up)| topology::wire::VantageObservation {
            service: "s3".into(),
            node: (*node).into(),
            up: *up,
            reason: if *up { "ok" } else { "refused" }.into(),
        })
        .collect();
    Command::AgentReport(report)
}

#[test]
fn other_sites_probes_are_kept_per_vantage_until_the_members_own_agent_reports() {
    let (machine, outcomes) = run(vec![
        report("fra", "agent-fra", 1, &[("fra-1", Up, "ok", 100)]),
        // iad probes fra's members across sites (and cannot speak so for its own).
        with_vantage(
            report("iad", "agent-iad", 1, &[]),
            &[("fra-1", true), ("fra-2", false), ("iad-1", false)],
        ),
        with_vantage(report("iad", "agent-iad", 2, &[]), &[("fra-1", true)]),
        with_vantage(report("iad", "agent-iad", 3, &[]), &[("fra-1", false)]),
    ]);
    assert_eq!(
        outcomes[1],
        Outcome::Ignored("not members of another site: s3/iad-1".into())
    );
    let deployment = deployment();
    let state = machine.state(&deployment);
    let seen = |node: &str| {
        state
            .member(deployment.member_by_name("s3", node).unwrap())
            .vantage
            .iter()
            .map(|v| (v.site.clone(), v.up, v.at))
            .collect::<Vec<_>>()
    };
    // One entry per vantage site, the latest (stamped with the applying entry's time).
    assert_eq!(seen("fra-1"), [("iad".to_owned(), false, Timestamp(5000))]);
    assert_eq!(seen("fra-2"), [("iad".to_owned(), false, Timestamp(3000))]);
    assert!(seen("iad-1").is_empty());
    // The history says when a vantage's verdict changed, not every repeat.
    let fra_1: Vec<&str> = machine
        .history
        .iter()
        .filter(|c| c.target == "member s3/fra-1" && c.change.contains("from iad"))
        .map(|c| c.change.as_str())
        .collect();
    assert_eq!(
        fra_1,
        ["serving from iad: ok", "unreachable from iad: refused"]
    );
    // fra's own agent speaks again: what iad saw is moot.
    let (machine, _) = run(vec![
        with_vantage(report("iad", "agent-iad", 1, &[]), &[("fra-1", true)]),
        report("fra", "agent-fra", 1, &[("fra-1", Up, "ok", 100)]),
    ]);
    let state = machine.state(&deployment);
    assert!(
        state
            .member(deployment.member_by_name("s3", "fra-1").unwrap())
            .vantage
            .is_empty()
    );
}

#[test]
fn a_report_with_cross_site_probes_needs_wire_version_4() {
    let plain = report("iad", "agent-iad", 1, &[("iad-1", Up, "ok", 100)]);
    assert_eq!(plain.wire_version(), 1);
    assert_eq!(with_vantage(plain, &[("fra-1", true)]).wire_version(), 4);
}
