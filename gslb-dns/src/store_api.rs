//! The store's HTTP side on every node: ingest (agent reports, RTT samples), the watch
//! stream of applied state, the store's status and membership changes. Writes are
//! proposed through the local replica (a follower forwards them to the leader) and answered
//! only once applied here, or with 503 and a retry hint.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use state_store::{Committed, Membership, NodeAddress, Outcome, ProposeError};
use topology::wire::{AgentReport, Command, RttReport};

use crate::admin::{AdminContext, ApiError, state_view};

/// Proposes a command and waits until this node's answers reflect it.
pub async fn propose(ctx: &AdminContext, command: Command) -> Result<Committed, ApiError> {
    let committed = ctx.store.node.propose(command).await.map_err(|e| match e {
        ProposeError::Encode(why) => ApiError::BadRequest(why),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    if let Outcome::Ignored(why) = &committed.outcome {
        return Err(ApiError::Unprocessable(format!(
            "committed at {} but not applied: {why}",
            committed.index
        )));
    }
    // The snapshot follows the machine asynchronously; wait briefly so a client that reads
    // right after this returns sees its change.
    let deadline = Instant::now() + Duration::from_secs(1);
    while ctx.control.snapshot().store.applied < committed.index && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(committed)
}

pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// Proposes what a site's agent or proxy sent, once the site is known.
async fn ingest(
    ctx: &AdminContext,
    site: &str,
    command: Command,
) -> Result<Json<serde_json::Value>, ApiError> {
    if ctx.control.deployment().site_by_name(site).is_none() {
        return Err(ApiError::NotFound(format!("no site {site:?}")));
    }
    let committed = propose(ctx, command).await?;
    Ok(Json(serde_json::json!({ "index": committed.index })))
}

/// `POST /api/v1/reports`: a site agent's report.
pub async fn report(
    AxumState(ctx): AxumState<AdminContext>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report: AgentReport = json(&body)?;
    let site = report.site.clone();
    ingest(&ctx, &site, Command::AgentReport(report)).await
}

/// `POST /api/v1/rtt`: a proxy's RTT aggregates.
pub async fn rtt(
    AxumState(ctx): AxumState<AdminContext>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report: RttReport = json(&body)?;
    let site = report.site.clone();
    ingest(&ctx, &site, Command::RttSamples(report)).await
}

/// `GET /api/v1/rtt`: the RTT table (site -> client prefix -> RTT), as applied here.
pub async fn rtt_table(AxumState(ctx): AxumState<AdminContext>) -> Json<serde_json::Value> {
    let machine = ctx.control.machine();
    Json(serde_json::json!({ "applied": machine.applied, "rtt": machine.rtt }))
}

/// `GET /api/v1/store`: raft status, peers, degraded.
pub async fn status(AxumState(ctx): AxumState<AdminContext>) -> Json<serde_json::Value> {
    let status = ctx.store.status();
    Json(serde_json::json!({
        "node": status,
        "peers": ctx.store.transport.peer_states(),
        "nodes": ctx.control.machine().nodes,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    id: u64,
    raft: String,
    #[serde(default)]
    api: Option<String>,
    /// Join as a learner (a read replica that does not vote); default true.
    #[serde(default = "yes")]
    learner: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/store/nodes`: add a learner or a voter.
pub async fn add_node(
    AxumState(ctx): AxumState<AdminContext>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let add: AddNode = json(&body)?;
    if add.id == 0 {
        return Err(ApiError::BadRequest("node ids start at 1".into()));
    }
    add.raft
        .parse::<std::net::SocketAddr>()
        .map_err(|_| ApiError::BadRequest(format!("raft {:?} is not an address:port", add.raft)))?;
    let change = if add.learner {
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
    Ok(Json(
        serde_json::json!({ "proposed": change, "id": add.id }),
    ))
}

/// `DELETE /api/v1/store/nodes/{id}`: remove a node from the cluster.
pub async fn remove_node(
    AxumState(ctx): AxumState<AdminContext>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(
        serde_json::json!({ "proposed": Membership::Remove, "id": id }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// Resume after this applied index: the first line comes once the state is newer.
    from: Option<u64>,
}

/// `GET /api/v1/watch?from=N`: newline-delimited JSON, one line per applied change (the
/// whole state with its index), starting with the current state (or the first newer than
/// `from`). Level-triggered: a slow reader skips intermediate states, never the latest.
pub async fn watch(
    AxumState(ctx): AxumState<AdminContext>,
    Query(params): Query<WatchParams>,
) -> Response {
    let applied = ctx.store.node.subscribe();
    let start = (ctx, applied, params.from, true);
    let stream =
        futures_util::stream::unfold(start, |(ctx, mut applied, after, first)| async move {
            loop {
                let index = applied.borrow_and_update().machine.applied;
                if after.is_none_or(|after| index > after) && (first || index > 0) {
                    let deadline = Instant::now() + Duration::from_secs(1);
                    while ctx.control.snapshot().store.applied < index && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let snapshot = ctx.control.snapshot();
                    let mut line = serde_json::to_vec(&serde_json::json!({
                        "index": index,
                        "degraded": snapshot.store.degraded_since.is_some(),
                        "state": state_view(&snapshot),
                    }))
                    .unwrap_or_default();
                    line.push(b'\n');
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                        (ctx, applied, Some(index), false),
                    ));
                }
                if applied.changed().await.is_err() {
                    return None;
                }
            }
        });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
