//! Measures the CPU cost of `respond` alone (no sockets): `cargo run --release -p gslb-dns --example respond_cost`.
#![allow(clippy::print_stdout)]
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let config = topology::Config::default_config(1);
    let control = gslb_dns::Control::new(
        Arc::new(config.deployment),
        Arc::new(config.node.dns),
        Arc::new(geoip_data::GeoDb::test_database()),
        Default::default(),
        topology::Timestamp(1),
    )
    .unwrap();
    let published = control.published();
    let query: Vec<u8> = {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x02s3\x07storage\x07example\x00\x00\x01\x00\x01");
        q.extend_from_slice(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00");
        q
    };
    let peer: std::net::IpAddr = "127.1.0.5".parse().unwrap();
    let mut out = Vec::with_capacity(4096);
    let n = 5_000_000u32;
    let start = Instant::now();
    let mut total = 0usize;
    for i in 0..n {
        let snapshot = published.load();
        let outcome = gslb_dns::dns::respond(
            &snapshot,
            &query,
            peer,
            gslb_dns::dns::Transport::Udp,
            i,
            &mut out,
        );
        total += out.len() + outcome.rcode as usize;
    }
    let elapsed = start.elapsed();
    println!(
        "{:.0} ns per respond ({} bytes total)",
        elapsed.as_nanos() as f64 / n as f64,
        total
    );
}
