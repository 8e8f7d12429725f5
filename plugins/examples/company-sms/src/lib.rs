//! SMS through a company's own gateway, written from the SDK's README alone: a JSON request with a
//! bearer token, and a JSON answer read with serde (`{"message_id": "...", "status": "QUEUED"}`), whose
//! message id goes into the audit trail. Busy answers (429, 5xx) are retried after the gateway's
//! `Retry-After`; a refusal (400) fails with the gateway's reason.
//!
//! Config: `url` (required), `sender` (`Twofold`), `number_rewrite`. Secret: `token`.

use serde::Deserialize;
use twofold_plugin_sdk::template::json_escape;
use twofold_plugin_sdk::{config_or, http_request, outcome_of, phone, require_config, secret};
use twofold_plugin_sdk::{DeliveryPlugin, HttpRequest, Message, Outcome};

struct CompanySms;

impl DeliveryPlugin for CompanySms {
    fn deliver(message: Message) -> Outcome {
        match send(&message) {
            Ok(outcome) => outcome,
            Err(reason) => Outcome::Failed(reason),
        }
    }
}

/// The part of the gateway's answer the plugin reads.
#[derive(Deserialize)]
struct Sent {
    message_id: String,
    status: String,
}

fn send(message: &Message) -> Result<Outcome, String> {
    let number = phone::rewrite(&message.destination, &config_or("number_rewrite", ""))?;
    let text = format!(
        "Your code is {}. It is valid for {} minutes.",
        message.code,
        message.valid_seconds.div_ceil(60)
    );
    let body = format!(
        r#"{{"from": "{}", "to": "{}", "text": "{}", "reference": "{}"}}"#,
        json_escape(&config_or("sender", "Twofold")),
        json_escape(&number),
        json_escape(&text),
        json_escape(&message.transaction)
    );
    let request = HttpRequest {
        method: "POST".into(),
        url: require_config("url")?,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {}", secret("token")?)),
        ],
        body: body.into_bytes(),
    };
    Ok(match http_request(&request) {
        Ok(answer) if answer.is_success() => match serde_json::from_slice::<Sent>(&answer.body) {
            Ok(sent) if sent.status == "QUEUED" => Outcome::Delivered(format!("message {}", sent.message_id)),
            Ok(sent) => Outcome::Failed(format!("the gateway answered status {}", sent.status)),
            Err(e) => Outcome::Failed(format!("{}: not the answer expected ({e})", answer.reason())),
        },
        Ok(answer) => outcome_of(&answer),
        Err(error) => error.outcome(),
    })
}

twofold_plugin_sdk::export_plugin!(CompanySms);

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_plugin_sdk::mock::{message, MockHost};
    use twofold_plugin_sdk::HostErrorKind;

    fn gateway() -> MockHost {
        MockHost::new()
            .config("url", "https://sms.corp.example/v1/messages")
            .config("number_rewrite", "0041=>+41; 00=>+; 0=>+41")
            .secret("token", "t0k")
            .allow_hosts(&["sms.corp.example"])
    }

    #[test]
    fn sends_the_code_with_the_token_and_keeps_the_message_id() {
        let run = gateway()
            .answer(201, &[], r#"{"message_id": "m-77", "status": "QUEUED", "parts": 1}"#)
            .deliver::<CompanySms>(message("079 123 45 67", "482913"));
        assert!(matches!(&run.outcome, Outcome::Delivered(r) if r == "message m-77"), "{:?}", run.outcome);
        let sent = &run.requests[0];
        assert_eq!(sent.url, "https://sms.corp.example/v1/messages");
        assert_eq!(sent.header("Authorization"), Some("Bearer t0k"));
        let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap_or_default();
        assert_eq!(body["to"], "+41791234567");
        assert_eq!(body["text"], "Your code is 482913. It is valid for 5 minutes.");
        assert_eq!(body["reference"], "tx-0001");
    }

    #[test]
    fn answers_and_host_errors_as_a_table() {
        // (the gateway's answer or the host's error, what becomes of the delivery)
        let table: Vec<(MockHost, &str)> = vec![
            (gateway().answer(429, &[("Retry-After", "2")], ""), "retry after 2 s"),
            (gateway().answer(503, &[], ""), "retry"),
            (
                gateway().answer(400, &[], r#"{"error": "number not reachable"}"#),
                r#"failed: status 400 Bad Request: {"error": "number not reachable"}"#,
            ),
            (gateway().answer(200, &[], r#"{"message_id": "m-1", "status": "BLOCKED"}"#), "failed: the gateway answered status BLOCKED"),
            (gateway().answer(200, &[], "<html>"), "failed: status 200 OK: <html>: not the answer expected (expected value at line 1 column 1)"),
            (gateway().fail(HostErrorKind::ConnectionRefused, "Connection refused"), "retry"),
            (gateway().fail(HostErrorKind::Timeout, "no answer within 10 s"), "retry"),
            (gateway().fail(HostErrorKind::Tls, "invalid peer certificate: UnknownIssuer"), "failed: TLS failed: invalid peer certificate: UnknownIssuer"),
            (
                gateway().config("url", "https://sms.elsewhere.example/v1/messages"),
                "failed: not allowed: host sms.elsewhere.example:443 is not in this plugin's allow_hosts",
            ),
            (MockHost::new().config("url", "https://sms.corp.example/"), "failed: secret token is not granted to this plugin ([plugin.secrets])"),
        ];
        for (host, expected) in table {
            let run = host.deliver::<CompanySms>(message("+41 79 123 45 67", "1"));
            let got = match &run.outcome {
                Outcome::Delivered(r) => format!("delivered: {r}"),
                Outcome::RetryLater(r) => match r.after_seconds {
                    Some(s) => format!("retry after {s} s"),
                    None => "retry".to_owned(),
                },
                Outcome::Failed(reason) => format!("failed: {reason}"),
            };
            assert_eq!(got, expected);
        }
    }
}
