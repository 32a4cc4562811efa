//! The admin HTTP API (axum): state, explain, admin actions, history and Prometheus
//! metrics. Errors become JSON responses in exactly one place ([`ApiError`]).

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topology::wire::{AdminAction, Command, Target};
use topology::{AdminState, ClientLocation, DomainName, Family, Health, Timestamp};

use crate::auth::Caller;
use crate::control::Control;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AdminContext {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<crate::store::Store>,
    /// This node's DNS addresses (drills ask them).
    pub dns: Vec<std::net::SocketAddr>,
    pub drills: Arc<crate::drill::Drills>,
}

/// The admin API's routes.
pub fn router(context: AdminContext) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/ui/index.html", get(dashboard))
        .route("/api/v1/state", get(state))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/history", get(history))
        .route(
            "/api/v1/members/{service}/{node}/{action}",
            post(member_action),
        )
        .route("/api/v1/sites/{site}/{action}", post(site_action))
        .route("/api/v1/drills", get(list_drills).post(start_drill))
        .route("/api/v1/drills/{id}", get(get_drill))
        .route("/api/v1/services/{service}/{action}", post(service_action))
        .route("/api/v1/reports", post(crate::store_api::report))
        .route(
            "/api/v1/rtt",
            post(crate::store_api::rtt).get(crate::store_api::rtt_table),
        )
        .route("/api/v1/watch", get(crate::store_api::watch))
        .route("/api/v1/store", get(crate::store_api::status))
        .route("/api/v1/store/nodes", post(crate::store_api::add_node))
        .route(
            "/api/v1/store/nodes/{id}",
            axum::routing::delete(crate::store_api::remove_node),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(context)
}

/// Every way a request can fail, and the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Valid, but the store did not apply it (an old report, a name it does not know).
    #[error("{0}")]
    Unprocessable(String),
    /// The store cannot take writes right now (no leader, or too slow): retry.
    #[error("{0}")]
    Unavailable(String),
    /// Refused in the current state (a drill already running, or one that would leave no
    /// healthy site).
    #[error("{0}")]
    Conflict(String),
}

/// How long a client should wait before retrying an `Unavailable` write.
const RETRY_AFTER_SECONDS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
        };
        let mut body = serde_json::json!({ "error": self.to_string() });
        if status == StatusCode::SERVICE_UNAVAILABLE {
            body["retry_after_ms"] = (RETRY_AFTER_SECONDS * 1000).into();
            return (
                status,
                [(header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string())],
                Json(body),
            )
                .into_response();
        }
        (status, Json(body)).into_response()
    }
}

/// Milliseconds since the epoch, now.
pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

#[derive(Serialize)]
struct MemberView {
    node: String,
    site: String,
    address: IpAddr,
    health: Health,
    reason: String,
    admin: AdminState,
    weight: u32,
    weight_percent: u32,
    eligible: bool,
    ineligible: Option<String>,
    /// The weight the site's proxies give it for new connections (0: none).
    proxy_weight: u32,
    /// What the node's own load-feedback agent asked for.
    agent_admin: AdminState,
    /// Smoothed probe latency, when probes report one.
    latency_us: Option<u32>,
}

async fn state(AxumState(ctx): AxumState<AdminContext>) -> Json<serde_json::Value> {
    Json(state_view(&ctx.control.snapshot()))
}

/// The web dashboard: one page, its script and style inline, embedded in the binary (no
/// CDN, works offline). It reads the state, follows the watch stream and posts actions.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("ui/index.html"),
    )
}

/// Sites, services and members as the answers see them (the admin API's state and every
/// line of the watch stream).
pub fn state_view(snapshot: &crate::Snapshot) -> serde_json::Value {
    let deployment = &snapshot.deployment;
    let sites: Vec<_> = deployment
        .site_ids()
        .map(|id| {
            let site = deployment.site(id);
            let state = snapshot.state.site(id);
            serde_json::json!({
                "name": site.name,
                "location": site.location,
                "client_networks": site.client_networks,
                "admin": state.admin,
                "last_report_ms": state.last_report,
            })
        })
        .collect();
    let services: Vec<_> = deployment
        .services
        .iter()
        .map(|service| {
            let members: Vec<MemberView> = service
                .members
                .iter()
                .map(|id| {
                    let member = deployment.member(*id);
                    let ms = snapshot.state.member(*id);
                    let address = snapshot.state.address_of(deployment, *id);
                    let family = Family::of(&address);
                    let verdict = topology::select::member_verdict(
                        deployment,
                        &snapshot.state,
                        *id,
                        family,
                        snapshot.built_at,
                    );
                    MemberView {
                        node: member.node.clone(),
                        site: deployment.site(member.site).name.clone(),
                        address,
                        health: ms.health,
                        reason: ms.reason.clone(),
                        admin: ms.admin,
                        weight: member.weight,
                        weight_percent: ms.weight_percent,
                        eligible: verdict.is_ok(),
                        ineligible: verdict.err().map(|why| why.to_string()),
                        proxy_weight: topology::select::proxy_verdict(
                            deployment,
                            &snapshot.state,
                            *id,
                        )
                        .unwrap_or(0),
                        agent_admin: ms.agent_admin,
                        latency_us: ms.latency_us,
                    }
                })
                .collect();
            serde_json::json!({
                "name": service.name,
                "fqdn": service.fqdn,
                "policy": service.policy,
                "ttl": service.ttl,
                "max_answers": service.max_answers,
                "min_healthy": service.min_healthy,
                "when_all_down": service.when_all_down,
                "members": members,
            })
        })
        .collect();
    serde_json::json!({
        "generation": snapshot.generation,
        "built_at_ms": snapshot.built_at,
        "zone": deployment.zone.origin,
        "store": snapshot.store,
        "degraded": snapshot.store.degraded_since.is_some(),
        "sites": sites,
        "services": services,
        "geoip": {
            "database_type": snapshot.geo.database_type(),
            "build_epoch": snapshot.geo.build_epoch(),
            "client_class_blocks": snapshot.classes.blocks(),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainParams {
    name: String,
    client: String,
    #[serde(rename = "type")]
    qtype: Option<String>,
    /// What-if: explain as if these were down, comma-separated `site:NAME` or
    /// `member:SERVICE/NODE` (nothing is changed).
    without: Option<String>,
}

/// The state with `without`'s sites and members forced down, for a what-if explain.
fn what_if(
    deployment: &topology::Deployment,
    state: &topology::State,
    without: &str,
) -> Result<topology::State, ApiError> {
    let mut state = state.clone();
    for item in without.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once(':') {
            Some(("site", name)) => {
                let site = deployment
                    .site_by_name(name)
                    .ok_or_else(|| ApiError::NotFound(format!("without: no site {name:?}")))?;
                state.site_mut(site).admin = AdminState::ForcedDown;
            }
            Some(("member", name)) => {
                let (service, node) = name.split_once('/').ok_or_else(|| {
                    ApiError::BadRequest(format!("without: member {name:?} is not SERVICE/NODE"))
                })?;
                let member = deployment.member_by_name(service, node).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "without: no member {node:?} in service {service:?}"
                    ))
                })?;
                state.member_mut(member).admin = AdminState::ForcedDown;
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "without: {item:?} is not site:NAME or member:SERVICE/NODE"
                )));
            }
        }
    }
    Ok(state)
}

async fn explain(
    AxumState(ctx): AxumState<AdminContext>,
    Query(params): Query<ExplainParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let snapshot = ctx.control.snapshot();
    let deployment = &snapshot.deployment;
    let name = parse_name(&params.name, &deployment.zone.origin)?;
    let service = deployment
        .service_by_fqdn(&name)
        .ok_or_else(|| ApiError::NotFound(format!("{name} is not a GSLB service name")))?;
    let client: IpAddr = match params.client.parse::<IpNet>() {
        Ok(net) => net.trunc().addr(),
        Err(_) => params.client.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "client {:?} is not an address or a subnet",
                params.client
            ))
        })?,
    };
    let family = match params
        .qtype
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("A") => Family::V4,
        Some("AAAA") => Family::V6,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "type {other:?} is not A or AAAA"
            )));
        }
    };
    let (location, network) = snapshot.locate(client);
    let (class, scope) = snapshot.classes.lookup(client);
    let state = match &params.without {
        Some(without) => std::sync::Arc::new(what_if(deployment, &snapshot.state, without)?),
        None => snapshot.state.clone(),
    };
    let explained = topology::explain::explain_with_class(
        deployment,
        &state,
        service,
        family,
        &location,
        snapshot.classes.class(class),
        snapshot.built_at,
    );
    let located_by = match &location {
        ClientLocation::SiteNetwork { site } => {
            format!("client network of site {}", deployment.site(*site).name)
        }
        ClientLocation::Geoip { .. } => "GeoIP database".to_owned(),
        ClientLocation::Unknown => "unknown (not in a site network nor in GeoIP)".to_owned(),
    };
    Ok(Json(serde_json::json!({
        "name": name,
        "client": client,
        "located_by": located_by,
        "network": network,
        "client_class": class,
        "ecs_scope": if snapshot.answers.location_scoped(service) { scope } else { 0 },
        "generation": snapshot.generation,
        "what_if": params.without,
        "explain": explained,
    })))
}

/// A name as an operator types it: absolute with or without the final dot, or relative to
/// the zone (`s3`).
fn parse_name(text: &str, origin: &DomainName) -> Result<DomainName, ApiError> {
    let bare_origin = origin.as_str().trim_end_matches('.');
    let lowered = text.to_ascii_lowercase();
    let absolute = lowered.ends_with('.')
        || lowered == bare_origin
        || lowered.ends_with(&format!(".{bare_origin}"));
    let parsed = if absolute && !lowered.ends_with('.') {
        DomainName::parse(&format!("{lowered}."), None)
    } else {
        DomainName::parse(&lowered, Some(origin))
    };
    parsed.map_err(|e| ApiError::BadRequest(format!("name {text:?}: {e}")))
}

async fn history(AxumState(ctx): AxumState<AdminContext>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "changes": ctx.control.machine().history }))
}

async fn metrics(AxumState(ctx): AxumState<AdminContext>) -> impl IntoResponse {
    let snapshot = ctx.control.snapshot();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(
            &snapshot,
            &ctx.store.status(),
            &ctx.store.transport.peer_states(),
        ),
    )
}

/// Who asks and why, recorded in the history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    who: Option<String>,
    why: Option<String>,
}

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

async fn apply(
    ctx: &AdminContext,
    caller: Caller,
    target: Target,
    action: &str,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let admin = parse_action(action)?;
    let reason: Reason = if body.iter().all(u8::is_ascii_whitespace) {
        Reason::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "body: expected {{\"who\": ..., \"why\": ...}}: {e}"
            ))
        })?
    };
    let action = AdminAction {
        target: target.clone(),
        admin,
        who: reason.who.unwrap_or(caller.0),
        why: reason.why.unwrap_or_default(),
    };
    let committed = crate::store_api::propose(ctx, Command::Admin(action)).await?;
    Ok(Json(serde_json::json!({
        "target": target.to_string(),
        "admin": admin,
        "index": committed.index,
    })))
}

async fn member_action(
    AxumState(ctx): AxumState<AdminContext>,
    Extension(caller): Extension<Caller>,
    Path((service, node, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctx.control
        .deployment()
        .member_by_name(&service, &node)
        .ok_or_else(|| ApiError::NotFound(format!("no member {node:?} in service {service:?}")))?;
    apply(
        &ctx,
        caller,
        Target::Member { service, node },
        &action,
        &body,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillParams {
    /// Answer with the report once the drill has ended (else 202 with its id at once).
    #[serde(default)]
    wait: bool,
}

/// `POST /api/v1/drills[?wait=true]`.
async fn start_drill(
    AxumState(ctx): AxumState<AdminContext>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<DrillParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: crate::drill::DrillRequest = crate::store_api::json(&body)?;
    let plan = crate::drill::plan(&ctx, &request, &caller.0)?;
    if !crate::drill::begin(&ctx) {
        return Err(ApiError::Conflict(
            "a drill is already running on this node".into(),
        ));
    }
    let id = plan.id;
    // The drill runs in its own task: a client that goes away mid-drill must not cancel
    // it between the drain and the restore.
    let drill = tokio::spawn(crate::drill::run(ctx, plan));
    if params.wait {
        let report = drill
            .await
            .map_err(|e| ApiError::Unavailable(format!("drill {id} failed: {e}")))?;
        return Ok(Json(report).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "status": "running", "report": format!("/api/v1/drills/{id}") })),
    )
        .into_response())
}

/// `GET /api/v1/drills`: the reports kept on this node, newest first.
async fn list_drills(AxumState(ctx): AxumState<AdminContext>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "drills": ctx.drills.reports() }))
}

async fn get_drill(
    AxumState(ctx): AxumState<AdminContext>,
    Path(id): Path<u64>,
) -> Result<Json<crate::drill::DrillReport>, ApiError> {
    ctx.drills.report(id).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!("no drill {id} on this node (running, or never)"))
    })
}

async fn site_action(
    AxumState(ctx): AxumState<AdminContext>,
    Extension(caller): Extension<Caller>,
    Path((site, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctx.control
        .deployment()
        .site_by_name(&site)
        .ok_or_else(|| ApiError::NotFound(format!("no site {site:?}")))?;
    apply(&ctx, caller, Target::Site { site }, &action, &body).await
}

async fn service_action(
    AxumState(ctx): AxumState<AdminContext>,
    Extension(caller): Extension<Caller>,
    Path((service, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    ctx.control
        .deployment()
        .service_by_name(&service)
        .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
    apply(&ctx, caller, Target::Service { service }, &action, &body).await
}
