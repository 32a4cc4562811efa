//! A fault-injecting TCP relay (the kernel here has no netem): forwards connections from its
//! own loopback port to a target until it is blocked, then cuts every connection and
//! refuses new ones until unblocked. Put one on each directed link between two nodes to
//! partition them.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A relay to one target.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and forwards to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (blocked.clone(), stop.clone());
        std::thread::spawn(move || accept_loop(listener, target, b, s));
        Relay {
            addr,
            blocked,
            stop,
        }
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if blocked.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_millis(500))
                else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                for (from, to) in [(&client, &upstream), (&upstream, &client)] {
                    let (from, to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    let (b, s) = (blocked.clone(), stop.clone());
                    std::thread::spawn(move || pump(from, to, b, s));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, blocked: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = [0u8; 16384];
    loop {
        if blocked.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
