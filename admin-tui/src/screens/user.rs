//! One user's facts (each wraps under its label) and devices, with the actions on them.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{self, Char, Down, Up};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget, Wrap};
use twofold_wire::admin::{DialledNumber, Permission, UserView};
use twofold_wire::policy::{RestoreRule, TwoFactorRule};
use twofold_wire::{DeviceInfo, DeviceKind, DeviceStatus};

use super::{column_width, label, loading_line, opt, selected, Loading};
use crate::keys::Binding;
use crate::words::{channel_name, device_kind, device_origin, device_status, state_name, time};

/// What a key does on a user's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKey {
    Device,
    Refresh,
    Unlock,
    Block,
    Unblock,
    Unpair,
    Enroll,
    Phones,
    AccessCode,
    Reset,
    Resend,
    Enable,
}

pub const USER_KEYS: &[Binding<UserKey>] = &[
    Binding::new(&[Up, Down], "↑↓", "device", UserKey::Device).help_only(),
    Binding::new(&[Char('r')], "r", "refresh", UserKey::Refresh).help_only(),
    Binding::new(&[Char('u')], "u", "unlock", UserKey::Unlock).needs(Permission::Unlock),
    Binding::new(&[Char('b')], "b", "block", UserKey::Block).needs(Permission::BlockDevice),
    Binding::new(&[Char('n')], "n", "unblock", UserKey::Unblock).needs(Permission::UnblockDevice),
    Binding::new(&[Char('d')], "d", "unpair", UserKey::Unpair).needs(Permission::UnpairDevice),
    Binding::new(&[Char('e')], "e", "enroll", UserKey::Enroll)
        .needs(Permission::EnrollAuthenticator),
    Binding::new(&[Char('p')], "p", "phones", UserKey::Phones)
        .needs(Permission::UpdatePhoneNumbers),
    Binding::new(&[Char('c')], "c", "access code", UserKey::AccessCode)
        .needs(Permission::GenerateAccessCode),
    Binding::new(&[Char('R')], "R", "reset 2FA", UserKey::Reset).needs(Permission::ResetTwoFactor),
    Binding::new(&[Char('s')], "s", "send restore code", UserKey::Resend)
        .needs(Permission::ResendRestoreCode),
    Binding::new(&[Char('x')], "x", "disable/enable", UserKey::Enable)
        .needs(Permission::ManageUsers),
];

pub struct UserDetail {
    pub name: String,
    pub view: Loading<UserView>,
    pub selected_device: usize,
}

impl UserDetail {
    pub fn move_selection(&mut self, key: KeyCode) {
        let last = self
            .view
            .loaded()
            .map_or(0, |v| v.devices.len())
            .saturating_sub(1);
        self.selected_device = match key {
            Down => (self.selected_device + 1).min(last),
            Up => self.selected_device.saturating_sub(1),
            _ => self.selected_device,
        };
    }

    pub fn device(&self) -> Option<&DeviceInfo> {
        self.view.loaded()?.devices.get(self.selected_device)
    }
}

/// A number as codes use it: the override when there is one, saying what the directory has.
pub fn phone(value: &Option<String>, override_: &Option<String>) -> String {
    match (override_, value) {
        (Some(o), Some(v)) => format!("{o}   (override; directory: {v})"),
        (Some(o), None) => format!("{o}   (override)"),
        (None, v) => opt(v),
    }
}

/// How a number is dialled, after it: dim when fine, red when no code can be sent to it.
pub fn dialled(number: &Option<DialledNumber>) -> Span<'static> {
    match number {
        None => Span::raw(""),
        Some(n @ DialledNumber::Unusable { .. }) => Span::raw(format!(" · {}", n.describe())).red(),
        Some(n) => Span::raw(format!(" · {}", n.describe())).dim(),
    }
}

/// One fact about a user: its label (`None` for the heading line) and its value, which wraps under
/// itself rather than being cut.
pub struct Fact(Option<&'static str>, Line<'static>);

pub fn fact(label: &'static str, spans: Vec<Span<'static>>) -> Fact {
    Fact(Some(label), Line::from(spans))
}

/// Width of the label column of the facts.
pub const LABEL_WIDTH: u16 = 9;

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

pub fn user_lines(view: &UserView) -> Vec<Fact> {
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
