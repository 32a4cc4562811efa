//! Store benchmark: three real gslb-dns processes on 127.0.N.1 form the raft store; agent
//! reports are posted through Portico's API client (as the agent posts them, on kept-alive
//! connections) and their arrival watched on every node's watch stream.
//!
//! 1. Report-to-applied latency: one report at a time, to the nodes in turn; each node's
//!    watch stream (`/api/v1/watch`) tells when it applied the report's index.
//! 2. Sustained reports per second: `CLIENTS` concurrent agents post for `DURATION` seconds; the
//!    store batches whatever is queued into one raft entry batch and one flush.
//!
//! Run with `bench/store/run.sh` (release build). Knobs: REPORTS (default 300), CLIENTS
//! (32), DURATION (5 seconds).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portico_client::watch::WatchEvent;
use tests::{DnsNode, api_client, runtime, try_http};
use topology::wire::AgentReport;

const CONFIG: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[admin]
listen = "127.0.0.1:0"

[[site]]
name = "fra"
[[site]]
name = "iad"
[[site]]
name = "sin"

[[service]]
name = "s3"
check = { kind = "s3", interval = "500ms" }
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
    { site = "sin", node = "sin-1", address = "127.0.30.1" },
]
"#;

fn report(site: &str, agent: &str, sequence: u64) -> AgentReport {
    let json = tests::agent_report(
        site,
        agent,
        sequence,
        &[("s3", &format!("{site}-1"), "up", "ok")],
    );
    serde_json::from_str(&json).expect("a report")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Follows a node's watch stream, recording when each applied index is first seen.
async fn watch(admin: SocketAddr, seen: Arc<Mutex<BTreeMap<u64, Instant>>>, stop: Arc<AtomicBool>) {
    let client = api_client(admin);
    let mut stream = client.watch(None).await.expect("the watch stream");
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Ok(Ok(Some(WatchEvent::Line(line)))) => {
                seen.lock()
                    .unwrap()
                    .entry(line.index)
                    .or_insert_with(Instant::now);
            }
            Ok(Ok(Some(WatchEvent::Undecodable(e)))) => panic!("unreadable watch line: {e}"),
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
}

fn main() {
    let reports = tests::env_number("REPORTS", 300);
    let clients = tests::env_number("CLIENTS", 32);
    let seconds = tests::env_number("DURATION", 5);
    let nodes = tests::three_node_store(CONFIG);
    let admins: Vec<SocketAddr> = nodes.iter().map(|n| n.admin.expect("admin")).collect();
    // Wait for a leader and the seeded deployment on every node.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !admins.iter().all(|a| {
        try_http(*a, "GET", "/api/v1/store", None).is_ok_and(|(_, b)| !b.contains("\"leader\":0"))
            && try_http(*a, "GET", "/api/v1/config", None)
                .is_ok_and(|(_, b)| b.contains("\"version\":1"))
    }) {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. Latency.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Arc<Mutex<BTreeMap<u64, Instant>>>> = (0..3)
        .map(|_| Arc::new(Mutex::new(BTreeMap::new())))
        .collect();
    let watchers: Vec<_> = admins
        .iter()
        .zip(&seen)
        .map(|(admin, seen)| {
            let (admin, seen, stop) = (*admin, seen.clone(), stop.clone());
            runtime().spawn(watch(admin, seen, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let clients_per_node: Vec<_> = admins.iter().map(|a| api_client(*a)).collect();
    let mut posted = Vec::new();
    for i in 0..reports {
        let client = &clients_per_node[(i % 3) as usize];
        let site = ["fra", "iad", "sin"][(i % 3) as usize];
        let report = report(site, &format!("lat-{site}"), i + 1);
        let start = Instant::now();
        let written = runtime()
            .block_on(client.report(&report))
            .expect("the report is taken");
        posted.push((written.index, start));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut per_node: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut all_nodes = Vec::new();
    for (index, start) in &posted {
        let mut slowest = Duration::ZERO;
        for (node, seen) in seen.iter().enumerate() {
            let seen = seen.lock().unwrap();
            let at = seen.range(index..).next().map(|(_, at)| *at);
            let latency = at.map_or(Duration::from_secs(9), |at| {
                at.saturating_duration_since(*start)
            });
            per_node[node].push(latency);
            slowest = slowest.max(latency);
        }
        all_nodes.push(slowest);
    }
    for w in watchers {
        let _ = runtime().block_on(w);
    }
    println!(
        "## Store: report-to-applied latency ({reports} reports, one at a time, posted to the nodes in turn)\n"
    );
    println!("| node | p50 | p99 | max |\n|---|---:|---:|---:|");
    for (i, latencies) in per_node.iter_mut().enumerate() {
        latencies.sort();
        println!(
            "| node {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            i + 1,
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.99)),
            ms(*latencies.last().unwrap())
        );
    }
    all_nodes.sort();
    println!(
        "| all three (slowest node per report) | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        ms(percentile(&all_nodes, 0.5)),
        ms(percentile(&all_nodes, 0.99)),
        ms(*all_nodes.last().unwrap())
    );

    // 2. Throughput.
    let pids: Vec<u32> = nodes.iter().map(DnsNode::pid).collect();
    let cpu_before: u64 = pids.iter().map(|p| tests::process_usage(*p).0).sum();
    let committed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (committed, failed) = (committed.clone(), failed.clone());
            let client = api_client(admins[(c % 3) as usize]);
            runtime().spawn(async move {
                let site = ["fra", "iad", "sin"][(c % 3) as usize];
                let agent = format!("load-{c}");
                let mut sequence = 0;
                while Instant::now() < end {
                    sequence += 1;
                    match client.report(&report(site, &agent, sequence)).await {
                        Ok(_) => committed.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = runtime().block_on(t);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after: u64 = pids.iter().map(|p| tests::process_usage(*p).0).sum();
    let cpu_seconds = (cpu_after - cpu_before) as f64 / 100.0;
    let done = committed.load(Ordering::Relaxed);
    println!(
        "## Store: sustained agent reports ({clients} concurrent agents through the API client, {seconds} s, posted to all three nodes)\n"
    );
    println!(
        "| committed reports/s | failed | CPU of the 3 nodes (cores) | CPU per report |\n|---:|---:|---:|---:|"
    );
    println!(
        "| {:.0} | {} | {:.2} | {:.0} µs |",
        done as f64 / elapsed,
        failed.load(Ordering::Relaxed),
        cpu_seconds / elapsed,
        cpu_seconds * 1e6 / done.max(1) as f64
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
