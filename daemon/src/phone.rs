//! The number a code is dialled to, from a phone number as AD or an admin wrote it.
//!
//! The rule: a number written with its country code (`+41 ...`, `0041 ...`) is brought to E.164 by
//! libphonenumber's rules (the `phonenumber` crate and its metadata) before any delivery plugin sees
//! it: a national trunk prefix written in brackets goes (`+49 (0) 170 ...` is `+49170...`, not
//! `+490170...`), and an extension (`ext. 42`, `x42`) is not part of what is dialled. A number written
//! without a country code is passed on as written: only the plugin's `number_rewrite` knows which
//! country its gateway is in. A number with a country code that libphonenumber cannot read is
//! unusable: no code is sent to it, and `user show` says why.

use twofold_wire::admin::DialledNumber;

/// How `written` is dialled (see the module's rule).
pub fn dialled(written: &str) -> DialledNumber {
    let trimmed = written.trim();
    let international = match trimmed.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => trimmed.to_owned(),
    };
    if !international.starts_with('+') {
        return DialledNumber::AsWritten {
            number: trimmed.to_owned(),
        };
    }
    let unusable = |why: &str| DialledNumber::Unusable {
        reason: format!("{trimmed}: {why}"),
    };
    match phonenumber::parse(None, &international) {
        Ok(number) => {
            let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
            let digits = e164.chars().filter(char::is_ascii_digit).count();
            // E.164 allows 15 digits; fewer than 7 with the country code is no subscriber's number.
            if (7..=15).contains(&digits) {
                DialledNumber::E164 { number: e164 }
            } else {
                unusable("not a phone number of 7 to 15 digits")
            }
        }
        Err(phonenumber::ParseError::InvalidCountryCode) => unusable("no such country code"),
        Err(_) => unusable("not a phone number libphonenumber can read"),
    }
}

/// The number to hand to a delivery plugin, or why there is none.
pub fn dial(written: &str) -> Result<String, String> {
    match dialled(written) {
        DialledNumber::E164 { number } | DialledNumber::AsWritten { number } => Ok(number),
        DialledNumber::Unusable { reason } => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(n: &str) -> DialledNumber {
        DialledNumber::E164 {
            number: n.to_owned(),
        }
    }

    #[test]
    fn numbers_as_written_are_dialled_in_e164() {
        for (written, expected) in [
            ("+49 (0) 170 123-45-67", e164("+491701234567")),
            ("+1 (555) 010-0000 ext. 42", e164("+15550100000")),
            ("+1 555 010 0000 x42", e164("+15550100000")),
            ("+41 79 100 00 01", e164("+41791000001")),
            ("+41 (0)79 100 00 01", e164("+41791000001")),
            ("0041 79 100 00 01", e164("+41791000001")),
            ("+44 (0) 20 7946 0958", e164("+442079460958")),
            (
                "079 123 45 67",
                DialledNumber::AsWritten {
                    number: "079 123 45 67".into(),
                },
            ),
        ] {
            assert_eq!(dialled(written), expected, "{written}");
        }
        for unusable in ["+999 123 456 789", "+41", "+41 12", "+ call me"] {
            assert!(
                matches!(dialled(unusable), DialledNumber::Unusable { .. }),
                "{unusable}: {:?}",
                dialled(unusable)
            );
        }
    }
}
