//! What every handler shares, and how a request body is read.

use std::sync::Arc;

use super::error::ApiError;
use crate::control::Control;
use crate::drill::Drills;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiContext {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<crate::store::Store>,
    /// This node's DNS addresses (drills ask them).
    pub dns: Vec<std::net::SocketAddr>,
    pub drills: Arc<Drills>,
    /// This node's file's deployment document (to tell whether the store's differs).
    pub file_document: Arc<String>,
    /// This node's answers per site over the last minutes (the dashboard's timeline).
    pub timeline: Arc<crate::timeline::Timeline>,
}

/// A request body as `T`, or a 400 that says what is wrong with it.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}
