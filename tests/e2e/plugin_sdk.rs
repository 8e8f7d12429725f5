//! A plugin written from the SDK's README alone (`plugins/examples/company-sms`), in the real daemon,
//! against a loopback stand-in for a company's gateway: what the README promises about a gateway's
//! answers and the host's errors holds end to end.
//!
//! - 201: delivered, the gateway's message id in the audit trail.
//! - 429 with `Retry-After: 2`: retried after the gateway's 2 s, not after `retry_initial_seconds`
//!   (30 s here, so that the difference shows).
//! - 400: failed, with the gateway's reason in `twofold-admin deliveries`.
//! - A host not in `allow_hosts` and an untrusted certificate fail at once (never retried); a refused
//!   connection is retried.

use std::time::Duration;

use anyhow::{Context, Result};
use twofold_tests::delivery::{plugins_dir, Answer, Gateway, TestCa};
use twofold_tests::Daemon;
use twofold_wire::admin::{AdminRequest, NewUser};
use twofold_wire::delivery::{DeliveryInfo, DeliveryState};

use crate::delivery::{challenge, client, settled, WAIT};

fn attempts(d: &DeliveryInfo) -> Vec<(&str, &str)> {
    d.attempts
        .iter()
        .map(|a| (a.via.as_str(), a.outcome.as_str()))
        .collect()
}

fn detail<'a>(d: &'a DeliveryInfo, via: &str, outcome: &str) -> &'a str {
    d.attempts
        .iter()
        .find(|a| a.via == via && a.outcome == outcome)
        .map_or("", |a| a.detail.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_from_the_readme_retries_after_retry_after_and_fails_on_400_with_the_reason(
) -> Result<()> {
    let dir = twofold_tests::TempDir::new("plugin-sdk")?;
    let ca = TestCa::create(dir.path())?;
    let gateway = Gateway::start(Some(&ca)).await?;
    // A gateway whose certificate comes from a CA the plugin does not trust.
    let other_dir = dir.path().join("other-ca");
    std::fs::create_dir_all(&other_dir)?;
    let other_ca = TestCa::create(&other_dir)?;
    let untrusted = Gateway::start(Some(&other_ca)).await?;
    // Nothing listens here.
    let down_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let token = dir.path().join("token");
    std::fs::write(&token, "corp-token\n")?;
    let plugin = |name: &str, allowed: u16, port: u16| {
        format!(
            "\n[[plugin]]\nname = \"{name}\"\nfile = \"company_sms.wasm\"\nallow_hosts = [\"127.0.0.1:{allowed}\"]\nca_file = \"{}\"\n[plugin.config]\nurl = \"https://127.0.0.1:{port}/v1/messages\"\nnumber_rewrite = \"0041=>+41; 00=>+; 0=>+41\"\n[plugin.secrets]\ntoken = \"{}\"\n",
            ca.ca_file.display(),
            token.display()
        )
    };
    let g = gateway.addr.port();
    let config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nsms = [\"outside\", \"untrusted\", \"company\"]\nvoice = [\"down\"]\nretry_initial_seconds = 30\nretry_max_seconds = 60\nmax_attempts = 3\n{}{}{}{}",
        plugins_dir()?.display(),
        // allow_hosts lists the company gateway, the URL names another port.
        plugin("outside", g, untrusted.addr.port()),
        plugin("untrusted", untrusted.addr.port(), untrusted.addr.port()),
        plugin("company", g, g),
        plugin("down", down_port, down_port),
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "gina".into(),
        mobile: Some("079 555 01 02".into()),
        voice: Some("079 555 01 03".into()),
        ..NewUser::default()
    }))?;
    gateway.script_answers(&[
        Answer::new(201, &[], r#"{"message_id": "corp-1", "status": "QUEUED"}"#),
        Answer::new(429, &[("Retry-After", "2")], r#"{"error": "slow down"}"#),
        Answer::new(201, &[], r#"{"message_id": "corp-2", "status": "QUEUED"}"#),
        Answer::new(400, &[], r#"{"error": "number not reachable"}"#),
    ]);
    let tx = |c: &serde_json::Value| c["transaction_id"].as_str().unwrap_or_default().to_owned();

    // 201. The host outside allow_hosts and the untrusted certificate failed first, at once.
    let first = settled(
        &mut admin,
        &tx(&challenge(&api, "gina", "sms").await?),
        WAIT,
    )
    .await?;
    assert_eq!(
        attempts(&first),
        vec![
            ("outside", "failed"),
            ("untrusted", "failed"),
            ("company", "delivered")
        ],
        "{first:?}"
    );
    let outside = detail(&first, "outside", "failed");
    assert!(
        outside.starts_with("not allowed: host 127.0.0.1:")
            && outside.contains("is not in this plugin's allow_hosts"),
        "{outside}"
    );
    let tls = detail(&first, "untrusted", "failed");
    assert!(
        tls.starts_with("TLS failed: ") && tls.contains("invalid peer certificate"),
        "{tls}"
    );
    assert_eq!(detail(&first, "company", "delivered"), "message corp-1");
    assert!(untrusted.received().is_empty());
    let sent = gateway.wait_for(1, WAIT).await?.remove(0);
    assert_eq!(sent.header("authorization"), Some("Bearer corp-token"));
    let body: serde_json::Value = serde_json::from_str(&sent.body)?;
    assert_eq!(body["to"], "+41795550102");

    // 429 with Retry-After: 2. Retried after the gateway's 2 s, not the configured 30 s; the plugins
    // that failed are not tried again.
    let busy = settled(
        &mut admin,
        &tx(&challenge(&api, "gina", "sms").await?),
        WAIT,
    )
    .await?;
    assert_eq!(
        attempts(&busy),
        vec![
            ("outside", "failed"),
            ("untrusted", "failed"),
            ("company", "retry_later"),
            ("company", "delivered")
        ],
        "{busy:?}"
    );
    assert_eq!(
        detail(&busy, "company", "retry_later"),
        r#"status 429 Too Many Requests: {"error": "slow down"}; the gateway asked to retry after 2 s"#
    );
    let received = gateway.wait_for(3, WAIT).await?;
    let gap = received[2].at.duration_since(received[1].at);
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(10),
        "the retry came {gap:?} after the 429"
    );

    // 400: failed for good, with the gateway's reason, also in the CLI's text.
    let refused = settled(
        &mut admin,
        &tx(&challenge(&api, "gina", "sms").await?),
        WAIT,
    )
    .await?;
    assert_eq!(refused.state, DeliveryState::Failed, "{refused:?}");
    assert_eq!(
        attempts(&refused),
        vec![
            ("outside", "failed"),
            ("untrusted", "failed"),
            ("company", "failed")
        ],
        "{refused:?}"
    );
    let reason = r#"status 400 Bad Request: {"error": "number not reachable"}"#;
    assert_eq!(detail(&refused, "company", "failed"), reason);
    let cli = daemon.admin_cli(&["deliveries", "--user", "gina", "--limit", "1"])?;
    let text = String::from_utf8(cli.stdout)?;
    assert!(
        cli.status.success()
            && text
                .lines()
                .any(|l| l.contains("company failed (") && l.ends_with(&format!("ms): {reason}"))),
        "{text}"
    );
    assert_eq!(gateway.received().len(), 4);
    // In text, a delivery with several attempts lists each: the 429 before the delivery shows.
    let all = daemon.admin_cli(&["deliveries", "--user", "gina"])?;
    let text = String::from_utf8(all.stdout)?;
    assert!(
        text.lines().any(|l| l.starts_with("    ")
            && l.contains("company retry_later (")
            && l.contains("ms): status 429 Too Many Requests")
            && l.contains("retry after 2 s")),
        "{text}"
    );

    // A refused connection: retried later (after the backoff), not failed.
    let c = challenge(&api, "gina", "voice").await?;
    let deadline = std::time::Instant::now() + WAIT;
    let retrying = loop {
        let d = crate::delivery::deliveries(&mut admin, Some("gina"))?
            .into_iter()
            .find(|d| d.transaction_id == tx(&c))
            .context("listed")?;
        if d.state == DeliveryState::Retrying || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(retrying.state, DeliveryState::Retrying, "{retrying:?}");
    assert_eq!(attempts(&retrying), vec![("down", "retry_later")]);
    let down = detail(&retrying, "down", "retry_later");
    assert!(down.starts_with("connection refused: "), "{down}");
    Ok(())
}
