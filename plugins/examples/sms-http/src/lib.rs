//! SMS through an HTTP gateway: every site's gateway differs, so URL, method, headers, body, number
//! format and what counts as success all come from the `[plugin.config]` table (see `gateway`).
//! Besides the usual template names, `{text}` is the SMS text, itself the template `message`.

use twofold_plugin_sdk::gateway::{values, Gateway};
use twofold_plugin_sdk::template::render;
use twofold_plugin_sdk::{config_or, DeliveryPlugin, Message, Outcome};

const DEFAULT_TEXT: &str = "Your code is {code}. It is valid for {minutes} minutes.";
const DEFAULT_BODY: &str = r#"{{"to": "{number|json}", "text": "{text|json}", "reference": "{transaction|json}"}}"#;

struct SmsHttp;

impl DeliveryPlugin for SmsHttp {
    fn deliver(message: Message) -> Outcome {
        match send(&message) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        }
    }
}

fn send(message: &Message) -> Result<Outcome, String> {
    let gateway = Gateway::from_config(DEFAULT_BODY)?;
    let base = values(message, &[])?;
    let text = render(&config_or("message", DEFAULT_TEXT), &base)?;
    let extra = [("text", text)];
    let outcome = gateway.send(&values(message, &extra)?);
    Ok(outcome)
}

twofold_plugin_sdk::export_plugin!(SmsHttp);

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_plugin_sdk::mock::{message, MockHost};
    use twofold_plugin_sdk::HostErrorKind;

    fn gateway() -> MockHost {
        MockHost::new()
            .config("url", "https://sms.example.net/send?ref={transaction|url}")
            .config("headers", "Authorization: Bearer {secret:token}")
            .config("number_rewrite", "0041=>+41; 00=>+; 0=>+41")
            .secret("token", "tok-1")
            .allow_hosts(&["sms.example.net"])
    }

    #[test]
    fn the_request_is_built_from_the_config() {
        let run = gateway().answer(200, &[], r#"{"id": "m-1"}"#).deliver::<SmsHttp>(message("079 123 45 67", "482913"));
        assert!(matches!(&run.outcome, Outcome::Delivered(r) if r.contains("m-1")), "{:?}", run.outcome);
        let sent = &run.requests[0];
        assert_eq!(sent.url, "https://sms.example.net/send?ref=tx-0001");
        assert_eq!(sent.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(
            sent.text(),
            r#"{"to": "+41791234567", "text": "Your code is 482913. It is valid for 5 minutes.", "reference": "tx-0001"}"#
        );
    }

    #[test]
    fn answers_and_host_errors_as_a_table() {
        // (the gateway's answer or the host's error, what becomes of the delivery)
        let table: [(MockHost, &str); 7] = [
            (gateway().answer(201, &[], "{}"), "delivered"),
            (gateway().answer(429, &[("Retry-After", "2")], ""), "retry after 2"),
            (gateway().answer(503, &[], ""), "retry"),
            (gateway().answer(400, &[], r#"{"error": "bad number"}"#), "failed: status 400 Bad Request: {\"error\": \"bad number\"}"),
            (gateway().fail(HostErrorKind::ConnectionRefused, "Connection refused"), "retry"),
            (gateway().fail(HostErrorKind::Tls, "UnknownIssuer"), "failed: TLS failed: UnknownIssuer"),
            (gateway().config("url", "https://other.example/send"), "failed: not allowed: host other.example:443 is not in this plugin's allow_hosts"),
        ];
        for (host, expected) in table {
            let run = host.deliver::<SmsHttp>(message("+41 79 123 45 67", "1"));
            let got = match &run.outcome {
                Outcome::Delivered(_) => "delivered".to_owned(),
                Outcome::RetryLater(r) => match r.after_seconds {
                    Some(s) => format!("retry after {s}"),
                    None => "retry".to_owned(),
                },
                Outcome::Failed(reason) => format!("failed: {reason}"),
            };
            assert_eq!(got, expected);
        }
    }
}
