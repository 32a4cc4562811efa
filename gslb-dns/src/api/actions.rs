//! Admin actions: drain, undrain, maintenance and force-down of a member, a site or a
//! service. Each is one replicated command, recorded in the history with who asked (the authenticated identity), why, and the
//! request's own `who` as a note.

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::{Extension, Json};
use topology::AdminState;
use topology::wire::views::{ActionDone, ActionRequest};
use topology::wire::{AdminAction, Command, Target};

use super::auth::Identity;
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
    identity: Identity,
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
    let by = identity.attribution(request.who, request.why.unwrap_or_default())?;
    let action = AdminAction {
        target: target.clone(),
        admin,
        who: by.who,
        why: by.why,
        note: by.note,
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
    Extension(identity): Extension<Identity>,
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
        identity,
        Target::Member { service, node },
        &action,
        &body,
    )
    .await
}

/// `POST /api/v1/sites/{site}/{action}`.
pub async fn site(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    Path((site, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    ctx.control
        .snapshot()
        .deployment
        .site_by_name(&site)
        .ok_or_else(|| ApiError::NotFound(format!("no site {site:?}")))?;
    act(&ctx, identity, Target::Site { site }, &action, &body).await
}

/// `POST /api/v1/services/{service}/{action}`.
pub async fn service(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    Path((service, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    ctx.control
        .snapshot()
        .deployment
        .service_by_name(&service)
        .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
    act(&ctx, identity, Target::Service { service }, &action, &body).await
}
