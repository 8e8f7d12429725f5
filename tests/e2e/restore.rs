//! The restore function end to end: users from the Samba AD DC (their email from AD), mail through the
//! real SMTP server on loopback, the real daemon over HTTPS and the admin socket. Restore with both
//! codes, with only one refused, the limit, restore prohibited (an admin restores), old devices deleted
//! or kept, the new-device notification and its block code, duplicate by pairing, an admin re-sending a
//! lost restore code, restore code (recovery key) rotation, the login prompt, and brute force.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use twofold_tests::delivery::{SmtpServer, TestCa};
use twofold_tests::samba::{shared_dc, SambaDc, BASE_DN};
use twofold_tests::{oathtool, Admin, Api, Daemon};
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest, NewUser, SyncStatus};
use twofold_wire::policy::Channel;
use twofold_wire::restore::RestoreState;
use twofold_wire::DeviceStatus;

use crate::step_margin;

const LDAPS: &str = "ldaps://127.0.0.1:636";
const WAIT: Duration = Duration::from_secs(20);

/// An OU with users (mail from AD) and groups holding some of them, created over LDAP.
fn make_ou(dc: &SambaDc, ou: &str, users: &[&str], groups: &[(&str, &[&str])]) -> Result<String> {
    let base = format!("OU={ou},{BASE_DN}");
    let mut ldif = format!("dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    for u in users {
        ldif.push_str(&format!(
            "dn: CN={u},{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: {u}\nuserPrincipalName: {u}@corp.example.test\nmail: {u}@corp.example.test\ndisplayName: {u} Example\nuserAccountControl: 544\n\n"
        ));
    }
    for (group, members) in groups {
        ldif.push_str(&format!(
            "dn: CN={group},{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: {group}\n"
        ));
        for m in *members {
            ldif.push_str(&format!("member: CN={m},{base}\n"));
        }
        ldif.push('\n');
    }
    dc.modify(&ldif)?;
    Ok(base)
}

fn email_config(smtp: &SmtpServer, ca: &TestCa) -> String {
    format!(
        "\n[email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\nfrom = \"Twofold <twofold@example.com>\"\n",
        smtp.port,
        ca.ca_file.display(),
        smtp.username,
        smtp.password_file.display()
    )
}

/// A daemon syncing `base` from the DC, mailing through `smtp`, with `policy` (TOML) on top.
fn daemon(
    dc: &SambaDc,
    base: &str,
    smtp: &SmtpServer,
    ca: &TestCa,
    policy: &str,
) -> Result<(Daemon, Admin, Api)> {
    let daemon = Daemon::start(&format!(
        "{policy}{}{}",
        email_config(smtp, ca),
        dc.directory_config("corp", LDAPS, base, "")
    ))?;
    let mut admin = daemon.admin()?;
    match admin.ok(&AdminRequest::DirectorySync {
        domain: Some("corp".into()),
        full: true,
    })? {
        AdminReply::DirectoryStatus { domains } if domains.iter().all(|d: &SyncStatus| d.ok) => {}
        other => bail!("sync failed: {other:?}"),
    }
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    Ok((daemon, admin, api))
}

/// A mail body as sent: quoted-printable soft breaks joined, `=3D` decoded.
fn body(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
        .replace('\r', "")
}

/// The token after `marker` in `text` (letters, digits and dashes).
fn after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let token: String = text[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!token.is_empty()).then_some(token)
}

/// Waits for the `nth` (0-based) mail to `to` whose body holds `marker`, and returns the token after it.
async fn mailed(smtp: &SmtpServer, to: &str, marker: &str, nth: usize) -> Result<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found: Vec<String> = smtp
            .messages()?
            .iter()
            .filter(|m| m.contains(&format!("X-Envelope-To: {to}")))
            .map(|m| body(m))
            .filter(|b| b.contains(marker))
            .collect();
        if let Some(m) = found.get(nth) {
            return after(m, marker).with_context(|| format!("no token after {marker:?} in {m}"));
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "no mail #{nth} to {to} with {marker:?} within {WAIT:?} ({} matching)",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const OTP_MARKER: &str = "enter this code:";
const RESTORE_CODE_MARKER: &str = "restore code for two-factor authentication";
const BLOCK_MARKER: &str = "for good with this code:";

/// The restore code in a "Your new restore code" mail (it sits on its own line after "is:").
async fn mailed_restore_code(smtp: &SmtpServer, to: &str, nth: usize) -> Result<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let bodies: Vec<String> = smtp
            .messages()?
            .iter()
            .filter(|m| m.contains(&format!("X-Envelope-To: {to}")))
            .map(|m| body(m))
            .filter(|b| b.contains(RESTORE_CODE_MARKER))
            .collect();
        if let Some(b) = bodies.get(nth) {
            return after(b, ") is:").with_context(|| format!("no restore code in {b}"));
        }
        if std::time::Instant::now() > deadline {
            bail!("no restore code mail #{nth} to {to}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Device {
    id: String,
    secret: String,
}

/// Enrolls and confirms a TOTP device over the API; returns it and the confirmation's answer.
async fn enroll(api: &Api, user: &str) -> Result<(Device, Value)> {
    let started = api
        .post(
            &format!("/api/v1/users/{user}/totp"),
            &json!({"label": "phone"}),
        )
        .await?;
    if started.status != 201 {
        bail!("enroll: {} {}", started.status, started.raw);
    }
    let device = Device {
        id: started.body["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        secret: started.body["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let confirmed = api
        .post(
            &format!("/api/v1/users/{user}/totp/{}/confirm", device.id),
            &json!({"code": oathtool(&device.secret, -30, &[])?}),
        )
        .await?;
    if confirmed.status != 200 {
        bail!("confirm: {} {}", confirmed.status, confirmed.raw);
    }
    Ok((device, confirmed.body))
}

async fn verify(api: &Api, user: &str, code: &str) -> Result<Value> {
    let a = api
        .post("/api/v1/verify", &json!({"user": user, "code": code}))
        .await?;
    if a.status != 200 {
        bail!("verify: {} {}", a.status, a.raw);
    }
    Ok(a.body)
}

/// Steps 1 and 2 of a restore: the restore code, then the emailed OTP. Returns the transaction and
/// the new pending device.
async fn restore_until_enrolled(
    api: &Api,
    smtp: &SmtpServer,
    user: &str,
    email: &str,
    restore_code: &str,
    otp_mail: usize,
) -> Result<(String, Device)> {
    let started = api
        .post(
            "/api/v1/restore",
            &json!({"user": user, "restore_code": restore_code}),
        )
        .await?;
    if started.status != 202 {
        bail!("restore start: {} {}", started.status, started.raw);
    }
    let tx = started.body["transaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let otp = mailed(smtp, email, OTP_MARKER, otp_mail).await?;
    let enrolled = api
        .post(
            &format!("/api/v1/restore/{tx}/enroll"),
            &json!({"code": otp, "label": "new phone"}),
        )
        .await?;
    if enrolled.status != 201 {
        bail!("restore enroll: {} {}", enrolled.status, enrolled.raw);
    }
    assert_eq!(enrolled.body["device"]["origin"], "restored");
    assert_eq!(enrolled.body["device"]["status"], "pending");
    assert!(enrolled.body["qr_png_base64"]
        .as_str()
        .is_some_and(|q| !q.is_empty()));
    let device = Device {
        id: enrolled.body["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        secret: enrolled.body["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    Ok((tx, device))
}

async fn restore_confirm(api: &Api, tx: &str, device: &Device) -> Result<Value> {
    let done = api
        .post(
            &format!("/api/v1/restore/{tx}/confirm"),
            &json!({"code": oathtool(&device.secret, 0, &[])?}),
        )
        .await?;
    if done.status != 200 {
        bail!("restore confirm: {} {}", done.status, done.raw);
    }
    Ok(done.body)
}

fn restore_state(admin: &mut Admin, user: &str) -> Result<RestoreState> {
    match admin.ok(&AdminRequest::RestoreStatus { user: user.into() })? {
        AdminReply::RestoreState { state, .. } => Ok(state),
        other => bail!("unexpected {other:?}"),
    }
}

fn devices(admin: &mut Admin, user: &str) -> Result<Vec<twofold_wire::DeviceInfo>> {
    match admin.ok(&AdminRequest::DeviceList { user: user.into() })? {
        AdminReply::Devices { devices } => Ok(devices),
        other => bail!("unexpected {other:?}"),
    }
}

fn audit_has(admin: &mut Admin, user: &str, action: &str, outcome: &str) -> Result<bool> {
    match admin.ok(&AdminRequest::AuditSearch {
        filter: twofold_wire::admin::AuditFilter {
            user: Some(user.into()),
            action: Some(action.into()),
            outcome: Some(outcome.into()),
            ..Default::default()
        },
    })? {
        AdminReply::Audit { events } => Ok(!events.is_empty()),
        other => bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_needs_both_codes_replaces_device_and_code_and_the_owner_can_block_it() -> Result<()>
{
    let dc = shared_dc()?;
    let base = make_ou(dc, "Restore1", &["rs-alice"], &[])?;
    let dir = twofold_tests::TempDir::new("restore-both")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let policy = "\n[policy]\nrestore_auto_activate = true\nrestore_code_delivery = \"screen\"\nrestore_old_devices = \"delete\"\n";
    let (daemon, mut admin, api) = daemon(dc, &base, &smtp, &ca, policy)?;
    let user = "rs-alice";
    let email = "rs-alice@corp.example.test";
    step_margin(12).await;

    // Auto-activation: the first device's confirmation shows the restore code once.
    let (old, confirmed) = enroll(&api, user).await?;
    assert_eq!(
        confirmed["restore_code"]["delivery"], "screen",
        "{confirmed}"
    );
    let restore_code = confirmed["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        restore_code.len(),
        29,
        "five groups of five: {restore_code}"
    );
    let state = restore_state(&mut admin, user)?;
    assert!(state.activated && state.allowed, "{state:?}");
    let stored = std::fs::read(daemon.data_dir().join("store/db"))?;
    let plain = restore_code.replace('-', "");
    assert!(
        !String::from_utf8_lossy(&stored).contains(&plain),
        "only the hash is stored"
    );

    // Only one of the two codes: a wrong restore code is refused and nothing is mailed.
    let wrong = api
        .post(
            "/api/v1/restore",
            &json!({"user": user, "restore_code": "00000-00000-00000-00000-00000"}),
        )
        .await?;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].as_str()),
        (403, Some("invalid_code")),
        "{}",
        wrong.raw
    );
    // The right restore code without the emailed OTP: a wrong OTP is refused, the device cannot be
    // confirmed before the OTP, and the OTP is no sign-in code.
    let started = api
        .post(
            "/api/v1/restore",
            &json!({"user": user, "restore_code": restore_code}),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.raw);
    assert_eq!(started.body["destination"], "r•••@corp.example.test");
    let tx = started.body["transaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let early = api
        .post(
            &format!("/api/v1/restore/{tx}/confirm"),
            &json!({"code": "123456"}),
        )
        .await?;
    assert_eq!(early.status, 409, "{}", early.raw);
    let otp = mailed(&smtp, email, OTP_MARKER, 0).await?;
    // The mail with the short code is not to be taken for the long restore code the user keeps.
    let otp_mail = smtp
        .messages()?
        .into_iter()
        .map(|m| body(&m))
        .find(|m| m.contains(OTP_MARKER))
        .unwrap_or_default();
    assert!(
        otp_mail.contains("Subject: Your confirmation code for moving to a new device")
            && otp_mail.contains("It is not your restore code"),
        "{otp_mail}"
    );
    let bad_otp = format!("{:06}", (otp.parse::<u32>()? + 1) % 1_000_000);
    let refused = api
        .post(
            &format!("/api/v1/restore/{tx}/enroll"),
            &json!({"code": bad_otp}),
        )
        .await?;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (403, Some("invalid_code")),
        "{}",
        refused.raw
    );
    let as_login = api
        .post(
            "/api/v1/verify",
            &json!({"user": user, "code": otp, "transaction_id": tx}),
        )
        .await?;
    assert_eq!(as_login.body["result"], "reject", "{}", as_login.raw);
    assert!(
        devices(&mut admin, user)?.len() == 1,
        "no device made by one code alone"
    );
    admin.ok(&AdminRequest::UserUnlock { user: user.into() })?;

    // Both codes: the OTP makes the new device, its first code completes the restore.
    let enrolled = api
        .post(
            &format!("/api/v1/restore/{tx}/enroll"),
            &json!({"code": otp}),
        )
        .await?;
    assert_eq!(enrolled.status, 201, "{}", enrolled.raw);
    let new = Device {
        id: enrolled.body["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        secret: enrolled.body["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    // The OTP is single use.
    let again = api
        .post(
            &format!("/api/v1/restore/{tx}/enroll"),
            &json!({"code": otp}),
        )
        .await?;
    assert_eq!(again.status, 409, "{}", again.raw);
    // A restored device is not confirmed through plain enrollment.
    let sideways = api
        .post(
            &format!("/api/v1/users/{user}/totp/{}/confirm", new.id),
            &json!({"code": oathtool(&new.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(sideways.status, 409, "{}", sideways.raw);
    let done = restore_confirm(&api, &tx, &new).await?;
    assert_eq!(done["device"]["status"], "active");
    assert_eq!(done["device"]["origin"], "restored");
    assert_eq!(done["removed_devices"][0]["id"], old.id.as_str(), "{done}");
    let new_code = done["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(new_code.len() == 29 && new_code != restore_code);

    // The old device is gone and its codes refused; the new device signs in.
    let listed = devices(&mut admin, user)?;
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec![new.id.as_str()]
    );
    assert_eq!(
        verify(&api, user, &oathtool(&old.secret, 30, &[])?).await?["result"],
        "reject"
    );
    assert_eq!(
        verify(&api, user, &oathtool(&new.secret, 30, &[])?).await?["result"],
        "accept"
    );
    // The used restore code no longer works; the new one starts a restore.
    let spent = api
        .post(
            "/api/v1/restore",
            &json!({"user": user, "restore_code": restore_code}),
        )
        .await?;
    assert_eq!(spent.status, 403, "{}", spent.raw);
    let state = restore_state(&mut admin, user)?;
    assert_eq!(state.restores_in_period, 1, "{state:?}");
    assert!(audit_has(&mut admin, user, "restore", "ok")?);

    // The notification reached the user's email with a block code: "this wasn't me".
    let block_code = mailed(&smtp, email, BLOCK_MARKER, 0).await?;
    let notice = smtp
        .messages()?
        .into_iter()
        .map(|m| body(&m))
        .find(|m| m.contains(BLOCK_MARKER))
        .unwrap_or_default();
    assert!(
        notice.contains("was added by restoring your two-factor authentication for your account"),
        "{notice}"
    );
    let wrong_block = api
        .post(
            "/api/v1/block",
            &json!({"user": user, "code": "a".repeat(26)}),
        )
        .await?;
    assert_eq!(wrong_block.status, 403, "{}", wrong_block.raw);
    let blocked = api
        .post("/api/v1/block", &json!({"user": user, "code": block_code}))
        .await?;
    assert_eq!(blocked.status, 200, "{}", blocked.raw);
    assert_eq!(blocked.body["device"]["id"], new.id.as_str());
    assert_eq!(blocked.body["device"]["status"], "blocked");
    // At once: its codes are refused. Single use: the code does not work twice. For good: no unblock.
    assert_eq!(
        verify(&api, user, &oathtool(&new.secret, 0, &[])?).await?["result"],
        "reject"
    );
    let twice = api
        .post("/api/v1/block", &json!({"user": user, "code": block_code}))
        .await?;
    assert!(
        matches!(
            twice.body["error"]["code"].as_str(),
            Some("invalid_code" | "rate_limited")
        ),
        "{}",
        twice.raw
    );
    match admin.call(&AdminRequest::DeviceUnblock {
        user: user.into(),
        device: new.id.clone(),
    })? {
        AdminAnswer::Error { error } => assert_eq!(error.code, "conflict", "{error:?}"),
        other => bail!("unblocked a reported device: {other:?}"),
    }
    assert_eq!(devices(&mut admin, user)?[0].status, DeviceStatus::Blocked);
    assert!(audit_has(&mut admin, user, "device_block_reported", "ok")?);
    // Codes never reach the log.
    let log = daemon.log()?;
    for secret in [&restore_code, &new_code, &block_code] {
        assert!(!log.contains(secret.as_str()), "a code in the log");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_prohibition_kept_devices_rotation_and_admin_restore_follow_group_policy(
) -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(
        dc,
        "Restore2",
        &["rs-bob", "rs-carol"],
        &[
            ("rs-limited", &["rs-bob"]),
            ("rs-no-restore", &["rs-carol"]),
        ],
    )?;
    let dir = twofold_tests::TempDir::new("restore-limits")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let policy = "\n[policy]\nrestore_limit = 3\nrestore_old_devices = \"delete\"\n\n[[policy.group]]\ngroup = \"rs-limited\"\nrestore_limit = 1\nrestore_period_days = 30\nrestore_old_devices = \"keep\"\n\n[[policy.group]]\ngroup = \"rs-no-restore\"\nrestore = \"prohibited\"\nrestore_code_delivery = \"email\"\n";
    let (_daemon, mut admin, api) = daemon(dc, &base, &smtp, &ca, policy)?;
    step_margin(15).await;

    // bob activates restore by hand with his authenticator's code, then rotates the code: the first
    // one stops working.
    let (bob_phone, confirmed) = enroll(&api, "rs-bob").await?;
    assert!(
        confirmed["restore_code"].is_null(),
        "no auto-activation by default"
    );
    assert!(!restore_state(&mut admin, "rs-bob")?.activated);
    let first = api
        .post(
            "/api/v1/users/rs-bob/restore-code",
            &json!({"code": oathtool(&bob_phone.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(first.status, 200, "{}", first.raw);
    let first_code = first.body["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let no_code = api
        .post(
            "/api/v1/users/rs-bob/restore-code",
            &json!({"code": "000000"}),
        )
        .await?;
    assert_eq!(
        no_code.status, 403,
        "rotation needs a valid code: {}",
        no_code.raw
    );
    let rotated = api
        .post(
            "/api/v1/users/rs-bob/restore-code",
            &json!({"code": oathtool(&bob_phone.secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    let bob_code = rotated.body["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(bob_code, first_code);
    let old_key = api
        .post(
            "/api/v1/restore",
            &json!({"user": "rs-bob", "restore_code": first_code}),
        )
        .await?;
    assert_eq!(
        old_key.status, 403,
        "the rotated-out code is dead: {}",
        old_key.raw
    );
    admin.ok(&AdminRequest::UserUnlock {
        user: "rs-bob".into(),
    })?;

    // bob restores once: his group keeps old devices.
    let (tx, new) = restore_until_enrolled(
        &api,
        &smtp,
        "rs-bob",
        "rs-bob@corp.example.test",
        &bob_code,
        0,
    )
    .await?;
    let done = restore_confirm(&api, &tx, &new).await?;
    assert_eq!(done["removed_devices"], json!([]), "{done}");
    let listed = devices(&mut admin, "rs-bob")?;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d.status == DeviceStatus::Active));
    let next_code = done["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The limit of one per 30 days is reached: refused with the reason, after the code was checked.
    let limited = api
        .post(
            "/api/v1/restore",
            &json!({"user": "rs-bob", "restore_code": next_code}),
        )
        .await?;
    assert_eq!(
        (limited.status, limited.body["error"]["code"].as_str()),
        (403, Some("restore_limit_reached")),
        "{}",
        limited.raw
    );
    let state = restore_state(&mut admin, "rs-bob")?;
    assert_eq!((state.restores_in_period, state.limit), (1, 1), "{state:?}");
    assert!(state
        .next_restore_at
        .is_some_and(|t| t > twofold_tests::unix_now() + 29 * 86_400));
    // The user view carries it too, for the console.
    match admin.ok(&AdminRequest::UserShow {
        user: "rs-bob".into(),
    })? {
        AdminReply::User(u) => assert_eq!(u.restore.map(|r| r.restores_in_period), Some(1)),
        other => bail!("unexpected {other:?}"),
    }

    // carol's group prohibits restore: she cannot activate it, only an admin restores her.
    let (carol_phone, _) = enroll(&api, "rs-carol").await?;
    let prohibited = api
        .post(
            "/api/v1/users/rs-carol/restore-code",
            &json!({"code": oathtool(&carol_phone.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(
        (prohibited.status, prohibited.body["error"]["code"].as_str()),
        (403, Some("restore_prohibited")),
        "{}",
        prohibited.raw
    );
    assert!(!restore_state(&mut admin, "rs-carol")?.allowed);
    let started = match admin.ok(&AdminRequest::RestoreStart {
        user: "rs-carol".into(),
        label: Some("desk".into()),
    })? {
        AdminReply::Enrollment(e) => e,
        other => bail!("unexpected {other:?}"),
    };
    assert_eq!(started.device.origin, twofold_wire::DeviceOrigin::Restored);
    let restored = match admin.ok(&AdminRequest::RestoreConfirm {
        user: "rs-carol".into(),
        device: started.device.id.clone(),
        code: oathtool(&started.secret, 0, &[])?,
    })? {
        AdminReply::Restored(r) => r,
        other => bail!("unexpected {other:?}"),
    };
    // Her default policy deletes the old device; her restore code goes by email.
    assert_eq!(restored.removed_devices.len(), 1);
    assert_eq!(restored.removed_devices[0].id, carol_phone.id);
    assert_eq!(restored.restore_code.restore_code, None);
    assert_eq!(
        restored.restore_code.destination.as_deref(),
        Some("r•••@corp.example.test")
    );
    let mailed_code = mailed_restore_code(&smtp, "rs-carol@corp.example.test", 0).await?;
    assert_eq!(mailed_code.len(), 29, "{mailed_code}");
    // Even with that code she cannot restore herself.
    let herself = api
        .post(
            "/api/v1/restore",
            &json!({"user": "rs-carol", "restore_code": mailed_code}),
        )
        .await?;
    assert_eq!(
        herself.body["error"]["code"], "restore_prohibited",
        "{}",
        herself.raw
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_duplicates_a_device_notifies_and_admins_resend_lost_restore_codes() -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Restore3", &["rs-dave"], &[])?;
    let dir = twofold_tests::TempDir::new("restore-pair")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let policy = "\n[policy]\nrestore_auto_activate = true\nrestore_resend_channels = [\"email\", \"in_person\"]\n";
    let (_daemon, mut admin, api) = daemon(dc, &base, &smtp, &ca, policy)?;
    let (user, email) = ("rs-dave", "rs-dave@corp.example.test");
    step_margin(12).await;
    let (phone, confirmed) = enroll(&api, user).await?;
    let shown_code = confirmed["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Duplicate: a code from the active phone makes a pairing token (with a QR code).
    let pairing = api
        .post(
            &format!("/api/v1/users/{user}/pairing"),
            &json!({"code": oathtool(&phone.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(pairing.status, 201, "{}", pairing.raw);
    let token = pairing.body["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(pairing.body["pairing_uri"]
        .as_str()
        .is_some_and(|u| u.starts_with("twofold-pair://") && u.contains(&token)));
    assert!(pairing.body["qr_png_base64"]
        .as_str()
        .is_some_and(|q| !q.is_empty()));
    let bad = api
        .post(
            "/api/v1/pair",
            &json!({"user": user, "token": "z".repeat(26)}),
        )
        .await?;
    assert_eq!(bad.status, 403, "{}", bad.raw);
    let paired = api
        .post(
            "/api/v1/pair",
            &json!({"user": user, "token": token, "label": "tablet"}),
        )
        .await?;
    assert_eq!(paired.status, 201, "{}", paired.raw);
    assert_eq!(paired.body["device"]["origin"], "duplicated");
    let reused = api
        .post("/api/v1/pair", &json!({"user": user, "token": token}))
        .await?;
    assert_eq!(reused.status, 403, "single use: {}", reused.raw);
    let tablet = Device {
        id: paired.body["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        secret: paired.body["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let confirmed = api
        .post(
            &format!("/api/v1/users/{user}/totp/{}/confirm", tablet.id),
            &json!({"code": oathtool(&tablet.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(confirmed.status, 200, "{}", confirmed.raw);
    // Both devices work; the user was told about the tablet, with a block code.
    assert_eq!(
        devices(&mut admin, user)?
            .iter()
            .filter(|d| d.status == DeviceStatus::Active)
            .count(),
        2
    );
    let block_code = mailed(&smtp, email, BLOCK_MARKER, 0).await?;
    assert_eq!(block_code.len(), 26);

    // A lost restore code: re-sent by a channel the policy allows, chosen by the admin.
    match admin.call(&AdminRequest::RestoreResend {
        user: user.into(),
        channel: Channel::Sms,
    })? {
        AdminAnswer::Error { error } => assert_eq!(error.code, "forbidden", "{error:?}"),
        other => bail!("sms is not an allowed channel: {other:?}"),
    }
    match admin.ok(&AdminRequest::RestoreResend {
        user: user.into(),
        channel: Channel::Email,
    })? {
        AdminReply::RestoreCodeSent(sent) => assert_eq!(sent.destination, "r•••@corp.example.test"),
        other => bail!("unexpected {other:?}"),
    }
    let by_mail = mailed_restore_code(&smtp, email, 0).await?;
    match admin.ok(&AdminRequest::RestoreResend {
        user: user.into(),
        channel: Channel::InPerson,
    })? {
        AdminReply::RestoreCodeSent(sent) => assert_eq!(sent.destination, "helpdesk"),
        other => bail!("unexpected {other:?}"),
    }
    let at_desk = match admin.ok(&AdminRequest::HandoverList)? {
        AdminReply::Handovers { entries } => entries
            .into_iter()
            .find(|e| e.user == user)
            .map(|e| e.code)
            .context("no handover entry")?,
        other => bail!("unexpected {other:?}"),
    };
    // Each re-send replaced the code before it: only the one handed over works.
    for dead in [&shown_code, &by_mail] {
        let refused = api
            .post(
                "/api/v1/restore",
                &json!({"user": user, "restore_code": dead}),
            )
            .await?;
        assert!(
            matches!(
                refused.body["error"]["code"].as_str(),
                Some("invalid_code" | "rate_limited")
            ),
            "{}",
            refused.raw
        );
    }
    admin.ok(&AdminRequest::UserUnlock { user: user.into() })?;
    let (tx, new) = restore_until_enrolled(&api, &smtp, user, email, &at_desk, 0).await?;
    let done = restore_confirm(&api, &tx, &new).await?;
    assert_eq!(
        done["removed_devices"].as_array().map(Vec::len),
        Some(2),
        "{done}"
    );
    assert!(audit_has(&mut admin, user, "restore_code_issue", "ok")?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_restore_codes_and_emailed_otps_is_throttled_and_never_succeeds() -> Result<()> {
    let dir = twofold_tests::TempDir::new("restore-brute")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let daemon = Daemon::start(&format!(
        "\n[policy]\nrestore_auto_activate = true\nrestore_prompt_after_logins = 4\n\n[lockout.user]\nmax_failures = 6\ndelay_after = 3\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n{}",
        email_config(&smtp, &ca)
    ))?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "eve-target".into(),
        email: Some("target@example.com".into()),
        ..NewUser::default()
    }))?;
    step_margin(10).await;
    let (_phone, confirmed) = enroll(&api, "eve-target").await?;
    let real = confirmed["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let backup: Vec<String> = confirmed["backup_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // Guesses: wrong answers, then waits (not even checked), then the lock. Within the attempts allowed
    // nothing succeeds, and once locked even the real code is refused.
    let mut answers = Vec::new();
    for i in 0..12 {
        let guess = format!("{:05}-00000-00000-00000-00000", i);
        let a = api
            .post(
                "/api/v1/restore",
                &json!({"user": "eve-target", "restore_code": guess}),
            )
            .await?;
        assert_ne!(a.status, 202, "a guess succeeded: {}", a.raw);
        answers.push(
            a.body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        if a.status == 429 {
            assert!(
                a.body["error"]["code"] == "rate_limited" || a.body["error"]["code"] == "locked"
            );
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(
        answers.iter().filter(|a| *a == "invalid_code").count(),
        6,
        "{answers:?}"
    );
    assert_eq!(
        answers.last().map(String::as_str),
        Some("locked"),
        "{answers:?}"
    );
    let real_refused = api
        .post(
            "/api/v1/restore",
            &json!({"user": "eve-target", "restore_code": real}),
        )
        .await?;
    assert_eq!(
        real_refused.body["error"]["code"], "locked",
        "{}",
        real_refused.raw
    );
    // The same lock covers sign-in: the guesses counted like wrong codes.
    match admin.ok(&AdminRequest::UserShow {
        user: "eve-target".into(),
    })? {
        AdminReply::User(u) => assert!(u.locked && u.failures >= 6, "{u:?}"),
        other => bail!("unexpected {other:?}"),
    }
    admin.ok(&AdminRequest::UserUnlock {
        user: "eve-target".into(),
    })?;

    // The emailed OTP: 6 digits, so guessing it is throttled the same way.
    let started = api
        .post(
            "/api/v1/restore",
            &json!({"user": "eve-target", "restore_code": real}),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.raw);
    let tx = started.body["transaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let otp = mailed(&smtp, "target@example.com", OTP_MARKER, 0).await?;
    let mut refused = 0;
    for i in 0..8u32 {
        let guess = format!("{:06}", (otp.parse::<u32>()? + 1 + i) % 1_000_000);
        let a = api
            .post(
                &format!("/api/v1/restore/{tx}/enroll"),
                &json!({"code": guess}),
            )
            .await?;
        assert_ne!(a.status, 201, "a guessed OTP succeeded");
        refused += usize::from(a.status == 403 || a.status == 429);
        // Past the 1 s delay however the failure fell within its clock second, so each guess is counted.
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    assert_eq!(refused, 8);
    let locked = api
        .post(
            &format!("/api/v1/restore/{tx}/enroll"),
            &json!({"code": otp}),
        )
        .await?;
    assert_eq!(
        (locked.status, locked.body["error"]["code"].as_str()),
        (429, Some("locked")),
        "{}",
        locked.raw
    );

    // The restore prompt: from the 4th successful login on, until restore is activated (it already is
    // here, so never); a user without restore is prompted at the 4th.
    admin.ok(&AdminRequest::UserUnlock {
        user: "eve-target".into(),
    })?;
    let a = verify(&api, "eve-target", &backup[0]).await?;
    assert_eq!(
        (a["result"].as_str(), a["restore_prompt"].as_bool()),
        (Some("accept"), Some(false))
    );
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "newbie".into(),
        ..NewUser::default()
    }))?;
    let (_, newbie) = enroll(&api, "newbie").await?;
    assert!(
        newbie["restore_code"].is_null(),
        "no email: no auto-activation"
    );
    let codes: Vec<String> = newbie["backup_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut prompts = Vec::new();
    for code in codes.iter().take(5) {
        prompts.push(verify(&api, "newbie", code).await?["restore_prompt"].as_bool());
    }
    assert_eq!(
        prompts,
        vec![
            Some(false),
            Some(false),
            Some(false),
            Some(true),
            Some(true)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn wrong_codes_for_the_restored_device_count_and_a_lock_stops_the_restore() -> Result<()> {
    let dir = twofold_tests::TempDir::new("restore-confirm")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let daemon = Daemon::start(&format!(
        "\n[policy]\nrestore_auto_activate = true\n\n[lockout.user]\nmax_failures = 3\ndelay_after = 3\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n{}",
        email_config(&smtp, &ca)
    ))?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "rex".into(),
        email: Some("rex@example.com".into()),
        ..NewUser::default()
    }))?;
    step_margin(15).await;
    let (_phone, confirmed) = enroll(&api, "rex").await?;
    let restore_code = confirmed["restore_code"]["restore_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (tx, new) =
        restore_until_enrolled(&api, &smtp, "rex", "rex@example.com", &restore_code, 0).await?;
    let right = oathtool(&new.secret, 0, &[])?;
    let confirm = format!("/api/v1/restore/{tx}/confirm");
    twofold_tests::three_wrong_confirmations_lock(&api, &mut admin, "rex", &confirm, &right)
        .await?;
    admin.ok(&AdminRequest::UserUnlock { user: "rex".into() })?;
    let done = restore_confirm(&api, &tx, &new).await?;
    assert_eq!(done["device"]["status"], "active", "{done}");
    Ok(())
}
