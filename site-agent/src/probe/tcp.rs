//! `tcp`: the member accepts a TCP connection.

use std::net::SocketAddr;
use std::time::Instant;

use super::io::connect;
use super::verdict::Verdict;

/// Connects and closes.
pub async fn probe(target: SocketAddr) -> Verdict {
    let started = Instant::now();
    match connect(target).await {
        Ok(_) => Verdict::ok(started),
        Err(reason) => Verdict::fail(started, reason),
    }
}
