//! A link between two lab namespaces that runs through user space and holds each packet
//! for a delay chosen per address: wide-area latency without netem, seen by the kernels at
//! both ends as real round-trip time (the `tcpi_rtt` a proxy reads grows with it).
//!
//! Each end is a TUN device in its namespace; per direction, one thread reads whole IP
//! packets from one device and another writes them to the other device once their delay
//! has passed (a packet to a near address overtakes one to a far address; one address's
//! packets keep their order while its delay stays). The delay of a packet is the largest of
//! those set for its source and its destination address, so one site's addresses can be
//! made far away while the rest stay near.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Lab;

/// `TUNSETIFF` from `<linux/if_tun.h>`: `_IOW('T', 202, int)`.
const TUNSETIFF: u64 = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags (the union's first
/// member), padded to the structure's 40 bytes.
#[repr(C)]
struct InterfaceRequest {
    name: [u8; 16],
    flags: i16,
    _rest: [u8; 22],
}

/// Opens a new TUN device `name` (IP packets without the packet-information header) in the
/// calling thread's network namespace. The device lives as long as the file.
fn open_tun(name: &str) -> File {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    assert!(name.len() < 16, "interface names are at most 15 bytes");
    let mut request = InterfaceRequest {
        name: [0; 16],
        flags: IFF_TUN | IFF_NO_PI,
        _rest: [0; 22],
    };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    #[allow(unsafe_code)]
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `InterfaceRequest`
    // matches in layout and size (40 bytes on Linux); the pointer is to a live local and the
    // descriptor is the open `/dev/net/tun` file.
    let result = unsafe {
        nix::libc::ioctl(
            file.as_raw_fd(),
            TUNSETIFF as _,
            &mut request as *mut InterfaceRequest,
        )
    };
    assert_eq!(
        result,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    file
}

/// The source and destination of an IPv4 or IPv6 packet.
fn endpoints(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let source: [u8; 4] = packet[12..16].try_into().ok()?;
            let destination: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((
                Ipv4Addr::from(source).into(),
                Ipv4Addr::from(destination).into(),
            ))
        }
        6 if packet.len() >= 40 => {
            let source: [u8; 16] = packet[8..24].try_into().ok()?;
            let destination: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((
                Ipv6Addr::from(source).into(),
                Ipv6Addr::from(destination).into(),
            ))
        }
        _ => None,
    }
}

type Delays = Arc<Mutex<HashMap<IpAddr, Duration>>>;

/// A running delay link; its threads stop and its devices go away on drop.
pub struct DelayLink {
    delays: Delays,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    forwarded: Arc<AtomicU64>,
}

impl DelayLink {
    /// A link between TUN device `a_if` in namespace `a` and `b_if` in `b`, both up, no
    /// delays yet. Give the ends addresses and routes with [`Lab::address`] and [`Lab::ip`].
    pub fn new(lab: &Lab, a: &str, a_if: &str, b: &str, b_if: &str) -> DelayLink {
        let a_dev = Arc::new(lab.within(a, || open_tun(a_if)));
        let b_dev = Arc::new(lab.within(b, || open_tun(b_if)));
        lab.ip(a, &["link", "set", a_if, "up"]);
        lab.ip(b, &["link", "set", b_if, "up"]);
        let delays = Delays::default();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for (from, to) in [(a_dev.clone(), b_dev.clone()), (b_dev, a_dev)] {
            let (queue, due) = mpsc::channel::<(Instant, Vec<u8>)>();
            let (delays, stop) = (delays.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                read_side(&from, &delays, &stop, queue);
            }));
            let forwarded = forwarded.clone();
            threads.push(std::thread::spawn(move || {
                write_side(&to, due, &forwarded);
            }));
        }
        DelayLink {
            delays,
            stop,
            threads,
            forwarded,
        }
    }

    /// Holds every packet to or from `address` for `one_way` (so a round trip through the
    /// link grows by twice that); zero takes the delay away.
    pub fn set_delay(&self, address: IpAddr, one_way: Duration) {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address, one_way);
    }

    /// Packets carried so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

/// Reads packets from `device` and queues each with the time it may leave.
fn read_side(
    device: &File,
    delays: &Delays,
    stop: &AtomicBool,
    queue: mpsc::Sender<(Instant, Vec<u8>)>,
) {
    let mut buffer = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let mut ready = [nix::poll::PollFd::new(
            device.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut ready, nix::poll::PollTimeout::from(100u8)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(length) = (&*device).read(&mut buffer) else {
            return;
        };
        let packet = buffer[..length].to_vec();
        let delay = endpoints(&packet)
            .map(|(source, destination)| {
                let delays = delays.lock().unwrap_or_else(|e| e.into_inner());
                let of = |address| delays.get(&address).copied().unwrap_or_default();
                of(source).max(of(destination))
            })
            .unwrap_or_default();
        if queue.send((Instant::now() + delay, packet)).is_err() {
            return;
        }
    }
}

/// Writes queued packets to `device` when they are due: in order of due time (arrival
/// order among equals), so a near address's packets do not wait behind a far one's; ends
/// with its reader.
fn write_side(device: &File, queue: mpsc::Receiver<(Instant, Vec<u8>)>, forwarded: &AtomicU64) {
    let mut waiting: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut arrivals = 0u64;
    loop {
        let next = match waiting.peek() {
            Some(Reverse((due, _, _))) => {
                queue.recv_timeout(due.saturating_duration_since(Instant::now()))
            }
            None => queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((due, packet)) => {
                arrivals += 1;
                waiting.push(Reverse((due, arrivals, packet)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while let Some(Reverse((due, _, _))) = waiting.peek() {
            if *due > Instant::now() {
                break;
            }
            let Some(Reverse((_, _, packet))) = waiting.pop() else {
                break;
            };
            // A packet the kernel refuses (its device going away) is lost, as on a wire.
            if (&*device).write(&packet).is_ok() {
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
