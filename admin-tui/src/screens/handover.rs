//! The in-person handover queue: codes to read out to users who came to the desk.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{self, Char, Down, Enter, Up};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget, Wrap};
use twofold_wire::admin::Permission;
use twofold_wire::delivery::HandoverEntry;
use twofold_wire::text::escape_hazards;

use super::{loading_line, selected, Loading};
use crate::keys::Binding;
use crate::words::short_time;

/// What a key does on the in-person handover queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverKey {
    Select,
    HandedOver,
    Refresh,
}

pub const HANDOVER_KEYS: &[Binding<HandoverKey>] = &[
    Binding::new(&[Up, Down], "↑↓", "select", HandoverKey::Select),
    Binding::new(
        &[Enter, Char('h')],
        "Enter",
        "handed over",
        HandoverKey::HandedOver,
    )
    .needs(Permission::HandOverCode),
    Binding::new(&[Char('r')], "r", "refresh", HandoverKey::Refresh),
];

pub struct Handover {
    pub entries: Loading<Vec<HandoverEntry>>,
    pub selected: usize,
}

impl Handover {
    pub fn move_selection(&mut self, key: KeyCode) {
        let last = self.entries.loaded().map_or(0, Vec::len).saturating_sub(1);
        self.selected = match key {
            Down => (self.selected + 1).min(last),
            Up => self.selected.saturating_sub(1),
            _ => self.selected,
        };
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
