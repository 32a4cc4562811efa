//! Rise/fall hysteresis: a member goes up after `rise` consecutive successful probes and
//! down after `fall` consecutive failures, so one lost packet does not flap it. A hard
//! failure (the member refused or reset the connection, or answered with an error) is no
//! accident of the network: the streak it ends may be as short as `fall_hard`. Pure: the
//! site agent feeds it probe results; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use crate::state::Health;

/// What one probe found, as the hysteresis counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// No answer in time, or a failure the network could have caused.
    Failure,
    /// The member itself said no: refused, reset, or an error answer.
    HardFailure,
}

/// A check's thresholds (each at least 1; 0 counts as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub rise: u32,
    pub fall: u32,
    /// A streak of failures ending in a hard one goes down at this length.
    pub fall_hard: u32,
}

impl Thresholds {
    /// The thresholds of `check`.
    pub fn of(check: &crate::model::Check) -> Thresholds {
        Thresholds {
            rise: check.rise,
            fall: check.fall,
            fall_hard: check.fall_hard,
        }
    }

    /// `rise` and `fall`, with hard failures counted like others.
    pub fn new(rise: u32, fall: u32) -> Thresholds {
        Thresholds {
            rise,
            fall,
            fall_hard: fall,
        }
    }
}

/// The hysteresis of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    health: Health,
    /// Where the current streak points (`Up` for successes, `Down` for failures).
    towards: Health,
    /// Consecutive results pointing at `towards`.
    streak: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            health: Health::Unknown,
            towards: Health::Unknown,
            streak: 0,
        }
    }
}

impl Hysteresis {
    /// The verdict so far (`Unknown` until the first `rise` or `fall` streak completes).
    pub fn health(&self) -> Health {
        self.health
    }

    /// Whether failures have begun a streak that has not brought the member down yet (the
    /// agent probes again soon, to decide quickly).
    pub fn suspect(&self) -> bool {
        self.towards == Health::Down && self.streak > 0
    }

    /// Feeds one probe result; returns the new health when it changed. A result that agrees
    /// with the current health breaks any streak towards the other state.
    pub fn observe(&mut self, result: ProbeResult, thresholds: Thresholds) -> Option<Health> {
        let (target, needed) = match result {
            ProbeResult::Success => (Health::Up, thresholds.rise.max(1)),
            ProbeResult::Failure => (Health::Down, thresholds.fall.max(1)),
            ProbeResult::HardFailure => (
                Health::Down,
                thresholds.fall_hard.clamp(1, thresholds.fall.max(1)),
            ),
        };
        if self.health == target {
            self.streak = 0;
            self.towards = Health::Unknown;
            return None;
        }
        if self.towards != target {
            self.towards = target;
            self.streak = 0;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        self.health = target;
        self.streak = 0;
        self.towards = Health::Unknown;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Down, Unknown, Up};

    fn result(c: char) -> ProbeResult {
        match c {
            '+' => ProbeResult::Success,
            '-' => ProbeResult::Failure,
            _ => ProbeResult::HardFailure,
        }
    }

    /// Feeds `results` ('+' success, '-' failure, '!' hard failure) with rise 2, fall 3,
    /// fall_hard 1; returns the health after each result and the transitions.
    fn check(results: &str, expected_health: &[Health], expected_transitions: &[Option<Health>]) {
        let mut h = Hysteresis::default();
        let mut healths = Vec::new();
        let mut transitions = Vec::new();
        let thresholds = Thresholds {
            rise: 2,
            fall: 3,
            fall_hard: 1,
        };
        for c in results.chars() {
            transitions.push(h.observe(result(c), thresholds));
            healths.push(h.health());
        }
        assert_eq!(healths, expected_health, "{results}");
        assert_eq!(transitions, expected_transitions, "{results}");
    }

    #[test]
    fn golden_rise_and_fall() {
        check("++", &[Unknown, Up], &[None, Some(Up)]);
        check("---", &[Unknown, Unknown, Down], &[None, None, Some(Down)]);
        // One failure while up does not flap it; three in a row do.
        check(
            "++-+---",
            &[Unknown, Up, Up, Up, Up, Up, Down],
            &[None, Some(Up), None, None, None, None, Some(Down)],
        );
        // A success in the middle of a fall streak restarts it.
        check(
            "++--+---",
            &[Unknown, Up, Up, Up, Up, Up, Up, Down],
            &[None, Some(Up), None, None, None, None, None, Some(Down)],
        );
        // Down needs `rise` consecutive successes to come back.
        check(
            "---+-++",
            &[Unknown, Unknown, Down, Down, Down, Down, Up],
            &[None, None, Some(Down), None, None, None, Some(Up)],
        );
        // From unknown, mixed results decide nothing.
        check("+-+-", &[Unknown; 4], &[None; 4]);
    }

    #[test]
    fn a_hard_failure_ends_the_streak_at_fall_hard() {
        // Up, then one refusal: down at once.
        check("++!", &[Unknown, Up, Down], &[None, Some(Up), Some(Down)]);
        // Soft failures make the member suspect; it is not down until fall...
        let mut h = Hysteresis::default();
        let t = Thresholds {
            rise: 1,
            fall: 3,
            fall_hard: 2,
        };
        h.observe(ProbeResult::Success, t);
        assert_eq!(h.observe(ProbeResult::Failure, t), None);
        assert!(h.suspect());
        // ...but a hard failure second in the streak reaches fall_hard.
        assert_eq!(h.observe(ProbeResult::HardFailure, t), Some(Down));
        assert!(!h.suspect(), "down is decided, nothing to re-probe for");
        // Coming back still needs rise successes, and a success clears the suspicion.
        assert_eq!(h.observe(ProbeResult::Success, t), Some(Up));
        h.observe(ProbeResult::Failure, t);
        h.observe(ProbeResult::Success, t);
        assert!(!h.suspect());
        // fall_hard above fall counts as fall.
        let wide = Thresholds {
            rise: 1,
            fall: 2,
            fall_hard: 9,
        };
        let mut h = Hysteresis::default();
        h.observe(ProbeResult::Success, wide);
        h.observe(ProbeResult::HardFailure, wide);
        assert_eq!(h.observe(ProbeResult::HardFailure, wide), Some(Down));
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut h = Hysteresis::default();
        let one = Thresholds::new(1, 1);
        assert_eq!(h.observe(ProbeResult::Success, one), Some(Up));
        assert_eq!(h.observe(ProbeResult::Failure, one), Some(Down));
        assert_eq!(h.observe(ProbeResult::Failure, one), None);
        assert_eq!(
            h.observe(ProbeResult::Success, Thresholds::new(0, 0)),
            Some(Up),
            "0 counts as 1"
        );
    }
}
