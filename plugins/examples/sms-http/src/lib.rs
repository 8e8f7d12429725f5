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
