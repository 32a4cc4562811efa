//! Golden tests of answer selection (DESIGN section 4) through the public API: one
//! deployment, one GeoIP table, and tables of cases, each checked by one `check` helper.
//!
//! Addresses read `10.<service>.<site>.<member>` with sites 1 = fra, 2 = iad, 3 = sin, so a
//! wrong answer is easy to see. Answers are written as the variants (rotations) in order,
//! `|` between variants, each variant's addresses in answer order.

// One test binary; the helpers and the smaller tables live beside it.
#[path = "golden_select/eligibility.rs"]
mod eligibility;
#[path = "golden_select/explain.rs"]
mod explain;
#[path = "golden_select/fixture.rs"]
mod fixture;

use fixture::*;
use topology::Family;
use topology::select::{MAX_VARIANTS, Outcome};

/// One golden case: who asks what, in which state, and the expected outcome and variants.
#[derive(Debug)]
struct Case {
    service: &'static str,
    family: Family,
    client: &'static str,
    tweaks: &'static [Tweak],
    outcome: &'static str,
    answers: &'static str,
}

const fn c(
    service: &'static str,
    family: Family,
    client: &'static str,
    tweaks: &'static [Tweak],
    outcome: &'static str,
    answers: &'static str,
) -> Case {
    Case {
        service,
        family,
        client,
        tweaks,
        outcome,
        answers,
    }
}

/// Runs `case` and compares its outcome and variants (the first of which is the next
/// answer); also checks what must hold of every selection. Returns what differs.
fn check(case: &Case) -> Result<(), String> {
    let d = &fixture().deployment;
    let selection = run(case.service, case.family, case.client, case.tweaks);
    let outcome = render_outcome(&selection.explanation.outcome);
    let answers = render_variants(d, &selection);
    if (outcome.as_str(), answers.as_str()) != (case.outcome, case.answers) {
        return Err(format!("got {outcome:?} {answers:?}"));
    }
    let service = d.service(d.service_by_name(case.service).unwrap());
    let chosen = match &selection.explanation.outcome {
        Outcome::Site { site, .. } | Outcome::FailOpen { site } => Some(site.clone()),
        _ => None,
    };
    for variant in &selection.variants {
        let site = variant.site.map(|s| d.site(s).name.clone());
        if variant.members.is_empty() || variant.members.len() > service.max_answers {
            return Err(format!("variant size {}", variant.members.len()));
        }
        let mut unique = variant.members.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != variant.members.len() {
            return Err(format!("a member twice in {:?}", variant.members));
        }
        if variant
            .members
            .iter()
            .any(|m| d.member(*m).address.is_ipv4() != (case.family == A))
        {
            return Err("an address of the other family".into());
        }
        if variant.site != Some(d.member(variant.members[0]).site) {
            return Err(format!("variant site {site:?} is not its first member's"));
        }
        if chosen.is_some() && site != chosen {
            return Err(format!("variant site {site:?}, outcome {chosen:?}"));
        }
    }
    if selection.variants.len() > MAX_VARIANTS {
        return Err(format!("{} variants", selection.variants.len()));
    }
    Ok(())
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // topology: the client's own site (site network), then the nearest by distance.
    c("topo", A, FRA_NET, &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, IAD_NET, &[], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, SIN_NET, &[], "site sin", "10.1.3.1 10.1.3.2 | 10.1.3.2 10.1.3.1"),
    c("topo", A, FRA_NET, &[SiteDown("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, IAD_NET, &[SiteDown("iad")], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, SIN_NET, &[SiteDown("sin")], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, SIN_NET, &[SiteDown("sin"), SiteDown("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, "2001:db8:f::1", &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    // ... GeoIP: nearest site by great-circle distance.
    c("topo", A, GEO_FRA, &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, GEO_IAD, &[], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, GEO_SIN, &[], "site sin", "10.1.3.1 10.1.3.2 | 10.1.3.2 10.1.3.1"),
    c("topo", A, GEO_FRA, &[SiteDown("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, GEO_DXB, &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, GEO_DXB, &[SiteDown("fra")], "site sin", "10.1.3.1 10.1.3.2 | 10.1.3.2 10.1.3.1"),
    c("topo", A, "2001:db8:1::1", &[], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    // ... site client networks beat GeoIP (127/8 is Singapore, 127.1.5/24 Ashburn in GeoIP).
    c("topo", A, "127.1.5.9", &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, "127.9.0.1", &[], "site sin", "10.1.3.1 10.1.3.2 | 10.1.3.2 10.1.3.1"),
    // ... unknown location (no GeoIP entry, or one without coordinates): configuration order.
    c("topo", A, UNKNOWN, &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, GEO_NOWHERE, &[], "site fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, UNKNOWN, &[SiteDown("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    // Members that cannot be handed out, and a site taken out.
    c("topo", A, FRA_NET, &[Down("fra-1")], "site fra", "10.1.1.2"),
    c("topo", A, FRA_NET, &[Drain("fra-2")], "site fra", "10.1.1.1"),
    c("topo", A, FRA_NET, &[Maint("fra-1")], "site fra", "10.1.1.2"),
    c("topo", A, FRA_NET, &[Force("fra-2")], "site fra", "10.1.1.1"),
    c("topo", A, FRA_NET, &[Pct("fra-1", 0)], "site fra", "10.1.1.2"),
    c("topo", A, FRA_NET, &[SiteDrain("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, FRA_NET, &[SiteMaint("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, FRA_NET, &[SiteForce("fra")], "site iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    // Load feedback: the heavier member leads more rotations.
    c("topo", A, FRA_NET, &[Pct("fra-1", 50)], "site fra", "10.1.1.2 10.1.1.1 | 10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, FRA_NET, &[Pct("fra-2", 300)], "site fra", "10.1.1.2 10.1.1.1 | 10.1.1.2 10.1.1.1 | 10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    // ... a small configured weight scaled down stays eligible (only 0 % takes it out).
    c("tiny", A, FRA_NET, &[], "site fra", "10.13.1.2 10.13.1.1 | 10.13.1.2 10.13.1.1 | 10.13.1.1 10.13.1.2 | 10.13.1.2 10.13.1.1"),
    c("tiny", A, FRA_NET, &[Pct("fra-1", 50)], "site fra", "10.13.1.2 10.13.1.1 | 10.13.1.2 10.13.1.1 | 10.13.1.1 10.13.1.2 | 10.13.1.2 10.13.1.1"),
    c("tiny", A, FRA_NET, &[Pct("fra-1", 0)], "site fra", "10.13.1.2"),
    c("tiny", A, IAD_NET, &[Pct("iad-1", 4_000_000_000)], "site iad", "10.13.2.1"),
    // when_all_down = answer-all: fail open to the preferred site (health ignored, admin
    // decisions kept, unless nothing at all is left).
    c("topo", A, FRA_NET, &[AllDown], "fail-open fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    c("topo", A, SIN_NET, &[AllDown], "fail-open sin", "10.1.3.1 10.1.3.2 | 10.1.3.2 10.1.3.1"),
    c("topo", A, FRA_NET, &[AllDown, Drain("fra-1")], "fail-open fra", "10.1.1.2"),
    c("topo", A, FRA_NET, &[AllDown, SiteDrain("fra")], "fail-open iad", "10.1.2.1 10.1.2.2 | 10.1.2.2 10.1.2.1"),
    c("topo", A, FRA_NET, &[AllDrain], "fail-open fra", "10.1.1.1 10.1.1.2 | 10.1.1.2 10.1.1.1"),
    // ... when_all_down = nodata.
    c("nodata", A, FRA_NET, &[], "site fra", "10.10.1.1"),
    c("nodata", A, FRA_NET, &[Down("fra-1")], "site iad", "10.10.2.1"),
    c("nodata", A, FRA_NET, &[AllDown], "nodata", ""),
    c("nodata", A, FRA_NET, &[AllDrain], "nodata", ""),
    // failover: fixed order whatever the client; unlisted sites follow in configuration order.
    c("fail", A, FRA_NET, &[], "site iad", "10.2.2.1"),
    c("fail", A, SIN_NET, &[], "site iad", "10.2.2.1"),
    c("fail", A, UNKNOWN, &[], "site iad", "10.2.2.1"),
    c("fail", A, FRA_NET, &[Down("iad-1")], "site sin", "10.2.3.1"),
    c("fail", A, IAD_NET, &[Down("iad-1"), Down("sin-1")], "site fra", "10.2.1.1"),
    c("fail", A, SIN_NET, &[AllDown], "fail-open iad", "10.2.2.1"),
    // weighted: spread over the sites by the sum of their members' weights (fra 200, iad
    // 200, sin 100 -> 4:4:2 of 10 variants), whatever the client.
    c("wgt", A, FRA_NET, &[], "spread fra,iad,sin", "10.3.1.1 10.3.1.2 | 10.3.2.1 | 10.3.3.1 | 10.3.1.2 10.3.1.1 | 10.3.2.1 | 10.3.1.1 10.3.1.2 | 10.3.2.1 | 10.3.3.1 | 10.3.1.2 10.3.1.1 | 10.3.2.1"),
    c("wgt", A, SIN_NET, &[], "spread fra,iad,sin", "10.3.1.1 10.3.1.2 | 10.3.2.1 | 10.3.3.1 | 10.3.1.2 10.3.1.1 | 10.3.2.1 | 10.3.1.1 10.3.1.2 | 10.3.2.1 | 10.3.3.1 | 10.3.1.2 10.3.1.1 | 10.3.2.1"),
    c("wgt", A, FRA_NET, &[Down("fra-1")], "spread fra,iad,sin", "10.3.2.1 | 10.3.1.2 | 10.3.3.1 | 10.3.2.1"),
    c("wgt", A, FRA_NET, &[Down("iad-1"), Down("sin-1")], "spread fra", "10.3.1.1 10.3.1.2 | 10.3.1.2 10.3.1.1"),
    // round-robin: equal spread over the available sites, whatever the weights.
    c("rr", A, FRA_NET, &[], "spread fra,iad,sin", "10.4.1.1 | 10.4.2.1 | 10.4.3.1"),
    c("rr", A, UNKNOWN, &[Down("iad-1")], "spread fra,sin", "10.4.1.1 | 10.4.3.1"),
    // latency and least-load: topology order until RTT samples and load reports exist.
    c("lat", A, FRA_NET, &[], "site fra", "10.5.1.1"),
    c("lat", A, SIN_NET, &[], "site sin", "10.5.3.1"),
    c("lat", A, GEO_DXB, &[Down("fra-1")], "site sin", "10.5.3.1"),
    c("lat", A, UNKNOWN, &[], "site fra", "10.5.1.1"),
    c("least", A, IAD_NET, &[], "site iad", "10.6.2.1"),
    c("least", A, GEO_DXB, &[], "site fra", "10.6.1.1"),
    c("least", A, GEO_DXB, &[Down("fra-1")], "site sin", "10.6.3.1"),
    // ... and unknown_client_order for clients of unknown location.
    c("least", A, UNKNOWN, &[], "site sin", "10.6.3.1"),
    c("least", A, GEO_NOWHERE, &[Down("sin-1")], "site iad", "10.6.2.1"),
    c("least", A, UNKNOWN, &[Down("sin-1"), Down("iad-1")], "site fra", "10.6.1.1"),
    // min_healthy = 2: a site with one eligible member is skipped.
    c("minh", A, FRA_NET, &[], "site fra", "10.7.1.1 10.7.1.2 | 10.7.1.2 10.7.1.1"),
    c("minh", A, FRA_NET, &[Down("fra-1")], "site iad", "10.7.2.1 10.7.2.2 | 10.7.2.2 10.7.2.1"),
    c("minh", A, FRA_NET, &[Down("fra-1"), Drain("iad-2")], "site sin", "10.7.3.1 10.7.3.2 | 10.7.3.2 10.7.3.1"),
    // ... every site below min_healthy: fail open, to the eligible members first.
    c("minh", A, FRA_NET, &[Down("fra-1"), Down("iad-1"), Down("sin-1")], "fail-open fra", "10.7.1.2"),
    c("minh", A, SIN_NET, &[Down("fra-1"), Down("iad-1"), Down("sin-1")], "fail-open sin", "10.7.3.2"),
    c("minh", A, FRA_NET, &[Down("fra-1"), Down("fra-2"), Down("iad-1"), Down("sin-1")], "fail-open iad", "10.7.2.2"),
    c("minh", A, FRA_NET, &[AllDown], "fail-open fra", "10.7.1.1 10.7.1.2 | 10.7.1.2 10.7.1.1"),
    // max_answers = 2 of three members: rotations give every member the first place.
    c("max", A, FRA_NET, &[], "site fra", "10.8.1.1 10.8.1.2 | 10.8.1.2 10.8.1.3 | 10.8.1.3 10.8.1.1"),
    c("max", A, IAD_NET, &[], "site iad", "10.8.2.1"),
    // spill: fill up to max_answers (3) from the next available sites, in order.
    c("spill", A, FRA_NET, &[], "site fra+iad", "10.9.1.1 10.9.1.2 10.9.2.1 | 10.9.1.2 10.9.1.1 10.9.2.2"),
    c("spill", A, FRA_NET, &[SiteDown("iad")], "site fra+sin", "10.9.1.1 10.9.1.2 10.9.3.1 | 10.9.1.2 10.9.1.1 10.9.3.1"),
    c("spill", A, SIN_NET, &[], "site sin+fra", "10.9.3.1 10.9.1.1 10.9.1.2"),
    c("spill", A, SIN_NET, &[Down("fra-1")], "site sin+fra,iad", "10.9.3.1 10.9.1.2 10.9.2.1"),
    c("spill", A, IAD_NET, &[Down("fra-1"), Down("fra-2"), Down("sin-1")], "site iad", "10.9.2.1 10.9.2.2 | 10.9.2.2 10.9.2.1"),
    // AAAA: only members with IPv6 addresses; a site with none is skipped.
    c("dual", A, FRA_NET, &[], "site fra", "10.11.1.1"),
    c("dual", AAAA, FRA_NET, &[], "site fra", "2001:db8:1::1"),
    c("dual", AAAA, "2001:db8:f::1", &[], "site fra", "2001:db8:1::1"),
    c("dual", AAAA, IAD_NET, &[], "site fra", "2001:db8:1::1"),
    c("dual", AAAA, IAD_NET, &[Down("fra-6")], "site sin", "2001:db8:3::1"),
    c("dual", A, SIN_NET, &[], "site fra", "10.11.1.1"),
    c("dual", A, IAD_NET, &[], "site iad", "10.11.2.1"),
    c("dual", AAAA, SIN_NET, &[AllDown], "fail-open sin", "2001:db8:3::1"),
    c("topo", AAAA, FRA_NET, &[], "nodata", ""),
    c("topo", AAAA, FRA_NET, &[AllDown], "nodata", ""),
    c("dual", A, SIN_NET, &[AllDown], "fail-open fra", "10.11.1.1"),
    // A service with a check: unknown until reported, stale after stale_after (2 s).
    c("chk", A, FRA_NET, &[], "fail-open fra", "10.12.1.1"),
    c("chk", A, FRA_NET, &[AllUp], "site fra", "10.12.1.1"),
    c("chk", A, FRA_NET, &[AllUp, Report("fra", 2000)], "site fra", "10.12.1.1"),
    c("chk", A, FRA_NET, &[AllUp, Report("fra", 2001)], "site iad", "10.12.2.1"),
    c("chk", A, FRA_NET, &[Up("fra-1"), Report("fra", 0)], "site fra", "10.12.1.1"),
    c("chk", A, FRA_NET, &[Up("fra-1"), Up("iad-1")], "fail-open fra", "10.12.1.1"),
    c("chk", A, FRA_NET, &[Up("fra-1"), Up("iad-1"), Report("iad", 100)], "site iad", "10.12.2.1"),
    c("chk", A, SIN_NET, &[AllUp, Report("fra", 9000), Report("iad", 9000), Report("sin", 9000)], "fail-open sin", "10.12.3.1"),
    c("chk", A, FRA_NET, &[AllUp, Down("fra-1")], "site iad", "10.12.2.1"),
];

#[test]
fn golden_selection() {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|case| check(case).err().map(|why| format!("{case:?}\n    {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
