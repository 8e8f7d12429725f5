//! The scriptable command line: each subcommand is one admin request.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use twofold_wire::admin::{AdminRequest, ApiScope, AuditFilter, NewUser};
use twofold_wire::policy::Channel;
use twofold_wire::TotpAlgorithm;

#[derive(Parser)]
#[command(
    name = "twofold-admin",
    version,
    about = "Administer a Twofold daemon: without a command, the console opens"
)]
pub struct Cli {
    /// The daemon's admin socket (default: /run/twofold/admin.sock; no other place is tried).
    #[arg(long, global = true, env = "TWOFOLD_ADMIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Daemon version, user count, listening address.
    Status,
    /// The live 2FA policies: show them, set defaults and group entries.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The in-person handover queue.
    #[command(subcommand)]
    Handover(HandoverCommand),
    /// Delivery plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Codes sent out of band and how their delivery went, newest first.
    Deliveries {
        /// Only the codes sent to this user.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// At most this many deliveries.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
    },
    /// Your uid and role, as the daemon sees them.
    Whoami,
    /// Users, enrollment, locks, devices and the newest audit events.
    Dashboard,
    /// Users: create, show, list, enable, disable, delete, unlock, reset their 2FA.
    #[command(subcommand)]
    User(UserCommand),
    /// A user's devices (authenticators): list, block, unblock, delete.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Enroll an authenticator app for a user.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// API keys of the relying applications (VPNs, portals) that verify codes.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Source addresses locked after too many failures.
    #[command(subcommand)]
    Address(AddressCommand),
    /// Users from Active Directory: sync now, last sync of each domain.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// The restore function: state, lost restore codes, restoring a user for them.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// System-wide settings.
    #[command(subcommand)]
    System(SystemCommand),
    /// The newest audit events, optionally only those matching every filter given.
    Audit {
        /// At most this many events.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// The user acted on contains this.
        #[arg(long)]
        user: Option<String>,
        /// The action contains this (verify, device_block, user_unlock, ...).
        #[arg(long)]
        action: Option<String>,
        /// The actor contains this (admin:uid=0, api:vpn, ...).
        #[arg(long)]
        actor: Option<String>,
        /// The outcome contains this (ok, reject, forbidden, ...).
        #[arg(long)]
        outcome: Option<String>,
        /// Any field, the detail included, contains this.
        #[arg(long)]
        text: Option<String>,
        /// Only events older than this event id (the next page back).
        #[arg(long)]
        before: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a local user.
    Create {
        /// The name the user logs in with (no spaces, none of " / \ [ ] : ; | = , + * ? < >).
        username: String,
        /// The user principal name (alice@corp.example.com), another name they may log in with.
        #[arg(long)]
        upn: Option<String>,
        /// The full name shown to admins and in mails ("Alice Example").
        #[arg(long)]
        display_name: Option<String>,
        /// Mail address for codes and notices.
        #[arg(long)]
        email: Option<String>,
        /// Mobile number for codes by SMS (international form, +41 79 123 45 67).
        #[arg(long)]
        mobile: Option<String>,
        /// Number for codes by voice call (international form).
        #[arg(long)]
        voice: Option<String>,
        /// A group the user belongs to, for group policies; repeat for several.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// A user's details, 2FA state, lock and devices.
    Show {
        /// The user's name or UPN.
        user: String,
    },
    /// Users, one a line, with their 2FA state.
    List {
        /// Only users whose name, UPN, display name or mail contains this (any case).
        #[arg(long)]
        query: Option<String>,
        /// At most this many users.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
    },
    /// Let a disabled user authenticate again.
    Enable {
        /// The user's name or UPN.
        user: String,
    },
    /// Refuse every verification for the user until enabled; devices are kept.
    Disable {
        /// The user's name or UPN.
        user: String,
    },
    /// Delete a local user with their devices and codes.
    Delete {
        /// The user's name or UPN.
        user: String,
    },
    /// Clear the user's failure count and lock.
    Unlock {
        /// The user's name or UPN.
        user: String,
    },
    /// A single-use access code to read out to the user (printed once).
    AccessCode {
        /// The user's name or UPN.
        user: String,
    },
    /// Remove the user's devices and backup codes: they must enroll again at their next login.
    #[command(name = "reset-2fa")]
    ResetTwoFactor {
        /// The user's name or UPN.
        user: String,
    },
    /// Set the numbers codes go to instead of the directory's; a number left out is cleared.
    Phones {
        /// The user's name or UPN.
        user: String,
        /// Mobile number for codes by SMS (international form).
        #[arg(long)]
        mobile: Option<String>,
        /// Number for codes by voice call (international form).
        #[arg(long)]
        voice: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum HandoverCommand {
    /// Codes waiting to be read out, with who asked (each listing is audited).
    List,
    /// Removes an entry once its code was read out.
    Done {
        /// The entry's id, as `handover list` shows it.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Each configured plugin and whether it loaded.
    Status,
    /// Loads the plugin files again, with the [[plugin]] tables and routes as last read (to re-read
    /// those from twofold.toml: systemctl reload twofoldd).
    Reload,
    /// Whether a component loads with the daemon's engine and checks (its WIT version, its imports),
    /// without installing it.
    Check {
        /// The plugin's .wasm component file.
        file: PathBuf,
    },
    /// Sends a test message (code 000000, valid for no one) through one configured plugin to a number,
    /// once, without retries or fallbacks: a dry run against the real gateway. Exits non-zero unless
    /// the gateway took it.
    Test {
        /// The plugin's name, as `plugin status` lists it.
        name: String,
        /// The phone number to send to, as a user's number would be written.
        #[arg(long)]
        to: String,
        /// The channel the message is for.
        #[arg(long, value_enum, default_value = "sms")]
        channel: TestChannel,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TestChannel {
    /// A text message.
    Sms,
    /// A call that reads the code out.
    Voice,
}

/// The settings and the values they take, for `policy set --help`.
const SETTINGS_HELP: &str = "Settings (as in twofold.toml's [policy] and [[policy.group]]):
  two_factor                   required, optional, off
  channels                     a list of totp, sms, voice, email, in_person (e.g. totp,sms; none)
  restore                      allowed, prohibited
  restore_limit                restores per period, 0: no limit
  restore_period_days          days, at least 1 with a limit
  restore_old_devices          delete, keep
  restore_code_delivery        screen, email, in_person
  restore_resend_channels      a list of sms, voice, email, in_person (none: not re-sent)
  restore_auto_activate        true, false
  restore_prompt_after_logins  logins, 0: never
Changes apply at once, are kept in the daemon's store (a restart keeps them) and are audited.";

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// The live 2FA policies: defaults, group entries in priority order, where they came from.
    Show,
    /// Set a default (a [policy] setting); master admins only.
    #[command(after_help = SETTINGS_HELP)]
    Set {
        /// The setting (listed below).
        key: String,
        /// Its new value.
        value: String,
    },
    /// Group entries ([[policy.group]]): the first entry that sets a value wins.
    #[command(subcommand)]
    Group(PolicyGroupCommand),
    /// Replace the live policies with the configuration file's policy sections, as the daemon last
    /// read the file (at start or on SIGHUP: `systemctl reload twofoldd` first after editing it).
    #[command(name = "reset-to-config")]
    ResetToConfig,
}

#[derive(Subcommand)]
pub enum PolicyGroupCommand {
    /// Set one setting of a group's entry (a group without an entry gets one, last).
    #[command(after_help = SETTINGS_HELP)]
    Set {
        /// The group's DN or CN, as the entry names it.
        group: String,
        /// The setting (listed below).
        key: String,
        /// Its new value.
        value: String,
    },
    /// Clear one setting of a group's entry: it falls through to the next entry, then the default.
    Unset {
        /// The group's DN or CN, as the entry names it.
        group: String,
        /// The setting to clear (as for `policy group set`).
        key: String,
    },
    /// Remove a group's entry.
    Remove {
        /// The group's DN or CN, as the entry names it.
        group: String,
    },
    /// Move a group's entry to POSITION (1 = first, the highest priority).
    Move {
        /// The group's DN or CN, as the entry names it.
        group: String,
        /// The new place, 1 = first.
        position: u32,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// The user's devices: id, label, kind, state, how each was added.
    List {
        /// The user's name or UPN.
        user: String,
    },
    /// Refuse the device's codes (reported lost) until unblocked; it stays paired.
    Block {
        /// The user's name or UPN.
        user: String,
        /// The device's id, as `device list` shows it.
        device: String,
    },
    /// Accept a blocked device's codes again.
    Unblock {
        /// The user's name or UPN.
        user: String,
        /// The device's id, as `device list` shows it.
        device: String,
    },
    /// Unpair the device: its codes stop working for good.
    Delete {
        /// The user's name or UPN.
        user: String,
        /// The device's id, as `device list` shows it.
        device: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    /// The one every authenticator app knows (the default).
    Sha1,
    /// Known to fewer apps.
    Sha256,
    /// Known to fewer apps.
    Sha512,
}

#[derive(Subcommand)]
pub enum TotpCommand {
    /// Start enrolling an authenticator app: prints the secret and the otpauth URI.
    Enroll {
        /// The user's name or UPN.
        user: String,
        /// A name for the device, shown to the user and admins ("work phone").
        #[arg(long)]
        label: Option<String>,
        /// The TOTP hash (default sha1, the one every authenticator app knows).
        #[arg(long, value_enum)]
        algorithm: Option<Algorithm>,
        /// Digits per code, 6 (the default) or 8.
        #[arg(long)]
        digits: Option<u8>,
        /// Also write the QR code to this PNG file.
        #[arg(long)]
        qr_png: Option<PathBuf>,
    },
    /// Confirm an enrollment with the first code the app shows.
    Confirm {
        /// The user's name or UPN.
        user: String,
        /// The device's id, as `totp enroll` printed it.
        device: String,
        /// The code the authenticator app shows now.
        code: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for a relying application; it is printed once.
    Create {
        /// A name for the application, as audit shows it (api:NAME).
        name: String,
        /// What the key may do, comma-separated: verify (check codes), enroll (the user's own flows,
        /// each with the user's proof), manage (delete devices without the user's proof).
        #[arg(long, value_delimiter = ',', default_value = "verify")]
        scope: Vec<ApiScope>,
        /// The caller is a proxy trusted to name the end user's address (client_ip).
        #[arg(long)]
        trusted_proxy: bool,
    },
    /// Give a key new scopes or proxy trust (keys made before scopes have them all until narrowed).
    Set {
        /// The key's name.
        name: String,
        /// The new scopes, comma-separated: verify, enroll, manage.
        #[arg(long, value_delimiter = ',')]
        scope: Option<Vec<ApiScope>>,
        /// true or false.
        #[arg(long)]
        trusted_proxy: Option<bool>,
    },
    /// The keys: name, scopes, proxy trust, when made and last used.
    List,
    /// Revoke a key: the application's next request is refused.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Sync now (every domain, or one) and print the result.
    Sync {
        /// Only this domain (its name in [[directory]]).
        #[arg(long)]
        domain: Option<String>,
        /// A full sync instead of an incremental one.
        #[arg(long)]
        full: bool,
    },
    /// The last sync of each domain.
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ResendChannel {
    /// A text message to the user's mobile number.
    Sms,
    /// A call to the user's voice number.
    Voice,
    /// A mail to the user's address.
    Email,
    /// The handover queue, for a helpdesk to read it out (`handover list`).
    InPerson,
}

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// Whether restore is activated, when, and the restores used in the period.
    Status {
        /// The user's name or UPN.
        user: String,
    },
    /// Make a new restore code for a user who lost theirs and send it (the old one stops working).
    Resend {
        /// The user's name or UPN.
        user: String,
        /// How, among the channels the user's policy allows (restore_resend_channels).
        #[arg(long, value_enum)]
        channel: ResendChannel,
    },
    /// Restore a user onto a new authenticator for them: prints the secret and the otpauth URI.
    Start {
        /// The user's name or UPN.
        user: String,
        /// A name for the new device ("new phone").
        #[arg(long)]
        label: Option<String>,
        /// Also write the QR code to this PNG file.
        #[arg(long)]
        qr_png: Option<PathBuf>,
    },
    /// Finish an admin restore with the new authenticator's first code.
    Confirm {
        /// The user's name or UPN.
        user: String,
        /// The new device's id, as `restore start` printed it.
        device: String,
        /// The code the new authenticator shows now.
        code: String,
    },
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// The system-wide 2FA switch: `on` makes every user enroll at their next login (again, if they
    /// enrolled before), `off` lets the policies apply, `status` shows it.
    #[command(name = "two-factor")]
    TwoFactor {
        /// on, off, or status to show it.
        #[arg(value_enum)]
        switch: Switch,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    /// Every user enrolls at their next login.
    On,
    /// The policies decide.
    Off,
    /// Show whether it is on.
    Status,
}

#[derive(Subcommand)]
pub enum AddressCommand {
    /// Clear a source address's failure count and lock.
    Unlock {
        /// The IP address, as audit and the lock message show it.
        address: String,
    },
}

impl Command {
    pub fn request(&self) -> AdminRequest {
        match self {
            Command::Status => AdminRequest::Status,
            Command::Whoami => AdminRequest::WhoAmI,
            Command::Policy(c) => match c {
                PolicyCommand::Show => AdminRequest::PolicyShow,
                PolicyCommand::Set { key, value } => AdminRequest::PolicySet {
                    key: key.clone(),
                    value: value.clone(),
                },
                PolicyCommand::ResetToConfig => AdminRequest::PolicyResetToConfig,
                PolicyCommand::Group(g) => match g {
                    PolicyGroupCommand::Set { group, key, value } => AdminRequest::PolicyGroupSet {
                        group: group.clone(),
                        key: key.clone(),
                        value: Some(value.clone()),
                    },
                    PolicyGroupCommand::Unset { group, key } => AdminRequest::PolicyGroupSet {
                        group: group.clone(),
                        key: key.clone(),
                        value: None,
                    },
                    PolicyGroupCommand::Remove { group } => AdminRequest::PolicyGroupRemove {
                        group: group.clone(),
                    },
                    PolicyGroupCommand::Move { group, position } => AdminRequest::PolicyGroupMove {
                        group: group.clone(),
                        position: *position,
                    },
                },
            },
            Command::Handover(HandoverCommand::List) => AdminRequest::HandoverList,
            Command::Handover(HandoverCommand::Done { id }) => {
                AdminRequest::HandoverDone { id: id.clone() }
            }
            Command::Plugin(PluginCommand::Status) => AdminRequest::PluginStatus,
            Command::Plugin(PluginCommand::Reload) => AdminRequest::PluginReload,
            Command::Plugin(PluginCommand::Test { name, to, channel }) => {
                AdminRequest::PluginTest {
                    plugin: name.clone(),
                    to: to.clone(),
                    channel: match channel {
                        TestChannel::Sms => twofold_wire::policy::Channel::Sms,
                        TestChannel::Voice => twofold_wire::policy::Channel::Voice,
                    },
                }
            }
            // `run` reads the file and sends it.
            Command::Plugin(PluginCommand::Check { file }) => AdminRequest::PluginCheck {
                file: file.display().to_string(),
                wasm_base64: String::new(),
            },
            Command::Deliveries { user, limit } => AdminRequest::DeliveryList {
                user: user.clone(),
                limit: Some(*limit),
            },
            Command::Dashboard => AdminRequest::Dashboard,
            Command::Audit {
                limit,
                user,
                action,
                actor,
                outcome,
                text,
                before,
            } => {
                if [user, action, actor, outcome, text]
                    .iter()
                    .all(|f| f.is_none())
                    && before.is_none()
                {
                    AdminRequest::AuditTail {
                        limit: Some(*limit),
                    }
                } else {
                    AdminRequest::AuditSearch {
                        filter: AuditFilter {
                            user: user.clone(),
                            action: action.clone(),
                            actor: actor.clone(),
                            outcome: outcome.clone(),
                            text: text.clone(),
                            before: *before,
                            limit: Some(*limit),
                        },
                    }
                }
            }
            Command::User(c) => match c {
                UserCommand::Create {
                    username,
                    upn,
                    display_name,
                    email,
                    mobile,
                    voice,
                    groups,
                } => AdminRequest::UserCreate(NewUser {
                    username: username.clone(),
                    upn: upn.clone(),
                    display_name: display_name.clone(),
                    email: email.clone(),
                    mobile: mobile.clone(),
                    voice: voice.clone(),
                    groups: groups.clone(),
                }),
                UserCommand::Show { user } => AdminRequest::UserShow { user: user.clone() },
                UserCommand::List { query, limit } => AdminRequest::UserList {
                    query: query.clone(),
                    limit: Some(*limit),
                },
                UserCommand::Enable { user } => AdminRequest::UserSetEnabled {
                    user: user.clone(),
                    enabled: true,
                },
                UserCommand::Disable { user } => AdminRequest::UserSetEnabled {
                    user: user.clone(),
                    enabled: false,
                },
                UserCommand::Delete { user } => AdminRequest::UserDelete { user: user.clone() },
                UserCommand::Unlock { user } => AdminRequest::UserUnlock { user: user.clone() },
                UserCommand::AccessCode { user } => {
                    AdminRequest::AccessCodeGenerate { user: user.clone() }
                }
                UserCommand::ResetTwoFactor { user } => {
                    AdminRequest::UserResetTwoFactor { user: user.clone() }
                }
                UserCommand::Phones {
                    user,
                    mobile,
                    voice,
                } => AdminRequest::UserSetPhoneOverride {
                    user: user.clone(),
                    mobile: mobile.clone(),
                    voice: voice.clone(),
                },
            },
            Command::Device(c) => match c {
                DeviceCommand::List { user } => AdminRequest::DeviceList { user: user.clone() },
                DeviceCommand::Block { user, device } => AdminRequest::DeviceBlock {
                    user: user.clone(),
                    device: device.clone(),
                },
                DeviceCommand::Unblock { user, device } => AdminRequest::DeviceUnblock {
                    user: user.clone(),
                    device: device.clone(),
                },
                DeviceCommand::Delete { user, device } => AdminRequest::DeviceDelete {
                    user: user.clone(),
                    device: device.clone(),
                },
            },
            Command::Totp(c) => match c {
                TotpCommand::Enroll {
                    user,
                    label,
                    algorithm,
                    digits,
                    ..
                } => AdminRequest::TotpEnroll {
                    user: user.clone(),
                    label: label.clone(),
                    algorithm: algorithm.map(|a| match a {
                        Algorithm::Sha1 => TotpAlgorithm::Sha1,
                        Algorithm::Sha256 => TotpAlgorithm::Sha256,
                        Algorithm::Sha512 => TotpAlgorithm::Sha512,
                    }),
                    digits: *digits,
                },
                TotpCommand::Confirm { user, device, code } => AdminRequest::TotpConfirm {
                    user: user.clone(),
                    device: device.clone(),
                    code: code.clone(),
                },
            },
            Command::Apikey(c) => match c {
                ApiKeyCommand::Create {
                    name,
                    scope,
                    trusted_proxy,
                } => AdminRequest::ApiKeyCreate {
                    name: name.clone(),
                    scopes: scope.clone(),
                    trusted_proxy: *trusted_proxy,
                },
                ApiKeyCommand::Set {
                    name,
                    scope,
                    trusted_proxy,
                } => AdminRequest::ApiKeySet {
                    name: name.clone(),
                    scopes: scope.clone(),
                    trusted_proxy: *trusted_proxy,
                },
                ApiKeyCommand::List => AdminRequest::ApiKeyList,
                ApiKeyCommand::Revoke { name } => AdminRequest::ApiKeyRevoke { name: name.clone() },
            },
            Command::Address(AddressCommand::Unlock { address }) => AdminRequest::AddressUnlock {
                address: address.clone(),
            },
            Command::Directory(DirectoryCommand::Sync { domain, full }) => {
                AdminRequest::DirectorySync {
                    domain: domain.clone(),
                    full: *full,
                }
            }
            Command::Directory(DirectoryCommand::Status) => AdminRequest::DirectoryStatus,
            Command::Restore(c) => match c {
                RestoreCommand::Status { user } => {
                    AdminRequest::RestoreStatus { user: user.clone() }
                }
                RestoreCommand::Resend { user, channel } => AdminRequest::RestoreResend {
                    user: user.clone(),
                    channel: match channel {
                        ResendChannel::Sms => Channel::Sms,
                        ResendChannel::Voice => Channel::Voice,
                        ResendChannel::Email => Channel::Email,
                        ResendChannel::InPerson => Channel::InPerson,
                    },
                },
                RestoreCommand::Start { user, label, .. } => AdminRequest::RestoreStart {
                    user: user.clone(),
                    label: label.clone(),
                },
                RestoreCommand::Confirm { user, device, code } => AdminRequest::RestoreConfirm {
                    user: user.clone(),
                    device: device.clone(),
                    code: code.clone(),
                },
            },
            Command::System(SystemCommand::TwoFactor { switch }) => match switch {
                Switch::On => AdminRequest::SystemTwoFactorSet { on: true },
                Switch::Off => AdminRequest::SystemTwoFactorSet { on: false },
                Switch::Status => AdminRequest::SystemTwoFactorShow,
            },
        }
    }
}

/// Why a command failed: the daemon's refusal with its code, or a failure here (the socket, a file),
/// as a line for people and as `{"error": {"code", "message"}}` for `--json`.
#[derive(Debug)]
pub struct Failure {
    pub error: twofold_wire::ErrorBody,
    pub text: String,
}

impl Failure {
    /// A failure here, with `code` for `--json`.
    pub fn here(code: &str) -> impl Fn(String) -> Failure + '_ {
        move |message| Failure {
            error: twofold_wire::ErrorBody {
                code: code.to_owned(),
                message: message.clone(),
            },
            text: message,
        }
    }
}

impl From<crate::client::CallError> for Failure {
    fn from(e: crate::client::CallError) -> Failure {
        let text = e.to_string();
        let error = match e {
            crate::client::CallError::Refused(error) => error,
            crate::client::CallError::Connection(message) => twofold_wire::ErrorBody {
                code: "connection_failed".to_owned(),
                message,
            },
        };
        Failure { error, text }
    }
}

/// Runs one command: one request, its answer printed as text or JSON.
pub fn run(socket: &std::path::Path, command: &Command, json: bool) -> Result<(), Failure> {
    let mut client =
        crate::client::Client::connect(socket).map_err(Failure::here("connection_failed"))?;
    let request = match command {
        Command::Plugin(PluginCommand::Check { file }) => {
            let wasm = std::fs::read(file)
                .map_err(|e| Failure::here("file_failed")(format!("{}: {e}", file.display())))?;
            AdminRequest::PluginCheck {
                file: file.display().to_string(),
                wasm_base64: data_encoding::BASE64.encode(&wasm),
            }
        }
        other => other.request(),
    };
    let reply = client.call(&request)?;
    // A test the gateway did not take is a failure of the command: one line, a non-zero exit.
    if let twofold_wire::admin::AdminReply::PluginTested(t) = &reply {
        if t.outcome != "delivered" {
            return Err(Failure::here(if t.outcome == "retry_later" {
                "plugin_test_retry_later"
            } else {
                "plugin_test_failed"
            })(format!(
                "plugin {} to {}: {} after {} ms: {}",
                t.plugin,
                t.to,
                t.outcome,
                t.duration_ms,
                twofold_wire::text::escape_hazards(&t.detail)
            )));
        }
    }
    let qr_png = match command {
        Command::Totp(TotpCommand::Enroll { qr_png, .. })
        | Command::Restore(RestoreCommand::Start { qr_png, .. }) => qr_png.as_ref(),
        _ => None,
    };
    if let (Some(path), twofold_wire::admin::AdminReply::Enrollment(e)) = (qr_png, &reply) {
        let png = data_encoding::BASE64
            .decode(e.qr_png_base64.as_bytes())
            .map_err(|e| {
                Failure::here("invalid_answer")(format!("QR code from the daemon: {e}"))
            })?;
        write_secret_file(path, &png)
            .map_err(|e| Failure::here("file_failed")(format!("{}: {e}", path.display())))?;
    }
    let text = if json {
        serde_json::to_string_pretty(&reply)
            .map_err(|e| Failure::here("invalid_answer")(e.to_string()))?
            + "\n"
    } else {
        crate::render::text(&reply)
    };
    // A reader that stops early (`| head`) is not an error of ours; print! would panic on it.
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::here("output_failed")(format!("stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Writes a file that holds a secret (a QR code carries the TOTP seed): readable by its owner only,
/// also when it replaces an existing file that others could read.
fn write_secret_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}
