//! The replicated deployment through the API: show the current version, its history,
//! apply a new one (or compare, with `?dry_run=true`), roll back to a kept one.

use axum::body::Bytes;
use axum::extract::{Query, State as AxumState};
use axum::{Extension, Json};
use serde::Deserialize;
use state_store::clock::now;
use topology::wire::Command;
use topology::wire::config::{
    ConfigApply, ConfigHistory, ConfigOutcome, ConfigRollback, ConfigView, DeploymentChange,
};

use super::auth::Identity;
use super::context::{ApiContext, json};
use super::error::ApiError;
use crate::deployment::{ChangeError, Prepared, Source, prepare};
use crate::store::Attribution;
use crate::store::WriteError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeParams {
    /// Say what would change; change nothing.
    #[serde(default)]
    dry_run: bool,
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> ApiError {
        match error {
            ChangeError::Invalid(e) => ApiError::Unprocessable {
                message: format!("the configuration is not valid: {e}"),
                key: Some(e.key().to_owned()),
                line: match &e {
                    topology::ConfigError::Syntax { line, .. } => Some(*line),
                    topology::ConfigError::Invalid { line, .. } => *line,
                },
            },
            e @ ChangeError::Unservable(_) => ApiError::unprocessable(e.to_string()),
        }
    }
}

/// `GET /api/v1/config`: the deployment this node answers from.
pub async fn show(AxumState(ctx): AxumState<ApiContext>) -> Json<ConfigView> {
    let machine = ctx.control.machine();
    let file = ctx.file_document.as_str();
    Json(match machine.current_version() {
        Some(current) => ConfigView {
            version: current.record.version,
            index: current.record.index,
            at: Some(current.record.at),
            who: Some(current.record.who.clone()),
            why: Some(current.record.why.clone()),
            document: current.document.clone(),
            file_differs: current.document != file,
        },
        None => ConfigView {
            version: 0,
            index: 0,
            at: None,
            who: None,
            why: None,
            document: file.to_owned(),
            file_differs: false,
        },
    })
}

/// `GET /api/v1/config/history`: the versions kept, oldest first.
pub async fn history(AxumState(ctx): AxumState<ApiContext>) -> Json<ConfigHistory> {
    let machine = ctx.control.machine();
    Json(ConfigHistory {
        current: machine.version(),
        versions: machine
            .config_versions
            .iter()
            .map(|v| v.record.clone())
            .collect(),
    })
}

/// Proposes a prepared change (unless dry, or a change of nothing) and says what it did.
async fn change(
    ctx: &ApiContext,
    prepared: Prepared,
    dry_run: bool,
    expect_version: Option<u64>,
    by: Attribution,
    rollback_of: Option<u64>,
) -> Result<Json<ConfigOutcome>, ApiError> {
    let mut outcome = prepared.outcome;
    let current = ctx.control.machine();
    let unchanged = current
        .current_version()
        .is_some_and(|v| v.document == prepared.document);
    if let Some(expected) = expect_version
        && expected != outcome.from_version
    {
        return Err(ApiError::Conflict(format!(
            "the deployment is at version {}, not {expected}: compare with the current version and apply again",
            outcome.from_version
        )));
    }
    if dry_run || unchanged {
        outcome.dry_run = dry_run;
        if unchanged {
            outcome.version = Some(outcome.from_version);
        }
        return Ok(Json(outcome));
    }
    let command = Command::Deployment(DeploymentChange {
        document: prepared.document,
        // Applied only on the version it was compared with: a change made meanwhile by
        // someone else is not silently undone.
        expect_version: Some(outcome.from_version),
        who: by.who,
        why: by.why,
        rollback_of,
        note: by.note,
    });
    let committed = match ctx.store.write(&ctx.control, command).await {
        Ok(committed) => committed,
        Err(WriteError::NotApplied { why, .. }) if why.contains("the deployment is at version") => {
            return Err(ApiError::Conflict(why));
        }
        Err(e) => return Err(e.into()),
    };
    outcome.dry_run = false;
    outcome.version = Some(outcome.from_version + 1);
    outcome.index = Some(committed.index);
    Ok(Json(outcome))
}

/// `POST /api/v1/config[?dry_run=true]`.
pub async fn apply(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    Query(params): Query<ChangeParams>,
    body: Bytes,
) -> Result<Json<ConfigOutcome>, ApiError> {
    let request: ConfigApply = json(&body)?;
    let by = identity.attribution(request.who, request.why)?;
    let snapshot = ctx.control.snapshot();
    let machine = ctx.control.machine();
    let prepared = prepare(&snapshot, &machine, Source::File(&request.document), now())?;
    change(
        &ctx,
        prepared,
        params.dry_run,
        request.expect_version,
        by,
        None,
    )
    .await
}

/// `POST /api/v1/config/rollback[?dry_run=true]`: the document of a kept version, applied
/// as a new version.
pub async fn rollback(
    AxumState(ctx): AxumState<ApiContext>,
    Extension(identity): Extension<Identity>,
    Query(params): Query<ChangeParams>,
    body: Bytes,
) -> Result<Json<ConfigOutcome>, ApiError> {
    let request: ConfigRollback = json(&body)?;
    let by = identity.attribution(request.who, request.why)?;
    let machine = ctx.control.machine();
    let stored = machine.stored_version(request.version).ok_or_else(|| {
        ApiError::NotFound(format!(
            "version {} is not kept (the store keeps the last {} versions)",
            request.version,
            state_store::machine::CONFIG_VERSIONS_KEPT
        ))
    })?;
    let snapshot = ctx.control.snapshot();
    let prepared = prepare(
        &snapshot,
        &machine,
        Source::Document(&stored.document),
        now(),
    )?;
    change(
        &ctx,
        prepared,
        params.dry_run,
        None,
        by,
        Some(request.version),
    )
    .await
}
