//! What a probe found, and the timeout every probe runs under.

use std::time::{Duration, Instant};

use topology::hysteresis::ProbeResult;

use super::io::{CLOSED_EARLY, REFUSED, RESET};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// The member itself said no (it refused or reset the connection, closed it early, or
    /// answered with an error), as opposed to silence the network could explain: counted
    /// against the check's `fall_hard`.
    pub hard: bool,
    /// Why: `ok`, or a failure reason such as `timeout`, `refused`, `404 bucket gone`.
    pub reason: String,
    pub latency: Duration,
}

impl Verdict {
    pub(crate) fn ok(started: Instant) -> Verdict {
        Verdict {
            ok: true,
            hard: false,
            reason: "ok".into(),
            latency: started.elapsed(),
        }
    }

    /// A failure; hard when the connection was refused, reset or closed early.
    pub(crate) fn fail(started: Instant, reason: impl Into<String>) -> Verdict {
        let reason = reason.into();
        Verdict {
            ok: false,
            hard: [REFUSED, RESET, CLOSED_EARLY].contains(&reason.as_str()),
            reason,
            latency: started.elapsed(),
        }
    }

    /// A failure the member answered with (an HTTP or S3 error status): always hard.
    pub(crate) fn refused_by_answer(started: Instant, reason: impl Into<String>) -> Verdict {
        Verdict {
            hard: true,
            ..Verdict::fail(started, reason)
        }
    }

    /// The verdict as the hysteresis counts it.
    pub fn result(&self) -> ProbeResult {
        match (self.ok, self.hard) {
            (true, _) => ProbeResult::Success,
            (false, false) => ProbeResult::Failure,
            (false, true) => ProbeResult::HardFailure,
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
