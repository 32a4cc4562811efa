//! Reads: the state as the answers see it, explain (with what-if), the history, metrics,
//! `/healthz` and the dashboard page.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Query, State as AxumState};
use axum::http::header;
use axum::response::IntoResponse;
use ipnet::IpNet;
use serde::Deserialize;
use topology::wire::WIRE_VERSION;
use topology::wire::views::{
    ExplainView, GeoipView, Healthz, History, MemberView, ServiceView, SiteView, StateView,
};
use topology::{AdminState, ClientLocation, DomainName, Family};

use super::context::ApiContext;
use super::error::ApiError;
use crate::dns::Snapshot;

/// `GET /api/v1/state`.
pub async fn state(AxumState(ctx): AxumState<ApiContext>) -> Json<StateView> {
    Json(state_view(&ctx.control.snapshot()))
}

/// `GET /healthz`: open to everyone, also to peers checking which build this node runs.
pub async fn healthz() -> Json<Healthz> {
    Json(Healthz {
        status: "ok".into(),
        wire_version: WIRE_VERSION,
    })
}

/// The web dashboard: one page, its script and style inline, embedded in the binary (no
/// CDN, works offline). It reads the state, follows the watch stream and posts actions.
pub async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("ui/index.html"),
    )
}

/// `GET /metrics`.
pub async fn metrics(AxumState(ctx): AxumState<ApiContext>) -> impl IntoResponse {
    let snapshot = ctx.control.snapshot();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(
            &snapshot,
            &ctx.store.status(),
            &ctx.store.transport.peer_states(),
            ctx.store.transport.counters(),
        ),
    )
}

/// `GET /api/v1/timeline`: this node's answers per site per second over the last
/// [`crate::timeline::TIMELINE_SECONDS`], with the store's changes in that window.
pub async fn timeline(
    AxumState(ctx): AxumState<ApiContext>,
) -> Json<topology::wire::views::TimelineView> {
    Json(ctx.timeline.view(&ctx.control.machine().history))
}

/// `GET /api/v1/history`.
pub async fn history(AxumState(ctx): AxumState<ApiContext>) -> Json<History> {
    Json(History {
        changes: ctx.control.machine().history.iter().cloned().collect(),
    })
}

/// Sites, services and members as the answers see them (the state, and every line of the
/// watch stream).
pub fn state_view(snapshot: &Snapshot) -> StateView {
    let deployment = &snapshot.deployment;
    let sites = deployment
        .site_ids()
        .map(|id| {
            let site = deployment.site(id);
            let state = snapshot.state.site(id);
            SiteView {
                name: site.name.clone(),
                location: site.location,
                client_networks: site.client_networks.clone(),
                admin: state.admin,
                last_report_ms: state.last_report,
            }
        })
        .collect();
    let services = deployment
        .services
        .iter()
        .map(|service| ServiceView {
            name: service.name.clone(),
            fqdn: service.fqdn.to_string(),
            policy: service.policy,
            ttl: service.ttl,
            max_answers: service.max_answers,
            min_healthy: service.min_healthy,
            when_all_down: service.when_all_down,
            members: service
                .members
                .iter()
                .map(|id| member_view(snapshot, *id))
                .collect(),
        })
        .collect();
    StateView {
        wire_version: WIRE_VERSION,
        generation: snapshot.generation,
        built_at_ms: snapshot.built_at,
        zone: deployment.zone.origin.to_string(),
        config_version: snapshot.config_version,
        store: snapshot.store.clone(),
        degraded: snapshot.store.degraded_since.is_some(),
        sites,
        services,
        geoip: GeoipView {
            database_type: snapshot.geo.database_type().to_owned(),
            build_epoch: snapshot.geo.build_epoch(),
            client_class_blocks: snapshot.classes.blocks(),
        },
    }
}

fn member_view(snapshot: &Snapshot, id: topology::MemberId) -> MemberView {
    let deployment = &snapshot.deployment;
    let member = deployment.member(id);
    let ms = snapshot.state.member(id);
    let address = snapshot.state.address_of(deployment, id);
    let verdict = topology::select::member_verdict(
        deployment,
        &snapshot.state,
        id,
        Family::of(&address),
        snapshot.built_at,
    );
    MemberView {
        node: member.node.clone(),
        site: deployment.site(member.site).name.clone(),
        address,
        port: member.port,
        health: ms.health,
        reason: ms.reason.clone(),
        admin: ms.admin,
        weight: member.weight,
        weight_percent: ms.weight_percent,
        eligible: verdict.is_ok(),
        ineligible: verdict.as_ref().err().map(|why| why.to_string()),
        proxy_weight: topology::select::proxy_verdict(deployment, &snapshot.state, id).unwrap_or(0),
        agent_admin: ms.agent_admin,
        latency_us: ms.latency_us,
        passive: ms.passive.clone(),
        vantage: ms.vantage.clone(),
        note: topology::select::confirmed_by_vantage(
            deployment,
            &snapshot.state,
            id,
            snapshot.built_at,
        )
        .filter(|_| verdict.is_ok())
        .map(|sites| topology::select::telemetry_lost_note(&sites)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainParams {
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

/// `GET /api/v1/explain?name=&client=[&type=][&without=]`.
pub async fn explain(
    AxumState(ctx): AxumState<ApiContext>,
    Query(params): Query<ExplainParams>,
) -> Result<Json<ExplainView>, ApiError> {
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
    Ok(Json(ExplainView {
        name: name.to_string(),
        client,
        located_by,
        network,
        client_class: class,
        ecs_scope: if snapshot.answers.location_scoped(service) {
            scope
        } else {
            0
        },
        generation: snapshot.generation,
        config_version: snapshot.config_version,
        what_if: params.without,
        explain: explained,
    }))
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
