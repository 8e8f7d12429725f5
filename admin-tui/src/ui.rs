//! Drawing: every screen is a widget over its state; `App` draws the header, the active screen, the
//! status and key lines, and the dialogs. Laid out for 80x24 and up.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};
use twofold_wire::admin::{Permission, Role};

use crate::app::{mode_keys, App, Mode, PhoneForm, Status, FILTER_KEYS, PHONE_KEYS};
use crate::keys::{self, Binding, Hint};
use crate::policy_form::{PolicyForm, FORM_KEYS, UNSET};
use crate::screens::dashboard::DashboardScreen;
use crate::screens::{global_keys_work, screen_keys, screen_name, selected, ScreenId, SCREENS};
use crate::words::channel_name;

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
        return keys::hints(&form.keys(), |_| true);
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
    lines.extend(help_section(
        app,
        "Audit filter line (user:alice action:verify outcome:reject text)",
        &keys::described(FILTER_KEYS),
    ));
    lines.extend(help_section(
        app,
        "Phone numbers form",
        &keys::described(PHONE_KEYS),
    ));
    lines.extend(help_section(
        app,
        "Policy entry form (changing needs the master admin role)",
        &keys::described(FORM_KEYS),
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
