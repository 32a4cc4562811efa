//! Latency steering end to end: real client connections through two sites' real L4
//! proxies, over a link that delays packets in user space (so the kernel's own RTT of each
//! connection, which the proxies read, grows with the delay). The proxies post what they
//! measure, the store replicates it and the `latency` policy's answer for the clients'
//! prefix follows: the nearer site by measurement beats the client's own site by topology;
//! when that site is made slow the other wins; when the delay goes away it wins back; when
//! the clients stop, the samples expire by age and the answer returns to the topology order.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tests::delay_link::DelayLink;
use tests::netns::Lab;
use tests::{DnsNode, ProxyNode, Running, answers_for};

use crate::proxy::IdentityServer;

const CLIENT: &str = "10.98.200.2";
const CLIENT_PREFIX: &str = "10.98.200.0/24";
/// (site, its storage node, the node's loopback address in the sites namespace, its
/// proxy's address)
const SITES: [(&str, &str, &str, &str); 2] = [
    ("fra", "fra-1", "127.0.61.1", "10.98.1.100"),
    ("iad", "iad-1", "127.0.62.1", "10.98.2.100"),
];
const RTT_MAX_AGE: Duration = Duration::from_secs(4);

/// What runs in the sites namespace, stopped on drop.
struct Sites {
    node: DnsNode,
    _agents: Vec<Running>,
    _proxies: Vec<ProxyNode>,
    _servers: Vec<IdentityServer>,
    proxies: Vec<SocketAddr>,
}

fn start_sites() -> Sites {
    let servers: Vec<IdentityServer> = SITES
        .iter()
        .map(|(_, node, ip, _)| IdentityServer::start(node, ip))
        .collect();
    // The clients' prefix is iad's client network: by topology they belong to iad.
    let base = format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]

[dns]
rtt_max_age = "{}s"

[[site]]
name = "fra"
location = {{ lat = 50.1109, lon = 8.6821 }}
[[site]]
name = "iad"
location = {{ lat = 39.0438, lon = -77.4874 }}
client_networks = ["{CLIENT_PREFIX}"]

[[service]]
name = "files"
ttl = 0
policy = "latency"
check = {{ kind = "tcp" }}
members = [
    {{ site = "fra", node = "fra-1", address = "{}", port = {} }},
    {{ site = "iad", node = "iad-1", address = "{}", port = {} }},
]
"#,
        RTT_MAX_AGE.as_secs(),
        servers[0].addr.ip(),
        servers[0].addr.port(),
        servers[1].addr.ip(),
        servers[1].addr.port(),
    );
    let node = DnsNode::start(&base, false);
    let admin = node.admin.expect("the admin API");
    let config = node.dir.write("agents.toml", &base);
    let agents = SITES
        .iter()
        .map(|(site, _, _, _)| tests::site_agent(&config, site, &[admin], &[]))
        .collect();
    let proxies: Vec<SocketAddr> = SITES
        .iter()
        .map(|(_, _, _, ip)| format!("{ip}:9000").parse().unwrap())
        .collect();
    let proxy_nodes = SITES
        .iter()
        .zip(&proxies)
        .map(|((site, _, _, _), listen)| {
            ProxyNode::start(
                &format!(
                    "{base}\n[proxy]\nsite = \"{site}\"\nstate_from = [\"{admin}\"]\nrtt_report_interval = \"500ms\"\n\n\
                     [[proxy.listener]]\nname = \"tcp\"\nprotocol = \"tcp\"\nlisten = \"{listen}\"\nservice = \"files\"\n"
                ),
                1,
                &[],
            )
        })
        .collect();
    Sites {
        node,
        _agents: agents,
        _proxies: proxy_nodes,
        _servers: servers,
        proxies,
    }
}

/// Clients of the prefix using one site's proxy, one connection after another: each reads
/// the storage node's greeting, exchanges a line and closes (the proxy samples the
/// connection's RTT as it ends). Counts good connections and failures until `stop`.
fn clients(
    proxy: SocketAddr,
    expect: &'static str,
    stop: Arc<AtomicBool>,
    good: Arc<AtomicU32>,
    failed: Arc<AtomicU32>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let exchange = || -> std::io::Result<String> {
                let stream = TcpStream::connect_timeout(&proxy, Duration::from_secs(3))?;
                stream.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut greeting = String::new();
                reader.read_line(&mut greeting)?;
                (&stream).write_all(b"ping\n")?;
                let mut echo = String::new();
                reader.read_line(&mut echo)?;
                Ok(format!("{}/{}", greeting.trim(), echo.trim()))
            };
            match exchange() {
                Ok(seen) if seen == format!("{expect}/ping") => {
                    good.fetch_add(1, Ordering::Relaxed)
                }
                Ok(_) | Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn measured_client_rtt_through_the_proxies_steers_the_latency_answer() {
    let lab = Lab::new("lat", &["10.98.0.0/16"]);
    lab.add("sites");
    lab.add("client");
    let link = DelayLink::new(&lab, "client", "wan0", "sites", "wan0");
    for name in ["sites", "client"] {
        for scope in ["all", "default", "wan0"] {
            lab.sysctl(name, &format!("net.ipv4.conf.{scope}.rp_filter=0"));
        }
    }
    lab.address("client", "wan0", &format!("{CLIENT}/32"));
    lab.ip("client", &["route", "add", "10.98.0.0/16", "dev", "wan0"]);
    for (_, _, _, proxy) in SITES {
        lab.address("sites", "wan0", &format!("{proxy}/32"));
    }
    lab.ip("sites", &["route", "add", CLIENT_PREFIX, "dev", "wan0"]);
    let fra_proxy: IpAddr = SITES[0].3.parse().unwrap();
    let iad_proxy: IpAddr = SITES[1].3.parse().unwrap();
    // iad is 25 ms away from these clients each way (50 ms RTT), fra next door.
    link.set_delay(iad_proxy, Duration::from_millis(25));

    let sites = lab.within("sites", start_sites);
    let dns = sites.node.dns;
    let admin = sites.node.admin.expect("the admin API");
    let answer = || {
        lab.within("sites", || {
            answers_for(dns, "files.storage.example", CLIENT_PREFIX)
        })
    };
    let measured = || {
        let (_, body) = lab.within("sites", || tests::http(admin, "GET", "/api/v1/rtt", None));
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
    };
    let (fra, iad) = (vec![SITES[0].2.to_owned()], vec![SITES[1].2.to_owned()]);
    // Until a member is up and every node knows it, answers are empty or partial.
    let settled = Instant::now();
    while answer() != iad {
        assert!(
            settled.elapsed() < Duration::from_secs(20),
            "no measurements yet: the clients' own site iad should answer, not {:?}",
            answer()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let good = Arc::new(AtomicU32::new(0));
    let failed = Arc::new(AtomicU32::new(0));
    let traffic: Vec<_> = lab.within("client", || {
        [
            (SITES[0].1, sites.proxies[0]),
            (SITES[1].1, sites.proxies[1]),
        ]
        .into_iter()
        .map(|(expect, proxy)| clients(proxy, expect, stop.clone(), good.clone(), failed.clone()))
        .collect()
    });
    // Waits until the answer for the prefix is `want`; returns how long it took.
    let until = |want: &Vec<String>, what: &str| {
        let start = Instant::now();
        loop {
            let now = answer();
            if &now == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: the answer stayed {now:?}; RTTs in the store: {}",
                measured()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let nearer = until(&fra, "fra measured nearer than the clients' own site");
    let rtts = measured();
    let rtt_us = |site: &str| rtts["rtt"][site][CLIENT_PREFIX]["rtt_us"].as_u64();
    assert!(
        matches!((rtt_us("fra"), rtt_us("iad")), (Some(f), Some(i)) if f < 20_000 && i >= 45_000),
        "the proxies measured the link's delays (fra ~0, iad ~50 ms): {rtts}"
    );

    link.set_delay(fra_proxy, Duration::from_millis(100));
    let slowed = until(&iad, "fra made 200 ms away");
    link.set_delay(fra_proxy, Duration::ZERO);
    let back = until(&fra, "fra's delay gone");

    stop.store(true, Ordering::Relaxed);
    for thread in traffic {
        thread.join().unwrap();
    }
    let stopped = Instant::now();
    let expired = until(&iad, "the clients gone, their samples past rtt_max_age");
    assert!(
        stopped.elapsed() >= RTT_MAX_AGE - Duration::from_millis(600),
        "the samples left before rtt_max_age ({:?})",
        stopped.elapsed()
    );
    eprintln!(
        "latency steering: fra (measured {:?} µs, iad {:?} µs) won {nearer:?} after the clients \
         started, iad {slowed:?} after fra was slowed, fra {back:?} after the delay went, iad \
         {expired:?} after the clients stopped; {} connections, {} packets",
        rtt_us("fra"),
        rtt_us("iad"),
        good.load(Ordering::Relaxed),
        link.forwarded()
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "client connections through the proxies failed"
    );
    assert!(good.load(Ordering::Relaxed) > 50);
}
