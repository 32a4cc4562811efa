//! Site-agent benchmark: one agent probing MEMBERS members (default 200) with SigV4-signed
//! S3 checks every 500 ms, against real s3-node processes (s3s-fs), reporting to a gslb-dns
//! node. Prints the agent's CPU, CPU per probe and memory over DURATION seconds (default 20).
//!
//! Run with `bench/agent/run.sh` (release build).
#![allow(clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{ACCESS_KEY, DnsNode, S3Node, SECRET_KEY, binary};

fn main() {
    let members = tests::env_number("MEMBERS", 200);
    let seconds = tests::env_number("DURATION", 20);
    let servers: Vec<S3Node> = (1..=4)
        .map(|i| S3Node::start(&format!("127.0.50.{i}")))
        .collect();
    let list: Vec<String> = (0..members)
        .map(|m| {
            let server = &servers[(m % 4) as usize];
            format!(
                "{{ site = \"fra\", node = \"n{m}\", address = \"{}\", port = {} }}",
                server.addr.ip(),
                server.addr.port()
            )
        })
        .collect();
    let config = format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[[site]]
name = "fra"

[[service]]
name = "s3"
check = {{ kind = "s3", interval = "500ms", timeout = "400ms", bucket = "bucket" }}
members = [{}]
"#,
        list.join(", ")
    );
    let node = DnsNode::start_with(
        Some(&config),
        &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
    );
    let config_path = node.dir.write("agent.toml", &config);
    let mut agent = Command::new(binary("site-agent"))
        .arg("--config")
        .arg(&config_path)
        .args([
            "--site",
            "fra",
            "--report-to",
            &node.admin.unwrap().to_string(),
        ])
        .env("PORTICO_S3_ACCESS_KEY", ACCESS_KEY)
        .env("PORTICO_S3_SECRET_KEY", SECRET_KEY)
        .env("PORTICO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start site-agent");
    // Let every member come up, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let up = node.get_json("/api/v1/state")["services"][0]["members"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["health"] == "up").count())
        .unwrap_or(0);
    let (before, _) = tests::process_usage(agent.id());
    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        peak_rss = peak_rss.max(tests::process_usage(agent.id()).1);
    }
    let (after, rss) = tests::process_usage(agent.id());
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (after - before) as f64 / 100.0;
    let probes = members as f64 * elapsed / 0.5;
    println!(
        "## Site agent: {members} members, S3 checks (SigV4 HEAD bucket) every 500 ms, {seconds} s\n"
    );
    println!(
        "| members up | probes/s | agent CPU (cores) | CPU per probe | RSS end | RSS peak |\n|---:|---:|---:|---:|---:|---:|"
    );
    println!(
        "| {up}/{members} | {:.0} | {:.3} | {:.0} µs | {:.1} MiB | {:.1} MiB |",
        probes / elapsed,
        cpu / elapsed,
        cpu * 1e6 / probes,
        rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
