//! Drawing: every screen is a widget over its state; `App` draws the header, the active screen, the
//! status and key lines, and the dialogs. Laid out for 80x24 and up.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Widget, Wrap};
use twofold_wire::admin::{AuditEvent, DialledNumber, Permission, Role, SyncStatus, UserView};
use twofold_wire::delivery::{DeliveryInfo, DeliveryState};
use twofold_wire::policy::{Channel, RestoreRule, TwoFactorRule};
use twofold_wire::text::escape_hazards;
use twofold_wire::{DeviceKind, DeviceOrigin, DeviceStatus, TwoFactorState};

use twofold_wire::policy::{PolicyOrigin, PolicySource};

use crate::app::{
    global_keys_work, mode_keys, screen_keys, App, Audit, Dashboard, Delivery, Directory,
    Enrollment, Handover, Loading, Mode, PhoneForm, Policies, ScreenId, Status, UserDetail, Users,
    SCREENS,
};
use crate::keys::{self, Binding, Hint};
use crate::policy_form::{PolicyForm, UNSET};

/// `2026-11-22 17:44` in UTC (the console says so in its header), or the number if out of range.
pub fn time(t: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| t.to_string())
}

fn short_time(t: i64) -> String {
    let format = time::macros::format_description!("[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| t.to_string())
}

fn state_name(state: TwoFactorState) -> &'static str {
    match state {
        TwoFactorState::Enrolled => "enrolled",
        TwoFactorState::EnrollmentRequired => "must enroll",
        TwoFactorState::NotEnrolled => "not enrolled",
        TwoFactorState::Off => "2FA off",
    }
}

fn device_status(status: DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Active => "active",
        DeviceStatus::Blocked => "BLOCKED",
        DeviceStatus::Pending => "pending",
    }
}

fn device_origin(origin: DeviceOrigin) -> &'static str {
    match origin {
        DeviceOrigin::Enrolled => "user",
        DeviceOrigin::Admin => "admin",
        DeviceOrigin::Restored => "restored",
        DeviceOrigin::Duplicated => "paired",
    }
}

fn device_kind(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Totp => "totp",
        DeviceKind::Sms => "sms",
        DeviceKind::Voice => "voice",
        DeviceKind::Email => "email",
    }
}

fn loading_line<T>(what: &str, state: &Loading<T>) -> Option<Line<'static>> {
    match state {
        Loading::Idle | Loading::Loading => Some(Line::from(format!("loading {what}…")).italic()),
        Loading::Failed(e) => Some(Line::from(format!("{what}: {e}")).red()),
        Loading::Loaded(_) => None,
    }
}

fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

fn label(text: &str) -> Span<'static> {
    Span::styled(
        format!("{text:<9}"),
        Style::new().add_modifier(Modifier::BOLD),
    )
}

/// The columns a table column needs for its header and its values.
fn column_width<'a>(header: &str, values: impl Iterator<Item = &'a str>) -> u16 {
    let widest = values
        .map(|v| Span::raw(v).width())
        .chain(std::iter::once(header.chars().count()))
        .max()
        .unwrap_or(0);
    u16::try_from(widest).unwrap_or(u16::MAX)
}

fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_owned())
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

const AUDIT_HEADER: [&str; 6] = ["Time", "Actor", "Action", "User", "Outcome", "Detail"];

/// The audit table's columns: the time, then actor, action, user and outcome as wide as their longest
/// value (a user's name is never cut), and whatever width is left for the detail.
fn audit_columns(events: &[AuditEvent]) -> [Constraint; 6] {
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

/// The dashboard draws the counts and, below them, the directory's last sync.
pub struct DashboardScreen<'a> {
    pub dashboard: &'a Dashboard,
    pub directory: &'a Directory,
    pub delivery: &'a Delivery,
}

fn delivery_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Queued => "queued",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "FAILED",
        DeliveryState::Cancelled => "cancelled",
    }
}

/// Waiting and failed deliveries among the newest challenges.
fn delivery_counts(deliveries: &[DeliveryInfo]) -> String {
    let count = |wanted: &[DeliveryState]| {
        deliveries
            .iter()
            .filter(|d| wanted.contains(&d.state))
            .count()
    };
    format!(
        "{} waiting, {} failed (of the last {})",
        count(&[DeliveryState::Queued, DeliveryState::Retrying]),
        count(&[DeliveryState::Failed]),
        deliveries.len()
    )
}

fn ago(now: i64, then: i64) -> String {
    let s = (now - then).max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// One line per directory domain: how its last sync went (with its first error, for the dashboard).
fn sync_line(domain: &SyncStatus, now: Option<i64>, first_error: bool) -> Line<'static> {
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

impl Widget for &DashboardScreen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if let Some(line) = loading_line("dashboard", &self.dashboard.stats) {
            line.render(area, buf);
            return;
        }
        let Loading::Loaded(stats) = &self.dashboard.stats else {
            return;
        };
        let newest = stats.recent.last().map(|e| e.time);
        let directory_lines: Vec<Line> = match &self.directory.domains {
            Loading::Loaded(domains) if domains.is_empty() => {
                vec![Line::from("no [[directory]] configured: local users only").dim()]
            }
            Loading::Loaded(domains) => domains
                .iter()
                .take(3)
                .map(|d| sync_line(d, newest, true))
                .collect(),
            other => loading_line("directory status", other)
                .into_iter()
                .collect(),
        };
        let directory_height = u16::try_from(directory_lines.len()).unwrap_or(1) + 2;
        let [top, directory, recent] = Layout::vertical([
            Constraint::Length(7),
            Constraint::Length(directory_height),
            Constraint::Min(0),
        ])
        .areas(area);
        Paragraph::new(directory_lines)
            .block(Block::bordered().title(" Directory sync "))
            .render(directory, buf);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        let row = |name: &str, value: String| {
            Line::from(vec![
                Span::raw(format!("{name:<22}")),
                Span::raw(value).bold(),
            ])
        };
        Paragraph::new(vec![
            row("Users", stats.users.to_string()),
            row(
                "Enrolled",
                format!(
                    "{} ({})",
                    stats.enrolled,
                    percent(stats.enrolled, stats.users)
                ),
            ),
            row("Must enroll", stats.enrollment_required.to_string()),
            row("Locked", stats.locked.to_string()),
            row("Disabled", stats.disabled.to_string()),
        ])
        .block(Block::bordered().title(" Users "))
        .render(left, buf);
        Paragraph::new(vec![
            row("Active devices", stats.devices_active.to_string()),
            row("Blocked devices", stats.devices_blocked.to_string()),
            row("Pending enrollments", stats.devices_pending.to_string()),
            row("API keys", stats.api_keys.to_string()),
            match &self.delivery.deliveries {
                Loading::Loaded(list) => {
                    let count = |wanted: &[DeliveryState]| {
                        list.iter().filter(|d| wanted.contains(&d.state)).count()
                    };
                    let failed = count(&[DeliveryState::Failed]);
                    let line = row(
                        "Codes waiting/failed",
                        format!(
                            "{} / {failed}",
                            count(&[DeliveryState::Queued, DeliveryState::Retrying])
                        ),
                    );
                    if failed > 0 {
                        line.red()
                    } else {
                        line
                    }
                }
                Loading::Failed(e) => Line::from(format!("Codes sent: {e}")).red(),
                _ => Line::from("Codes sent: loading…").italic(),
            },
        ])
        .block(Block::bordered().title(" Devices and keys "))
        .render(right, buf);
        let rows = stats.recent.iter().rev().map(|e| {
            Row::new(vec![
                short_time(e.time),
                e.actor.clone(),
                e.action.clone(),
                e.user.clone().unwrap_or_default(),
                e.outcome.clone(),
                e.detail.clone().unwrap_or_default(),
            ])
        });
        Table::new(rows, audit_columns(&stats.recent))
            .header(Row::new(AUDIT_HEADER).bold())
            .block(Block::bordered().title(" Recent audit events (newest first) "))
            .render(recent, buf);
    }
}

impl Users {
    /// First row shown: the list turns a page at a time, so drawing needs no scroll state.
    fn offset(&self, height: usize) -> usize {
        if height == 0 {
            return 0;
        }
        self.selected - self.selected % height
    }
}

impl Widget for &Users {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [search, list] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        let total = self.index.loaded().map_or(0, |i| i.len());
        let count = format!("{} of {total} users", self.matches.len());
        let [query_area, count_area] = Layout::horizontal([
            Constraint::Min(0),
            Constraint::Length(u16::try_from(count.len()).unwrap_or(20)),
        ])
        .areas(search);
        let mut search_line = vec![Span::raw("Search: ").bold(), Span::raw(self.query.clone())];
        if self.searching {
            search_line.push(Span::raw("█").slow_blink());
        } else if self.query.is_empty() {
            search_line.push(Span::raw("/ to search").dim());
        }
        Line::from(search_line).render(query_area, buf);
        Line::from(count).render(count_area, buf);
        if let Some(line) = loading_line("users", &self.index) {
            line.render(list, buf);
            return;
        }
        let Loading::Loaded(index) = &self.index else {
            return;
        };
        let height = usize::from(list.height.saturating_sub(1));
        let offset = self.offset(height);
        let rows = self
            .matches
            .iter()
            .enumerate()
            .skip(offset)
            .take(height)
            .filter_map(|(n, &i)| {
                let e = index.get(i)?;
                let mut flags = Vec::new();
                if !e.enabled {
                    flags.push("disabled");
                }
                if e.locked {
                    flags.push("LOCKED");
                }
                let row = Row::new(vec![
                    Cell::from(e.username.clone()),
                    Cell::from(e.display_name.clone().unwrap_or_default()),
                    Cell::from(state_name(e.state)),
                    Cell::from(flags.join(" ")),
                ]);
                Some(if n == self.selected {
                    row.style(selected())
                } else {
                    row
                })
            });
        Table::new(
            rows,
            [
                Constraint::Length(22),
                Constraint::Fill(1),
                Constraint::Length(12),
                Constraint::Length(15),
            ],
        )
        .header(Row::new(["User", "Name", "2FA", "State"]).bold())
        .render(list, buf);
        if self.matches.is_empty() {
            let below = Rect {
                y: list.y.saturating_add(1),
                height: list.height.saturating_sub(1),
                ..list
            };
            Line::from("no user matches").italic().render(below, buf);
        }
    }
}

pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Totp => "app",
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::InPerson => "in person",
    }
}

/// A number as codes use it: the override when there is one, saying what the directory has.
fn phone(value: &Option<String>, override_: &Option<String>) -> String {
    match (override_, value) {
        (Some(o), Some(v)) => format!("{o}   (override; directory: {v})"),
        (Some(o), None) => format!("{o}   (override)"),
        (None, v) => opt(v),
    }
}

/// How a number is dialled, after it: dim when fine, red when no code can be sent to it.
fn dialled(number: &Option<DialledNumber>) -> Span<'static> {
    match number {
        None => Span::raw(""),
        Some(n @ DialledNumber::Unusable { .. }) => Span::raw(format!(" · {}", n.describe())).red(),
        Some(n) => Span::raw(format!(" · {}", n.describe())).dim(),
    }
}

/// One fact about a user: its label (`None` for the heading line) and its value, which wraps under
/// itself rather than being cut.
struct Fact(Option<&'static str>, Line<'static>);

fn fact(label: &'static str, spans: Vec<Span<'static>>) -> Fact {
    Fact(Some(label), Line::from(spans))
}

/// Width of the label column of the facts.
const LABEL_WIDTH: u16 = 9;

impl Fact {
    fn value(&self) -> Paragraph<'static> {
        Paragraph::new(self.1.clone()).wrap(Wrap { trim: true })
    }

    /// Rows the fact takes at `width` columns.
    fn height(&self, width: u16) -> u16 {
        let indent = if self.0.is_some() { LABEL_WIDTH } else { 0 };
        let rows = self.value().line_count(width.saturating_sub(indent).max(1));
        u16::try_from(rows).unwrap_or(u16::MAX).max(1)
    }

    fn render(&self, area: Rect, buf: &mut Buffer) {
        let value = match self.0 {
            None => area,
            Some(text) => {
                let [name, value] =
                    Layout::horizontal([Constraint::Length(LABEL_WIDTH), Constraint::Min(0)])
                        .areas(area);
                label(text).render(name, buf);
                value
            }
        };
        self.value().render(value, buf);
    }
}

fn user_lines(view: &UserView) -> Vec<Fact> {
    let mut lockout = format!("{} failures", view.failures);
    if view.locked {
        lockout.push_str(" · LOCKED");
    }
    let mut lines = vec![
        Fact(
            None,
            Line::from(vec![
                Span::raw(view.username.clone()).bold(),
                Span::raw(format!(
                    "  {}",
                    view.display_name.clone().unwrap_or_default()
                )),
                Span::raw(format!(
                    "   {} · {} · since {}",
                    view.source,
                    if view.enabled { "enabled" } else { "DISABLED" },
                    time(view.created).chars().take(10).collect::<String>()
                )),
            ]),
        ),
        fact("UPN", vec![Span::raw(opt(&view.upn))]),
        fact("Email", vec![Span::raw(opt(&view.email))]),
        fact(
            "Mobile",
            vec![
                Span::raw(phone(&view.mobile, &view.mobile_override)),
                dialled(&view.mobile_dialled),
            ],
        ),
        fact(
            "Voice",
            vec![
                Span::raw(phone(&view.voice, &view.voice_override)),
                dialled(&view.voice_dialled),
            ],
        ),
        fact(
            "Groups",
            vec![Span::raw(if view.groups.is_empty() {
                "-".to_owned()
            } else {
                view.groups.join(", ")
            })],
        ),
    ];
    if let Some(ad) = &view.directory {
        let mut spans = vec![Span::raw(format!("{} · {}", ad.domain, ad.dn))];
        if ad.account_disabled {
            spans.push(Span::raw(" · disabled in AD").red());
        }
        if let Some(t) = ad.removed_at {
            spans.push(Span::raw(format!(" · removed from AD {}", time(t))).red());
        }
        lines.push(fact("AD", spans));
    }
    if let Some(why) = &view.cannot_sign_in {
        lines.push(fact(
            "Sign-in",
            vec![Span::raw(format!("refused: {why}")).red()],
        ));
    }
    if let Some(policy) = &view.policy {
        let rule = match policy.two_factor {
            TwoFactorRule::Required => "2FA required",
            TwoFactorRule::Optional => "2FA optional",
            TwoFactorRule::Off => "2FA off",
        };
        let restore = match policy.restore {
            RestoreRule::Allowed => "restore allowed",
            RestoreRule::Prohibited => "restore by admin only",
        };
        let channels: Vec<&str> = policy.channels.iter().map(|c| channel_name(*c)).collect();
        let from = if policy.from_groups.is_empty() {
            "defaults".to_owned()
        } else {
            policy.from_groups.join(", ")
        };
        lines.push(fact(
            "Policy",
            vec![Span::raw(format!(
                "{rule} · {} · {restore} · from {from}",
                channels.join("/")
            ))],
        ));
    }
    if let Some(restore) = &view.restore {
        let mut text = if restore.activated {
            format!(
                "activated {}",
                restore
                    .activated_at
                    .map_or_else(|| "-".to_owned(), |t| time(t).chars().take(10).collect())
            )
        } else {
            format!("not activated ({} logins)", restore.logins)
        };
        if !restore.allowed {
            text.push_str(" · by admin only");
        }
        if restore.limit > 0 {
            text.push_str(&format!(
                " · {} of {} restores in {} days",
                restore.restores_in_period, restore.limit, restore.period_days
            ));
        }
        if let Some(next) = restore.next_restore_at {
            text.push_str(&format!(" · again from {}", time(next)));
        }
        lines.push(fact("Restore", vec![Span::raw(text)]));
    }
    lines.push(fact(
        "2FA",
        vec![
            Span::raw(format!(
                "{} · {} backup codes left · ",
                state_name(view.state),
                view.backup_codes_remaining
            )),
            if view.locked {
                Span::raw(lockout).red().bold()
            } else {
                Span::raw(lockout)
            },
        ],
    ));
    lines
}

impl Widget for &UserDetail {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if let Some(line) = loading_line(&self.name, &self.view) {
            line.render(area, buf);
            return;
        }
        let Loading::Loaded(view) = &self.view else {
            return;
        };
        let facts = user_lines(view);
        let heights: Vec<u16> = facts.iter().map(|f| f.height(area.width)).collect();
        // The devices keep a header and a row at least; the facts take the rest they need.
        let needed = heights.iter().fold(0u16, |a, h| a.saturating_add(*h));
        let [facts_area, devices] = Layout::vertical([
            Constraint::Length(needed.min(area.height.saturating_sub(4))),
            Constraint::Min(0),
        ])
        .areas(area);
        let mut y = facts_area.y;
        for (fact, height) in facts.iter().zip(heights) {
            let height = height.min(facts_area.bottom().saturating_sub(y));
            if height == 0 {
                break;
            }
            fact.render(
                Rect {
                    y,
                    height,
                    ..facts_area
                },
                buf,
            );
            y += height;
        }
        // Authenticator apps are the usual kind: only the others say what they are.
        let labels: Vec<String> = view
            .devices
            .iter()
            .map(|d| match d.kind {
                DeviceKind::Totp => d.label.clone(),
                other => format!("{} ({})", d.label, device_kind(other)),
            })
            .collect();
        // The label column is as wide as the longest label, as far as the other columns leave room;
        // the rest goes to the id.
        const OTHERS: u16 = 7 + 8 + 10 + 16 + 17 + 5;
        let label_width = column_width("Label", labels.iter().map(String::as_str))
            .min(devices.width.saturating_sub(2 + OTHERS).max(12));
        let rows = view
            .devices
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(n, (d, label))| {
                let status = Cell::from(device_status(d.status));
                let row = Row::new(vec![
                    Cell::from(label),
                    if d.status == DeviceStatus::Blocked {
                        status.red()
                    } else {
                        status
                    },
                    Cell::from(device_origin(d.origin)),
                    Cell::from(time(d.created).chars().take(10).collect::<String>()),
                    Cell::from(d.last_used.map_or_else(|| "never".to_owned(), time)),
                    Cell::from(d.id.clone()),
                ]);
                if n == self.selected_device {
                    row.style(selected())
                } else {
                    row
                }
            });
        let title = format!(" Devices ({}) ↑↓ select ", view.devices.len());
        let table = Table::new(
            rows,
            [
                Constraint::Length(label_width),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(16),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(["Label", "Status", "Added by", "Created", "Last used", "Id"]).bold())
        .block(Block::bordered().title(title));
        table.render(devices, buf);
        if view.devices.is_empty() {
            let inner = Rect {
                x: devices.x + 2,
                y: devices.y + 2,
                width: devices.width.saturating_sub(4),
                height: 1,
            };
            if devices.height > 3 {
                Line::from("no devices").italic().render(inner, buf);
            }
        }
    }
}

/// The QR code in unicode half blocks (two modules per character row), dark on light whatever the
/// terminal's colours, with a two-module light margin.
pub fn qr_lines(uri: &str) -> Option<Vec<String>> {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::L).ok()?;
    let body = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Dark)
        .light_color(Dense1x2::Light)
        .quiet_zone(false)
        .build();
    let width = body.lines().next().map_or(0, |l| l.chars().count());
    let blank = " ".repeat(width + 4);
    let mut lines = vec![blank.clone()];
    lines.extend(body.lines().map(|l| format!("  {l}  ")));
    lines.push(blank);
    Some(lines)
}

fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Enrollment {
    /// Where the QR code and the text go; no QR area when the code does not fit.
    fn areas(&self, area: Rect) -> (Vec<String>, Rect, Rect) {
        let qr = qr_lines(&self.answer.otpauth_uri).unwrap_or_default();
        let qr_width = qr.first().map_or(0, |l| l.chars().count());
        let fits = qr.len() <= usize::from(area.height) && qr_width + 30 <= usize::from(area.width);
        let qr_cols = if fits {
            u16::try_from(qr_width).unwrap_or(0)
        } else {
            0
        };
        let [qr_area, _, text_area] = Layout::horizontal([
            Constraint::Length(qr_cols),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(area);
        (if fits { qr } else { Vec::new() }, qr_area, text_area)
    }
}

impl Widget for &Enrollment {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (qr, qr_area, text_area) = self.areas(area);
        let fits = !qr.is_empty();
        if fits {
            let style = Style::new().fg(Color::Black).bg(Color::White);
            for (n, line) in qr.iter().enumerate() {
                let y = qr_area.y + u16::try_from(n).unwrap_or(0);
                buf.set_string(qr_area.x, y, line, style);
            }
        }
        let mut text = vec![
            Line::from(format!("Enroll an authenticator for {}", self.user)).bold(),
            Line::from(""),
        ];
        if fits {
            text.push(Line::from("Scan the code with the app, or type"));
            text.push(Line::from("the secret in by hand:"));
        } else {
            text.push(Line::from("The window is too small for the QR code:").yellow());
            text.push(Line::from("enlarge it, or type the secret in by hand:"));
        }
        text.extend([
            Line::from(grouped(&self.answer.secret)).bold(),
            Line::from(""),
            Line::from(vec![
                Span::raw("Device  "),
                Span::raw(self.answer.device.id.clone()),
            ]),
            Line::from(""),
        ]);
        match &self.confirmed {
            None => {
                text.push(Line::from("Then type the code the app shows:"));
                text.push(Line::from(vec![
                    Span::raw("Code  ").bold(),
                    Span::raw(self.code.clone()),
                    Span::raw("█").slow_blink(),
                ]));
            }
            Some(confirmed) => {
                text.push(Line::from("The authenticator is active.").green().bold());
                if let Some(codes) = &confirmed.backup_codes {
                    text.push(Line::from("Backup codes (shown once, each works once):"));
                    for pair in codes.chunks(2) {
                        text.push(Line::from(format!("  {}", pair.join("   "))));
                    }
                }
            }
        }
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .render(text_area, buf);
    }
}

impl Widget for &Audit {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [filter, list, detail] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        Line::from(vec![
            Span::raw("Filter: ").bold(),
            Span::raw(if self.filter.is_empty() {
                "(none)".to_owned()
            } else {
                self.filter.clone()
            }),
        ])
        .render(filter, buf);
        if let Some(line) = loading_line("audit log", &self.events) {
            line.render(list, buf);
            return;
        }
        let Loading::Loaded(events) = &self.events else {
            return;
        };
        let height = usize::from(list.height.saturating_sub(1));
        let end = events.len().saturating_sub(self.scroll);
        let start = end.saturating_sub(height);
        let selected_index = end.checked_sub(1);
        let rows = events[start..end].iter().enumerate().map(|(n, e)| {
            let row = Row::new(vec![
                short_time(e.time),
                e.actor.clone(),
                e.action.clone(),
                e.user.clone().unwrap_or_default(),
                e.outcome.clone(),
                e.detail.clone().unwrap_or_default(),
            ]);
            if Some(start + n) == selected_index {
                row.style(selected())
            } else {
                row
            }
        });
        Table::new(rows, audit_columns(events))
            .header(Row::new(AUDIT_HEADER).bold())
            .render(list, buf);
        if events.is_empty() {
            let below = Rect {
                y: list.y.saturating_add(1),
                height: list.height.saturating_sub(1),
                ..list
            };
            Line::from("no event matches").italic().render(below, buf);
        }
        if let Some(e) = selected_index.and_then(|i| events.get(i)) {
            Line::from(format!(
                "#{} {}",
                e.id,
                e.detail.clone().unwrap_or_default()
            ))
            .dim()
            .render(detail, buf);
        }
    }
}

impl Widget for &Directory {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if let Some(line) = loading_line("directory status", &self.domains) {
            line.render(area, buf);
            return;
        }
        let Loading::Loaded(domains) = &self.domains else {
            return;
        };
        let mut lines = Vec::new();
        if self.syncing {
            lines.push(
                Line::from("A sync is running; the status below is from before it.").yellow(),
            );
        }
        if domains.is_empty() {
            lines.push(Line::from(
                "No [[directory]] is configured: Twofold has local users only.",
            ));
        }
        for d in domains {
            lines.push(sync_line(d, None, false));
            lines.push(Line::from(format!(
                "   server {} · {} ms · {} pages · {} entries",
                d.server.clone().unwrap_or_else(|| "-".to_owned()),
                d.duration_ms,
                d.pages,
                d.entries
            )));
            lines.push(Line::from(format!(
                "   added {} · changed {} · disabled {} · removed {} · purged {}",
                d.added, d.changed, d.disabled, d.removed, d.purged
            )));
            if let Some(t) = d.last_success {
                lines.push(Line::from(format!("   last success {}", time(t))));
            }
            for e in d.errors.iter().take(3) {
                lines.push(Line::from(format!("   ! {e}")).red());
            }
            if d.errors.len() > 3 {
                lines.push(
                    Line::from(format!(
                        "   … {} more (twofold-admin directory status)",
                        d.errors.len() - 3
                    ))
                    .red(),
                );
            }
        }
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .render(area, buf);
    }
}

fn rule_name(rule: TwoFactorRule) -> &'static str {
    match rule {
        TwoFactorRule::Required => "required",
        TwoFactorRule::Optional => "optional",
        TwoFactorRule::Off => "off",
    }
}

fn restore_name(rule: RestoreRule) -> &'static str {
    match rule {
        RestoreRule::Allowed => "allowed",
        RestoreRule::Prohibited => "admin only",
    }
}

fn channels(list: &[Channel]) -> String {
    list.iter()
        .map(|c| channel_name(*c))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Widget for &Policies {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if let Some(line) = loading_line("policies", &self.overview) {
            line.render(area, buf);
            return;
        }
        let Loading::Loaded(p) = &self.overview else {
            return;
        };
        let [defaults, groups, note] = Layout::vertical([
            Constraint::Length(6),
            Constraint::Min(0),
            Constraint::Length(if p.config_differs { 2 } else { 1 }),
        ])
        .areas(area);
        let system = match &self.system {
            // Who switched it is in the audit log; the line has room for what it means.
            Loading::Loaded(s) if s.on => Span::raw(format!(
                "ON since {} (epoch {}) · {} of {} must enroll",
                s.changed_at.map_or_else(|| "-".to_owned(), time),
                s.epoch,
                s.enrollment_required,
                s.users
            ))
            .bold(),
            Loading::Loaded(s) => Span::raw(format!(
                "off: the policies apply{}",
                s.changed_at
                    .map(|t| format!(" (switched off {})", time(t)))
                    .unwrap_or_default()
            )),
            Loading::Failed(e) => Span::raw(e.clone()).red(),
            Loading::Idle | Loading::Loading => Span::raw("…"),
        };
        Paragraph::new(vec![
            Line::from(vec![label("2FA"), Span::raw(rule_name(p.two_factor))]),
            Line::from(vec![label("Channels"), Span::raw(channels(&p.channels))]),
            Line::from(vec![label("Restore"), Span::raw(restore_name(p.restore))]),
            Line::from(vec![label("System"), system]),
        ])
        .block(Block::bordered().title(if self.selected == 0 {
            Line::from(" ▸ Defaults [policy] ").style(selected())
        } else {
            Line::from(" Defaults [policy] ")
        }))
        .render(defaults, buf);
        let dash = || "-".to_owned();
        let rows = p.groups.iter().enumerate().map(|(n, g)| {
            let marked = n + 1 == self.selected;
            let row = Row::new(vec![
                format!("{}{}", if marked { "▸ " } else { "" }, g.group),
                g.two_factor.map_or_else(dash, |r| rule_name(r).to_owned()),
                g.channels.as_deref().map_or_else(dash, channels),
                g.restore.map_or_else(dash, |r| restore_name(r).to_owned()),
            ]);
            if marked {
                row.style(selected())
            } else {
                row
            }
        });
        Table::new(
            rows,
            [
                Constraint::Fill(2),
                Constraint::Length(9),
                Constraint::Fill(2),
                Constraint::Length(10),
            ],
        )
        .header(Row::new(["Group", "2FA", "Channels", "Restore"]).bold())
        .block(
            Block::bordered()
                .title(" Groups [[policy.group]]: the first entry setting a value wins "),
        )
        .render(groups, buf);
        if p.groups.is_empty() && groups.height > 3 {
            let inner = Rect {
                x: groups.x + 1,
                y: groups.y + 2,
                width: groups.width.saturating_sub(2),
                height: 1,
            };
            Line::from("no group entries: the defaults apply to everyone")
                .italic()
                .render(inner, buf);
        }
        let mut lines = vec![p
            .origin
            .as_ref()
            .map_or_else(|| Line::from(""), |o| Line::from(origin_line(o)).dim())];
        if p.config_differs {
            lines.push(
                Line::from(
                    "twofold.toml's policy sections differ from these live ones (C applies them)",
                )
                .yellow(),
            );
        }
        Paragraph::new(lines).render(note, buf);
    }
}

/// Where the live policies came from, in one line of the screen.
fn origin_line(o: &PolicyOrigin) -> String {
    let how = match o.source {
        PolicySource::ConfigFile if o.changed_by == "daemon" => {
            "Copied from twofold.toml at the first start,".to_owned()
        }
        PolicySource::ConfigFile => format!("Reset to twofold.toml by {} at", o.changed_by),
        PolicySource::Admin => format!("Edited by {} at", o.changed_by),
    };
    format!("{how} {} (revision {})", time(o.changed_at), o.revision)
}

impl Widget for &PolicyForm {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut lines = Vec::new();
        for (n, (key, value)) in self.settings.iter().enumerate() {
            let now = value.clone().unwrap_or_else(|| UNSET.to_owned());
            let mark = if n == self.selected { "▸" } else { " " };
            let mut spans = vec![Span::raw(format!("{mark}{key:<28}"))];
            match (&self.draft, n == self.selected) {
                (Some(draft), true) => {
                    spans.push(Span::raw(format!("{now} → ")).dim());
                    spans.push(Span::raw(draft.clone()).bold().yellow());
                    if !matches!(self.kind(), crate::policy_form::SettingKind::Choice(_)) {
                        spans.push(Span::raw("█").slow_blink());
                    }
                }
                _ if value.is_none() => spans.push(Span::raw(now).dim()),
                _ => spans.push(Span::raw(now)),
            }
            let line = Line::from(spans);
            lines.push(if n == self.selected {
                line.style(selected())
            } else {
                line
            });
        }
        lines.push(Line::from(""));
        lines.push(if self.editable {
            Line::from(format!(" {}", self.kind().help())).italic()
        } else {
            Line::from(" Read-only: changing policies needs the master admin role.").italic()
        });
        if self.group.is_some() {
            lines.push(
                Line::from(" - falls through to the next matching entry, then the default").dim(),
            );
        }
        let title = match &self.group {
            None => " Defaults [policy] ".to_owned(),
            Some(g) => format!(" Group {g} "),
        };
        Paragraph::new(lines)
            .block(Block::bordered().title(title).yellow())
            .render(area, buf);
    }
}

impl Widget for &Handover {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if let Some(line) = loading_line("handover queue", &self.entries) {
            line.render(area, buf);
            return;
        }
        let Loading::Loaded(entries) = &self.entries else {
            return;
        };
        let [list, detail] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(4)]).areas(area);
        let rows = entries.iter().enumerate().map(|(n, e)| {
            let row = Row::new(vec![
                Cell::from(e.user.clone()),
                Cell::from(e.display_name.clone().unwrap_or_default()),
                Cell::from(e.code.clone()).bold(),
                Cell::from(short_time(e.created)),
                Cell::from(short_time(e.expires_at)),
            ]);
            if n == self.selected {
                row.style(selected())
            } else {
                row
            }
        });
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Fill(1),
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Length(14),
            ],
        )
        .header(Row::new(["User", "Name", "Code", "Asked", "Expires"]).bold())
        .block(Block::bordered().title(format!(" In-person handover queue ({}) ", entries.len())))
        .render(list, buf);
        let text = match entries.get(self.selected) {
            None => vec![Line::from("Nobody is waiting for a code.").italic()],
            Some(e) => vec![
                Line::from(vec![
                    Span::raw("Read out to "),
                    Span::raw(e.user.clone()).bold(),
                    Span::raw(": "),
                    Span::raw(e.code.clone()).bold(),
                ]),
                Line::from(format!("Check first: {}", escape_hazards(&e.note))),
            ],
        };
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::bordered())
            .render(detail, buf);
    }
}

impl Widget for &Delivery {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let plugin_rows = self.plugins.loaded().map_or(1, Vec::len).clamp(1, 5);
        let [plugins, recent] = Layout::vertical([
            Constraint::Length(u16::try_from(plugin_rows).unwrap_or(1) + 3),
            Constraint::Min(0),
        ])
        .areas(area);
        match &self.plugins {
            Loading::Loaded(list) => {
                let rows = list.iter().map(|p| {
                    let state = if p.loaded {
                        Cell::from("loaded").green()
                    } else {
                        Cell::from("NOT LOADED").red()
                    };
                    Row::new(vec![
                        Cell::from(p.name.clone()),
                        state,
                        Cell::from(format!(
                            "{} ms{}",
                            p.load_ms,
                            if p.from_cache { " cached" } else { "" }
                        )),
                        Cell::from(escape_hazards(p.error.as_deref().unwrap_or_default())),
                    ])
                });
                Table::new(
                    rows,
                    [
                        Constraint::Length(16),
                        Constraint::Length(10),
                        Constraint::Length(14),
                        Constraint::Fill(1),
                    ],
                )
                .header(Row::new(["Plugin", "State", "Load", "Last error"]).bold())
                .block(Block::bordered().title(format!(" Plugins ({}) ", list.len())))
                .render(plugins, buf);
                if list.is_empty() {
                    let inner = Rect {
                        x: plugins.x + 1,
                        y: plugins.y + 2,
                        width: plugins.width.saturating_sub(2),
                        height: 1,
                    };
                    Line::from("no [[plugin]] configured")
                        .italic()
                        .render(inner, buf);
                }
            }
            other => {
                if let Some(line) = loading_line("plugins", other) {
                    line.render(plugins, buf);
                }
            }
        }
        let Loading::Loaded(list) = &self.deliveries else {
            if let Some(line) = loading_line("deliveries", &self.deliveries) {
                line.render(recent, buf);
            }
            return;
        };
        let rows = list.iter().map(|d| {
            let last = d
                .attempts
                .last()
                .map(|a| format!("{} {}: {}", a.via, a.outcome, escape_hazards(&a.detail)))
                .unwrap_or_default();
            let state = Cell::from(delivery_state(d.state));
            Row::new(vec![
                Cell::from(short_time(d.created)),
                Cell::from(d.user.clone()),
                Cell::from(channel_name(d.channel)),
                Cell::from(d.destination.clone()),
                if d.state == DeliveryState::Failed {
                    state.red()
                } else {
                    state
                },
                Cell::from(last),
            ])
        });
        Table::new(
            rows,
            [
                Constraint::Length(14),
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Length(16),
                Constraint::Length(9),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(["Time", "User", "Channel", "To", "State", "Last try"]).bold())
        .block(Block::bordered().title(format!(" Codes sent: {} ", delivery_counts(list))))
        .render(recent, buf);
    }
}

impl Widget for &PhoneForm {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let field = |name: &str, value: &str, active: bool| {
            let mut spans = vec![
                Span::raw(format!("{name:<8}")).bold(),
                Span::raw(value.to_owned()),
            ];
            if active {
                spans.push(Span::raw("█").slow_blink());
            }
            Line::from(spans)
        };
        Paragraph::new(vec![
            Line::from(format!(
                "Numbers {}'s codes go to instead of the directory's.",
                self.user
            )),
            Line::from("Leave a field empty to use the directory's number again."),
            Line::from(""),
            field("Mobile", &self.mobile, !self.on_voice),
            field("Voice", &self.voice, self.on_voice),
        ])
        .block(Block::bordered().title(" Phone numbers "))
        .render(area, buf);
    }
}

/// The key line's entries: the mode's keys, or the screen's (those the operator's role allows) and then
/// the keys of every screen that the screen does not take for itself.
fn key_hints(app: &App) -> Vec<Hint> {
    if let Some(list) = mode_keys(&app.mode) {
        return keys::hints(list, |_| true);
    }
    if let Mode::PolicyForm(form) = &app.mode {
        return policy_form_hints(form);
    }
    let screen = screen_keys(app.screen, app.users.searching);
    let mut hints = keys::hints(&screen, |p| app.may(p));
    if global_keys_work(app.screen, app.users.searching) {
        let free = keys::GLOBAL
            .iter()
            .filter(|g| !screen.iter().any(|b| b.shadows(*g)));
        hints.extend(keys::hints(&free.copied().collect::<Vec<_>>(), |_| true));
    }
    hints
}

fn policy_form_hints(form: &PolicyForm) -> Vec<Hint> {
    let mut keys = vec![("↑↓", "setting")];
    if form.editable {
        keys.push(match form.kind() {
            crate::policy_form::SettingKind::Choice(_) => ("←→", "change"),
            _ => ("type", "a value"),
        });
        if form.group.is_some() {
            keys.push(("Del", "unset"));
        }
        keys.push(("Enter", "apply"));
    }
    keys.push(("Esc", "close"));
    keys
}

fn hint_line(hints: &[(&str, &str)]) -> Line<'static> {
    let mut spans = Vec::new();
    for (key, what) in hints {
        spans.push(Span::raw(format!(" {key}")).bold().fg(Color::Cyan));
        if !what.is_empty() {
            spans.push(Span::raw(format!(" {what}")));
        }
    }
    Line::from(spans)
}

fn screen_name(screen: ScreenId) -> &'static str {
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

fn header(app: &App) -> Line<'static> {
    let mut spans = Vec::new();
    let current = screen_name(app.screen);
    for (n, screen) in SCREENS.iter().enumerate() {
        let name = screen_name(*screen);
        spans.push(Span::raw(" "));
        let span = Span::raw(format!("{}{name}", n + 1));
        spans.push(if name == current {
            span.bold().reversed()
        } else {
            span
        });
    }
    let who = app
        .identity
        .name
        .clone()
        .unwrap_or_else(|| format!("uid {}", app.identity.uid));
    spans.push(Span::raw(format!("  {who} · {}", app.identity.role.name())).dim());
    Line::from(spans)
}

/// One screen's keys in the help: every binding, marked with the role it needs when the operator's
/// role lacks it.
fn help_section(app: &App, title: &str, list: &[Binding<()>]) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(title.to_owned()).bold()];
    for binding in list {
        let mut spans = vec![
            Span::raw(format!("{:>14} ", binding.shown))
                .bold()
                .fg(Color::Cyan),
            Span::raw(binding.does),
        ];
        if let Some(permission) = binding.needs.filter(|p| !app.may(*p)) {
            spans.push(Span::raw(format!(" (needs {})", permission.role().name())).dim());
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// The help: the current screen's keys first, then those of every screen and the other screens', all
/// read from the lists the keys are dispatched from; then what each role may do.
fn help(app: &App) -> Text<'static> {
    let searching = app.users.searching;
    let mut lines = vec![
        Line::from("Twofold console · keys · ↑↓ scrolls, any other key closes").bold(),
        Line::from("Times are UTC."),
        Line::from(""),
    ];
    let title = |screen: ScreenId, searching: bool| match screen {
        ScreenId::Users if searching => "Users, typing in the search box".to_owned(),
        ScreenId::Users => "Users (the list)".to_owned(),
        ScreenId::User => "User (one user's details)".to_owned(),
        ScreenId::Enrollment => "Enrolling an authenticator".to_owned(),
        other => screen_name(other).to_owned(),
    };
    lines.extend(help_section(
        app,
        &format!("This screen: {}", title(app.screen, searching)),
        &screen_keys(app.screen, searching),
    ));
    let mut every = keys::described(keys::GLOBAL);
    every.push(Binding::new(&[], "Ctrl-C", "quit", ()));
    lines.extend(help_section(app, "Every screen (not while typing)", &every));
    let others = [
        (ScreenId::Dashboard, false),
        (ScreenId::Users, false),
        (ScreenId::Users, true),
        (ScreenId::User, false),
        (ScreenId::Enrollment, false),
        (ScreenId::Audit, false),
        (ScreenId::Directory, false),
        (ScreenId::Policies, false),
        (ScreenId::Handover, false),
        (ScreenId::Delivery, false),
    ];
    for (screen, typing) in others {
        if (screen, typing) != (app.screen, searching) {
            lines.extend(help_section(
                app,
                &title(screen, typing),
                &screen_keys(screen, typing),
            ));
        }
    }
    lines.push(Line::from(
        "The audit filter takes user:, action:, actor:, outcome: and text, e.g. user:alice outcome:forbidden",
    ));
    lines.push(Line::from(""));
    lines.push(
        Line::from(format!(
            "You are {} ({}).",
            app.identity.role.name(),
            app.identity.granted_by
        ))
        .bold(),
    );
    for role in Role::ALL {
        let what: Vec<&str> = Permission::ALL
            .iter()
            .filter(|p| p.role() == role)
            .map(|p| p.describe())
            .collect();
        let mark = if app.identity.role >= role {
            "✓"
        } else {
            "✗"
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{mark} {}: ", role.name())).bold(),
            Span::raw(what.join(", ")),
        ]));
    }
    Text::from(lines)
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        // One line of keys, whatever the width: what does not fit is in the help.
        let hints = hint_line(&keys::fit(&key_hints(self), area.width));
        let [top, body, status, keys_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let status_line = match &self.status {
            Some(Status::Info(m)) => Line::from(m.clone()).green(),
            Some(Status::Error(m)) => Line::from(m.clone()).red().bold(),
            None => Line::from(""),
        };
        match self.screen {
            ScreenId::Enrollment => {
                // The QR code needs the height: this screen has no header, and its status goes beside
                // the code.
                let full = Rect {
                    height: area.height.saturating_sub(1),
                    ..area
                };
                if let Some(enrollment) = &self.enrollment {
                    enrollment.render(full, buf);
                    let (_, _, text_area) = enrollment.areas(full);
                    let row = Rect {
                        y: full.bottom().saturating_sub(1),
                        height: 1,
                        ..text_area
                    };
                    status_line.render(row, buf);
                }
            }
            screen => {
                status_line.render(status, buf);
                header(self).render(top, buf);
                match screen {
                    ScreenId::Dashboard => {
                        DashboardScreen {
                            dashboard: &self.dashboard,
                            directory: &self.directory,
                            delivery: &self.delivery,
                        }
                        .render(body, buf);
                    }
                    ScreenId::Handover => self.handover.render(body, buf),
                    ScreenId::Delivery => self.delivery.render(body, buf),
                    ScreenId::Directory => self.directory.render(body, buf),
                    ScreenId::Policies => self.policies.render(body, buf),
                    ScreenId::Users => self.users.render(body, buf),
                    ScreenId::User => {
                        if let Some(detail) = &self.user {
                            detail.render(body, buf);
                        }
                    }
                    ScreenId::Audit => self.audit.render(body, buf),
                    ScreenId::Enrollment => {}
                }
            }
        }
        hints.render(keys_area, buf);
        match &self.mode {
            Mode::Confirm(action) => {
                // A long question (a group named by its DN) wraps: the dialog grows with it.
                let width = body.width.min(72).saturating_sub(2).max(1);
                let question = u16::try_from(action.question().chars().count()).unwrap_or(u16::MAX);
                let lines = question.div_ceil(width).saturating_add(1).min(6);
                let dialog = body.centered(Constraint::Max(72), Constraint::Length(lines + 3));
                Clear.render(dialog, buf);
                Paragraph::new(vec![
                    Line::from(action.question()),
                    Line::from(""),
                    hint_line(&key_hints(self)),
                ])
                .wrap(Wrap { trim: true })
                .block(Block::bordered().title(" Confirm ").yellow())
                .render(dialog, buf);
            }
            Mode::Help => {
                let dialog = body.centered(Constraint::Max(78), Constraint::Percentage(100));
                Clear.render(dialog, buf);
                let text = Paragraph::new(help(self)).wrap(Wrap { trim: false });
                // Scrolled no further than the last line at the bottom.
                let inner = dialog.height.saturating_sub(2);
                let total = text.line_count(dialog.width.saturating_sub(2));
                let most = u16::try_from(total)
                    .unwrap_or(u16::MAX)
                    .saturating_sub(inner);
                text.scroll((self.help_scroll.min(most), 0))
                    .block(Block::bordered().title(" Help "))
                    .render(dialog, buf);
            }
            Mode::Notice(lines) => {
                let height = u16::try_from(lines.len()).unwrap_or(5) + 2;
                let dialog = body.centered(Constraint::Max(64), Constraint::Length(height));
                Clear.render(dialog, buf);
                let text: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
                Paragraph::new(text)
                    .centered()
                    .bold()
                    .block(Block::bordered().yellow())
                    .render(dialog, buf);
            }
            Mode::ResendChannel(pick) => {
                let height = u16::try_from(pick.channels.len()).unwrap_or(4) + 3;
                let dialog = body.centered(Constraint::Max(56), Constraint::Length(height));
                Clear.render(dialog, buf);
                let mut lines = vec![Line::from(format!(
                    "Re-send {}'s restore code by:",
                    pick.user
                ))];
                for (n, channel) in pick.channels.iter().enumerate() {
                    let line = Line::from(format!("  {}", channel_name(*channel)));
                    lines.push(if n == pick.selected {
                        line.style(selected())
                    } else {
                        line
                    });
                }
                Paragraph::new(lines)
                    .block(Block::bordered().title(" Lost restore code ").yellow())
                    .render(dialog, buf);
            }
            Mode::Phones(form) => {
                let dialog = body.centered(Constraint::Max(64), Constraint::Length(7));
                Clear.render(dialog, buf);
                form.render(dialog, buf);
            }
            Mode::PolicyForm(form) => {
                let height = u16::try_from(form.settings.len()).unwrap_or(10)
                    + if form.group.is_some() { 5 } else { 4 };
                let dialog = body.centered(Constraint::Max(72), Constraint::Length(height));
                Clear.render(dialog, buf);
                form.render(dialog, buf);
            }
            Mode::PolicyGroupName(name) => {
                let dialog = body.centered(Constraint::Max(72), Constraint::Length(5));
                Clear.render(dialog, buf);
                Paragraph::new(vec![
                    Line::from("The group's DN or CN (a group without an entry gets one, last):"),
                    Line::from(""),
                    Line::from(vec![Span::raw(name.clone()), Span::raw("█").slow_blink()]),
                ])
                .block(Block::bordered().title(" Group policy ").yellow())
                .render(dialog, buf);
            }
            Mode::AuditFilter => {
                // The cursor sits after the filter text while it is edited.
                let x = body.x + 8 + u16::try_from(self.audit.filter.chars().count()).unwrap_or(0);
                if x < body.right() {
                    buf.set_string(x, body.y, "█", Style::new());
                }
            }
            Mode::Normal => {}
        }
    }
}
