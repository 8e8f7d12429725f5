//! Text from an untrusted source (a plugin's log line, a gateway's answer), made safe to print on one
//! line: the daemon escapes it before logging or storing it, and `twofold-admin` escapes it again before
//! printing, so that a record written by an older daemon cannot forge a row either.

use std::fmt::Write;

/// Whether a character could break a line or reorder text on an admin's screen: control characters
/// (C0, C1, DEL), the Unicode line and paragraph separators, and the direction overrides.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every hazardous character escaped as `\n`, `\r`, `\t` or `\u{..}`, and backslashes
/// doubled so that an escape cannot be faked either. Text without either comes back unchanged.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(|c| is_hazard(c) || c == '\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hazard(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`escape_controls`], for text already escaped once: a second pass would double its
/// backslashes, so only hazardous characters are escaped.
pub fn escape_hazards(text: &str) -> String {
    if !text.chars().any(is_hazard) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hazard(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}
