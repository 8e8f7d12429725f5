//! Device lifecycle and 2FA policies end to end: device lists with how each device was added, unpair
//! and block from another device of the user, admin block/unblock, admin reset, turning 2FA off for
//! oneself, `off` groups from a real Samba AD, the system-wide switch and its epochs, the "enabled"
//! mail through a real SMTP server, and role refusals over the real socket.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use twofold_tests::delivery::{SmtpServer, TestCa};
use twofold_tests::samba::{shared_dc, BASE_DN};
use twofold_tests::{
    enroll, enroll_existing, enroll_proven, oathtool, workspace_binary, Admin, Api, Daemon, TempDir,
};
use twofold_wire::admin::{
    AdminAnswer, AdminReply, AdminRequest, AuditEvent, AuditFilter, SystemTwoFactorView, UserView,
};
use twofold_wire::TwoFactorState;

use crate::step_margin;

fn user(admin: &mut Admin, name: &str) -> Result<UserView> {
    match admin.ok(&AdminRequest::UserShow { user: name.into() })? {
        AdminReply::User(u) => Ok(u),
        other => bail!("unexpected {other:?}"),
    }
}

fn audit(admin: &mut Admin, action: &str) -> Result<Vec<AuditEvent>> {
    match admin.ok(&AdminRequest::AuditSearch {
        filter: AuditFilter {
            action: Some(action.into()),
            ..AuditFilter::default()
        },
    })? {
        AdminReply::Audit { events } => Ok(events),
        other => bail!("unexpected {other:?}"),
    }
}

fn switch(admin: &mut Admin, on: bool) -> Result<SystemTwoFactorView> {
    match admin.ok(&AdminRequest::SystemTwoFactorSet { on })? {
        AdminReply::SystemTwoFactor(v) => Ok(v),
        other => bail!("unexpected {other:?}"),
    }
}

async fn state(api: &Api, name: &str) -> Result<String> {
    let answer = api.get(&format!("/api/v1/users/{name}/two-factor")).await?;
    if answer.status != 200 {
        bail!(
            "two-factor status of {name}: {} {}",
            answer.status,
            answer.raw
        );
    }
    Ok(answer.body["state"].as_str().unwrap_or_default().to_owned())
}

async fn verify(api: &Api, name: &str, code: &str) -> Result<Value> {
    let answer = api
        .post("/api/v1/verify", &json!({"user": name, "code": code}))
        .await?;
    if answer.status != 200 {
        bail!("verify answered {}: {}", answer.status, answer.raw);
    }
    Ok(answer.body)
}

/// A second authenticator for `name`, enrolled and confirmed by an admin; returns (device, secret).
fn admin_enroll(admin: &mut Admin, name: &str, label: &str) -> Result<(String, String)> {
    let AdminReply::Enrollment(e) = admin.ok(&AdminRequest::TotpEnroll {
        user: name.into(),
        label: Some(label.into()),
        algorithm: None,
        digits: None,
    })?
    else {
        bail!("no enrollment");
    };
    admin.ok(&AdminRequest::TotpConfirm {
        user: name.into(),
        device: e.device.id.clone(),
        code: oathtool(&e.secret, -30, &[])?,
    })?;
    Ok((e.device.id, e.secret))
}

#[tokio::test]
async fn devices_show_their_origin_and_another_device_blocks_or_unpairs_them() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(20).await;
    let ann = enroll(&mut admin, &api, "ann").await?;
    let (tablet, tablet_secret) = admin_enroll(&mut admin, "ann", "tablet")?;

    // Listed for the relying application and for admins, with created, last used, status and origin.
    let list = api.get("/api/v1/users/ann/devices").await?;
    assert_eq!(list.status, 200, "{}", list.raw);
    let devices = list.body["devices"].as_array().cloned().unwrap_or_default();
    let by_id = |id: &str| devices.iter().find(|d| d["id"] == id).cloned();
    let phone = by_id(&ann.device).unwrap_or_default();
    assert_eq!(
        (&phone["origin"], &phone["status"], &phone["label"]),
        (&json!("enrolled"), &json!("active"), &json!("phone")),
        "{phone}"
    );
    assert!(
        phone["created"].is_i64() && phone["last_used"].is_i64(),
        "{phone}"
    );
    assert_eq!(
        by_id(&tablet).map(|d| d["origin"].clone()),
        Some(json!("admin"))
    );
    let AdminReply::Devices { devices: listed } =
        admin.ok(&AdminRequest::DeviceList { user: "ann".into() })?
    else {
        bail!("no devices");
    };
    assert_eq!(
        listed.iter().map(|d| d.origin).collect::<Vec<_>>(),
        vec![
            twofold_wire::DeviceOrigin::Enrolled,
            twofold_wire::DeviceOrigin::Admin
        ]
    );

    // Blocking the tablet needs a code from ANOTHER device: the tablet's own code is refused, as is a
    // wrong code and a backup code.
    let block = format!("/api/v1/users/ann/devices/{tablet}/block");
    let own = api
        .post(&block, &json!({"code": oathtool(&tablet_secret, 0, &[])?}))
        .await?;
    assert_eq!(
        (own.status, &own.body["error"]["code"]),
        (403, &json!("other_device_required")),
        "{}",
        own.raw
    );
    let wrong = api.post(&block, &json!({"code": "000000"})).await?;
    assert_eq!(
        (wrong.status, &wrong.body["error"]["code"]),
        (403, &json!("second_factor_required")),
        "{}",
        wrong.raw
    );
    let backup = api
        .post(&block, &json!({"code": ann.backup_codes[0]}))
        .await?;
    assert_eq!(
        (backup.status, &backup.body["error"]["code"]),
        (403, &json!("other_device_required")),
        "{}",
        backup.raw
    );
    assert_eq!(
        user(&mut admin, "ann")?.devices[1].status,
        twofold_wire::DeviceStatus::Active
    );
    let blocked = api
        .post(&block, &json!({"code": oathtool(&ann.secret, 0, &[])?}))
        .await?;
    assert_eq!(blocked.status, 200, "{}", blocked.raw);
    assert_eq!(blocked.body["status"], "blocked");
    // Refused at once: the tablet's unused next code does not pass.
    let refused = verify(&api, "ann", &oathtool(&tablet_secret, 30, &[])?).await?;
    assert_eq!(refused["result"], "reject", "{refused}");
    let events = audit(&mut admin, "device_block")?;
    assert!(
        events.iter().any(|e| e.actor == "api:portal"
            && e.detail.as_deref() == Some(&format!("device={tablet} vouched_by={}", ann.device))),
        "{events:?}"
    );

    // An admin unblocks; the tablet then unpairs the phone (a lost phone) with its next code.
    admin.ok(&AdminRequest::DeviceUnblock {
        user: "ann".into(),
        device: tablet.clone(),
    })?;
    let unpair = format!("/api/v1/users/ann/devices/{}/unpair", ann.device);
    let unpaired = api
        .post(
            &unpair,
            &json!({"code": oathtool(&tablet_secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(unpaired.status, 200, "{}", unpaired.raw);
    let left: Vec<&str> = unpaired.body["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(left, vec![tablet.as_str()]);
    // The unpaired phone's unused next code is refused at once.
    let gone = verify(&api, "ann", &oathtool(&ann.secret, 30, &[])?).await?;
    assert_eq!(
        (gone["result"].as_str(), gone["reason"].as_str()),
        (Some("reject"), Some("invalid_code")),
        "{gone}"
    );

    // Caller mistakes are 4xx JSON errors and change nothing.
    let tablet_unpair = format!("/api/v1/users/ann/devices/{tablet}/unpair");
    for (path, body, status, code) in [
        (tablet_unpair.as_str(), Some("{}"), 400, "invalid_request"),
        (
            tablet_unpair.as_str(),
            Some("{\"code\": \"\"}"),
            400,
            "invalid_request",
        ),
        (
            tablet_unpair.as_str(),
            Some("not json"),
            400,
            "invalid_json",
        ),
        (tablet_unpair.as_str(), None, 400, "invalid_json"),
        (
            unpair.as_str(),
            Some("{\"code\": \"123456\"}"),
            404,
            "not_found",
        ),
        (
            "/api/v1/users/nobody/devices/dnosuch/block",
            Some("{\"code\": \"123456\"}"),
            404,
            "not_found",
        ),
        (
            "/api/v1/users/ann/two-factor/disable",
            Some("{\"code\": \"123456\", \"extra\": 1}"),
            400,
            "invalid_request",
        ),
    ] {
        let answer = api.raw("POST", path, body.map(str::as_bytes)).await?;
        assert_eq!(
            (answer.status, answer.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body:?}: {}",
            answer.raw
        );
    }
    let missing = api.get("/api/v1/users/nobody/two-factor").await?;
    assert_eq!(
        (missing.status, &missing.body["error"]["code"]),
        (404, &json!("not_found"))
    );
    assert_eq!(user(&mut admin, "ann")?.devices.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_admin_reset_makes_that_user_alone_enroll_again() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(15).await;
    let ann = enroll(&mut admin, &api, "ann").await?;
    let bob = enroll(&mut admin, &api, "bob").await?;
    // Ann activates restore (the code is shown on screen by default).
    let issued = api
        .post(
            "/api/v1/users/ann/restore-code",
            &json!({"code": oathtool(&ann.secret, 0, &[])?}),
        )
        .await?;
    let restore_code = issued.body["restore_code"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no restore code: {}", issued.raw))?
        .to_owned();

    let AdminReply::User(view) =
        admin.ok(&AdminRequest::UserResetTwoFactor { user: "ann".into() })?
    else {
        bail!("no user view");
    };
    assert_eq!(view.state, TwoFactorState::EnrollmentRequired);
    assert!(
        view.devices.is_empty() && view.backup_codes_remaining == 0,
        "{view:?}"
    );
    assert_eq!(state(&api, "ann").await?, "enrollment_required");
    assert_eq!(state(&api, "bob").await?, "enrolled");
    assert_eq!(user(&mut admin, "bob")?.devices.len(), 1);
    // Her old code and backup codes are refused at once; bob's work.
    for code in [oathtool(&ann.secret, 0, &[])?, ann.backup_codes[0].clone()] {
        let refused = verify(&api, "ann", &code).await?;
        assert_eq!(refused["result"], "reject", "{refused}");
    }
    let ok = verify(&api, "bob", &oathtool(&bob.secret, 0, &[])?).await?;
    assert_eq!(ok["result"], "accept", "{ok}");
    // Her restore code went with her devices.
    let restore = api
        .post(
            "/api/v1/restore",
            &json!({"user": "ann", "restore_code": restore_code}),
        )
        .await?;
    assert!(
        restore.status >= 400 && restore.status < 500,
        "{} {}",
        restore.status,
        restore.raw
    );
    assert_eq!(
        view.restore.as_ref().map(|r| r.activated),
        Some(false),
        "{view:?}"
    );
    let events = audit(&mut admin, "two_factor_reset")?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (
            events[0].actor.as_str(),
            events[0].user.as_deref(),
            events[0].detail.as_deref()
        ),
        ("admin:uid=0", Some("ann"), Some("devices_removed=1"))
    );
    // Her three refused codes count like any wrong codes, and a confirmation waits after them as a
    // sign-in would: the helpdesk that reset her clears the count. She enrolls again and is enrolled.
    admin.ok(&AdminRequest::UserUnlock { user: "ann".into() })?;
    enroll_existing(&api, "ann", "new phone").await?;
    assert_eq!(state(&api, "ann").await?, "enrolled");

    // The CLI: the same request, and one line + exit 1 for a mistake.
    let cli = workspace_binary("twofold-admin")?;
    let out = Command::new(&cli)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(["user", "reset-2fa", "bob"])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2FA: enrollment_required"),
        "{out:?}"
    );
    let out = Command::new(&cli)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(["user", "reset-2fa", "nobody"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(r#"user "nobody" not found"#), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn the_system_switch_on_off_and_on_again_makes_everyone_enroll_again() -> Result<()> {
    let policy = "\n[[policy.group]]\ngroup = \"sso\"\ntwo_factor = \"off\"\n";
    let mut daemon = Daemon::start(policy)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(15).await;
    let ann = enroll(&mut admin, &api, "ann").await?;
    admin.create_user("carl")?;
    admin.ok(&AdminRequest::UserCreate(twofold_wire::admin::NewUser {
        username: "sam".into(),
        groups: vec!["sso".into()],
        ..Default::default()
    }))?;
    assert_eq!(state(&api, "ann").await?, "enrolled");
    assert_eq!(state(&api, "carl").await?, "not_enrolled");
    assert_eq!(state(&api, "sam").await?, "off");
    // `off`: verify says no second factor applies (no failure counted), enrollment is refused.
    let off = verify(&api, "sam", "123456").await?;
    assert_eq!(off["reason"], "two_factor_off", "{off}");
    assert_eq!(user(&mut admin, "sam")?.failures, 0);
    let refused = api.post("/api/v1/users/sam/totp", &json!({})).await?;
    assert_eq!(refused.status, 409, "{}", refused.raw);

    // On (through the CLI): everyone must enroll, `off` group and already enrolled users included.
    let cli = workspace_binary("twofold-admin")?;
    let socket = daemon.admin_socket();
    let run = |args: &[&str]| {
        Command::new(&cli)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
    };
    let out = run(&["system", "two-factor", "on"])?;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("system-wide 2FA ON") && text.contains("(epoch 1)"),
        "{text}"
    );
    assert!(text.contains("users who must enroll: 3 of 3"), "{text}");
    for name in ["ann", "carl", "sam"] {
        assert_eq!(state(&api, name).await?, "enrollment_required", "{name}");
    }
    let status = api.get("/api/v1/users/sam/two-factor").await?;
    assert_eq!(
        (&status.body["rule"], &status.body["system_required"]),
        (&json!("required"), &json!(true)),
        "{}",
        status.raw
    );
    // Ann's old device still proves who she is, and the answer tells the application to enroll her.
    let told = verify(&api, "ann", &oathtool(&ann.secret, 0, &[])?).await?;
    assert_eq!(
        (&told["result"], &told["enrollment_required"]),
        (&json!("accept"), &json!(true)),
        "{told}"
    );
    // Ann still has her old device, so the new one takes a proof: the next code of the old one.
    let proof = oathtool(&ann.secret, 30, &[])?;
    enroll_proven(&api, "ann", "new phone", Some(&proof)).await?;
    enroll_existing(&api, "carl", "new phone").await?;
    let sam_secret = enroll_existing(&api, "sam", "new phone").await?.secret;
    for name in ["ann", "carl", "sam"] {
        assert_eq!(state(&api, name).await?, "enrolled", "{name}");
    }
    let plain = verify(&api, "sam", &oathtool(&sam_secret, 0, &[])?).await?;
    assert_eq!(plain["result"], "accept", "{plain}");
    assert!(plain.get("enrollment_required").is_none(), "{plain}");

    // Off: the policies apply again (sam's group is `off`), enrollments stand.
    let view = switch(&mut admin, false)?;
    assert_eq!((view.on, view.epoch), (false, 1));
    assert_eq!(state(&api, "ann").await?, "enrolled");
    assert_eq!(state(&api, "sam").await?, "off");
    // On again: a new epoch, everyone enrolls again; it survives a restart.
    let view = switch(&mut admin, true)?;
    assert_eq!(
        (view.on, view.epoch, view.enrollment_required),
        (true, 2, 3)
    );
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal2")?);
    for name in ["ann", "carl", "sam"] {
        assert_eq!(state(&api, name).await?, "enrollment_required", "{name}");
    }
    let out = run(&["--json", "system", "two-factor", "status"])?;
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        (&shown["on"], &shown["epoch"]),
        (&json!(true), &json!(2)),
        "{shown}"
    );
    assert_eq!(shown["changed_by"], "admin:uid=0");
    // Switching to the state it is in changes nothing.
    let same = switch(&mut admin, true)?;
    assert_eq!(same.epoch, 2);
    let outcomes: Vec<String> = audit(&mut admin, "system_two_factor")?
        .into_iter()
        .map(|e| format!("{} {} {}", e.actor, e.outcome, e.detail.unwrap_or_default()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "admin:uid=0 on epoch=1",
            "admin:uid=0 off epoch=1",
            "admin:uid=0 on epoch=2",
            "admin:uid=0 unchanged on=true epoch=2"
        ]
    );
    let bad = run(&["system", "two-factor", "maybe"])?;
    assert_eq!(bad.status.code(), Some(2), "clap refuses: {bad:?}");
    Ok(())
}

#[tokio::test]
async fn turning_2fa_off_needs_a_code_and_is_refused_where_ad_groups_require_it() -> Result<()> {
    let dc = shared_dc()?;
    let base = format!("OU=Lifecycle,{BASE_DN}");
    let mut ldif = format!("dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    for u in ["lc-opt", "lc-req", "lc-sso"] {
        ldif.push_str(&format!(
            "dn: CN={u},{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: {u}\nuserPrincipalName: {u}@corp.example.test\nmail: {u}@corp.example.test\nuserAccountControl: 544\n\n"
        ));
    }
    for (group, member) in [("lc-vpn", "lc-req"), ("lc-sso-group", "lc-sso")] {
        ldif.push_str(&format!(
            "dn: CN={group},{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: {group}\nmember: CN={member},{base}\n\n"
        ));
    }
    dc.modify(&ldif)?;
    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n[[policy.group]]\ngroup = \"lc-vpn\"\ntwo_factor = \"required\"\n\n[[policy.group]]\ngroup = \"lc-sso-group\"\ntwo_factor = \"off\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", "ldaps://127.0.0.1:636", &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    let AdminReply::DirectoryStatus { domains } = admin.ok(&AdminRequest::DirectorySync {
        domain: None,
        full: true,
    })?
    else {
        bail!("no sync status");
    };
    assert!(domains.iter().all(|d| d.ok), "{domains:?}");
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    assert_eq!(state(&api, "lc-opt").await?, "not_enrolled");
    assert_eq!(state(&api, "lc-req").await?, "enrollment_required");
    assert_eq!(state(&api, "lc-sso").await?, "off");
    let sso = verify(&api, "lc-sso", "123456").await?;
    assert_eq!(sso["reason"], "two_factor_off", "{sso}");

    step_margin(15).await;
    let opt_secret = enroll_existing(&api, "lc-opt", "new phone").await?.secret;
    let req_secret = enroll_existing(&api, "lc-req", "new phone").await?.secret;
    let disable = |name: &str| format!("/api/v1/users/{name}/two-factor/disable");

    // Optional: a wrong code is refused and changes nothing; a valid one turns 2FA off.
    let wrong = api
        .post(&disable("lc-opt"), &json!({"code": "000000"}))
        .await?;
    assert_eq!(
        (wrong.status, &wrong.body["error"]["code"]),
        (403, &json!("second_factor_required")),
        "{}",
        wrong.raw
    );
    assert_eq!(state(&api, "lc-opt").await?, "enrolled");
    let done = api
        .post(
            &disable("lc-opt"),
            &json!({"code": oathtool(&opt_secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(
        (&done.body["state"], &done.body["active_devices"]),
        (&json!("not_enrolled"), &json!(0))
    );
    let after = verify(&api, "lc-opt", &oathtool(&opt_secret, 30, &[])?).await?;
    assert_eq!(after["result"], "reject", "{after}");

    // Required by the AD group: refused before the code is even checked, so the code stays usable.
    let code = oathtool(&req_secret, 0, &[])?;
    let required = api.post(&disable("lc-req"), &json!({"code": code})).await?;
    assert_eq!(
        (required.status, &required.body["error"]["code"]),
        (403, &json!("two_factor_required")),
        "{}",
        required.raw
    );
    assert!(
        required.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("policy of lc-req requires")),
        "{}",
        required.raw
    );
    let still = verify(&api, "lc-req", &code).await?;
    assert_eq!(still["result"], "accept", "{still}");
    // Already off by policy: a conflict, not a change.
    let sso_off = api
        .post(&disable("lc-sso"), &json!({"code": "123456"}))
        .await?;
    assert_eq!(sso_off.status, 409, "{}", sso_off.raw);

    let events = audit(&mut admin, "two_factor_disable")?;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.user.as_deref(), e.actor.as_str()))
            .collect::<Vec<_>>(),
        vec![(Some("lc-opt"), "api:portal")]
    );
    Ok(())
}

/// The "two-factor authentication has been enabled" mails received, once there are at least `n`.
async fn enabled_mails(smtp: &SmtpServer, n: usize) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails: Vec<String> = smtp
            .messages()?
            .into_iter()
            .filter(|m| m.contains("Subject: Two-factor authentication has been enabled"))
            .collect();
        if mails.len() >= n {
            return Ok(mails);
        }
        if std::time::Instant::now() > deadline {
            bail!("{} \"enabled\" mails, not {n}, within 20 s", mails.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_confirmed_device_sends_the_enabled_mail() -> Result<()> {
    let dir = TempDir::new("lifecycle-mail")?;
    let ca = TestCa::create(dir.path())?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let daemon = Daemon::start(&format!(
        "\n[email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\nfrom = \"Twofold <twofold@example.com>\"\n",
        smtp.port,
        ca.ca_file.display(),
        smtp.username,
        smtp.password_file.display()
    ))?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(15).await;
    let ann = enroll(&mut admin, &api, "ann").await?;
    let mail = enabled_mails(&smtp, 1).await?.remove(0);
    assert!(
        mail.contains("X-Envelope-To: ann@example.com")
            && mail.contains("(ann)")
            && mail.contains("\"phone\""),
        "{mail}"
    );
    assert!(!mail.contains(&ann.secret), "no secret in the mail");
    // A second device is not a first: no "enabled" mail (the restore function tells of new devices
    // in its own mail). A user without an address gets none either. The next first device (bea) is
    // the second "enabled" mail.
    admin_enroll(&mut admin, "ann", "tablet")?;
    admin.ok(&AdminRequest::UserCreate(twofold_wire::admin::NewUser {
        username: "nomail".into(),
        ..Default::default()
    }))?;
    enroll_existing(&api, "nomail", "new phone").await?;
    enroll(&mut admin, &api, "bea").await?;
    let mails = enabled_mails(&smtp, 2).await?;
    assert!(
        mails[1].contains("X-Envelope-To: bea@example.com"),
        "{}",
        mails[1]
    );
    // Delivery is in the background; give any stray mail the time bea's took, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(enabled_mails(&smtp, 2).await?.len(), 2);
    Ok(())
}

#[test]
fn the_new_admin_actions_are_refused_for_roles_that_lack_them_over_the_real_socket() -> Result<()> {
    let accounts = crate::console::RoleAccounts::create("tfl")?;
    let daemon = Daemon::start(&accounts.config())?;
    let mut root = Admin::connect(&accounts.socket)?;
    root.create_user("zed")?;
    // (command, least role)
    let table: &[(&[&str], &str)] = &[
        (&["system", "two-factor", "status"], "helpdesk"),
        (&["user", "reset-2fa", "zed"], "admin"),
        (&["system", "two-factor", "on"], "master admin"),
        (&["system", "two-factor", "off"], "master admin"),
    ];
    let refusals = accounts.check_table(table)?;
    // Helpdesk asked reset and both switches, admin both switches: each refusal is audited.
    assert_eq!(refusals, 5);
    let AdminReply::Audit { events } = root.ok(&AdminRequest::AuditSearch {
        filter: AuditFilter {
            outcome: Some("forbidden".into()),
            ..AuditFilter::default()
        },
    })?
    else {
        bail!("no audit");
    };
    assert_eq!(events.len(), 5, "{events:?}");
    // The detail says what was needed, the role held and which group gave it.
    assert!(events.iter().any(|e| e.action == "user_reset_two_factor"
        && e.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("needs=admin role=helpdesk granted_by=group tflhd"))));
    assert!(events.iter().any(|e| e.action == "system_two_factor_set"
        && e.detail.as_deref().is_some_and(
            |d| d.starts_with("needs=master admin role=admin granted_by=group tfladm")
        )));
    match root.call(&AdminRequest::SystemTwoFactorShow)? {
        AdminAnswer::Ok { reply } => match *reply {
            AdminReply::SystemTwoFactor(v) => assert_eq!(
                (v.on, v.epoch),
                (false, 1),
                "the master admin switched on then off"
            ),
            other => bail!("unexpected {other:?}"),
        },
        AdminAnswer::Error { error } => bail!("{error:?}"),
    }
    drop(daemon);
    Ok(())
}
