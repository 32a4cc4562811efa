//! Golden tables of client classes and ECS scopes, eligibility reasons, weight shares and
//! the smooth weighted sequence.

use std::collections::BTreeMap;

use topology::select::{Ineligible, MAX_VARIANTS, smooth_weighted_sequence};
use topology::{
    ClassTable, ClientLocation, Deployment, Family, Selection, UNKNOWN_CLASS, classify,
};

use crate::fixture::*;

/// A class's site order as `fra,iad,sin`, or `unknown`.
fn render_class(d: &Deployment, table: &ClassTable, id: u32) -> String {
    match &table.class(id).order {
        None => "unknown".into(),
        Some(order) => order
            .iter()
            .map(|s| d.site(*s).name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[test]
fn golden_client_classes_and_ecs_scopes() {
    let Fixture { deployment, table } = fixture();
    #[rustfmt::skip]
    let cases = [
        // (client, site order of its class, ECS scope = prefix length of the deciding block)
        (FRA_NET, "fra,iad,sin", 16),
        (IAD_NET, "iad,fra,sin", 16),
        (SIN_NET, "sin,fra,iad", 16),
        // GeoIP says Ashburn for 127.1.5/24, inside fra's 127.1/16: the site network wins,
        // and the block (so the scope) is the whole site network.
        ("127.1.5.9", "fra,iad,sin", 16),
        // GeoIP 127/8 (Singapore) around the site networks.
        ("127.0.0.1", "sin,fra,iad", 16),
        ("127.200.0.1", "sin,fra,iad", 9),
        (GEO_FRA, "fra,iad,sin", 24),
        (GEO_IAD, "iad,fra,sin", 24),
        (GEO_SIN, "sin,fra,iad", 24),
        (GEO_DXB, "fra,sin,iad", 16),
        (GEO_NOWHERE, "unknown", 16),
        // Not in any table: the unpainted block 0.0.0.0/2.
        (UNKNOWN, "unknown", 2),
        ("2001:db8:f::1", "fra,iad,sin", 48),
        // 2001:db8::/32 (Ashburn) less fra's 2001:db8:f::/48: the block 2001:db8::/45.
        ("2001:db8:1::1", "iad,fra,sin", 45),
        ("2001:db8:e::1", "iad,fra,sin", 48),
        ("2001:db9::1", "unknown", 32),
    ];
    for (client, order, scope) in cases {
        let (id, got_scope) = table.lookup(client.parse().unwrap());
        assert_eq!(
            (render_class(deployment, table, id).as_str(), got_scope),
            (order, scope),
            "{client}"
        );
    }
    assert_eq!(table.lookup(UNKNOWN.parse().unwrap()).0, UNKNOWN_CLASS);
    assert_eq!(table.lookup(GEO_NOWHERE.parse().unwrap()).0, UNKNOWN_CLASS);
    // Equal orders share one class: unknown and the four orders above.
    assert_eq!(table.classes().len(), 5);
    // The table agrees with classifying the location directly.
    let direct = classify(
        deployment,
        &ClientLocation::SiteNetwork {
            site: deployment.site_by_name("fra").unwrap(),
        },
    );
    assert_eq!(
        table.class(table.lookup(FRA_NET.parse().unwrap()).0),
        &direct
    );
    let geo = classify(
        deployment,
        &ClientLocation::Geoip {
            location: frankfurt(),
        },
    );
    assert_eq!(table.class(table.lookup(GEO_FRA.parse().unwrap()).0), &geo);
    assert_eq!(classify(deployment, &ClientLocation::Unknown).order, None);
}

/// (service, family, tweaks, member, its weight or why it is not eligible)
type ReasonCase = (
    &'static str,
    Family,
    &'static [Tweak],
    &'static str,
    Result<u32, Ineligible>,
);

#[test]
fn golden_ineligible_reasons() {
    let d = &fixture().deployment;
    #[rustfmt::skip]
    let cases: Vec<ReasonCase> = vec![
        ("topo", A, &[], "fra-1", Ok(100)),
        ("topo", A, &[Pct("fra-1", 50)], "fra-1", Ok(50)),
        ("topo", A, &[Pct("fra-1", 250)], "fra-1", Ok(250)),
        ("tiny", A, &[Pct("fra-1", 10)], "fra-1", Ok(1)),
        ("topo", A, &[Down("fra-1")], "fra-1", Err(Ineligible::Down("probe failed".into()))),
        ("topo", A, &[Drain("fra-1")], "fra-1", Err(Ineligible::Drained)),
        ("topo", A, &[Maint("fra-1")], "fra-1", Err(Ineligible::Maintenance)),
        ("topo", A, &[Force("fra-1")], "fra-1", Err(Ineligible::ForcedDown)),
        ("topo", A, &[AllDrain], "iad-2", Err(Ineligible::Drained)),
        ("topo", A, &[SiteDrain("fra")], "fra-2", Err(Ineligible::SiteDrained)),
        ("topo", A, &[SiteMaint("fra")], "fra-2", Err(Ineligible::SiteMaintenance)),
        ("topo", A, &[SiteForce("fra")], "fra-2", Err(Ineligible::SiteForcedDown)),
        ("topo", A, &[SiteDrain("fra"), Force("fra-2")], "fra-2", Err(Ineligible::SiteDrained)),
        ("topo", A, &[Pct("fra-1", 0)], "fra-1", Err(Ineligible::ZeroWeight)),
        ("dual", A, &[], "fra-6", Err(Ineligible::OtherFamily)),
        ("dual", AAAA, &[], "fra-4", Err(Ineligible::OtherFamily)),
        ("dual", AAAA, &[], "fra-6", Ok(100)),
        ("chk", A, &[], "fra-1", Err(Ineligible::Unknown)),
        ("chk", A, &[Up("fra-1")], "fra-1", Err(Ineligible::SiteStale(None))),
        ("chk", A, &[Up("fra-1"), Report("fra", 2001)], "fra-1", Err(Ineligible::SiteStale(Some(2001)))),
        ("chk", A, &[Up("fra-1"), Report("fra", 2000)], "fra-1", Ok(100)),
        // Its agent silent, the member is kept while another site's probe reached it
        // within stale_after, and out once every fresh probe failed to.
        ("chk", A, &[Up("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", true, 1500)], "fra-1", Ok(100)),
        ("chk", A, &[Up("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", false, 100), Seen("fra-1", "sin", true, 100)], "fra-1", Ok(100)),
        ("chk", A, &[Up("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", false, 100), Seen("fra-1", "sin", false, 900)], "fra-1",
            Err(Ineligible::SiteUnreachable(5000, vec!["iad".into(), "sin".into()]))),
        // An old confirmation (or one older than a fresh failure) keeps nothing.
        ("chk", A, &[Up("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", true, 2001)], "fra-1", Err(Ineligible::SiteStale(Some(5000)))),
        ("chk", A, &[Up("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", true, 2001), Seen("fra-1", "sin", false, 10)], "fra-1",
            Err(Ineligible::SiteUnreachable(5000, vec!["sin".into()]))),
        // What other sites see never overrides the member's own health or an admin state.
        ("chk", A, &[Down("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", true, 10)], "fra-1", Err(Ineligible::Down("probe failed".into()))),
        ("chk", A, &[Up("fra-1"), Drain("fra-1"), Report("fra", 5000), Seen("fra-1", "iad", true, 10)], "fra-1", Err(Ineligible::Drained)),
        // Load feedback has no say over staleness or health: the member must be up too.
        ("chk", A, &[Down("fra-1"), Report("fra", 0)], "fra-1", Err(Ineligible::Down("probe failed".into()))),
    ];
    for (service, family, tweaks, node, expected) in cases {
        let selection = run(service, family, FRA_NET, tweaks);
        let site = &d
            .site(d.member(d.member_by_name(service, node).unwrap()).site)
            .name;
        let report = selection
            .explanation
            .sites
            .iter()
            .find(|s| &s.site == site)
            .and_then(|s| s.members.iter().find(|m| m.node == node))
            .unwrap_or_else(|| panic!("{service}/{node} is not in the explanation"));
        let got = match (&report.weight, &report.ineligible) {
            (Some(weight), None) => Ok(*weight),
            (None, Some(why)) => Err(why.clone()),
            other => panic!("{service}/{node}: weight and reason {other:?}"),
        };
        assert_eq!(got, expected, "{service} {family:?} {tweaks:?} {node}");
        // The public verdict agrees with the explanation.
        let state = state_with(d, d.service_by_name(service).unwrap(), tweaks);
        let verdict = topology::select::member_verdict(
            d,
            &state,
            d.member_by_name(service, node).unwrap(),
            family,
            NOW,
        );
        assert_eq!(
            verdict, expected,
            "member_verdict {service} {tweaks:?} {node}"
        );
    }
}

/// How often each address comes first over all variants, as `addr*count` by address.
fn first_positions(d: &Deployment, selection: &Selection) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for variant in &selection.variants {
        *counts
            .entry(d.member(variant.members[0]).address.to_string())
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(address, n)| format!("{address}*{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn golden_first_position_shares() {
    let d = &fixture().deployment;
    #[rustfmt::skip]
    let cases: &[(&str, &str, &[Tweak], &str)] = &[
        // (service, client, tweaks, first positions over all variants)
        ("topo", FRA_NET, &[], "10.1.1.1*1 10.1.1.2*1"),
        ("topo", FRA_NET, &[Pct("fra-1", 50)], "10.1.1.1*1 10.1.1.2*2"),
        ("topo", FRA_NET, &[Pct("fra-1", 25)], "10.1.1.1*1 10.1.1.2*4"),
        ("topo", FRA_NET, &[Pct("fra-2", 1000)], "10.1.1.1*1 10.1.1.2*10"),
        // 100 : 7 has no common divisor; scaled to fit 64 variants (59 : 4).
        ("topo", FRA_NET, &[Pct("fra-2", 7)], "10.1.1.1*59 10.1.1.2*4"),
        ("tiny", FRA_NET, &[], "10.13.1.1*1 10.13.1.2*3"),
        ("max", FRA_NET, &[], "10.8.1.1*1 10.8.1.2*1 10.8.1.3*1"),
        // weighted: fra 200 (two members of 100), iad 200, sin 100.
        ("wgt", FRA_NET, &[], "10.3.1.1*2 10.3.1.2*2 10.3.2.1*4 10.3.3.1*2"),
        ("wgt", FRA_NET, &[Pct("iad-1", 50)], "10.3.1.1*2 10.3.1.2*2 10.3.2.1*2 10.3.3.1*2"),
        // round-robin: one each, whatever the weights.
        ("rr", FRA_NET, &[], "10.4.1.1*1 10.4.2.1*1 10.4.3.1*1"),
    ];
    for (service, client, tweaks, expected) in cases {
        let selection = run(service, A, client, tweaks);
        assert_eq!(
            first_positions(d, &selection),
            *expected,
            "{service} {tweaks:?}"
        );
    }
}

#[test]
fn huge_load_feedback_saturates() {
    let d = &fixture().deployment;
    let selection = run(
        "wgt",
        A,
        FRA_NET,
        &[Pct("fra-1", u32::MAX), Pct("fra-2", u32::MAX)],
    );
    assert_eq!(selection.variants.len(), MAX_VARIANTS);
    let sites: BTreeMap<String, usize> =
        selection
            .variants
            .iter()
            .fold(BTreeMap::new(), |mut counts, v| {
                *counts
                    .entry(d.site(v.site.unwrap()).name.clone())
                    .or_default() += 1;
                counts
            });
    assert_eq!(sites.get("fra"), Some(&62));
    assert_eq!(sites.get("iad"), Some(&1));
    assert_eq!(sites.get("sin"), Some(&1));
}

#[test]
fn golden_smooth_weighted_sequences() {
    #[rustfmt::skip]
    let cases: &[(&[u32], usize, &[usize])] = &[
        // (weights, cap, sequence)
        (&[], 64, &[]),
        (&[0, 0], 64, &[]),
        (&[7], 64, &[0]),
        (&[5, 5], 64, &[0, 1]),
        (&[1, 1, 1], 64, &[0, 1, 2]),
        (&[3, 1], 64, &[0, 0, 1, 0]),
        (&[200, 100], 64, &[0, 1, 0]),
        (&[2, 2, 1], 64, &[0, 1, 2, 0, 1]),
        // nginx's example: a a b a c a a.
        (&[5, 1, 1], 64, &[0, 0, 1, 0, 2, 0, 0]),
        (&[0, 3], 64, &[1]),
        (&[3, 0, 1], 64, &[0, 0, 2, 0]),
        // Scaled to the cap, the light one kept once.
        (&[10, 1], 4, &[0, 0, 1, 0]),
    ];
    for (weights, cap, expected) in cases {
        assert_eq!(
            smooth_weighted_sequence(weights, *cap),
            *expected,
            "{weights:?} cap {cap}"
        );
    }
    // Properties over larger inputs: the cycle fits the cap (or the number of indices),
    // every non-zero weight appears, a zero weight never does.
    #[rustfmt::skip]
    let shapes: &[(&[u32], usize)] = &[
        (&[1000, 1], 64), (&[1000, 1, 0], 64), (&[0, 999, 998, 1], 64), (&[u32::MAX, 1], 64),
        (&[1000, 1, 1], 64), (&[1; 100], 64), (&[3, 5, 7, 11, 13], 16),
    ];
    for (weights, cap) in shapes {
        let sequence = smooth_weighted_sequence(weights, *cap);
        assert!(
            sequence.len() <= (*cap).max(weights.len()),
            "{weights:?}: {}",
            sequence.len()
        );
        for (i, w) in weights.iter().enumerate() {
            let n = sequence.iter().filter(|s| **s == i).count();
            assert_eq!(n > 0, *w > 0, "{weights:?}: index {i} appears {n} times");
        }
    }
    let sequence = smooth_weighted_sequence(&[1000, 1], 64);
    assert_eq!(sequence.len(), 64);
    assert_eq!(sequence.iter().filter(|s| **s == 1).count(), 1);
}

#[test]
fn a_member_kept_by_other_sites_probes_is_flagged_in_the_explanation() {
    let d = &fixture().deployment;
    let fra_1 = |tweaks: &[Tweak]| {
        run("chk", A, FRA_NET, tweaks)
            .explanation
            .sites
            .into_iter()
            .find(|s| s.site == "fra")
            .and_then(|s| s.members.into_iter().find(|m| m.node == "fra-1"))
            .expect("fra-1 in the explanation")
    };
    let kept = fra_1(&[
        Up("fra-1"),
        Report("fra", 5000),
        Seen("fra-1", "iad", true, 100),
        Seen("fra-1", "sin", true, 300),
    ]);
    assert_eq!(
        kept.note.as_deref(),
        Some("telemetry lost, confirmed by iad, sin")
    );
    // Its own agent reporting, nothing to flag (old cross-site probes or not).
    let reporting = fra_1(&[
        Up("fra-1"),
        Report("fra", 100),
        Seen("fra-1", "iad", true, 100),
    ]);
    assert_eq!((reporting.weight, reporting.note), (Some(100), None));
    let state = state_with(
        d,
        d.service_by_name("chk").unwrap(),
        &[
            Up("fra-1"),
            Report("fra", 5000),
            Seen("fra-1", "sin", true, 100),
        ],
    );
    let id = d.member_by_name("chk", "fra-1").unwrap();
    assert_eq!(
        topology::select::confirmed_by_vantage(d, &state, id, NOW),
        Some(vec!["sin".to_owned()])
    );
}
