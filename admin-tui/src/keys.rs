//! Keys, written once: every screen and typing mode has one list of bindings, and the dispatch, the key
//! line and the help all read that list (gitui's `key_list` habit), so what the console says a key does
//! is what it does. A screen's own list is asked first, then the keys that work on every screen.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use twofold_wire::admin::Permission;

/// Which key presses a binding answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Exactly these keys (Shift is part of an upper-case letter, so `R` is not `r`).
    Codes(&'static [KeyCode]),
    /// Any printable character: typing into a field.
    Text,
    /// A digit: typing a code.
    Digits,
    /// Every key (after the other bindings of its list).
    Any,
}

/// One key (or group of keys) and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<C> {
    pub keys: Keys,
    /// How the key is written on the key line and in the help: `d`, `↑↓`, `Enter`.
    pub shown: &'static str,
    /// What it does, in the words of the key line and the help.
    pub does: &'static str,
    pub command: C,
    /// What the command needs: the key line leaves it out for roles without it (pressing it still says
    /// which role it needs), the help marks it.
    pub needs: Option<Permission>,
    /// On the key line; every binding is in the help.
    pub on_key_line: bool,
}

impl<C> Binding<C> {
    pub const fn new(
        keys: &'static [KeyCode],
        shown: &'static str,
        does: &'static str,
        command: C,
    ) -> Self {
        Binding {
            keys: Keys::Codes(keys),
            shown,
            does,
            command,
            needs: None,
            on_key_line: true,
        }
    }

    pub const fn typing(keys: Keys, shown: &'static str, does: &'static str, command: C) -> Self {
        Binding {
            keys,
            shown,
            does,
            command,
            needs: None,
            on_key_line: true,
        }
    }

    pub const fn needs(mut self, permission: Permission) -> Self {
        self.needs = Some(permission);
        self
    }

    /// Listed in the help only: the key line has room for the common keys.
    pub const fn help_only(mut self) -> Self {
        self.on_key_line = false;
        self
    }

    pub fn answers(&self, key: KeyEvent) -> bool {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return false;
        }
        match (self.keys, key.code) {
            (Keys::Codes(codes), code) => codes.contains(&code),
            (Keys::Text, KeyCode::Char(c)) => !c.is_control(),
            (Keys::Digits, KeyCode::Char(c)) => c.is_ascii_digit(),
            (Keys::Any, _) => true,
            _ => false,
        }
    }
}

/// The command of the first binding in `list` that answers to `key` (`Any` only when none else does).
pub fn command<C: Copy>(list: &[Binding<C>], key: KeyEvent) -> Option<C> {
    list.iter()
        .filter(|b| b.keys != Keys::Any)
        .chain(list.iter().filter(|b| b.keys == Keys::Any))
        .find(|b| b.answers(key))
        .map(|b| b.command)
}

impl<C> Binding<C> {
    /// The binding without its command, to list beside other screens' bindings.
    pub fn described(&self) -> Binding<()> {
        Binding {
            keys: self.keys,
            shown: self.shown,
            does: self.does,
            command: (),
            needs: self.needs,
            on_key_line: self.on_key_line,
        }
    }

    /// Whether `other` answers to one of this binding's keys, so that this one never sees them.
    pub fn shadows<D>(&self, other: &Binding<D>) -> bool {
        match (self.keys, other.keys) {
            (Keys::Codes(mine), Keys::Codes(theirs)) => theirs.iter().any(|c| mine.contains(c)),
            (Keys::Any, _) => true,
            (Keys::Text, Keys::Codes(theirs)) => {
                theirs.iter().any(|c| matches!(c, KeyCode::Char(_)))
            }
            _ => false,
        }
    }
}

/// Every binding of `list`, without commands.
pub fn described<C>(list: &[Binding<C>]) -> Vec<Binding<()>> {
    list.iter().map(Binding::described).collect()
}

/// A key line entry: (`shown`, `does`).
pub type Hint = (&'static str, &'static str);

/// The entries of `list` for the key line of an operator who may do what `may` says.
pub fn hints<C>(list: &[Binding<C>], may: impl Fn(Permission) -> bool) -> Vec<Hint> {
    list.iter()
        .filter(|b| b.on_key_line && b.needs.is_none_or(&may))
        .map(|b| (b.shown, b.does))
        .collect()
}

/// What the keys that work on every screen (but the typing ones) do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    Next,
    /// The n-th screen of `SCREENS`, from the digit pressed.
    Pick,
    Help,
    Back,
}

pub const GLOBAL: &[Binding<Global>] = &[
    Binding::new(&[KeyCode::Tab], "Tab", "next screen", Global::Next).help_only(),
    Binding::new(
        &[
            KeyCode::Char('1'),
            KeyCode::Char('2'),
            KeyCode::Char('3'),
            KeyCode::Char('4'),
            KeyCode::Char('5'),
            KeyCode::Char('6'),
            KeyCode::Char('7'),
        ],
        "1-7",
        "the screen numbered on the top line",
        Global::Pick,
    )
    .help_only(),
    Binding::new(
        &[KeyCode::Esc, KeyCode::Char('q')],
        "Esc/q",
        "back",
        Global::Back,
    ),
    Binding::new(&[KeyCode::Char('?')], "?", "help", Global::Help),
];

/// The help entry: always last on the key line, which leaves out what does not fit before it.
pub const HELP: Hint = ("?", "help");

/// The key line in `width` columns: the hints in order, leaving out those that do not fit, and
/// `? help` last whenever it is among them (the help lists every key).
pub fn fit(hints: &[Hint], width: u16) -> Vec<Hint> {
    let cost = |h: &Hint| {
        1 + h.0.chars().count()
            + if h.1.is_empty() {
                0
            } else {
                1 + h.1.chars().count()
            }
    };
    let has_help = hints.contains(&HELP);
    let mut room = usize::from(width).saturating_sub(if has_help { cost(&HELP) } else { 0 });
    let mut line = Vec::new();
    for hint in hints.iter().filter(|h| **h != HELP) {
        if cost(hint) <= room {
            room -= cost(hint);
            line.push(*hint);
        }
    }
    if has_help {
        line.push(HELP);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_leaves_out_what_does_not_fit_and_keeps_help_last() {
        let hints = [
            ("a", "aaaa"),
            ("b", "bbbbbbbbbbbbbbbbbbbb"),
            ("c", "cc"),
            HELP,
        ];
        // " a aaaa" 7, " c cc" 5, " ? help" 7: 19 columns; b's 23 do not fit in 20.
        assert_eq!(fit(&hints, 20), vec![("a", "aaaa"), ("c", "cc"), HELP]);
        assert_eq!(fit(&hints, 80), vec![hints[0], hints[1], hints[2], HELP]);
    }

    #[test]
    fn upper_case_letters_are_their_own_keys_and_ctrl_is_never_text() {
        let reset = Binding::new(&[KeyCode::Char('R')], "R", "reset", ());
        assert!(reset.answers(KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT)));
        assert!(!reset.answers(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE)));
        let text = Binding::typing(Keys::Text, "type", "search", ());
        assert!(text.answers(KeyEvent::new(KeyCode::Char('é'), KeyModifiers::NONE)));
        assert!(!text.answers(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    }
}
