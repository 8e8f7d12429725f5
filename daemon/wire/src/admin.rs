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
    UserShow {
        user: String,
    },
    UserList {
        #[serde(default)]
        query: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    UserSetEnabled {
        user: String,
        enabled: bool,
    },
    UserDelete {
        user: String,
    },
    /// Clears the user's failure count and lock.
    UserUnlock {
        user: String,
    },
    /// Clears a source address's failure count and lock.
    AddressUnlock {
        address: String,
    },
    DeviceList {
        user: String,
    },
    DeviceBlock {
        user: String,
        device: String,
    },
    DeviceUnblock {
        user: String,
        device: String,
    },
    DeviceDelete {
        user: String,
        device: String,
    },
    TotpEnroll {
        user: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        algorithm: Option<TotpAlgorithm>,
        #[serde(default)]
        digits: Option<u8>,
    },
    TotpConfirm {
        user: String,
        device: String,
        code: String,
    },
    /// A new key with the given scopes (at least one); `trusted_proxy` lets it name the end user's
    /// address (`client_ip`).
    ApiKeyCreate {
        name: String,
        #[serde(default)]
        scopes: Vec<ApiScope>,
        #[serde(default)]
        trusted_proxy: bool,
    },
    ApiKeyList,
    /// Narrows or widens an existing key: what is given replaces what the key had.
    ApiKeySet {
        name: String,
        #[serde(default)]
        scopes: Option<Vec<ApiScope>>,
        #[serde(default)]
        trusted_proxy: Option<bool>,
    },
    ApiKeyRevoke {
        name: String,
    },
    AuditTail {
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The newest audit events matching every given filter, oldest first.
    AuditSearch {
        filter: AuditFilter,
    },
    /// Who the daemon takes the caller for, and the caller's role.
    WhoAmI,
    /// Counts for the console's dashboard, with the newest audit events.
    Dashboard,
    /// Every user in a compact form, sorted by username: the console searches it locally, so a keystroke
    /// does not cost a scan of the store.
    UserIndex,
    /// The live 2FA policies: the defaults and the per-group entries in priority order, where they came
    /// from, and whether the configuration file's policy sections differ from them.
    PolicyShow,
    /// Sets one default (a `[policy]` key) of the live policies. The value is spelled as on the command
    /// line: `required`, `totp,sms`, `3`, `true`; checked exactly as the configuration file is.
    PolicySet {
        key: String,
        value: String,
    },
    /// Sets one setting of a group's entry; without a value the setting is cleared and falls through.
    /// A group without an entry gets one, last (lowest priority).
    PolicyGroupSet {
        group: String,
        key: String,
        #[serde(default)]
        value: Option<String>,
    },
    /// Removes a group's entry.
    PolicyGroupRemove {
        group: String,
    },
    /// Moves a group's entry to `position` (1 = first, highest priority).
    PolicyGroupMove {
        group: String,
        position: u32,
    },
    /// Replaces the live policies with the configuration file's policy sections, as the daemon last
    /// read the file (at start or on SIGHUP).
    PolicyResetToConfig,
    /// Runs a directory sync now (all domains, or one) and answers with its status when done.
    DirectorySync {
        #[serde(default)]
        domain: Option<String>,
        /// A full sync instead of an incremental one.
        #[serde(default)]
        full: bool,
    },
    DirectoryStatus,
    /// Sets (or, with null, clears) the numbers Twofold uses instead of the directory's.
    UserSetPhoneOverride {
        user: String,
        #[serde(default)]
        mobile: Option<String>,
        #[serde(default)]
        voice: Option<String>,
    },
    /// Recent challenges and their delivery status, newest first (all users, or one).
    DeliveryList {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The in-person handover queue, codes included (each listing is audited).
    HandoverList,
    /// Removes an entry from the handover queue once the code was read out.
    HandoverDone {
        id: String,
    },
    /// The configured delivery plugins and whether each loaded.
    PluginStatus,
    /// Loads the configured plugins again from their folders (a changed file is compiled anew).
    PluginReload,
    /// Loads a component the client sends with the daemon's engine and checks, without installing
    /// it: the client reads the file, so the daemon reads nothing on an operator's behalf.
    PluginCheck {
        file: String,
        wasm_base64: String,
    },
    /// Calls a configured plugin once with a test message to a number (no user, no code anyone can
    /// use, no retries): a dry run against the real gateway.
    PluginTest {
        plugin: String,
        to: String,
        #[serde(default = "sms_channel")]
        channel: crate::policy::Channel,
    },
    /// A single-use access code for a user, to hand over verbally (needs `[challenge] access_codes`).
    AccessCodeGenerate {
        user: String,
    },
    /// Where a user's restore function stands: activated, when, restores used in the period.
    RestoreStatus {
        user: String,
    },
    /// Makes a new restore code for a user who lost theirs and sends it by a channel the user's policy
    /// allows (`restore_resend_channels`); the old code stops working.
    RestoreResend {
        user: String,
        channel: crate::policy::Channel,
    },
    /// Restores a user onto a new authenticator for them (when their policy prohibits restore, or their
    /// limit is reached): answers a pending device with its QR code, finished by `RestoreConfirm`.
    RestoreStart {
        user: String,
        #[serde(default)]
        label: Option<String>,
    },
    /// Confirms the device `RestoreStart` made with its first code and completes the restore.
    RestoreConfirm {
        user: String,
        device: String,
        code: String,
    },
    /// Removes the user's devices and backup codes; they must enroll again at their next login.
    UserResetTwoFactor {
        user: String,
    },
    /// The system-wide 2FA switch: whether it is on, since when and who set it.
    SystemTwoFactorShow,
    /// Turns the system-wide switch on (every user must enroll at their next login, again if they
    /// enrolled before this switch-on) or off (the policies apply).
    SystemTwoFactorSet {
        on: bool,
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

// One reply is built per request and serialized at once: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum AdminReply {
    Status(DaemonStatus),
    User(UserView),
    Users {
        users: Vec<UserSummary>,
    },
    Devices {
        devices: Vec<DeviceInfo>,
    },
    Device(DeviceInfo),
    Enrollment(EnrollAnswer),
    Confirmed(ConfirmAnswer),
    /// The key is shown only here; the daemon keeps its SHA-256.
    ApiKeyCreated {
        name: String,
        key: String,
    },
    ApiKeys {
        keys: Vec<ApiKeyInfo>,
    },
    Audit {
        events: Vec<AuditEvent>,
    },
    DirectoryStatus {
        domains: Vec<SyncStatus>,
    },
    Done {
        message: String,
    },
    Identity(OperatorIdentity),
    Dashboard(DashboardStats),
    UserIndex {
        users: Vec<UserIndexEntry>,
    },
    Policies(PolicyOverview),
    /// A policy edit's outcome: what changed (nothing, when the value was already so) and the result.
    PolicyChanged {
        /// One line per setting changed: `group VPN Users: two_factor - -> required`.
        changes: Vec<String>,
        policies: PolicyOverview,
    },
    Deliveries {
        deliveries: Vec<crate::delivery::DeliveryInfo>,
    },
    Handovers {
        entries: Vec<crate::delivery::HandoverEntry>,
    },
    Plugins {
        plugins: Vec<crate::delivery::PluginInfo>,
    },
    PluginChecked(crate::delivery::PluginCheck),
    PluginTested(crate::delivery::PluginTest),
    /// The code is shown only here; the daemon keeps its HMAC.
    AccessCode(crate::delivery::AccessCodeIssued),
    RestoreState {
        user: String,
        state: crate::restore::RestoreState,
    },
    RestoreCodeSent(crate::restore::RestoreCodeResent),
    Restored(crate::restore::RestoreCompleted),
    SystemTwoFactor(SystemTwoFactorView),
}

/// The system-wide 2FA switch. While it is on, every user must have enrolled during the current epoch;
/// each switch-on starts a new epoch, so switching off and on again makes everyone enroll again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemTwoFactorView {
    pub on: bool,
    /// Counts the switch-ons; 0 until the first.
    pub epoch: u64,
    /// When and by whom it was last switched (absent before the first switch).
    pub changed_at: Option<i64>,
    pub changed_by: Option<String>,
    /// Users who must enroll now (for any reason), of all users.
    pub enrollment_required: u64,
    pub users: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub users: u64,
    pub api_listen: String,
    pub schema_version: u32,
    /// Absent from older daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<AuditLogStatus>,
}

/// The audit log on disk (the store's journal, in segment files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLogStatus {
    pub segments: u64,
    pub bytes: u64,
    /// Time of the oldest event kept.
    pub oldest_event: Option<i64>,
    /// Whole segments go once all their events are older than this (`[audit] retention_days`).
    pub retention_days: u32,
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
    /// The numbers as the directory (or the local record) has them.
    pub mobile: Option<String>,
    pub voice: Option<String>,
    /// Admin overrides, which win over `mobile` and `voice` until cleared.
    pub mobile_override: Option<String>,
    pub voice_override: Option<String>,
    /// How the numbers that apply (the override, else the directory's) are dialled, or why they cannot be.
    #[serde(default)]
    pub mobile_dialled: Option<DialledNumber>,
    #[serde(default)]
    pub voice_dialled: Option<DialledNumber>,
    pub groups: Vec<String>,
    pub enabled: bool,
    /// `local` for users created here, `ad:<domain>` for synced users.
    pub source: String,
    pub directory: Option<DirectoryInfo>,
    /// Why the user cannot sign in now (disabled, removed, expired or locked out in AD), if they cannot.
    #[serde(default)]
    pub cannot_sign_in: Option<String>,
    /// The policy that applies, from the defaults and the user's groups.
    pub policy: Option<crate::policy::EffectivePolicy>,
    pub state: TwoFactorState,
    pub devices: Vec<DeviceInfo>,
    pub backup_codes_remaining: u32,
    pub failures: u32,
    pub locked: bool,
    pub created: i64,
    /// The restore function's state (absent from older daemons).
    #[serde(default)]
    pub restore: Option<crate::restore::RestoreState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub name: String,
    pub created: i64,
    #[serde(flatten)]
    pub access: ApiKeyAccess,
    /// Made before keys had scopes and never narrowed: it keeps every power keys had then.
    #[serde(default)]
    pub unscoped: bool,
}

/// What a relying application's API key may do. Each endpoint needs one scope (README, "Security
/// model"), so a VPN that only checks codes cannot enroll a device or delete one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Check codes: verify, challenges, the user's 2FA state, the privacyIDEA validate endpoints.
    Verify,
    /// Run the user's own flows, each with the user's proof: enrollment, pairing, restore, unpair and
    /// block with a code, backup codes, turning 2FA off.
    Enroll,
    /// Act without the user's proof: delete a device.
    Manage,
}

impl ApiScope {
    pub const ALL: [ApiScope; 3] = [ApiScope::Verify, ApiScope::Enroll, ApiScope::Manage];

    pub fn name(self) -> &'static str {
        match self {
            ApiScope::Verify => "verify",
            ApiScope::Enroll => "enroll",
            ApiScope::Manage => "manage",
        }
    }
}

impl std::str::FromStr for ApiScope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ApiScope::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("unknown scope {text:?}: verify, enroll or manage"))
    }
}

/// A key's powers: its scopes, and whether it may name the end user's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyAccess {
    /// Sorted, each once.
    pub scopes: Vec<ApiScope>,
    /// The caller is a proxy the site trusts to say where the end user is: its `client_ip` (privacyIDEA's
    /// `client`) is counted for lockout. Other callers' `client_ip` is ignored and their own address counts.
    pub trusted_proxy: bool,
}

impl ApiKeyAccess {
    /// What every key could do before keys had scopes.
    pub fn unscoped() -> ApiKeyAccess {
        ApiKeyAccess {
            scopes: ApiScope::ALL.to_vec(),
            trusted_proxy: true,
        }
    }

    pub fn allows(&self, scope: ApiScope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// One line of the audit log. Never holds a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    /// Unix seconds.
    pub time: i64,
    /// `api:<key name>`, `admin:uid=<n>` (`admin:uid=<n>,ad=<domain>/<username>` when an AD group gave
    /// the operator's role) or `daemon`.
    pub actor: String,
    /// e.g. `verify`, `totp_enroll`, `user_create`.
    pub action: String,
    /// The user acted on, if any.
    pub user: Option<String>,
    pub outcome: String,
    /// Extra facts: device id, factor, reason, source address.
    pub detail: Option<String>,
}

/// Filters of an audit search; each one given must match (case-insensitive substring).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    /// Matches any field, the detail included.
    #[serde(default)]
    pub text: Option<String>,
    /// Only events older than this id: the next page back.
    #[serde(default)]
    pub before: Option<u64>,
    /// Default 200.
    #[serde(default)]
    pub limit: Option<u32>,
}

impl AuditFilter {
    pub fn matches(&self, event: &AuditEvent) -> bool {
        fn has(field: &str, wanted: &Option<String>) -> bool {
            wanted
                .as_ref()
                .is_none_or(|w| field.to_lowercase().contains(&w.to_lowercase()))
        }
        let user = event.user.as_deref().unwrap_or("");
        let detail = event.detail.as_deref().unwrap_or("");
        has(user, &self.user)
            && has(&event.action, &self.action)
            && has(&event.actor, &self.actor)
            && has(&event.outcome, &self.outcome)
            && self.text.as_ref().is_none_or(|t| {
                let t = t.to_lowercase();
                [user, detail, &event.action, &event.actor, &event.outcome]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&t))
            })
            && self.before.is_none_or(|b| event.id < b)
    }
}

/// An operator's role. Roles are ordered: each one may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Helpdesk,
    Admin,
    MasterAdmin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Helpdesk, Role::Admin, Role::MasterAdmin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Helpdesk => "helpdesk",
            Role::Admin => "admin",
            Role::MasterAdmin => "master admin",
        }
    }

    pub fn permits(self, permission: Permission) -> bool {
        self >= permission.role()
    }
}

/// What an operator may do. Every admin request needs exactly one permission; a feature that adds
/// requests adds its permission here, with the role it needs, so the daemon and the console agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Status, dashboard, users, devices, the audit log.
    LookUp,
    /// Clear a user's or an address's failures and lock.
    Unlock,
    /// Read out a code from the in-person handover queue.
    HandOverCode,
    BlockDevice,
    /// Unblocking re-arms a device someone reported lost, so it takes more than blocking.
    UnblockDevice,
    UnpairDevice,
    ResetTwoFactor,
    EnrollAuthenticator,
    UpdatePhoneNumbers,
    GenerateAccessCode,
    ResendRestoreCode,
    /// Restore a user onto a new device for them (their policy prohibits it, or their limit is reached).
    RestoreForUser,
    /// Create, enable, disable and delete local users.
    ManageUsers,
    /// Start a directory sync now.
    SyncDirectory,
    /// API keys decide which applications may verify codes: a system setting.
    ManageApiKeys,
    ManagePolicies,
    SystemTwoFactorSwitch,
}

impl Permission {
    pub const ALL: [Permission; 17] = [
        Permission::LookUp,
        Permission::Unlock,
        Permission::HandOverCode,
        Permission::BlockDevice,
        Permission::UnblockDevice,
        Permission::UnpairDevice,
        Permission::ResetTwoFactor,
        Permission::EnrollAuthenticator,
        Permission::UpdatePhoneNumbers,
        Permission::GenerateAccessCode,
        Permission::ResendRestoreCode,
        Permission::RestoreForUser,
        Permission::ManageUsers,
        Permission::SyncDirectory,
        Permission::ManageApiKeys,
        Permission::ManagePolicies,
        Permission::SystemTwoFactorSwitch,
    ];

    /// The table of roles: the least role that holds each permission.
    pub fn role(self) -> Role {
        match self {
            Permission::LookUp
            | Permission::Unlock
            | Permission::HandOverCode
            | Permission::BlockDevice => Role::Helpdesk,
            Permission::UnblockDevice
            | Permission::UnpairDevice
            | Permission::ResetTwoFactor
            | Permission::EnrollAuthenticator
            | Permission::UpdatePhoneNumbers
            | Permission::GenerateAccessCode
            | Permission::ResendRestoreCode
            | Permission::RestoreForUser
            | Permission::ManageUsers
            | Permission::SyncDirectory => Role::Admin,
            Permission::ManageApiKeys
            | Permission::ManagePolicies
            | Permission::SystemTwoFactorSwitch => Role::MasterAdmin,
        }
    }

    /// What it allows, for help screens and refusals ("unblock devices needs the admin role").
    pub fn describe(self) -> &'static str {
        match self {
            Permission::LookUp => "look up users, devices and the audit log",
            Permission::Unlock => "unlock users and addresses",
            Permission::HandOverCode => "hand over codes in person",
            Permission::BlockDevice => "block devices",
            Permission::UnblockDevice => "unblock devices",
            Permission::UnpairDevice => "unpair devices",
            Permission::ResetTwoFactor => "reset 2FA",
            Permission::EnrollAuthenticator => "enroll authenticators",
            Permission::UpdatePhoneNumbers => "update phone numbers",
            Permission::GenerateAccessCode => "generate access codes",
            Permission::ResendRestoreCode => "re-send restore codes",
            Permission::RestoreForUser => "restore users onto new devices",
            Permission::ManageUsers => "create, enable, disable and delete users",
            Permission::SyncDirectory => "sync the directory now",
            Permission::ManageApiKeys => "manage API keys",
            Permission::ManagePolicies => "change policies",
            Permission::SystemTwoFactorSwitch => "switch 2FA on or off system-wide",
        }
    }
}

impl AdminRequest {
    /// The permission this request needs.
    pub fn permission(&self) -> Permission {
        match self {
            AdminRequest::Status
            | AdminRequest::WhoAmI
            | AdminRequest::Dashboard
            | AdminRequest::UserIndex
            | AdminRequest::PolicyShow
            | AdminRequest::UserShow { .. }
            | AdminRequest::UserList { .. }
            | AdminRequest::DeviceList { .. }
            | AdminRequest::AuditTail { .. }
            | AdminRequest::AuditSearch { .. }
            | AdminRequest::DirectoryStatus
            | AdminRequest::DeliveryList { .. }
            | AdminRequest::RestoreStatus { .. }
            | AdminRequest::PluginStatus
            | AdminRequest::PluginCheck { .. }
            | AdminRequest::SystemTwoFactorShow => Permission::LookUp,
            AdminRequest::RestoreResend { .. } => Permission::ResendRestoreCode,
            AdminRequest::RestoreStart { .. } | AdminRequest::RestoreConfirm { .. } => {
                Permission::RestoreForUser
            }
            AdminRequest::UserResetTwoFactor { .. } => Permission::ResetTwoFactor,
            AdminRequest::SystemTwoFactorSet { .. } => Permission::SystemTwoFactorSwitch,
            AdminRequest::HandoverList | AdminRequest::HandoverDone { .. } => {
                Permission::HandOverCode
            }
            AdminRequest::AccessCodeGenerate { .. } => Permission::GenerateAccessCode,
            // Plugins run with the capabilities the configuration grants: a system setting.
            AdminRequest::PluginReload | AdminRequest::PluginTest { .. } => {
                Permission::ManagePolicies
            }
            AdminRequest::DirectorySync { .. } => Permission::SyncDirectory,
            AdminRequest::UserSetPhoneOverride { .. } => Permission::UpdatePhoneNumbers,
            AdminRequest::UserUnlock { .. } | AdminRequest::AddressUnlock { .. } => {
                Permission::Unlock
            }
            AdminRequest::DeviceBlock { .. } => Permission::BlockDevice,
            AdminRequest::DeviceUnblock { .. } => Permission::UnblockDevice,
            AdminRequest::DeviceDelete { .. } => Permission::UnpairDevice,
            AdminRequest::TotpEnroll { .. } | AdminRequest::TotpConfirm { .. } => {
                Permission::EnrollAuthenticator
            }
            AdminRequest::UserCreate(_)
            | AdminRequest::UserSetEnabled { .. }
            | AdminRequest::UserDelete { .. } => Permission::ManageUsers,
            AdminRequest::ApiKeyCreate { .. }
            | AdminRequest::ApiKeySet { .. }
            | AdminRequest::ApiKeyList
            | AdminRequest::ApiKeyRevoke { .. } => Permission::ManageApiKeys,
            AdminRequest::PolicySet { .. }
            | AdminRequest::PolicyGroupSet { .. }
            | AdminRequest::PolicyGroupRemove { .. }
            | AdminRequest::PolicyGroupMove { .. }
            | AdminRequest::PolicyResetToConfig => Permission::ManagePolicies,
        }
    }
}

/// The caller as the daemon sees it through the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorIdentity {
    pub uid: u32,
    /// The account name of `uid`, when the system knows one.
    pub name: Option<String>,
    pub role: Role,
    /// Why: `root`, `daemon user`, `group <name>` (a Unix group), or `AD group <DN>`.
    pub granted_by: String,
    /// `<domain>/<username>` of the synced AD user whose groups gave the role; absent when the role
    /// came from root, the daemon's user or a Unix group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardStats {
    pub users: u64,
    /// Users with at least one confirmed device.
    pub enrolled: u64,
    pub enrollment_required: u64,
    pub disabled: u64,
    pub locked: u64,
    pub devices_active: u64,
    pub devices_blocked: u64,
    /// Enrollments started and not confirmed.
    pub devices_pending: u64,
    pub api_keys: u64,
    /// The newest audit events, oldest first.
    pub recent: Vec<AuditEvent>,
}

/// One user in the console's search index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIndexEntry {
    pub username: String,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub enabled: bool,
    pub state: TwoFactorState,
    pub locked: bool,
}

/// The live policies (`[policy]` and `[[policy.group]]` settings), which master admins edit at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOverview {
    pub two_factor: crate::policy::TwoFactorRule,
    pub channels: Vec<crate::policy::Channel>,
    pub restore: crate::policy::RestoreRule,
    /// The default restore settings (`restore_*` keys of `[policy]`).
    #[serde(default)]
    pub restore_settings: crate::policy::RestorePolicy,
    /// First match wins per setting; a setting left out falls through to the next entry, then the default.
    pub groups: Vec<GroupPolicyView>,
    /// Where the live policies came from and their last change (absent from older daemons).
    #[serde(default)]
    pub origin: Option<crate::policy::PolicyOrigin>,
    /// The configuration file's policy sections, as last read, differ from the live policies (which
    /// apply); `policy reset-to-config` applies the file's.
    #[serde(default)]
    pub config_differs: bool,
}

impl PolicyOverview {
    /// The defaults as (setting, value) in `policy::SETTINGS` order, spelled as the CLI takes them.
    pub fn default_settings(&self) -> Vec<(&'static str, String)> {
        crate::policy::default_settings(
            self.two_factor,
            &self.channels,
            self.restore,
            &self.restore_settings,
        )
    }
}

impl GroupPolicyView {
    /// The entry's settings as (setting, value) in `policy::SETTINGS` order; `None` falls through.
    pub fn settings(&self) -> Vec<(&'static str, Option<String>)> {
        crate::policy::group_settings(
            self.two_factor,
            self.channels.as_deref(),
            self.restore,
            &self.restore_settings,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPolicyView {
    /// The group's DN or CN.
    pub group: String,
    pub two_factor: Option<crate::policy::TwoFactorRule>,
    pub channels: Option<Vec<crate::policy::Channel>>,
    pub restore: Option<crate::policy::RestoreRule>,
    /// The restore settings this entry overrides; the rest fall through.
    #[serde(default)]
    pub restore_settings: crate::policy::RestorePolicyOverride,
}

/// Where a synced user lives in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryInfo {
    pub domain: String,
    pub guid: String,
    pub dn: String,
    pub account_disabled: bool,
    pub removed_at: Option<i64>,
    /// accountExpires (unix seconds); absent when it never expires, and from older daemons.
    #[serde(default)]
    pub expires: Option<i64>,
    /// Locked out in AD at the last sync.
    #[serde(default)]
    pub locked_out: bool,
    /// When that lockout ends by itself (unix seconds); absent while it lasts until an admin lifts it.
    #[serde(default)]
    pub locked_until: Option<i64>,
}

/// How a phone number is dialled when a code is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DialledNumber {
    /// Written with a country code, dialled as this E.164 number.
    E164 { number: String },
    /// Written without a country code: passed as written to the delivery plugin, whose
    /// `number_rewrite` completes it.
    AsWritten { number: String },
    /// No code can be sent to it.
    Unusable { reason: String },
}

impl DialledNumber {
    /// For admins, after the number as written: `dialled +491701234567`, `UNUSABLE: ...`.
    pub fn describe(&self) -> String {
        match self {
            DialledNumber::E164 { number } => format!("dialled {number}"),
            DialledNumber::AsWritten { .. } => {
                "no country code: sent as written, the delivery plugin's number_rewrite completes it"
                    .to_owned()
            }
            DialledNumber::Unusable { reason } => format!("UNUSABLE: {reason}"),
        }
    }
}

/// The last sync of one directory domain, for admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub domain: String,
    /// `full` or `incremental`.
    pub mode: String,
    pub ok: bool,
    /// Start of the last run, unix seconds.
    pub last_run: Option<i64>,
    pub last_success: Option<i64>,
    pub duration_ms: u64,
    /// Of `duration_ms`, the time spent waiting for the domain controller: connecting, binding and
    /// searching (a search's next page is awaited while the current one is applied, so this counts the
    /// DC's time, not only the wait that was left over).
    #[serde(default)]
    pub directory_ms: u64,
    /// The domain controller URL that answered.
    pub server: Option<String>,
    /// Pages of search results read (paged-results control).
    pub pages: u64,
    pub entries: u64,
    pub added: u64,
    pub changed: u64,
    pub disabled: u64,
    pub removed: u64,
    pub purged: u64,
    /// Entries read but not applied (unreadable, or a name another user holds): the sync then failed.
    #[serde(default)]
    pub failed: u64,
    /// Entries skipped or failures, one line each (the first 20).
    pub errors: Vec<String>,
}

fn sms_channel() -> crate::policy::Channel {
    crate::policy::Channel::Sms
}
