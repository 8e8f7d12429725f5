//! What a plugin says, made safe to show: every text a plugin hands the host (log lines, outcome
//! reasons and references, handover notes, its panic message, names it tried to import) goes through
//! [`plugin_text`] before it is logged, stored or shown.
//!
//! The rule, in this order:
//! 1. Only a bounded prefix is ever copied out of the plugin's memory (`max_bytes`, cut at a character
//!    boundary); the rest is never read, so a 15 MiB string costs the host no more than the cap.
//! 2. The code being delivered is blanked out as `[code]`. This catches the literal code only: a
//!    plugin that spells, encodes or splits the code gets it through. That is accepted, because a
//!    plugin is trusted with the code it delivers; blanking is there for honest mistakes (a gateway
//!    echoing the text back, a panic message), not against a hostile plugin.
//! 3. Control characters (C0 and C1, DEL) and the Unicode line and paragraph separators and
//!    direction overrides are escaped as `\n`, `\r`, `\t` or `\u{..}`: one plugin text is always one
//!    line, so it cannot forge a line of the daemon's log (a fake `twofold::audit` entry) or a row of
//!    `twofold-admin deliveries`, nor reorder what an admin reads.

pub use twofold_wire::text::escape_controls;

use super::capabilities::redact;

/// A plugin's text, bounded, with the code blanked out and control characters escaped.
pub fn plugin_text(text: &str, code: &str, max_bytes: usize) -> String {
    // Blank the code out before cutting, so that a cut cannot leave the first digits of a code behind.
    let blanked = redact(prefix(text, max_bytes.saturating_add(code.len())), code);
    escape_controls(prefix(&blanked, max_bytes))
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub fn prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_is_one_bounded_line_without_the_code() {
        let table = [
            ("sent", "123456", 100, "sent"),
            ("a\nb", "123456", 100, "a\\nb"),
            (
                "ok\r\n2026-12-05T10:00:00Z INFO twofold::audit: admin=root",
                "999999",
                200,
                "ok\\r\\n2026-12-05T10:00:00Z INFO twofold::audit: admin=root",
            ),
            (
                "bell\u{7}esc\u{1b}[31m",
                "",
                100,
                "bell\\u{7}esc\\u{1b}[31m",
            ),
            (
                "c1\u{85}line\u{2028}rtl\u{202e}",
                "",
                100,
                "c1\\u{85}line\\u{2028}rtl\\u{202e}",
            ),
            ("fake \\n escape", "", 100, "fake \\\\n escape"),
            (
                "code 123456 and 1234567",
                "123456",
                100,
                "code [code] and [code]7",
            ),
            // The code split by a control character is not the literal code: it gets through, escaped.
            ("12\n3456", "123456", 100, "12\\n3456"),
            ("abcdef", "", 3, "abc"),
            ("ééé", "", 3, "é"),
            ("", "123456", 10, ""),
            ("ab123456", "123456", 4, "ab[c"),
        ];
        for (text, code, max, expected) in table {
            let got = plugin_text(text, code, max);
            assert_eq!(got, expected, "{text:?}");
            assert!(!got.chars().any(|c| c.is_control()), "{got:?}");
        }
    }
}
