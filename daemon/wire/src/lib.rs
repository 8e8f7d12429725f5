//! Types that cross a process boundary: the relying-application HTTPS API and the admin socket.
//!
//! This crate depends only on serde so that `twofold-admin` (and any client) can share the daemon's
//! types without compiling its storage, TLS or plugin stacks. Requests deny unknown fields: a typo in a
//! field name is the caller's mistake and gets a 4xx, never a silently ignored value.

pub mod admin;
pub mod api;
pub mod delivery;
pub mod policy;
pub mod restore;
pub mod text;

use serde::{Deserialize, Serialize};

/// The body of every error answer, from the API (`{"error": {...}}`) and the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `invalid_request`, `not_found`, `unauthorized`.
    pub code: String,
    /// One line for a human.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// Kind of authenticator a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Totp,
    Sms,
    Voice,
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Enrollment started, first code not yet confirmed: its codes are not accepted.
    Pending,
    Active,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    pub id: String,
    pub kind: DeviceKind,
    pub label: String,
    pub status: DeviceStatus,
    /// Unix seconds.
    pub created: i64,
    pub last_used: Option<i64>,
    /// For SMS, voice and email devices: where codes go.
    pub destination: Option<String>,
    /// How the device was added.
    #[serde(default)]
    pub origin: DeviceOrigin,
}

/// How a device came to be: users and admins see it in device lists, and a notification names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceOrigin {
    /// Enrolled by the user through a relying application (or the CLI).
    #[default]
    Enrolled,
    /// Enrolled by an admin for the user.
    Admin,
    /// Moved onto a new device with the restore code and an emailed code.
    Restored,
    /// Added from an already active device with a pairing token.
    Duplicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactorState {
    /// No confirmed device; the user may enroll.
    NotEnrolled,
    /// The user must enroll at their next login: their policy requires 2FA and they have no device, an
    /// admin reset their 2FA, or the system-wide switch was turned on after their last enrollment.
    EnrollmentRequired,
    Enrolled,
    /// The user's policy is `off` (e.g. a group that logs in through SSO): no second factor applies, the
    /// relying application lets them in on its first factor. Enrollment is refused, verify answers
    /// `two_factor_off`.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}
