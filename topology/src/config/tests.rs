//! Golden tests of configuration parsing: the embedded default, and a table of broken
//! documents, each of which must name the right key and the right line.

use super::*;
use crate::model::{Policy, SiteId, WhenAllDown};

/// A small valid document. Every error case below edits exactly one line of it, so the line
/// numbers in the table are the line numbers shown here.
const BASE: &str = r#"# line 1: a valid document for the error table
[zone]
origin = "storage.example."
ns = ["ns1"]
records = [
    "ns1 3600 IN A 127.0.0.1",
    "www 300 IN CNAME s3",
    "static 300 IN A 127.0.0.53",
]
soa = { rname = "hostmaster", refresh = 3600 }

[[site]]
name = "fra"
location = { lat = 50.1109, lon = 8.6821 }
client_networks = ["127.1.0.0/16"]

[[site]]
name = "iad"
location = { lat = 39.0438, lon = -77.4874 }
client_networks = ["127.2.0.0/16", "2001:db8:2::/48"]

[[service]]
name = "s3"
policy = "topology"
max_answers = 2
stale_after = "3s"
check = { kind = "s3", interval = "500ms" }
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "fra", node = "fra-2", address = "127.0.10.2", weight = 200 },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
]

[[service]]
name = "nfs"
policy = "failover"
failover_order = ["iad", "fra"]
members = [
    { site = "iad", node = "iad-n1", address = "127.0.21.1" },
]

[site_agent]
site = "fra"
"#;

/// `BASE` with the one line `old` (which must appear exactly once) replaced by `new`.
fn edit(old: &str, new: &str) -> String {
    assert_eq!(
        BASE.matches(old).count(),
        1,
        "{old:?} must appear once in BASE"
    );
    BASE.replace(old, new)
}

/// Parses `toml` and expects an error about `key` on `line` whose message holds `fragment`;
/// returns what differs.
fn check(toml: &str, key: &str, line: usize, fragment: &str) -> Result<(), String> {
    let err = match Config::from_toml(toml, 1_700_000_000) {
        Ok(_) => {
            return Err(format!(
                "expected an error about `{key}`, but the document is valid"
            ));
        }
        Err(err) => err,
    };
    let got_line = match &err {
        ConfigError::Syntax { line, .. } => Some(*line),
        ConfigError::Invalid { line, .. } => *line,
    };
    let text = err.to_string();
    if (err.key(), got_line) != (key, Some(line)) {
        return Err(format!(
            "expected `{key}` on line {line}, got `{}` on line {got_line:?}: {text}",
            err.key()
        ));
    }
    if !text.contains(fragment) {
        return Err(format!("{text:?} should contain {fragment:?}"));
    }
    if !text.contains(&format!("line {line}")) {
        return Err(format!("the message should name line {line}: {text}"));
    }
    Ok(())
}

#[test]
fn base_document_is_valid() {
    let config = Config::from_toml(BASE, 7).expect("BASE parses");
    let d = &config.deployment;
    assert_eq!(d.sites.len(), 2);
    assert_eq!(d.services.len(), 2);
    assert_eq!(d.members.len(), 4);
    assert_eq!(d.zone.soa.serial, 7, "serial defaults to the load time");
    assert_eq!(d.zone.soa.mname.as_str(), "ns1.storage.example.");
    assert_eq!(d.zone.soa.rname.as_str(), "hostmaster.storage.example.");
    let nfs = d.service(d.service_by_name("nfs").unwrap());
    assert_eq!(nfs.policy, Policy::Failover);
    assert_eq!(nfs.failover_order, vec![SiteId(1), SiteId(0)]);
    let s3 = d.service(d.service_by_name("s3").unwrap());
    assert_eq!(s3.stale_after, std::time::Duration::from_secs(3));
    let fra2 = d.member(d.member_by_name("s3", "fra-2").unwrap());
    assert_eq!((fra2.weight, fra2.site), (200, SiteId(0)));
    assert_eq!(config.components.site_agent.site.as_deref(), Some("fra"));
}

#[test]
fn default_config_parses() {
    let config = Config::default_config(1_700_000_000);
    let d = &config.deployment;
    assert_eq!(d.zone.origin.as_str(), "storage.example.");
    let sites: Vec<&str> = d.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sites, ["fra", "iad", "sin"]);
    assert_eq!(d.services.len(), 1);
    let s3 = &d.services[0];
    assert_eq!(s3.name, "s3");
    assert_eq!(s3.fqdn.as_str(), "s3.storage.example.");
    assert_eq!(s3.policy, Policy::Topology);
    assert_eq!(s3.when_all_down, WhenAllDown::AnswerAll);
    assert_eq!((s3.ttl, s3.max_answers, s3.min_healthy), (1, 2, 1));
    assert!(s3.check.is_none());
    assert_eq!(s3.members.len(), 6);
    let nodes: Vec<(&str, &str, String)> = s3
        .members
        .iter()
        .map(|m| {
            let m = d.member(*m);
            (
                d.site(m.site).name.as_str(),
                m.node.as_str(),
                m.address.to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("fra", "fra-1", "127.0.10.1".to_owned()),
            ("fra", "fra-2", "127.0.10.2".to_owned()),
            ("iad", "iad-1", "127.0.20.1".to_owned()),
            ("iad", "iad-2", "127.0.20.2".to_owned()),
            ("sin", "sin-1", "127.0.30.1".to_owned()),
            ("sin", "sin-2", "127.0.30.2".to_owned()),
        ]
    );
    assert_eq!(d.zone.records.len(), 8);
    assert_eq!(
        d.sites[0].client_networks,
        vec!["127.1.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(config.node.dns.listen.len(), 2);
}

#[test]
fn the_deployment_document_is_the_replicated_tables_only_and_reads_back_equal() {
    let config = Config::default_config(7);
    let document = &config.document;
    assert!(
        !document.contains("[dns]") && !document.contains("[admin]"),
        "{document}"
    );
    assert!(
        document.contains("[zone]") && document.contains("[[site]]"),
        "{document}"
    );
    let read = Deployment::from_document(document, 7).unwrap();
    assert_eq!(read, config.deployment);
    // Canonical: the same deployment written differently gives the same document.
    let reordered = crate::DEFAULT_CONFIG.replace("[admin]\nlisten = \"127.0.0.1:8053\"\n", "");
    assert_ne!(reordered, crate::DEFAULT_CONFIG);
    assert_eq!(
        &Config::from_toml(&reordered, 7).unwrap().document,
        document
    );
}

#[test]
fn a_deployment_document_refuses_node_sections_and_names_bad_keys() {
    let with_node = format!(
        "{}\n[dns]\necs = false\n",
        Config::default_config(0).document
    );
    let err = Deployment::from_document(&with_node, 0).unwrap_err();
    assert!(err.to_string().contains("unknown field `dns`"), "{err}");
    let config = Config::default_config(0);
    let bad = config.document.replace("127.1.0.0/16", "127.1.0.0/33");
    let err = Deployment::from_document(&bad, 0).unwrap_err();
    assert_eq!(err.key(), "site[0].client_networks[0]", "{err}");
    assert!(err.to_string().contains("line "), "{err}");
    let huge = "#".repeat(super::MAX_DOCUMENT_BYTES + 1);
    assert!(Deployment::from_document(&huge, 0).is_err());
}

#[rustfmt::skip]
const ERRORS: &[(&str, &str, &str, usize, &str)] = &[
    // (line of BASE, replaced by, expected key, expected line, message fragment)
    // Unknown keys (deny_unknown_fields) at every level.
    ("# line 1: a valid document for the error table", "colour = \"blue\"", "colour", 1, "unknown field `colour`"),
    ("soa = { rname = \"hostmaster\", refresh = 3600 }", "soa = { rname = \"hostmaster\", refesh = 3600 }", "zone.soa.refesh", 10, "unknown field `refesh`"),
    ("location = { lat = 50.1109, lon = 8.6821 }", "location = { lat = 50.1109, long = 8.6821 }", "site[0].location.long", 14, "unknown field `long`"),
    ("stale_after = \"3s\"", "stale_afer = \"3s\"", "service[0].stale_afer", 26, "unknown field `stale_afer`"),
    ("failover_order = [\"iad\", \"fra\"]", "failover_ordr = [\"iad\", \"fra\"]", "service[1].failover_ordr", 37, "unknown field `failover_ordr`"),
    ("address = \"127.0.10.2\", weight", "adress = \"127.0.10.2\", weight", "service[0].members[1].adress", 30, "unknown field `adress`"),
    ("check = { kind = \"s3\", interval = \"500ms\" }", "check = { kind = \"s3\", every = \"500ms\" }", "service[0].check.every", 27, "unknown field `every`"),
    ("[site_agent]\nsite = \"fra\"", "[site_agent]\nsite = \"fra\"\nport = 1", "site_agent.port", 44, "unknown field `port`"),
    ("name = \"iad\"", "region = \"us\"", "site[1].region", 18, "unknown field `region`"),
    ("check = { kind = \"s3\", interval = \"500ms\" }", "check.every = \"1s\"", "service[0].check.every", 27, "unknown field `every`"),
    // Missing fields: the table that lacks them.
    ("name = \"nfs\"", "# no name", "service[1]", 34, "missing field `name`"),
    ("{ site = \"iad\", node = \"iad-n1\", address = \"127.0.21.1\" }", "{ site = \"iad\", node = \"iad-n1\" }", "service[1].members[0].address", 39, "missing: give an address, or a name to discover"),
    // Wrong types.
    ("max_answers = 2", "max_answers = \"two\"", "service[0].max_answers", 25, "invalid type"),
    ("address = \"127.0.20.1\"", "address = 127", "service[0].members[2].address", 31, "invalid type"),
    ("ns = [\"ns1\"]", "ns = \"ns1\"", "zone.ns", 4, "invalid type"),
    ("client_networks = [\"127.1.0.0/16\"]", "client_networks = [\"127.1.0.0/16\", 7]", "site[0].client_networks[1]", 15, "invalid type"),
    // Values that parse but are not valid.
    ("policy = \"topology\"", "policy = \"nearest\"", "service[0].policy", 24, "\"nearest\" is not one of topology, latency"),
    ("{ site = \"iad\", node = \"iad-1\"", "{ site = \"ams\", node = \"iad-1\"", "service[0].members[2].site", 31, "no site named \"ams\""),
    ("address = \"127.0.10.2\"", "address = \"127.0.10.300\"", "service[0].members[1].address", 30, "is not an IP address"),
    ("node = \"fra-2\"", "node = \"fra-1\"", "service[0].members[1].node", 30, "node \"fra-1\" appears twice"),
    ("weight = 200", "weight = 0", "service[0].members[1].weight", 30, "within 1..=1000"),
    ("name = \"iad\"", "name = \"fra\"", "site[1].name", 18, "site \"fra\" is defined twice"),
    ("[\"127.2.0.0/16\", \"2001", "[\"127.1.0.0/16\", \"2001", "site[1].client_networks[0]", 20, "already a client network of site \"fra\""),
    ("client_networks = [\"127.1.0.0/16\"]", "client_networks = [\"127.1.0.0/16\", \"2001:db8:2::1/48\"]", "site[1].client_networks[1]", 20, "2001:db8:2::/48 is already a client network of site \"fra\""),
    ("\"2001:db8:2::/48\"", "\"2001:db8:2::/480\"", "site[1].client_networks[1]", 20, "is not a network"),
    ("lat = 39.0438", "lat = 139.0438", "site[1].location", 19, "lat must be within"),
    ("stale_after = \"3s\"", "stale_after = \"3 days\"", "service[0].stale_after", 26, "unknown unit"),
    ("interval = \"500ms\"", "interval = \"500\"", "service[0].check.interval", 27, "no unit"),
    ("kind = \"s3\"", "kind = \"ftp\"", "service[0].check.kind", 27, "\"ftp\" is not one of s3"),
    ("max_answers = 2", "max_answers = 0", "service[0].max_answers", 25, "must be within 1..=64"),
    ("failover_order = [\"iad\", \"fra\"]", "# no failover_order", "service[1].failover_order", 34, "needs failover_order"),
    ("failover_order = [\"iad\", \"fra\"]", "failover_order = [\"iad\", \"iad\"]", "service[1].failover_order[1]", 37, "listed twice"),
    ("{ site = \"iad\", node = \"iad-n1\"", "{ site = \"iad\", node = \"iad n1\"", "service[1].members[0].node", 39, "no '/' or spaces"),
    ("name = \"nfs\"", "name = \"www\"", "zone.records[1]", 7, "clashes with the service"),
    ("name = \"nfs\"", "name = \"s3\"", "service[1].name", 35, "defined twice"),
    ("name = \"nfs\"", "name = \"nfs.example.net.\"", "service[1].name", 35, "must be a name below the zone"),
    ("[site_agent]\nsite = \"fra\"", "[site_agent]\nsite = \"ams\"", "site_agent.site", 43, "no site named \"ams\""),
    ("check = { kind = \"s3\", interval = \"500ms\" }", "check.kind = \"ftp\"", "service[0].check.kind", 27, "\"ftp\" is not one of s3"),
    ("ns = [\"ns1\"]", "ns = [\"ns1\", \"bad name\"]", "zone.ns[1]", 4, "other than a letter"),
    // Record lines: the key is the record's index in zone.records, the line its own.
    ("\"static 300 IN A 127.0.0.53\"", "\"static 300 IN A 127.0.0.530\"", "zone.records[2]", 8, "not an IPv4 address"),
    ("\"static 300 IN A 127.0.0.53\"", "\"static 300 IN HINFO a b\"", "zone.records[2]", 8, "unsupported record type"),
    ("\"static 300 IN A 127.0.0.53\"", "\"www 300 IN A 127.0.0.53\"", "zone.records[2]", 8, "has a CNAME and other data"),
    ("\"www 300 IN CNAME s3\"", "\"ns1 300 IN CNAME s3\"", "zone.records[1]", 7, "has a CNAME and other data"),
    ("\"static 300 IN A 127.0.0.53\"", "\"static.example.net. 300 IN A 127.0.0.53\"", "zone.records[2]", 8, "outside the zone"),
    ("\"static 300 IN A 127.0.0.53\"", "\"@ 300 IN CNAME s3\"", "zone.records[2]", 8, "CNAME cannot be at the zone apex"),
    // TOML syntax errors: the line of the mistake.
    ("max_answers = 2", "max_answers = = 2", "service[0].max_answers", 25, "line 25, column"),
    ("name = \"iad\"", "name = \"iad", "site[1].name", 18, "line 18"),
    ("node = \"fra-1\"", "node = fra-1", "service[0].members[0].node", 29, "line 29"),
    ("max_answers = 2", "max_answers = 2\nmax_answers = 3", "service[0].max_answers", 26, "duplicate key"),
    ("\n[site_agent]", "\n[site_agent]\n= 5", "site_agent", 43, "line 43"),
];

#[test]
fn golden_errors() {
    let failures: Vec<String> = ERRORS
        .iter()
        .filter_map(|(old, new, key, line, fragment)| {
            check(&edit(old, new), key, *line, fragment)
                .err()
                .map(|why| format!("{new:?}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        ERRORS.len(),
        failures.join("\n")
    );
}

#[test]
fn missing_sections() {
    // No [[site]] at all: the error names the absent key and no line.
    let no_sites = "[zone]\norigin = \"storage.example.\"\nns = [\"ns1\"]\n";
    let err = Config::from_toml(no_sites, 0).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid {
            key: "site".into(),
            line: None,
            message: "at least one [[site]] is needed".into(),
        }
    );
    assert_eq!(err.to_string(), "`site`: at least one [[site]] is needed");

    let no_zone = "[[site]]\nname = \"fra\"\n";
    let err = Config::from_toml(no_zone, 0).unwrap_err();
    assert!(err.to_string().contains("missing field `zone`"), "{err}");
}

/// `"service[0].members[1].address"` as a [`KeyPath`].
fn key_path(text: &str) -> KeyPath {
    let mut path = KeyPath::default();
    for part in text.split('.') {
        let mut pieces = part.split('[');
        path = path.key(pieces.next().unwrap());
        for index in pieces {
            path = path.index(index.trim_end_matches(']').parse().unwrap());
        }
    }
    path
}

#[test]
fn locate_round_trips_through_every_shape() {
    // Header sub-tables, arrays of tables, inline tables in arrays (one spread over two
    // lines, as TOML 1.1 allows), dotted keys.
    let doc = r#"[zone]
origin = "x."
[zone.soa]
rname = "h"
[[service]]
name = "a"
members = [
  { site = "fra", address = "1.2.3.4" },
  { site = "iad",
    address = "1.2.3.5" },
]
[[service]]
name = "b"
check.kind = "tcp"
"#;
    #[rustfmt::skip]
    let cases = [
        ("zone", 1), ("zone.origin", 2), ("zone.soa", 3), ("zone.soa.rname", 4),
        ("service", 5), ("service[0]", 5), ("service[0].name", 6), ("service[0].members", 7),
        ("service[0].members[0]", 8), ("service[0].members[0].site", 8),
        ("service[0].members[1]", 9), ("service[0].members[1].address", 10),
        ("service[1]", 12), ("service[1].name", 13), ("service[1].check.kind", 14),
    ];
    for (text, line) in cases {
        let path = key_path(text);
        assert_eq!(path.to_string(), text);
        let span = locate::span_of(doc, &path).unwrap_or_else(|| panic!("{text} not found"));
        assert_eq!(
            locate::line_column(doc, span.start).0,
            line,
            "line of {text}"
        );
        assert_eq!(
            locate::path_at(doc, span.start).to_string(),
            text,
            "path at {text}"
        );
    }
    // A missing key: its nearest ancestor.
    let span = locate::span_of(doc, &key_path("service[1].members[3].site")).unwrap();
    assert_eq!(locate::line_column(doc, span.start).0, 12);
    assert_eq!(locate::span_of(doc, &key_path("proxy.site")), None);
}

#[test]
fn discovered_groups_expand_into_slots() {
    let text = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]
[[site]]
name = "fra"
[[service]]
name = "s3"
members = [{ site = "fra", node = "pool", discover = "vips.cluster.example.", slots = 3, port = 9000 }]
"#;
    let config = Config::from_toml(text, 1).unwrap();
    let d = &config.deployment;
    let nodes: Vec<&str> = d.members.iter().map(|m| m.node.as_str()).collect();
    assert_eq!(nodes, ["pool-0", "pool-1", "pool-2"]);
    assert!(
        d.members
            .iter()
            .all(|m| m.discover.as_ref().map(|n| n.as_str()) == Some("vips.cluster.example."))
    );
    let both = text.replace(
        "discover = \"vips.cluster.example.\"",
        "discover = \"vips.cluster.example.\", address = \"10.0.0.1\"",
    );
    let err = Config::from_toml(&both, 1).unwrap_err();
    assert_eq!(err.key(), "service[0].members[0].discover");
    let relative = text.replace("vips.cluster.example.", "vips");
    assert!(
        Config::from_toml(&relative, 1)
            .unwrap_err()
            .to_string()
            .contains("final dot")
    );
}
