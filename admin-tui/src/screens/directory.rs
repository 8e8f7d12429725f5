//! The directory's domains: how each last sync went, and sync now.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::Char;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget, Wrap};
use twofold_wire::admin::{Permission, SyncStatus};

use super::{loading_line, sync_line, Loading};
use crate::keys::Binding;
use crate::words::time;

/// What a key does on the directory screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKey {
    Sync,
    FullSync,
    Refresh,
}

pub const DIRECTORY_KEYS: &[Binding<DirectoryKey>] = &[
    Binding::new(&[Char('s')], "s", "sync now", DirectoryKey::Sync)
        .needs(Permission::SyncDirectory),
    Binding::new(&[Char('S')], "S", "full sync", DirectoryKey::FullSync)
        .needs(Permission::SyncDirectory),
    Binding::new(&[Char('r')], "r", "refresh", DirectoryKey::Refresh),
];

pub struct Directory {
    pub domains: Loading<Vec<SyncStatus>>,
    /// A sync asked for is running in the daemon.
    pub syncing: bool,
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
