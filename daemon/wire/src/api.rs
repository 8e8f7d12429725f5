//! The relying-application API (`/api/v1/...` over HTTPS, JSON bodies).

use serde::{Deserialize, Serialize};

use crate::policy::TwoFactorRule;
use crate::{DeviceInfo, TotpAlgorithm, TwoFactorState};

/// `POST /api/v1/users/{user}/totp`: start enrolling an authenticator app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// What the user calls this authenticator ("work phone"). Defaults to "Authenticator".
    #[serde(default)]
    pub label: Option<String>,
    /// Opt-in stronger parameters; the default SHA1 is the only one every app reads.
    #[serde(default)]
    pub algorithm: Option<TotpAlgorithm>,
    /// 6 (default) or 8.
    #[serde(default)]
    pub digits: Option<u8>,
    /// The user's proof, needed when the user already has an active device: a current code of one of
    /// the user's factors (a second device otherwise comes through pairing or restore).
    #[serde(default)]
    pub code: Option<String>,
    /// The end user's address, from a trusted proxy (see `VerifyRequest`).
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAnswer {
    pub device: DeviceInfo,
    /// `otpauth://totp/...`: what the QR code encodes.
    pub otpauth_uri: String,
    /// The shared secret, base32 without padding, for manual entry. Shown only in this answer.
    pub secret: String,
    /// The QR code as a PNG, base64.
    pub qr_png_base64: String,
    /// The QR code as an SVG document.
    pub qr_svg: String,
}

/// `POST /api/v1/users/{user}/totp/{device}/confirm`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub code: String,
    /// The end user's address; used only from a key marked as a trusted proxy.
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmAnswer {
    pub device: DeviceInfo,
    /// Issued with the user's first confirmed device, shown once. Absent when the user already has a set.
    pub backup_codes: Option<Vec<String>>,
    /// The restore code, when this confirmation activated restore (policy `restore_auto_activate`).
    #[serde(default)]
    pub restore_code: Option<crate::restore::RestoreCodeIssued>,
}

/// `POST /api/v1/verify`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Username or user principal name.
    pub user: String,
    /// A TOTP code or a backup code.
    pub code: String,
    /// The end user's address as the relying application saw it; failures are also counted per address.
    /// Only an API key marked as a trusted proxy may name it; from any other key it is ignored, and the
    /// address of the relying application's connection counts.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// The `transaction_id` of a challenge (`POST /api/v1/challenge`): only that challenge's code is
    /// then accepted. Without it, the code of the user's open challenge is accepted too.
    #[serde(default)]
    pub transaction_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    Accept,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Totp,
    BackupCode,
    /// A code sent by SMS, voice call, email or handed over in person (`POST /api/v1/challenge`).
    Sms,
    Voice,
    Email,
    InPerson,
    /// A single-use code an admin generated and handed over verbally.
    AccessCode,
}

/// Why a code was rejected. An unknown user, a disabled user and a wrong code all answer
/// `invalid_code`, so that the answer does not reveal whether a user exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    InvalidCode,
    /// The code was right but its time step (or backup code) was already used.
    Replayed,
    /// Too many recent failures: try again after `retry_after` seconds. The code was not checked.
    RateLimited,
    /// Too many failures: an admin must unlock (or the lock expires, if so configured).
    Locked,
    /// No second factor applies to this user (their policy is `off`): the code was not checked and no
    /// failure was counted. The relying application lets the user in on its first factor.
    TwoFactorOff,
    /// The code is of a factor this request does not take: a backup or sent code, or a code of the
    /// device acted on, where a code from another authenticator app is needed. It was not used up and
    /// no failure was counted. Only requests that need an app's code answer it, never `/api/v1/verify`.
    FactorNotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyAnswer {
    pub result: VerifyResult,
    /// On accept: always `two_factor`, what a signing application records as the method.
    pub method: Option<String>,
    pub factor: Option<Factor>,
    pub device: Option<DeviceInfo>,
    pub reason: Option<RejectReason>,
    /// Seconds until another attempt is considered (with `rate_limited` and timed locks).
    pub retry_after: Option<u64>,
    /// Backup codes left after a backup code was used.
    pub backup_codes_remaining: Option<u32>,
    /// On accept: the user has logged in often enough (policy `restore_prompt_after_logins`) and has not
    /// activated restore yet: the application should offer to activate it.
    #[serde(default)]
    pub restore_prompt: bool,
    /// On accept: the user must enroll a new authenticator now (the system-wide switch was turned on
    /// after their last enrollment, or their policy requires a device they do not have). The relying
    /// application sends them to enrollment before letting them in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enrollment_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

/// `POST /api/v1/users/{user}/backup-codes`: needs a valid TOTP code from an active device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegenerateBackupCodesRequest {
    pub code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCodes {
    pub backup_codes: Vec<String>,
}

/// A code from one of the user's factors, proving the request comes from them:
/// `POST /api/v1/users/{user}/two-factor/disable`, and `.../devices/{device}/unpair` and `.../block`
/// (there the code must come from another active authenticator of the user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeProof {
    pub code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// `GET /api/v1/users/{user}/two-factor`: what the relying application asks of the user at login.
///
/// - `off`: no second factor; let the user in on the first factor (verify answers `two_factor_off`).
/// - `enrollment_required`: send the user to enrollment (`POST .../totp`) before letting them in.
/// - `enrolled`: ask for a code and verify it.
/// - `not_enrolled`: 2FA is optional and the user has no device; the application may offer enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorStatus {
    pub user: String,
    pub state: TwoFactorState,
    /// The rule that applies: the user's policy, or `required` for everyone while the system-wide switch
    /// is on.
    pub rule: TwoFactorRule,
    /// The system-wide switch (set by a master admin) is on.
    pub system_required: bool,
    /// Confirmed, unblocked devices.
    pub active_devices: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
}
