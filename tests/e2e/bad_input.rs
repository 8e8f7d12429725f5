//! Every mistake a caller can make gets a 4xx `{"error": {"code", "message"}}` and changes nothing.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, Answer, Daemon};
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest};

use crate::step_margin;

fn assert_error(answer: &Answer, status: u16, code: &str, case: &str) {
    assert_eq!(answer.status, status, "{case}: {}", answer.raw);
    assert_eq!(answer.body["error"]["code"], code, "{case}: {}", answer.raw);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
        "{case}: a one-line message: {}",
        answer.raw
    );
}

#[tokio::test]
async fn bad_requests_get_json_4xx_and_change_nothing() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    step_margin(8).await;
    let nia = enroll(&mut admin, &api, "nia").await?;
    let before_user = admin.ok(&AdminRequest::UserShow { user: "nia".into() })?;
    let before_audit = match admin.ok(&AdminRequest::AuditTail { limit: Some(1000) })? {
        AdminReply::Audit { events } => events.len(),
        other => panic!("{other:?}"),
    };

    let anonymous = daemon.api_client()?;
    assert_error(
        &anonymous
            .post("/api/v1/verify", &json!({"user": "nia", "code": "123456"}))
            .await?,
        401,
        "unauthorized",
        "no key",
    );
    let wrong_key = daemon.api_client()?.with_key("tfk_not-a-key");
    assert_error(
        &wrong_key
            .post("/api/v1/verify", &json!({"user": "nia", "code": "123456"}))
            .await?,
        401,
        "unauthorized",
        "wrong key",
    );
    assert_error(
        &wrong_key.get("/api/v1/users/nia/devices").await?,
        401,
        "unauthorized",
        "wrong key, devices",
    );

    let verify = "/api/v1/verify";
    let confirm = format!("/api/v1/users/nia/totp/{}/confirm", nia.device);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            verify,
            b"{\"user\": \"nia\", \"code\":".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            verify,
            b"[1, 2, 3]".to_vec(),
            400,
            "invalid_request",
        ),
        ("empty body", verify, Vec::new(), 400, "invalid_json"),
        (
            "wrong type",
            verify,
            br#"{"user": 5, "code": "123456"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "missing field",
            verify,
            br#"{"user": "nia"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            verify,
            br#"{"user": "nia", "code": "123456", "admin": true}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "control character in name",
            verify,
            br#"{"user": "ni\u0007a", "code": "123456"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "control character in code",
            verify,
            br#"{"user": "nia", "code": "123\n456"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "over-long code",
            verify,
            format!(r#"{{"user": "nia", "code": "{}"}}"#, "1".repeat(65)).into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "over-long name",
            verify,
            format!(r#"{{"user": "{}", "code": "123456"}}"#, "n".repeat(300)).into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "client_ip not an address",
            verify,
            br#"{"user": "nia", "code": "123456", "client_ip": "x"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            verify,
            b"{\"user\": \"\xff\xfe\", \"code\": \"1\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "oversized body",
            verify,
            format!(r#"{{"user": "nia", "code": "{}"}}"#, "1".repeat(100_000)).into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "label with control character",
            "/api/v1/users/nia/totp",
            br#"{"label": "ph\u001bone"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "digits not 6 or 8",
            "/api/v1/users/nia/totp",
            br#"{"digits": 7}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "unknown algorithm",
            "/api/v1/users/nia/totp",
            br#"{"algorithm": "MD5"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "digits out of range",
            "/api/v1/users/nia/totp",
            br#"{"digits": 70000}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "unknown user",
            "/api/v1/users/nobody/totp",
            b"{}".to_vec(),
            404,
            "not_found",
        ),
        (
            "unknown device",
            "/api/v1/users/nia/totp/dnothere/confirm",
            br#"{"code": "123456"}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            "confirming an active device",
            &confirm,
            br#"{"code": "abcdef"}"#.to_vec(),
            409,
            "conflict",
        ),
    ];
    for (case, path, body, status, code) in &cases {
        let answer = api.raw("POST", path, Some(body)).await?;
        assert_error(&answer, *status, code, case);
    }
    assert_error(
        &api.get("/api/v1/nothing").await?,
        404,
        "not_found",
        "unknown route",
    );
    assert_error(
        &api.get("/api/v1/verify").await?,
        405,
        "method_not_allowed",
        "wrong method",
    );
    assert_error(
        &api.get("/api/v1/users/%FF%FE/devices").await?,
        400,
        "invalid_path",
        "undecodable path",
    );

    // Nothing changed: same user, no audit events from refused requests.
    assert_eq!(
        admin.ok(&AdminRequest::UserShow { user: "nia".into() })?,
        before_user
    );
    let after_audit = match admin.ok(&AdminRequest::AuditTail { limit: Some(1000) })? {
        AdminReply::Audit { events } => events.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        after_audit, before_audit,
        "refused requests leave no trace in the store"
    );
    Ok(())
}

#[tokio::test]
async fn the_admin_socket_answers_bad_lines_and_keeps_the_connection() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    for (line, code) in [
        ("{not json", "invalid_request"),
        (r#"{"action": "drop_everything"}"#, "invalid_request"),
        (r#"{"action": "user_show"}"#, "invalid_request"),
        (
            r#"{"action": "user_create", "username": "o\u0000scar"}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "user_create", "username": "oscar", "shoe_size": 44}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "user_create", "username": "oscar", "email": "not-an-email"}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "user_create", "username": "oscar", "mobile": "call me maybe"}"#,
            "invalid_request",
        ),
        (r#"{"action": "user_show", "user": "nobody"}"#, "not_found"),
        (
            r#"{"action": "address_unlock", "address": "nowhere"}"#,
            "invalid_request",
        ),
    ] {
        match admin.call_raw(line)? {
            AdminAnswer::Error { error } => assert_eq!(error.code, code, "{line}: {error:?}"),
            other => panic!("{line} was accepted: {other:?}"),
        }
    }
    admin.create_user("oscar")?;
    match admin.call_raw(r#"{"action": "user_create", "username": "OSCAR"}"#)? {
        AdminAnswer::Error { error } => {
            assert_eq!(error.code, "conflict", "usernames are case-insensitive")
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// The daemon keeps known keys in memory; revoking one must still refuse it from the next request.
#[tokio::test]
async fn a_revoked_api_key_is_refused_from_the_next_request() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("portal")?;
    let other = admin.api_key("vpn")?;
    admin.create_user("ria")?;
    let api = daemon.api_client()?.with_key(&key);
    for _ in 0..2 {
        assert_eq!(api.get("/api/v1/users/ria/devices").await?.status, 200);
    }
    admin.ok(&AdminRequest::ApiKeyRevoke {
        name: "portal".into(),
    })?;
    assert_error(
        &api.get("/api/v1/users/ria/devices").await?,
        401,
        "unauthorized",
        "revoked key",
    );
    let vpn = daemon.api_client()?.with_key(&other);
    assert_eq!(
        vpn.get("/api/v1/users/ria/devices").await?.status,
        200,
        "the other key still works"
    );
    // A new key under the old name is a new key: the revoked one stays refused.
    let renewed = admin.api_key("portal")?;
    assert_ne!(renewed, key);
    assert_eq!(api.get("/api/v1/users/ria/devices").await?.status, 401);
    let portal = daemon.api_client()?.with_key(&renewed);
    assert_eq!(portal.get("/api/v1/users/ria/devices").await?.status, 200);
    Ok(())
}

/// A refusal decided before the body is read (no key, a wrong key, a key without the scope) reaches
/// curl over HTTP/2 (what the README's walkthrough uses) as its status and JSON body; curl 7.88 shows
/// nothing but "stream error" when the daemon answers and resets the stream with the body unread.
#[tokio::test]
async fn refusals_before_the_body_reach_curl_over_http2_with_their_json() -> Result<()> {
    let daemon = Daemon::start("\n[privacyidea]\nenabled = true\nauth = \"api_key\"\n")?;
    let mut admin = daemon.admin()?;
    let verify_only = admin.api_key_with("vpn", &[twofold_wire::admin::ApiScope::Verify], false)?;
    let cert = daemon.data_dir().join("tls/cert.pem");
    let body = json!({"user": "alice", "code": "123456"}).to_string();
    let cases: [(Option<&str>, &str, u16, &str); 5] = [
        (None, "/api/v1/verify", 401, "unauthorized"),
        (Some("wrong"), "/api/v1/verify", 401, "unauthorized"),
        (Some(""), "/api/v1/users/alice/totp", 401, "unauthorized"),
        (
            Some(&verify_only),
            "/api/v1/users/alice/totp",
            403,
            "scope_required",
        ),
        (None, "/validate/check", 401, ""),
    ];
    for (key, path, status, code) in cases {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "--http2", "--cacert"])
            .arg(&cert)
            .args([
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ])
            .args(["-w", "\n%{http_code}"]);
        if let Some(key) = key {
            curl.args(["-H", &format!("Authorization: Bearer {key}")]);
        }
        let out = curl.arg(format!("https://{}{path}", daemon.api)).output()?;
        let stdout = String::from_utf8(out.stdout)?;
        let case = format!(
            "{path} with key {key:?}: exit {}, {stdout:?}, {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{case}");
        let (answer, got) = stdout.rsplit_once('\n').unwrap_or_default();
        assert_eq!(got, status.to_string(), "{case}");
        let answer: serde_json::Value = serde_json::from_str(answer)?;
        if code.is_empty() {
            // privacyIDEA's own error shape.
            assert_eq!(answer["result"]["status"], false, "{case}");
        } else {
            assert_eq!(answer["error"]["code"], code, "{case}");
        }
    }
    Ok(())
}
