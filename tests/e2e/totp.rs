//! Enrollment and verification with codes computed by oathtool, and the QR code read back by zbarimg.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};

use crate::step_margin;

#[tokio::test]
async fn oathtool_codes_are_accepted_and_the_answer_names_the_factor() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(8).await;
    let alice = enroll(&mut admin, &api, "alice").await?;
    assert!(
        alice.uri.starts_with("otpauth://totp/Twofold:alice?"),
        "{}",
        alice.uri
    );
    assert!(alice.uri.contains(&format!("secret={}", alice.secret)));
    assert_eq!(
        alice.secret.len(),
        32,
        "160-bit secret is 32 base32 characters"
    );
    assert_eq!(alice.backup_codes.len(), 10);

    let answer = api
        .post(
            "/api/v1/verify",
            &json!({"user": "alice", "code": oathtool(&alice.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(answer.body["result"], "accept", "{}", answer.raw);
    assert_eq!(answer.body["method"], "two_factor");
    assert_eq!(answer.body["factor"], "totp");
    assert_eq!(answer.body["device"]["id"], alice.device.as_str());
    assert_eq!(answer.body["device"]["kind"], "totp");

    // One step ahead is inside the default window; two steps ahead is not.
    let far = oathtool(&alice.secret, 60, &[])?;
    let answer = api
        .post("/api/v1/verify", &json!({"user": "alice", "code": far}))
        .await?;
    assert_eq!(answer.body["result"], "reject", "{}", answer.raw);
    assert_eq!(answer.body["reason"], "invalid_code");
    let next = oathtool(&alice.secret, 30, &[])?;
    let answer = api
        .post("/api/v1/verify", &json!({"user": "alice", "code": next}))
        .await?;
    assert_eq!(answer.body["result"], "accept", "{}", answer.raw);
    Ok(())
}

#[tokio::test]
async fn stronger_parameters_are_an_opt_in_that_oathtool_agrees_with() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    admin.create_user("bob")?;
    step_margin(8).await;
    let started = api
        .post(
            "/api/v1/users/bob/totp",
            &json!({"label": "aegis", "algorithm": "SHA256", "digits": 8}),
        )
        .await?;
    assert_eq!(started.status, 201, "{}", started.raw);
    let uri = started.body["otpauth_uri"].as_str().unwrap_or_default();
    assert!(
        uri.contains("algorithm=SHA256") && uri.contains("digits=8"),
        "{uri}"
    );
    let secret = started.body["secret"].as_str().unwrap_or_default();
    let device = started.body["device"]["id"].as_str().unwrap_or_default();
    let code = oathtool(secret, 0, &["--totp=sha256", "--digits=8"])?;
    assert_eq!(code.len(), 8);
    let confirmed = api
        .post(
            &format!("/api/v1/users/bob/totp/{device}/confirm"),
            &json!({"code": code}),
        )
        .await?;
    assert_eq!(confirmed.status, 200, "{}", confirmed.raw);
    let next = oathtool(secret, 30, &["--totp=sha256", "--digits=8"])?;
    let answer = api
        .post("/api/v1/verify", &json!({"user": "bob", "code": next}))
        .await?;
    assert_eq!(answer.body["result"], "accept", "{}", answer.raw);
    // A 6-digit SHA1 code from the same secret is not a valid code for this device.
    let sha1 = oathtool(secret, 0, &[])?;
    let answer = api
        .post("/api/v1/verify", &json!({"user": "bob", "code": sha1}))
        .await?;
    assert_eq!(answer.body["result"], "reject", "{}", answer.raw);
    Ok(())
}

#[tokio::test]
async fn a_pending_enrollment_accepts_nothing_until_confirmed() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    admin.create_user("carol")?;
    step_margin(8).await;
    let started = api.post("/api/v1/users/carol/totp", &json!({})).await?;
    let secret = started.body["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let device = started.body["device"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(started.body["device"]["status"], "pending");
    let answer = api
        .post(
            "/api/v1/verify",
            &json!({"user": "carol", "code": oathtool(&secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(
        answer.body["result"], "reject",
        "a pending device is not a factor yet: {}",
        answer.raw
    );
    let wrong = api
        .post(
            &format!("/api/v1/users/carol/totp/{device}/confirm"),
            &json!({"code": "000000"}),
        )
        .await?;
    assert_eq!(wrong.status, 400, "{}", wrong.raw);
    assert_eq!(wrong.body["error"]["code"], "invalid_request");
    let right = api
        .post(
            &format!("/api/v1/users/carol/totp/{device}/confirm"),
            &json!({"code": oathtool(&secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(right.status, 200, "{}", right.raw);
    assert_eq!(right.body["device"]["status"], "active");
    let again = api
        .post(
            &format!("/api/v1/users/carol/totp/{device}/confirm"),
            &json!({"code": oathtool(&secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(again.status, 409, "{}", again.raw);
    Ok(())
}

#[tokio::test]
async fn the_qr_png_decodes_to_the_same_uri_and_the_svg_is_an_svg() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    admin.create_user("dave")?;
    let started = api
        .post("/api/v1/users/dave/totp", &json!({"label": "phone"}))
        .await?;
    let uri = started.body["otpauth_uri"].as_str().unwrap_or_default();
    let png = data_encoding::BASE64.decode(
        started.body["qr_png_base64"]
            .as_str()
            .unwrap_or_default()
            .as_bytes(),
    )?;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let path = daemon.dir.path().join("qr.png");
    std::fs::write(&path, &png)?;
    let out = std::process::Command::new("zbarimg")
        .arg("--quiet")
        .arg("--raw")
        .arg(&path)
        .output()?;
    assert!(
        out.status.success(),
        "zbarimg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout)?.trim(), uri);
    let svg = started.body["qr_svg"].as_str().unwrap_or_default();
    assert!(
        svg.contains("<svg") && svg.contains("</svg>"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    Ok(())
}
