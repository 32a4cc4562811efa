//! The proxy's link to the state store: it follows a gslb-dns node's state stream
//! (`GET /api/v1/watch`, one typed [`WatchLine`] per applied change) and publishes the
//! members of this site it describes as a new [`Upstreams`] snapshot; and it posts client
//! RTT aggregates (`POST /api/v1/rtt`). With no node reachable it keeps the last state it
//! had (static stability) and tries the next node. A line it cannot read is an error in its
//! log and metrics and changes nothing: never an undrain by default.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portico_client::ApiClient;
use portico_client::watch::WatchEvent;
use topology::wire::views::WatchLine;
use topology::wire::{PassiveObservation, PassiveReport, WIRE_VERSION};

use crate::shared::Shared;
use crate::upstreams::Upstreams;

/// Follows the store until the process ends, failing over between its nodes.
pub async fn follow(api: Arc<ApiClient>, shared: Arc<Shared>) {
    let mut from: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    let mut warned_version = false;
    loop {
        match api.watch(from).await {
            Ok(mut watch) => {
                tracing::info!(node = %watch.node(), "following the store's state");
                shared.metrics.store_connected.store(1, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                loop {
                    match watch.next().await {
                        Ok(Some(WatchEvent::Line(line))) => {
                            if line.version > WIRE_VERSION && !warned_version {
                                warned_version = true;
                                tracing::warn!(
                                    theirs = line.version,
                                    ours = WIRE_VERSION,
                                    "the store speaks a newer wire version; reading what this build knows"
                                );
                            }
                            from = Some(line.index);
                            apply(&shared, &line);
                        }
                        Ok(Some(WatchEvent::Undecodable(error))) => {
                            shared
                                .metrics
                                .store_undecodable
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::error!(node = %watch.node(), %error, "a state from the store this build cannot read: keeping the last state");
                        }
                        Ok(None) => {
                            tracing::info!(node = %watch.node(), "state stream ended; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "state stream lost; keeping the last state");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "no store node to follow; keeping the last state"),
        }
        shared.metrics.store_connected.store(0, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Publishes the members `line` describes.
fn apply(shared: &Shared, line: &WatchLine) {
    let previous = shared.upstreams.load_full();
    let next = Upstreams::from_view(
        &line.state,
        line.index,
        &shared.site,
        &shared.services,
        &previous,
    );
    let changed = next
        .members()
        .filter(|m| {
            previous
                .pool(&m.service)
                .and_then(|p| p.members.iter().find(|o| o.node == m.node))
                .is_none_or(|o| o.weight != m.weight || o.address != m.address)
        })
        .count()
        + previous
            .members()
            .filter(|o| {
                next.pool(&o.service)
                    .is_none_or(|p| !p.members.iter().any(|m| m.node == o.node))
            })
            .count();
    shared.upstreams.store(Arc::new(next));
    shared
        .metrics
        .store_index
        .store(line.index, Ordering::Relaxed);
    shared.metrics.store_updates.fetch_add(1, Ordering::Relaxed);
    if changed > 0 {
        tracing::info!(
            changed,
            index = line.index,
            "member state from the store applied"
        );
    }
}

/// Posts the ejections `ejections` carries to the first node that takes them, at once (the
/// ones queued meanwhile go in the same report), so every DNS node and proxy stops using
/// the member within milliseconds. A report no node takes is retried once the next
/// ejection comes: the local ejection holds meanwhile.
pub async fn post_passive(
    api: Arc<ApiClient>,
    mut ejections: tokio::sync::mpsc::Receiver<PassiveObservation>,
    name: String,
    shared: Arc<Shared>,
) {
    while let Some(first) = ejections.recv().await {
        let mut members = vec![first];
        while let Ok(more) = ejections.try_recv() {
            if !members
                .iter()
                .any(|m| m.service == more.service && m.node == more.node)
            {
                members.push(more);
            }
        }
        let report = PassiveReport {
            site: shared.site.clone(),
            proxy: name.clone(),
            members,
        };
        let counter = match api.passive(&report).await {
            Ok(written) => {
                tracing::info!(
                    index = written.index,
                    members = report.members.len(),
                    "ejections reported to the store"
                );
                &shared.metrics.passive_reports
            }
            Err(e @ portico_client::ClientError::Refused { .. }) => {
                // The store read the report and marked nothing (another site's member, no
                // check, past the share a proxy may mark): the local ejection still holds.
                tracing::warn!(error = %e, "the store marked none of the ejected members");
                &shared.metrics.passive_report_failures
            }
            Err(e) => {
                tracing::warn!(error = %e, "ejections not reported: no store node took them");
                &shared.metrics.passive_report_failures
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Posts RTT aggregates every `every` to the first node that takes them.
pub async fn post_rtt(api: Arc<ApiClient>, every: Duration, shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(every).await;
        let Some(report) = shared.rtt.take_report(&shared.site) else {
            continue;
        };
        let counter = match api.rtt(&report).await {
            Ok(_) => &shared.metrics.rtt_posts,
            Err(e) => {
                tracing::debug!(error = %e, "RTT aggregates not taken");
                &shared.metrics.rtt_post_failures
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
