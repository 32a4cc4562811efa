use serde_json::json;

use super::views::{MemberView, WatchLine};
use super::*;

fn member_json() -> serde_json::Value {
    json!({
        "node": "fra-1", "site": "fra", "address": "127.0.10.1", "port": null,
        "health": "up", "reason": "ok", "admin": "active", "weight": 100,
        "weight_percent": 100, "eligible": true, "ineligible": null, "proxy_weight": 100,
        "agent_admin": "active", "latency_us": 250
    })
}

#[test]
fn a_newer_peer_may_add_fields() {
    let mut value = member_json();
    value["rack"] = json!("r12");
    value["health_detail"] = json!({"probe": "s3"});
    let member: MemberView = serde_json::from_value(value).unwrap();
    assert_eq!(member.proxy_weight, 100);
}

#[test]
fn a_missing_required_field_is_an_error_not_a_default() {
    for field in [
        "proxy_weight",
        "admin",
        "address",
        "eligible",
        "weight_percent",
    ] {
        let mut value = member_json();
        value.as_object_mut().unwrap().remove(field);
        let err = serde_json::from_value::<MemberView>(value).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let observation = json!({
        "service": "s3", "node": "fra-1", "health": "up", "reason": "",
        "latency_us": null, "agent_admin": "active", "address": null
    });
    let err = serde_json::from_value::<MemberObservation>(observation).unwrap_err();
    assert!(err.to_string().contains("weight_percent"), "{err}");
}

#[test]
fn envelopes_round_trip_with_every_command() {
    let commands = [
        Command::Admin(AdminAction {
            target: Target::Site { site: "iad".into() },
            admin: AdminState::Drained,
            who: "ops".into(),
            why: "disk swap".into(),
            note: Some("alice".into()),
        }),
        Command::Deployment(config::DeploymentChange {
            document: "[zone]\n".into(),
            expect_version: Some(3),
            who: "ops".into(),
            why: "add lon".into(),
            rollback_of: None,
            note: None,
        }),
    ];
    for command in commands {
        let envelope = Envelope {
            version: WIRE_VERSION,
            id: "1-2-3".into(),
            proposed_at: Timestamp(5),
            command,
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), envelope);
    }
}

#[test]
fn a_watch_line_needs_its_state() {
    let err = serde_json::from_value::<WatchLine>(
        json!({"version": 2, "index": 4, "config_version": 1, "degraded": false}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("state"), "{err}");
}

#[test]
fn long_text_is_cut_at_a_character_boundary() {
    let text = "é".repeat(MAX_TEXT);
    let cut = bounded_text(&text);
    assert!(cut.len() <= MAX_TEXT && cut.chars().all(|c| c == 'é'));
    assert_eq!(bounded_text("short"), "short");
}

#[test]
fn a_note_is_left_out_when_there_is_none_so_old_readers_see_what_they_know() {
    let action = AdminAction {
        target: Target::Site { site: "iad".into() },
        admin: AdminState::Drained,
        who: "ops".into(),
        why: String::new(),
        note: None,
    };
    let text = serde_json::to_string(&action).unwrap();
    assert!(!text.contains("note"), "{text}");
    let old = r#"{"target":{"kind":"site","site":"iad"},"admin":"drained","who":"ops","why":""}"#;
    assert_eq!(serde_json::from_str::<AdminAction>(old).unwrap(), action);
}

#[test]
fn accepted_text_names_the_field_over_the_limit() {
    assert!(accepted_text("why", &"a".repeat(MAX_ACCEPTED_TEXT)).is_ok());
    let error = accepted_text("why", &"a".repeat(MAX_ACCEPTED_TEXT + 1)).unwrap_err();
    assert!(error.contains("`why`") && error.contains("257"), "{error}");
    assert_eq!(clipped("éé", 3), "é");
}
