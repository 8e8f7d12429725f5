//! `POST /api/v1/challenge` and `GET /api/v1/challenge/{transaction}`: codes sent out of band.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use twofold_wire::delivery::{ChallengeRequest, ChallengeStatus};

use super::extract::{ApiJson, ApiPath, Caller, Verify};
use super::{ApiError, ApiResult, AppState};
use crate::challenge::Started;

/// 202: the challenge is made and its delivery started; the code is on its way.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller<Verify>,
    ApiJson(request): ApiJson<ChallengeRequest>,
) -> ApiResult<Response> {
    let challenges = state.service.challenges()?;
    match challenges
        .start(
            &state.service,
            &caller.actor(),
            &request.user,
            request.channel,
            request.locale,
        )
        .await?
    {
        Started::Sent(answer) => Ok((StatusCode::ACCEPTED, Json(answer)).into_response()),
        Started::TooSoon { retry_after } => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_challenges",
                format!("a code was sent to this user moments ago: ask again in {retry_after} s, or use the code already sent"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
            Ok(response)
        }
    }
}

pub async fn status(
    State(state): State<AppState>,
    _caller: Caller<Verify>,
    ApiPath(transaction): ApiPath<String>,
) -> ApiResult<Json<ChallengeStatus>> {
    crate::validate::text("transaction", &transaction, 64)?;
    Ok(Json(
        state
            .service
            .challenges()?
            .status(state.service.store(), &transaction)?,
    ))
}
