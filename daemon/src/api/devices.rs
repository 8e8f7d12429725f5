//! Device lifecycle and the user's 2FA state, for relying applications.
//!
//! A user acts on their own devices through the relying application: unpairing or blocking a device
//! takes a code from another of their active authenticators, turning 2FA off takes a code from any of
//! their factors. The application itself (holding an API key) may list and delete devices directly.

use axum::extract::State;
use axum::Json;
use twofold_wire::api::{CodeProof, DeviceList, TwoFactorStatus};
use twofold_wire::DeviceInfo;

use super::extract::{ApiJson, ApiPath, Caller, Enroll, Manage, Verify};
use super::{ApiResult, AppState};

pub(super) async fn list(
    State(state): State<AppState>,
    _caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<DeviceList>> {
    Ok(Json(DeviceList {
        devices: state.service.devices(&user)?,
    }))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller<Manage>,
    ApiPath((user, device)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeviceList>> {
    state
        .service
        .delete_device(&caller.actor(), &user, &device)
        .await?;
    Ok(Json(DeviceList {
        devices: state.service.devices(&user)?,
    }))
}

/// `POST /api/v1/users/{user}/devices/{device}/unpair` with a code from another active device.
pub(super) async fn unpair(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath((user, device)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<DeviceList>> {
    let devices = state
        .service
        .unpair_from_device(
            &caller.actor(),
            &user,
            &device,
            &request.code,
            caller.address(request.client_ip.as_deref())?,
        )
        .await?;
    Ok(Json(DeviceList { devices }))
}

/// `POST /api/v1/users/{user}/devices/{device}/block` with a code from another active device.
pub(super) async fn block(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath((user, device)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(
        state
            .service
            .block_from_device(
                &caller.actor(),
                &user,
                &device,
                &request.code,
                caller.address(request.client_ip.as_deref())?,
            )
            .await?,
    ))
}

/// `GET /api/v1/users/{user}/two-factor`
pub(super) async fn status(
    State(state): State<AppState>,
    _caller: Caller<Verify>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<TwoFactorStatus>> {
    Ok(Json(state.service.two_factor_status(&user)?))
}

/// `POST /api/v1/users/{user}/two-factor/disable` with a code from any of the user's factors.
pub(super) async fn disable(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<CodeProof>,
) -> ApiResult<Json<TwoFactorStatus>> {
    Ok(Json(
        state
            .service
            .disable_two_factor(
                &caller.actor(),
                &user,
                &request.code,
                caller.address(request.client_ip.as_deref())?,
            )
            .await?,
    ))
}
