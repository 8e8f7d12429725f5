//! objectGUID is the identity: names follow AD within one sync whatever the order of changes, a code
//! verifies only for its owner's current name, and a deleted user's name goes to the AD user who has it
//! now (issue 14). Against the shared Samba AD DC.

use anyhow::{anyhow, Result};
use serde_json::json;
use twofold_tests::delivery::{Gateway, SmtpServer, TestCa};
use twofold_tests::samba::shared_dc;
use twofold_tests::{enroll_existing, oathtool, Admin, Api, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest, AuditFilter, DialledNumber, NewUser};
use twofold_wire::delivery::DeliveryState;

use crate::delivery::{challenge, client, email_config, plugin_config, settled, WAIT};
use crate::directory::{make_ou, sync, user, LDAPS};
use crate::step_margin;

/// LDIF renaming the account under `cn` to `name` (sAMAccountName and UPN, as an AD admin does).
fn rename(base: &str, cn: &str, name: &str) -> String {
    format!(
        "dn: CN={cn},{base}\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: {name}\n-\nreplace: userPrincipalName\nuserPrincipalName: {name}@corp.example.test\n\n"
    )
}

/// The API's verdict ("accept" or "reject") on `secret`'s code `offset` seconds from now, for `name`.
async fn verdict(api: &Api, name: &str, secret: &str, offset: i64) -> Result<String> {
    let answer = api
        .post(
            "/api/v1/verify",
            &json!({"user": name, "code": oathtool(secret, offset, &[])?}),
        )
        .await?;
    Ok(answer.body["result"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn id_of(admin: &mut Admin, name: &str) -> Result<Option<String>> {
    Ok(user(admin, name)?.map(|u| u.id))
}

#[tokio::test]
async fn swapped_names_follow_ad_and_each_code_verifies_only_for_its_owner() -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Swap", &["swp-ann", "swp-ben"])?;
    let daemon = Daemon::start(&dc.directory_config("corp", LDAPS, &base, ""))?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(20).await;
    let ann = enroll_existing(&api, "swp-ann", "phone").await?;
    let ben = enroll_existing(&api, "swp-ben", "phone").await?;
    let (ann_id, ben_id) = (id_of(&mut admin, "swp-ann")?, id_of(&mut admin, "swp-ben")?);

    // The swap in three steps, a sync after each: ann -> tmp, ben -> ann, tmp -> ben.
    for (cn, name) in [
        ("swp-ann", "swp-tmp"),
        ("swp-ben", "swp-ann"),
        ("swp-ann", "swp-ben"),
    ] {
        dc.modify(&rename(&base, cn, name))?;
        let status = sync(&mut admin, false)?;
        assert!(status.ok && status.failed == 0, "{name}: {status:?}");
    }
    assert_eq!(
        id_of(&mut admin, "swp-ann")?,
        ben_id,
        "the name went to ben"
    );
    assert_eq!(
        id_of(&mut admin, "swp-ben")?,
        ann_id,
        "the name went to ann"
    );
    assert_eq!(id_of(&mut admin, "swp-tmp")?, None);
    step_margin(20).await;
    assert_eq!(verdict(&api, "swp-ann", &ann.secret, 0).await?, "reject");
    assert_eq!(verdict(&api, "swp-ben", &ben.secret, 0).await?, "reject");
    assert_eq!(verdict(&api, "swp-tmp", &ann.secret, 0).await?, "reject");
    assert_eq!(verdict(&api, "swp-ann", &ben.secret, 0).await?, "accept");
    assert_eq!(verdict(&api, "swp-ben", &ann.secret, 0).await?, "accept");

    // The same three steps back, all between two syncs: whichever user the sync applies first wants a
    // name the other still holds.
    dc.modify(&format!(
        "{}{}{}",
        rename(&base, "swp-ben", "swp-tmp"),
        rename(&base, "swp-ann", "swp-ann"),
        rename(&base, "swp-ben", "swp-ben")
    ))?;
    let status = sync(&mut admin, false)?;
    assert!(status.ok && status.failed == 0, "{status:?}");
    assert_eq!(id_of(&mut admin, "swp-ann")?, ann_id);
    assert_eq!(id_of(&mut admin, "swp-ben")?, ben_id);
    assert_eq!(
        id_of(&mut admin, "swp-ann@corp.example.test")?,
        ann_id,
        "the UPN follows too"
    );
    step_margin(20).await;
    assert_eq!(verdict(&api, "swp-ann", &ben.secret, 30).await?, "reject");
    assert_eq!(verdict(&api, "swp-ben", &ann.secret, 30).await?, "reject");
    assert_eq!(verdict(&api, "swp-ann", &ann.secret, 30).await?, "accept");
    assert_eq!(verdict(&api, "swp-ben", &ben.secret, 30).await?, "accept");
    // The next sync has nothing left to do and nothing to complain about.
    let again = sync(&mut admin, true)?;
    assert!(
        again.ok && again.errors.is_empty() && again.changed == 0,
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_users_name_goes_to_the_new_ad_user_and_a_removed_record_takes_no_device(
) -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Reuse", &["rus-old", "rus-quick"])?;
    let daemon =
        Daemon::start(&dc.directory_config("corp", LDAPS, &base, "removed_retention_days = 30"))?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(20).await;
    let old = enroll_existing(&api, "rus-old", "phone").await?;
    let quick = enroll_existing(&api, "rus-quick", "phone").await?;
    let old_id = id_of(&mut admin, "rus-old")?;
    let quick_id = id_of(&mut admin, "rus-quick")?;

    // rus-old is deleted and synced as removed; its record keeps the name until someone has it.
    dc.modify(&format!("dn: CN=rus-old,{base}\nchangetype: delete\n\n"))?;
    let removed = sync(&mut admin, false)?;
    assert_eq!(removed.removed, 1, "{removed:?}");
    let refused = api
        .post("/api/v1/users/rus-old/totp", &json!({"label": "new phone"}))
        .await?;
    assert_eq!(refused.status, 409, "{}", refused.raw);
    assert_eq!(refused.body["error"]["code"], "conflict", "{}", refused.raw);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("removed")),
        "{}",
        refused.raw
    );

    // A new AD user gets the name, after a sync (rus-old) and within one (rus-quick, deleted and
    // created again between two syncs).
    let new_user = |cn: &str, name: &str| {
        format!("dn: CN={cn},{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\nuserPrincipalName: {name}@corp.example.test\nuserAccountControl: 544\n\n")
    };
    dc.modify(&format!(
        "{}dn: CN=rus-quick,{base}\nchangetype: delete\n\n{}",
        new_user("rus-old-2", "rus-old"),
        new_user("rus-quick-2", "rus-quick")
    ))?;
    let status = sync(&mut admin, false)?;
    assert!(status.ok && status.failed == 0, "{status:?}");
    assert_eq!((status.added, status.removed), (2, 1), "{status:?}");
    for (name, was, cn) in [
        ("rus-old", &old_id, "rus-old-2"),
        ("rus-quick", &quick_id, "rus-quick-2"),
    ] {
        let now = user(&mut admin, name)?.ok_or_else(|| anyhow!("{name} not synced"))?;
        assert_ne!(Some(&now.id), was.as_ref(), "{name} is a new record");
        assert!(now.devices.is_empty(), "{name}: {now:?}");
        assert!(
            now.directory
                .as_ref()
                .is_some_and(|d| d.removed_at.is_none() && d.dn.starts_with(&format!("CN={cn},"))),
            "{now:?}"
        );
    }
    // The deleted users' codes open nothing; their records keep their history under their GUID.
    step_margin(20).await;
    assert_eq!(verdict(&api, "rus-old", &old.secret, 0).await?, "reject");
    assert_eq!(
        verdict(&api, "rus-quick", &quick.secret, 0).await?,
        "reject"
    );
    let released = match admin.ok(&AdminRequest::AuditSearch {
        filter: AuditFilter {
            action: Some("directory_name_released".into()),
            ..AuditFilter::default()
        },
    })? {
        AdminReply::Audit { events } => events,
        other => anyhow::bail!("unexpected {other:?}"),
    };
    assert_eq!(
        released.len(),
        4,
        "two usernames and two UPNs: {released:?}"
    );
    let kept = released
        .iter()
        .find(|e| e.user.as_deref() == Some("rus-old"))
        .and_then(|e| e.detail.as_deref())
        .and_then(|d| d.split(" now=").nth(1))
        .ok_or_else(|| anyhow!("no release of rus-old: {released:?}"))?;
    let record = user(&mut admin, kept)?.ok_or_else(|| anyhow!("{kept} not found"))?;
    assert_eq!(Some(record.id), old_id);
    assert!(record.directory.is_some_and(|d| d.removed_at.is_some()));

    // The new rus-old enrolls and verifies as themselves.
    let fresh = enroll_existing(&api, "rus-old", "phone").await?;
    assert_eq!(verdict(&api, "rus-old", &fresh.secret, 0).await?, "accept");
    Ok(())
}

/// The SMS a gateway got for `transaction`: its JSON body's `to`.
async fn sms_to(sms: &Gateway, transaction: &str, count: usize) -> Result<String> {
    let path = format!("/send?ref={transaction}");
    let received = sms.wait_for(count, WAIT).await?;
    let request = received
        .iter()
        .find(|r| r.path == path)
        .ok_or_else(|| anyhow!("no request for {path}: {received:?}"))?;
    let body: serde_json::Value = serde_json::from_str(&request.body)?;
    Ok(body["to"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_phone_numbers_reach_the_gateway_in_e164_and_unusable_ones_are_shown() -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Phones", &["tel-de", "tel-us", "tel-bad"])?;
    dc.modify(&format!(
        "dn: CN=tel-de,{base}\nchangetype: modify\nreplace: mobile\nmobile: +49 (0) 170 123-45-67\n\n\
         dn: CN=tel-us,{base}\nchangetype: modify\nreplace: mobile\nmobile: +1 (555) 010-0000 ext. 42\n\n\
         dn: CN=tel-bad,{base}\nchangetype: modify\nreplace: mobile\nmobile: +999 44 123\n\n"
    ))?;
    let dir = twofold_tests::TempDir::new("ad-phones")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let voice = Gateway::start(None).await?;
    let daemon = Daemon::start(&format!(
        "{}{}",
        plugin_config(dir.path(), &ca, &sms, &voice)?,
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let api = client(&daemon).await?;
    let de = challenge(&api, "tel-de", "sms").await?;
    let us = challenge(&api, "tel-us", "sms").await?;
    let tx = |c: &serde_json::Value| c["transaction_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(sms_to(&sms, &tx(&de), 2).await?, "+491701234567");
    assert_eq!(sms_to(&sms, &tx(&us), 2).await?, "+15550100000");
    // A number no code can reach: refused with the reason, nothing sent.
    let bad = api
        .post(
            "/api/v1/challenge",
            &json!({"user": "tel-bad", "channel": "sms"}),
        )
        .await?;
    assert_eq!(bad.status, 409, "{}", bad.raw);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be dialled") && m.contains("no such country code")),
        "{}",
        bad.raw
    );
    // user show says how each number is dialled, in words and in JSON.
    let shown = user(&mut admin, "tel-de")?.ok_or_else(|| anyhow!("tel-de"))?;
    assert_eq!(
        shown.mobile_dialled,
        Some(DialledNumber::E164 {
            number: "+491701234567".into()
        })
    );
    let bad_view = user(&mut admin, "tel-bad")?.ok_or_else(|| anyhow!("tel-bad"))?;
    assert!(
        matches!(&bad_view.mobile_dialled, Some(DialledNumber::Unusable { reason }) if reason.contains("no such country code")),
        "{bad_view:?}"
    );
    let cli = std::process::Command::new(twofold_tests::workspace_binary("twofold-admin")?)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(["user", "show", "tel-us"])
        .output()?;
    let text = String::from_utf8(cli.stdout)?;
    assert!(
        text.contains("+1 (555) 010-0000 ext. 42   (dialled +15550100000)"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_mail_domains_are_idna_encoded_and_a_relay_without_smtputf8_fails_at_once(
) -> Result<()> {
    let dir = twofold_tests::TempDir::new("idna-mail")?;
    let ca = TestCa::create(dir.path())?;
    // A relay that does not offer SMTPUTF8, as many still do not.
    let smtp = SmtpServer::start_with(dir.path(), &ca, false)?;
    let daemon = Daemon::start(&format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nretry_initial_seconds = 1\nmax_attempts = 5\n{}",
        email_config(&smtp, &ca)
    ))?;
    let mut admin = daemon.admin()?;
    for (name, email) in [
        ("idn-anna", "anna@bücher.example"),
        ("idn-jurgen", "jürgen@bücher.example"),
    ] {
        admin.ok(&AdminRequest::UserCreate(NewUser {
            username: name.to_owned(),
            email: Some(email.to_owned()),
            ..NewUser::default()
        }))?;
    }
    let api = client(&daemon).await?;
    let anna = challenge(&api, "idn-anna", "email").await?;
    let mail = smtp.wait_for(1, WAIT).await?;
    assert!(
        mail[0].contains("X-Envelope-To: anna@xn--bcher-kva.example"),
        "{}",
        mail[0]
    );
    let settled_anna = settled(
        &mut admin,
        anna["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    assert_eq!(settled_anna.state, DeliveryState::Delivered);
    // The local part needs SMTPUTF8: failed after one attempt, with the reason, not retried.
    let jurgen = challenge(&api, "idn-jurgen", "email").await?;
    let failed = settled(
        &mut admin,
        jurgen["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    assert_eq!(failed.state, DeliveryState::Failed, "{failed:?}");
    assert_eq!(failed.attempts.len(), 1, "{failed:?}");
    assert!(
        format!("{:?}", failed.attempts).contains("SMTPUTF8"),
        "{failed:?}"
    );
    assert_eq!(smtp.messages()?.len(), 1);
    Ok(())
}
