//! The audit log with its filter line (`user:alice action:verify outcome:reject text`).

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{self, Char, Down, PageDown, PageUp, Up};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table, Widget};
use twofold_wire::admin::{AuditEvent, AuditFilter};

use super::{audit_columns, loading_line, selected, Loading, AUDIT_HEADER};
use crate::keys::Binding;
use crate::words::short_time;

/// What a key does on the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKey {
    Filter,
    Clear,
    Scroll,
    Refresh,
    Users,
}

pub const AUDIT_KEYS: &[Binding<AuditKey>] = &[
    Binding::new(&[Char('/'), Char('f')], "/", "filter", AuditKey::Filter),
    Binding::new(&[Char('c')], "c", "clear", AuditKey::Clear),
    Binding::new(
        &[Up, Down, PageUp, PageDown],
        "↑↓ PgUp PgDn",
        "scroll",
        AuditKey::Scroll,
    ),
    Binding::new(&[Char('r')], "r", "refresh", AuditKey::Refresh),
    Binding::new(&[Char('u')], "u", "users", AuditKey::Users).help_only(),
];

pub struct Audit {
    /// What the operator types: `user:alice action:block outcome:ok free text`.
    pub filter: String,
    pub events: Loading<Vec<AuditEvent>>,
    /// Rows scrolled up from the newest event.
    pub scroll: usize,
}

/// Parses the audit filter line: `key:value` terms for user, action, actor and outcome; the rest is text.
impl Audit {
    /// ↑ and PgUp scroll back to older events, ↓ and PgDn forward to the newest.
    pub fn scroll_by(&mut self, key: KeyCode) {
        let last = self.events.loaded().map_or(0, Vec::len).saturating_sub(1);
        let scroll = self.scroll;
        self.scroll = match key {
            Up => (scroll + 1).min(last),
            PageUp => (scroll + 10).min(last),
            Down => scroll.saturating_sub(1),
            PageDown => scroll.saturating_sub(10),
            _ => scroll,
        };
    }
}

pub fn parse_audit_filter(line: &str) -> AuditFilter {
    let mut filter = AuditFilter::default();
    let mut text = Vec::new();
    for term in line.split_whitespace() {
        match term.split_once(':') {
            Some(("user", v)) if !v.is_empty() => filter.user = Some(v.to_owned()),
            Some(("action", v)) if !v.is_empty() => filter.action = Some(v.to_owned()),
            Some(("actor", v)) if !v.is_empty() => filter.actor = Some(v.to_owned()),
            Some(("outcome", v)) if !v.is_empty() => filter.outcome = Some(v.to_owned()),
            _ => text.push(term),
        }
    }
    if !text.is_empty() {
        filter.text = Some(text.join(" "));
    }
    filter
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
