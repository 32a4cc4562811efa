//! Writes the test database of `geoip_data::generator` to a file.
//!
//! Usage: `cargo run -p geoip-data --bin make-test-mmdb [PATH]` from the workspace root;
//! `PATH` defaults to `geoip-data/test-data/test-city.mmdb`, the checked-in copy.
#![allow(clippy::print_stdout)] // a command-line program: stdout is its output

use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_PATH: &str = "geoip-data/test-data/test-city.mmdb";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from);
    if args.next().is_some() {
        eprintln!("usage: make-test-mmdb [PATH]   (default {DEFAULT_PATH})");
        return ExitCode::FAILURE;
    }
    let bytes = geoip_data::generator::test_city_database();
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
