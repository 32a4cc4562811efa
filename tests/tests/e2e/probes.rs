//! The site agent's probes against real servers started by the test: samba `smbd` for SMB
//! (NEGOTIATE up, stopped or hung -> down).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use site_agent::probe::{bounded, smb, tcp};
use tests::{TempDir, free_port};

/// One smbd instance on its own loopback address and port (BACKENDS.md).
struct Smbd {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Smbd {
    fn start(ip: &str) -> Smbd {
        let dir = TempDir::new("smbd");
        let port = free_port(ip);
        for sub in [
            "private", "state", "cache", "lock", "pid", "ncalrpc", "log", "share",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let d = dir.path().display();
        let config = format!(
            "[global]\n  server role = standalone server\n  interfaces = {ip}/8\n  bind interfaces only = yes\n  smb ports = {port}\n  disable netbios = yes\n  private dir = {d}/private\n  state directory = {d}/state\n  cache directory = {d}/cache\n  lock directory = {d}/lock\n  pid directory = {d}/pid\n  ncalrpc dir = {d}/ncalrpc\n  log file = {d}/log/log.%m\n  map to guest = Bad User\n  guest account = root\n  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n  server min protocol = SMB2_02\n  rpc start on demand helpers = no\n[share]\n  path = {d}/share\n  read only = no\n  guest ok = yes\n  guest only = yes\n  force user = root\n"
        );
        let path = dir.write("smb.conf", config);
        let child = Command::new("smbd")
            .args([
                "--foreground",
                "--no-process-group",
                "--debug-stdout",
                "-d1",
                "-s",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smbd (apt-get install samba)");
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let smbd = Smbd { child, addr, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return smbd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("smbd did not listen on {addr}");
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn smb_negotiate_up_hung_and_stopped() {
    let rt = runtime();
    let mut smbd = Smbd::start("127.0.5.1");
    let timeout = Duration::from_millis(400);
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert!(verdict.ok, "NEGOTIATE against smbd: {verdict:?}");
    assert!(rt.block_on(bounded(timeout, tcp::probe(smbd.addr))).ok);
    // Hung: TCP still accepts (the kernel does), NEGOTIATE never answers.
    smbd.signal("-STOP");
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert_eq!(verdict.reason, "timeout", "{verdict:?}");
    assert!(
        verdict.latency >= timeout && verdict.latency < timeout * 3,
        "one timeout: {verdict:?}"
    );
    smbd.signal("-CONT");
    assert!(
        rt.block_on(bounded(timeout, smb::probe(smbd.addr))).ok,
        "back after CONT"
    );
    // Stopped: refused.
    let _ = smbd.child.kill();
    let _ = smbd.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    let verdict = rt.block_on(bounded(timeout, smb::probe(smbd.addr)));
    assert!(!verdict.ok);
    assert_eq!(verdict.reason, "refused", "{verdict:?}");
}
