//! How the CLI prints what the API answered: tables for people, JSON for scripts.

use serde::Serialize;
use topology::AdminState;
use topology::select::Outcome;
use topology::wire::config::{ConfigHistory, ConfigOutcome, ConfigView, RegionAnswer};
use topology::wire::views::{Change, ExplainView, MemberView, StateView, StoreStatus};

/// Writes a line to standard output. A closed pipe (`portico history | head`) ends the
/// program quietly, as it does other command-line tools.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if writeln!(std::io::stdout().lock(), "{line}").is_err() {
        std::process::exit(0);
    }
}

pub fn json(value: &impl Serialize) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// The admin state as the API writes it (`drained`, `force-down`...).
pub fn admin(state: AdminState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// "3s ago", "never".
pub fn age(at_ms: Option<u64>) -> String {
    match at_ms {
        None => "never".into(),
        Some(at) => {
            let seconds = now_ms().saturating_sub(at) / 1000;
            match seconds {
                0..120 => format!("{seconds}s ago"),
                120..7200 => format!("{}m ago", seconds / 60),
                _ => format!("{}h ago", seconds / 3600),
            }
        }
    }
}

pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A member with its service, as `members --json` prints it.
#[derive(Debug, Serialize)]
pub struct MemberRow {
    pub service: String,
    #[serde(flatten)]
    pub member: MemberView,
}

pub fn member_rows(state: &StateView, service: Option<&str>, site: Option<&str>) -> Vec<MemberRow> {
    state
        .services
        .iter()
        .filter(|s| service.is_none_or(|name| s.name == name))
        .flat_map(|s| {
            s.members
                .iter()
                .filter(|m| site.is_none_or(|name| m.site == name))
                .map(|m| MemberRow {
                    service: s.name.clone(),
                    member: m.clone(),
                })
        })
        .collect()
}

pub fn members(rows: &[MemberRow]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let m = &row.member;
            vec![
                row.service.clone(),
                m.node.clone(),
                m.site.clone(),
                m.address.to_string(),
                format!("{:?}", m.health).to_lowercase(),
                admin(m.admin),
                format!("{}%", m.weight_percent),
                m.latency_us
                    .map_or("-".into(), |us| format!("{:.1}ms", us as f64 / 1000.0)),
                if m.eligible {
                    match &m.note {
                        Some(note) => format!("yes: {note}"),
                        None => "yes".into(),
                    }
                } else {
                    format!("no: {}", m.ineligible.as_deref().unwrap_or("-"))
                },
            ]
        })
        .collect();
    table(
        &[
            "SERVICE", "MEMBER", "SITE", "ADDRESS", "HEALTH", "ADMIN", "WEIGHT", "LATENCY",
            "ELIGIBLE",
        ],
        &cells,
    );
}

pub fn status(state: &StateView, store: &StoreStatus) {
    let node = &store.node;
    say!(
        "zone {}  deployment version {}  store: node {} {} (leader {}, term {}, applied {}){}",
        state.zone,
        state.config_version,
        node.id,
        node.role,
        node.leader,
        node.term,
        node.applied,
        if state.degraded {
            "  DEGRADED: answering from the last known state"
        } else {
            ""
        }
    );
    say!("");
    let sites: Vec<Vec<String>> = state
        .sites
        .iter()
        .map(|site| {
            let members: Vec<&MemberView> = state
                .services
                .iter()
                .flat_map(|s| s.members.iter())
                .filter(|m| m.site == site.name)
                .collect();
            let eligible = members.iter().filter(|m| m.eligible).count();
            vec![
                site.name.clone(),
                admin(site.admin),
                format!("{eligible}/{}", members.len()),
                age(site.last_report_ms.map(|t| t.0)),
            ]
        })
        .collect();
    table(&["SITE", "ADMIN", "ELIGIBLE", "LAST REPORT"], &sites);
    say!("");
    let services: Vec<Vec<String>> = state
        .services
        .iter()
        .map(|s| {
            let eligible = s.members.iter().filter(|m| m.eligible).count();
            vec![
                s.name.clone(),
                s.fqdn.clone(),
                s.policy.name().to_owned(),
                format!("{}s", s.ttl),
                format!("{eligible}/{}", s.members.len()),
            ]
        })
        .collect();
    table(&["SERVICE", "NAME", "POLICY", "TTL", "ELIGIBLE"], &services);
}

pub fn history(changes: &[&Change]) {
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                age(Some(c.at.0)),
                c.target.clone(),
                c.change.clone(),
                c.who.clone(),
                c.why.clone(),
            ]
        })
        .collect();
    table(&["WHEN", "TARGET", "CHANGE", "WHO", "WHY"], &rows);
}

pub fn explain(view: &ExplainView) {
    let e = &view.explain;
    say!(
        "client {} (located by {}; ECS scope /{})",
        view.client,
        view.located_by,
        view.ecs_scope
    );
    let (kind, site) = match &e.explanation.outcome {
        Outcome::Site { site, .. } => ("site", site.clone()),
        Outcome::Spread { sites } => ("spread", sites.join(",")),
        Outcome::FailOpen { site } => ("fail-open", site.clone()),
        Outcome::Nodata { why } => ("nodata", why.clone()),
    };
    say!(
        "policy {}, order by {}; answer: {kind} {site}",
        e.explanation.policy.name(),
        e.explanation.order_source
    );
    let list: Vec<String> = e.answers.iter().map(ToString::to_string).collect();
    say!("addresses: {}", list.join(" "));
    for site in &e.explanation.sites {
        say!("  {}", site.headline());
        for m in &site.members {
            if let Some(why) = &m.ineligible {
                say!("      {} {}: {why}", m.node, m.address);
            }
        }
    }
}

pub fn config(view: &ConfigView) {
    match view.version {
        0 => say!("# the store has no deployment yet: this node answers from its own file"),
        version => say!(
            "# deployment version {version}, applied at index {} by {}: {}",
            view.index,
            view.who.as_deref().unwrap_or("-"),
            view.why.as_deref().unwrap_or("-")
        ),
    }
    if view.file_differs {
        say!("# note: this node's own file describes another deployment");
    }
    say!("{}", view.document.trim_end());
}

pub fn config_history(history: &ConfigHistory) {
    let rows: Vec<Vec<String>> = history
        .versions
        .iter()
        .rev()
        .map(|v| {
            let mark = if v.version == history.current {
                "*"
            } else {
                ""
            };
            vec![
                format!("{}{mark}", v.version),
                v.index.to_string(),
                age(Some(v.at.0)),
                v.who.clone(),
                v.why.clone(),
                match v.rollback_of {
                    Some(of) => format!("rollback to {of}: {}", v.diff.summary()),
                    None => v.diff.summary(),
                },
            ]
        })
        .collect();
    table(
        &["VERSION", "INDEX", "WHEN", "WHO", "WHY", "CHANGES"],
        &rows,
    );
}

fn answer(answer: &Option<RegionAnswer>) -> String {
    match answer {
        None => "(no such service)".into(),
        Some(a) => {
            let addresses: Vec<String> = a.addresses.iter().map(ToString::to_string).collect();
            format!(
                "{} [{}]",
                a.site.as_deref().unwrap_or("-"),
                addresses.join(" ")
            )
        }
    }
}

pub fn outcome(outcome: &ConfigOutcome) {
    let diff = &outcome.diff;
    match (outcome.dry_run, outcome.version) {
        (true, _) => say!(
            "compared with deployment version {}: {} (nothing applied)",
            outcome.from_version,
            diff.summary()
        ),
        (false, Some(version)) if version == outcome.from_version => {
            say!("deployment version {version} already is this: nothing to apply")
        }
        (false, Some(version)) => say!(
            "deployment version {version} applied at store index {}: {}",
            outcome.index.unwrap_or(0),
            diff.summary()
        ),
        (false, None) => say!("{}", diff.summary()),
    }
    for (mark, names) in [
        ("+", &diff.added),
        ("-", &diff.removed),
        ("~", &diff.changed),
    ] {
        for name in names {
            say!("  {mark} {name}");
        }
    }
    let changed: Vec<_> = outcome.answers.iter().filter(|a| a.changed).collect();
    if changed.is_empty() {
        say!("answers: no client region's answer changes");
    } else {
        say!("answers that change:");
        let rows: Vec<Vec<String>> = changed
            .iter()
            .map(|a| {
                vec![
                    a.service.clone(),
                    a.region.clone(),
                    answer(&a.before),
                    answer(&a.after),
                ]
            })
            .collect();
        table(&["SERVICE", "REGION", "BEFORE", "AFTER"], &rows);
    }
}
