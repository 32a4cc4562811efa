//! The proxy's direct system calls, all in this one audited module: `splice(2)` through a
//! pipe for zero-copy forwarding (nix's safe wrappers), the effective user id, and
//! `getsockopt(TCP_INFO)` for the kernel's smoothed RTT of a client connection (the one
//! `unsafe` block of the workspace; a tidy test keeps it here).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};

/// A kernel pipe used as the buffer between two sockets: bytes move socket -> pipe -> socket
/// as page references, never through user space.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub pending: usize,
    /// The pipe's capacity (what one splice may move at most).
    pub capacity: usize,
}

impl Pipe {
    /// A pipe of `size` bytes if the kernel grants it. Its real size is read back
    /// (`F_GETPIPE_SZ`): over `/proc/sys/fs/pipe-max-size` the resize is refused and the
    /// default (64 KiB) stays, and past a user's `pipe-user-pages-soft` even a new pipe gets
    /// only 8 KiB; the caller decides what is worth keeping.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(size as i32));
        let capacity = fcntl(&write, FcntlArg::F_GETPIPE_SZ)? as usize;
        Ok(Pipe {
            read,
            write,
            pending: 0,
            capacity,
        })
    }

    /// Moves up to the pipe's free space from `socket` into the pipe: `Ok(0)` is end of
    /// stream, `WouldBlock` means the socket has nothing now.
    pub fn fill_from(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let room = self.capacity - self.pending;
        let moved = splice(
            socket,
            None,
            &self.write,
            None,
            room,
            SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
        )?;
        self.pending += moved;
        Ok(moved)
    }

    /// Moves what the pipe holds into `socket`, as much as the socket takes now.
    pub fn drain_to(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let moved = splice(
            &self.read,
            None,
            socket,
            None,
            self.pending,
            SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
        )?;
        self.pending -= moved;
        Ok(moved)
    }
}

/// Whether this process runs as root (the kernel's per-user pipe limits then do not apply).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The kernel's smoothed round-trip time of a TCP connection, in microseconds
/// (`tcpi_rtt` of `TCP_INFO`), or `None` when it has no sample yet.
pub fn smoothed_rtt_us(socket: &impl AsRawFd) -> io::Result<Option<u32>> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a zero-initialised `tcp_info` that lives across the call and `len`
    // holds its exact size, so the kernel writes at most `len` bytes into it; the fd is
    // owned by the caller's socket for the whole call. On success the kernel has filled a
    // prefix of the struct (older kernels a shorter one) and the rest stays zero, which is a
    // valid `tcp_info` (all of its fields are plain integers).
    #[allow(unsafe_code)]
    let (rc, info) = unsafe {
        let rc = libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        );
        (rc, info.assume_init())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info.tcpi_rtt > 0).then_some(info.tcpi_rtt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn splice_moves_bytes_between_sockets_and_reports_end_of_stream() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let listener2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let out = std::net::TcpStream::connect(listener2.local_addr().unwrap()).unwrap();
        let (mut sink, _) = listener2.accept().unwrap();
        client.write_all(b"hello through a pipe").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut pipe = Pipe::new(1024 * 1024).unwrap();
        assert!(pipe.capacity >= 64 * 1024);
        let mut total = 0;
        loop {
            match pipe.fill_from(&server) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(total, 20);
        while pipe.pending > 0 {
            pipe.drain_to(&out).unwrap();
        }
        drop(out);
        let mut received = String::new();
        sink.read_to_string(&mut received).unwrap();
        assert_eq!(received, "hello through a pipe");
    }

    #[test]
    fn tcp_info_gives_the_rtt_of_a_live_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let rtt = smoothed_rtt_us(&server).unwrap();
        assert!(rtt.is_some_and(|us| us < 1_000_000), "{rtt:?}");
        drop(client);
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(smoothed_rtt_us(&file).is_err(), "not a socket");
    }
}
