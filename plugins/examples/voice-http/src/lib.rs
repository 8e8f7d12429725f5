//! "Call me": an HTTP telephony API calls the user's number and reads the code aloud. The request is
//! configured like the SMS gateway's (see `gateway`); `{speech}` is the text to read, the template
//! `speech`, in which `{digits}` is the code spelled digit by digit ("4, 7, 1, ...") so that
//! text-to-speech does not read "471 093" as a number.

use twofold_plugin_sdk::gateway::{values, Gateway};
use twofold_plugin_sdk::template::render;
use twofold_plugin_sdk::{config_or, DeliveryPlugin, Message, Outcome};

const DEFAULT_SPEECH: &str = "Your code is: {digits}. Once more: {digits}.";
const DEFAULT_BODY: &str = r#"{{"to": "{number|json}", "say": "{speech|json}", "language": "{language|json}", "reference": "{transaction|json}"}}"#;

struct VoiceHttp;

impl DeliveryPlugin for VoiceHttp {
    fn deliver(message: Message) -> Outcome {
        match call(&message) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        }
    }
}

fn call(message: &Message) -> Result<Outcome, String> {
    let gateway = Gateway::from_config(DEFAULT_BODY)?;
    let digits = message.code.chars().map(String::from).collect::<Vec<_>>().join(", ");
    let with_digits = [("digits", digits)];
    let speech = render(&config_or("speech", DEFAULT_SPEECH), &values(message, &with_digits)?)?;
    let extra = [("speech", speech)];
    let outcome = gateway.send(&values(message, &extra)?);
    Ok(outcome)
}

twofold_plugin_sdk::export_plugin!(VoiceHttp);
