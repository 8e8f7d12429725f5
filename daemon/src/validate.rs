//! Checks on what callers send, shared by the HTTPS API and the admin socket. Each failure is an
//! `InvalidRequest` naming the field, so the caller gets a 4xx saying what to fix.

use crate::error::{Error, Result};

/// Characters Active Directory refuses in sAMAccountName, plus ':' (the otpauth label separator).
const FORBIDDEN_IN_NAMES: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
];

fn no_control(field: &str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn length(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

pub fn username(value: &str) -> Result<()> {
    length("username", value, 256)?;
    no_control("username", value)?;
    if value
        .chars()
        .any(|c| FORBIDDEN_IN_NAMES.contains(&c) || c.is_whitespace())
    {
        return Err(Error::invalid(
            "username must not contain spaces or any of \" / \\ [ ] : ; | = , + * ? < >",
        ));
    }
    Ok(())
}

/// A name a user is looked up by (username or UPN) in a request.
pub fn lookup_name(value: &str) -> Result<()> {
    length("user", value, 256)?;
    no_control("user", value)
}

pub fn text(field: &str, value: &str, max: usize) -> Result<()> {
    length(field, value, max)?;
    no_control(field, value)
}

pub fn email(value: &str) -> Result<()> {
    text("email", value, 254)?;
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !value.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid("email must look like name@example.com")),
    }
}

/// Phone numbers as admins type them: digits, an optional leading +, spaces, dashes, dots and parentheses.
pub fn phone(field: &str, value: &str) -> Result<()> {
    text(field, value, 32)?;
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value.char_indices().all(|(i, c)| {
        c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')') || (c == '+' && i == 0)
    });
    if !allowed || !(3..=15).contains(&digits) {
        return Err(Error::invalid(format!(
            "{field} must be a phone number such as +41 44 123 45 67"
        )));
    }
    Ok(())
}

/// Codes as typed: short, printable. Their shape is checked where they are used.
pub fn code(value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 64 {
        return Err(Error::invalid("code must be 1 to 64 characters"));
    }
    no_control("code", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert!(username("alice").is_ok());
        assert!(username("jürgen.müller").is_ok());
        assert!(username("a\u{7}b").is_err());
        assert!(username("a:b").is_err());
        assert!(username("").is_err());
        assert!(username(&"x".repeat(257)).is_err());
        assert!(email("a@b.example").is_ok());
        assert!(email("nope").is_err());
        assert!(phone("mobile", "+41 (44) 123-45-67").is_ok());
        assert!(phone("mobile", "12+3").is_err());
        assert!(phone("mobile", "call me").is_err());
        assert!(code("123456").is_ok());
        assert!(code("12\n3456").is_err());
    }
}
