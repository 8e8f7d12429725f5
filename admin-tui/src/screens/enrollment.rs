//! Enrolling an authenticator: the QR code drawn in the terminal and the code typed to confirm it.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode::{Backspace, Enter, Esc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};
use twofold_wire::api::{ConfirmAnswer, EnrollAnswer};

use crate::keys::{Binding, Keys};

/// What a key does while an authenticator is enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentKey {
    Type,
    Delete,
    Confirm,
    Back,
}

pub const ENROLLMENT_KEYS: &[Binding<EnrollmentKey>] = &[
    Binding::typing(Keys::Digits, "digits", "code", EnrollmentKey::Type),
    Binding::new(&[Backspace], "Backspace", "delete", EnrollmentKey::Delete).help_only(),
    Binding::new(&[Enter], "Enter", "confirm", EnrollmentKey::Confirm),
    Binding::new(&[Esc], "Esc", "back to user", EnrollmentKey::Back),
];

pub struct Enrollment {
    pub user: String,
    pub answer: EnrollAnswer,
    pub code: String,
    pub confirmed: Option<ConfirmAnswer>,
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

pub fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Enrollment {
    /// Where the QR code and the text go; no QR area when the code does not fit.
    pub fn areas(&self, area: Rect) -> (Vec<String>, Rect, Rect) {
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
