//! Extractors whose rejections are JSON errors, not axum's plain-text ones.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use twofold_wire::admin::ApiScope;

use super::{ApiError, AppState};
use crate::error::Error;
use crate::service::Actor;

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

/// The relying application, authenticated by `Authorization: Bearer <API key>`, holding the scope `S`
/// that its endpoint needs: a handler cannot take a caller without naming the scope, and a key without
/// it is refused with 403 `scope_required` before the body is read.
pub struct Caller<S> {
    pub app: String,
    trusted_proxy: bool,
    peer: IpAddr,
    needs: PhantomData<S>,
}

/// The scope an endpoint needs.
pub trait Needs {
    const SCOPE: ApiScope;
}

/// Checking codes.
pub struct Verify;
/// The user's own flows, each with the user's proof.
pub struct Enroll;
/// Acting without the user's proof.
pub struct Manage;

impl Needs for Verify {
    const SCOPE: ApiScope = ApiScope::Verify;
}
impl Needs for Enroll {
    const SCOPE: ApiScope = ApiScope::Enroll;
}
impl Needs for Manage {
    const SCOPE: ApiScope = ApiScope::Manage;
}

impl<S> Caller<S> {
    pub fn actor(&self) -> Actor {
        Actor::Api(self.app.clone())
    }

    /// The end user's address that failures count against (see `end_user_address`).
    pub fn address(&self, client_ip: Option<&str>) -> Result<IpAddr, Error> {
        end_user_address(client_ip, self.trusted_proxy, self.peer)
    }
}

/// One rule for every endpoint: a caller marked as a trusted proxy names the end user's address; any
/// other caller's `client_ip` is checked for form and ignored, and its own address counts, so that a key
/// holder can neither dodge the per-address limit nor throttle someone else's address.
pub fn end_user_address(
    given: Option<&str>,
    trusted_proxy: bool,
    peer: IpAddr,
) -> Result<IpAddr, Error> {
    let named = given
        .map(|text| {
            text.parse::<IpAddr>()
                .map_err(|_| Error::invalid("client_ip must be an IP address"))
        })
        .transpose()?;
    Ok(match named {
        Some(address) if trusted_proxy => address,
        _ => peer,
    })
}

impl<S: Needs + Send> FromRequestParts<AppState> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(Error::Unauthorized)?;
        let (app, access) = state
            .service
            .authenticate(key)?
            .ok_or(Error::Unauthorized)?;
        if !access.allows(S::SCOPE) {
            return Err(scope_required(&app, S::SCOPE));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .ok_or_else(|| Error::Internal("a request without its connection's address"))?;
        Ok(Caller {
            app,
            trusted_proxy: access.trusted_proxy,
            peer,
            needs: PhantomData,
        })
    }
}

pub fn scope_required(app: &str, scope: ApiScope) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "scope_required",
        format!(
            "the API key {app} lacks the {} scope this endpoint needs (twofold-admin apikey set {app} --scope ...)",
            scope.name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxy_names_the_end_users_address() -> Result<(), Error> {
        let peer: IpAddr = "203.0.113.5".parse().map_err(|_| Error::invalid("test"))?;
        let named: IpAddr = "198.51.100.7".parse().map_err(|_| Error::invalid("test"))?;
        // (client_ip, trusted proxy, counted address)
        let table = [
            (None, false, peer),
            (None, true, peer),
            (Some("198.51.100.7"), false, peer),
            (Some("198.51.100.7"), true, named),
        ];
        for (given, trusted, expected) in table {
            assert_eq!(
                end_user_address(given, trusted, peer)?,
                expected,
                "{given:?} trusted={trusted}"
            );
        }
        for trusted in [false, true] {
            assert!(end_user_address(Some("not an address"), trusted, peer).is_err());
        }
        Ok(())
    }
}
