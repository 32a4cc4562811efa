//! Load feedback: reads a storage node's HAProxy agent-check reply (the agent writes one
//! line on connect and closes) and parses it with `topology::agent_check`. An unreachable
//! agent is not a health failure by itself: the caller keeps the last feedback.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use topology::agent_check::{AgentFeedback, parse_agent_reply};

/// Reads and parses one agent reply from `target` within `timeout`.
pub async fn read_feedback(target: SocketAddr, timeout: Duration) -> Result<AgentFeedback, String> {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| format!("agent unreachable: {e}"))?;
        let mut line = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("agent read: {e}"))?;
            if n == 0 {
                break;
            }
            line.extend_from_slice(&chunk[..n]);
            if line.contains(&b'\n') || line.len() > 1024 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let first = text.lines().next().unwrap_or_default().to_owned();
        parse_agent_reply(&first).map_err(|e| format!("agent reply {first:?}: {e}"))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err("agent timeout".into()))
}
