//! The policy editor's state: one entry's settings (the defaults, or a group's entry), the setting
//! picked, and the value it is being changed to. No I/O: `App` turns a change into a confirmation and a
//! request; the daemon checks the value as it checks the configuration file.

use ratatui::crossterm::event::KeyCode::{
    Backspace, Char, Delete, Down, Enter, Esc, Left, Right, Up,
};
use twofold_wire::admin::PolicyOverview;

use crate::keys::{Binding, Keys};

/// What a key does in the policy form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKey {
    Select,
    Step,
    Type,
    Delete,
    Unset,
    Apply,
    Close,
}

impl FormKey {
    /// Whether the command changes the entry (refused, with the role it needs, where it is read-only).
    pub fn changes(self) -> bool {
        !matches!(self, FormKey::Select | FormKey::Close)
    }
}

/// The form's keys; `PolicyForm::keys` picks those that apply to the setting at hand.
pub const FORM_KEYS: &[Binding<FormKey>] = &[
    Binding::new(&[Up, Down], "↑↓", "setting", FormKey::Select),
    // Before typing: a space steps a choice too.
    Binding::new(&[Left, Right, Char(' ')], "←→", "change", FormKey::Step),
    Binding::typing(Keys::Text, "type", "a value", FormKey::Type),
    Binding::new(&[Backspace], "Backspace", "delete", FormKey::Delete).help_only(),
    Binding::new(&[Delete], "Del", "unset", FormKey::Unset),
    Binding::new(&[Enter], "Enter", "apply", FormKey::Apply),
    Binding::new(&[Esc], "Esc", "close", FormKey::Close),
];

/// How a setting is changed on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// ←→ step through these values.
    Choice(&'static [&'static str]),
    /// Digits are typed.
    Number,
    /// Channel names are typed, separated by commas.
    List,
}

impl SettingKind {
    pub fn of(key: &str) -> SettingKind {
        match key {
            "two_factor" => SettingKind::Choice(&["required", "optional", "off"]),
            "restore" => SettingKind::Choice(&["allowed", "prohibited"]),
            "restore_old_devices" => SettingKind::Choice(&["delete", "keep"]),
            "restore_code_delivery" => SettingKind::Choice(&["screen", "email", "in_person"]),
            "restore_auto_activate" => SettingKind::Choice(&["true", "false"]),
            "channels" | "restore_resend_channels" => SettingKind::List,
            _ => SettingKind::Number,
        }
    }

    /// What the form says about changing it.
    pub fn help(self) -> String {
        match self {
            SettingKind::Choice(values) => format!("←→ picks: {}", values.join(", ")),
            SettingKind::Number => "type a whole number".to_owned(),
            SettingKind::List => "type channels: totp,sms,voice,email,in_person or none".to_owned(),
        }
    }
}

/// What a group setting that falls through shows, and what clearing one sends.
pub const UNSET: &str = "-";
const LONGEST_VALUE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyForm {
    /// `None`: the defaults (`[policy]`).
    pub group: Option<String>,
    /// (setting, value as the CLI spells it; `None`: falls through to the next entry, then the default)
    pub settings: Vec<(&'static str, Option<String>)>,
    pub selected: usize,
    /// The value the selected setting is being changed to (`-` clears a group's setting).
    pub draft: Option<String>,
    /// Master admins change; everyone else looks.
    pub editable: bool,
}

impl PolicyForm {
    /// The form of the defaults (`group: None`) or of a group's entry (a group without one gets an
    /// empty form: its first setting makes the entry).
    pub fn open(
        overview: &PolicyOverview,
        group: Option<&str>,
        selected: usize,
        editable: bool,
    ) -> PolicyForm {
        let settings = match group {
            None => overview
                .default_settings()
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
            Some(name) => match overview
                .groups
                .iter()
                .find(|g| twofold_wire::policy::same_group_name(&g.group, name))
            {
                Some(entry) => entry.settings(),
                None => twofold_wire::policy::SETTINGS
                    .iter()
                    .map(|k| (*k, None))
                    .collect(),
            },
        };
        let group = group.map(|name| {
            overview
                .groups
                .iter()
                .find(|g| twofold_wire::policy::same_group_name(&g.group, name))
                .map_or_else(|| name.trim().to_owned(), |g| g.group.clone())
        });
        PolicyForm {
            selected: selected.min(settings.len().saturating_sub(1)),
            group,
            settings,
            draft: None,
            editable,
        }
    }

    pub fn key(&self) -> &'static str {
        self.settings.get(self.selected).map_or("", |(k, _)| *k)
    }

    /// The keys that mean something for this entry and setting: only ↑↓ and Esc where it is read-only,
    /// ←→ for a choice, typing otherwise, Del for a group's setting.
    pub fn keys(&self) -> Vec<Binding<FormKey>> {
        let choice = matches!(self.kind(), SettingKind::Choice(_));
        FORM_KEYS
            .iter()
            .filter(|b| match b.command {
                FormKey::Select | FormKey::Close => true,
                _ if !self.editable => false,
                FormKey::Step => choice,
                FormKey::Type | FormKey::Delete => !choice,
                FormKey::Unset => self.group.is_some(),
                FormKey::Apply => true,
            })
            .copied()
            .collect()
    }

    pub fn kind(&self) -> SettingKind {
        SettingKind::of(self.key())
    }

    /// The selected setting's value now, `-` when it falls through.
    pub fn current(&self) -> String {
        self.settings
            .get(self.selected)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| UNSET.to_owned())
    }

    pub fn select(&mut self, down: bool) {
        self.selected = if down {
            (self.selected + 1).min(self.settings.len().saturating_sub(1))
        } else {
            self.selected.saturating_sub(1)
        };
        self.draft = None;
    }

    /// ←→ on a choice: the next or previous value; a group's setting can also fall through (`-`).
    pub fn step(&mut self, forward: bool) {
        let SettingKind::Choice(values) = self.kind() else {
            return;
        };
        let mut choices: Vec<&str> = values.to_vec();
        if self.group.is_some() {
            choices.insert(0, UNSET);
        }
        let now = self.draft.clone().unwrap_or_else(|| self.current());
        let at = choices.iter().position(|c| *c == now).unwrap_or(0);
        let next = if forward {
            (at + 1) % choices.len()
        } else {
            (at + choices.len() - 1) % choices.len()
        };
        self.draft = choices.get(next).map(|c| (*c).to_owned());
    }

    /// A typed character: digits for numbers, channel names and commas for lists. Typing starts a new
    /// value. Answers whether the character was taken.
    pub fn type_char(&mut self, c: char) -> bool {
        let fits = match self.kind() {
            SettingKind::Choice(_) => false,
            SettingKind::Number => c.is_ascii_digit(),
            SettingKind::List => c.is_ascii_alphabetic() || matches!(c, '_' | ',' | ' '),
        };
        if !fits
            || self
                .draft
                .as_ref()
                .is_some_and(|d| d.len() >= LONGEST_VALUE)
        {
            return false;
        }
        let draft = self.draft.get_or_insert_with(String::new);
        if draft == UNSET {
            draft.clear();
        }
        draft.push(c);
        true
    }

    pub fn backspace(&mut self) {
        if matches!(self.kind(), SettingKind::Choice(_)) {
            return;
        }
        let current = self.current();
        let draft = self.draft.get_or_insert(current);
        if draft == UNSET {
            draft.clear();
        }
        draft.pop();
    }

    /// Del on a group's setting: it falls through again. The defaults cannot fall through.
    pub fn unset(&mut self) -> bool {
        if self.group.is_none() {
            return false;
        }
        self.draft = Some(UNSET.to_owned());
        true
    }

    /// The change Enter asks to confirm: (setting, value before, new value; `None` clears it), when
    /// there is one.
    pub fn change(&self) -> Option<(&'static str, String, Option<String>)> {
        let draft = self.draft.as_ref()?.trim();
        let before = self.current();
        if draft == before {
            return None;
        }
        let value = (draft != UNSET).then(|| draft.to_owned());
        Some((self.key(), before, value))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use twofold_wire::admin::GroupPolicyView;
    use twofold_wire::policy::{Channel, RestoreRule, TwoFactorRule};

    /// The live policies as a master admin left them: the defaults and one group entry (the snapshot
    /// tests add where they came from).
    pub(crate) fn overview() -> PolicyOverview {
        PolicyOverview {
            two_factor: TwoFactorRule::Optional,
            channels: vec![Channel::Totp, Channel::Sms],
            restore: RestoreRule::Allowed,
            restore_settings: Default::default(),
            groups: vec![GroupPolicyView {
                group: "SSO Only".into(),
                two_factor: Some(TwoFactorRule::Off),
                channels: None,
                restore: None,
                restore_settings: Default::default(),
            }],
            origin: None,
            config_differs: false,
        }
    }

    #[test]
    fn keys_make_the_changes_a_person_expects() {
        let defaults = || PolicyForm::open(&overview(), None, 0, true);
        let sso = || PolicyForm::open(&overview(), Some("sso only"), 0, true);
        // (form, keys: > < step, v select down, x Del, b Backspace, other chars typed; the change)
        type Change = Option<(&'static str, String, Option<String>)>;
        let change = |key: &'static str, before: &str, after: Option<&str>| -> Change {
            Some((key, before.to_owned(), after.map(str::to_owned)))
        };
        let table: Vec<(PolicyForm, &str, Change)> = vec![
            (
                defaults(),
                ">",
                change("two_factor", "optional", Some("off")),
            ),
            (
                defaults(),
                "<",
                change("two_factor", "optional", Some("required")),
            ),
            (defaults(), ">>>", None),
            (defaults(), "x", None),
            (defaults(), "v", None),
            (
                defaults(),
                "vtotp",
                change("channels", "totp, sms", Some("totp")),
            ),
            (
                defaults(),
                "vnone",
                change("channels", "totp, sms", Some("none")),
            ),
            (
                defaults(),
                "vv>",
                change("restore", "allowed", Some("prohibited")),
            ),
            (defaults(), "vvv5", change("restore_limit", "3", Some("5"))),
            (defaults(), "vvv5x", change("restore_limit", "3", Some("5"))),
            (defaults(), "vvvb", change("restore_limit", "3", Some(""))),
            (
                defaults(),
                "vvv12b",
                change("restore_limit", "3", Some("1")),
            ),
            (defaults(), "vvvq", None),
            (
                defaults(),
                "vvvvvvvv>",
                change("restore_auto_activate", "false", Some("true")),
            ),
            (sso(), ">", change("two_factor", "off", None)),
            (sso(), "<", change("two_factor", "off", Some("optional"))),
            (sso(), "x", change("two_factor", "off", None)),
            (sso(), "vsms", change("channels", "-", Some("sms"))),
            (sso(), "vx", None),
        ];
        for (i, (mut form, keys, expected)) in table.into_iter().enumerate() {
            for k in keys.chars() {
                match k {
                    '>' => form.step(true),
                    '<' => form.step(false),
                    'v' => form.select(true),
                    'x' => {
                        form.unset();
                    }
                    'b' => form.backspace(),
                    c => {
                        form.type_char(c);
                    }
                }
            }
            assert_eq!(form.change(), expected, "row {i}: {keys}");
        }
    }

    #[test]
    fn a_group_without_an_entry_opens_empty() {
        let form = PolicyForm::open(&overview(), Some("Kiosk"), 0, true);
        assert_eq!(form.group.as_deref(), Some("Kiosk"));
        assert!(form.settings.iter().all(|(_, v)| v.is_none()));
        assert_eq!(form.settings.len(), twofold_wire::policy::SETTINGS.len());
        let named = PolicyForm::open(&overview(), Some("sso only"), 0, true);
        assert_eq!(
            named.group.as_deref(),
            Some("SSO Only"),
            "the entry's own spelling"
        );
    }
}
