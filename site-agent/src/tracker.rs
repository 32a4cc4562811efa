//! What the agent knows of one member, and how that becomes an observation. Pure: probe
//! verdicts and agent feedback go in, a `MemberObservation` comes out.
//!
//! - Health: rise/fall hysteresis over probe verdicts; an agent that says `down` (or
//!   `fail`, `stopped`) counts as a failed probe.
//! - Weight: the agent's `N%`, reduced smoothly when the smoothed probe latency exceeds the
//!   slow-probe threshold (a hot node loses share instead of flapping).
//! - Agent admin: `drain` and `maint` hold until the agent says `ready`.
//! - Passive marks (a proxy saw the member fail): confirmed after `rise` successful probes
//!   in a row, every one made after the agent learned of the mark.

use std::time::Duration;

use topology::agent_check::{AgentAdmin, AgentFeedback, AgentHealth};
use topology::hysteresis::{Hysteresis, ProbeResult, Thresholds};

use crate::probe::Verdict;
use topology::wire::MemberObservation;
use topology::{AdminState, Health};

/// The smallest share a slow member keeps, in percent of its agent weight.
const SLOWEST_SHARE: f64 = 0.1;
/// Weight of a new latency sample in the moving average.
const EWMA_ALPHA: f64 = 0.3;

/// One member's probe and feedback history.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub service: String,
    pub node: String,
    hysteresis: Hysteresis,
    reason: String,
    latency_ewma_us: Option<f64>,
    agent_weight: u32,
    agent_admin: AdminState,
    agent_down: Option<String>,
    /// For a slot of a discovered group: its current address.
    address: Option<std::net::IpAddr>,
    /// Failed probes by reason, for metrics.
    pub failures: std::collections::BTreeMap<String, u64>,
    pub probes: u64,
    /// A passive mark to confirm (its index), and the successful probes in a row since
    /// the agent learned of it.
    passive_pending: Option<(u64, u32)>,
    /// The newest mark confirmed.
    passive_confirmed: Option<u64>,
    /// Wakes the member's probe task (a mark to confirm: probe now).
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Tracker {
    pub fn new(service: &str, node: &str) -> Tracker {
        Tracker {
            service: service.to_owned(),
            node: node.to_owned(),
            hysteresis: Hysteresis::default(),
            reason: "no probe yet".into(),
            latency_ewma_us: None,
            agent_weight: 100,
            agent_admin: AdminState::Active,
            agent_down: None,
            address: None,
            failures: std::collections::BTreeMap::new(),
            probes: 0,
            passive_pending: None,
            passive_confirmed: None,
            wake: Default::default(),
        }
    }

    /// The store says a proxy marked this member passively down (mark `mark`): from now on,
    /// `rise` successful probes in a row confirm it serves. True when the mark is new here
    /// (worth probing at once).
    pub fn await_passive(&mut self, mark: u64) -> bool {
        let known = self.passive_confirmed.is_some_and(|c| c >= mark)
            || self
                .passive_pending
                .is_some_and(|(pending, _)| pending >= mark);
        if !known {
            self.passive_pending = Some((mark, 0));
        }
        !known
    }

    /// A mark is being confirmed and the probes so far succeed: worth probing again soon.
    pub fn confirming(&self) -> bool {
        self.passive_pending.is_some_and(|(_, streak)| streak > 0)
    }

    /// The newest passive mark confirmed, for the report.
    pub fn passive_confirmed(&self) -> Option<u64> {
        self.passive_confirmed
    }

    fn count_for_passive(&mut self, ok: bool, rise: u32) {
        let Some((mark, streak)) = self.passive_pending else {
            return;
        };
        let streak = if ok { streak + 1 } else { 0 };
        if streak >= rise.max(1) {
            self.passive_pending = None;
            self.passive_confirmed = Some(mark);
        } else {
            self.passive_pending = Some((mark, streak));
        }
    }

    /// A discovered slot got a new address (or lost it): what was known of the old address
    /// no longer holds, so health starts over. Returns true when it changed.
    pub fn set_address(&mut self, address: Option<std::net::IpAddr>) -> bool {
        if self.address == address {
            return false;
        }
        self.address = address;
        self.hysteresis = Hysteresis::default();
        self.latency_ewma_us = None;
        self.reason = if address.is_some() {
            "new address, no probe yet"
        } else {
            "no address discovered"
        }
        .into();
        true
    }

    /// The discovered address of this slot, if any.
    pub fn address(&self) -> Option<std::net::IpAddr> {
        self.address
    }

    pub fn health(&self) -> Health {
        self.hysteresis.health()
    }

    /// Takes a probe verdict; returns the new health when it changed. A load-feedback
    /// `down` counts as a hard failure (the member itself says no).
    pub fn observe_probe(&mut self, verdict: &Verdict, thresholds: Thresholds) -> Option<Health> {
        let (ok, reason, latency) = (verdict.ok, verdict.reason.as_str(), verdict.latency);
        self.probes += 1;
        if !ok {
            *self.failures.entry(reason.to_owned()).or_default() += 1;
        }
        let ok = ok && self.agent_down.is_none();
        self.reason = match (&self.agent_down, ok) {
            (Some(why), _) => why.clone(),
            (None, _) => reason.to_owned(),
        };
        if ok {
            let sample = latency.as_micros() as f64;
            self.latency_ewma_us = Some(match self.latency_ewma_us {
                None => sample,
                Some(ewma) => ewma + EWMA_ALPHA * (sample - ewma),
            });
        }
        let result = if self.agent_down.is_some() {
            ProbeResult::HardFailure
        } else {
            verdict.result()
        };
        self.count_for_passive(ok, thresholds.rise);
        self.hysteresis.observe(result, thresholds)
    }

    /// Failing but not down yet: worth probing again soon.
    pub fn suspect(&self) -> bool {
        self.hysteresis.suspect()
    }

    /// Takes the node's load feedback. Returns true when the admin state changed (worth an
    /// immediate report).
    pub fn observe_feedback(&mut self, feedback: &AgentFeedback) -> bool {
        if let Some(weight) = feedback.weight_percent {
            self.agent_weight = weight;
        }
        self.agent_down = match feedback.health {
            Some(AgentHealth::Down) => Some(format!(
                "agent: down{}",
                feedback
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            Some(AgentHealth::Up) => None,
            None => self.agent_down.take(),
        };
        let before = self.agent_admin;
        self.agent_admin = match feedback.admin {
            Some(AgentAdmin::Drain) => AdminState::Drained,
            Some(AgentAdmin::Maint) => AdminState::Maintenance,
            Some(AgentAdmin::Ready) => AdminState::Active,
            None => self.agent_admin,
        };
        before != self.agent_admin
    }

    /// The weight to report: the agent's, scaled down while probes are slow.
    pub fn weight_percent(&self, slow_probe: Duration) -> u32 {
        let threshold = slow_probe.as_micros() as f64;
        let share = match self.latency_ewma_us {
            Some(ewma) if threshold > 0.0 && ewma > threshold => {
                (threshold / ewma).max(SLOWEST_SHARE)
            }
            _ => 1.0,
        };
        (self.agent_weight as f64 * share).round() as u32
    }

    /// The member as the report states it.
    pub fn observation(&self, slow_probe: Duration) -> MemberObservation {
        MemberObservation {
            service: self.service.clone(),
            node: self.node.clone(),
            health: self.health(),
            // A probe's error can be long; the API takes reasons up to its limit.
            reason: topology::wire::clipped(&self.reason, topology::wire::MAX_ACCEPTED_TEXT),
            latency_us: self.latency_ewma_us.map(|l| l as u32),
            weight_percent: self.weight_percent(slow_probe),
            agent_admin: self.agent_admin,
            address: self.address,
            passive_confirmed: self.passive_confirmed,
        }
    }
}

/// Every member's tracker, shared by the probe tasks, the reporter and the metrics.
pub type Trackers =
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<(String, String), Tracker>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use topology::agent_check::parse_agent_reply;

    const MS: Duration = Duration::from_millis(1);

    fn up(latency: Duration) -> Verdict {
        Verdict {
            ok: true,
            hard: false,
            reason: "ok".into(),
            latency,
        }
    }

    #[test]
    fn health_follows_hysteresis_and_agent_down() {
        let mut t = Tracker::new("s3", "fra-1");
        assert_eq!(t.observe_probe(&up(MS), Thresholds::new(2, 2)), None);
        assert_eq!(
            t.observe_probe(&up(MS), Thresholds::new(2, 2)),
            Some(Health::Up)
        );
        t.observe_feedback(&parse_agent_reply("down #rebuilding").unwrap());
        assert_eq!(t.observe_probe(&up(MS), Thresholds::new(2, 2)), None);
        assert_eq!(
            t.observe_probe(&up(MS), Thresholds::new(2, 2)),
            Some(Health::Down),
            "agent down counts as failure"
        );
        assert_eq!(t.observation(MS * 200).reason, "agent: down (rebuilding)");
        t.observe_feedback(&parse_agent_reply("up").unwrap());
        t.observe_probe(&up(MS), Thresholds::new(2, 2));
        assert_eq!(
            t.observe_probe(&up(MS), Thresholds::new(2, 2)),
            Some(Health::Up)
        );
    }

    #[test]
    fn a_passive_mark_is_confirmed_by_rise_fresh_successes_only() {
        let down = Verdict {
            ok: false,
            hard: true,
            reason: "connection refused".into(),
            latency: MS,
        };
        let rise = Thresholds::new(3, 2);
        let mut t = Tracker::new("s3", "fra-1");
        for _ in 0..5 {
            t.observe_probe(&up(MS), rise);
        }
        assert_eq!(t.health(), Health::Up);
        assert_eq!(t.observation(MS).passive_confirmed, None);
        assert!(t.await_passive(41), "a new mark");
        assert!(!t.await_passive(41), "the same mark again is not new");
        assert!(!t.confirming(), "no fresh probe yet");
        // Successes from before the mark count for nothing; a failure restarts the streak.
        t.observe_probe(&up(MS), rise);
        t.observe_probe(&up(MS), rise);
        assert!(t.confirming());
        t.observe_probe(&down, rise);
        assert!(!t.confirming());
        t.observe_probe(&up(MS), rise);
        t.observe_probe(&up(MS), rise);
        assert_eq!(t.observation(MS).passive_confirmed, None);
        t.observe_probe(&up(MS), rise);
        assert_eq!(t.observation(MS).passive_confirmed, Some(41));
        assert!(!t.await_passive(41), "confirmed already");
        assert!(!t.await_passive(40), "an older mark is answered too");
        assert!(t.await_passive(57), "a newer mark starts again");
        assert_eq!(
            t.observation(MS).passive_confirmed,
            Some(41),
            "the old confirmation stands until the new one"
        );
    }

    #[test]
    fn drain_and_maint_hold_until_ready() {
        let mut t = Tracker::new("s3", "fra-1");
        assert!(t.observe_feedback(&parse_agent_reply("drain").unwrap()));
        assert!(
            !t.observe_feedback(&parse_agent_reply("75%").unwrap()),
            "a weight alone keeps the drain"
        );
        assert_eq!(t.observation(MS).agent_admin, AdminState::Drained);
        assert!(t.observe_feedback(&parse_agent_reply("maint").unwrap()));
        assert_eq!(t.observation(MS).agent_admin, AdminState::Maintenance);
        assert!(t.observe_feedback(&parse_agent_reply("ready").unwrap()));
        assert_eq!(t.observation(MS).agent_admin, AdminState::Active);
        assert_eq!(t.observation(MS).weight_percent, 75);
    }

    #[test]
    fn slow_probes_lower_the_weight_smoothly() {
        let mut t = Tracker::new("s3", "fra-1");
        let slow = MS * 200;
        t.observe_probe(&up(MS * 100), Thresholds::new(2, 2));
        assert_eq!(t.weight_percent(slow), 100, "fast: full weight");
        let mut weights = Vec::new();
        for _ in 0..8 {
            t.observe_probe(&up(MS * 800), Thresholds::new(2, 2));
            weights.push(t.weight_percent(slow));
        }
        assert!(
            weights.windows(2).all(|w| w[1] <= w[0]),
            "decreasing: {weights:?}"
        );
        assert!(
            *weights.last().unwrap() <= 30 && *weights.last().unwrap() >= 10,
            "{weights:?}"
        );
        for _ in 0..10 {
            t.observe_probe(&up(MS * 50), Thresholds::new(2, 2));
        }
        assert_eq!(t.weight_percent(slow), 100, "recovers when fast again");
        assert_eq!(t.health(), Health::Up, "slowness never flaps health");
    }
}
