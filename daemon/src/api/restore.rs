//! The restore function over HTTPS: restore codes, the three steps of a restore, pairing a second
//! device, and the "this wasn't me" block. See `crate::restore` for the rules.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use twofold_wire::api::EnrollAnswer;
use twofold_wire::restore::{
    BlockRequest, DeviceBlocked, PairRequest, PairingRequest, PairingToken, RestoreCodeIssued,
    RestoreCodeRequest, RestoreCompleted, RestoreConfirmRequest, RestoreEnrollRequest,
    RestoreStartRequest, RestoreStarted, RestoreState,
};

use super::extract::{ApiJson, ApiPath, Caller, Enroll};
use super::{ApiError, ApiResult, AppState};
use crate::restore::{Refusal, Refused};

/// Each refusal is a 4xx with its own code; waits carry `Retry-After`.
fn refused(refusal: Refusal) -> Response {
    let (status, code, message, retry_after) = match refusal {
        Refusal::InvalidCode => (
            StatusCode::FORBIDDEN,
            "invalid_code",
            "the code is wrong, used or expired".to_owned(),
            None,
        ),
        Refusal::RateLimited(s) => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many recent failures: try again in {s} s"),
            Some(s),
        ),
        Refusal::Locked(s) => (
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            match s {
                Some(s) => format!("locked after too many failures: the lock lifts in {s} s"),
                None => "locked after too many failures: an admin must unlock".to_owned(),
            },
            s,
        ),
        Refusal::Prohibited => (
            StatusCode::FORBIDDEN,
            "restore_prohibited",
            "the user's policy allows only an admin to restore: ask the helpdesk".to_owned(),
            None,
        ),
        Refusal::LimitReached {
            limit,
            period_days,
            next_restore_at,
        } => (
            StatusCode::FORBIDDEN,
            "restore_limit_reached",
            format!(
                "{limit} restores in {period_days} days are used up: the next is possible at unix time {}, or an admin restores now",
                next_restore_at.map_or_else(|| "-".to_owned(), |t| t.to_string())
            ),
            None,
        ),
    };
    let mut response = ApiError::new(status, code, message).into_response();
    if let Some(s) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, s.into());
    }
    response
}

fn answer<T: serde::Serialize>(status: StatusCode, result: Refused<T>) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// `POST /api/v1/users/{user}/restore-code`: activate restore, or re-issue (rotate) the restore code.
pub async fn request_code(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<RestoreCodeRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<RestoreCodeIssued> = state
        .service
        .request_restore_code(&caller.actor(), &user, &request.code, address)
        .await?;
    Ok(answer(StatusCode::OK, result))
}

/// `GET /api/v1/users/{user}/restore`
pub async fn status(
    State(state): State<AppState>,
    _caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<RestoreState>> {
    Ok(Json(state.service.restore_status(&user)?.1))
}

/// `POST /api/v1/restore`: step 1, the restore code.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiJson(request): ApiJson<RestoreStartRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<RestoreStarted> = state
        .service
        .start_restore(
            &caller.actor(),
            &request.user,
            &request.restore_code,
            address,
        )
        .await?;
    Ok(answer(StatusCode::ACCEPTED, result))
}

/// `POST /api/v1/restore/{transaction}/enroll`: step 2, the emailed OTP.
pub async fn enroll(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(transaction): ApiPath<String>,
    ApiJson(request): ApiJson<RestoreEnrollRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<EnrollAnswer> = state
        .service
        .restore_enroll(
            &caller.actor(),
            &transaction,
            &request.code,
            request.label,
            address,
        )
        .await?;
    Ok(answer(StatusCode::CREATED, result))
}

/// `POST /api/v1/restore/{transaction}/confirm`: step 3, the new device's first code. Wrong codes
/// count against the user and the end user's address (see `Caller::address`).
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(transaction): ApiPath<String>,
    ApiJson(request): ApiJson<RestoreConfirmRequest>,
) -> ApiResult<Json<RestoreCompleted>> {
    Ok(Json(
        state
            .service
            .restore_confirm(
                &caller.actor(),
                &transaction,
                &request.code,
                caller.address(request.client_ip.as_deref())?,
            )
            .await?,
    ))
}

/// `POST /api/v1/users/{user}/pairing`: a pairing token from an active device.
pub async fn pairing(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<PairingRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<PairingToken> = state
        .service
        .create_pairing(&caller.actor(), &user, &request.code, address)
        .await?;
    Ok(answer(StatusCode::CREATED, result))
}

/// `POST /api/v1/pair`: enroll a second device with the token.
pub async fn pair(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiJson(request): ApiJson<PairRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<EnrollAnswer> = state
        .service
        .pair(
            &caller.actor(),
            &request.user,
            &request.token,
            request.label,
            address,
        )
        .await?;
    Ok(answer(StatusCode::CREATED, result))
}

/// `POST /api/v1/block`: "this wasn't me".
pub async fn block(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiJson(request): ApiJson<BlockRequest>,
) -> ApiResult<Response> {
    let address = caller.address(request.client_ip.as_deref())?;
    let result: Refused<DeviceBlocked> = state
        .service
        .block_reported_device(&caller.actor(), &request.user, &request.code, address)
        .await?;
    Ok(answer(StatusCode::OK, result))
}
