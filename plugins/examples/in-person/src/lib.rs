//! In-person handover: the code goes to the admin console's handover queue, where a helpdesk admin
//! reads it out to the person standing at the desk. `note` (config) is shown beside the code: what the
//! helpdesk must check first. Needs `handover = true` in the plugin's `[[plugin]]` table.

use twofold_plugin_sdk::{config_or, handover, log, DeliveryPlugin, Message, Outcome};

const DEFAULT_NOTE: &str = "Check the person's photo ID against the user's name before reading out the code.";

struct InPerson;

impl DeliveryPlugin for InPerson {
    fn deliver(message: Message) -> Outcome {
        match handover(&config_or("note", DEFAULT_NOTE)) {
            Ok(()) => {
                log::info(&format!("queued for handover to {}", message.user));
                Outcome::Delivered("in the handover queue".into())
            }
            Err(e) => Outcome::Failed(e),
        }
    }
}

twofold_plugin_sdk::export_plugin!(InPerson);

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_plugin_sdk::mock::{message, MockHost};

    #[test]
    fn the_code_is_queued_for_handover_only_when_granted() {
        let granted = MockHost::new().config("note", "Check the badge.").handover().deliver::<InPerson>(message("", "1"));
        assert!(matches!(granted.outcome, Outcome::Delivered(_)), "{:?}", granted.outcome);
        assert_eq!(granted.handover_note.as_deref(), Some("Check the badge."));
        assert_eq!(granted.log_text(), vec!["queued for handover to alice"]);
        let refused = MockHost::new().deliver::<InPerson>(message("", "1"));
        assert!(matches!(&refused.outcome, Outcome::Failed(r) if r.contains("handover = true")), "{:?}", refused.outcome);
        assert_eq!(refused.handover_note, None);
    }
}
