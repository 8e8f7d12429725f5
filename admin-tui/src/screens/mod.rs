//! The console's screens, one file each with its state, its keys (one list, read by the dispatch, the key
//! line and the help) and its widget; here what they share: which screens there are, the loading state
//! of what a screen shows and the drawing helpers. Nothing here knows the `App` that holds the screens.

pub mod audit;
pub mod dashboard;
pub mod delivery;
pub mod directory;
pub mod enrollment;
pub mod handover;
pub mod policies;
pub mod user;
pub mod users;

use ratatui::layout::Constraint;
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use twofold_wire::admin::{AuditEvent, SyncStatus};

use self::audit::AUDIT_KEYS;
use self::dashboard::DASHBOARD_KEYS;
use self::delivery::DELIVERY_KEYS;
use self::directory::DIRECTORY_KEYS;
use self::enrollment::ENROLLMENT_KEYS;
use self::handover::HANDOVER_KEYS;
use self::policies::POLICIES_KEYS;
use self::user::USER_KEYS;
use self::users::{SEARCH_KEYS, USERS_KEYS};
use crate::keys::{self, Binding};
use crate::words::{ago, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenId {
    Dashboard,
    Users,
    User,
    Enrollment,
    Audit,
    Directory,
    Policies,
    Handover,
    Delivery,
}

/// The screens in Tab order; the number keys 1 to 7 pick them where nothing is being typed.
pub const SCREENS: [ScreenId; 7] = [
    ScreenId::Dashboard,
    ScreenId::Users,
    ScreenId::Audit,
    ScreenId::Directory,
    ScreenId::Policies,
    ScreenId::Handover,
    ScreenId::Delivery,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loading<T> {
    Idle,
    Loading,
    Loaded(T),
    Failed(String),
}

impl<T> Loading<T> {
    pub fn loaded(&self) -> Option<&T> {
        match self {
            Loading::Loaded(t) => Some(t),
            _ => None,
        }
    }
}

impl<T> Loading<T> {
    pub fn loaded_mut(&mut self) -> Option<&mut T> {
        match self {
            Loading::Loaded(t) => Some(t),
            _ => None,
        }
    }
}

/// A screen's own keys (the users screen's while its search box is typed in), without commands.
pub fn screen_keys(screen: ScreenId, searching: bool) -> Vec<Binding<()>> {
    match screen {
        ScreenId::Dashboard => keys::described(DASHBOARD_KEYS),
        ScreenId::Users if searching => keys::described(SEARCH_KEYS),
        ScreenId::Users => keys::described(USERS_KEYS),
        ScreenId::User => keys::described(USER_KEYS),
        ScreenId::Enrollment => keys::described(ENROLLMENT_KEYS),
        ScreenId::Audit => keys::described(AUDIT_KEYS),
        ScreenId::Directory => keys::described(DIRECTORY_KEYS),
        ScreenId::Policies => keys::described(POLICIES_KEYS),
        ScreenId::Handover => keys::described(HANDOVER_KEYS),
        ScreenId::Delivery => keys::described(DELIVERY_KEYS),
    }
}

/// Whether the keys of every screen (`keys::GLOBAL`) work: not where a field takes every key.
pub fn global_keys_work(screen: ScreenId, searching: bool) -> bool {
    !(screen == ScreenId::Enrollment || (screen == ScreenId::Users && searching))
}

pub fn loading_line<T>(what: &str, state: &Loading<T>) -> Option<Line<'static>> {
    match state {
        Loading::Idle | Loading::Loading => Some(Line::from(format!("loading {what}…")).italic()),
        Loading::Failed(e) => Some(Line::from(format!("{what}: {e}")).red()),
        Loading::Loaded(_) => None,
    }
}

pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn label(text: &str) -> Span<'static> {
    Span::styled(
        format!("{text:<9}"),
        Style::new().add_modifier(Modifier::BOLD),
    )
}

/// The columns a table column needs for its header and its values.
pub fn column_width<'a>(header: &str, values: impl Iterator<Item = &'a str>) -> u16 {
    let widest = values
        .map(|v| Span::raw(v).width())
        .chain(std::iter::once(header.chars().count()))
        .max()
        .unwrap_or(0);
    u16::try_from(widest).unwrap_or(u16::MAX)
}

pub fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_owned())
}

pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

pub const AUDIT_HEADER: [&str; 6] = ["Time", "Actor", "Action", "User", "Outcome", "Detail"];

/// The audit table's columns: the time, then actor, action, user and outcome as wide as their longest
/// value (a user's name is never cut), and whatever width is left for the detail.
pub fn audit_columns(events: &[AuditEvent]) -> [Constraint; 6] {
    let width = |header: &str, value: fn(&AuditEvent) -> &str, most: u16| {
        Constraint::Length(column_width(header, events.iter().map(value)).min(most))
    };
    [
        Constraint::Length(14),
        width("Actor", |e| &e.actor, 24),
        width("Action", |e| &e.action, 24),
        width("User", |e| e.user.as_deref().unwrap_or_default(), 40),
        width("Outcome", |e| &e.outcome, 12),
        Constraint::Fill(1),
    ]
}

/// One line per directory domain: how its last sync went (with its first error, for the dashboard).
pub fn sync_line(domain: &SyncStatus, now: Option<i64>, first_error: bool) -> Line<'static> {
    let when = match (domain.last_run, now) {
        (None, _) => "never synced".to_owned(),
        (Some(t), Some(now)) => format!("{} ({})", time(t), ago(now, t)),
        (Some(t), None) => time(t),
    };
    let outcome = if domain.last_run.is_none() {
        Span::raw("")
    } else if domain.ok {
        Span::raw("ok").green()
    } else if first_error {
        Span::raw(format!(
            "FAILED: {}",
            domain.errors.first().cloned().unwrap_or_default()
        ))
        .red()
    } else {
        Span::raw("FAILED").red()
    };
    Line::from(vec![
        Span::raw(format!("{:<12}", domain.domain)).bold(),
        Span::raw(format!("{} {}  ", domain.mode, when)),
        outcome,
    ])
}

pub fn screen_name(screen: ScreenId) -> &'static str {
    match screen {
        ScreenId::Dashboard => "Home",
        ScreenId::Users | ScreenId::User | ScreenId::Enrollment => "Users",
        ScreenId::Audit => "Audit",
        ScreenId::Directory => "AD",
        ScreenId::Policies => "Policies",
        ScreenId::Handover => "Handover",
        ScreenId::Delivery => "Delivery",
    }
}
