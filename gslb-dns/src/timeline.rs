//! Answers per site over time, for the dashboard's timeline: once a second this node's
//! service answers are read from its DNS counters (by the site each sent clients to) and
//! kept for the last [`TIMELINE_SECONDS`]; the view turns them into answers per second and
//! lays the store's history (health changes, drains, drills, passive marks, cross-site
//! probes, deployments) over the same window, so a failover shows as one site's line
//! falling and another's rising at a marked change.
//!
//! What it is not: a metrics store. It is this node's view (each node answers its own
//! share of the queries), bounded in memory (a fixed number of samples of at most one
//! number per site), and gone on restart; Prometheus keeps the long history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use topology::Timestamp;
use topology::wire::views::{Change, TimelinePoint, TimelineView};

use crate::dns::counters::Counters;

/// How much the timeline keeps.
pub const TIMELINE_SECONDS: usize = 600;
/// How often it samples.
pub const STEP: Duration = Duration::from_secs(1);

/// The samples: when, and each site's answers so far (summed over services).
#[derive(Debug, Default)]
pub struct Timeline {
    samples: Mutex<VecDeque<(Timestamp, BTreeMap<String, u64>)>>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Records the running totals at `at`, dropping samples past the window.
    pub fn record(&self, at: Timestamp, totals: BTreeMap<String, u64>) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((at, totals));
        // One more than the window: the oldest only serves as the first point's baseline.
        while samples.len() > TIMELINE_SECONDS + 1 {
            samples.pop_front();
        }
    }

    /// Answers per site per step over the window, with `history`'s changes inside it.
    pub fn view(&self, history: &VecDeque<Change>) -> TimelineView {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut sites: Vec<String> = samples
            .iter()
            .flat_map(|(_, totals)| totals.keys().cloned())
            .collect();
        sites.sort();
        sites.dedup();
        let points: Vec<TimelinePoint> = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|((_, before), (at, now))| TimelinePoint {
                at: *at,
                answers: sites
                    .iter()
                    .map(|site| {
                        let now = now.get(site).copied().unwrap_or(0);
                        now.saturating_sub(before.get(site).copied().unwrap_or(0))
                    })
                    .collect(),
            })
            .collect();
        let from = samples.front().map_or(Timestamp(0), |(at, _)| *at);
        TimelineView {
            wire_version: topology::wire::WIRE_VERSION,
            step_ms: STEP.as_millis() as u64,
            sites,
            points,
            events: history.iter().filter(|c| c.at >= from).cloned().collect(),
        }
    }
}

/// Each site's answers so far, summed over the services.
fn totals(counters: &Counters) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for (_, site, answers) in counters.by_service_and_site() {
        *totals.entry(site).or_default() += answers;
    }
    totals
}

/// Samples `counters` into `timeline` every [`STEP`] until shutdown.
pub async fn sample(
    timeline: Arc<Timeline>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(STEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => timeline.record(state_store::clock::now(), totals(&counters)),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    fn change(at: u64, target: &str) -> Change {
        Change {
            index: at,
            at: Timestamp(at),
            target: target.into(),
            change: "admin drained".into(),
            who: "ops".into(),
            why: "test".into(),
            note: None,
        }
    }

    #[test]
    fn the_view_is_answers_per_step_with_the_changes_inside_the_window() {
        let timeline = Timeline::new();
        timeline.record(Timestamp(1_000), totals(&[("fra", 10)]));
        timeline.record(Timestamp(2_000), totals(&[("fra", 25), ("iad", 0)]));
        // fra drained: its answers stop, iad's start.
        timeline.record(Timestamp(3_000), totals(&[("fra", 25), ("iad", 7)]));
        let history: VecDeque<Change> = [change(500, "site sin"), change(2_500, "site fra")].into();
        let view = timeline.view(&history);
        assert_eq!(view.sites, ["fra", "iad"]);
        let points: Vec<(u64, Vec<u64>)> = view
            .points
            .iter()
            .map(|p| (p.at.0, p.answers.clone()))
            .collect();
        assert_eq!(points, [(2_000, vec![15, 0]), (3_000, vec![0, 7])]);
        // Only the change inside the window (from the oldest sample on).
        let events: Vec<&str> = view.events.iter().map(|c| c.target.as_str()).collect();
        assert_eq!(events, ["site fra"]);
    }

    #[test]
    fn the_window_is_bounded() {
        let timeline = Timeline::new();
        for i in 0..(TIMELINE_SECONDS as u64 + 50) {
            timeline.record(Timestamp(i * 1000), totals(&[("fra", i)]));
        }
        let view = timeline.view(&VecDeque::new());
        assert_eq!(view.points.len(), TIMELINE_SECONDS);
        assert!(view.points.iter().all(|p| p.answers == [1]));
        assert_eq!(view.points[0].at, Timestamp(50_000));
    }
}
