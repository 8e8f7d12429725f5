//! API keys with scopes and proxy trust (issue 13): what a key holder can no longer do.

use anyhow::Result;
use serde_json::{json, Value};
use std::process::Command;
use twofold_tests::{enroll, oathtool, workspace_binary, Api, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest, ApiScope};

use crate::step_margin;

/// A code of `secret` that is certainly not the current one: the current code with its last digit moved.
fn wrong_code(secret: &str) -> Result<String> {
    let mut code = oathtool(secret, 0, &[])?.into_bytes();
    if let Some(last) = code.last_mut() {
        *last = b'0' + (*last - b'0' + 5) % 10;
    }
    Ok(String::from_utf8(code)?)
}

#[tokio::test]
async fn a_second_device_needs_the_users_proof_and_the_enroll_scope() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let verifier =
        daemon
            .api_client()?
            .with_key(&admin.api_key_with("vpn", &[ApiScope::Verify], false)?);
    let enroller =
        daemon
            .api_client()?
            .with_key(&admin.api_key_with("portal", &[ApiScope::Enroll], false)?);
    step_margin(15).await;
    // A user's first device needs no proof: the application has just checked the password.
    let alice = enroll(&mut admin, &enroller, "alice").await?;

    let takeover = json!({"label": "attacker"});
    let by_verifier = verifier.post("/api/v1/users/alice/totp", &takeover).await?;
    assert_eq!(by_verifier.status, 403, "{}", by_verifier.raw);
    assert_eq!(by_verifier.body["error"]["code"], "scope_required");

    let no_proof = enroller.post("/api/v1/users/alice/totp", &takeover).await?;
    assert_eq!(no_proof.status, 403, "{}", no_proof.raw);
    assert_eq!(no_proof.body["error"]["code"], "proof_required");

    let wrong = enroller
        .post(
            "/api/v1/users/alice/totp",
            &json!({"label": "attacker", "code": wrong_code(&alice.secret)?}),
        )
        .await?;
    assert_eq!(wrong.status, 403, "{}", wrong.raw);
    assert_eq!(wrong.body["error"]["code"], "second_factor_required");

    let devices = enroller.get("/api/v1/users/alice/devices").await?;
    assert_eq!(
        devices.body["devices"].as_array().map(Vec::len),
        Some(1),
        "no device was added: {}",
        devices.raw
    );

    // With a current code of alice's own authenticator, her second phone is enrolled.
    let proven = enroller
        .post(
            "/api/v1/users/alice/totp",
            &json!({"label": "second phone", "code": oathtool(&alice.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(proven.status, 201, "{}", proven.raw);

    // The refused attempts were counted as failed codes, the proof as a success.
    let audit = audit_of(&mut admin, "alice")?;
    let verify_outcomes: Vec<&str> = audit
        .iter()
        .filter(|e| e.0 == "verify")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(verify_outcomes, ["reject", "accept"], "{audit:?}");

    // The verify key still checks codes.
    let checked = verifier
        .post(
            "/api/v1/verify",
            &json!({"user": "alice", "code": oathtool(&alice.secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(checked.body["result"], "accept", "{}", checked.raw);
    Ok(())
}

/// (action, outcome, detail) of the user's audit events, oldest first.
fn audit_of(admin: &mut twofold_tests::Admin, user: &str) -> Result<Vec<(String, String, String)>> {
    match admin.ok(&AdminRequest::AuditTail { limit: Some(200) })? {
        AdminReply::Audit { events } => Ok(events
            .into_iter()
            .filter(|e| e.user.as_deref() == Some(user))
            .map(|e| (e.action, e.outcome, e.detail.unwrap_or_default()))
            .collect()),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

#[tokio::test]
async fn each_endpoint_refuses_a_key_without_its_scope() -> Result<()> {
    let daemon = Daemon::start("\n[privacyidea]\nenabled = true\n")?;
    let mut admin = daemon.admin()?;
    let mut only = Vec::new();
    for scope in ApiScope::ALL {
        let key = admin.api_key_with(&format!("only-{}", scope.name()), &[scope], false)?;
        only.push((scope, daemon.api_client()?.with_key(&key)));
    }
    let code = json!({"code": "123456"});
    // Every route of the API, with the scope it needs.
    let routes: [(&str, &str, Option<Value>, ApiScope); 22] = [
        (
            "POST",
            "/api/v1/verify",
            Some(json!({"user": "u", "code": "123456"})),
            ApiScope::Verify,
        ),
        (
            "POST",
            "/api/v1/challenge",
            Some(json!({"user": "u", "channel": "sms"})),
            ApiScope::Verify,
        ),
        ("GET", "/api/v1/challenge/t1", None, ApiScope::Verify),
        ("GET", "/api/v1/users/u/two-factor", None, ApiScope::Verify),
        (
            "POST",
            "/api/v1/users/u/totp",
            Some(json!({})),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/totp/d1/confirm",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        ("GET", "/api/v1/users/u/devices", None, ApiScope::Enroll),
        (
            "POST",
            "/api/v1/users/u/devices/d1/unpair",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/devices/d1/block",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/two-factor/disable",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/backup-codes",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/restore-code",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        ("GET", "/api/v1/users/u/restore", None, ApiScope::Enroll),
        (
            "POST",
            "/api/v1/restore",
            Some(json!({"user": "u", "restore_code": "x"})),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/restore/t1/enroll",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/restore/t1/confirm",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/users/u/pairing",
            Some(code.clone()),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/pair",
            Some(json!({"user": "u", "token": "x"})),
            ApiScope::Enroll,
        ),
        (
            "POST",
            "/api/v1/block",
            Some(json!({"user": "u", "code": "x"})),
            ApiScope::Enroll,
        ),
        (
            "DELETE",
            "/api/v1/users/u/devices/d1",
            None,
            ApiScope::Manage,
        ),
        (
            "POST",
            "/validate/check",
            Some(json!({"user": "u", "pass": "123456"})),
            ApiScope::Verify,
        ),
        (
            "POST",
            "/validate/triggerchallenge",
            Some(json!({"user": "u"})),
            ApiScope::Verify,
        ),
    ];
    for (method, path, body, needed) in routes {
        let body = body.map(|b| b.to_string());
        for (scope, api) in &only {
            let answer = api
                .raw(method, path, body.as_deref().map(str::as_bytes))
                .await?;
            let refused = answer.status == 403
                && (answer.body["error"]["code"] == "scope_required"
                    || answer.raw.contains("lacks the verify scope"));
            assert_eq!(
                refused,
                *scope != needed,
                "{method} {path} with a {} key: {} {}",
                scope.name(),
                answer.status,
                answer.raw
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn only_a_trusted_proxy_names_the_end_users_address() -> Result<()> {
    let daemon = Daemon::start("\n[privacyidea]\nenabled = true\n")?;
    let mut admin = daemon.admin()?;
    let all = [ApiScope::Verify, ApiScope::Enroll];
    let proxy = daemon
        .api_client()?
        .with_key(&admin.api_key_with("proxy", &all, true)?);
    let app = daemon
        .api_client()?
        .with_key(&admin.api_key_with("app", &all, false)?);
    step_margin(10).await;
    let bob = enroll(&mut admin, &proxy, "bob").await?;
    let wrong = wrong_code(&bob.secret)?;

    let send = |api: &Api, path: &'static str, body: Value| {
        let api = api.clone();
        async move { api.post(path, &body).await }
    };
    for (api, named) in [(&proxy, "192.0.2.10"), (&app, "192.0.2.20")] {
        send(
            api,
            "/api/v1/verify",
            json!({"user": "bob", "code": wrong, "client_ip": named}),
        )
        .await?;
        // The endpoints that take a code of the user count by the same rule.
        send(
            api,
            "/api/v1/users/bob/backup-codes",
            json!({"code": wrong, "client_ip": named}),
        )
        .await?;
        api.send(
            "POST",
            &format!("/validate/check?user=bob&pass={wrong}&client={named}"),
            None,
            b"",
            &[],
        )
        .await?;
    }
    let addresses: Vec<String> = audit_of(&mut admin, "bob")?
        .into_iter()
        // After three failures the user's delay refuses codes unchecked: counted by address all the same.
        .filter(|(action, outcome, _)| action == "verify" && outcome != "accept")
        .filter_map(|(_, _, detail)| {
            detail
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        addresses,
        [
            "192.0.2.10",
            "192.0.2.10",
            "192.0.2.10",
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.1"
        ],
        "the proxy's client_ip counts, the other key's own address does"
    );

    // A malformed client_ip is an error from either key.
    let bad = app
        .post(
            "/api/v1/verify",
            &json!({"user": "bob", "code": wrong, "client_ip": "nowhere"}),
        )
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.raw);
    Ok(())
}

#[tokio::test]
async fn privacyidea_callers_are_authenticated_before_their_body_is_read() -> Result<()> {
    let daemon = Daemon::start("\n[privacyidea]\nenabled = true\n")?;
    let anonymous = daemon.api_client()?;
    // A body that cannot be parsed: before, the parameter error (905) came first.
    let answer = anonymous
        .send(
            "POST",
            "/validate/check",
            Some("application/json"),
            b"{not json",
            &[],
        )
        .await?;
    assert_eq!(answer.status, 401, "{}", answer.raw);
    assert_eq!(
        answer.body["result"]["error"]["code"], 4033,
        "{}",
        answer.raw
    );
    Ok(())
}

#[test]
fn apikey_create_set_and_list_show_scopes() -> Result<()> {
    let daemon = Daemon::start("")?;
    let socket = daemon.admin_socket();
    let run = |args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(workspace_binary("twofold-admin")?)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()?)
    };
    let created = run(&["apikey", "create", "vpn"])?;
    assert!(created.status.success(), "{created:?}");
    let listed = String::from_utf8(run(&["apikey", "list"])?.stdout)?;
    assert!(
        listed.contains("vpn") && listed.contains("scopes verify") && !listed.contains("trusted"),
        "a new key only verifies by default: {listed}"
    );
    let widened = run(&[
        "apikey",
        "set",
        "vpn",
        "--scope",
        "verify,enroll",
        "--trusted-proxy",
        "true",
    ])?;
    assert!(widened.status.success(), "{widened:?}");
    let listed = String::from_utf8(run(&["--json", "apikey", "list"])?.stdout)?;
    let keys: Value = serde_json::from_str(&listed)?;
    let vpn = keys["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "vpn"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(vpn["scopes"], json!(["verify", "enroll"]), "{listed}");
    assert_eq!(vpn["trusted_proxy"], true, "{listed}");

    let bad = run(&["apikey", "create", "x", "--scope", "everything"])?;
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr)?;
    assert!(stderr.contains("unknown scope"), "{stderr}");
    Ok(())
}

/// The README's security model names the endpoints that tell a key holder whether a user exists
/// (the application needs the answer to lead the user on) and says verify does not: both halves hold.
#[tokio::test]
async fn only_the_endpoints_the_readme_names_tell_who_exists() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    admin.create_user("bob")?;
    let status =
        |answer: &twofold_tests::Answer| (answer.status, answer.body["error"]["code"].clone());

    for (path, known) in [("two-factor", 200), ("devices", 200), ("restore", 200)] {
        let bob = api.get(&format!("/api/v1/users/bob/{path}")).await?;
        let nobody = api.get(&format!("/api/v1/users/nobody/{path}")).await?;
        assert_eq!(bob.status, known, "{path}: {}", bob.raw);
        assert_eq!(
            status(&nobody),
            (404, json!("not_found")),
            "{path}: {}",
            nobody.raw
        );
    }
    let challenge = |user: &str| json!({"user": user, "channel": "email"});
    let bob = api.post("/api/v1/challenge", &challenge("bob")).await?;
    let nobody = api.post("/api/v1/challenge", &challenge("nobody")).await?;
    assert_eq!(bob.status, 409, "bob has no mail address: {}", bob.raw);
    assert_eq!(status(&nobody), (404, json!("not_found")), "{}", nobody.raw);

    // Verify answers an unknown user as it answers a wrong code.
    let verify = |user: &str| json!({"user": user, "code": "123456"});
    let bob = api.post("/api/v1/verify", &verify("bob")).await?;
    let nobody = api.post("/api/v1/verify", &verify("nobody")).await?;
    assert_eq!(
        (bob.status, &bob.body["result"], &bob.body["reason"]),
        (
            nobody.status,
            &nobody.body["result"],
            &nobody.body["reason"]
        ),
        "{} / {}",
        bob.raw,
        nobody.raw
    );
    assert_eq!(nobody.body["reason"], "invalid_code", "{}", nobody.raw);
    Ok(())
}
