//! The store's HTTP side on every node: ingest (agent reports, RTT samples), the watch
//! stream of applied state, the store's status and membership changes. Writes are
//! proposed through the local replica (a follower forwards them to the leader) and answered
//! only once applied here, or with 503 and a retry hint.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use state_store::Membership;
use topology::wire::views::{
    AddNode, MembershipProposed, NodeAddress, RttTable, StoreStatus, WatchLine,
};
use topology::wire::{
    AgentReport, Command, PassivePending, PassiveReport, RttReport, WIRE_VERSION, Written,
    accepted_text,
};

use super::auth::Identity;
use super::context::{ApiContext, json};
use super::error::ApiError;
use super::state::state_view;
use crate::metrics::Refusal;

/// How often the watch stream sends a blank line while nothing changes, so a reader can
/// tell a quiet stream from a dead one.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(5);

/// Proposes what a site's agent or proxy sent, once the site is known.
async fn ingest(ctx: &ApiContext, site: &str, command: Command) -> Result<Json<Written>, ApiError> {
    if ctx
        .control
        .snapshot()
        .deployment
        .site_by_name(site)
        .is_none()
    {
        return Err(ApiError::NotFound(format!("no site {site:?}")));
    }
    let committed = ctx.store.write(&ctx.control, command).await?;
    Ok(Json(Written {
        index: committed.index,
        passive: Vec::new(),
        vantage: Vec::new(),
    }))
}

/// `POST /api/v1/reports`: a site agent's report, from the operator or that site's agent;
/// names and reasons over [`topology::wire::MAX_ACCEPTED_TEXT`] bytes are refused.
pub async fn report(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Result<Json<Written>, ApiError> {
    let report: AgentReport = json(&body)?;
    identity
        .may_report_for(&report.site)
        .inspect_err(|_| ctx.metrics.admin.refused(Refusal::Forbidden))?;
    accepted_text("agent", &report.agent).map_err(ApiError::BadRequest)?;
    for (i, member) in report.members.iter().enumerate() {
        accepted_text(&format!("members[{i}].reason"), &member.reason)
            .map_err(ApiError::BadRequest)?;
    }
    let site = report.site.clone();
    let mut written = ingest(&ctx, &site, Command::AgentReport(report)).await?;
    written.passive = passive_pending(&ctx, &site);
    written.vantage = vantage_wanted(&ctx, &site, state_store::clock::now());
    Ok(written)
}

/// The sites other than `site` whose agents have been quiet for more than half their
/// shortest `stale_after`: the reporting agent is to probe their members across sites, so
/// that by the time their telemetry turns stale the store knows whether anyone still
/// reaches them. Only sites whose agent has reported at least once (one never deployed is
/// not "lost").
fn vantage_wanted(ctx: &ApiContext, site: &str, now: topology::Timestamp) -> Vec<String> {
    let snapshot = ctx.control.snapshot();
    let deployment = &snapshot.deployment;
    // Each site's shortest stale_after among its checked members (one pass).
    let mut shortest: Vec<Option<u64>> = vec![None; deployment.sites.len()];
    for member in &deployment.members {
        let service = deployment.service(member.service);
        if service.check.is_some() {
            let stale = service.stale_after.as_millis() as u64;
            let slot = &mut shortest[member.site.0 as usize];
            *slot = Some(slot.map_or(stale, |s| s.min(stale)));
        }
    }
    deployment
        .site_ids()
        .filter(|id| deployment.site(*id).name != site)
        .filter(|id| {
            let last = snapshot.state.site(*id).last_report;
            matches!((shortest[id.0 as usize], last), (Some(stale), Some(at)) if now.saturating_since(at) > stale / 2)
        })
        .map(|id| deployment.site(id).name.clone())
        .collect()
}

/// The passive marks on `site`'s members, as applied here: what its agent is to confirm.
fn passive_pending(ctx: &ApiContext, site: &str) -> Vec<PassivePending> {
    let snapshot = ctx.control.snapshot();
    let deployment = &snapshot.deployment;
    deployment
        .members
        .iter()
        .filter(|m| deployment.site(m.site).name == site)
        .filter_map(|m| {
            let mark = snapshot.state.member(m.id).passive.as_ref()?;
            Some(PassivePending {
                service: deployment.service(m.service).name.clone(),
                node: m.node.clone(),
                mark: mark.index,
            })
        })
        .collect()
}

/// `POST /api/v1/passive`: members a proxy of that site (or the operator) saw fail on the
/// data path; names and reasons over [`topology::wire::MAX_ACCEPTED_TEXT`] bytes are refused.
pub async fn passive(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Result<Json<Written>, ApiError> {
    let report: PassiveReport = json(&body)?;
    identity
        .may_post_as_proxy_for(&report.site, "passive reports")
        .inspect_err(|_| ctx.metrics.admin.refused(Refusal::Forbidden))?;
    accepted_text("proxy", &report.proxy).map_err(ApiError::BadRequest)?;
    if report.members.is_empty() {
        return Err(ApiError::BadRequest("`members` is empty".into()));
    }
    for (i, member) in report.members.iter().enumerate() {
        accepted_text(&format!("members[{i}].reason"), &member.reason)
            .map_err(ApiError::BadRequest)?;
    }
    let site = report.site.clone();
    ingest(&ctx, &site, Command::PassiveReport(report)).await
}

/// `POST /api/v1/rtt`: a proxy's RTT aggregates, from the operator or a proxy of that site.
pub async fn rtt(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Result<Json<Written>, ApiError> {
    let report: RttReport = json(&body)?;
    identity
        .may_post_as_proxy_for(&report.site, "RTT samples")
        .inspect_err(|_| ctx.metrics.admin.refused(Refusal::Forbidden))?;
    let site = report.site.clone();
    ingest(&ctx, &site, Command::RttSamples(report)).await
}

/// `GET /api/v1/rtt`: the RTT table (site -> client prefix -> RTT), as applied here.
pub async fn rtt_table(AxumState(ctx): AxumState<ApiContext>) -> Json<RttTable> {
    let machine = ctx.control.machine();
    Json(RttTable {
        applied: machine.applied,
        rtt: (*machine.rtt).clone(),
    })
}

/// `GET /api/v1/store`: raft status, peers, nodes added by membership changes.
pub async fn status(AxumState(ctx): AxumState<ApiContext>) -> Json<StoreStatus> {
    Json(StoreStatus {
        node: ctx.store.status(),
        peers: ctx.store.transport.peer_states(),
        nodes: (*ctx.control.machine().nodes).clone(),
    })
}

/// `POST /api/v1/store/nodes`: add a learner or a voter.
pub async fn add_node(
    AxumState(ctx): AxumState<ApiContext>,
    body: Bytes,
) -> Result<Json<MembershipProposed>, ApiError> {
    let add: AddNode = json(&body)?;
    if add.id == 0 {
        return Err(ApiError::BadRequest("node ids start at 1".into()));
    }
    add.raft
        .parse::<std::net::SocketAddr>()
        .map_err(|_| ApiError::BadRequest(format!("raft {:?} is not an address:port", add.raft)))?;
    let change = if add.learner.unwrap_or(true) {
        Membership::AddLearner
    } else {
        Membership::AddVoter
    };
    let address = NodeAddress {
        raft: add.raft,
        api: add.api,
    };
    ctx.store
        .change_membership(add.id, change, Some(address))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(MembershipProposed {
        proposed: membership_name(change).into(),
        id: add.id,
    }))
}

fn membership_name(change: Membership) -> &'static str {
    match change {
        Membership::AddVoter => "add-voter",
        Membership::AddLearner => "add-learner",
        Membership::Remove => "remove",
    }
}

/// `DELETE /api/v1/store/nodes/{id}`: remove a node from the cluster.
pub async fn remove_node(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<u64>,
) -> Result<Json<MembershipProposed>, ApiError> {
    let status = ctx.store.status();
    if !status.voters.contains(&id) && !status.learners.contains(&id) {
        return Err(ApiError::NotFound(format!(
            "node {id} is not in the cluster"
        )));
    }
    ctx.store
        .change_membership(id, Membership::Remove, None)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(MembershipProposed {
        proposed: membership_name(Membership::Remove).into(),
        id,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// Resume after this applied index: the first line comes once the state is newer.
    from: Option<u64>,
}

/// `GET /api/v1/watch?from=N`: newline-delimited JSON, one [`WatchLine`] per applied change
/// (the whole state with its index), starting with the current state (or the first newer
/// than `from`); a blank line every [`WATCH_HEARTBEAT`] while nothing changes.
/// Level-triggered: a slow reader skips intermediate states, never the latest.
pub async fn watch(
    AxumState(ctx): AxumState<ApiContext>,
    Query(params): Query<WatchParams>,
) -> Response {
    let applied = ctx.control.watch_applied();
    let start = (ctx, applied, params.from, true);
    let stream =
        futures_util::stream::unfold(start, |(ctx, mut applied, after, first)| async move {
            loop {
                let index = *applied.borrow_and_update();
                if after.is_none_or(|after| index > after) && (first || index > 0) {
                    let snapshot = ctx.control.snapshot();
                    let line = WatchLine {
                        version: WIRE_VERSION,
                        index: snapshot.store.applied,
                        config_version: snapshot.config_version,
                        degraded: snapshot.store.degraded_since.is_some(),
                        state: state_view(&snapshot),
                    };
                    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                    bytes.push(b'\n');
                    let next = Some(line.index.max(index));
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(bytes)),
                        (ctx, applied, next, false),
                    ));
                }
                match tokio::time::timeout(WATCH_HEARTBEAT, applied.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return None,
                    Err(_) => {
                        return Some((Ok(Bytes::from_static(b"\n")), (ctx, applied, after, first)));
                    }
                }
            }
        });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
