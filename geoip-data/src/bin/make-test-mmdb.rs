//! Writes a generated test database to a file.
//!
//! Usage, from the workspace root:
//!
//! * `cargo run -p geoip-data --bin make-test-mmdb [PATH]`: the twelve-network test
//!   database of `geoip_data::generator`; `PATH` defaults to
//!   `geoip-data/test-data/test-city.mmdb`, the checked-in copy.
//! * `cargo run --release -p geoip-data --bin make-test-mmdb -- --networks N [--seed S] PATH`:
//!   a real-size GeoIP2-City-layout database of `N` networks
//!   (`geoip_data::generator::real_size`), e.g. `--networks 3500000` for the size of a
//!   GeoLite2-City file.
#![allow(clippy::print_stdout)] // a command-line program: stdout is its output

use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_PATH: &str = "geoip-data/test-data/test-city.mmdb";
const USAGE: &str = "usage: make-test-mmdb [PATH]   (default {DEFAULT_PATH})\n       make-test-mmdb --networks N [--seed S] PATH";

fn main() -> ExitCode {
    let mut networks: Option<usize> = None;
    let mut seed = 1u64;
    let mut path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let number = |value: Option<String>| value.and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--networks" => match number(args.next()) {
                Some(n) if n > 0 => networks = Some(n as usize),
                _ => return usage("--networks takes a positive count"),
            },
            "--seed" => match number(args.next()) {
                Some(s) => seed = s,
                None => return usage("--seed takes a number"),
            },
            _ if path.is_none() && !arg.starts_with("--") => path = Some(PathBuf::from(arg)),
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let (bytes, path) = match networks {
        None => (
            geoip_data::generator::test_city_database(),
            path.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
        ),
        Some(n) => match path {
            Some(path) => (
                geoip_data::generator::real_size::city_database_of_size(n, seed),
                path,
            ),
            None => return usage("--networks needs a PATH"),
        },
    };
    match std::fs::write(&path, &bytes) {
        Ok(()) => {
            eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cannot write {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "make-test-mmdb: {problem}\n{}",
        USAGE.replace("{DEFAULT_PATH}", DEFAULT_PATH)
    );
    ExitCode::from(2)
}
