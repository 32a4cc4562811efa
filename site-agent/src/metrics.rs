//! The agent's Prometheus endpoint: per member its state, smoothed probe latency, reported
//! weight, probes and failed probes by reason; and the reports sent and failed.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use topology::Health;

use crate::agent::Trackers;

/// Report counters, shared with the reporter.
#[derive(Debug, Default)]
pub struct ReportCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// The Prometheus text of the agent's state.
pub fn render(trackers: &Trackers, reports: &ReportCounters, slow_probe: Duration) -> String {
    let mut out = String::new();
    let trackers = trackers.lock().unwrap_or_else(|e| e.into_inner());
    let families: [(&str, &str, &str); 5] = [
        (
            "portico_agent_member_up",
            "gauge",
            "1 when the member is up after rise/fall.",
        ),
        (
            "portico_agent_member_latency_microseconds",
            "gauge",
            "Smoothed probe latency.",
        ),
        (
            "portico_agent_member_weight_percent",
            "gauge",
            "Weight reported (load feedback, reduced while probes are slow).",
        ),
        ("portico_agent_probes_total", "counter", "Probes run."),
        (
            "portico_agent_probe_failures_total",
            "counter",
            "Failed probes, by reason.",
        ),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for tracker in trackers.values() {
            let labels = format!("service=\"{}\",node=\"{}\"", tracker.service, tracker.node);
            let observation = tracker.observation(slow_probe);
            match name {
                "portico_agent_member_up" => {
                    let _ = writeln!(
                        out,
                        "{name}{{{labels}}} {}",
                        u8::from(tracker.health() == Health::Up)
                    );
                }
                "portico_agent_member_latency_microseconds" => {
                    let _ = writeln!(
                        out,
                        "{name}{{{labels}}} {}",
                        observation.latency_us.unwrap_or(0)
                    );
                }
                "portico_agent_member_weight_percent" => {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", observation.weight_percent);
                }
                "portico_agent_probes_total" => {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", tracker.probes);
                }
                _ => {
                    for (reason, count) in &tracker.failures {
                        let reason = reason.replace(['"', '\\', '\n'], " ");
                        let _ = writeln!(out, "{name}{{{labels},reason=\"{reason}\"}} {count}");
                    }
                }
            }
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
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    out
}

/// Serves `GET /metrics` (any path) on `listener`.
pub async fn serve(
    listener: TcpListener,
    trackers: Trackers,
    reports: Arc<ReportCounters>,
    slow_probe: Duration,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let body = render(&trackers, &reports, slow_probe);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
