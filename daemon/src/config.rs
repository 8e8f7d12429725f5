//! The configuration file: TOML, `version = 1`, every key optional but `version`, unknown keys refused.
//!
//! `check` reports every error it can find, each with its line, rather than stopping at the first: an admin
//! fixing a config on an appliance should not have to run the checker once per typo. serde stops at the
//! first error, so after each one the offending line (or table) is commented out and parsing resumes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The only format this daemon reads. A later format bumps this and keeps reading the old one.
pub const CONFIG_VERSION: u32 = 1;
/// Where an installed daemon looks when no `--config` is given.
pub const SYSTEM_CONFIG: &str = "/etc/twofold/twofold.toml";
/// Data folder for the zero-setup run from a checkout.
pub const LOCAL_DATA_DIR: &str = "twofold-data";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub totp: TotpConfig,
    #[serde(default)]
    pub backup_codes: BackupCodeConfig,
    #[serde(default)]
    pub lockout: LockoutConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// How long the audit log keeps its events.
    #[serde(default)]
    pub audit: AuditConfig,
    /// 2FA policies: defaults, and overrides per directory group (see `policy`).
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Active Directory domains to sync users from, each a `[[directory]]` table.
    #[serde(default)]
    pub directory: Vec<DirectoryConfig>,
    /// Codes sent out of band, and admin access codes (see `challenge`).
    #[serde(default)]
    pub challenge: crate::delivery::config::ChallengeConfig,
    /// Delivery routes, retries and plugin sandbox limits (see `delivery`).
    #[serde(default)]
    pub delivery: crate::delivery::config::DeliveryConfig,
    /// The SMTP server for email codes; absent: no email channel.
    #[serde(default)]
    pub email: Option<crate::delivery::config::EmailConfig>,
    /// Delivery plugins, each a `[[plugin]]` table with its capabilities.
    #[serde(default)]
    pub plugin: Vec<crate::delivery::config::PluginConfig>,
    /// Lifetimes of the restore function's short-lived secrets (see `restore`).
    #[serde(default)]
    pub restore: crate::restore::RestoreConfig,
    /// The privacyIDEA-compatible validate API (`/validate/check`), off unless enabled.
    #[serde(default)]
    pub privacyidea: PrivacyIdeaConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(LOCAL_DATA_DIR)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key_file`. Absent: a self-signed certificate in `data_dir/tls`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// `[api.connections]`: timeouts and caps that keep idle and slow clients from starving the rest.
    #[serde(default)]
    pub connections: crate::api::connections::ConnectionConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_max_body() -> usize {
    64 * 1024
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            tls_cert_file: None,
            tls_key_file: None,
            max_body_bytes: default_max_body(),
            connections: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Absent: `admin.sock` in the data folder.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The socket file's group (mode 0660): besides root and the daemon's user, only its members can
    /// connect. What each operator may then do comes from `roles`.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub roles: AdminRoles,
    /// A connection that sends no request (or takes no answer) for this long is closed.
    #[serde(default = "default_admin_idle_timeout")]
    pub idle_timeout_seconds: u64,
}

/// Five minutes: the console connects again by itself, so a short bound costs an operator nothing.
fn default_admin_idle_timeout() -> u64 {
    300
}

pub const ADMIN_IDLE_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=86_400;

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: None,
            group: None,
            roles: AdminRoles::default(),
            idle_timeout_seconds: default_admin_idle_timeout(),
        }
    }
}

/// `[admin.roles]`: Unix groups (primary or supplementary, so also directory groups that sssd or winbind
/// map to Unix groups) whose members get each role, and `[admin.roles.directory]`: AD groups, synced
/// from a `[[directory]]`, whose members get each role (see `roles`). root and the daemon's own user are
/// master admins; a member of several groups gets the highest of their roles; someone in none is
/// refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRoles {
    #[serde(default)]
    pub helpdesk: Vec<String>,
    #[serde(default)]
    pub admin: Vec<String>,
    #[serde(default)]
    pub master_admin: Vec<String>,
    #[serde(default)]
    pub directory: DirectoryRoles,
}

/// `[admin.roles.directory]`: AD groups, each named by its DN or its CN as in `[[policy.group]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryRoles {
    #[serde(default)]
    pub helpdesk: Vec<String>,
    #[serde(default)]
    pub admin: Vec<String>,
    #[serde(default)]
    pub master_admin: Vec<String>,
}

impl DirectoryRoles {
    pub fn is_empty(&self) -> bool {
        self.helpdesk.is_empty() && self.admin.is_empty() && self.master_admin.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// 32-byte key sealing TOTP seeds. Absent: the systemd credential `master-key` when present,
    /// else `master.key` in the data folder, created with mode 0600 on first start.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// argon2id cost for backup codes. Defaults are OWASP's (19 MiB, 2 passes).
    #[serde(default = "default_argon2_memory")]
    pub argon2_memory_kib: u32,
    #[serde(default = "default_argon2_iterations")]
    pub argon2_iterations: u32,
}

pub const ARGON2_MIN_MEMORY_KIB: u32 = 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            master_key_file: None,
            argon2_memory_kib: default_argon2_memory(),
            argon2_iterations: default_argon2_iterations(),
        }
    }
}

fn default_argon2_memory() -> u32 {
    19 * 1024
}
fn default_argon2_iterations() -> u32 {
    2
}

/// `[privacyidea]`: the privacyIDEA-compatible validate API, for integrations written for privacyIDEA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyIdeaConfig {
    #[serde(default)]
    pub enabled: bool,
    /// How callers of `/validate/check` prove who they are.
    #[serde(default = "default_privacyidea_auth")]
    pub auth: PrivacyIdeaAuth,
    /// Callers allowed by address. With `auth = "address"` the only check; with `api_key` an extra one
    /// when not empty.
    #[serde(default)]
    pub allowed_addresses: Vec<AddressRange>,
    /// privacyIDEA realm => Twofold user source: `local` or a `[[directory]]` name. Empty: `local` and
    /// each directory are realms of their own name.
    #[serde(default)]
    pub realms: std::collections::BTreeMap<String, String>,
    /// The realm of a request without one. Absent: such a request finds users of every source.
    #[serde(default)]
    pub default_realm: Option<String>,
    /// Channels an empty `pass` sends a code on, each one the user's policy allows and has a destination
    /// for. Not voice by default: the voice number falls back to the mobile, so every login would also
    /// ring the phone.
    #[serde(default = "default_privacyidea_channels")]
    pub challenge_channels: Vec<crate::policy::Channel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyIdeaAuth {
    /// An API key (`twofold-admin apikey create`) in the `Authorization` header.
    ApiKey,
    /// The caller's address in `allowed_addresses`, for LDAP proxies and RADIUS plugins that cannot
    /// send a header.
    Address,
}

fn default_privacyidea_auth() -> PrivacyIdeaAuth {
    PrivacyIdeaAuth::ApiKey
}
fn default_privacyidea_channels() -> Vec<crate::policy::Channel> {
    vec![crate::policy::Channel::Sms, crate::policy::Channel::Email]
}

impl Default for PrivacyIdeaConfig {
    fn default() -> Self {
        PrivacyIdeaConfig {
            enabled: false,
            auth: default_privacyidea_auth(),
            allowed_addresses: Vec::new(),
            realms: std::collections::BTreeMap::new(),
            default_realm: None,
            challenge_channels: default_privacyidea_channels(),
        }
    }
}

impl PrivacyIdeaConfig {
    /// The user source (`local`, `ad:NAME`) a realm names; realms compare without case, as privacyIDEA's.
    pub fn realm_source(&self, realm: &str, directories: &[DirectoryConfig]) -> Option<String> {
        let to_source = |name: &str| {
            if name == "local" {
                Some("local".to_owned())
            } else {
                directories
                    .iter()
                    .find(|d| d.name == name)
                    .map(|d| format!("ad:{}", d.name))
            }
        };
        if self.realms.is_empty() {
            let implicit =
                std::iter::once("local").chain(directories.iter().map(|d| d.name.as_str()));
            return implicit
                .into_iter()
                .find(|name| name.eq_ignore_ascii_case(realm))
                .and_then(to_source);
        }
        self.realms
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(realm))
            .and_then(|(_, source)| to_source(source))
    }

    pub fn address_allowed(&self, address: std::net::IpAddr) -> bool {
        self.allowed_addresses.iter().any(|r| r.contains(address))
    }
}

/// An address or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AddressRange(ipnet::IpNet);

impl TryFrom<String> for AddressRange {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        let bad = || format!("{text:?} is not an address or a CIDR range such as 10.0.0.0/8");
        let trimmed = text.trim();
        let range = match trimmed.parse::<ipnet::IpNet>() {
            Ok(range) => range,
            Err(_) if !trimmed.contains('/') => trimmed
                .parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| bad())?,
            Err(_) => return Err(bad()),
        };
        if range.trunc() != range {
            return Err(format!(
                "{text:?} has host bits set: write the network, such as {}",
                range.trunc()
            ));
        }
        Ok(AddressRange(range))
    }
}

impl AddressRange {
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        // An IPv4 client seen through an IPv6 socket is the same client.
        self.0.contains(&address.to_canonical())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfig {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Steps accepted either side of now: RFC 6238 allows one step of network delay.
    #[serde(default = "default_window")]
    pub window: u8,
}

fn default_issuer() -> String {
    "Twofold".to_owned()
}
fn default_window() -> u8 {
    1
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            issuer: default_issuer(),
            window: default_window(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCodeConfig {
    #[serde(default = "default_backup_count")]
    pub count: u8,
}

fn default_backup_count() -> u8 {
    10
}

impl Default for BackupCodeConfig {
    fn default() -> Self {
        BackupCodeConfig {
            count: default_backup_count(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    #[serde(
        default = "LockoutRule::user_default",
        deserialize_with = "LockoutRule::user_over_defaults"
    )]
    pub user: LockoutRule,
    #[serde(
        default = "LockoutRule::address_default",
        deserialize_with = "LockoutRule::address_over_defaults"
    )]
    pub address: LockoutRule,
    /// Failure counters kept for names that are no user (so that answers do not tell users from
    /// non-users); beyond this many, the least recently failed are dropped at each compaction.
    #[serde(default = "LockoutConfig::max_unknown_names_default")]
    pub max_unknown_names: usize,
    /// A user's delays and lock do not stop a code from an address the user succeeded from in this
    /// many days (see `lockout::KnownAddresses`); 0: off. Off by default: an office's or a carrier's
    /// NAT puts many people behind one address, and each of them would pass the user's lock.
    #[serde(default)]
    pub known_address_days: u32,
}

impl LockoutConfig {
    fn max_unknown_names_default() -> usize {
        100_000
    }
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            user: LockoutRule::user_default(),
            address: LockoutRule::address_default(),
            max_unknown_names: LockoutConfig::max_unknown_names_default(),
            known_address_days: 0,
        }
    }
}

/// How failures from one user (or one source address) slow down and then stop further attempts.
/// In the file every key is optional: one left out keeps the rule's default (`user_default`,
/// `address_default`), so `[lockout.user] max_failures = 5` alone changes only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures that lock (again, after a lock lifted). NIST SP 800-63B: never more than 100.
    pub max_failures: u32,
    /// Failures after which each further attempt must wait; the wait doubles per failure.
    pub delay_after: u32,
    pub max_delay_seconds: u64,
    /// How long the first lock of a run lasts; 0 = until an admin unlocks.
    pub lock_seconds: u64,
    /// Each further lock of a run lasts twice the one before, up to this; None: every lock lasts
    /// `lock_seconds`.
    pub max_lock_seconds: Option<u64>,
    /// A run of failures (and locks) is forgotten this long after its last failure or lifted lock;
    /// 0 = only a success or an admin clears it.
    pub forget_after_seconds: u64,
}

/// A `[lockout.user]` or `[lockout.address]` table as written: the keys given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockoutRuleFile {
    max_failures: Option<u32>,
    delay_after: Option<u32>,
    max_delay_seconds: Option<u64>,
    lock_seconds: Option<u64>,
    max_lock_seconds: Option<u64>,
    forget_after_seconds: Option<u64>,
}

impl LockoutRuleFile {
    /// The keys given over the rule's defaults. Without `max_lock_seconds`, re-locks grow up to the
    /// default's longest lock, or the given `lock_seconds` if that is longer; a `lock_seconds = 0`
    /// (locks until an admin unlocks) has no longest lock.
    fn over(self, default: LockoutRule) -> LockoutRule {
        let lock_seconds = self.lock_seconds.unwrap_or(default.lock_seconds);
        let max_lock_seconds = match self.max_lock_seconds {
            Some(given) => Some(given),
            None if lock_seconds == 0 => None,
            None => default.max_lock_seconds.map(|m| m.max(lock_seconds)),
        };
        LockoutRule {
            max_failures: self.max_failures.unwrap_or(default.max_failures),
            delay_after: self.delay_after.unwrap_or(default.delay_after),
            max_delay_seconds: self.max_delay_seconds.unwrap_or(default.max_delay_seconds),
            lock_seconds,
            max_lock_seconds,
            forget_after_seconds: self
                .forget_after_seconds
                .unwrap_or(default.forget_after_seconds),
        }
    }
}

pub const MAX_FAILURES_CEILING: u32 = 100;
/// Longest `known_address_days`: a year. An address is a weak sign of who is there, and older ones
/// are rarely the user's any more.
pub const KNOWN_ADDRESS_DAYS_CEILING: u32 = 365;

impl LockoutRule {
    fn user_over_defaults<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Self, D::Error> {
        Ok(LockoutRuleFile::deserialize(d)?.over(LockoutRule::user_default()))
    }

    fn address_over_defaults<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Self, D::Error> {
        Ok(LockoutRuleFile::deserialize(d)?.over(LockoutRule::address_default()))
    }

    /// 10 failures lock for 15 minutes, re-locks double up to a day, and a quiet day forgets: a guesser
    /// going flat out gets at most 70 codes checked in any day (3,710 in a year; see `lockout`'s
    /// tests), within NIST's 100, while no one can lock a user for longer than a day at a time.
    pub fn user_default() -> Self {
        LockoutRule {
            max_failures: 10,
            delay_after: 3,
            max_delay_seconds: 60,
            lock_seconds: 900,
            max_lock_seconds: Some(86_400),
            forget_after_seconds: 86_400,
        }
    }

    /// Addresses are shared (offices behind NAT): a higher bar, and shorter locks.
    pub fn address_default() -> Self {
        LockoutRule {
            max_failures: 100,
            delay_after: 50,
            max_delay_seconds: 30,
            lock_seconds: 900,
            max_lock_seconds: Some(3_600),
            forget_after_seconds: 900,
        }
    }
}

/// `[audit]`: the audit log (the store's journal) keeps every event at least `retention_days`; at each
/// compaction, whole journal segments whose newest event is older are deleted, and the deletion is
/// itself an audit event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// PCI DSS v4.0 requirement 10.5.1 keeps audit logs at least 12 months, the last three at hand; 400
    /// days is a year with a month to spare for a late review or a delayed export.
    #[serde(default = "default_audit_retention_days")]
    pub retention_days: u32,
}

/// At least a day: the journal starts a new segment about daily, so a shorter retention could not be
/// honoured. 36,500 days (100 years) keeps everything.
pub const AUDIT_RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=36_500;

fn default_audit_retention_days() -> u32 {
    400
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: default_audit_retention_days(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `twofoldd=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

const LEVELS: &str = "trace, debug, info, warn, error or off";

/// A log filter must say a level: tracing reads a bare word that is not one (`verbose`) as a target
/// name to log at every level, which matches nothing of ours, and the daemon would log nothing at all.
/// A directive with a target names its level after `=` (`twofoldd=debug`).
fn check_log_filter(filter: &str) -> std::result::Result<(), String> {
    if tracing_subscriber::EnvFilter::try_new(filter).is_err() {
        return Err(format!(
            "not a valid log filter: {filter:?} (a level: {LEVELS}; or target=level, comma-separated)"
        ));
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if level
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .is_err()
        {
            return Err(format!(
                "{directive:?} in {filter:?} is not a level: write {LEVELS}, or target=level"
            ));
        }
    }
    Ok(())
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
        }
    }
}

/// One Active Directory domain, synced over LDAP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Short name of the domain; users synced from it have source `ad:<name>`.
    pub name: String,
    /// The domain's NetBIOS name (`CORP`), for operators whose Unix login reads `CORP\alice`
    /// (winbind's default): such a login names the user `alice` synced from this directory.
    #[serde(default)]
    pub netbios_name: Option<String>,
    /// Domain controllers, tried in turn: `ldaps://host:636`, or `ldap://host:389` with `starttls`.
    pub urls: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Allow `ldap://` without StartTLS: the bind password then crosses the network in clear.
    #[serde(default)]
    pub allow_plain_ldap: bool,
    /// PEM file with the CA(s) that signed the domain controllers' certificates.
    /// Default: the system's store, /etc/ssl/certs/ca-certificates.crt.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    /// File holding the bind password (one line). Or `bind_password_credential`, a systemd credential name.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    #[serde(default)]
    pub bind_password_credential: Option<String>,
    /// Where users are searched (subtree). Default: the domain's naming context.
    #[serde(default)]
    pub user_bases: Vec<String>,
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are watched for membership changes. Default: the domain's naming context.
    #[serde(default)]
    pub group_bases: Vec<String>,
    #[serde(default = "default_sync_interval")]
    pub sync_interval_seconds: u64,
    /// A full sync (which also notices users moved out of the bases) runs at least this often.
    #[serde(default = "default_full_sync_interval")]
    pub full_sync_interval_seconds: u64,
    /// Entries per page; Active Directory's MaxPageSize is 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_ldap_timeout")]
    pub timeout_seconds: u64,
    /// How long users deleted in AD are kept (marked removed) before they are purged.
    #[serde(default = "default_retention_days")]
    pub removed_retention_days: u32,
    /// Refuse users AD has locked out (too many bad passwords), as Windows refuses their logon.
    #[serde(default = "default_true")]
    pub honour_ad_lockout: bool,
    #[serde(default)]
    pub attributes: AttributeMap,
}

fn default_user_filter() -> String {
    "(&(objectCategory=person)(objectClass=user))".to_owned()
}
fn default_sync_interval() -> u64 {
    300
}
fn default_full_sync_interval() -> u64 {
    86_400
}
fn default_page_size() -> u32 {
    500
}
fn default_ldap_timeout() -> u64 {
    30
}
fn default_true() -> bool {
    true
}
fn default_retention_days() -> u32 {
    30
}

/// Which LDAP attribute feeds which user field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeMap {
    pub username: String,
    pub upn: String,
    pub display_name: String,
    pub email: String,
    pub mobile: String,
    pub voice: String,
    pub groups: String,
    pub account_control: String,
}

impl Default for AttributeMap {
    fn default() -> Self {
        AttributeMap {
            username: "sAMAccountName".into(),
            upn: "userPrincipalName".into(),
            display_name: "displayName".into(),
            email: "mail".into(),
            mobile: "mobile".into(),
            voice: "telephoneNumber".into(),
            groups: "memberOf".into(),
            account_control: "userAccountControl".into(),
        }
    }
}

impl Config {
    /// The configuration a zero-setup run uses: everything default, state in `./twofold-data`.
    pub fn zero_setup() -> Self {
        Config {
            version: CONFIG_VERSION,
            data_dir: default_data_dir(),
            api: ApiConfig::default(),
            admin: AdminConfig::default(),
            store: StoreConfig::default(),
            totp: TotpConfig::default(),
            backup_codes: BackupCodeConfig::default(),
            lockout: LockoutConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            policy: crate::policy::PolicyConfig::default(),
            directory: Vec::new(),
            challenge: Default::default(),
            delivery: Default::default(),
            email: None,
            plugin: Vec::new(),
            restore: Default::default(),
            privacyidea: PrivacyIdeaConfig::default(),
        }
    }

    /// Reads, parses and validates the file, and checks that the files it names are there: what
    /// `check-config` does, and the daemon before it touches anything.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let in_file = |errors: Vec<ConfigError>| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("{}:{}", path.display(), e))
                .collect();
            Error::Config(lines.join("\n"))
        };
        let config = Config::parse(&text).map_err(in_file)?;
        let missing = config.missing_files(&text);
        if missing.is_empty() {
            Ok(config)
        } else {
            Err(in_file(missing))
        }
    }

    /// Parses and validates; on failure, every error found, in line order.
    pub fn parse(text: &str) -> std::result::Result<Self, Vec<ConfigError>> {
        // Broken TOML is one error. The parser notices an unclosed `{` or `[` only lines later
        // ("missing comma"); reading on past that line finds the opening one, the first by line.
        let broken = text.parse::<toml::Table>().is_err();
        let mut working = text.to_owned();
        let mut errors = Vec::new();
        let mut parsed = None;
        // Each round neutralises at least one line, so this ends; the bound is a guard only.
        for _ in 0..64 {
            match toml::from_str::<Config>(&working) {
                Ok(config) => {
                    parsed = Some(config);
                    break;
                }
                Err(e) => {
                    let message = in_words(e.message().trim());
                    match e.span() {
                        Some(span) => {
                            let line = line_of(&working, span.start);
                            errors.push(ConfigError { line, message });
                            // Broken TOML: read on only while it stays broken, so that what
                            // the broken lines hid (a table's keys now at the top) is not reported.
                            if !neutralise(&mut working, line)
                                || (broken && working.parse::<toml::Table>().is_ok())
                            {
                                break;
                            }
                        }
                        None => {
                            errors.push(ConfigError { line: 1, message });
                            break;
                        }
                    }
                }
            }
        }
        if let Some(config) = &parsed {
            errors.extend(config.validate(text));
        }
        errors.sort_by_key(|e| e.line);
        errors.dedup();
        if broken {
            errors.truncate(1);
            for error in &mut errors {
                if let Some(hint) = unquoted_text(text, error.line) {
                    error.message = hint;
                }
            }
        }
        match parsed {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        }
    }

    /// The `*_file` settings whose file is not there, each with its line and setting: found now, not
    /// when the daemon first needs the file (after it made a master key, or at the first mail).
    /// A file under `/run/credentials/` is a systemd credential, there only inside the service: it is
    /// checked there (ExecStartPre, the daemon), not from an admin's shell.
    pub fn missing_files(&self, text: &str) -> Vec<ConfigError> {
        let inside_service = std::env::var_os("CREDENTIALS_DIRECTORY").is_some();
        let mut named: Vec<(usize, String, &Path)> = Vec::new();
        for (key, path) in [
            ("tls_cert_file", &self.api.tls_cert_file),
            ("tls_key_file", &self.api.tls_key_file),
        ] {
            if let Some(path) = path {
                named.push((key_line(text, "api", key), key.to_owned(), path));
            }
        }
        for d in &self.directory {
            for (key, path) in [
                ("ca_file", &d.ca_file),
                ("bind_password_file", &d.bind_password_file),
            ] {
                if let Some(path) = path {
                    let line = directory_key_line(text, &d.name, key);
                    named.push((line, format!("[[directory]] {}: {key}", d.name), path));
                }
            }
        }
        if let Some(email) = &self.email {
            for (key, path) in [
                ("ca_file", &email.ca_file),
                ("password_file", &email.password_file),
            ] {
                if let Some(path) = path {
                    named.push((key_line(text, "email", key), key.to_owned(), path));
                }
            }
        }
        let mut errors = Vec::new();
        for (line, key, path) in named {
            if !inside_service && path.starts_with("/run/credentials/") {
                continue;
            }
            let problem = match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => "is a folder, not a file".to_owned(),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_owned(),
                Err(e) => e.to_string(),
            };
            errors.push(ConfigError {
                line,
                message: format!("{key} = \"{}\": {problem}", path.display()),
            });
        }
        errors
    }

    /// Rules that the types alone cannot express.
    fn validate(&self, text: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut fail = |table: &str, key: &str, message: String| {
            errors.push(ConfigError {
                line: key_line(text, table, key),
                message,
            });
        };
        if self.version != CONFIG_VERSION {
            fail(
                "",
                "version",
                format!(
                    "unsupported version {}, expected {CONFIG_VERSION}",
                    self.version
                ),
            );
        }
        if self.api.tls_cert_file.is_some() != self.api.tls_key_file.is_some() {
            fail(
                "api",
                "tls_cert_file",
                "tls_cert_file and tls_key_file must be given together".into(),
            );
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            fail(
                "api",
                "max_body_bytes",
                "must be between 1024 and 16777216".into(),
            );
        }
        if self.store.argon2_memory_kib < ARGON2_MIN_MEMORY_KIB {
            fail(
                "store",
                "argon2_memory_kib",
                format!("must be at least {ARGON2_MIN_MEMORY_KIB}"),
            );
        }
        if !AUDIT_RETENTION_DAYS.contains(&self.audit.retention_days) {
            fail(
                "audit",
                "retention_days",
                format!(
                    "must be between {} and {} days",
                    AUDIT_RETENTION_DAYS.start(),
                    AUDIT_RETENTION_DAYS.end()
                ),
            );
        }
        if !(1..=10).contains(&self.store.argon2_iterations) {
            fail(
                "store",
                "argon2_iterations",
                "must be between 1 and 10".into(),
            );
        }
        if self.totp.window > 10 {
            fail("totp", "window", "must be between 0 and 10 steps".into());
        }
        if self.totp.issuer.is_empty()
            || self.totp.issuer.contains(':')
            || self.totp.issuer.chars().any(char::is_control)
        {
            fail(
                "totp",
                "issuer",
                "must be non-empty, without ':' or control characters".into(),
            );
        }
        if !(1..=32).contains(&self.backup_codes.count) {
            fail("backup_codes", "count", "must be between 1 and 32".into());
        }
        for (table, rule) in [
            ("lockout.user", &self.lockout.user),
            ("lockout.address", &self.lockout.address),
        ] {
            if rule.max_failures == 0 || rule.max_failures > MAX_FAILURES_CEILING {
                fail(
                    table,
                    "max_failures",
                    format!("must be between 1 and {MAX_FAILURES_CEILING} (NIST SP 800-63B)"),
                );
            }
            if rule.delay_after > rule.max_failures {
                fail(table, "delay_after", "must not exceed max_failures".into());
            }
            match rule.max_lock_seconds {
                Some(_) if rule.lock_seconds == 0 => fail(
                    table,
                    "max_lock_seconds",
                    "needs lock_seconds above 0 (a lock that lifts)".into(),
                ),
                Some(longest) if longest < rule.lock_seconds => fail(
                    table,
                    "max_lock_seconds",
                    "must be at least lock_seconds".into(),
                ),
                _ => {}
            }
        }
        if self.lockout.known_address_days > KNOWN_ADDRESS_DAYS_CEILING {
            fail(
                "lockout",
                "known_address_days",
                format!("must be between 0 (off) and {KNOWN_ADDRESS_DAYS_CEILING}"),
            );
        }
        if !ADMIN_IDLE_TIMEOUT_SECONDS.contains(&self.admin.idle_timeout_seconds) {
            fail(
                "admin",
                "idle_timeout_seconds",
                format!(
                    "must be between {} and {} seconds",
                    ADMIN_IDLE_TIMEOUT_SECONDS.start(),
                    ADMIN_IDLE_TIMEOUT_SECONDS.end()
                ),
            );
        }
        let mut role_groups = std::collections::HashSet::new();
        for (key, groups) in [
            ("helpdesk", &self.admin.roles.helpdesk),
            ("admin", &self.admin.roles.admin),
            ("master_admin", &self.admin.roles.master_admin),
        ] {
            for group in groups {
                if group.is_empty()
                    || group
                        .chars()
                        .any(|c| c.is_whitespace() || c == ':' || c.is_control())
                {
                    fail(
                        "admin.roles",
                        key,
                        format!("{group:?} is not a Unix group name"),
                    );
                } else if !role_groups.insert(group.clone()) {
                    fail(
                        "admin.roles",
                        key,
                        format!("group {group} is given more than one role"),
                    );
                }
            }
        }
        // A DN and its CN name the same group (`names_group`): listed for two roles, that is one group
        // with two roles too.
        let mut ad_role_groups: Vec<&str> = Vec::new();
        let ad = &self.admin.roles.directory;
        for (key, groups) in [
            ("helpdesk", &ad.helpdesk),
            ("admin", &ad.admin),
            ("master_admin", &ad.master_admin),
        ] {
            let mut in_this_key: Vec<&str> = Vec::new();
            for group in groups {
                if group.trim().is_empty() || group.chars().any(char::is_control) {
                    fail(
                        "admin.roles.directory",
                        key,
                        format!("{group:?} does not name a group (its DN or CN)"),
                    );
                } else if let Some(other) = ad_role_groups.iter().find(|other| {
                    crate::directory::dn::names_group(other, group)
                        || crate::directory::dn::names_group(group, other)
                }) {
                    fail(
                        "admin.roles.directory",
                        key,
                        if crate::directory::dn::same_name(other, group) {
                            format!("AD group {group} is given more than one role")
                        } else {
                            format!(
                                "AD group {group} is given more than one role (also as {other})"
                            )
                        },
                    );
                } else {
                    in_this_key.push(group);
                }
            }
            ad_role_groups.extend(in_this_key);
        }
        if self.directory.is_empty() {
            let listed = [
                ("helpdesk", &ad.helpdesk),
                ("admin", &ad.admin),
                ("master_admin", &ad.master_admin),
            ];
            if let Some((key, _)) = listed.iter().find(|(_, groups)| !groups.is_empty()) {
                fail(
                    "admin.roles.directory",
                    key,
                    "AD groups give roles only to users synced from a [[directory]]: configure one"
                        .into(),
                );
            }
        }
        if let Err(why) = check_log_filter(&self.log.level) {
            fail("log", "level", why);
        }
        let r = &self.restore;
        for (key, zero) in [
            ("session_lifetime_seconds", r.session_lifetime_seconds == 0),
            ("pairing_lifetime_seconds", r.pairing_lifetime_seconds == 0),
            ("block_code_lifetime_days", r.block_code_lifetime_days == 0),
            ("handover_lifetime_hours", r.handover_lifetime_hours == 0),
        ] {
            if zero {
                fail("restore", key, "must be at least 1".into());
            }
        }
        self.api
            .connections
            .validate(|key| key_line(text, "api.connections", key), &mut errors);
        for problem in self.policy.problems() {
            let line = match &problem.group {
                None => key_line(text, "policy", problem.key),
                Some(group) => group_key_line(text, group, problem.key),
            };
            errors.push(ConfigError {
                line,
                message: problem.to_string(),
            });
        }
        let mut names = std::collections::HashSet::new();
        let mut netbios_names = std::collections::HashSet::new();
        for d in &self.directory {
            let line = directory_line(text, &d.name);
            let mut fail_dir = |message: String| {
                errors.push(ConfigError {
                    line,
                    message: format!("[[directory]] {}: {message}", d.name),
                })
            };
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                fail_dir("name must be letters, digits, - or _".into());
            }
            if !names.insert(d.name.clone()) {
                fail_dir("a directory with this name is configured twice".into());
            }
            if d.urls.is_empty() {
                fail_dir("urls must name at least one domain controller".into());
            }
            for url in &d.urls {
                match url.split_once("://").map(|(scheme, _)| scheme) {
                    Some("ldaps") => {}
                    Some("ldap") if d.starttls || d.allow_plain_ldap => {}
                    Some("ldap") => fail_dir(format!("{url}: plain LDAP sends the bind password in clear; use ldaps://, set starttls = true, or allow_plain_ldap = true")),
                    _ => fail_dir(format!("{url}: must start with ldaps:// or ldap://")),
                }
            }
            if d.bind_password_file.is_some() == d.bind_password_credential.is_some() {
                fail_dir(
                    "give exactly one of bind_password_file and bind_password_credential".into(),
                );
            }
            if !(1..=1000).contains(&d.page_size) {
                fail_dir("page_size must be between 1 and 1000".into());
            }
            if d.sync_interval_seconds < 10 {
                fail_dir("sync_interval_seconds must be at least 10".into());
            }
            if let Some(netbios) = &d.netbios_name {
                // NetBIOS domain names: 1-15 characters, none of \ / : * ? " < > | or spaces.
                let valid = (1..=15).contains(&netbios.chars().count())
                    && !netbios
                        .chars()
                        .any(|c| "\\/:*?\"<>| ".contains(c) || c.is_control());
                if !valid {
                    fail_dir(
                        "netbios_name must be 1 to 15 characters without \\ / : * ? \" < > | or spaces"
                            .into(),
                    );
                }
                if !netbios_names.insert(netbios.to_uppercase()) {
                    fail_dir("another [[directory]] has this netbios_name".into());
                }
            }
        }
        let pi = &self.privacyidea;
        if pi.auth == PrivacyIdeaAuth::Address && pi.allowed_addresses.is_empty() {
            errors.push(ConfigError {
                line: key_line(text, "privacyidea", "auth"),
                message: "auth = \"address\" needs allowed_addresses (the LDAP proxies' and RADIUS servers' addresses)".into(),
            });
        }
        for (realm, source) in &pi.realms {
            let known = source == "local" || self.directory.iter().any(|d| &d.name == source);
            if !known {
                errors.push(ConfigError {
                    line: key_line(text, "privacyidea.realms", realm),
                    message: format!(
                        "realm {realm}: {source:?} is neither local nor a [[directory]] name"
                    ),
                });
            }
        }
        if let Some(realm) = &pi.default_realm {
            if pi.realm_source(realm, &self.directory).is_none() {
                errors.push(ConfigError {
                    line: key_line(text, "privacyidea", "default_realm"),
                    message: format!(
                        "default_realm {realm:?} is not a realm (see [privacyidea.realms])"
                    ),
                });
            }
        }
        if pi
            .challenge_channels
            .contains(&crate::policy::Channel::Totp)
        {
            errors.push(ConfigError {
                line: key_line(text, "privacyidea", "challenge_channels"),
                message: "totp has no challenge: list sms, voice, email or in_person".into(),
            });
        }
        crate::delivery::config::validate(self, text, &mut errors);
        errors
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }
}

/// `level = info` or `listen = 127.0.0.1:8443` on `line`: text without quotes, which TOML reads as a
/// number or a float gone wrong (`invalid float, expected inf`). Some(the line as it should be).
fn unquoted_text(text: &str, line: usize) -> Option<String> {
    let written = text.lines().nth(line.checked_sub(1)?)?;
    let (key, value) = written.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    let value = value.split(" #").next().unwrap_or(value).trim();
    let alone = |v: &str| format!("{key} = {v}\n").parse::<toml::Table>().is_ok();
    let quoted = format!("\"{value}\"");
    let plain = !value.is_empty() && !value.starts_with(['[', '{', '"', '\'']);
    (plain && !alone(value) && alone(&quoted))
        .then(|| format!("text must be in quotes: {key} = {quoted}"))
}

/// serde's type errors in an admin's words: `invalid type: string "1", expected u8` becomes
/// `expected a number from 0 to 255, found the text "1"`.
fn in_words(message: &str) -> String {
    let (found, expected) = if let Some(rest) = message.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((found, expected)) => (found_words(found), expected),
            None => return message.to_owned(),
        }
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        match rest.split_once(", expected ") {
            Some((found, expected)) if is_number_type(expected) => {
                (format!("{} (out of range)", found_words(found)), expected)
            }
            _ => return message.to_owned(),
        }
    } else {
        return message.to_owned();
    };
    format!("expected {}, found {found}", expected_words(expected))
}

/// The settings that differ between two `{:?}` renderings of one config type, as dotted paths
/// (`api.listen`, `lockout.user.max_failures`); a value that is no struct (a list, an option, an
/// enum) is named whole (`directory`). Debug covers every field, also ones added later.
pub fn changed_settings(old: &str, new: &str) -> Vec<String> {
    let mut changed = Vec::new();
    differing_fields(old, new, "", &mut changed);
    changed
}

fn differing_fields(old: &str, new: &str, path: &str, changed: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (debug_fields(old), debug_fields(new)) {
        (Some(old_fields), Some(new_fields)) => {
            for (name, old_value) in &old_fields {
                let new_value = new_fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("", |(_, v)| v.as_str());
                let dotted = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                differing_fields(old_value, new_value, &dotted, changed);
            }
        }
        _ => changed.push(if path.is_empty() {
            "the configuration".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// `Name { a: 1, b: Inner { c: "x, y" } }` as `[("a", "1"), ("b", "Inner { c: \"x, y\" }")]`;
/// None for anything but a struct.
fn debug_fields(debug: &str) -> Option<Vec<(String, String)>> {
    let (name, body) = debug.split_once(" { ")?;
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let body = body.strip_suffix(" }")?;
    let mut fields = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i32, false, false, 0);
    let bytes = body.as_bytes();
    let split = |from: usize, to: usize, fields: &mut Vec<(String, String)>| {
        if let Some((key, value)) = body[from..to].split_once(": ") {
            fields.push((key.trim().to_owned(), value.to_owned()));
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth -= 1,
            b',' if depth == 0 && bytes.get(i + 1) == Some(&b' ') => {
                split(start, i, &mut fields);
                start = i + 2;
            }
            _ => {}
        }
    }
    split(start, body.len(), &mut fields);
    Some(fields)
}

fn is_number_type(name: &str) -> bool {
    matches!(
        name,
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
    )
}

fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "a number from 0 to 255".into(),
        "u16" => "a number from 0 to 65535".into(),
        "u32" => "a number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "text in quotes".into(),
        "a sequence" => "a list in [ ]".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.into(),
    }
}

fn found_words(found: &str) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|v| v.trim_matches('`').to_owned())
    };
    if let Some(text) = found.strip_prefix("string ") {
        format!("the text {text}")
    } else if let Some(n) = quoted("integer ").or_else(|| quoted("floating point ")) {
        format!("the number {n}")
    } else if let Some(b) = quoted("boolean ") {
        b
    } else if found == "sequence" {
        "a list".into()
    } else if found == "map" {
        "a table".into()
    } else {
        found.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

fn is_key_line(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#') && !t.starts_with('[') && t.contains('=')
}

/// Comments out the line that caused an error (a whole table when it is a header; a key with its
/// continuation lines otherwise). Returns false if nothing could be done, to stop the loop.
fn neutralise(text: &mut String, line: usize) -> bool {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let Some(first) = lines.get(line - 1) else {
        return false;
    };
    if first.trim_start().starts_with('#') {
        return false;
    }
    let header = is_header(first);
    let mut i = line - 1;
    loop {
        lines[i] = format!("# {}", lines[i]);
        i += 1;
        match lines.get(i) {
            Some(next) if header && !is_header(next) => continue,
            Some(next)
                if !header && !is_header(next) && !is_key_line(next) && !next.trim().is_empty() =>
            {
                continue
            }
            _ => break,
        }
    }
    *text = lines.join("\n");
    true
}

/// Line of the `name = "..."` key of a `[[directory]]` table; 1 if not found.
fn directory_line(text: &str, name: &str) -> usize {
    let mut in_directory = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_directory = t == "[[directory]]";
            continue;
        }
        if in_directory {
            if let Some((k, v)) = t.split_once('=') {
                if k.trim() == "name" && v.trim().trim_matches('"') == name {
                    return n + 1;
                }
            }
        }
    }
    1
}

/// Line of `key` in the `[[directory]]` entry named `name`; the entry's name line if the key is not
/// found there.
fn directory_key_line(text: &str, name: &str, key: &str) -> usize {
    let name_line = directory_line(text, name);
    let lines: Vec<&str> = text.lines().collect();
    let Some(header) = (0..name_line.min(lines.len()))
        .rev()
        .find(|&n| lines[n].trim() == "[[directory]]")
    else {
        return name_line;
    };
    lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
        .map_or(name_line, |(n, _)| n + 1)
}

/// Line of `key` inside `[table]` ("" = top level), for errors found after parsing; 1 if not written.
fn key_line(text: &str, table: &str, key: &str) -> usize {
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = inner.trim().to_owned();
            continue;
        }
        if current == table {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return n + 1;
                }
            }
        }
    }
    1
}

/// The line of `key` in the `[[policy.group]]` entry of `group` (its `group = ` line for `group`); the
/// entry's first line when the key is not written, 1 when the entry is not found.
fn group_key_line(text: &str, group: &str, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut n = 0;
    while n < lines.len() {
        if lines[n].trim() != "[[policy.group]]" {
            n += 1;
            continue;
        }
        let header = n;
        let end = (header + 1..lines.len())
            .find(|&i| is_header(lines[i]))
            .unwrap_or(lines.len());
        let value_of = |wanted: &str| {
            (header + 1..end).find_map(|i| {
                let (k, v) = lines[i].split_once('=')?;
                (k.trim() == wanted).then(|| (i, v.trim().trim_matches('"').to_owned()))
            })
        };
        if value_of("group").is_some_and(|(_, name)| name == group) {
            return value_of(key).map_or(header, |(i, _)| i) + 1;
        }
        n = end;
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lockout_table_sets_only_the_keys_it_has() {
        let config = Config::parse(
            "version = 1\n[lockout.user]\nmax_failures = 5\n[lockout.address]\nlock_seconds = 0\n",
        )
        .unwrap_or_else(|e| unreachable!("{e:?}"));
        let user = LockoutRule {
            max_failures: 5,
            ..LockoutRule::user_default()
        };
        assert_eq!(config.lockout.user, user);
        let address = LockoutRule {
            lock_seconds: 0,
            max_lock_seconds: None,
            ..LockoutRule::address_default()
        };
        assert_eq!(config.lockout.address, address);
        // A longer first lock than the default's longest: re-locks are at least as long.
        let config = Config::parse("version = 1\n[lockout.user]\nlock_seconds = 100000\n")
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(config.lockout.user.max_lock_seconds, Some(100_000));
    }

    #[test]
    fn unquoted_text_is_told_to_be_quoted() {
        for (line, says) in [
            ("level = info", r#"text must be in quotes: level = "info""#),
            (
                "listen = 127.0.0.1:8443  # the API",
                r#"text must be in quotes: listen = "127.0.0.1:8443""#,
            ),
        ] {
            let errors = Config::parse(&format!("version = 1\n[x]\n{line}\n"))
                .err()
                .unwrap_or_default();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!((errors[0].line, errors[0].message.as_str()), (3, says));
        }
        // A broken list is no text to quote.
        let errors = Config::parse("version = 1\n[api]\nlisten = [1,\n")
            .err()
            .unwrap_or_default();
        assert!(!errors[0].message.contains("quotes"), "{errors:?}");
    }

    #[test]
    fn a_missing_directory_file_is_named_with_its_entry_and_line() {
        let text = "version = 1\n[[directory]]\nname = \"corp\"\nurls = [\"ldaps://dc.corp.example\"]\nbind_dn = \"CN=svc\"\nbind_password_file = \"/nonexistent/bind\"\n";
        let config = Config::parse(text).unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(
            config.missing_files(text),
            [ConfigError {
                line: 6,
                message:
                    r#"[[directory]] corp: bind_password_file = "/nonexistent/bind": no such file"#
                        .into()
            }]
        );
    }

    #[test]
    fn type_errors_in_words() {
        for (serde, words) in [
            (
                r#"invalid type: string "1", expected u8"#,
                r#"expected a number from 0 to 255, found the text "1""#,
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "expected a number from 0 to 65535, found the number 70000 (out of range)",
            ),
            (
                "invalid type: integer `5`, expected a string",
                "expected text in quotes, found the number 5",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "expected true or false, found the text \"yes\"",
            ),
            ("unknown field `lisen`", "unknown field `lisen`"),
        ] {
            assert_eq!(in_words(serde), words);
        }
    }

    #[test]
    fn changed_settings_are_named_by_their_path() {
        let mut old = Config::zero_setup();
        old.directory = Vec::new();
        let mut new = old.clone();
        assert!(changed_settings(&format!("{old:?}"), &format!("{new:?}")).is_empty());
        new.api.listen = SocketAddr::from(([127, 0, 0, 1], 9443));
        new.totp.window = 2;
        new.lockout.user.max_failures = 5;
        new.admin.group = Some("a, b { c }".into());
        assert_eq!(
            changed_settings(&format!("{old:?}"), &format!("{new:?}")),
            [
                "api.listen",
                "admin.group",
                "totp.window",
                "lockout.user.max_failures"
            ]
        );
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = Config::parse("version = 1\n")
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.lockout.user, LockoutRule::user_default());
        assert_eq!(c.lockout.address, LockoutRule::address_default());
        assert_eq!(c.store.argon2_memory_kib, 19 * 1024);
        assert_eq!(c.totp.window, 1);
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8443");
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "version = 1\n\n[api]\nlisten = \"127.0.0.1:8443\"\nlisen = 3\n\n[totp]\nwindow = \"wide\"\n\n[nosuch]\na = 1\n\n[lockout.user]\nmax_failures = 1000\ndelay_after = 1\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n";
        let errors = Config::parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![5, 8, 10, 14], "{errors:?}");
        assert!(errors[0].message.contains("lisen"), "{errors:?}");
    }

    #[test]
    fn privacyidea_section_is_checked_line_by_line() -> std::result::Result<(), String> {
        let text = "version = 1\n[privacyidea]\nenabled = true\nauth = \"address\"\nallowed_addresses = [\"10.0.0.1/8\"]\ndefault_realm = \"nowhere\"\nchallenge_channels = [\"totp\"]\n[privacyidea.realms]\ncorp = \"corp\"\n";
        let errors = Config::parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        // host bits in the range (5); then, once it is set aside, address mode without addresses (4),
        // a default realm that is not one (6), totp as a challenge (7), a realm naming no source (9)
        assert_eq!(lines, vec![4, 5, 6, 7, 9], "{errors:?}");
        assert!(errors[1].message.contains("10.0.0.0/8"), "{errors:?}");

        let good = "version = 1\n[privacyidea]\nenabled = true\nauth = \"address\"\nallowed_addresses = [\"10.0.0.0/8\", \"::1\"]\ndefault_realm = \"Staff\"\n[privacyidea.realms]\nstaff = \"local\"\n";
        let config = Config::parse(good).map_err(|e| format!("{e:?}"))?;
        let pi = &config.privacyidea;
        assert_eq!(pi.realm_source("STAFF", &[]), Some("local".to_owned()));
        assert_eq!(pi.realm_source("local", &[]), None, "only the realms given");
        for (address, allowed) in [
            ("10.200.3.4", true),
            ("::ffff:10.0.0.9", true),
            ("::1", true),
            ("11.0.0.1", false),
            ("::2", false),
        ] {
            let ip: std::net::IpAddr = address.parse().map_err(|e| format!("{e}"))?;
            assert_eq!(pi.address_allowed(ip), allowed, "{address}");
        }
        Ok(())
    }

    #[test]
    fn address_ranges_are_an_address_or_a_network_without_host_bits() {
        // (text, Ok(what it contains) or Err(part of the message))
        let table: [(&str, std::result::Result<&str, &str>); 8] = [
            ("10.0.0.0/8", Ok("10.255.0.1")),
            ("192.0.2.7", Ok("192.0.2.7")),
            (" 2001:db8::/32 ", Ok("2001:db8:ffff::1")),
            ("::1", Ok("::1")),
            ("0.0.0.0/0", Ok("8.8.8.8")),
            (
                "10.0.0.1/8",
                Err("host bits set: write the network, such as 10.0.0.0/8"),
            ),
            ("10.0.0.0/33", Err("is not an address or a CIDR range")),
            ("localhost", Err("is not an address or a CIDR range")),
        ];
        for (text, expected) in table {
            let inside: std::net::IpAddr = expected
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or(std::net::IpAddr::from([0; 4]));
            let got = AddressRange::try_from(text.to_owned()).map(|r| r.contains(inside));
            match expected {
                Ok(_) => assert_eq!(got, Ok(true), "{text} should hold {inside}"),
                Err(part) => assert!(
                    got.as_ref().is_err_and(|m| m.contains(part)),
                    "{text}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn semantic_errors_carry_lines() {
        let text = "version = 1\n[lockout.user]\nmax_failures = 1000\ndelay_after = 1\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n[totp]\nwindow = 11\n";
        let errors = Config::parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 9], "{errors:?}");
    }

    #[test]
    fn growing_locks_and_known_addresses_are_checked_with_their_lines() {
        let text = "version = 1\n[lockout]\nknown_address_days = 400\n[lockout.user]\nmax_failures = 10\ndelay_after = 3\nmax_delay_seconds = 60\nlock_seconds = 900\nmax_lock_seconds = 600\nforget_after_seconds = 0\n[lockout.address]\nmax_failures = 100\ndelay_after = 50\nmax_delay_seconds = 30\nlock_seconds = 0\nmax_lock_seconds = 600\nforget_after_seconds = 900\n";
        let errors = Config::parse(text).err().unwrap_or_default();
        let found: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (3, "must be between 0 (off) and 365"),
                (9, "must be at least lock_seconds"),
                (16, "needs lock_seconds above 0 (a lock that lifts)"),
            ]
        );
        // Absent, like every key, it is the default: locks grow up to a day for users. Set to
        // lock_seconds, they do not grow.
        let text = "version = 1\n[lockout.user]\nmax_failures = 10\ndelay_after = 3\nmax_delay_seconds = 60\nlock_seconds = 900\nforget_after_seconds = 0\n";
        let c = Config::parse(text).unwrap_or_else(|_| Config::zero_setup());
        assert_eq!(
            (
                c.lockout.user.lock_duration(1),
                c.lockout.user.lock_duration(5)
            ),
            (Some(900), Some(14_400))
        );
        let c = Config::parse(&format!("{text}max_lock_seconds = 900\n"))
            .unwrap_or_else(|_| Config::zero_setup());
        assert_eq!(
            (
                c.lockout.user.lock_duration(1),
                c.lockout.user.lock_duration(5)
            ),
            (Some(900), Some(900))
        );
        let shipped = LockoutRule::user_default();
        assert_eq!(
            (1..=9)
                .map(|n| shipped.lock_duration(n))
                .collect::<Vec<_>>(),
            [900, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400].map(Some)
        );
    }

    #[test]
    fn wrong_version_and_missing_version() {
        let errors = Config::parse("version = 2\n").err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("unsupported version 2"));
        let errors = Config::parse("data_dir = \"/tmp\"\n")
            .err()
            .unwrap_or_default();
        assert!(errors[0].message.contains("version"), "{errors:?}");
    }

    #[test]
    fn admin_roles_map_groups_and_refuse_a_group_with_two_roles() {
        let text = "version = 1\n[admin]\ngroup = \"twofold\"\n[admin.roles]\nhelpdesk = [\"hd\"]\nadmin = [\"ops\"]\n";
        let c = Config::parse(text)
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.admin.roles.helpdesk, vec!["hd".to_owned()]);
        assert_eq!(c.admin.roles.admin, vec!["ops".to_owned()]);
        assert!(c.admin.roles.master_admin.is_empty());
        let text =
            "version = 1\n[admin.roles]\nhelpdesk = [\"hd\"]\nadmin = [\"hd\"]\nmaster = [\"x\"]\n";
        let errors = Config::parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5], "{errors:?}");
        assert!(
            errors[0].message.contains("more than one role"),
            "{errors:?}"
        );
        assert!(errors[1].message.contains("master"), "{errors:?}");
    }

    #[test]
    fn the_admin_idle_timeout_defaults_to_five_minutes_and_is_bounded() {
        assert_eq!(Config::zero_setup().admin.idle_timeout_seconds, 300);
        // (value, error line: 0 = accepted)
        for (value, line) in [("1", 0), ("86400", 0), ("0", 4), ("86401", 4)] {
            let text = format!(
                "version = 1\n[admin]\ngroup = \"twofold\"\nidle_timeout_seconds = {value}\n"
            );
            let lines: Vec<usize> = Config::parse(&text)
                .err()
                .unwrap_or_default()
                .iter()
                .map(|e| e.line)
                .collect();
            let expected: Vec<usize> = (line > 0).then_some(line).into_iter().collect();
            assert_eq!(lines, expected, "{value}");
        }
    }

    #[test]
    fn netbios_names_are_checked_and_unique_across_directories() {
        let directory = |name: &str, netbios: &str| {
            format!("[[directory]]\nname = \"{name}\"\nurls = [\"ldaps://dc1\"]\nbind_dn = \"CN=svc\"\nbind_password_file = \"/etc/twofold/pw\"\nnetbios_name = \"{netbios}\"\n")
        };
        let good = format!("version = 1\n{}", directory("corp", "CORP"));
        let parsed = Config::parse(&good).map(|c| c.directory[0].netbios_name.clone());
        assert_eq!(parsed.ok().flatten().as_deref(), Some("CORP"));
        // Lines 3, 9 and 15 hold the tables' names, where directory errors point.
        let text = format!(
            "version = 1\n{}{}{}",
            directory("corp", "CORP"),
            directory("lab", "corp"),
            directory("dev", "A\\\\B"),
        );
        let errors = Config::parse(&text).err().unwrap_or_default();
        let found: Vec<(usize, bool)> = errors
            .iter()
            .map(|e| (e.line, e.message.contains("netbios_name")))
            .collect();
        assert_eq!(found, vec![(9, true), (15, true)], "{errors:?}");
        assert!(
            errors[0].message.contains("another [[directory]]"),
            "{errors:?}"
        );
        let long = format!("version = 1\n{}", directory("corp", "SIXTEEN-CHARS-XX"));
        assert!(Config::parse(&long).is_err(), "16 characters are too many");
    }

    #[test]
    fn ad_role_groups_parse_and_a_group_with_two_roles_is_refused_with_its_line() {
        let directory = "[[directory]]\nname = \"corp\"\nurls = [\"ldaps://dc1\"]\nbind_dn = \"CN=svc\"\nbind_password_file = \"/etc/twofold/pw\"\n";
        let good = format!(
            "version = 1\n[admin.roles]\nhelpdesk = [\"hd\"]\n[admin.roles.directory]\nhelpdesk = [\"TF Helpdesk\"]\nadmin = [\"CN=TF Admins,OU=Groups,DC=corp,DC=example\"]\n{directory}"
        );
        let c = Config::parse(&good)
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let ad = &c.admin.roles.directory;
        assert_eq!(ad.helpdesk, vec!["TF Helpdesk".to_owned()]);
        assert_eq!(
            ad.admin,
            vec!["CN=TF Admins,OU=Groups,DC=corp,DC=example".to_owned()]
        );
        assert!(ad.master_admin.is_empty());
        assert_eq!(c.admin.roles.helpdesk, vec!["hd".to_owned()]);

        // Line 5 names TF Helpdesk by CN: line 6 names it again in other case, line 7 by its DN; the
        // Unix groups of [admin.roles] (line 3) are checked apart.
        let text = format!(
            "version = 1\n[admin.roles]\nadmin = [\"tfhelpdesk\"]\n[admin.roles.directory]\nhelpdesk = [\"TF Helpdesk\"]\nadmin = [\"tf helpdesk\"]\nmaster_admin = [\"CN=TF Helpdesk,OU=Groups,DC=corp,DC=example\", \"\"]\n{directory}"
        );
        let errors = Config::parse(&text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![6, 7, 7], "{errors:?}");
        assert!(
            errors[0].message == "AD group tf helpdesk is given more than one role",
            "{errors:?}"
        );
        assert!(
            errors[1..].iter().any(|e| e.message
                == "AD group CN=TF Helpdesk,OU=Groups,DC=corp,DC=example is given more than one role (also as TF Helpdesk)"),
            "{errors:?}"
        );
        assert!(
            errors[1..]
                .iter()
                .any(|e| e.message == "\"\" does not name a group (its DN or CN)"),
            "{errors:?}"
        );

        // AD groups without a directory to sync them from can give nobody a role.
        let errors =
            Config::parse("version = 1\n[admin.roles.directory]\nadmin = [\"TF Admins\"]\n")
                .err()
                .unwrap_or_default();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3, "{errors:?}");
        assert!(errors[0].message.contains("[[directory]]"), "{errors:?}");
        // A typo in the table is an error with its line, as everywhere.
        let errors = Config::parse(&format!(
            "version = 1\n[admin.roles.directory]\nhelpdsk = [\"TF Admins\"]\n{directory}"
        ))
        .err()
        .unwrap_or_default();
        assert_eq!(errors.first().map(|e| e.line), Some(3), "{errors:?}");
    }

    #[test]
    fn audit_retention_defaults_to_400_days_and_is_bounded_with_its_line() {
        let c = Config::parse("version = 1\n")
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.audit.retention_days, 400);
        for (days, ok) in [("0", false), ("1", true), ("36500", true), ("36501", false)] {
            let text = format!("version = 1\n\n[audit]\nretention_days = {days}\n");
            match Config::parse(&text) {
                Ok(c) => {
                    assert!(ok, "{days} accepted");
                    assert_eq!(c.audit.retention_days.to_string(), days);
                }
                Err(errors) => {
                    assert!(!ok, "{days} refused: {errors:?}");
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert_eq!(errors[0].line, 4, "{errors:?}");
                    assert!(
                        errors[0].message.contains("between 1 and 36500"),
                        "{errors:?}"
                    );
                }
            }
        }
        let errors = Config::parse("version = 1\n[audit]\nretention = 30\nretention_days = -1\n")
            .err()
            .unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4], "{errors:?}");
    }

    #[test]
    fn syntax_error_has_its_line() {
        let errors = Config::parse("version = 1\n[api\n")
            .err()
            .unwrap_or_default();
        assert_eq!(errors[0].line, 2, "{errors:?}");
    }

    #[test]
    fn a_log_filter_must_name_a_level() {
        for (filter, good) in [
            ("info", true),
            ("DEBUG", true),
            ("twofoldd=debug,info", true),
            ("twofoldd::directory=trace, warn", true),
            ("off", true),
            ("verbose", false),
            ("twofoldd", false),
            ("info,chatty", false),
            ("twofoldd=loud", false),
        ] {
            assert_eq!(check_log_filter(filter).is_ok(), good, "{filter}");
        }
    }
}
