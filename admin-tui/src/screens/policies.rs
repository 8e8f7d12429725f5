//! The live policies: the defaults and the group entries in priority order, and the system-wide switch.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{self, Char, Delete, Down, Enter, Up};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Widget};
use twofold_wire::admin::{Permission, PolicyOverview, SystemTwoFactorView};
use twofold_wire::policy::{PolicyOrigin, PolicySource};

use super::{label, loading_line, selected, Loading};
use crate::keys::Binding;
use crate::words::{channels, restore_name, rule_name, time};

/// What a key does on the policies screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoliciesKey {
    Select,
    Open,
    AddGroup,
    RemoveGroup,
    ResetToFile,
    SystemSwitch,
    Refresh,
}

pub const POLICIES_KEYS: &[Binding<PoliciesKey>] = &[
    Binding::new(&[Up, Down], "↑↓", "entry", PoliciesKey::Select),
    Binding::new(&[Enter], "Enter", "settings", PoliciesKey::Open),
    Binding::new(&[Char('a')], "a", "add group", PoliciesKey::AddGroup)
        .needs(Permission::ManagePolicies),
    Binding::new(
        &[Char('x'), Delete],
        "x",
        "remove group",
        PoliciesKey::RemoveGroup,
    )
    .needs(Permission::ManagePolicies),
    Binding::new(&[Char('C')], "C", "reset to file", PoliciesKey::ResetToFile)
        .needs(Permission::ManagePolicies),
    Binding::new(
        &[Char('s')],
        "s",
        "switch 2FA for all",
        PoliciesKey::SystemSwitch,
    )
    .needs(Permission::SystemTwoFactorSwitch),
    Binding::new(&[Char('r')], "r", "refresh", PoliciesKey::Refresh),
];

pub struct Policies {
    pub overview: Loading<PolicyOverview>,
    pub system: Loading<SystemTwoFactorView>,
    /// The entry picked with ↑↓: 0 the defaults, n the n-th group entry.
    pub selected: usize,
}

impl Policies {
    /// ↑↓ between the defaults (0) and the group entries (1 to n).
    pub fn move_selection(&mut self, key: KeyCode) {
        let last = self.overview.loaded().map_or(0, |p| p.groups.len());
        self.selected = match key {
            Down => (self.selected + 1).min(last),
            Up => self.selected.saturating_sub(1),
            _ => self.selected,
        };
    }
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
pub fn origin_line(o: &PolicyOrigin) -> String {
    let how = match o.source {
        PolicySource::ConfigFile if o.changed_by == "daemon" => {
            "Copied from twofold.toml at the first start,".to_owned()
        }
        PolicySource::ConfigFile => format!("Reset to twofold.toml by {} at", o.changed_by),
        PolicySource::Admin => format!("Edited by {} at", o.changed_by),
    };
    format!("{how} {} (revision {})", time(o.changed_at), o.revision)
}
