//! How long building the client classes from a GeoIP database takes and what it costs in
//! memory: `cargo run --release -p gslb-dns --example geoip_classes -- DB.mmdb [CONFIG]`.
//! Prints the process's resident and peak memory after each step (Linux).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

fn status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn report(step: &str, started: Instant) {
    println!(
        "{step:<28} {:>7.0} ms  rss {:>4} MiB (anon {:>4}, file {:>4})  peak {:>4} MiB",
        started.elapsed().as_secs_f64() * 1000.0,
        status("VmRSS"),
        status("RssAnon"),
        status("RssFile"),
        status("VmHWM"),
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let db: PathBuf = args
        .next()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: geoip_classes DB.mmdb [CONFIG]"))?;
    let config = match args.next() {
        Some(path) => std::fs::read_to_string(path)?,
        None => topology::DEFAULT_CONFIG.to_owned(),
    };
    let deployment = topology::Config::from_toml(&config, 0)?.deployment;
    let started = Instant::now();
    // Samples the resident set while the classes are built: the peak of each kind.
    let peaks = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let sampler = peaks.clone();
    std::thread::spawn(move || {
        loop {
            let (anon, file) = (status("RssAnon"), status("RssFile"));
            if let Ok(mut p) = sampler.lock() {
                p.0 = p.0.max(anon);
                p.1 = p.1.max(file);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    report("start", started);
    let geo = geoip_data::GeoDb::open(&db)?;
    report("database opened", started);
    let base = gslb_dns::dns::snapshot::build_base_classes(&deployment, &geo)?;
    report("classes built", started);
    println!("{} blocks, {} octets", base.blocks(), base.size());
    if let Ok(p) = peaks.lock() {
        println!("sampled peaks: anon {} MiB, file {} MiB", p.0, p.1);
    }
    Ok(())
}
