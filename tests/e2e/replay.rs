//! An accepted code is never accepted twice: not right after, not after an older step, not after
//! `kill -9` and a restart of the real daemon.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};

use crate::step_margin;

#[tokio::test]
async fn a_used_step_is_refused_and_older_steps_with_it() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(10).await;
    let erin = enroll(&mut admin, &api, "erin").await?;
    let now = oathtool(&erin.secret, 0, &[])?;
    let first = api
        .post("/api/v1/verify", &json!({"user": "erin", "code": now}))
        .await?;
    assert_eq!(first.body["result"], "accept", "{}", first.raw);
    let again = api
        .post("/api/v1/verify", &json!({"user": "erin", "code": now}))
        .await?;
    assert_eq!(again.body["result"], "reject");
    assert_eq!(again.body["reason"], "replayed", "{}", again.raw);
    // The enrollment used step T-1; T is used now: T-1 is refused as a replay too.
    let previous = oathtool(&erin.secret, -30, &[])?;
    let older = api
        .post("/api/v1/verify", &json!({"user": "erin", "code": previous}))
        .await?;
    assert_eq!(older.body["reason"], "replayed", "{}", older.raw);
    Ok(())
}

#[tokio::test]
async fn concurrent_submissions_of_one_code_accept_exactly_once() -> Result<()> {
    let daemon = Daemon::start("[lockout.user]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(10).await;
    let fay = enroll(&mut admin, &api, "fay").await?;
    let code = oathtool(&fay.secret, 0, &[])?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let api = api.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            api.post("/api/v1/verify", &json!({"user": "fay", "code": code}))
                .await
        }));
    }
    let mut accepted = 0;
    let mut replayed = 0;
    for task in tasks {
        let answer = task.await??;
        match answer.body["result"].as_str() {
            Some("accept") => accepted += 1,
            _ if answer.body["reason"] == "replayed" => replayed += 1,
            _ => panic!("unexpected answer {}", answer.raw),
        }
    }
    assert_eq!((accepted, replayed), (1, 15));
    Ok(())
}

#[tokio::test]
async fn replay_is_refused_after_kill_9_and_restart() -> Result<()> {
    let mut daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    step_margin(15).await;
    let gus = enroll(&mut admin, &api, "gus").await?;
    let code = oathtool(&gus.secret, 0, &[])?;
    let accepted = api
        .post("/api/v1/verify", &json!({"user": "gus", "code": code}))
        .await?;
    assert_eq!(accepted.body["result"], "accept", "{}", accepted.raw);
    let wrong = api
        .post("/api/v1/verify", &json!({"user": "gus", "code": "000000"}))
        .await?;
    assert_eq!(wrong.body["result"], "reject");
    // No shutdown, no flush: only what was durable before each answer survives.
    daemon.restart()?;
    let api = daemon.api_client()?.with_key(&key);
    let replay = api
        .post("/api/v1/verify", &json!({"user": "gus", "code": code}))
        .await?;
    assert_eq!(replay.body["result"], "reject", "{}", replay.raw);
    assert_eq!(replay.body["reason"], "replayed", "{}", replay.raw);
    // The failure recorded before the kill survived too: 1 wrong + 1 replay.
    let mut admin = daemon.admin()?;
    match admin.ok(&twofold_wire::admin::AdminRequest::UserShow { user: "gus".into() })? {
        twofold_wire::admin::AdminReply::User(u) => assert_eq!(u.failures, 2, "{u:?}"),
        other => panic!("{other:?}"),
    }
    // And the enrollment, the backup codes and the API key survived: the next step still works.
    let next = api
        .post(
            "/api/v1/verify",
            &json!({"user": "gus", "code": oathtool(&gus.secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(next.body["result"], "accept", "{}", next.raw);
    Ok(())
}
