use twofold_plugin_sdk::template::json_escape;
use twofold_plugin_sdk::{config_or, http_request, outcome_of, phone, require_config, secret};
use twofold_plugin_sdk::{DeliveryPlugin, HttpRequest, Message, Outcome};

struct MyGateway;

impl DeliveryPlugin for MyGateway {
    fn deliver(message: Message) -> Outcome {
        match send(&message) {
            Ok(outcome) => outcome,
            // A config value or secret missing, a number that is no number: retrying will not help.
            Err(reason) => Outcome::Failed(reason),
        }
    }
}

fn send(message: &Message) -> Result<Outcome, String> {
    let number = phone::rewrite(&message.destination, &config_or("number_rewrite", ""))?;
    let text = format!(
        "Your code is {}. It is valid for {} minutes.",
        message.code,
        message.valid_seconds.div_ceil(60)
    );
    let body = format!(
        r#"{{"to": "{}", "text": "{}", "reference": "{}"}}"#,
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
        Ok(answer) => outcome_of(&answer),
        Err(error) => error.outcome(),
    })
}

twofold_plugin_sdk::export_plugin!(MyGateway);

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_plugin_sdk::mock::{message, MockHost};
    use twofold_plugin_sdk::HostErrorKind;

    fn gateway() -> MockHost {
        MockHost::new()
            .config("url", "https://sms.example.net/send")
            .config("number_rewrite", "0041=>+41; 00=>+; 0=>+41")
            .secret("token", "t0k")
            .allow_hosts(&["sms.example.net"])
    }

    #[test]
    fn sends_the_code_with_the_token() {
        let run = gateway()
            .answer(201, &[], r#"{"id": "m-1"}"#)
            .deliver::<MyGateway>(message("079 123 45 67", "482913"));
        assert!(matches!(run.outcome, Outcome::Delivered(_)), "{:?}", run.outcome);
        let sent = &run.requests[0];
        assert_eq!(sent.header("Authorization"), Some("Bearer t0k"));
        assert!(sent.text().contains(r#""to": "+41791234567""#), "{}", sent.text());
    }

    #[test]
    fn a_busy_gateway_is_retried_after_its_delay_and_a_refusal_fails() {
        let busy = gateway()
            .answer(429, &[("Retry-After", "2")], "")
            .deliver::<MyGateway>(message("+41 79 123 45 67", "1"));
        assert!(matches!(&busy.outcome, Outcome::RetryLater(r) if r.after_seconds == Some(2)));
        let refused = gateway()
            .answer(400, &[], r#"{"error": "unknown number"}"#)
            .deliver::<MyGateway>(message("+41 79 123 45 67", "1"));
        assert!(matches!(&refused.outcome, Outcome::Failed(r) if r.contains("unknown number")));
        let untrusted = gateway()
            .fail(HostErrorKind::Tls, "invalid peer certificate: UnknownIssuer")
            .deliver::<MyGateway>(message("+41 79 123 45 67", "1"));
        assert!(matches!(untrusted.outcome, Outcome::Failed(_)));
    }
}

#[cfg(test)]
mod readme_sync {
    /// Every Rust block of the README's walkthrough (steps 2 and 3) is in this file, word for word.
    #[test]
    fn this_file_is_the_readmes_walkthrough() {
        let readme = include_str!("../../../sdk/README.md");
        let walkthrough = &readme[..readme.find("## What a plugin receives").unwrap_or(readme.len())];
        let this = include_str!("lib.rs");
        let blocks: Vec<&str> = walkthrough
            .split("```rust\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert_eq!(blocks.len(), 2);
        for block in blocks {
            assert!(this.contains(block), "the README's block is not in lib.rs:\n{block}");
        }
    }
}
