//! The console's state, without I/O: keys and daemon replies go in, requests for the daemon come out
//! (`App::outbox`), and `ui` draws whatever the state is. Tests drive it exactly as the terminal does.

use ratatui::crossterm::event::KeyCode::{
    self, BackTab, Backspace, Char, Down, Enter, Esc, PageDown, PageUp, Tab, Up,
};
use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
use twofold_wire::admin::{
    AdminReply, AdminRequest, OperatorIdentity, Permission, UserIndexEntry, UserView,
};
use twofold_wire::delivery::HandoverEntry;
use twofold_wire::{DeviceInfo, DeviceStatus};

use crate::keys::{self, Binding, Global, Keys};
use crate::policy_form::{FormKey, PolicyForm, FORM_KEYS, UNSET};
use crate::screens::audit::{parse_audit_filter, Audit, AuditKey, AUDIT_KEYS};
use crate::screens::dashboard::{Dashboard, DashboardKey, DASHBOARD_KEYS};
use crate::screens::delivery::{Delivery, DeliveryKey, DELIVERY_KEYS};
use crate::screens::directory::{Directory, DirectoryKey, DIRECTORY_KEYS};
use crate::screens::enrollment::{Enrollment, EnrollmentKey, ENROLLMENT_KEYS};
use crate::screens::handover::{Handover, HandoverKey, HANDOVER_KEYS};
use crate::screens::policies::{Policies, PoliciesKey, POLICIES_KEYS};
use crate::screens::user::{UserDetail, UserKey, USER_KEYS};
use crate::screens::users::{SearchKey, Users, UsersKey, SEARCH_KEYS, USERS_KEYS};

use crate::screens::global_keys_work;
pub use crate::screens::{Loading, ScreenId, SCREENS};
use crate::search::UserIndex;

/// Ticks between refreshes of a visible dashboard (the console ticks every 500 ms).
pub const DASHBOARD_REFRESH_TICKS: u32 = 30;
/// Challenges the dashboard counts and the delivery screen lists.
pub const DELIVERIES_SHOWN: u32 = 200;

/// What a key does in a dialog or typing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKey {
    Move,
    Type,
    Delete,
    Apply,
    Cancel,
    Close,
}

const HELP_KEYS: &[Binding<DialogKey>] = &[
    Binding::new(
        &[Up, Down, PageUp, PageDown],
        "↑↓",
        "scroll",
        DialogKey::Move,
    ),
    Binding::typing(Keys::Any, "any key", "close help", DialogKey::Close),
];
const NOTICE_KEYS: &[Binding<DialogKey>] = &[Binding::typing(
    Keys::Any,
    "any key",
    "close",
    DialogKey::Close,
)];
const CONFIRM_KEYS: &[Binding<DialogKey>] = &[
    Binding::new(
        &[Char('y'), Char('Y'), Enter],
        "y",
        "confirm",
        DialogKey::Apply,
    ),
    Binding::new(
        &[Char('n'), Char('N'), Esc],
        "n",
        "cancel",
        DialogKey::Cancel,
    ),
];
const CHANNEL_KEYS: &[Binding<DialogKey>] = &[
    Binding::new(&[Up, Down], "↑↓", "channel", DialogKey::Move),
    Binding::new(&[Enter], "Enter", "choose", DialogKey::Apply),
    Binding::new(&[Esc], "Esc", "cancel", DialogKey::Cancel),
];
pub const FILTER_KEYS: &[Binding<DialogKey>] = &[
    Binding::typing(
        Keys::Text,
        "user: action: actor: outcome: text",
        "",
        DialogKey::Type,
    ),
    Binding::new(&[Backspace], "Backspace", "delete", DialogKey::Delete).help_only(),
    Binding::new(&[Enter], "Enter", "apply", DialogKey::Apply),
    Binding::new(&[Esc], "Esc", "done", DialogKey::Close),
];
pub const PHONE_KEYS: &[Binding<DialogKey>] = &[
    Binding::typing(Keys::Text, "type", "a number", DialogKey::Type).help_only(),
    Binding::new(&[Backspace], "Backspace", "delete", DialogKey::Delete).help_only(),
    Binding::new(
        &[Tab, BackTab, Up, Down],
        "Tab",
        "other field",
        DialogKey::Move,
    ),
    Binding::new(&[Enter], "Enter", "save", DialogKey::Apply),
    Binding::new(&[Esc], "Esc", "cancel", DialogKey::Cancel),
];
const GROUP_NAME_KEYS: &[Binding<DialogKey>] = &[
    Binding::typing(Keys::Text, "type", "a group's DN or CN", DialogKey::Type),
    Binding::new(&[Backspace], "Backspace", "delete", DialogKey::Delete).help_only(),
    Binding::new(&[Enter], "Enter", "open its entry", DialogKey::Apply),
    Binding::new(&[Esc], "Esc", "cancel", DialogKey::Cancel),
];

/// The keys of a dialog or typing mode; `None` for the screens' own keys and the policy form (whose keys
/// depend on the setting, `policy_form`).
pub fn mode_keys(mode: &Mode) -> Option<&'static [Binding<DialogKey>]> {
    match mode {
        Mode::Normal | Mode::PolicyForm(_) => None,
        Mode::Help => Some(HELP_KEYS),
        Mode::Notice(_) => Some(NOTICE_KEYS),
        Mode::Confirm(_) => Some(CONFIRM_KEYS),
        Mode::ResendChannel(_) => Some(CHANNEL_KEYS),
        Mode::AuditFilter => Some(FILTER_KEYS),
        Mode::Phones(_) => Some(PHONE_KEYS),
        Mode::PolicyGroupName(_) => Some(GROUP_NAME_KEYS),
    }
}

/// What the keyboard is doing right now, on top of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Editing the audit filter line.
    AuditFilter,
    /// Editing a user's phone number overrides.
    Phones(PhoneForm),
    /// An action waits for y or n.
    Confirm(Action),
    Help,
    /// Something shown once (an access code); any key closes it.
    Notice(Vec<String>),
    /// Picking the channel a lost restore code is re-sent by.
    ResendChannel(ChannelPick),
    /// Looking at (everyone) or changing (master admins) one policy entry's settings.
    PolicyForm(PolicyForm),
    /// Typing the name of a group to open or add its policy entry.
    PolicyGroupName(String),
}

/// The channels a user's policy lets an admin re-send a restore code by; ↑↓ picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPick {
    pub user: String,
    pub channels: Vec<twofold_wire::policy::Channel>,
    pub selected: usize,
}

/// An action on a user that changes something: each asks for confirmation first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Unlock {
        user: String,
    },
    Block {
        user: String,
        device: DeviceInfo,
    },
    Unblock {
        user: String,
        device: DeviceInfo,
    },
    Unpair {
        user: String,
        device: DeviceInfo,
    },
    Enroll {
        user: String,
    },
    SetEnabled {
        user: String,
        enabled: bool,
    },
    /// Numbers that win over the directory's; `None` clears an override.
    SetPhones {
        user: String,
        mobile: Option<String>,
        voice: Option<String>,
    },
    Sync {
        full: bool,
    },
    AccessCode {
        user: String,
    },
    HandedOver {
        entry: HandoverEntry,
    },
    ReloadPlugins,
    /// Removes the user's devices and backup codes; they enroll again at their next login.
    ResetTwoFactor {
        user: String,
        devices: usize,
    },
    /// A new restore code for a user who lost theirs, sent by `channel`; the old one stops working.
    ResendRestoreCode {
        user: String,
        channel: twofold_wire::policy::Channel,
    },
    /// The system-wide 2FA switch; `users` is how many it concerns, for the question.
    SystemTwoFactor {
        on: bool,
        users: u64,
    },
    /// One setting of the live policies: a default (`group: None`) or a group entry's; `value: None`
    /// clears a group's setting so it falls through.
    SetPolicy {
        group: Option<String>,
        key: &'static str,
        before: String,
        value: Option<String>,
    },
    RemovePolicyGroup {
        group: String,
    },
    /// The configuration file's policy sections in place of the live ones.
    ResetPolicies,
}

/// The two override fields of the phone form; Tab moves between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneForm {
    pub user: String,
    pub mobile: String,
    pub voice: String,
    /// false: mobile, true: voice.
    pub on_voice: bool,
}

impl PhoneForm {
    fn field(&mut self) -> &mut String {
        if self.on_voice {
            &mut self.voice
        } else {
            &mut self.mobile
        }
    }

    fn action(&self) -> Action {
        let number = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Action::SetPhones {
            user: self.user.clone(),
            mobile: number(&self.mobile),
            voice: number(&self.voice),
        }
    }
}

impl Action {
    pub fn permission(&self) -> Permission {
        self.request().permission()
    }

    pub fn request(&self) -> AdminRequest {
        match self {
            Action::Unlock { user } => AdminRequest::UserUnlock { user: user.clone() },
            Action::Block { user, device } => AdminRequest::DeviceBlock {
                user: user.clone(),
                device: device.id.clone(),
            },
            Action::Unblock { user, device } => AdminRequest::DeviceUnblock {
                user: user.clone(),
                device: device.id.clone(),
            },
            Action::Unpair { user, device } => AdminRequest::DeviceDelete {
                user: user.clone(),
                device: device.id.clone(),
            },
            Action::Enroll { user } => AdminRequest::TotpEnroll {
                user: user.clone(),
                label: None,
                algorithm: None,
                digits: None,
            },
            Action::SetEnabled { user, enabled } => AdminRequest::UserSetEnabled {
                user: user.clone(),
                enabled: *enabled,
            },
            Action::SetPhones {
                user,
                mobile,
                voice,
            } => AdminRequest::UserSetPhoneOverride {
                user: user.clone(),
                mobile: mobile.clone(),
                voice: voice.clone(),
            },
            Action::Sync { full } => AdminRequest::DirectorySync {
                domain: None,
                full: *full,
            },
            Action::AccessCode { user } => AdminRequest::AccessCodeGenerate { user: user.clone() },
            Action::HandedOver { entry } => AdminRequest::HandoverDone {
                id: entry.id.clone(),
            },
            Action::ReloadPlugins => AdminRequest::PluginReload,
            Action::ResetTwoFactor { user, .. } => {
                AdminRequest::UserResetTwoFactor { user: user.clone() }
            }
            Action::SystemTwoFactor { on, .. } => AdminRequest::SystemTwoFactorSet { on: *on },
            Action::ResendRestoreCode { user, channel } => AdminRequest::RestoreResend {
                user: user.clone(),
                channel: *channel,
            },
            Action::SetPolicy {
                group: None,
                key,
                value,
                ..
            } => AdminRequest::PolicySet {
                key: (*key).to_owned(),
                value: value.clone().unwrap_or_default(),
            },
            Action::SetPolicy {
                group: Some(group),
                key,
                value,
                ..
            } => AdminRequest::PolicyGroupSet {
                group: group.clone(),
                key: (*key).to_owned(),
                value: value.clone(),
            },
            Action::RemovePolicyGroup { group } => AdminRequest::PolicyGroupRemove {
                group: group.clone(),
            },
            Action::ResetPolicies => AdminRequest::PolicyResetToConfig,
        }
    }

    /// The confirmation question.
    pub fn question(&self) -> String {
        match self {
            Action::Unlock { user } => format!("Unlock {user} (clear their failures)?"),
            Action::Block { user, device } => format!(
                "Block device \"{}\" ({}) of {user}?",
                device.label, device.id
            ),
            Action::Unblock { user, device } => format!(
                "Unblock device \"{}\" ({}) of {user}?",
                device.label, device.id
            ),
            Action::Unpair { user, device } => {
                format!(
                    "Unpair device \"{}\" ({}) of {user}? It is deleted for good.",
                    device.label, device.id
                )
            }
            Action::Enroll { user } => format!("Enroll a new authenticator app for {user}?"),
            Action::SetEnabled {
                user,
                enabled: true,
            } => format!("Enable {user}?"),
            Action::SetEnabled {
                user,
                enabled: false,
            } => format!("Disable {user}? Their codes stop working."),
            Action::SetPhones {
                user,
                mobile,
                voice,
            } => {
                let shown =
                    |n: &Option<String>| n.clone().unwrap_or_else(|| "the directory's".to_owned());
                format!(
                    "Send {user}'s codes to mobile {} and voice {}?",
                    shown(mobile),
                    shown(voice)
                )
            }
            Action::Sync { full: false } => {
                "Sync the directory now (changes since the last sync)?".to_owned()
            }
            Action::Sync { full: true } => {
                "Run a full directory sync now? It reads every user.".to_owned()
            }
            Action::AccessCode { user } => {
                format!(
                    "Generate a single-use access code for {user}? It is shown once, to read out."
                )
            }
            Action::HandedOver { entry } => {
                format!(
                    "Has {} received the code {}? It leaves the queue.",
                    entry.user, entry.code
                )
            }
            Action::ReloadPlugins => "Load the delivery plugins again from their files?".to_owned(),
            Action::ResetTwoFactor { user, devices } => format!(
                "Reset 2FA for {user}? Their {devices} device(s) and backup codes are removed; they must enroll again at their next login."
            ),
            Action::SystemTwoFactor { on: true, users } => format!(
                "Switch 2FA ON for everyone? All {users} users must enroll at their next login, also those enrolled before."
            ),
            Action::ResendRestoreCode { user, channel } => format!(
                "Send {user} a new restore code by {}? Their old restore code stops working.",
                crate::words::channel_name(*channel)
            ),
            Action::SystemTwoFactor { on: false, .. } => {
                "Switch the system-wide 2FA OFF? The policies apply again; enrollments stay.".to_owned()
            }
            Action::SetPolicy {
                group,
                key,
                before,
                value,
            } => {
                let after = value
                    .clone()
                    .unwrap_or_else(|| format!("{UNSET} (falls through)"));
                let whose = group
                    .as_ref()
                    .map_or_else(|| "the default".to_owned(), |g| format!("group {g}:"));
                format!("Change {whose} {key} from {before} to {after}? It applies at once.")
            }
            Action::RemovePolicyGroup { group } => format!(
                "Remove the policy entry of group {group}? Its members get the next matching entry or the defaults."
            ),
            Action::ResetPolicies => "Replace the live policies with the configuration file's (as the daemon last read it)? Changes made here are undone.".to_owned(),
        }
    }

    /// What the action is about, for its error line.
    fn subject(&self) -> &str {
        match self {
            Action::Unlock { user }
            | Action::Block { user, .. }
            | Action::Unblock { user, .. }
            | Action::Unpair { user, .. }
            | Action::Enroll { user }
            | Action::SetEnabled { user, .. }
            | Action::SetPhones { user, .. }
            | Action::AccessCode { user }
            | Action::ResetTwoFactor { user, .. }
            | Action::ResendRestoreCode { user, .. } => user,
            Action::HandedOver { entry } => &entry.user,
            Action::SystemTwoFactor { .. } => "system-wide 2FA",
            Action::SetPolicy { .. } | Action::RemovePolicyGroup { .. } | Action::ResetPolicies => {
                "policies"
            }
            Action::Sync { .. } => "directory sync",
            Action::ReloadPlugins => "plugin reload",
        }
    }
}

/// Why a request was sent: routes its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Dashboard,
    Directories,
    Policies,
    SystemTwoFactor,
    Handovers,
    Plugins,
    Deliveries,
    Index,
    User(String),
    Audit,
    Action(Action),
    ConfirmEnrollment { user: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Info(String),
    Error(String),
}

pub struct App {
    pub identity: OperatorIdentity,
    pub socket: String,
    pub screen: ScreenId,
    pub mode: Mode,
    pub dashboard: Dashboard,
    pub users: Users,
    pub user: Option<UserDetail>,
    pub enrollment: Option<Enrollment>,
    pub audit: Audit,
    pub directory: Directory,
    pub policies: Policies,
    pub handover: Handover,
    pub delivery: Delivery,
    /// What the last action did; cleared when the screen changes.
    pub status: Option<Status>,
    /// Lines scrolled down in the help.
    pub help_scroll: u16,
    /// Requests for the daemon, taken by the console loop.
    pub outbox: Vec<(Purpose, AdminRequest)>,
    pub quit: bool,
}

fn index_entry(view: &UserView) -> UserIndexEntry {
    UserIndexEntry {
        username: view.username.clone(),
        upn: view.upn.clone(),
        display_name: view.display_name.clone(),
        email: view.email.clone(),
        enabled: view.enabled,
        state: view.state,
        locked: view.locked,
    }
}

impl App {
    /// A console for `identity`, asking the daemon for the dashboard and the user index.
    pub fn new(identity: OperatorIdentity, socket: String) -> App {
        let mut app = App {
            identity,
            socket,
            screen: ScreenId::Dashboard,
            mode: Mode::Normal,
            dashboard: Dashboard {
                stats: Loading::Idle,
                ticks_since_refresh: 0,
            },
            users: Users {
                index: Loading::Idle,
                query: String::new(),
                matches: Vec::new(),
                selected: 0,
                searching: false,
            },
            user: None,
            enrollment: None,
            audit: Audit {
                filter: String::new(),
                events: Loading::Idle,
                scroll: 0,
            },
            directory: Directory {
                domains: Loading::Idle,
                syncing: false,
            },
            policies: Policies {
                overview: Loading::Idle,
                system: Loading::Idle,
                selected: 0,
            },
            handover: Handover {
                entries: Loading::Idle,
                selected: 0,
            },
            delivery: Delivery {
                plugins: Loading::Idle,
                deliveries: Loading::Idle,
            },
            status: None,
            help_scroll: 0,
            outbox: Vec::new(),
            quit: false,
        };
        app.load_dashboard();
        app.load_index();
        app
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.identity.role.permits(permission)
    }

    fn send(&mut self, purpose: Purpose, request: AdminRequest) {
        self.outbox.push((purpose, request));
    }

    fn load_dashboard(&mut self) {
        self.dashboard.ticks_since_refresh = 0;
        if !matches!(self.dashboard.stats, Loading::Loaded(_)) {
            self.dashboard.stats = Loading::Loading;
        }
        self.send(Purpose::Dashboard, AdminRequest::Dashboard);
        self.load_directories();
        self.load_deliveries();
    }

    fn load_deliveries(&mut self) {
        if !matches!(self.delivery.deliveries, Loading::Loaded(_)) {
            self.delivery.deliveries = Loading::Loading;
        }
        self.send(
            Purpose::Deliveries,
            AdminRequest::DeliveryList {
                user: None,
                limit: Some(DELIVERIES_SHOWN),
            },
        );
    }

    fn load_plugins(&mut self) {
        if !matches!(self.delivery.plugins, Loading::Loaded(_)) {
            self.delivery.plugins = Loading::Loading;
        }
        self.send(Purpose::Plugins, AdminRequest::PluginStatus);
    }

    /// Each listing shows codes and is audited, so the queue is read on demand only, never on a tick.
    fn load_handovers(&mut self) {
        self.handover.entries = Loading::Loading;
        self.send(Purpose::Handovers, AdminRequest::HandoverList);
    }

    fn load_policies(&mut self) {
        if !matches!(self.policies.overview, Loading::Loaded(_)) {
            self.policies.overview = Loading::Loading;
        }
        self.send(Purpose::Policies, AdminRequest::PolicyShow);
        if !matches!(self.policies.system, Loading::Loaded(_)) {
            self.policies.system = Loading::Loading;
        }
        self.send(Purpose::SystemTwoFactor, AdminRequest::SystemTwoFactorShow);
    }

    fn load_directories(&mut self) {
        if !matches!(self.directory.domains, Loading::Loaded(_)) {
            self.directory.domains = Loading::Loading;
        }
        self.send(Purpose::Directories, AdminRequest::DirectoryStatus);
    }

    fn load_index(&mut self) {
        if !matches!(self.users.index, Loading::Loaded(_)) {
            self.users.index = Loading::Loading;
        }
        self.send(Purpose::Index, AdminRequest::UserIndex);
    }

    fn load_audit(&mut self) {
        self.audit.events = Loading::Loading;
        self.audit.scroll = 0;
        let filter = parse_audit_filter(&self.audit.filter);
        self.send(Purpose::Audit, AdminRequest::AuditSearch { filter });
    }

    fn open_user(&mut self, name: String) {
        self.user = Some(UserDetail {
            name: name.clone(),
            view: Loading::Loading,
            selected_device: 0,
        });
        self.show(ScreenId::User);
        self.send(
            Purpose::User(name.clone()),
            AdminRequest::UserShow { user: name },
        );
    }

    fn refresh_user(&mut self) {
        if let Some(detail) = &self.user {
            let name = detail.name.clone();
            self.send(
                Purpose::User(name.clone()),
                AdminRequest::UserShow { user: name },
            );
        }
    }

    /// Shows `screen` as it is; the last action's message belongs to the screen it was done on.
    fn show(&mut self, screen: ScreenId) {
        if self.screen != screen {
            self.status = None;
        }
        self.screen = screen;
    }

    /// Shows `screen` and asks the daemon for what it shows.
    fn go(&mut self, screen: ScreenId) {
        self.show(screen);
        match screen {
            ScreenId::Dashboard => self.load_dashboard(),
            ScreenId::Audit if self.audit.events == Loading::Idle => self.load_audit(),
            ScreenId::Directory => self.load_directories(),
            ScreenId::Policies => self.load_policies(),
            ScreenId::Handover => self.load_handovers(),
            ScreenId::Delivery => {
                self.load_plugins();
                self.load_deliveries();
            }
            _ => {}
        }
    }

    /// Asks to confirm `action`, or says which role it needs.
    fn propose(&mut self, action: Action) {
        let permission = action.permission();
        if self.may(permission) {
            self.mode = Mode::Confirm(action);
        } else {
            self.refuse(permission);
        }
    }

    /// Re-sending a lost restore code: by the one channel the user's policy allows, or by the one the
    /// operator picks.
    fn pick_resend_channel(&mut self, user: String) {
        let permission = Permission::ResendRestoreCode;
        if !self.may(permission) {
            self.refuse(permission);
            return;
        }
        let channels = self
            .user
            .as_ref()
            .and_then(|d| d.view.loaded())
            .and_then(|v| v.policy.as_ref())
            .map(|p| p.restore_settings.resend_channels.clone())
            .unwrap_or_default();
        match channels.as_slice() {
            [] => {
                self.status = Some(Status::Error(format!(
                    "{user}'s policy does not re-send lost restore codes"
                )))
            }
            [channel] => self.propose(Action::ResendRestoreCode {
                user,
                channel: *channel,
            }),
            _ => {
                self.mode = Mode::ResendChannel(ChannelPick {
                    user,
                    channels,
                    selected: 0,
                })
            }
        }
    }

    fn refuse(&mut self, permission: Permission) {
        self.status = Some(Status::Error(format!(
            "{} needs the {} role; you are {}",
            permission.describe(),
            permission.role().name(),
            self.identity.role.name()
        )));
    }

    pub fn on_tick(&mut self) {
        self.dashboard.ticks_since_refresh += 1;
        if self.screen == ScreenId::Dashboard
            && self.dashboard.ticks_since_refresh >= DASHBOARD_REFRESH_TICKS
            && self.mode == Mode::Normal
        {
            self.load_dashboard();
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        let Some(list) = mode_keys(&self.mode) else {
            match self.mode.clone() {
                Mode::PolicyForm(form) => self.policy_form_key(form, key),
                _ => self.on_screen_key(key),
            }
            return;
        };
        let Some(command) = keys::command(list, key) else {
            return;
        };
        match (self.mode.clone(), command) {
            (Mode::Help, DialogKey::Move) => {
                self.help_scroll = match key.code {
                    KeyCode::Up => self.help_scroll.saturating_sub(1),
                    KeyCode::PageUp => self.help_scroll.saturating_sub(10),
                    KeyCode::PageDown => self.help_scroll.saturating_add(10),
                    _ => self.help_scroll.saturating_add(1),
                }
            }
            (_, DialogKey::Close) => self.mode = Mode::Normal,
            (Mode::Confirm(action), DialogKey::Apply) => {
                self.mode = Mode::Normal;
                self.status = Some(Status::Info("working…".into()));
                if matches!(action, Action::Sync { .. }) {
                    self.directory.syncing = true;
                    self.status = Some(Status::Info("syncing the directory…".into()));
                }
                let request = action.request();
                self.send(Purpose::Action(action), request);
            }
            (Mode::Confirm(_) | Mode::ResendChannel(_), DialogKey::Cancel) => {
                self.mode = Mode::Normal;
                self.status = Some(Status::Info("cancelled".into()));
            }
            (Mode::ResendChannel(mut pick), DialogKey::Move) => {
                pick.selected = if key.code == KeyCode::Up {
                    pick.selected.saturating_sub(1)
                } else {
                    (pick.selected + 1).min(pick.channels.len().saturating_sub(1))
                };
                self.mode = Mode::ResendChannel(pick);
            }
            (Mode::ResendChannel(pick), DialogKey::Apply) => {
                if let Some(channel) = pick.channels.get(pick.selected) {
                    self.mode = Mode::Confirm(Action::ResendRestoreCode {
                        user: pick.user,
                        channel: *channel,
                    });
                }
            }
            (Mode::AuditFilter, DialogKey::Apply) => {
                self.mode = Mode::Normal;
                self.load_audit();
            }
            (Mode::AuditFilter, DialogKey::Delete) => {
                self.audit.filter.pop();
            }
            (Mode::AuditFilter, DialogKey::Type) => {
                if let KeyCode::Char(c) = key.code {
                    self.audit.filter.push(c);
                }
            }
            (Mode::Phones(mut form), command) => {
                match (command, key.code) {
                    (DialogKey::Move, _) => form.on_voice = !form.on_voice,
                    (DialogKey::Delete, _) => {
                        form.field().pop();
                    }
                    (DialogKey::Type, KeyCode::Char(c)) if form.field().chars().count() < 32 => {
                        form.field().push(c);
                    }
                    (DialogKey::Apply, _) => {
                        self.mode = Mode::Confirm(form.action());
                        return;
                    }
                    (DialogKey::Cancel, _) => {
                        self.mode = Mode::Normal;
                        return;
                    }
                    _ => {}
                }
                self.mode = Mode::Phones(form);
            }
            (Mode::PolicyGroupName(mut name), command) => {
                match (command, key.code) {
                    (DialogKey::Cancel, _) => {
                        self.mode = Mode::Normal;
                        return;
                    }
                    (DialogKey::Apply, _) if !name.trim().is_empty() => {
                        self.mode = Mode::Normal;
                        self.open_policy_form(Some(name.trim().to_owned()), 0);
                        return;
                    }
                    (DialogKey::Delete, _) => {
                        name.pop();
                    }
                    (DialogKey::Type, KeyCode::Char(c)) if name.chars().count() < 200 => {
                        name.push(c);
                    }
                    _ => {}
                }
                self.mode = Mode::PolicyGroupName(name);
            }
            _ => {}
        }
    }

    /// Opens the form of the defaults (`None`) or of a group's entry, on setting `selected`.
    fn open_policy_form(&mut self, group: Option<String>, selected: usize) {
        if let Some(overview) = self.policies.overview.loaded() {
            let editable = self.may(Permission::ManagePolicies);
            self.mode = Mode::PolicyForm(PolicyForm::open(
                overview,
                group.as_deref(),
                selected,
                editable,
            ));
        }
    }

    fn policy_form_key(&mut self, mut form: PolicyForm, key: KeyEvent) {
        let Some(command) = keys::command(FORM_KEYS, key) else {
            return;
        };
        if command.changes() && !form.editable {
            self.refuse(Permission::ManagePolicies);
            return;
        }
        match (command, key.code) {
            (FormKey::Close, _) => {
                self.mode = Mode::Normal;
                return;
            }
            (FormKey::Select, code) => form.select(code == KeyCode::Down),
            (FormKey::Step, code) => form.step(code != KeyCode::Left),
            (FormKey::Delete, _) => form.backspace(),
            // `unset` clears a group's setting (it falls through); the defaults have nothing below.
            (FormKey::Unset, _) if !form.unset() => {
                self.status = Some(Status::Error(
                    "a default cannot fall through: pick or type a value".into(),
                ));
            }
            (FormKey::Unset, _) => {}
            (FormKey::Type, KeyCode::Char(c)) => {
                form.type_char(c);
            }
            (FormKey::Type, _) => {}
            (FormKey::Apply, _) => match form.change() {
                Some((key, before, value)) => {
                    self.propose(Action::SetPolicy {
                        group: form.group.clone(),
                        key,
                        before,
                        value,
                    });
                    return;
                }
                None => {
                    self.status = Some(Status::Info(
                        "nothing to change: pick a value with ←→ or type one".into(),
                    ))
                }
            },
        }
        self.mode = Mode::PolicyForm(form);
    }

    fn policies_command(&mut self, command: PoliciesKey, key: KeyEvent) {
        let group = self.policies.overview.loaded().and_then(|p| {
            self.policies
                .selected
                .checked_sub(1)
                .and_then(|n| p.groups.get(n))
                .map(|g| g.group.clone())
        });
        match command {
            PoliciesKey::Refresh => self.load_policies(),
            PoliciesKey::Select => self.policies.move_selection(key.code),
            PoliciesKey::Open => self.open_policy_form(group, 0),
            PoliciesKey::AddGroup => {
                let permission = Permission::ManagePolicies;
                if self.may(permission) {
                    self.mode = Mode::PolicyGroupName(String::new());
                } else {
                    self.refuse(permission);
                }
            }
            PoliciesKey::RemoveGroup => match group {
                Some(group) => self.propose(Action::RemovePolicyGroup { group }),
                None => {
                    self.status = Some(Status::Error(
                        "the defaults stay: pick a group entry with ↓".into(),
                    ))
                }
            },
            PoliciesKey::ResetToFile => self.propose(Action::ResetPolicies),
            PoliciesKey::SystemSwitch => {
                if let Some(system) = self.policies.system.loaded() {
                    let action = Action::SystemTwoFactor {
                        on: !system.on,
                        users: system.users,
                    };
                    self.propose(action);
                }
            }
        }
    }

    /// A key on a screen: the screen's own keys first, then the keys of every screen.
    fn on_screen_key(&mut self, key: KeyEvent) {
        let answered = match self.screen {
            ScreenId::Users if self.users.searching => keys::command(SEARCH_KEYS, key)
                .map(|c| self.search_command(c, key))
                .is_some(),
            ScreenId::Enrollment => keys::command(ENROLLMENT_KEYS, key)
                .map(|c| self.enrollment_command(c, key))
                .is_some(),
            ScreenId::Dashboard => keys::command(DASHBOARD_KEYS, key)
                .map(|c| self.dashboard_command(c))
                .is_some(),
            ScreenId::Users => keys::command(USERS_KEYS, key)
                .map(|c| self.users_command(c, key))
                .is_some(),
            ScreenId::User => keys::command(USER_KEYS, key)
                .map(|c| self.user_command(c, key))
                .is_some(),
            ScreenId::Audit => keys::command(AUDIT_KEYS, key)
                .map(|c| self.audit_command(c, key))
                .is_some(),
            ScreenId::Directory => keys::command(DIRECTORY_KEYS, key)
                .map(|c| self.directory_command(c))
                .is_some(),
            ScreenId::Policies => keys::command(POLICIES_KEYS, key)
                .map(|c| self.policies_command(c, key))
                .is_some(),
            ScreenId::Handover => keys::command(HANDOVER_KEYS, key)
                .map(|c| self.handover_command(c, key))
                .is_some(),
            ScreenId::Delivery => keys::command(DELIVERY_KEYS, key)
                .map(|c| self.delivery_command(c))
                .is_some(),
        };
        // Where a field takes the keys, no key means anything else.
        if answered || !global_keys_work(self.screen, self.users.searching) {
            return;
        }
        match keys::command(keys::GLOBAL, key) {
            Some(Global::Next) => {
                let current = match self.screen {
                    ScreenId::User | ScreenId::Enrollment => ScreenId::Users,
                    other => other,
                };
                let at = SCREENS.iter().position(|s| *s == current).unwrap_or(0);
                self.go(SCREENS[(at + 1) % SCREENS.len()]);
            }
            Some(Global::Pick) => {
                if let KeyCode::Char(c) = key.code {
                    let n = c.to_digit(10).and_then(|n| usize::try_from(n).ok());
                    if let Some(screen) = n.and_then(|n| SCREENS.get(n.wrapping_sub(1))) {
                        self.go(*screen);
                    }
                }
            }
            Some(Global::Help) => {
                self.help_scroll = 0;
                self.mode = Mode::Help;
            }
            Some(Global::Back) => match self.screen {
                ScreenId::Dashboard => self.quit = true,
                ScreenId::User | ScreenId::Enrollment => self.show(ScreenId::Users),
                _ => self.go(ScreenId::Dashboard),
            },
            None => {}
        }
    }

    fn delivery_command(&mut self, command: DeliveryKey) {
        match command {
            DeliveryKey::Refresh => {
                self.load_plugins();
                self.load_deliveries();
            }
            DeliveryKey::ReloadPlugins => self.propose(Action::ReloadPlugins),
        }
    }

    fn handover_command(&mut self, command: HandoverKey, key: KeyEvent) {
        match command {
            HandoverKey::Refresh => self.load_handovers(),
            HandoverKey::Select => self.handover.move_selection(key.code),
            HandoverKey::HandedOver => {
                let entry = self
                    .handover
                    .entries
                    .loaded()
                    .and_then(|e| e.get(self.handover.selected))
                    .cloned();
                if let Some(entry) = entry {
                    self.propose(Action::HandedOver { entry });
                }
            }
        }
    }

    fn directory_command(&mut self, command: DirectoryKey) {
        match command {
            DirectoryKey::Refresh => self.load_directories(),
            DirectoryKey::Sync => self.propose(Action::Sync { full: false }),
            DirectoryKey::FullSync => self.propose(Action::Sync { full: true }),
        }
    }

    fn dashboard_command(&mut self, command: DashboardKey) {
        match command {
            DashboardKey::Quit => self.quit = true,
            DashboardKey::Refresh => self.load_dashboard(),
            DashboardKey::Users => self.go(ScreenId::Users),
            DashboardKey::Search => {
                self.go(ScreenId::Users);
                self.users.searching = true;
            }
            DashboardKey::Audit => self.go(ScreenId::Audit),
            DashboardKey::Directory => self.go(ScreenId::Directory),
            DashboardKey::Policies => self.go(ScreenId::Policies),
            DashboardKey::Handover => self.go(ScreenId::Handover),
        }
    }

    fn open_selected_user(&mut self) {
        if let Some(name) = self.users.selected_entry().map(|e| e.username.clone()) {
            self.users.searching = false;
            self.open_user(name);
        }
    }

    /// The users screen outside the search box: screens, moving and opening; `/` starts typing.
    fn users_command(&mut self, command: UsersKey, key: KeyEvent) {
        match command {
            UsersKey::Search => self.users.searching = true,
            UsersKey::Move => self.users.move_selection(key.code),
            UsersKey::Open => self.open_selected_user(),
            UsersKey::Reload => self.load_index(),
            UsersKey::ClearOrBack if !self.users.query.is_empty() => self.users.clear(),
            UsersKey::ClearOrBack => self.go(ScreenId::Dashboard),
        }
    }

    /// In the search box every printable key types, until Esc or Enter.
    fn search_command(&mut self, command: SearchKey, key: KeyEvent) {
        match (command, key.code) {
            (SearchKey::Type, KeyCode::Char(c)) => self.users.type_char(c),
            (SearchKey::Type, _) => {}
            (SearchKey::Delete, _) => self.users.delete_char(),
            (SearchKey::Move, _) => self.users.move_selection(key.code),
            (SearchKey::Open, _) => self.open_selected_user(),
            (SearchKey::Done, _) => self.users.searching = false,
        }
    }

    fn user_command(&mut self, command: UserKey, key: KeyEvent) {
        let Some(detail) = &self.user else {
            self.go(ScreenId::Users);
            return;
        };
        let user = detail.name.clone();
        let device = detail.device().cloned();
        let device_count = detail.view.loaded().map_or(0, |v| v.devices.len());
        let enabled = detail.view.loaded().map(|v| v.enabled);
        match command {
            UserKey::Device => {
                if let Some(d) = &mut self.user {
                    d.move_selection(key.code);
                }
            }
            UserKey::Refresh => self.refresh_user(),
            UserKey::Unlock => self.propose(Action::Unlock { user }),
            UserKey::Enroll => self.propose(Action::Enroll { user }),
            UserKey::AccessCode => self.propose(Action::AccessCode { user }),
            UserKey::Reset => self.propose(Action::ResetTwoFactor {
                user,
                devices: device_count,
            }),
            UserKey::Resend => self.pick_resend_channel(user),
            UserKey::Phones => {
                let permission = Permission::UpdatePhoneNumbers;
                if !self.may(permission) {
                    self.refuse(permission);
                } else if let Some(view) = self.user.as_ref().and_then(|d| d.view.loaded()) {
                    self.mode = Mode::Phones(PhoneForm {
                        user,
                        mobile: view.mobile_override.clone().unwrap_or_default(),
                        voice: view.voice_override.clone().unwrap_or_default(),
                        on_voice: false,
                    });
                }
            }
            UserKey::Enable => {
                if let Some(enabled) = enabled {
                    self.propose(Action::SetEnabled {
                        user,
                        enabled: !enabled,
                    });
                }
            }
            UserKey::Block | UserKey::Unblock | UserKey::Unpair => match device {
                None => self.status = Some(Status::Error("the user has no device".into())),
                Some(device) => self.propose(match command {
                    UserKey::Block => Action::Block { user, device },
                    UserKey::Unblock => Action::Unblock { user, device },
                    _ => Action::Unpair { user, device },
                }),
            },
        }
    }

    fn enrollment_command(&mut self, command: EnrollmentKey, key: KeyEvent) {
        let Some(enrollment) = &mut self.enrollment else {
            self.show(ScreenId::User);
            return;
        };
        match command {
            EnrollmentKey::Back => {
                let pending = enrollment.confirmed.is_none();
                self.enrollment = None;
                self.show(ScreenId::User);
                if pending {
                    self.status = Some(Status::Info(
                        "enrollment left pending: it is replaced by the next one".into(),
                    ));
                }
                self.refresh_user();
            }
            EnrollmentKey::Type => {
                if let KeyCode::Char(c) = key.code {
                    if enrollment.confirmed.is_none() && enrollment.code.len() < 8 {
                        enrollment.code.push(c);
                    }
                }
            }
            EnrollmentKey::Delete => {
                enrollment.code.pop();
            }
            EnrollmentKey::Confirm => {
                if enrollment.confirmed.is_some() || enrollment.code.is_empty() {
                    return;
                }
                let request = AdminRequest::TotpConfirm {
                    user: enrollment.user.clone(),
                    device: enrollment.answer.device.id.clone(),
                    code: enrollment.code.clone(),
                };
                let user = enrollment.user.clone();
                self.status = Some(Status::Info("checking the code…".into()));
                self.send(Purpose::ConfirmEnrollment { user }, request);
            }
        }
    }

    fn audit_command(&mut self, command: AuditKey, key: KeyEvent) {
        match command {
            AuditKey::Filter => self.mode = Mode::AuditFilter,
            AuditKey::Refresh => self.load_audit(),
            AuditKey::Clear => {
                self.audit.filter.clear();
                self.load_audit();
            }
            AuditKey::Scroll => self.audit.scroll_by(key.code),
            AuditKey::Users => self.go(ScreenId::Users),
        }
    }

    /// A reply from the daemon (or the client's error) for a request this state sent.
    pub fn on_reply(&mut self, purpose: Purpose, reply: Result<AdminReply, String>) {
        match (purpose, reply) {
            (Purpose::Dashboard, Ok(AdminReply::Dashboard(stats))) => {
                self.dashboard.stats = Loading::Loaded(stats)
            }
            (Purpose::Dashboard, Err(e)) => self.dashboard.stats = Loading::Failed(e),
            (Purpose::Directories, Ok(AdminReply::DirectoryStatus { domains })) => {
                self.directory.domains = Loading::Loaded(domains);
            }
            (Purpose::Directories, Err(e)) => self.directory.domains = Loading::Failed(e),
            (Purpose::Policies, Ok(AdminReply::Policies(overview))) => {
                self.policies.selected = self.policies.selected.min(overview.groups.len());
                self.policies.overview = Loading::Loaded(overview)
            }
            (Purpose::Policies, Err(e)) => self.policies.overview = Loading::Failed(e),
            (Purpose::SystemTwoFactor, Ok(AdminReply::SystemTwoFactor(view))) => {
                self.policies.system = Loading::Loaded(view)
            }
            (Purpose::SystemTwoFactor, Err(e)) => self.policies.system = Loading::Failed(e),
            (Purpose::Handovers, Ok(AdminReply::Handovers { entries })) => {
                self.handover.selected =
                    self.handover.selected.min(entries.len().saturating_sub(1));
                self.handover.entries = Loading::Loaded(entries);
            }
            (Purpose::Handovers, Err(e)) => self.handover.entries = Loading::Failed(e),
            (Purpose::Plugins, Ok(AdminReply::Plugins { plugins })) => {
                self.delivery.plugins = Loading::Loaded(plugins)
            }
            (Purpose::Plugins, Err(e)) => self.delivery.plugins = Loading::Failed(e),
            (Purpose::Deliveries, Ok(AdminReply::Deliveries { deliveries })) => {
                self.delivery.deliveries = Loading::Loaded(deliveries);
            }
            (Purpose::Deliveries, Err(e)) => self.delivery.deliveries = Loading::Failed(e),
            (Purpose::Index, Ok(AdminReply::UserIndex { users })) => {
                self.users.index = Loading::Loaded(UserIndex::new(users));
                self.users.refilter(None);
            }
            (Purpose::Index, Err(e)) => self.users.index = Loading::Failed(e),
            (Purpose::Audit, Ok(AdminReply::Audit { events })) => {
                self.audit.events = Loading::Loaded(events)
            }
            (Purpose::Audit, Err(e)) => self.audit.events = Loading::Failed(e),
            (Purpose::User(name), reply) => {
                let Some(detail) = self.user.as_mut().filter(|d| d.name == name) else {
                    return;
                };
                match reply {
                    Ok(AdminReply::User(view)) => {
                        if let Some(index) = self.users.index.loaded_mut() {
                            index.update(index_entry(&view));
                        }
                        detail.selected_device = detail
                            .selected_device
                            .min(view.devices.len().saturating_sub(1));
                        detail.view = Loading::Loaded(view);
                    }
                    Ok(other) => {
                        detail.view =
                            Loading::Failed(format!("unexpected answer {}", reply_name(&other)))
                    }
                    Err(e) => detail.view = Loading::Failed(e),
                }
            }
            (Purpose::Action(action), Ok(reply)) => self.action_done(&action, reply),
            (Purpose::Action(action), Err(e)) => {
                if matches!(action, Action::Sync { .. }) {
                    self.directory.syncing = false;
                }
                self.status = Some(Status::Error(format!("{}: {e}", action.subject())));
            }
            (Purpose::ConfirmEnrollment { user }, reply) => {
                let Some(enrollment) = self.enrollment.as_mut().filter(|e| e.user == user) else {
                    return;
                };
                match reply {
                    Ok(AdminReply::Confirmed(confirmed)) => {
                        self.status = Some(Status::Info(format!(
                            "device {} is active",
                            confirmed.device.id
                        )));
                        enrollment.confirmed = Some(confirmed);
                    }
                    Ok(other) => {
                        self.status = Some(Status::Error(format!(
                            "unexpected answer {}",
                            reply_name(&other)
                        )))
                    }
                    Err(e) => {
                        enrollment.code.clear();
                        self.status = Some(Status::Error(e));
                    }
                }
            }
            (_, Ok(other)) => {
                self.status = Some(Status::Error(format!(
                    "unexpected answer {}",
                    reply_name(&other)
                )))
            }
        }
    }

    fn action_done(&mut self, action: &Action, reply: AdminReply) {
        match reply {
            AdminReply::Enrollment(answer) => {
                self.enrollment = Some(Enrollment {
                    user: action.subject().to_owned(),
                    answer,
                    code: String::new(),
                    confirmed: None,
                });
                self.show(ScreenId::Enrollment);
                self.status = None;
                return;
            }
            AdminReply::Done { message } => {
                self.status = Some(Status::Info(message));
                if matches!(action, Action::HandedOver { .. }) {
                    self.load_handovers();
                    return;
                }
            }
            AdminReply::AccessCode(issued) => {
                self.mode = Mode::Notice(vec![
                    format!("Access code for {}:", issued.user),
                    String::new(),
                    issued.code,
                    String::new(),
                    format!(
                        "Valid once, until {} UTC. It is not shown again.",
                        crate::words::time(issued.expires_at)
                    ),
                ]);
                self.status = Some(Status::Info(format!(
                    "access code issued for {}",
                    issued.user
                )));
                return;
            }
            AdminReply::Plugins { plugins } => {
                let failed = plugins.iter().filter(|p| !p.loaded).count();
                self.status = Some(if failed == 0 {
                    Status::Info(format!("{} plugins loaded", plugins.len()))
                } else {
                    Status::Error(format!(
                        "{failed} of {} plugins did not load",
                        plugins.len()
                    ))
                });
                self.delivery.plugins = Loading::Loaded(plugins);
                return;
            }
            AdminReply::Device(device) => {
                let what = match device.status {
                    DeviceStatus::Blocked => "blocked",
                    DeviceStatus::Active => "active",
                    DeviceStatus::Pending => "pending",
                };
                self.status = Some(Status::Info(match action {
                    Action::Unpair { .. } => format!("device {} unpaired", device.id),
                    _ => format!("device {} is {what}", device.id),
                }));
            }
            AdminReply::RestoreCodeSent(sent) => {
                self.status = Some(Status::Info(format!(
                    "a new restore code for {} went by {} to {}",
                    sent.user,
                    crate::words::channel_name(sent.channel),
                    sent.destination
                )));
            }
            AdminReply::PolicyChanged { changes, policies } => {
                self.status = Some(Status::Info(if changes.is_empty() {
                    "nothing changed: the policies already say so".to_owned()
                } else {
                    format!("changed {}", changes.join("; "))
                }));
                self.policies.selected = self.policies.selected.min(policies.groups.len());
                self.policies.overview = Loading::Loaded(policies);
                // Back to the setting just changed, to go on with the entry.
                if let Action::SetPolicy { group, key, .. } = action {
                    if self.screen == ScreenId::Policies && self.mode == Mode::Normal {
                        let at = twofold_wire::policy::SETTINGS
                            .iter()
                            .position(|k| k == key)
                            .unwrap_or(0);
                        self.open_policy_form(group.clone(), at);
                    }
                }
                return;
            }
            AdminReply::SystemTwoFactor(view) => {
                self.status = Some(Status::Info(if view.on {
                    format!(
                        "2FA is on for everyone: {} users must enroll",
                        view.enrollment_required
                    )
                } else {
                    "system-wide 2FA is off: the policies apply".to_owned()
                }));
                self.policies.system = Loading::Loaded(view);
                return;
            }
            AdminReply::User(view) => {
                self.status = Some(Status::Info(match action {
                    Action::SetPhones { .. } => format!("{}'s phone numbers saved", view.username),
                    Action::ResetTwoFactor { .. } => format!(
                        "{}'s 2FA was reset: they enroll at their next login",
                        view.username
                    ),
                    _ => format!(
                        "{} is {}",
                        view.username,
                        if view.enabled { "enabled" } else { "disabled" }
                    ),
                }));
            }
            AdminReply::DirectoryStatus { domains } => {
                let failed = domains.iter().filter(|d| !d.ok).count();
                self.directory.syncing = false;
                self.status = Some(if failed == 0 {
                    Status::Info(format!("directory sync done ({} domains)", domains.len()))
                } else {
                    Status::Error(format!(
                        "directory sync: {failed} of {} domains failed",
                        domains.len()
                    ))
                });
                self.directory.domains = Loading::Loaded(domains);
                return;
            }
            other => {
                self.status = Some(Status::Error(format!(
                    "unexpected answer {}",
                    reply_name(&other)
                )))
            }
        }
        self.refresh_user();
    }
}

fn reply_name(reply: &AdminReply) -> String {
    serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("reply").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
