//! The dashboard: the counts, the directory's last sync and the newest audit events.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{Char, Esc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Widget};
use twofold_wire::admin::DashboardStats;
use twofold_wire::delivery::DeliveryState;

use super::delivery::Delivery;
use super::directory::Directory;
use super::{audit_columns, loading_line, percent, sync_line, Loading, AUDIT_HEADER};
use crate::keys::Binding;
use crate::words::short_time;

/// What a key does on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardKey {
    Quit,
    Refresh,
    Users,
    Search,
    Audit,
    Directory,
    Policies,
    Handover,
}

pub const DASHBOARD_KEYS: &[Binding<DashboardKey>] = &[
    Binding::new(&[Char('u')], "u", "users", DashboardKey::Users),
    Binding::new(&[Char('/')], "/", "search users", DashboardKey::Search).help_only(),
    Binding::new(&[Char('a')], "a", "audit", DashboardKey::Audit),
    Binding::new(&[Char('d')], "d", "directory", DashboardKey::Directory).help_only(),
    Binding::new(&[Char('p')], "p", "policies", DashboardKey::Policies).help_only(),
    Binding::new(&[Char('h')], "h", "handover", DashboardKey::Handover),
    Binding::new(&[Char('r')], "r", "refresh", DashboardKey::Refresh),
    Binding::new(&[Esc, Char('q')], "q", "quit", DashboardKey::Quit),
];

pub struct Dashboard {
    pub stats: Loading<DashboardStats>,
    pub ticks_since_refresh: u32,
}

/// The dashboard draws the counts and, below them, the directory's last sync.
pub struct DashboardScreen<'a> {
    pub dashboard: &'a Dashboard,
    pub directory: &'a Directory,
    pub delivery: &'a Delivery,
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
