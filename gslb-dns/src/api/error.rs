//! Every way an API request fails, and the one place it becomes a response.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use topology::wire::ErrorBody;

use crate::store::WriteError;

/// Every way a request can fail, and the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller's identity may not do this (an agent reporting for another site).
    #[error("{0}")]
    Forbidden(String),
    /// The request took longer than `admin.request_timeout`.
    #[error("{0}")]
    Timeout(String),
    /// A body over the API's limit.
    #[error("{0}")]
    TooLarge(String),
    /// Valid, but the store did not apply it (an old report, a name it does not know), or
    /// a configuration that does not validate (with its key and line).
    #[error("{message}")]
    Unprocessable {
        message: String,
        key: Option<String>,
        line: Option<usize>,
    },
    /// The store cannot take writes right now (no leader, or too slow): retry.
    #[error("{0}")]
    Unavailable(String),
    /// Refused in the current state (a drill already running, one that would leave no
    /// healthy site, a configuration change made against an older version).
    #[error("{0}")]
    Conflict(String),
}

impl ApiError {
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            message: message.into(),
            key: None,
            line: None,
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> ApiError {
        match error {
            WriteError::Encode(why) => ApiError::BadRequest(why),
            WriteError::Unavailable(why) => ApiError::Unavailable(why.to_string()),
            e @ WriteError::NotApplied { .. } => ApiError::unprocessable(e.to_string()),
        }
    }
}

/// How long a client should wait before retrying an `Unavailable` write.
const RETRY_AFTER_SECONDS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
        };
        let (key, line) = match &self {
            ApiError::Unprocessable { key, line, .. } => (key.clone(), *line),
            _ => (None, None),
        };
        let unavailable = status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody {
            error: self.to_string(),
            retry_after_ms: unavailable.then_some(RETRY_AFTER_SECONDS * 1000),
            key,
            line,
        };
        if unavailable {
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
