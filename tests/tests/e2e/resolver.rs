//! A real recursive resolver in front: unbound with a stub zone to gslb-dns and
//! `send-client-subnet`, queried from clients in two sites' networks.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tests::{DnsNode, TempDir, assert_eventually, dig_at, free_port};

use crate::CONFIG;

struct Unbound {
    child: Child,
    _dir: TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_unbound(port: u16, upstream: std::net::SocketAddr) -> Unbound {
    let dir = TempDir::new("unbound");
    // A fake root on an unused loopback address: unbound never reaches past this machine.
    dir.write(
        "root.hints",
        ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.254\n",
    );
    let config = format!(
        r#"server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    root-hints: "{dir}/root.hints"
    module-config: "subnetcache iterator"
    send-client-subnet: 127.0.0.1
    max-client-subnet-ipv4: 24
    qname-minimisation: no
    local-zone: "storage.example." transparent
stub-zone:
    name: "storage.example."
    stub-addr: 127.0.0.1@{upstream_port}
"#,
        dir = dir.path().display(),
        upstream_port = upstream.port(),
    );
    let path = dir.write("unbound.conf", config);
    let check = Command::new("unbound-checkconf")
        .arg(&path)
        .output()
        .expect("unbound-checkconf (apt-get install unbound)");
    assert!(
        check.status.success(),
        "unbound.conf: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start unbound");
    Unbound { child, _dir: dir }
}

#[test]
fn clients_behind_unbound_get_their_own_site() {
    let node = DnsNode::start(CONFIG, false);
    let port = free_port("127.0.0.1");
    let _unbound = start_unbound(port, node.dns);
    let resolver: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ask = |source: &str| {
        let mut lines: Vec<String> = dig_at(
            resolver,
            &["+short", "-b", source, "s3.storage.example", "A"],
        )
        .lines()
        .map(str::to_owned)
        .collect();
        lines.sort();
        lines
    };
    assert_eventually!(
        Duration::from_secs(10),
        ask("127.1.0.77") == ["127.0.10.1", "127.0.10.2"],
        "unbound did not come up or answered wrong for a fra client: {:?}",
        ask("127.1.0.77")
    );
    assert_eq!(
        ask("127.2.0.77"),
        ["127.0.20.1", "127.0.20.2"],
        "an iad client behind the same resolver"
    );
    assert_eq!(
        ask("127.3.5.77"),
        ["127.0.30.1", "127.0.30.2"],
        "a sin client"
    );
    assert_eq!(
        ask("127.1.9.1"),
        ["127.0.10.1", "127.0.10.2"],
        "fra again, from unbound's subnet cache or not"
    );
}
