//! Phone numbers as gateways want them.
//!
//! Numbers arrive as people typed them into the directory: `+41 44 123 45 67`, `0041 44 ...`,
//! `079 123 45 67`, `(044) 123-45-67`. [`normalise`] keeps the digits and a leading `+`; [`rewrite`] then
//! applies the first matching prefix rule of a list such as `0041=>+41; 00=>+; 0=>+41`, which turns
//! international and national forms into E.164. A gateway that wants no `+` adds a last step, `+=>`.

/// Digits only, with the leading `+` kept.
pub fn normalise(number: &str) -> String {
    let trimmed = number.trim();
    let mut out = String::with_capacity(trimmed.len());
    if trimmed.starts_with('+') {
        out.push('+');
    }
    out.extend(trimmed.chars().filter(char::is_ascii_digit));
    out
}

/// Normalises `number`, then applies the rules: `;`-separated `PREFIX=>REPLACEMENT` pairs, tried in
/// order, the first whose prefix matches wins. A rule starting with `+=>` is applied after that, to
/// strip (or change) the `+`.
pub fn rewrite(number: &str, rules: &str) -> Result<String, String> {
    let mut out = normalise(number);
    let mut plus_rule = None;
    let mut rewritten = false;
    for rule in rules.split(';').map(str::trim).filter(|r| !r.is_empty()) {
        let (from, to) = rule
            .split_once("=>")
            .ok_or_else(|| format!("number rewrite rule {rule:?} is not PREFIX=>REPLACEMENT"))?;
        let (from, to) = (from.trim(), to.trim());
        if from == "+" {
            plus_rule = Some(to.to_owned());
            continue;
        }
        if !rewritten && !from.is_empty() && out.starts_with(from) {
            out = format!("{to}{}", &out[from.len()..]);
            rewritten = true;
        }
    }
    if let (Some(to), Some(rest)) = (plus_rule, out.strip_prefix('+')) {
        out = format!("{to}{rest}");
    }
    if out.trim_start_matches('+').len() < 3 {
        return Err(format!("{number:?} is not a phone number"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_as_a_table() {
        let swiss = "0041=>+41; 00=>+; 0=>+41";
        // (as stored, rules, as sent)
        let table = [
            ("+41 44 123 45 67", swiss, "+41441234567"),
            ("0041 44 123 45 67", swiss, "+41441234567"),
            ("0049 30 1234567", swiss, "+49301234567"),
            ("079 123 45 67", swiss, "+41791234567"),
            ("(044) 123-45-67", swiss, "+41441234567"),
            ("+41 79 123 45 67", "0=>+41; +=>", "41791234567"),
            ("079 123 45 67", "0=>0041; +=>00", "0041791234567"),
            ("+1 (555) 010-9999", "", "+15550109999"),
        ];
        for (stored, rules, sent) in table {
            assert_eq!(rewrite(stored, rules).as_deref(), Ok(sent), "{stored} with {rules}");
        }
        assert!(rewrite("12", "").is_err());
        assert!(rewrite("0791234567", "0->+41").is_err());
    }
}
