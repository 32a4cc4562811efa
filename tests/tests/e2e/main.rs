//! End-to-end tests: the real `gslb-dns` binary against real DNS clients (`dig`, `kdig`,
//! `unbound`), plus repository checks. One test binary, as hickory-dns does it.

mod admin_api;
mod admin_security;
mod agent_reports;
mod cluster;
mod config_errors;
mod deployment;
mod discovery;
mod dns_protocol;
mod failover;
mod geoip_reload;
mod hostile;
mod latency_steering;
mod malformed;
mod operations;
mod passive_health;
mod pki;
mod probes;
mod proxy;
mod resolver;
mod site_lab;
mod steering;
mod tidy;
mod wire_versions;

/// A deployment exercising every protocol case: site networks, GeoIP, IPv6 members, TTL 0,
/// a large RRset for truncation, a short TCP idle timeout.
pub const CONFIG: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1", "ns2"]
soa = { rname = "hostmaster", serial = 7, minimum = 1 }
records = [
    "ns1 3600 IN A 127.0.0.1",
    "ns2 3600 IN A 127.0.0.1",
    "static 300 IN A 127.0.0.53",
    "www 300 IN CNAME s3",
    "mail 300 IN MX 10 mx.example.net.",
    "big 60 IN TXT \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
    "big 60 IN TXT \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"",
    "big 60 IN TXT \"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"",
    "big 60 IN TXT \"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"",
    "big 60 IN TXT \"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"",
]

[dns]
tcp_idle_timeout = "1s"
debug_queries = true

[[site]]
name = "fra"
location = { lat = 50.1109, lon = 8.6821 }
client_networks = ["127.1.0.0/16"]

[[site]]
name = "iad"
location = { lat = 39.0438, lon = -77.4874 }
client_networks = ["127.2.0.0/16"]

[[site]]
name = "sin"
location = { lat = 1.3521, lon = 103.8198 }
client_networks = ["127.3.0.0/16"]

[[service]]
name = "s3"
ttl = 1
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "fra", node = "fra-2", address = "127.0.10.2" },
    { site = "fra", node = "fra-v6", address = "2001:db8:10::1" },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
    { site = "iad", node = "iad-2", address = "127.0.20.2" },
    { site = "iad", node = "iad-v6", address = "2001:db8:20::1" },
    { site = "sin", node = "sin-1", address = "127.0.30.1" },
    { site = "sin", node = "sin-2", address = "127.0.30.2" },
]

[[service]]
name = "fast"
policy = "latency"
max_answers = 1
members = [
    { site = "fra", address = "127.0.10.31" },
    { site = "iad", address = "127.0.20.31" },
    { site = "sin", address = "127.0.30.31" },
]

[[service]]
name = "nfs"
ttl = 0
members = [
    { site = "fra", address = "127.0.10.11" },
    { site = "iad", address = "127.0.20.11" },
]
"#;
