//! The generator of the test database `test-data/test-city.mmdb`.
//!
//! [`test_city_database`] builds the checked-in file (a test checks they are identical;
//! `cargo run -p geoip-data --bin make-test-mmdb` rewrites it). The records follow the
//! GeoIP2-City layout: `continent`, `country`, `registered_country`, `subdivisions`,
//! `city` and `location`, with English names only. The output is deterministic.
//!
//! | networks | place |
//! |---|---|
//! | 127.1.0.0/16, 192.0.2.0/24, 2001:db8:1::/48, 127.0.10.0/24 | EU / DE / HE / Frankfurt am Main |
//! | 127.2.0.0/16, 198.51.100.0/24, 2001:db8:2::/48, 127.0.20.0/24 | NA / US / VA / Ashburn |
//! | 127.3.0.0/16, 203.0.113.0/24, 2001:db8:3::/48, 127.0.30.0/24 | AS / SG / 01 / Singapore |
//!
//! Everything else (127.0.0.1, ::1, 127.0.99.1, ...) has no data.

pub mod real_size;
pub(crate) mod writer;

use ipnet::IpNet;

use writer::{Value, map};

/// Build time written into the test database's metadata (2025-01-01T00:00:00Z).
pub const TEST_BUILD_EPOCH: u64 = 1_735_689_600;

/// One place of the test database, with the GeoIP2-City fields the generator writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Continent code and English name, e.g. `("EU", "Europe")`.
    pub continent: (&'static str, &'static str),
    /// ISO country code and English name.
    pub country: (&'static str, &'static str),
    /// ISO subdivision code and English name.
    pub subdivision: (&'static str, &'static str),
    /// English city name.
    pub city: &'static str,
    /// GeoNames ids of continent, country, subdivision and city (illustrative).
    pub geoname_ids: [u32; 4],
    /// Latitude and longitude in degrees.
    pub coordinates: (f64, f64),
    /// IANA time zone.
    pub time_zone: &'static str,
}

/// Frankfurt am Main, Hesse, Germany.
pub const FRANKFURT: Place = Place {
    continent: ("EU", "Europe"),
    country: ("DE", "Germany"),
    subdivision: ("HE", "Hesse"),
    city: "Frankfurt am Main",
    geoname_ids: [6_255_148, 2_921_044, 2_905_330, 2_925_533],
    coordinates: (50.1109, 8.6821),
    time_zone: "Europe/Berlin",
};

/// Ashburn, Virginia, United States.
pub const ASHBURN: Place = Place {
    continent: ("NA", "North America"),
    country: ("US", "United States"),
    subdivision: ("VA", "Virginia"),
    city: "Ashburn",
    geoname_ids: [6_255_149, 6_252_001, 6_254_928, 4_744_870],
    coordinates: (39.0438, -77.4874),
    time_zone: "America/New_York",
};

/// Singapore, Central Singapore, Singapore.
pub const SINGAPORE: Place = Place {
    continent: ("AS", "Asia"),
    country: ("SG", "Singapore"),
    subdivision: ("01", "Central Singapore"),
    city: "Singapore",
    geoname_ids: [6_255_147, 1_880_251, 7_535_958, 1_880_252],
    coordinates: (1.3521, 103.8198),
    time_zone: "Asia/Singapore",
};

/// The twelve networks of the test database and their places.
pub fn test_entries() -> Vec<(IpNet, &'static Place)> {
    const NETWORKS: [(&str, &Place); 12] = [
        ("127.1.0.0/16", &FRANKFURT),
        ("192.0.2.0/24", &FRANKFURT),
        ("2001:db8:1::/48", &FRANKFURT),
        ("127.0.10.0/24", &FRANKFURT),
        ("127.2.0.0/16", &ASHBURN),
        ("198.51.100.0/24", &ASHBURN),
        ("2001:db8:2::/48", &ASHBURN),
        ("127.0.20.0/24", &ASHBURN),
        ("127.3.0.0/16", &SINGAPORE),
        ("203.0.113.0/24", &SINGAPORE),
        ("2001:db8:3::/48", &SINGAPORE),
        ("127.0.30.0/24", &SINGAPORE),
    ];
    NETWORKS
        .iter()
        .map(|&(net, place)| (net.parse().expect("valid test network"), place))
        .collect()
}

/// The test database: [`build`] over [`test_entries`].
pub fn test_city_database() -> Vec<u8> {
    build(&test_entries())
}

/// An IPv6 GeoIP2-City-layout database (`database_type` `"GeoIP2-City"`, languages
/// `["en"]`, build epoch [`TEST_BUILD_EPOCH`]) holding `entries`. IPv4 networks are
/// stored in `::/96`, aliased from `::ffff:0:0/96` and `2002::/16`.
///
/// # Panics
///
/// On a network of prefix length 0, or more entries than 28-bit records can address.
pub fn build(entries: &[(IpNet, &Place)]) -> Vec<u8> {
    let networks: Vec<(u128, u8, Value)> = entries
        .iter()
        .map(|(net, place)| match net.trunc() {
            IpNet::V4(v4) => (
                u128::from(u32::from(v4.network())),
                96 + v4.prefix_len(),
                record(place),
            ),
            IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len(), record(place)),
        })
        .collect();
    let metadata = writer::Metadata {
        database_type: "GeoIP2-City",
        description: "Portico test database (GeoIP2-City layout)",
        languages: &["en"],
        build_epoch: TEST_BUILD_EPOCH,
    };
    writer::write(&networks, &metadata)
}

fn str(s: &str) -> Value {
    Value::Str(s.to_owned())
}

fn names(en: &str) -> Value {
    map([("en", str(en))])
}

/// A GeoIP2-City record for `place`.
fn record(place: &Place) -> Value {
    let [continent_id, country_id, subdivision_id, city_id] = place.geoname_ids;
    let country = map([
        ("geoname_id", Value::U32(country_id)),
        ("iso_code", str(place.country.0)),
        ("names", names(place.country.1)),
    ]);
    map([
        (
            "city",
            map([
                ("geoname_id", Value::U32(city_id)),
                ("names", names(place.city)),
            ]),
        ),
        (
            "continent",
            map([
                ("code", str(place.continent.0)),
                ("geoname_id", Value::U32(continent_id)),
                ("names", names(place.continent.1)),
            ]),
        ),
        ("country", country.clone()),
        (
            "location",
            map([
                ("accuracy_radius", Value::U16(20)),
                ("latitude", Value::Double(place.coordinates.0)),
                ("longitude", Value::Double(place.coordinates.1)),
                ("time_zone", str(place.time_zone)),
            ]),
        ),
        ("registered_country", country),
        (
            "subdivisions",
            Value::Array(vec![map([
                ("geoname_id", Value::U32(subdivision_id)),
                ("iso_code", str(place.subdivision.0)),
                ("names", names(place.subdivision.1)),
            ])]),
        ),
    ])
}
