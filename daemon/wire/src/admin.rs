//! The admin socket protocol: one JSON request per line, one JSON answer per line.
//!
//! Newline-delimited JSON keeps the framing trivial (compact JSON never contains a raw newline) and lets an
//! operator talk to the socket with `socat` when the console is not at hand.

use serde::{Deserialize, Serialize};

use crate::api::{ConfirmAnswer, EnrollAnswer};
use crate::{DeviceInfo, ErrorBody, TotpAlgorithm, TwoFactorState};

/// Longest request line the daemon reads; a longer one is refused and the connection closed.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    Status,
    UserCreate(NewUser),
    UserShow { user: String },
    UserList {
        #[serde(default)]
        query: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    UserSetEnabled { user: String, enabled: bool },
    UserDelete { user: String },
    /// Clears the user's failure count and lock.
    UserUnlock { user: String },
    /// Clears a source address's failure count and lock.
    AddressUnlock { address: String },
    DeviceList { user: String },
    DeviceBlock { user: String, device: String },
    DeviceUnblock { user: String, device: String },
    DeviceDelete { user: String, device: String },
    TotpEnroll {
        user: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        algorithm: Option<TotpAlgorithm>,
        #[serde(default)]
        digits: Option<u8>,
    },
    TotpConfirm { user: String, device: String, code: String },
    ApiKeyCreate { name: String },
    ApiKeyList,
    ApiKeyRevoke { name: String },
    AuditTail {
        #[serde(default)]
        limit: Option<u32>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AdminAnswer {
    Ok { reply: Box<AdminReply> },
    Error { error: ErrorBody },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum AdminReply {
    Status(DaemonStatus),
    User(UserView),
    Users { users: Vec<UserSummary> },
    Devices { devices: Vec<DeviceInfo> },
    Device(DeviceInfo),
    Enrollment(EnrollAnswer),
    Confirmed(ConfirmAnswer),
    /// The key is shown only here; the daemon keeps its SHA-256.
    ApiKeyCreated { name: String, key: String },
    ApiKeys { keys: Vec<ApiKeyInfo> },
    Audit { events: Vec<AuditEvent> },
    Done { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub users: u64,
    pub api_listen: String,
    pub schema_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub enabled: bool,
    pub state: TwoFactorState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub voice: Option<String>,
    pub groups: Vec<String>,
    pub enabled: bool,
    /// `local` for users created here.
    pub source: String,
    pub state: TwoFactorState,
    pub devices: Vec<DeviceInfo>,
    pub backup_codes_remaining: u32,
    pub failures: u32,
    pub locked: bool,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub name: String,
    pub created: i64,
}

/// One line of the audit log. Never holds a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    /// Unix seconds.
    pub time: i64,
    /// `api:<key name>`, `admin:uid=<n>` or `daemon`.
    pub actor: String,
    /// e.g. `verify`, `totp_enroll`, `user_create`.
    pub action: String,
    /// The user acted on, if any.
    pub user: Option<String>,
    pub outcome: String,
    /// Extra facts: device id, factor, reason, source address.
    pub detail: Option<String>,
}
