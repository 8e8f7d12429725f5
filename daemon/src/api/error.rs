//! The one mapping from errors to HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use twofold_wire::{ErrorBody, ErrorEnvelope};

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } | Error::UserNotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Refused { .. } => StatusCode::FORBIDDEN,
            Error::Throttled { retry_after, .. } => {
                let mut answer =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string());
                answer.retry_after = *retry_after;
                return answer;
            }
            Error::StoreFailed(_) => {
                tracing::error!(error = %e, "request failed");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the daemon cannot write to its store and is restarting; retry shortly",
                );
            }
            Error::Config(_)
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Crypto(_)
            | Error::Tls(_)
            | Error::Internal(_) => {
                // The caller did nothing wrong and learns nothing about our internals.
                tracing::error!(error = %e, "request failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the daemon's log",
                );
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}
