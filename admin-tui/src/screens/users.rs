//! The users list with its search box: `/` opens the box, every key then types until Esc or Enter.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{
    self, Backspace, Char, Down, End, Enter, Esc, Home, PageDown, PageUp, Up, F,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, Widget};
use twofold_wire::admin::UserIndexEntry;

use super::{column_width, loading_line, selected, Loading};
use crate::keys::{Binding, Keys};
use crate::search::UserIndex;
use crate::words::state_name;

/// What a key does on the users list, outside the search box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersKey {
    Search,
    Move,
    Open,
    ClearOrBack,
    Reload,
}

pub const MOVES: &[KeyCode] = &[Up, Down, PageUp, PageDown, Home, End];

pub const USERS_KEYS: &[Binding<UsersKey>] = &[
    Binding::new(&[Char('/')], "/", "search", UsersKey::Search),
    Binding::new(MOVES, "↑↓ PgUp PgDn", "move", UsersKey::Move),
    Binding::new(&[Enter], "Enter", "open", UsersKey::Open),
    Binding::new(&[Esc], "Esc", "clear/back", UsersKey::ClearOrBack),
    Binding::new(&[F(5), Char('r')], "r", "reload", UsersKey::Reload),
];

/// What a key does while typing in the users' search box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKey {
    Type,
    Delete,
    Move,
    Open,
    Done,
}

pub const SEARCH_KEYS: &[Binding<SearchKey>] = &[
    Binding::typing(
        Keys::Text,
        "type",
        "username, UPN, name or email",
        SearchKey::Type,
    ),
    Binding::new(&[Backspace], "Backspace", "delete", SearchKey::Delete).help_only(),
    Binding::new(MOVES, "↑↓", "move", SearchKey::Move),
    Binding::new(&[Enter], "Enter", "open", SearchKey::Open),
    Binding::new(&[Esc], "Esc", "done", SearchKey::Done),
];

pub struct Users {
    pub index: Loading<UserIndex>,
    pub query: String,
    /// Indices into the index, for `query`.
    pub matches: Vec<u32>,
    pub selected: usize,
    /// Keys type into the search box (after `/`, until Esc or Enter).
    pub searching: bool,
}

impl Users {
    pub fn selected_entry(&self) -> Option<&UserIndexEntry> {
        let index = self.index.loaded()?;
        index.get(*self.matches.get(self.selected)?)
    }

    /// Moves the selection for an arrow, page, Home or End key.
    pub fn move_selection(&mut self, key: KeyCode) {
        let page = 10;
        let last = self.matches.len().saturating_sub(1);
        let selected = self.selected;
        self.selected = match key {
            Down => (selected + 1).min(last),
            Up => selected.saturating_sub(1),
            PageDown => (selected + page).min(last),
            PageUp => selected.saturating_sub(page),
            Home => 0,
            End => last,
            _ => selected,
        };
    }

    /// A character typed into the search box: only the previous matches need looking at again.
    pub fn type_char(&mut self, c: char) {
        let previous = self.query.clone();
        self.query.push(c);
        self.selected = 0;
        self.refilter(Some(&previous));
    }

    pub fn delete_char(&mut self) {
        self.query.pop();
        self.selected = 0;
        self.refilter(None);
    }

    pub fn clear(&mut self) {
        self.query.clear();
        self.selected = 0;
        self.refilter(None);
    }

    pub fn refilter(&mut self, previous_query: Option<&str>) {
        let Some(index) = self.index.loaded() else {
            return;
        };
        let previous = previous_query.map(|q| (q, self.matches.as_slice()));
        self.matches = index.filter(&self.query, previous);
        self.selected = self.selected.min(self.matches.len().saturating_sub(1));
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
        // The user column fits the longest name on this page (22 columns at least, so the columns stay
        // put for usual names), leaving the name column 20 columns at 80.
        let page = self.matches.iter().skip(offset).take(height);
        let user_width = column_width(
            "User",
            page.filter_map(|&i| index.get(i))
                .map(|e| e.username.as_str()),
        )
        .clamp(22, list.width.saturating_sub(12 + 15 + 3 + 20).max(22));
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
                Constraint::Length(user_width),
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
