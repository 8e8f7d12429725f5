//! The HTTPS JSON API for relying applications (VPNs, portals, signing apps).
//!
//! Every answer is JSON. Every mistake of the caller (bad JSON, wrong types, unknown fields, oversized
//! bodies, bad names, unknown routes) is a 4xx `{"error": {"code", "message"}}` and changes nothing.
//! Only the daemon's own faults are 5xx, and their details go to the log, not to the caller.

mod challenge;
pub mod connections;
mod devices;
mod error;
mod extract;
mod privacyidea;
mod restore;
pub mod server;
mod unread_body;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use twofold_wire::api::{
    BackupCodes, ConfirmAnswer, ConfirmRequest, EnrollAnswer, EnrollRequest, Health,
    RegenerateBackupCodesRequest, VerifyAnswer, VerifyRequest,
};

use crate::service::{Service, UserProof};
pub use error::ApiError;
use extract::{ApiJson, ApiPath, Caller, Enroll, Verify};

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
}

pub fn router(service: Arc<Service>, max_body_bytes: usize) -> Router {
    let privacyidea = if service.config().privacyidea.enabled {
        privacyidea::routes()
    } else {
        Router::new()
    };
    let state = AppState { service };
    Router::new()
        .merge(privacyidea)
        .route("/health", get(health))
        .route("/api/v1/verify", post(verify))
        .route("/api/v1/challenge", post(challenge::start))
        .route("/api/v1/challenge/{transaction}", get(challenge::status))
        .route("/api/v1/users/{user}/totp", post(enroll_totp))
        .route(
            "/api/v1/users/{user}/totp/{device}/confirm",
            post(confirm_totp),
        )
        .route("/api/v1/users/{user}/devices", get(devices::list))
        .route(
            "/api/v1/users/{user}/devices/{device}",
            delete(devices::delete),
        )
        .route(
            "/api/v1/users/{user}/devices/{device}/unpair",
            post(devices::unpair),
        )
        .route(
            "/api/v1/users/{user}/devices/{device}/block",
            post(devices::block),
        )
        .route("/api/v1/users/{user}/two-factor", get(devices::status))
        .route(
            "/api/v1/users/{user}/two-factor/disable",
            post(devices::disable),
        )
        .route(
            "/api/v1/users/{user}/backup-codes",
            post(regenerate_backup_codes),
        )
        .route(
            "/api/v1/users/{user}/restore-code",
            post(restore::request_code),
        )
        .route("/api/v1/users/{user}/restore", get(restore::status))
        .route("/api/v1/restore", post(restore::start))
        .route(
            "/api/v1/restore/{transaction}/enroll",
            post(restore::enroll),
        )
        .route(
            "/api/v1/restore/{transaction}/confirm",
            post(restore::confirm),
        )
        .route("/api/v1/users/{user}/pairing", post(restore::pairing))
        .route("/api/v1/pair", post(restore::pair))
        .route("/api/v1/block", post(restore::block))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            unread_body::read_before_refusing,
        ))
        .with_state(state)
}

type ApiResult<T> = Result<T, ApiError>;

/// `ok`, or 503 `store_failed` once a commit has failed and the daemon is on its way to a restart, so
/// a load balancer stops sending requests it could not answer.
async fn health(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    let failed = app.service.store().failure().borrow().is_some();
    let (status, text) = if failed {
        (StatusCode::SERVICE_UNAVAILABLE, "store_failed")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        status,
        Json(Health {
            status: text.to_owned(),
        }),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller<Verify>,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyAnswer>> {
    let address = caller.address(request.client_ip.as_deref())?;
    let answer = state
        .service
        .verify_with(
            &caller.actor(),
            &request.user,
            &request.code,
            request.transaction_id.as_deref(),
            address,
        )
        .await?;
    Ok(Json(answer))
}

async fn enroll_totp(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<EnrollAnswer>)> {
    let proof = UserProof {
        code: request.code.as_deref(),
        address: caller.address(request.client_ip.as_deref())?,
    };
    let answer = state
        .service
        .enroll_totp(
            &caller.actor(),
            &user,
            request.label,
            request.algorithm,
            request.digits,
            Some(proof),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Wrong codes count against the user and the end user's address (see `Caller::address`).
async fn confirm_totp(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath((user, device)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<ConfirmAnswer>> {
    Ok(Json(
        state
            .service
            .confirm_totp(
                &caller.actor(),
                &user,
                &device,
                &request.code,
                Some(caller.address(request.client_ip.as_deref())?),
            )
            .await?,
    ))
}

async fn regenerate_backup_codes(
    State(state): State<AppState>,
    caller: Caller<Enroll>,
    ApiPath(user): ApiPath<String>,
    ApiJson(request): ApiJson<RegenerateBackupCodesRequest>,
) -> ApiResult<Json<BackupCodes>> {
    match state
        .service
        .regenerate_backup_codes(
            &caller.actor(),
            &user,
            &request.code,
            caller.address(request.client_ip.as_deref())?,
        )
        .await?
    {
        Some(backup_codes) => Ok(Json(BackupCodes { backup_codes })),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "second_factor_required",
            "a valid code from the user's authenticator is needed to regenerate backup codes",
        )),
    }
}
