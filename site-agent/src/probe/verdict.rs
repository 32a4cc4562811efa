//! What a probe found, and the timeout every probe runs under.

use std::time::{Duration, Instant};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// Why: `ok`, or a failure reason such as `timeout`, `refused`, `404 bucket gone`.
    pub reason: String,
    pub latency: Duration,
}

impl Verdict {
    pub(crate) fn ok(started: Instant) -> Verdict {
        Verdict {
            ok: true,
            reason: "ok".into(),
            latency: started.elapsed(),
        }
    }

    pub(crate) fn fail(started: Instant, reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            reason: reason.into(),
            latency: started.elapsed(),
        }
    }
}

/// Runs `check` against `target` within `timeout`; a probe that does not finish in time fails
/// with reason `timeout`.
pub async fn bounded<F>(timeout: Duration, check: F) -> Verdict
where
    F: std::future::Future<Output = Verdict>,
{
    let started = Instant::now();
    match tokio::time::timeout(timeout, check).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::fail(started, "timeout"),
    }
}
