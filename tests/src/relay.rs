//! A fault-injecting TCP relay (the kernel here has no netem): forwards connections from its
//! own loopback port to a target until it is blocked, then cuts every connection and
//! refuses new ones until unblocked. Put one on each directed link between two nodes to
//! partition them.
//!
//! An impaired relay ([`Relay::start_impaired`]) also does to the stream what packet loss
//! and jitter do to TCP above the kernel: every chunk it forwards (a segment, for the small
//! messages of probes) is held for a random jitter, and a lost one arrives a retransmission
//! timeout later, holding back what follows (TCP delivers in order); a lost handshake
//! delays the connection's first bytes by the SYN retransmission timeout. It cannot drop a
//! SYN itself: the kernel completes the handshake with the relay before it accepts.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What an impaired relay does to the streams it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// The chance that a segment (or a handshake) is lost.
    pub loss: f64,
    /// Every segment is held for a uniform random time up to this.
    pub jitter: Duration,
    /// A lost segment arrives this much later (Linux's minimum RTO is 200 ms).
    pub retransmit: Duration,
    /// A lost handshake is repeated this much later (the initial RTO, 1 s).
    pub syn_retransmit: Duration,
    /// Seeds the relay's random numbers.
    pub seed: u64,
}

impl Impairment {
    /// `loss` (0.05 = 5%) and `jitter`, with Linux's retransmission timeouts.
    pub fn new(loss: f64, jitter: Duration, seed: u64) -> Impairment {
        Impairment {
            loss,
            jitter,
            retransmit: Duration::from_millis(200),
            syn_retransmit: Duration::from_secs(1),
            seed,
        }
    }
}

/// A small deterministic random source (splitmix64), shared by a relay's pumps.
#[derive(Debug)]
struct Dice(AtomicU64);

impl Dice {
    /// A uniform number in [0, 1).
    fn roll(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An impairment with its dice, and what it did (for the test to show the loss was real).
#[derive(Debug)]
struct Impaired {
    impairment: Impairment,
    dice: Dice,
    lost: AtomicU64,
    forwarded: AtomicU64,
}

impl Impaired {
    fn lost(&self) -> bool {
        let lost = self.dice.roll() < self.impairment.loss;
        if lost {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        lost
    }

    /// How long the next segment is held.
    fn delay(&self) -> Duration {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let jitter = self.impairment.jitter.mul_f64(self.dice.roll());
        if self.lost() {
            jitter + self.impairment.retransmit
        } else {
            jitter
        }
    }
}

/// A relay to one target.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    impaired: Option<Arc<Impaired>>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and forwards to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        Relay::listen("127.0.0.1", target, None)
    }

    /// Listens on `ip` (port 0) and forwards to `target` through `impairment`.
    pub fn start_impaired(ip: &str, target: SocketAddr, impairment: Impairment) -> Relay {
        Relay::listen(
            ip,
            target,
            Some(Arc::new(Impaired {
                impairment,
                dice: Dice(AtomicU64::new(impairment.seed)),
                lost: AtomicU64::new(0),
                forwarded: AtomicU64::new(0),
            })),
        )
    }

    fn listen(ip: &str, target: SocketAddr, impaired: Option<Arc<Impaired>>) -> Relay {
        let listener = TcpListener::bind((ip, 0)).expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s, i) = (blocked.clone(), stop.clone(), impaired.clone());
        std::thread::spawn(move || accept_loop(listener, target, b, s, i));
        Relay {
            addr,
            blocked,
            stop,
            impaired,
        }
    }

    /// Of an impaired relay: the segments and handshakes it lost, and the segments it
    /// forwarded.
    pub fn impaired_counts(&self) -> (u64, u64) {
        self.impaired.as_ref().map_or((0, 0), |i| {
            (
                i.lost.load(Ordering::Relaxed),
                i.forwarded.load(Ordering::Relaxed),
            )
        })
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
    impaired: Option<Arc<Impaired>>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if blocked.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (b, s, i) = (blocked.clone(), stop.clone(), impaired.clone());
                std::thread::spawn(move || connect(client, target, b, s, i));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Connects one accepted client to the target (a lost handshake first waits its
/// retransmission) and pumps both ways.
fn connect(
    client: TcpStream,
    target: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    impaired: Option<Arc<Impaired>>,
) {
    if let Some(impaired) = &impaired
        && impaired.lost()
    {
        std::thread::sleep(impaired.impairment.syn_retransmit);
    }
    let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    for (from, to) in [(&client, &upstream), (&upstream, &client)] {
        let (from, to) = (
            from.try_clone().expect("clone"),
            to.try_clone().expect("clone"),
        );
        let (b, s, i) = (blocked.clone(), stop.clone(), impaired.clone());
        std::thread::spawn(move || pump(from, to, b, s, i));
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    impaired: Option<Arc<Impaired>>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = [0u8; 16384];
    // In order, like TCP: a segment is released no earlier than the one before it.
    let mut released = Instant::now();
    loop {
        if blocked.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(impaired) = &impaired {
                    released = released.max(Instant::now() + impaired.delay());
                    std::thread::sleep(released.saturating_duration_since(Instant::now()));
                }
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
