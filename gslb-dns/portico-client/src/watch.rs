//! The reader of `GET /api/v1/watch`: newline-delimited JSON, one [`WatchLine`] per applied
//! change, blank lines as heartbeats while nothing changes. A line that is not a
//! `WatchLine` this build can read is reported as such (never half-applied); a stream
//! silent for longer than [`IDLE_TIMEOUT`] is dead.

use std::time::Duration;

use topology::wire::views::WatchLine;

use crate::error::ClientError;

/// A server sends a heartbeat every few seconds; this long without a byte means it is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest line taken (a whole state; far above what thousands of members need).
pub const MAX_LINE: usize = 64 << 20;

/// What came on the stream.
#[derive(Debug)]
pub enum WatchEvent {
    Line(Box<WatchLine>),
    /// A line this build cannot read (a field missing or of another type): its error.
    Undecodable(String),
}

/// An open watch stream.
#[derive(Debug)]
pub struct Watch {
    node: String,
    response: reqwest::Response,
    pending: Vec<u8>,
    idle: Duration,
}

impl Watch {
    pub(crate) fn new(node: String, response: reqwest::Response) -> Watch {
        Watch {
            node,
            response,
            pending: Vec::new(),
            idle: IDLE_TIMEOUT,
        }
    }

    /// The node it follows.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The next line; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(match serde_json::from_slice::<WatchLine>(line) {
                    Ok(line) => WatchEvent::Line(Box::new(line)),
                    Err(e) => WatchEvent::Undecodable(e.to_string()),
                }));
            }
            if self.pending.len() > MAX_LINE {
                return Err(self.failed(format!("a line longer than {MAX_LINE} bytes")));
            }
            let chunk = tokio::time::timeout(self.idle, self.response.chunk())
                .await
                .map_err(|_| self.failed(format!("silent for {:?}", self.idle)))?
                .map_err(|e| self.failed(e.to_string()))?;
            match chunk {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    fn failed(&self, why: String) -> ClientError {
        ClientError::Unreachable {
            method: reqwest::Method::GET,
            path: "/api/v1/watch".into(),
            tried: format!("{}: {why}", self.node),
        }
    }
}
