//! Drills through the API: start one (and wait for its report, or not), list, get.

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use topology::wire::drill::{DrillList, DrillReport, DrillRequest, DrillStarted};

use super::auth::Identity;
use super::context::{ApiContext, json};
use super::error::ApiError;
use crate::drill::{DrillContext, PlanError, nodes_to_ask, plan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillParams {
    /// Answer with the report once the drill has ended (else 202 with its id at once).
    #[serde(default)]
    wait: bool,
}

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> ApiError {
        match error {
            PlanError::NotFound(why) => ApiError::NotFound(why),
            PlanError::Invalid(why) => ApiError::BadRequest(why),
            PlanError::Refused(why) => ApiError::Conflict(why),
        }
    }
}

/// `POST /api/v1/drills[?wait=true]`.
pub async fn start(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    Query(params): Query<DrillParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DrillRequest = json(&body)?;
    let by = identity.attribution(request.who.clone(), request.why.clone().unwrap_or_default())?;
    let (nodes, not_queried) = nodes_to_ask(&ctx.store, &ctx.dns);
    let plan = plan(
        &ctx.control.snapshot(),
        &request,
        nodes,
        not_queried,
        &by,
        ctx.drills.next_id(),
    )?;
    if !ctx.drills.begin() {
        return Err(ApiError::Conflict(
            "a drill is already running on this node".into(),
        ));
    }
    let id = plan.id;
    // The drill runs in its own task: a client that goes away mid-drill must not cancel
    // it between the drain and the restore.
    let running = DrillContext {
        store: ctx.store.clone(),
        control: ctx.control.clone(),
        drills: ctx.drills.clone(),
    };
    let drill = tokio::spawn(crate::drill::run(running, plan));
    if params.wait {
        let report = drill
            .await
            .map_err(|e| ApiError::Unavailable(format!("drill {id} failed: {e}")))?;
        return Ok(Json(report).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(DrillStarted {
            id,
            status: "running".into(),
            report: format!("/api/v1/drills/{id}"),
        }),
    )
        .into_response())
}

/// `GET /api/v1/drills`: the reports kept on this node, newest first.
pub async fn list(AxumState(ctx): AxumState<ApiContext>) -> Json<DrillList> {
    Json(DrillList {
        drills: ctx.drills.reports(),
    })
}

/// `GET /api/v1/drills/{id}`.
pub async fn get(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<u64>,
) -> Result<Json<DrillReport>, ApiError> {
    ctx.drills.report(id).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!("no drill {id} on this node (running, or never)"))
    })
}
