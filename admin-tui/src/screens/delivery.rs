//! The delivery plugins and the codes sent lately.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::Char;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table, Widget};
use twofold_wire::admin::Permission;
use twofold_wire::delivery::{DeliveryInfo, DeliveryState, PluginInfo};
use twofold_wire::text::escape_hazards;

use super::{loading_line, Loading};
use crate::keys::Binding;
use crate::words::{channel_name, delivery_state, short_time};

/// What a key does on the delivery screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKey {
    Refresh,
    ReloadPlugins,
}

pub const DELIVERY_KEYS: &[Binding<DeliveryKey>] = &[
    Binding::new(&[Char('r')], "r", "refresh", DeliveryKey::Refresh),
    Binding::new(
        &[Char('R')],
        "R",
        "reload plugins",
        DeliveryKey::ReloadPlugins,
    )
    .needs(Permission::ManagePolicies),
];

pub struct Delivery {
    pub plugins: Loading<Vec<PluginInfo>>,
    /// The newest challenges, newest first (also counted on the dashboard).
    pub deliveries: Loading<Vec<DeliveryInfo>>,
}

/// Waiting and failed deliveries among the newest challenges.
pub fn delivery_counts(deliveries: &[DeliveryInfo]) -> String {
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
