//! The privacyIDEA-compatible validate API: `/validate/check`, `/validate/radiuscheck`,
//! `/validate/triggerchallenge`, so that VPNs, PAM, Windows logon, Keycloak, SimpleSAMLphp and LDAP
//! proxies wired to privacyIDEA work against Twofold unchanged.
//!
//! The rules:
//! - Parameters come as privacyIDEA takes them: the query string, then a form-encoded or JSON body (the
//!   body wins). Parameters this API does not know are ignored, as privacyIDEA ignores them.
//! - Answers are privacyIDEA's envelope (`result.status`, `result.value`, `result.authentication`,
//!   `detail`). A request privacyIDEA would refuse (a missing parameter, a bad caller) gets its error
//!   envelope (`result.status: false`, `result.error {code, message}` with privacyIDEA's numeric codes)
//!   and a 4xx; a wrong code is not an error but `value: false`, `REJECT`.
//! - `pass` is the code alone (Twofold has no token PIN). An empty `pass` without a transaction sends
//!   codes on the user's challenge channels under one transaction id (`CHALLENGE`); the next request
//!   with that `transaction_id` (or `state`) and the code completes it.
//! - Codes go through `Service::verify_scoped`, the native verify's own path: the same replay
//!   protection, lockout and audit. Messages a client may show or match are privacyIDEA's ("wrong otp
//!   value", "wrong otp value. previous otp used again").
//! - Unknown users, users outside the realm and users without a usable channel answer alike (REJECT,
//!   "wrong otp value"), so the API does not tell who exists. An unknown realm is a REJECT too.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use twofold_wire::admin::{ApiKeyAccess, ApiScope};
use twofold_wire::api::{Factor, RejectReason, VerifyAnswer, VerifyResult};
use twofold_wire::delivery::ChallengeAnswer;
use twofold_wire::policy::Channel;

use super::extract::{end_user_address, read_body, BodyError};
use super::AppState;
use crate::challenge::GroupStarted;
use crate::config::PrivacyIdeaAuth;
use crate::error::Error;
use crate::service::{Actor, VerifyScope};

/// What `version` says: the privacyIDEA release whose answers these follow, and who answers.
const VERSION: &str = concat!("privacyIDEA 3.10 (Twofold ", env!("CARGO_PKG_VERSION"), ")");
const VERSION_NUMBER: &str = "3.10";

// privacyIDEA's error codes (privacyidea/lib/error.py).
const ERROR_AUTHENTICATE: i64 = 4033;
const ERROR_SERVER: i64 = 903;
const ERROR_PARAMETER: i64 = 905;

const WRONG_OTP: &str = "wrong otp value";
const REPLAYED_OTP: &str = "wrong otp value. previous otp used again";
const WRONG_RESPONSE: &str = "Response did not match the challenge.";
const MATCHING_TOKEN: &str = "matching 1 tokens";
const MATCHING_CHALLENGE: &str = "Found matching challenge";
const NO_SECOND_FACTOR: &str = "user has no token, accepted due to 'passOnNoToken' policy";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/validate/check", get(check).post(check))
        .route("/validate/radiuscheck", get(radiuscheck).post(radiuscheck))
        .route(
            "/validate/triggerchallenge",
            get(triggerchallenge).post(triggerchallenge),
        )
}

#[derive(Debug, Serialize)]
struct Envelope {
    id: u32,
    jsonrpc: &'static str,
    result: PiResult,
    detail: Option<Detail>,
    version: &'static str,
    versionnumber: &'static str,
    time: f64,
}

#[derive(Debug, Serialize)]
struct PiResult {
    status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<PiErrorBody>,
}

#[derive(Debug, Serialize)]
struct PiErrorBody {
    code: i64,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct Detail {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otplen: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_challenge: Option<Vec<MultiChallenge>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_client_mode: Option<&'static str>,
}

/// One `multi_challenge` entry: a code sent on one channel.
#[derive(Debug, Serialize)]
struct MultiChallenge {
    transaction_id: String,
    message: String,
    serial: String,
    #[serde(rename = "type")]
    token_type: &'static str,
    client_mode: &'static str,
    /// privacyIDEA sends `null` for tokens without extra attributes; clients read the key.
    attributes: Option<Value>,
}

/// An answer privacyIDEA gives as an error envelope, with its HTTP status.
#[derive(Debug)]
pub struct PiError {
    status: StatusCode,
    code: i64,
    message: String,
}

impl PiError {
    fn parameter(message: impl std::fmt::Display) -> PiError {
        PiError {
            status: StatusCode::BAD_REQUEST,
            code: ERROR_PARAMETER,
            message: format!("ERR{ERROR_PARAMETER}: {message}"),
        }
    }

    fn unauthenticated() -> PiError {
        PiError {
            status: StatusCode::UNAUTHORIZED,
            code: ERROR_AUTHENTICATE,
            message: format!(
                "ERR{ERROR_AUTHENTICATE}: Authentication failure. Missing or invalid API key in the Authorization header."
            ),
        }
    }

    fn address_refused(address: IpAddr) -> PiError {
        PiError {
            status: StatusCode::FORBIDDEN,
            code: ERROR_AUTHENTICATE,
            message: format!(
                "ERR{ERROR_AUTHENTICATE}: Authentication failure. {address} is not an allowed client address."
            ),
        }
    }
}

impl From<Error> for PiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest(message) => PiError::parameter(message),
            Error::Unauthorized => PiError::unauthenticated(),
            Error::StoreFailed(reason) => {
                tracing::error!(error = %reason, "privacyIDEA request failed: the store failed");
                PiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: ERROR_SERVER,
                    message: format!("ERR{ERROR_SERVER}: the server cannot write to its store and is restarting; retry shortly"),
                }
            }
            other => {
                // The caller learns nothing about our internals; the log has the cause.
                tracing::error!(error = %other, "privacyIDEA request failed");
                PiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: ERROR_SERVER,
                    message: format!("ERR{ERROR_SERVER}: internal error; see the daemon's log"),
                }
            }
        }
    }
}

impl IntoResponse for PiError {
    fn into_response(self) -> Response {
        let envelope = Envelope {
            id: 1,
            jsonrpc: "2.0",
            result: PiResult {
                status: false,
                value: None,
                authentication: None,
                error: Some(PiErrorBody {
                    code: self.code,
                    message: self.message,
                }),
            },
            detail: None,
            version: VERSION,
            versionnumber: VERSION_NUMBER,
            time: 0.0,
        };
        (self.status, Json(envelope)).into_response()
    }
}

/// The request's parameters, from the query string and the body (form-encoded or JSON).
pub struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        // The body's value wins over the query string's: it was added last.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter given empty counts as not given, as in privacyIDEA (`pass` aside).
    fn given(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = PiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PiError> {
        let mut params: Vec<(String, String)> = match req.uri().query() {
            Some(query) => serde_urlencoded::from_str(query)
                .map_err(|e| PiError::parameter(format!("bad query string: {e}")))?,
            None => Vec::new(),
        };
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        let bytes = read_body(req, state).await.map_err(|e| {
            let (status, text) = match e {
                BodyError::TimedOut(limit) => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        limit.as_secs()
                    ),
                ),
                BodyError::Rejected(rejection) => (rejection.status(), rejection.body_text()),
            };
            PiError {
                status,
                code: ERROR_PARAMETER,
                message: format!("ERR{ERROR_PARAMETER}: {text}"),
            }
        })?;
        if bytes.is_empty() {
            return Ok(Params(params));
        }
        if json {
            let body: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
                .map_err(|e| PiError::parameter(format!("the body is not a JSON object: {e}")))?;
            for (key, value) in body {
                let text = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(PiError::parameter(format!(
                            "parameter {key} must be a string"
                        )))
                    }
                };
                params.push((key, text));
            }
        } else {
            let body: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| PiError::parameter(format!("bad form body: {e}")))?;
            params.extend(body);
        }
        Ok(Params(params))
    }
}

/// The API key a privacyIDEA client sends: `Authorization: <key>` (privacyIDEA clients send the token
/// bare), `Authorization: Bearer <key>`, or `PI-Authorization: <key>`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    ["pi-authorization", "authorization"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .find(|v| !v.is_empty())
}

/// Who is asking: the actor for the audit log, and whether it may name the end user's address.
struct PiCaller {
    actor: Actor,
    trusted_proxy: bool,
}

/// Who is asking, by the configured means, from the headers and the connection alone: a caller is
/// known before its body is read. `key_required`: only an API key will do (`/validate/triggerchallenge`,
/// privacyIDEA's admin-only endpoint). A key needs the `verify` scope. Callers let in by address are no
/// trusted proxies: their `client` is ignored.
fn caller(
    state: &AppState,
    headers: &HeaderMap,
    peer: IpAddr,
    key_required: bool,
) -> Result<PiCaller, PiError> {
    let config = &state.service.config().privacyidea;
    let by_key = match api_key(headers) {
        Some(key) => state.service.authenticate(key)?,
        None => None,
    };
    if let Some((name, access)) = &by_key {
        if !access.allows(ApiScope::Verify) {
            return Err(PiError {
                status: StatusCode::FORBIDDEN,
                code: ERROR_AUTHENTICATE,
                message: format!(
                    "ERR{ERROR_AUTHENTICATE}: Authentication failure. The API key {name} lacks the verify scope."
                ),
            });
        }
    }
    let keyed = |(name, access): (String, ApiKeyAccess)| PiCaller {
        actor: Actor::Api(name),
        trusted_proxy: access.trusted_proxy,
    };
    match (config.auth, by_key) {
        (PrivacyIdeaAuth::ApiKey, Some(key)) => {
            if config.allowed_addresses.is_empty() || config.address_allowed(peer) {
                Ok(keyed(key))
            } else {
                Err(PiError::address_refused(peer))
            }
        }
        (PrivacyIdeaAuth::Address, Some(key)) => Ok(keyed(key)),
        (PrivacyIdeaAuth::Address, None) if !key_required => {
            if config.address_allowed(peer) {
                Ok(PiCaller {
                    actor: Actor::Api(format!("address:{peer}")),
                    trusted_proxy: false,
                })
            } else {
                Err(PiError::address_refused(peer))
            }
        }
        _ => Err(PiError::unauthenticated()),
    }
}

/// The user source a request's realm names: `Ok(None)` = every source; `Err(())` = no such realm.
fn realm_source(state: &AppState, params: &Params) -> Result<Option<String>, String> {
    let config = state.service.config();
    let realm = params
        .given("realm")
        .map(str::to_owned)
        .or_else(|| config.privacyidea.default_realm.clone());
    match realm {
        None => Ok(None),
        Some(realm) => config
            .privacyidea
            .realm_source(&realm, &config.directory)
            .map(Some)
            .ok_or(realm),
    }
}

fn envelope(state: &AppState, result: PiResult, detail: Detail) -> Envelope {
    Envelope {
        id: 1,
        jsonrpc: "2.0",
        result,
        detail: Some(detail),
        version: VERSION,
        versionnumber: VERSION_NUMBER,
        time: state.service.now() as f64,
    }
}

fn verdict(accepted: bool) -> PiResult {
    PiResult {
        status: true,
        value: Some(Value::Bool(accepted)),
        authentication: Some(if accepted { "ACCEPT" } else { "REJECT" }),
        error: None,
    }
}

fn rejected(state: &AppState, message: impl Into<String>) -> Checked {
    Checked {
        accepted: false,
        envelope: envelope(
            state,
            verdict(false),
            Detail {
                message: message.into(),
                ..Detail::default()
            },
        ),
    }
}

/// What `/validate/check` concluded; `/validate/radiuscheck` only needs `accepted`.
struct Checked {
    accepted: bool,
    envelope: Envelope,
}

async fn check(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<Envelope>, PiError> {
    let checked = run_check(&state, peer.ip(), request).await?;
    Ok(Json(checked.envelope))
}

/// privacyIDEA's RADIUS-friendly form: 204 on success, an empty 400 otherwise; errors as `/validate/check`.
async fn radiuscheck(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<StatusCode, PiError> {
    let checked = run_check(&state, peer.ip(), request).await?;
    Ok(if checked.accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    })
}

async fn run_check(state: &AppState, peer: IpAddr, request: Request) -> Result<Checked, PiError> {
    let PiCaller {
        actor,
        trusted_proxy,
    } = caller(state, request.headers(), peer, false)?;
    let params = &Params::from_request(request, state).await?;
    let Some(user) = params.given("user") else {
        return Err(if params.given("serial").is_some() {
            PiError::parameter(
                "Twofold checks codes per user: send user (a serial alone is not supported)",
            )
        } else {
            PiError::parameter("You need to specify a serial, user or user and realm.")
        });
    };
    let Some(pass) = params.get("pass") else {
        return Err(PiError::parameter("Missing parameter: 'pass'"));
    };
    let transaction = params
        .given("transaction_id")
        .or_else(|| params.given("state"));
    if let Some(tx) = transaction {
        crate::validate::text("transaction_id", tx, 64)?;
    }
    let address = end_user_address(params.given("client"), trusted_proxy, peer)?;
    let source = match realm_source(state, params) {
        Ok(source) => source,
        Err(realm) => return Ok(rejected(state, format!("unknown realm: {realm}"))),
    };

    if pass.is_empty() {
        if transaction.is_some() {
            return Ok(rejected(state, WRONG_RESPONSE));
        }
        return trigger(state, &actor, user, source.as_deref(), None)
            .await
            .map(|(_, checked)| checked);
    }

    let scope = VerifyScope {
        source: source.as_deref(),
        device: params.given("serial"),
        ..VerifyScope::default()
    };
    let answer = state
        .service
        .verify_scoped(&actor, user, pass, transaction, scope, address)
        .await?;
    Ok(from_verify(state, &answer, pass, transaction.is_some()))
}

fn from_verify(state: &AppState, answer: &VerifyAnswer, pass: &str, answering: bool) -> Checked {
    if answer.reason == Some(RejectReason::TwoFactorOff) {
        // The user's policy asks for no second factor: the native API says so and lets the relying
        // application decide; privacyIDEA clients only know accept or reject, and privacyIDEA's own
        // answer for a user an admin exempted (its passOnNoToken policy) is an accept.
        return Checked {
            accepted: true,
            envelope: envelope(
                state,
                verdict(true),
                Detail {
                    message: NO_SECOND_FACTOR.to_owned(),
                    ..Detail::default()
                },
            ),
        };
    }
    if answer.result == VerifyResult::Accept {
        let (message, serial, token_type) = match answer.factor {
            Some(Factor::Totp) | None => (
                MATCHING_TOKEN,
                answer.device.as_ref().map(|d| d.id.clone()),
                "totp",
            ),
            Some(Factor::BackupCode) => (MATCHING_TOKEN, Some("backup_codes".to_owned()), "tan"),
            Some(Factor::AccessCode) => (
                MATCHING_TOKEN,
                Some("access_code".to_owned()),
                "registration",
            ),
            Some(Factor::Sms) => (MATCHING_CHALLENGE, Some("sms".to_owned()), "sms"),
            Some(Factor::Voice) => (MATCHING_CHALLENGE, Some("voice".to_owned()), "voice"),
            Some(Factor::Email) => (MATCHING_CHALLENGE, Some("email".to_owned()), "email"),
            Some(Factor::InPerson) => (
                MATCHING_CHALLENGE,
                Some("in_person".to_owned()),
                "in_person",
            ),
        };
        return Checked {
            accepted: true,
            envelope: envelope(
                state,
                verdict(true),
                Detail {
                    message: message.to_owned(),
                    serial,
                    token_type: Some(token_type),
                    otplen: Some(pass.chars().filter(char::is_ascii_digit).count())
                        .filter(|_| token_type == "totp"),
                    ..Detail::default()
                },
            ),
        };
    }
    let message = match answer.reason {
        Some(RejectReason::Replayed) => REPLAYED_OTP.to_owned(),
        Some(RejectReason::Locked) => "Failcounter exceeded".to_owned(),
        Some(RejectReason::RateLimited) => format!(
            "Failcounter exceeded. Try again in {} seconds.",
            answer.retry_after.unwrap_or(1)
        ),
        Some(
            RejectReason::InvalidCode | RejectReason::TwoFactorOff | RejectReason::FactorNotAllowed,
        )
        | None
            if answering =>
        {
            WRONG_RESPONSE.to_owned()
        }
        Some(
            RejectReason::InvalidCode | RejectReason::TwoFactorOff | RejectReason::FactorNotAllowed,
        )
        | None => WRONG_OTP.to_owned(),
    };
    rejected(state, message)
}

/// Sends codes on the user's challenge channels (all of `only` when given): `CHALLENGE` with one
/// transaction id, or a REJECT that does not tell an unknown user from one without a channel. Also
/// returns how many challenges are open, for `/validate/triggerchallenge`.
async fn trigger(
    state: &AppState,
    actor: &Actor,
    user: &str,
    source: Option<&str>,
    only: Option<Channel>,
) -> Result<(usize, Checked), PiError> {
    let Ok(challenges) = state.service.challenges() else {
        return Ok((0, rejected(state, WRONG_OTP)));
    };
    let channels: Vec<Channel> = state
        .service
        .config()
        .privacyidea
        .challenge_channels
        .iter()
        .copied()
        .filter(|c| only.is_none_or(|o| o == *c))
        .collect();
    let group = match challenges
        .start_group(&state.service, actor, user, &channels, source)
        .await?
    {
        GroupStarted::Sent(group) => group,
        GroupStarted::NoChannel => return Ok((0, rejected(state, WRONG_OTP))),
        GroupStarted::TooSoon { retry_after } => {
            return Ok((
                0,
                rejected(
                    state,
                    format!("A code was sent moments ago. Try again in {retry_after} seconds."),
                ),
            ))
        }
    };
    let entries: Vec<MultiChallenge> = group
        .members
        .iter()
        .map(|member| multi_challenge(&group.transaction_id, member))
        .collect();
    let messages: Vec<String> = entries.iter().map(|e| e.message.clone()).collect();
    let count = entries.len();
    let detail = Detail {
        message: messages.join(", "),
        serial: entries.first().map(|e| e.serial.clone()),
        token_type: entries.first().map(|e| e.token_type),
        transaction_id: Some(group.transaction_id.clone()),
        transaction_ids: Some(vec![group.transaction_id.clone(); count]),
        messages: Some(messages),
        multi_challenge: Some(entries),
        client_mode: Some("interactive"),
        preferred_client_mode: Some("interactive"),
        ..Detail::default()
    };
    let result = PiResult {
        status: true,
        value: Some(Value::Bool(false)),
        authentication: Some("CHALLENGE"),
        error: None,
    };
    Ok((
        count,
        Checked {
            accepted: false,
            envelope: envelope(state, result, detail),
        },
    ))
}

fn multi_challenge(transaction_id: &str, member: &ChallengeAnswer) -> MultiChallenge {
    let (serial, token_type, message) = match member.channel {
        Channel::Sms => ("sms", "sms", "Enter the OTP from the SMS:"),
        Channel::Voice => ("voice", "voice", "Enter the OTP from the phone call:"),
        Channel::Email => ("email", "email", "Enter the OTP from the Email:"),
        Channel::InPerson | Channel::Totp => (
            "in_person",
            "in_person",
            "Enter the code the helpdesk gives you:",
        ),
    };
    MultiChallenge {
        transaction_id: transaction_id.to_owned(),
        message: message.to_owned(),
        serial: serial.to_owned(),
        token_type,
        client_mode: "interactive",
        attributes: None,
    }
}

/// privacyIDEA's admin endpoint: sends the challenges without a first `/validate/check`. `value` is
/// the number of challenges sent; `type` (sms, voice, email) narrows to one channel.
async fn triggerchallenge(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<Envelope>, PiError> {
    let actor = caller(&state, request.headers(), peer.ip(), true)?.actor;
    let params = Params::from_request(request, &state).await?;
    let Some(user) = params.given("user") else {
        return Err(PiError::parameter("Missing parameter: 'user'"));
    };
    let only = match params.given("type") {
        None => None,
        Some("sms") => Some(Channel::Sms),
        Some("voice") => Some(Channel::Voice),
        Some("email") => Some(Channel::Email),
        Some(other) => {
            return Err(PiError::parameter(format!(
                "type {other} has no challenge here: use sms, voice or email"
            )))
        }
    };
    let (count, mut checked) = match realm_source(&state, &params) {
        Ok(source) => trigger(&state, &actor, user, source.as_deref(), only).await?,
        Err(realm) => (0, rejected(&state, format!("unknown realm: {realm}"))),
    };
    checked.envelope.result = PiResult {
        status: true,
        value: Some(Value::from(count)),
        authentication: Some(if count > 0 { "CHALLENGE" } else { "REJECT" }),
        error: None,
    };
    if count == 0 {
        if let Some(detail) = checked.envelope.detail.as_mut() {
            detail.messages = Some(Vec::new());
            detail.transaction_ids = Some(Vec::new());
        }
    }
    Ok(Json(checked.envelope))
}
