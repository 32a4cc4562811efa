//! Rise/fall hysteresis: a member goes up after `rise` consecutive successful probes and
//! down after `fall` consecutive failures, so one lost packet does not flap it. Pure: the
//! site agent feeds it probe results; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use crate::state::Health;

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

    /// Feeds one probe result; returns the new health when it changed. A result that agrees
    /// with the current health breaks any streak towards the other state.
    pub fn observe(&mut self, success: bool, rise: u32, fall: u32) -> Option<Health> {
        let (target, needed) = if success {
            (Health::Up, rise.max(1))
        } else {
            (Health::Down, fall.max(1))
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

    /// Feeds `results` ('+' success, '-' failure) with rise 2, fall 3; returns the health
    /// after each result and the transitions.
    fn check(results: &str, expected_health: &[Health], expected_transitions: &[Option<Health>]) {
        let mut h = Hysteresis::default();
        let mut healths = Vec::new();
        let mut transitions = Vec::new();
        for c in results.chars() {
            transitions.push(h.observe(c == '+', 2, 3));
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
    fn rise_and_fall_of_one_follow_every_result() {
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(true, 1, 1), Some(Up));
        assert_eq!(h.observe(false, 1, 1), Some(Down));
        assert_eq!(h.observe(false, 1, 1), None);
        assert_eq!(h.observe(true, 0, 0), Some(Up), "0 counts as 1");
    }
}
