//! Extractors whose rejections are JSON errors, not axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::error::Error;

/// A JSON body. Content-Type is not insisted on (curl's `-d` sends a form type), the JSON is.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await.map_err(|e| match e {
            BodyError::TimedOut(limit) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs()
                ),
            ),
            BodyError::Rejected(rejection) => {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "body_too_large", "request body is too large")
                } else {
                    ApiError::new(status, "invalid_body", rejection.body_text())
                }
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "request body must be a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let code = if e.is_data() {
                "invalid_request"
            } else {
                "invalid_json"
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        })
    }
}

/// Why a request body could not be read.
pub enum BodyError {
    /// Not all of it within `[api.connections] body_timeout_seconds`.
    TimedOut(std::time::Duration),
    /// Too large, or the connection failed.
    Rejected(BytesRejection),
}

/// The whole request body, which must arrive within `[api.connections] body_timeout_seconds` of the
/// start of reading: one deadline for the whole body, so a client that trickles it cannot hold the
/// handler (see `connections`). tower-http's `RequestBodyTimeout` would not do: its timer restarts at
/// every frame, and its error would reach us as an unknown body error rather than a timeout.
pub async fn read_body(req: Request, state: &AppState) -> Result<Bytes, BodyError> {
    let limit = state.service.config().api.connections.body_timeout();
    match tokio::time::timeout(limit, Bytes::from_request(req, state)).await {
        Ok(read) => read.map_err(BodyError::Rejected),
        Err(_) => Err(BodyError::TimedOut(limit)),
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text()))
    }
}

/// The relying application, authenticated by `Authorization: Bearer <API key>`.
pub struct Caller(pub String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match key {
            Some(key) if !key.is_empty() => match state.service.authenticate(key)? {
                Some(name) => Ok(Caller(name)),
                None => Err(Error::Unauthorized.into()),
            },
            _ => Err(Error::Unauthorized.into()),
        }
    }
}
