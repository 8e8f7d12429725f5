//! The restore function: moving a user's 2FA identity onto a new device (restore), adding a second
//! device from an active one (duplicate), and blocking a device its user did not add ("this wasn't me").
//! API bodies and admin socket replies.
//!
//! The restore code and the recovery key are one thing: a high-entropy code made at activation, shown
//! (or sent) once, and replaced by a new one whenever it is re-issued, used, or re-sent by an admin.

use serde::{Deserialize, Serialize};

use crate::policy::{Channel, RestoreCodeDelivery};
use crate::DeviceInfo;

/// `POST /api/v1/users/{user}/restore-code`: activate restore, or re-issue the restore code (the old one
/// stops working), with a valid code from one of the user's active authenticators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreCodeRequest {
    /// A current TOTP code of an active device.
    pub code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// A restore code was made; how it reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreCodeIssued {
    pub delivery: RestoreCodeDelivery,
    /// Only with `screen` delivery: show it to the user once; Twofold keeps only its argon2id hash.
    pub restore_code: Option<String>,
    /// With `email`: the masked address; with `in_person`: `helpdesk`.
    pub destination: Option<String>,
    /// Unix seconds.
    pub issued_at: i64,
}

/// Where a user's restore function stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    /// Whether the user's policy lets them restore on their own (else only an admin restores).
    pub allowed: bool,
    pub activated: bool,
    pub activated_at: Option<i64>,
    /// When the current restore code was made.
    pub code_issued_at: Option<i64>,
    /// Completed restores within the last `period_days`.
    pub restores_in_period: u32,
    /// 0: no limit.
    pub limit: u32,
    pub period_days: u32,
    pub last_restore: Option<i64>,
    /// With the limit reached: when the user may restore on their own again.
    pub next_restore_at: Option<i64>,
    /// Successful logins counted (for the restore prompt).
    pub logins: u32,
}

/// `POST /api/v1/restore`, step 1: the restore code. An OTP is then emailed to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreStartRequest {
    /// Username or user principal name.
    pub user: String,
    pub restore_code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreStarted {
    /// Names this restore in the next two steps.
    pub transaction_id: String,
    /// The masked email address the OTP goes to.
    pub destination: String,
    /// When the emailed OTP expires, unix seconds.
    pub expires_at: i64,
}

/// `POST /api/v1/restore/{transaction}/enroll`, step 2: the emailed OTP. Answers a new pending TOTP
/// device (like enrollment, with the QR code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreEnrollRequest {
    pub code: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// `POST /api/v1/restore/{transaction}/confirm`, step 3: the new device's first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfirmRequest {
    pub code: String,
    /// The end user's address; used only from a key marked as a trusted proxy.
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreCompleted {
    pub user: String,
    /// The new, active device.
    pub device: DeviceInfo,
    /// The new restore code (the one used stops working).
    pub restore_code: RestoreCodeIssued,
    /// Devices removed by the policy `restore_old_devices = "delete"`.
    pub removed_devices: Vec<DeviceInfo>,
}

/// `POST /api/v1/users/{user}/pairing`: a short-lived pairing token from an active device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingRequest {
    /// A current TOTP code of an active device.
    pub code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingToken {
    /// Single use; give it to `POST /api/v1/pair` from the new device.
    pub token: String,
    /// `twofold-pair://...`: what the QR code encodes.
    pub pairing_uri: String,
    pub qr_png_base64: String,
    pub qr_svg: String,
    pub expires_at: i64,
}

/// `POST /api/v1/pair`: enroll a second device with a pairing token; confirm it with
/// `/api/v1/users/{user}/totp/{device}/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    pub user: String,
    pub token: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// `POST /api/v1/block`: the code from a new-device notification ("this wasn't me").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub user: String,
    pub code: String,
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBlocked {
    pub user: String,
    /// Blocked for good: its codes are refused and it cannot be unblocked.
    pub device: DeviceInfo,
}

/// An admin re-sent a lost restore code: a new one was made and sent; the old one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCodeResent {
    pub user: String,
    pub channel: Channel,
    /// Masked: `+••••67`, `a•••@example.com`, `helpdesk`.
    pub destination: String,
}
