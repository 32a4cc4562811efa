//! The admin HTTP API (axum), every route of it: state, explain, history, admin actions,
//! drills, the deployment (`/api/v1/config`), ingest from agents and proxies, the watch
//! stream, the store's membership, metrics and the dashboard. Requests and answers are the
//! typed [`topology::wire`] messages; errors become responses in exactly one place
//! ([`ApiError`]). axum appears in this module tree only.

pub mod actions;
pub mod auth;
pub mod config;
pub mod context;
pub mod drills;
pub mod error;
pub mod server;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};

pub use context::{ApiContext, json};
pub use error::ApiError;

/// The admin API's routes, bare (see [`app`] for what goes around them).
pub fn router(context: ApiContext) -> Router {
    Router::new()
        .route("/", get(state::dashboard))
        .route("/ui/index.html", get(state::dashboard))
        .route("/healthz", get(state::healthz))
        .route("/metrics", get(state::metrics))
        .route("/api/v1/state", get(state::state))
        .route("/api/v1/explain", get(state::explain))
        .route("/api/v1/history", get(state::history))
        .route("/api/v1/timeline", get(state::timeline))
        .route(
            "/api/v1/members/{service}/{node}/{action}",
            post(actions::member),
        )
        .route("/api/v1/sites/{site}/{action}", post(actions::site))
        .route(
            "/api/v1/services/{service}/{action}",
            post(actions::service),
        )
        .route("/api/v1/drills", get(drills::list).post(drills::start))
        .route("/api/v1/drills/{id}", get(drills::get))
        .route("/api/v1/config", get(config::show).post(config::apply))
        .route("/api/v1/config/history", get(config::history))
        .route("/api/v1/config/rollback", post(config::rollback))
        .route("/api/v1/reports", post(store::report))
        .route("/api/v1/rtt", post(store::rtt).get(store::rtt_table))
        .route("/api/v1/passive", post(store::passive))
        .route("/api/v1/watch", get(store::watch))
        .route("/api/v1/store", get(store::status))
        .route("/api/v1/store/nodes", post(store::add_node))
        .route("/api/v1/store/nodes/{id}", delete(store::remove_node))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(context)
}

/// The routes behind their guards: [`auth::guard`] (Host, Origin, Content-Type, identity
/// and role) before anything is read, then [`server::bounded`] (the body, the time).
pub fn app(context: ApiContext, gate: Arc<auth::Gate>, request_timeout: Duration) -> Router {
    let counters = gate.counters.clone();
    router(context)
        .layer(axum::middleware::from_fn_with_state(
            (request_timeout, counters),
            server::bounded,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, auth::guard))
}
