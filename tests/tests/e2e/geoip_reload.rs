//! A configured GeoIP database file is reloaded when it changes; a broken file keeps the
//! old database in service.

use std::time::Duration;

use geoip_data::generator::{self, SINGAPORE};
use tests::{DnsNode, TempDir, assert_eventually};

use crate::CONFIG;

fn replace(dir: &TempDir, bytes: &[u8]) {
    let staged = dir.write("geo.mmdb.new", bytes);
    std::fs::rename(staged, dir.path().join("geo.mmdb")).expect("atomic replace");
}

#[test]
fn database_changes_move_answers_and_broken_files_do_not() {
    let data = TempDir::new("geoip");
    replace(&data, &generator::test_city_database());
    let config = format!(
        "{CONFIG}\n[geoip]\ndatabase = \"{}\"\nreload_interval = \"100ms\"\n",
        data.path().join("geo.mmdb").display()
    );
    let node = DnsNode::start(&config, false);
    let ask = || node.short(&["s3.storage.example", "+subnet=198.51.100.0/24"]);
    assert_eq!(
        ask(),
        ["127.0.20.1", "127.0.20.2"],
        "Ashburn per the test database"
    );

    // The same network now placed in Singapore.
    let moved = generator::build(&[("198.51.100.0/24".parse().unwrap(), &SINGAPORE)]);
    replace(&data, &moved);
    assert_eventually!(
        Duration::from_secs(5),
        ask() == ["127.0.30.1", "127.0.30.2"],
        "answers did not follow the new database"
    );

    // A corrupt file: the node keeps the last good database and counts the error.
    replace(&data, b"this is not a MaxMind database");
    assert_eventually!(
        Duration::from_secs(5),
        {
            let (_, metrics) = node.http("GET", "/metrics", None);
            metrics
                .lines()
                .any(|l| l.starts_with("portico_geoip_reload_errors_total ") && !l.ends_with(" 0"))
        },
        "reload error not counted"
    );
    assert_eq!(
        ask(),
        ["127.0.30.1", "127.0.30.2"],
        "last good database still in use"
    );
}
