//! Admin actions: drain, undrain, maintenance and force-down of a member, a site or a
//! service. Each is one replicated command, recorded in the history with who and why.

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::{Extension, Json};
use topology::AdminState;
use topology::wire::views::{ActionDone, ActionRequest};
use topology::wire::{AdminAction, Command, Target};

use super::auth::Caller;
use super::context::{ApiContext, json};
use super::error::ApiError;

fn parse_action(action: &str) -> Result<AdminState, ApiError> {
    match action {
        "drain" => Ok(AdminState::Drained),
        "undrain" | "clear" | "activate" => Ok(AdminState::Active),
        "maintenance" => Ok(AdminState::Maintenance),
        "force-down" => Ok(AdminState::ForcedDown),
        other => Err(ApiError::NotFound(format!(
            "unknown action {other:?} (drain, undrain, maintenance, force-down, clear)"
        ))),
    }
}

async fn act(
    ctx: &ApiContext,
    caller: Caller,
    target: Target,
    action: &str,
    body: &[u8],
) -> Result<Json<ActionDone>, ApiError> {
    let admin = parse_action(action)?;
    let request: ActionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ActionRequest::default()
    } else {
        json(body)?
    };
    let action = AdminAction {
        target: target.clone(),
        admin,
        who: request.who.unwrap_or(caller.0),
        why: request.why.unwrap_or_default(),
    };
    let committed = ctx
        .store
        .write(&ctx.control, Command::Admin(action))
        .await?;
    Ok(Json(ActionDone {
        target: target.to_string(),
        admin,
        index: committed.index,
    }))
}

/// `POST /api/v1/members/{service}/{node}/{action}`.
pub async fn member(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((service, node, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    ctx.control
        .snapshot()
        .deployment
        .member_by_name(&service, &node)
        .ok_or_else(|| ApiError::NotFound(format!("no member {node:?} in service {service:?}")))?;
    act(
        &ctx,
        caller,
        Target::Member { service, node },
        &action,
        &body,
    )
    .await
}

/// `POST /api/v1/sites/{site}/{action}`.
pub async fn site(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((site, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    ctx.control
        .snapshot()
        .deployment
        .site_by_name(&site)
        .ok_or_else(|| ApiError::NotFound(format!("no site {site:?}")))?;
    act(&ctx, caller, Target::Site { site }, &action, &body).await
}

/// `POST /api/v1/services/{service}/{action}`.
pub async fn service(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((service, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    ctx.control
        .snapshot()
        .deployment
        .service_by_name(&service)
        .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
    act(&ctx, caller, Target::Service { service }, &action, &body).await
}
