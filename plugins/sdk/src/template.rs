//! Text templates for URLs, headers and bodies: `{name}` is replaced by a value, `{name|json}` by the
//! value escaped for the inside of a JSON string, `{name|url}` by the value percent-encoded for a URL or
//! a form body. `{{` and `}}` are literal braces. An unknown name is an error, never an empty string,
//! so a typo in the configuration fails the delivery with a message instead of sending a blank code.

/// Fills `template` with the values `lookup` gives for each name.
pub fn render(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!("template has a '}}' without its '{{': {template:?}"));
        }
        let end = tail.find('}').ok_or_else(|| format!("template has a '{{' without its '}}': {template:?}"))?;
        let placeholder = &tail[1..end];
        let (name, filter) = match placeholder.split_once('|') {
            Some((name, filter)) => (name.trim(), Some(filter.trim())),
            None => (placeholder.trim(), None),
        };
        let value = lookup(name).ok_or_else(|| format!("template names {{{name}}}, which has no value"))?;
        match filter {
            None => out.push_str(&value),
            Some("json") => out.push_str(&json_escape(&value)),
            Some("url") => out.push_str(&url_encode(&value)),
            Some(other) => return Err(format!("unknown template filter |{other} (known: json, url)")),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The inside of a JSON string literal.
pub fn json_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Option<String> {
        match name {
            "number" => Some("+41 79".into()),
            "text" => Some("say \"hi\"\n".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_filters_and_errors() {
        assert_eq!(render("to={number|url}&x={{y}}", &values).as_deref(), Ok("to=%2B41%2079&x={y}"));
        assert_eq!(render("{{\"t\":\"{text|json}\"}}", &values).as_deref(), Ok("{\"t\":\"say \\\"hi\\\"\\n\"}"));
        assert!(render("{nope}", &values).unwrap_err().contains("{nope}"));
        assert!(render("{number|base64}", &values).unwrap_err().contains("base64"));
        assert!(render("{number", &values).is_err());
    }
}
