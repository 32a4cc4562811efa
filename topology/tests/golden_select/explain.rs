//! Golden explanations (the admin API's `explain` and the debug TXT lines), and site order
//! for sites without coordinates.

use std::net::IpAddr;

use topology::select::Outcome;
use topology::{
    ClassTable, ClientLocation, Config, Family, Health, State, classify, explain, select,
};

use crate::fixture::*;

fn explain_for(
    service: &str,
    family: Family,
    location: ClientLocation,
    tweaks: &[Tweak],
) -> topology::Explain {
    let d = &fixture().deployment;
    let id = d.service_by_name(service).unwrap();
    let state = state_with(d, id, tweaks);
    explain(d, &state, id, family, &location, NOW)
}

/// (service, family, client location, tweaks, summary lines)
type SummaryCase = (
    &'static str,
    Family,
    ClientLocation,
    &'static [Tweak],
    &'static [&'static str],
);

#[test]
fn golden_explain_summaries() {
    let d = &fixture().deployment;
    let fra = ClientLocation::SiteNetwork {
        site: d.site_by_name("fra").unwrap(),
    };
    let geo_fra = ClientLocation::Geoip {
        location: frankfurt(),
    };
    #[rustfmt::skip]
    let cases: Vec<SummaryCase> = vec![
        ("topo", A, geo_fra.clone(), &[SiteDown("fra")], &[
            "client: geoip EU/DE Frankfurt",
            "policy topology, order by client's site, then distance",
            "#0 fra unavailable eligible=0 0km (fra-1 down: probe failed; fra-2 down: probe failed)",
            "#1 iad available eligible=2 6549km",
            "#2 sin available eligible=2 10258km",
            "answer: site iad",
            "addresses: 10.1.2.1 10.1.2.2",
        ]),
        ("topo", A, fra.clone(), &[Drain("fra-1")], &[
            "client: in a client network of site fra",
            "policy topology, order by client's site, then distance",
            "#0 fra available eligible=1 0km (fra-1 drained)",
            "#1 iad available eligible=2 6549km",
            "#2 sin available eligible=2 10258km",
            "answer: site fra",
            "addresses: 10.1.1.2",
        ]),
        ("least", A, ClientLocation::Unknown, &[], &[
            "client: location unknown",
            "policy least-load, order by most headroom (load feedback), ties by unknown_client_order",
            "#0 sin available eligible=1",
            "#1 iad available eligible=1",
            "#2 fra available eligible=1",
            "answer: site sin",
            "addresses: 10.6.3.1",
        ]),
        ("spill", A, fra.clone(), &[], &[
            "client: in a client network of site fra",
            "policy topology, order by client's site, then distance",
            "#0 fra available eligible=2 0km",
            "#1 iad available eligible=2 6549km",
            "#2 sin available eligible=1 10258km",
            "answer: site fra, spilled to iad",
            "addresses: 10.9.1.1 10.9.1.2 10.9.2.1",
        ]),
        ("rr", A, fra.clone(), &[SiteMaint("iad")], &[
            "client: in a client network of site fra",
            "policy round-robin, order by configuration order",
            "#0 fra available eligible=1 0km",
            "#1 iad unavailable eligible=0 6549km (iad-1 site in maintenance)",
            "#2 sin available eligible=1 10258km",
            "answer: spread over fra,sin",
            "addresses: 10.4.1.1",
        ]),
        ("fail", A, fra.clone(), &[AllDown], &[
            "client: in a client network of site fra",
            "policy failover, order by failover_order",
            "#0 iad unavailable eligible=0 6549km (iad-1 down: probe failed)",
            "#1 sin unavailable eligible=0 10258km (sin-1 down: probe failed)",
            "#2 fra unavailable eligible=0 0km (fra-1 down: probe failed)",
            "answer: fail open (all down), site iad",
            "addresses: 10.2.2.1",
        ]),
        ("nodata", A, geo_fra.clone(), &[AllDown], &[
            "client: geoip EU/DE Frankfurt",
            "policy topology, order by client's site, then distance",
            "#0 fra unavailable eligible=0 0km (fra-1 down: probe failed)",
            "#1 iad unavailable eligible=0 6549km (iad-1 down: probe failed)",
            "#2 sin unavailable eligible=0 10258km (sin-1 down: probe failed)",
            "answer: nodata (no site is available and when_all_down = nodata)",
            "addresses: ",
        ]),
        ("chk", A, fra.clone(), &[Up("fra-1"), Report("fra", 2500)], &[
            "client: in a client network of site fra",
            "policy topology, order by client's site, then distance",
            "#0 fra unavailable eligible=0 0km (fra-1 site telemetry stale (2500 ms old))",
            "#1 iad unavailable eligible=0 6549km (iad-1 health unknown)",
            "#2 sin unavailable eligible=0 10258km (sin-1 health unknown)",
            "answer: fail open (all down), site fra",
            "addresses: 10.12.1.1",
        ]),
        ("dual", AAAA, fra, &[], &[
            "client: in a client network of site fra",
            "policy topology, order by client's site, then distance",
            "#0 fra available eligible=1 0km (fra-4 address of the other family)",
            "#1 iad unavailable eligible=0 6549km (iad-4 address of the other family)",
            "#2 sin available eligible=1 10258km",
            "answer: site fra",
            "addresses: 2001:db8:1::1",
        ]),
    ];
    for (service, family, location, tweaks, expected) in cases {
        let explained = explain_for(service, family, location, tweaks);
        assert_eq!(
            explained.summary_lines(),
            expected.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "{service} {tweaks:?}"
        );
        assert!(explained.summary_lines().iter().all(|l| l.len() < 255));
    }
}

#[test]
fn explain_agrees_with_select() {
    let d = &fixture().deployment;
    let location = ClientLocation::Geoip {
        location: place("Dubai", "AE", "AS", 25.2048, 55.2708),
    };
    let explained = explain_for("topo", A, location, &[SiteDown("fra")]);
    let selection = run("topo", A, GEO_DXB, &[SiteDown("fra")]);
    let first: Vec<IpAddr> = selection.variants[0]
        .members
        .iter()
        .map(|m| d.member(*m).address)
        .collect();
    assert_eq!(explained.answers, first);
    assert_eq!(explained.rotations, selection.variants.len());
    assert_eq!(explained.explanation.outcome, selection.explanation.outcome);
    assert_eq!(
        explained.explanation.outcome,
        Outcome::Site {
            site: "sin".into(),
            spilled_to: vec![]
        }
    );
    let distances: Vec<(&str, Option<f64>)> = explained
        .explanation
        .sites
        .iter()
        .map(|s| (s.site.as_str(), s.distance_km.map(f64::round)))
        .collect();
    assert_eq!(
        distances,
        [
            ("fra", Some(4836.0)),
            ("sin", Some(5837.0)),
            ("iad", Some(11348.0))
        ]
    );
    assert!(explained.explanation.location_known);
    assert_eq!(explained.explanation.ttl, 1);
    // The admin API's JSON: the flattened explanation with a tagged outcome.
    let json = serde_json::to_value(&explained).unwrap();
    assert_eq!(json["outcome"]["kind"], "site");
    assert_eq!(json["outcome"]["site"], "sin");
    assert_eq!(json["answers"][0], "10.1.3.1");
    assert_eq!(json["location"]["by"], "geoip");
    assert_eq!(json["family"], "A");
    assert_eq!(json["policy"], "topology");
    assert_eq!(
        json["sites"][0]["members"][0]["ineligible"]["reason"],
        "down"
    );
}

#[test]
fn sites_without_coordinates_come_last_in_configuration_order() {
    let toml = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "lab"
client_networks = ["10.0.0.0/8"]

[[site]]
name = "sin"
location = { lat = 1.3521, lon = 103.8198 }

[[site]]
name = "attic"

[[site]]
name = "fra"
location = { lat = 50.1109, lon = 8.6821 }

[[service]]
name = "s3"
members = [
    { site = "lab", address = "10.0.0.1" },
    { site = "sin", address = "10.3.0.1" },
    { site = "attic", address = "10.9.0.1" },
    { site = "fra", address = "10.1.0.1" },
]
"#;
    let d = Config::from_toml(toml, 0).unwrap().deployment;
    let names = |class: &topology::ClientClass| {
        class
            .order
            .as_ref()
            .map(|o| {
                o.iter()
                    .map(|s| d.site(*s).name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "unknown".into())
    };
    let geo = |location| classify(&d, &ClientLocation::Geoip { location });
    assert_eq!(names(&geo(frankfurt())), "fra,sin,lab,attic");
    assert_eq!(names(&geo(singapore())), "sin,fra,lab,attic");
    let lab = ClientLocation::SiteNetwork {
        site: d.site_by_name("lab").unwrap(),
    };
    assert_eq!(names(&classify(&d, &lab)), "lab,sin,attic,fra");
    let sin = ClientLocation::SiteNetwork {
        site: d.site_by_name("sin").unwrap(),
    };
    assert_eq!(names(&classify(&d, &sin)), "sin,fra,lab,attic");
    // Selection through the table: a lab client, the lab down, then configuration order.
    let table = ClassTable::build(&d, Vec::new());
    let (class, scope) = table.lookup("10.20.30.40".parse().unwrap());
    assert_eq!(scope, 8);
    let service = d.service_by_name("s3").unwrap();
    let mut state = State::initial(&d);
    let lab_member = d.member_by_name("s3", "10.0.0.1").unwrap();
    state.member_mut(lab_member).health = Health::Down;
    let selection = select(&d, &state, service, A, table.class(class), NOW);
    assert_eq!(
        render_variants(&d, &selection),
        "10.3.0.1",
        "the lab has no coordinates: the others follow in configuration order"
    );
}
