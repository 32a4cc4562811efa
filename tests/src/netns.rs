//! Network namespaces for lab tests: one per site and per client, joined by veth pairs to
//! a router namespace, so a whole site can lose its link or be partitioned from the others
//! for real (the kernel drops the packets; nothing in Portico is told).
//!
//! Programs run in a namespace when they are started from a thread that joined it
//! ([`Lab::within`]): a child process inherits its parent thread's namespaces, and sockets a
//! thread opens live in that thread's namespace. Names are prefixed with the test process's
//! id, so runs cannot collide, and every namespace is deleted on drop.
//!
//! Before any address is given out, the lab's subnets get an `unreachable` route in the root
//! namespace: a packet for a lab address sent from the root namespace (or after a link goes
//! down) fails at once instead of leaving by the default route.

use std::process::Command;
use std::sync::Mutex;

/// A set of network namespaces, deleted on drop.
pub struct Lab {
    prefix: String,
    made: Mutex<Vec<String>>,
}

/// Runs `ip` with `args`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (Debian's iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    /// A new lab whose addresses come from `subnets` (each given an `unreachable` route in
    /// the root namespace first).
    pub fn new(tag: &str, subnets: &[&str]) -> Lab {
        for subnet in subnets {
            let family = if subnet.contains(':') { "-6" } else { "-4" };
            ip(&[family, "route", "replace", "unreachable", subnet]);
        }
        Lab {
            prefix: format!("{tag}{}-", std::process::id()),
            made: Mutex::new(Vec::new()),
        }
    }

    /// The kernel's name of the lab's namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates namespace `name` with its loopback up.
    pub fn add(&self, name: &str) {
        let full = self.name(name);
        let _ = Command::new("ip").args(["netns", "del", &full]).output();
        ip(&["netns", "add", &full]);
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(full.clone());
        ip(&["-n", &full, "link", "set", "lo", "up"]);
        // No duplicate address detection on the lab's links: their link-local addresses
        // would otherwise stay tentative for a second or two, and neighbour discovery with
        // them. And IPv6 addresses kept when a link is set down, as IPv4 ones are: the
        // kernel otherwise drops them, and a link set up again would come back without
        // its IPv6 addresses (a router's gateway address, say).
        for scope in ["all", "default"] {
            self.sysctl(name, &format!("net.ipv6.conf.{scope}.accept_dad=0"));
            self.sysctl(name, &format!("net.ipv6.conf.{scope}.keep_addr_on_down=1"));
        }
    }

    /// Runs `ip -n <namespace> args`.
    pub fn ip(&self, name: &str, args: &[&str]) {
        let full = self.name(name);
        let mut all = vec!["-n", full.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Sets a sysctl inside namespace `name` (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, name: &str, setting: &str) {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name(name), "sysctl", "-qw", setting])
            .output()
            .expect("run sysctl in a namespace");
        assert!(
            output.status.success(),
            "sysctl {setting} in {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A veth pair between two namespaces (`a_if` in `a`, `b_if` in `b`), both ends up.
    pub fn link(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        let (full_a, full_b) = (self.name(a), self.name(b));
        ip(&[
            "link", "add", a_if, "netns", &full_a, "type", "veth", "peer", "name", b_if, "netns",
            &full_b,
        ]);
        self.ip(a, &["link", "set", a_if, "up"]);
        self.ip(b, &["link", "set", b_if, "up"]);
    }

    /// Gives `interface` in namespace `name` an address (`10.99.1.2/24`, `fd00::2/64`; IPv6
    /// without duplicate address detection, so it is usable at once).
    pub fn address(&self, name: &str, interface: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(
                name,
                &["-6", "addr", "add", cidr, "dev", interface, "nodad"],
            );
        } else {
            self.ip(name, &["addr", "add", cidr, "dev", interface]);
        }
    }

    /// Runs `f` on a thread that joined namespace `name`: the processes it starts and the
    /// sockets it opens are in that namespace.
    pub fn within<R: Send>(&self, name: &str, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name(name));
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("join {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}
