//! Device lifecycle and the user's 2FA state, for relying applications.
//!
//! A user acts on their own devices through the relying application: unpairing or blocking a device
//! takes a code from another of their active authenticators, turning 2FA off takes a code from any of
//! their factors. The application itself (holding an API key) may list and delete devices directly.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::Json;
use twofold_wire::api::{CodeProof, DeviceList, TwoFactorStatus};
use twofold_wire::DeviceInfo;

use super::extract::{ApiJson, ApiPath, Caller};
use super::{ApiResult, AppState};
use crate::service::Actor;

pub(super) async fn list(
    State(state): State<AppState>,
    Caller(_app): Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<DeviceList>> {
    Ok(Json(DeviceList {
        devices: state.service.devices(&user)?,
    }))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Caller(app): Caller,
    ApiPath((user, device)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeviceList>> {
    state
        .service
        .delete_device(&Actor::Api(app), &user, &device)
        .await?;
    Ok(Json(DeviceList {
        devices: state.service.devices(&user)?,
    }))
}

/// `POST /api/v1/users/{user}/devices/{device}/unpair` with a code from another active device.
pub(super) async fn unpair(
    State(state): State<AppState>,
    Caller(app): Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath((user, device)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<DeviceList>> {
    let devices = state
        .service
        .unpair_from_device(&Actor::Api(app), &user, &device, &request.code, peer.ip())
        .await?;
    Ok(Json(DeviceList { devices }))
}

/// `POST /api/v1/users/{user}/devices/{device}/block` with a code from another active device.
pub(super) async fn block(
    State(state): State<AppState>,
    Caller(app): Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath((user, device)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(
        state
            .service
            .block_from_device(&Actor::Api(app), &user, &device, &request.code, peer.ip())
            .await?,
    ))
}

/// `GET /api/v1/users/{user}/two-factor`
pub(super) async fn status(
    State(state): State<AppState>,
    Caller(_app): Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<TwoFactorStatus>> {
    Ok(Json(state.service.two_factor_status(&user)?))
}

/// `POST /api/v1/users/{user}/two-factor/disable` with a code from any of the user's factors.
pub(super) async fn disable(
    State(state): State<AppState>,
    Caller(app): Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<TwoFactorStatus>> {
    Ok(Json(
        state
            .service
            .disable_two_factor(&Actor::Api(app), &user, &request.code, peer.ip())
            .await?,
    ))
}
