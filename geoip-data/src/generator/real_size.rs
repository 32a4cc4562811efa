//! Real-size test databases: millions of networks in the GeoIP2-City layout, laid out the
//! way registries allocate address space (runs of networks in one country, cities within
//! it, records shared by many networks), so a test or a benchmark meets what a GeoLite2 or
//! DB-IP City file holds without downloading one.
//!
//! Deterministic for a given `(networks, seed)`.

use super::writer::{self, Metadata, Value, map};

/// Build time written into the metadata (2025-01-01T00:00:00Z, as the test database's).
const BUILD_EPOCH: u64 = 1_735_689_600;

fn str(s: &str) -> Value {
    Value::Str(s.to_owned())
}

fn names(en: &str) -> Value {
    map([("en", str(en))])
}

/// Countries the generator places networks in: ISO code, name, continent code, continent
/// name, and a point inside the country (degrees).
const COUNTRIES: [(&str, &str, &str, &str, f64, f64); 24] = [
    ("US", "United States", "NA", "North America", 39.8, -98.6),
    ("CA", "Canada", "NA", "North America", 56.1, -106.3),
    ("MX", "Mexico", "NA", "North America", 23.6, -102.6),
    ("BR", "Brazil", "SA", "South America", -14.2, -51.9),
    ("AR", "Argentina", "SA", "South America", -38.4, -63.6),
    ("DE", "Germany", "EU", "Europe", 51.2, 10.5),
    ("FR", "France", "EU", "Europe", 46.2, 2.2),
    ("GB", "United Kingdom", "EU", "Europe", 55.4, -3.4),
    ("NL", "Netherlands", "EU", "Europe", 52.1, 5.3),
    ("IT", "Italy", "EU", "Europe", 41.9, 12.6),
    ("ES", "Spain", "EU", "Europe", 40.5, -3.7),
    ("PL", "Poland", "EU", "Europe", 51.9, 19.1),
    ("SE", "Sweden", "EU", "Europe", 60.1, 18.6),
    ("RU", "Russia", "EU", "Europe", 55.8, 37.6),
    ("CN", "China", "AS", "Asia", 35.9, 104.2),
    ("JP", "Japan", "AS", "Asia", 36.2, 138.3),
    ("KR", "South Korea", "AS", "Asia", 35.9, 127.8),
    ("IN", "India", "AS", "Asia", 20.6, 79.0),
    ("SG", "Singapore", "AS", "Asia", 1.35, 103.8),
    ("ID", "Indonesia", "AS", "Asia", -0.8, 113.9),
    ("AU", "Australia", "OC", "Oceania", -25.3, 133.8),
    ("ZA", "South Africa", "AF", "Africa", -30.6, 22.9),
    ("NG", "Nigeria", "AF", "Africa", 9.1, 8.7),
    ("EG", "Egypt", "AF", "Africa", 26.8, 30.8),
];

/// A small deterministic generator (SplitMix64); test data needs no better.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `-spread..spread`.
    fn jitter(&mut self, spread: f64) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 * spread - spread
    }
}

/// One city record of the GeoIP2-City layout.
fn city_record(country: usize, city: u32, rng: &mut SplitMix) -> Value {
    let (iso, name, continent, continent_name, lat, lon) = COUNTRIES[country];
    let country_value = map([
        ("geoname_id", Value::U32(1_000_000 + country as u32)),
        ("iso_code", str(iso)),
        ("names", names(name)),
    ]);
    let city_name = format!("{name} city {city}");
    map([
        (
            "city",
            map([
                ("geoname_id", Value::U32(2_000_000 + city)),
                ("names", names(&city_name)),
            ]),
        ),
        (
            "continent",
            map([
                ("code", str(continent)),
                ("geoname_id", Value::U32(6_255_000 + country as u32)),
                ("names", names(continent_name)),
            ]),
        ),
        ("country", country_value.clone()),
        (
            "location",
            map([
                ("accuracy_radius", Value::U16(50)),
                (
                    "latitude",
                    Value::Double((lat + rng.jitter(4.0)).clamp(-89.0, 89.0)),
                ),
                (
                    "longitude",
                    Value::Double((lon + rng.jitter(6.0)).clamp(-179.0, 179.0)),
                ),
                ("time_zone", str("Etc/UTC")),
            ]),
        ),
        ("registered_country", country_value),
        (
            "subdivisions",
            Value::Array(vec![map([
                ("geoname_id", Value::U32(3_000_000 + city % 50)),
                ("iso_code", Value::Str(format!("{}", city % 50))),
                ("names", names(&format!("{name} region {}", city % 50))),
            ])]),
        ),
    ])
}

/// An IPv6 GeoIP2-City-layout database with `networks` networks (about 70% IPv4, 30%
/// IPv6) sharing `networks / 25` city records (at least one per country), as
/// [`super::build`] writes them. Runs of 8 to 263 networks belong to one country; networks
/// are IPv4 /20 to /28 (mostly /24) and IPv6 /32 to /48, contiguous within a run, with gaps
/// of no data between some runs. The test networks of [`super::test_entries`] are not included.
///
/// # Panics
///
/// When `networks` is 0 or too many for 28-bit records (beyond about 20 million).
pub fn city_database_of_size(networks: usize, seed: u64) -> Vec<u8> {
    assert!(networks > 0, "a database of no networks");
    let mut rng = SplitMix(seed);
    let cities_per_country = (networks / 25 / COUNTRIES.len()).max(1) as u32;
    let mut records = Vec::new();
    for country in 0..COUNTRIES.len() {
        for city in 0..cities_per_country {
            records.push(city_record(country, city, &mut rng));
        }
    }
    let v4_count = networks * 7 / 10;
    let mut leaves: Vec<(u128, u8, u32)> = Vec::with_capacity(networks);
    // IPv4 from 1.0.0.0 (inside `::/96`), skipping 127.0.0.0/8; IPv6 from 2400:: (well
    // clear of the 6to4 alias 2002::/16).
    let mut next: u128 = 1 << 24;
    let mut v6_next: u128 = 0x2400_u128 << 112;
    while leaves.len() < networks {
        let v4 = leaves.len() < v4_count;
        let country = rng.below(COUNTRIES.len() as u64) as u32;
        let run = 8 + rng.below(256);
        if rng.below(4) == 0 {
            // A gap of unallocated space before this run.
            if v4 {
                next += 1 << (8 + rng.below(8));
            } else {
                v6_next += 1 << (80 + rng.below(16));
            }
        }
        for _ in 0..run {
            if leaves.len() >= networks || (v4 && leaves.len() >= v4_count) {
                break;
            }
            let city = rng.below(u64::from(cities_per_country)) as u32;
            let record = country * cities_per_country + city;
            // A network never starts off its own alignment: where the address in hand is
            // aligned for less, the network is made smaller, so a run has no holes (a
            // registry's allocations are contiguous).
            if v4 {
                let wanted = match rng.below(10) {
                    0 => 20 + rng.below(4) as u32,
                    1..=6 => 24,
                    _ => 25 + rng.below(4) as u32,
                };
                if next >> 24 == 127 {
                    next = 128 << 24;
                }
                let prefix = wanted.max(32 - (next.trailing_zeros().min(32)));
                let size = 1u128 << (32 - prefix);
                assert!(next + size <= 1 << 32, "IPv4 space exhausted");
                leaves.push((next, 96 + prefix as u8, record));
                next += size;
            } else {
                let wanted = 32 + rng.below(17) as u32;
                let prefix = wanted.max(128 - v6_next.trailing_zeros().min(128));
                let size = 1u128 << (128 - prefix);
                leaves.push((v6_next, prefix as u8, record));
                v6_next += size;
            }
        }
    }
    let metadata = Metadata {
        database_type: "GeoIP2-City",
        description: "Portico real-size test database (GeoIP2-City layout)",
        languages: &["en"],
        build_epoch: BUILD_EPOCH,
    };
    let refs: Vec<&Value> = records.iter().collect();
    writer::write_indexed(leaves, &refs, &metadata)
}
