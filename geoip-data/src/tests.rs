//! Tests of [`GeoDb`] against the checked-in test database.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{GeoDb, GeoError, Location, generator};

const TEST_DB_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test-data/test-city.mmdb");

/// Continent, country, subdivision, city, coordinates.
type Place = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    (f64, f64),
);

/// Expected values, written out here rather than taken from the generator.
const FRANKFURT: Place = ("EU", "DE", "HE", "Frankfurt am Main", (50.1109, 8.6821));
const ASHBURN: Place = ("NA", "US", "VA", "Ashburn", (39.0438, -77.4874));
const SINGAPORE: Place = ("AS", "SG", "01", "Singapore", (1.3521, 103.8198));

/// One address in each of the twelve networks: (address, network, place).
const CASES: [(&str, &str, Place); 12] = [
    ("127.1.2.3", "127.1.0.0/16", FRANKFURT),
    ("192.0.2.7", "192.0.2.0/24", FRANKFURT),
    ("2001:db8:1::1", "2001:db8:1::/48", FRANKFURT),
    ("127.0.10.200", "127.0.10.0/24", FRANKFURT),
    ("127.2.255.1", "127.2.0.0/16", ASHBURN),
    ("198.51.100.7", "198.51.100.0/24", ASHBURN),
    ("2001:db8:2:ffff::9", "2001:db8:2::/48", ASHBURN),
    ("127.0.20.1", "127.0.20.0/24", ASHBURN),
    ("127.3.0.0", "127.3.0.0/16", SINGAPORE),
    ("203.0.113.255", "203.0.113.0/24", SINGAPORE),
    ("2001:db8:3::1", "2001:db8:3::/48", SINGAPORE),
    ("127.0.30.30", "127.0.30.0/24", SINGAPORE),
];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn location(place: Place) -> Location {
    let (continent, country, subdivision, city, coordinates) = place;
    Location {
        continent: Some(continent.into()),
        country: Some(country.into()),
        subdivision: Some(subdivision.into()),
        city: Some(city.into()),
        coordinates: Some(coordinates),
    }
}

#[test]
fn checked_in_database_matches_generator() {
    let checked_in = std::fs::read(TEST_DB_PATH).expect("read the checked-in test database");
    assert!(
        checked_in == generator::test_city_database(),
        "{TEST_DB_PATH} differs from generator::test_city_database(); \
         run `cargo run -p geoip-data --bin make-test-mmdb` from the workspace root"
    );
}

#[test]
fn generator_output_is_a_valid_database() {
    let reader = maxminddb::Reader::from_source(generator::test_city_database()).expect("parse");
    reader.verify().expect("verify");
    let meta = reader.metadata();
    assert_eq!((meta.ip_version, meta.record_size), (6, 28));
    assert_eq!(meta.languages, ["en"]);

    let db = GeoDb::test_database();
    assert_eq!(db.database_type(), "GeoIP2-City");
    assert_eq!(db.build_epoch(), generator::TEST_BUILD_EPOCH);
}

#[test]
fn lookup_finds_each_network_with_its_prefix() {
    let db = GeoDb::test_database();
    for (addr, network, place) in CASES {
        let network: IpNet = network.parse().expect("test network");
        let found = db.lookup(ip(addr)).expect("lookup");
        assert_eq!(
            found,
            Some((location(place), network.prefix_len())),
            "{addr}"
        );
    }
}

#[test]
fn lookup_outside_the_networks_is_none() {
    let db = GeoDb::test_database();
    for addr in [
        "127.0.0.1",
        "127.0.99.1",
        "127.4.0.1",
        "10.0.0.1",
        "::1",
        "2001:db8:4::1",
    ] {
        assert_eq!(db.lookup(ip(addr)).expect("lookup"), None, "{addr}");
    }
}

#[test]
fn ipv4_aliases_reach_ipv4_data_with_ipv6_prefixes() {
    let db = GeoDb::test_database();
    let (mapped, prefix) = db
        .lookup(ip("::ffff:192.0.2.7"))
        .expect("lookup")
        .expect("found");
    assert_eq!((mapped.country.as_deref(), prefix), (Some("DE"), 96 + 24));
    let (six_to_four, prefix) = db
        .lookup(ip("2002:cb00:7101::1"))
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (six_to_four.country.as_deref(), prefix),
        (Some("SG"), 16 + 24)
    );
}

#[test]
fn networks_lists_exactly_the_twelve_networks_sorted() {
    let db = GeoDb::test_database();
    let mut expected: Vec<(IpNet, Location)> = CASES
        .iter()
        .map(|&(_, net, place)| (net.parse().expect("test network"), location(place)))
        .collect();
    expected.sort_by_key(|(net, _)| *net);
    assert_eq!(db.networks().expect("networks"), expected);
    assert!(
        matches!(expected[0].0, IpNet::V4(_)),
        "IPv4 networks reported as IPv4"
    );
}

#[test]
fn variant_database_holds_only_its_entries() {
    let ashburn: Vec<_> = generator::test_entries()
        .into_iter()
        .filter(|(_, place)| **place == generator::ASHBURN)
        .collect();
    let db = GeoDb::from_bytes(generator::build(&ashburn)).expect("variant database");
    let networks: Vec<String> = db
        .networks()
        .expect("networks")
        .iter()
        .map(|(net, _)| net.to_string())
        .collect();
    assert_eq!(
        networks,
        [
            "127.0.20.0/24",
            "127.2.0.0/16",
            "198.51.100.0/24",
            "2001:db8:2::/48"
        ]
    );
    assert_eq!(db.lookup(ip("192.0.2.7")).expect("lookup"), None);
}

#[test]
fn country_style_records_decode_with_missing_fields() {
    use generator::writer::{Metadata, Value, map, write};
    let str = |s: &str| Value::Str(s.to_owned());
    let metadata = Metadata {
        database_type: "GeoLite2-Country",
        description: "country-style records",
        languages: &["en"],
        build_epoch: 1,
    };
    let country = map([
        ("iso_code", str("DE")),
        ("is_in_european_union", Value::U16(1)),
    ]);
    let records = [
        // Country database: continent and country only, plus a field we do not know.
        (
            0xc000_0200_u128,
            120,
            map([
                ("continent", map([("code", str("EU"))])),
                ("country", country),
            ]),
        ),
        // Latitude without longitude, no subdivisions, a city without names.
        (
            0xc633_6400,
            120,
            map([
                ("city", map([("geoname_id", Value::U32(7))])),
                ("location", map([("latitude", Value::Double(1.5))])),
                ("subdivisions", Value::Array(Vec::new())),
            ]),
        ),
    ];
    let db = GeoDb::from_bytes(write(&records, &metadata)).expect("database");
    assert_eq!(db.database_type(), "GeoLite2-Country");

    let country_only = Location {
        continent: Some("EU".into()),
        country: Some("DE".into()),
        ..Location::default()
    };
    assert_eq!(
        db.lookup(ip("192.0.2.1")).expect("lookup"),
        Some((country_only, 24))
    );
    assert_eq!(
        db.lookup(ip("198.51.100.1")).expect("lookup"),
        Some((Location::default(), 24))
    );
}

#[test]
fn from_bytes_rejects_junk() {
    let err = GeoDb::from_bytes(b"definitely not a database".to_vec()).expect_err("junk");
    assert!(
        matches!(err, GeoError::InvalidDatabase { path: None, .. }),
        "{err:?}"
    );
}

#[test]
fn databases_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GeoDb>();
    assert_send_sync::<crate::WatchedDb>();
    assert_send_sync::<GeoError>();
}
