//! The agent's Prometheus endpoint: per member its state, smoothed probe latency, reported
//! weight, probes and failed probes by reason; and the reports sent and failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use topology::Health;
use topology::exposition::{Exposition, Kind, PerItem};

use crate::tracker::{Tracker, Trackers};

/// Report counters, shared with the reporter.
#[derive(Debug, Default)]
pub struct ReportCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// The Prometheus text of the agent's state.
pub fn render(trackers: &Trackers, reports: &ReportCounters, slow_probe: Duration) -> String {
    let mut out = Exposition::new();
    let trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
    let per_member: [PerItem<Tracker>; 4] = [
        (
            "portico_agent_member_up",
            Kind::Gauge,
            "1 when the member is up after rise/fall.",
            &|t| u64::from(t.health() == Health::Up),
        ),
        (
            "portico_agent_member_latency_microseconds",
            Kind::Gauge,
            "Smoothed probe latency.",
            &|t| u64::from(t.observation(slow_probe).latency_us.unwrap_or(0)),
        ),
        (
            "portico_agent_member_weight_percent",
            Kind::Gauge,
            "Weight reported (load feedback, reduced while probes are slow).",
            &|t| u64::from(t.observation(slow_probe).weight_percent),
        ),
        (
            "portico_agent_probes_total",
            Kind::Counter,
            "Probes run.",
            &|t| t.probes,
        ),
    ];
    for (name, kind, help, value) in per_member {
        out.family(name, kind, help);
        for tracker in trackers.values() {
            out.sample(
                name,
                &[("service", &tracker.service), ("node", &tracker.node)],
                value(tracker),
            );
        }
    }
    let failures = "portico_agent_probe_failures_total";
    out.family(failures, Kind::Counter, "Failed probes, by reason.");
    for tracker in trackers.values() {
        for (reason, count) in &tracker.failures {
            out.sample(
                failures,
                &[
                    ("service", &tracker.service),
                    ("node", &tracker.node),
                    ("reason", reason),
                ],
                *count,
            );
        }
    }
    for (name, help, value) in [
        (
            "portico_agent_reports_total",
            "Reports the store took.",
            &reports.sent,
        ),
        (
            "portico_agent_report_failures_total",
            "Report rounds no gslb-dns node took.",
            &reports.failed,
        ),
    ] {
        out.single(name, Kind::Counter, help, value.load(Ordering::Relaxed));
    }
    out.finish()
}
