//! Failures slow down and then lock a user; an admin unlocks; answers never tell users from non-users.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest};

use crate::step_margin;

/// Three failures lock at once (no delays first), so the test needs no waiting.
const LOCK_AT_3: &str = "[lockout.user]\nmax_failures = 3\ndelay_after = 3\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n";

#[tokio::test]
async fn failures_lock_the_user_until_an_admin_unlocks() -> Result<()> {
    let daemon = Daemon::start(LOCK_AT_3)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(15).await;
    let hal = enroll(&mut admin, &api, "hal").await?;
    for _ in 0..3 {
        let a = api
            .post("/api/v1/verify", &json!({"user": "hal", "code": "000000"}))
            .await?;
        assert_eq!(a.body["reason"], "invalid_code", "{}", a.raw);
    }
    // Locked: even the right code is refused, without being checked.
    let right = oathtool(&hal.secret, 0, &[])?;
    let locked = api
        .post("/api/v1/verify", &json!({"user": "hal", "code": right}))
        .await?;
    assert_eq!(locked.body["result"], "reject");
    assert_eq!(locked.body["reason"], "locked", "{}", locked.raw);
    match admin.ok(&AdminRequest::UserShow { user: "hal".into() })? {
        AdminReply::User(u) => assert!(u.locked && u.failures == 3, "{u:?}"),
        other => panic!("{other:?}"),
    }
    // At the default level the system log tells of the lock (a warning, written at once), not of each
    // verification: those are in the audit log.
    let log = daemon.log()?;
    let lock_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("locked after too many failed codes"))
        .collect();
    assert_eq!(lock_lines.len(), 1, "one line for the lock: {log}");
    assert!(
        lock_lines[0].contains("WARN") && lock_lines[0].contains("hal"),
        "{}",
        lock_lines[0]
    );
    assert!(
        !log.contains("action=\"verify\""),
        "verifications are not logged at info: {log}"
    );
    admin.ok(&AdminRequest::UserUnlock { user: "hal".into() })?;
    // The refused attempt did not use the code's step: it is accepted now.
    let after = api
        .post("/api/v1/verify", &json!({"user": "hal", "code": right}))
        .await?;
    assert_eq!(after.body["result"], "accept", "{}", after.raw);
    Ok(())
}

#[tokio::test]
async fn a_success_resets_the_count() -> Result<()> {
    let daemon = Daemon::start(LOCK_AT_3)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(15).await;
    let ivy = enroll(&mut admin, &api, "ivy").await?;
    for _ in 0..2 {
        api.post("/api/v1/verify", &json!({"user": "ivy", "code": "000000"}))
            .await?;
    }
    let ok = api
        .post(
            "/api/v1/verify",
            &json!({"user": "ivy", "code": oathtool(&ivy.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(ok.body["result"], "accept", "{}", ok.raw);
    for _ in 0..2 {
        let a = api
            .post("/api/v1/verify", &json!({"user": "ivy", "code": "000000"}))
            .await?;
        assert_eq!(
            a.body["reason"], "invalid_code",
            "two failures after a success do not lock: {}",
            a.raw
        );
    }
    Ok(())
}

#[tokio::test]
async fn growing_delays_refuse_fast_retries_without_counting_them() -> Result<()> {
    let daemon = Daemon::start(
        "[lockout.user]\nmax_failures = 10\ndelay_after = 2\nmax_delay_seconds = 60\nlock_seconds = 0\nforget_after_seconds = 0\n",
    )?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    admin.create_user("jo")?;
    for _ in 0..2 {
        api.post("/api/v1/verify", &json!({"user": "jo", "code": "000000"}))
            .await?;
    }
    let limited = api
        .post("/api/v1/verify", &json!({"user": "jo", "code": "000000"}))
        .await?;
    assert_eq!(limited.body["reason"], "rate_limited", "{}", limited.raw);
    assert!(
        limited.body["retry_after"]
            .as_u64()
            .is_some_and(|s| (1..=60).contains(&s)),
        "{}",
        limited.raw
    );
    for _ in 0..20 {
        api.post("/api/v1/verify", &json!({"user": "jo", "code": "000000"}))
            .await?;
    }
    match admin.ok(&AdminRequest::UserShow { user: "jo".into() })? {
        AdminReply::User(u) => assert_eq!(u.failures, 2, "refused attempts are not counted: {u:?}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unknown_users_get_the_same_answers_as_real_ones() -> Result<()> {
    let daemon = Daemon::start(LOCK_AT_3)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    admin.create_user("kim")?;
    let mut real = Vec::new();
    let mut ghost = Vec::new();
    for _ in 0..4 {
        real.push(
            api.post("/api/v1/verify", &json!({"user": "kim", "code": "123456"}))
                .await?,
        );
        ghost.push(
            api.post(
                "/api/v1/verify",
                &json!({"user": "nobody", "code": "123456"}),
            )
            .await?,
        );
    }
    for (r, g) in real.iter().zip(&ghost) {
        assert_eq!(r.status, g.status);
        assert_eq!(
            r.body, g.body,
            "the answer for a user and a non-user must not differ"
        );
    }
    assert_eq!(real[3].body["reason"], "locked");
    Ok(())
}

#[tokio::test]
async fn an_address_with_too_many_failures_is_locked_across_users() -> Result<()> {
    let daemon = Daemon::start(
        "[lockout.address]\nmax_failures = 4\ndelay_after = 4\nmax_delay_seconds = 1\nlock_seconds = 900\nforget_after_seconds = 900\n",
    )?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    for i in 0..4 {
        let a = api
            .post(
                "/api/v1/verify",
                &json!({"user": format!("spray{i}"), "code": "123456", "client_ip": "192.0.2.7"}),
            )
            .await?;
        assert_eq!(a.body["reason"], "invalid_code", "{}", a.raw);
    }
    let locked = api
        .post(
            "/api/v1/verify",
            &json!({"user": "someone", "code": "123456", "client_ip": "192.0.2.7"}),
        )
        .await?;
    assert_eq!(locked.body["reason"], "locked", "{}", locked.raw);
    assert!(
        locked.body["retry_after"].as_u64().is_some_and(|s| s > 800),
        "timed lock: {}",
        locked.raw
    );
    let log = daemon.log()?;
    assert!(
        log.lines()
            .any(|l| l.contains("address locked after too many failed codes")
                && l.contains("192.0.2.7")),
        "the address's lock is logged: {log}"
    );
    let elsewhere = api
        .post(
            "/api/v1/verify",
            &json!({"user": "someone", "code": "123456", "client_ip": "192.0.2.8"}),
        )
        .await?;
    assert_eq!(
        elsewhere.body["reason"], "invalid_code",
        "{}",
        elsewhere.raw
    );
    admin.ok(&AdminRequest::AddressUnlock {
        address: "192.0.2.7".into(),
    })?;
    let unlocked = api
        .post(
            "/api/v1/verify",
            &json!({"user": "someone", "code": "123456", "client_ip": "192.0.2.7"}),
        )
        .await?;
    assert_eq!(unlocked.body["reason"], "invalid_code", "{}", unlocked.raw);
    Ok(())
}
