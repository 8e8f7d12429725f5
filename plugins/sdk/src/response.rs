//! Reading a gateway's answer, and what becomes of the delivery.
//!
//! The rule most HTTP gateways follow, as [`outcome_of`] and [`HostError::outcome`] apply it:
//!
//! | what happened | outcome |
//! |---|---|
//! | 2xx | `Delivered`, the answer as the reference |
//! | 408, 425, 429, 5xx | `RetryLater`, after the gateway's `Retry-After` when it sent one |
//! | any other status (400, 401, 403, 404, 3xx: redirects are not followed) | `Failed`, with the gateway's reason |
//! | host not in `allow_hosts`, a refused request, a TLS/certificate failure | `Failed` at once: retrying cannot help |
//! | connection refused, timeout, name not resolved, connection broken | `RetryLater` (the daemon's backoff) |

use crate::{HostError, HostErrorKind, HttpRequest, HttpResponse, Outcome, Retry};

/// How much of an answer's body a reason quotes.
const SNIPPET_CHARS: usize = 200;

impl HttpResponse {
    /// The first header of that name, compared without regard to case (`retry-after` finds
    /// `Retry-After`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `status 400 Bad Request: {"error": "unknown number"}`: the status, its name and the start of the
    /// body on one line, for an admin reading `twofold-admin deliveries`.
    pub fn reason(&self) -> String {
        let body = self.text();
        let snippet: String = body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(SNIPPET_CHARS)
            .collect();
        let name = status_name(self.status);
        match (name.is_empty(), snippet.is_empty()) {
            (true, true) => format!("status {}", self.status),
            (true, false) => format!("status {}: {snippet}", self.status),
            (false, true) => format!("status {} {name}", self.status),
            (false, false) => format!("status {} {name}: {snippet}", self.status),
        }
    }

    /// The delay a `Retry-After: 3` header asks for, in seconds. The HTTP-date form is read against
    /// the answer's own `Date` header (a plugin has no clock); without one it gives `None`.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u32>() {
            return Some(seconds);
        }
        let at = http_date(value)?;
        let now = http_date(self.header("date")?.trim())?;
        u32::try_from(at.saturating_sub(now).max(0)).ok()
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 408, 425, 429 and 5xx: the gateway may well take the message later.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, 408 | 425 | 429 | 500..=599)
    }
}

impl HttpRequest {
    /// The first header of that name, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What becomes of a delivery given the gateway's answer: 2xx delivered; 408, 425, 429 and 5xx retried
/// after the gateway's `Retry-After` (or the daemon's backoff); anything else failed with the gateway's
/// reason.
pub fn outcome_of(response: &HttpResponse) -> Outcome {
    if response.is_success() {
        Outcome::Delivered(response.reason())
    } else if response.is_transient() {
        Outcome::RetryLater(response.retry())
    } else if (300..400).contains(&response.status) {
        Outcome::Failed(format!(
            "{} (redirects are not followed: configure the URL it points to: {})",
            response.reason(),
            response.header("location").unwrap_or("no Location header")
        ))
    } else {
        Outcome::Failed(response.reason())
    }
}

impl HttpResponse {
    /// A retry after the gateway's `Retry-After`, with the answer as the reason.
    pub fn retry(&self) -> Retry {
        let after_seconds = self.retry_after_seconds();
        let reason = match after_seconds {
            Some(s) => format!("{}; the gateway asked to retry after {s} s", self.reason()),
            None => self.reason(),
        };
        Retry {
            reason,
            after_seconds,
        }
    }
}

impl HostError {
    /// `connection refused: ...`, `TLS failed: invalid peer certificate: UnknownIssuer`: the kind and
    /// the daemon's message, for an admin reading `twofold-admin deliveries`.
    pub fn reason(&self) -> String {
        let kind = match self.kind {
            HostErrorKind::NotAllowed => "not allowed",
            HostErrorKind::Invalid => "invalid request",
            HostErrorKind::Dns => "name not resolved",
            HostErrorKind::ConnectionRefused => "connection refused",
            HostErrorKind::Timeout => "timed out",
            HostErrorKind::Tls => "TLS failed",
            HostErrorKind::Other => "request failed",
        };
        format!("{kind}: {}", self.message)
    }

    /// True when retrying cannot help: the host is not allow-listed, the request breaks a limit, or the
    /// gateway's certificate is not trusted.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            HostErrorKind::NotAllowed | HostErrorKind::Invalid | HostErrorKind::Tls
        )
    }

    /// `Failed` at once when retrying cannot help (see [`HostError::is_permanent`]), else `RetryLater`
    /// after the daemon's backoff.
    pub fn outcome(&self) -> Outcome {
        if self.is_permanent() {
            Outcome::Failed(self.reason())
        } else {
            Outcome::RetryLater(Retry {
                reason: self.reason(),
                after_seconds: None,
            })
        }
    }
}

fn status_name(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        425 => "Too Early",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 says
/// senders use.
fn http_date(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn kind(outcome: &Outcome) -> (&'static str, Option<u32>) {
        match outcome {
            Outcome::Delivered(_) => ("delivered", None),
            Outcome::RetryLater(r) => ("retry", r.after_seconds),
            Outcome::Failed(_) => ("failed", None),
        }
    }

    #[test]
    fn statuses_as_a_table() {
        // (status, Retry-After, what becomes of the delivery)
        let table = [
            (200, None, ("delivered", None)),
            (201, None, ("delivered", None)),
            (204, None, ("delivered", None)),
            (301, None, ("failed", None)),
            (400, None, ("failed", None)),
            (401, None, ("failed", None)),
            (404, Some("5"), ("failed", None)),
            (408, None, ("retry", None)),
            (425, None, ("retry", None)),
            (429, Some("2"), ("retry", Some(2))),
            (429, Some(" 17 "), ("retry", Some(17))),
            (429, Some("soon"), ("retry", None)),
            (429, None, ("retry", None)),
            (500, None, ("retry", None)),
            (503, Some("120"), ("retry", Some(120))),
            (599, None, ("retry", None)),
        ];
        for (status, retry_after, expected) in table {
            let headers: Vec<(&str, &str)> = retry_after.map(|v| ("Retry-After", v)).into_iter().collect();
            let outcome = outcome_of(&answer(status, &headers, "{}"));
            assert_eq!(kind(&outcome), expected, "{status} {retry_after:?}");
        }
    }

    #[test]
    fn the_gateways_reason_is_kept_on_one_line() {
        let refused = answer(400, &[], "{\"error\":\n  \"number not reachable\"}");
        match outcome_of(&refused) {
            Outcome::Failed(reason) => {
                assert_eq!(reason, "status 400 Bad Request: {\"error\": \"number not reachable\"}")
            }
            other => panic!("{other:?}"),
        }
        let long = answer(418, &[], &"x".repeat(1000));
        assert_eq!(long.reason(), format!("status 418: {}", "x".repeat(200)));
        let busy = answer(429, &[("retry-after", "3")], "");
        match outcome_of(&busy) {
            Outcome::RetryLater(r) => {
                assert_eq!(r.reason, "status 429 Too Many Requests; the gateway asked to retry after 3 s")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let a = answer(200, &[("Content-Type", "application/json"), ("X-Id", "1"), ("x-id", "2")], "");
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(a.header("X-ID"), Some("1"));
        assert_eq!(a.header("retry-after"), None);
    }

    #[test]
    fn retry_after_as_a_date_is_read_against_the_answers_date() {
        let a = answer(
            503,
            &[("Date", "Sun, 06 Dec 2026 02:00:00 GMT"), ("Retry-After", "Sun, 06 Dec 2026 02:01:30 GMT")],
            "",
        );
        assert_eq!(a.retry_after_seconds(), Some(90));
        let past = answer(503, &[("Date", "Sun, 06 Dec 2026 02:00:00 GMT"), ("Retry-After", "Sat, 05 Dec 2026 02:00:00 GMT")], "");
        assert_eq!(past.retry_after_seconds(), Some(0));
        let no_date = answer(503, &[("Retry-After", "Sun, 06 Dec 2026 02:01:30 GMT")], "");
        assert_eq!(no_date.retry_after_seconds(), None);
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn host_errors_as_a_table() {
        // (kind, fails at once)
        let table = [
            (HostErrorKind::NotAllowed, true),
            (HostErrorKind::Invalid, true),
            (HostErrorKind::Tls, true),
            (HostErrorKind::Dns, false),
            (HostErrorKind::ConnectionRefused, false),
            (HostErrorKind::Timeout, false),
            (HostErrorKind::Other, false),
        ];
        for (kind, fails) in table {
            let e = HostError { kind, message: "m".into() };
            match e.outcome() {
                Outcome::Failed(reason) => assert!(fails, "{kind:?} failed: {reason}"),
                Outcome::RetryLater(r) => assert!(!fails && r.after_seconds.is_none(), "{kind:?} retried"),
                Outcome::Delivered(_) => panic!("{kind:?} delivered"),
            }
        }
    }
}
