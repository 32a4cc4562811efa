//! Connecting and reading for the probes, naming failures the way operators read them.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The member refused the connection (nothing listens).
pub(crate) const REFUSED: &str = "refused";
/// The member reset the connection.
pub(crate) const RESET: &str = "reset";
/// The member closed the connection before its answer was whole.
pub(crate) const CLOSED_EARLY: &str = "connection closed early";

/// Names an I/O error of `what` (`read`, `write`) the way operators read it.
pub(crate) fn io_failure(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => RESET.to_owned(),
        std::io::ErrorKind::UnexpectedEof => CLOSED_EARLY.to_owned(),
        _ => format!("{what}: {e}"),
    }
}

/// How long a connection attempt waits before a second one is started beside it: a lost
/// SYN is retransmitted only after a second, so one lost packet would otherwise fail a
/// probe (and, with a failure or two more, remove a healthy member). The first attempt to
/// connect wins; a member that is down answers neither.
const HEDGE_AFTER: std::time::Duration = std::time::Duration::from_millis(150);

/// Connects over TCP, naming the failure the way operators read it; a second attempt starts
/// after [`HEDGE_AFTER`] if the first has not connected.
pub(crate) async fn connect(target: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    let first = tokio::net::TcpStream::connect(target);
    tokio::pin!(first);
    let connected = tokio::select! {
        result = &mut first => result,
        _ = tokio::time::sleep(HEDGE_AFTER) => {
            let second = tokio::net::TcpStream::connect(target);
            tokio::pin!(second);
            // Whichever connects first; an error of one waits for the other.
            tokio::select! {
                result = &mut first => match result {
                    Ok(stream) => Ok(stream),
                    Err(_) => second.await,
                },
                result = &mut second => match result {
                    Ok(stream) => Ok(stream),
                    Err(_) => first.await,
                },
            }
        }
    };
    match connected {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(REFUSED.into()),
        Err(e) => Err(format!("connect: {e}")),
    }
}

/// Reads exactly `buf.len()` octets, naming an early close.
pub(crate) async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), String> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| io_failure("read", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener whose accept queue is full drops SYNs; the client retransmits its SYN only
    /// after a second. A slot freed meanwhile is taken by the hedged second attempt.
    #[tokio::test]
    async fn a_dropped_syn_is_covered_by_the_second_attempt() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the queue (a backlog of 128 takes about 129 connections) from other sockets.
        let socket = socket2::SockRef::from(&listener);
        socket.listen(0).unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            let stream =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            stream.set_nonblocking(true).unwrap();
            let _ = stream.connect(&addr.into());
            fillers.push(stream);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let probe = tokio::spawn(connect(addr));
        // After the first SYN is dropped, free the queue.
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        listener.set_nonblocking(true).unwrap();
        while listener.accept().is_ok() {}
        drop(fillers);
        let connected = probe.await.unwrap();
        assert!(connected.is_ok(), "{connected:?}");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_millis(900),
            "connected through the hedge, not the 1 s retransmit: {took:?}"
        );
    }
}
