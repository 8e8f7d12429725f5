//! An HTTP gateway driven entirely by the plugin's configuration: what SMS gateways and telephony APIs
//! have in common. A plugin builds the values its templates may name and calls [`Gateway::send`].
//!
//! Config keys (`[plugin.config]`):
//! - `url` (required), `method` (`POST`), `content_type` (`application/json`)
//! - `headers`: one `Name: value` per line; values are templates (`Authorization: Bearer {secret:token}`)
//! - `body`: a template (each plugin has a default)
//! - `success_status` (`200-299`), `retry_status` (`408,425,429,500-599`): status ranges; a retry
//!   status is retried after the gateway's `Retry-After` (or the daemon's backoff), any other status
//!   fails the delivery with the gateway's reason. A host error fails at once when retrying cannot help
//!   (not in `allow_hosts`, an untrusted certificate) and is retried otherwise (`HostError::outcome`).
//! - `success_body_contains`: when set, a success status also needs this text in the answer
//! - `number_rewrite`: prefix rules for the destination number (see `phone::rewrite`)
//!
//! Template names: `number` (rewritten), `number_raw`, `code`, `user`, `display_name`, `minutes`,
//! `seconds`, `transaction`, `locale`, `language`, `secret:NAME`, `config:NAME`, and what the plugin adds.

use crate::template::render;
use crate::{config, config_or, http_request, phone, require_config, secret, HttpRequest, Message, Outcome};

pub struct Gateway {
    url: String,
    method: String,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
    success: Vec<(u16, u16)>,
    retry: Vec<(u16, u16)>,
    success_body_contains: Option<String>,
}

impl Gateway {
    /// Reads the gateway's settings from the plugin's config; `default_body` when `body` is not set.
    pub fn from_config(default_body: &str) -> Result<Gateway, String> {
        let headers = config_or("headers", "")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("header line {l:?} is not `Name: value`"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Gateway {
            url: require_config("url")?,
            method: config_or("method", "POST").to_uppercase(),
            content_type: config_or("content_type", "application/json"),
            headers,
            body: config_or("body", default_body),
            success: status_ranges(&config_or("success_status", "200-299"))?,
            retry: status_ranges(&config_or("retry_status", "408,425,429,500-599"))?,
            success_body_contains: config("success_body_contains"),
        })
    }

    /// Sends one request built from the templates and classifies the answer.
    pub fn send(&self, values: &dyn Fn(&str) -> Option<String>) -> Outcome {
        let request = match self.request(values) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e),
        };
        match http_request(&request) {
            // Not allowed, or an untrusted certificate: fails at once; refused or timed out: retried.
            Err(e) => e.outcome(),
            Ok(answer) => {
                if in_ranges(answer.status, &self.success) {
                    match &self.success_body_contains {
                        Some(wanted) if !answer.text().contains(wanted.as_str()) => {
                            Outcome::Failed(format!("{} (without {wanted:?} in the answer)", answer.reason()))
                        }
                        _ => Outcome::Delivered(answer.reason()),
                    }
                } else if in_ranges(answer.status, &self.retry) {
                    Outcome::RetryLater(answer.retry())
                } else {
                    Outcome::Failed(answer.reason())
                }
            }
        }
    }

    fn request(&self, values: &dyn Fn(&str) -> Option<String>) -> Result<HttpRequest, String> {
        let mut headers = vec![("content-type".to_owned(), self.content_type.clone())];
        for (name, value) in &self.headers {
            headers.push((name.clone(), render(value, values)?));
        }
        Ok(HttpRequest {
            method: self.method.clone(),
            url: render(&self.url, values)?,
            headers,
            body: render(&self.body, values)?.into_bytes(),
        })
    }
}

/// The values every template may name, for `message`; `extra` adds or overrides names.
pub fn values<'a>(message: &'a Message, extra: &'a [(&'a str, String)]) -> Result<impl Fn(&str) -> Option<String> + 'a, String> {
    let number = phone::rewrite(&message.destination, &config_or("number_rewrite", ""))?;
    Ok(move |name: &str| -> Option<String> {
        if let Some((_, v)) = extra.iter().find(|(n, _)| *n == name) {
            return Some(v.clone());
        }
        if let Some(key) = name.strip_prefix("secret:") {
            return secret(key).ok();
        }
        if let Some(key) = name.strip_prefix("config:") {
            return config(key);
        }
        Some(match name {
            "number" => number.clone(),
            "number_raw" => message.destination.clone(),
            "code" => message.code.clone(),
            "user" => message.user.clone(),
            "display_name" => message.display_name.clone().unwrap_or_else(|| message.user.clone()),
            "minutes" => message.valid_seconds.div_ceil(60).to_string(),
            "seconds" => message.valid_seconds.to_string(),
            "transaction" => message.transaction.clone(),
            "locale" => message.locale.clone(),
            "language" => message.locale.split(['-', '_']).next().unwrap_or("en").to_owned(),
            _ => return None,
        })
    })
}

/// `200-299,202` into ranges.
pub fn status_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            match (lo.trim().parse(), hi.trim().parse()) {
                (Ok(lo), Ok(hi)) if lo <= hi => Ok((lo, hi)),
                _ => Err(format!("status range {part:?} is not N or N-M")),
            }
        })
        .collect()
}

fn in_ranges(status: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_and_match() {
        let r = status_ranges("200-299, 302").unwrap_or_default();
        assert!(in_ranges(204, &r) && in_ranges(302, &r) && !in_ranges(301, &r));
        assert!(status_ranges("300-200").is_err());
        assert!(status_ranges("ok").is_err());
    }
}
