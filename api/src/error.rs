//! The API's one error type. Each variant maps to a status code; internal errors are logged with
//! their cause and answered with a generic message (no store or adapter detail leaks out).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session or token.
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but the role may not do this (or the form token is wrong).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Nothing visible to this user under that id (also for other tenants' data).
    #[error("not found")]
    NotFound,
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The domain refused the command (e.g. a cycle already in flight).
    #[error("{0}")]
    Conflict(String),
    /// Something failed on our side; the cause is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// An internal error with its cause (logged when answered).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<restorable_pipeline::store::StoreError> for ApiError {
    fn from(error: restorable_pipeline::store::StoreError) -> Self {
        match error {
            restorable_pipeline::store::StoreError::Rejected(reason) => ApiError::Conflict(reason),
            other => ApiError::internal(other),
        }
    }
}

impl From<restorable_pipeline::read_model::ProjectionError> for ApiError {
    fn from(error: restorable_pipeline::read_model::ProjectionError) -> Self {
        match error {
            restorable_pipeline::read_model::ProjectionError::Store(store) => store.into(),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
