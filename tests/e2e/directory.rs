//! Active Directory sync against a real Samba AD DC over LDAPS and StartTLS, and the admin roles that
//! AD groups give.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use twofold_tests::samba::{shared_dc, SambaDc, BASE_DN, BULK_USERS};
use twofold_tests::{enroll_existing, oathtool, Admin, Daemon};
use twofold_wire::admin::{
    AdminAnswer, AdminReply, AdminRequest, AuditEvent, AuditFilter, SyncStatus, UserView,
};
use twofold_wire::policy::{RestoreRule, TwoFactorRule};
use twofold_wire::TwoFactorState;

use crate::step_margin;

pub(crate) const LDAPS: &str = "ldaps://127.0.0.1:636";
const STARTTLS: &str = "ldap://127.0.0.1:389";

pub(crate) fn sync(admin: &mut Admin, full: bool) -> Result<SyncStatus> {
    match admin.ok(&AdminRequest::DirectorySync {
        domain: Some("corp".into()),
        full,
    })? {
        AdminReply::DirectoryStatus { mut domains } if domains.len() == 1 => Ok(domains.remove(0)),
        other => bail!("unexpected {other:?}"),
    }
}

pub(crate) fn user(admin: &mut Admin, name: &str) -> Result<Option<UserView>> {
    match admin.call(&AdminRequest::UserShow { user: name.into() })? {
        AdminAnswer::Ok { reply } => match *reply {
            AdminReply::User(u) => Ok(Some(u)),
            other => bail!("unexpected {other:?}"),
        },
        AdminAnswer::Error { error } if error.code == "not_found" => Ok(None),
        AdminAnswer::Error { error } => bail!("{error:?}"),
    }
}

/// An OU with `users` (sAMAccountName = cn), created over LDAP.
pub(crate) fn make_ou(dc: &SambaDc, ou: &str, users: &[&str]) -> Result<String> {
    let base = format!("OU={ou},{BASE_DN}");
    let mut ldif = format!("dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    for u in users {
        ldif.push_str(&format!(
            "dn: CN={u},{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: {u}\nuserPrincipalName: {u}@corp.example.test\nmail: {u}@corp.example.test\nmobile: +41 79 100 00 01\nuserAccountControl: 544\n\n"
        ));
    }
    dc.modify(&ldif)?;
    Ok(base)
}

#[tokio::test]
async fn a_full_sync_pages_through_more_than_1000_users() -> Result<()> {
    let dc = shared_dc()?;
    let base = format!("OU=Bulk,{BASE_DN}");
    let daemon = Daemon::start(&dc.directory_config("corp", LDAPS, &base, "page_size = 400"))?;
    let mut admin = daemon.admin()?;
    let status = sync(&mut admin, true)?;
    assert!(status.ok, "{status:?}");
    assert_eq!(status.mode, "full");
    assert_eq!(status.entries as usize, BULK_USERS, "{status:?}");
    // 1200 entries at 400 a page: the client asked page by page (Samba would have sent them all at once).
    assert!(status.pages >= 3, "paged: {status:?}");
    assert_eq!(status.removed, 0);
    // The DC's share of the time is told apart: a real wait, within the whole.
    assert!(
        status.directory_ms > 0 && status.directory_ms <= status.duration_ms,
        "{status:?}"
    );
    let u =
        user(&mut admin, "bulk00007")?.ok_or_else(|| anyhow::anyhow!("bulk00007 not synced"))?;
    assert_eq!(u.display_name.as_deref(), Some("Jürgen Ærø 7"));
    assert_eq!(u.email.as_deref(), Some("bulk00007@corp.example.test"));
    assert_eq!(u.source, "ad:corp");
    assert!(
        u.directory
            .as_ref()
            .is_some_and(|d| d.guid.len() == 36 && d.dn.starts_with("CN=bulk00007,OU=Bulk")),
        "{u:?}"
    );
    let no_mail =
        user(&mut admin, "bulk00010")?.ok_or_else(|| anyhow::anyhow!("bulk00010 not synced"))?;
    assert_eq!(
        no_mail.email, None,
        "users without mail are synced without one"
    );
    // Found by UPN too.
    assert!(user(&mut admin, "BULK00011@corp.example.test")?.is_some());
    // A second full sync changes nothing.
    let again = sync(&mut admin, true)?;
    assert_eq!(
        (again.added, again.changed, again.removed),
        (0, 0, 0),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn incremental_sync_follows_renames_moves_disables_deletes_groups_and_attributes(
) -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(
        dc,
        "Inc",
        &["inc-alice", "inc-bob", "inc-carol", "inc-dave", "inc-erin"],
    )?;
    dc.modify(&format!("dn: OU=Sub,{base}\nchangetype: add\nobjectClass: organizationalUnit\n\ndn: CN=inc-group,{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: inc-group\n\n"))?;
    // Members of inc-group must use 2FA: group membership from AD decides the policy.
    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n[[policy.group]]\ngroup = \"inc-group\"\ntwo_factor = \"required\"\nrestore = \"prohibited\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", LDAPS, &base, "removed_retention_days = 30")
    ))?;
    let mut admin = daemon.admin()?;
    // The daemon syncs on start too; this full sync waits for that one and then finds nothing new.
    let first = sync(&mut admin, true)?;
    assert!(first.ok, "{first:?}");
    assert_eq!(first.entries, 5, "{first:?}");
    for name in ["inc-alice", "inc-bob", "inc-carol", "inc-dave", "inc-erin"] {
        assert!(user(&mut admin, name)?.is_some(), "{name} synced");
    }
    assert_eq!(
        user(&mut admin, "inc-erin")?.map(|u| u.state),
        Some(TwoFactorState::NotEnrolled)
    );
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(12).await;
    // alice and carol enroll authenticators.
    let mut secrets = Vec::new();
    for name in ["inc-alice", "inc-carol", "inc-dave"] {
        secrets.push(enroll_existing(&api, name, "phone").await?.secret);
    }
    let before = |admin: &mut Admin, n: &str| user(admin, n).map(|u| u.map(|u| u.id));
    let alice_id = before(&mut admin, "inc-alice")?;
    let bob_id = before(&mut admin, "inc-bob")?;

    dc.modify(&format!(
        "dn: CN=inc-alice,{base}\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: inc-alicia\n-\nreplace: userPrincipalName\nuserPrincipalName: inc-alicia@corp.example.test\n\n\
         dn: CN=inc-alice,{base}\nchangetype: modrdn\nnewrdn: CN=inc-alicia\ndeleteoldrdn: 1\n\n\
         dn: CN=inc-bob,{base}\nchangetype: modrdn\nnewrdn: CN=inc-bob\ndeleteoldrdn: 1\nnewsuperior: OU=Sub,{base}\n\n\
         dn: CN=inc-carol,{base}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n\n\
         dn: CN=inc-dave,{base}\nchangetype: delete\n\n\
         dn: CN=inc-erin,{base}\nchangetype: modify\nreplace: mail\nmail: erin.new@corp.example.test\n-\nreplace: mobile\nmobile: +41 79 555 55 55\n\n\
         dn: CN=inc-group,{base}\nchangetype: modify\nadd: member\nmember: CN=inc-erin,{base}\n\n"
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok, "{inc:?}");
    assert_eq!(inc.mode, "incremental");
    assert_eq!(inc.added, 0, "{inc:?}");
    assert_eq!(inc.removed, 1, "{inc:?}");
    assert_eq!(inc.disabled, 1, "{inc:?}");
    // Users, groups and deleted objects: three searches, the last two on a second connection.
    assert!(inc.pages >= 3, "{inc:?}");
    assert!(inc.directory_ms <= inc.duration_ms, "{inc:?}");

    // Renamed: same record, same device, found by the new name only; the code still works.
    assert!(user(&mut admin, "inc-alice")?.is_none());
    let alicia =
        user(&mut admin, "inc-alicia")?.ok_or_else(|| anyhow::anyhow!("rename not synced"))?;
    assert_eq!(Some(alicia.id.clone()), alice_id);
    assert_eq!(alicia.devices.len(), 1);
    let ok = api
        .post(
            "/api/v1/verify",
            &json!({"user": "inc-alicia", "code": oathtool(&secrets[0], 0, &[])?}),
        )
        .await?;
    assert_eq!(ok.body["result"], "accept", "{}", ok.raw);
    // Moved: same record, new DN.
    let bob = user(&mut admin, "inc-bob")?.ok_or_else(|| anyhow::anyhow!("bob lost"))?;
    assert_eq!(Some(bob.id.clone()), bob_id);
    assert!(
        bob.directory
            .as_ref()
            .is_some_and(|d| d.dn.starts_with("CN=inc-bob,OU=Sub,")),
        "{bob:?}"
    );
    // Disabled: devices kept, codes refused.
    let carol = user(&mut admin, "inc-carol")?.ok_or_else(|| anyhow::anyhow!("carol lost"))?;
    assert!(carol.directory.as_ref().is_some_and(|d| d.account_disabled));
    assert_eq!(carol.devices.len(), 1, "a disabled user keeps devices");
    let refused = api
        .post(
            "/api/v1/verify",
            &json!({"user": "inc-carol", "code": oathtool(&secrets[1], 0, &[])?}),
        )
        .await?;
    assert_eq!(refused.body["result"], "reject", "{}", refused.raw);
    // Deleted: marked removed, devices revoked, codes refused.
    let dave =
        user(&mut admin, "inc-dave")?.ok_or_else(|| anyhow::anyhow!("dave purged too early"))?;
    assert!(
        dave.directory
            .as_ref()
            .is_some_and(|d| d.removed_at.is_some()),
        "{dave:?}"
    );
    assert!(dave.devices.is_empty(), "devices revoked");
    let gone = api
        .post(
            "/api/v1/verify",
            &json!({"user": "inc-dave", "code": oathtool(&secrets[2], 0, &[])?}),
        )
        .await?;
    assert_eq!(gone.body["result"], "reject");
    // New mail and mobile, and the group membership that only bumped the group.
    let erin = user(&mut admin, "inc-erin")?.ok_or_else(|| anyhow::anyhow!("erin lost"))?;
    assert_eq!(erin.email.as_deref(), Some("erin.new@corp.example.test"));
    assert_eq!(erin.mobile.as_deref(), Some("+41 79 555 55 55"));
    // The primary group counts as AD counts it, and so does Builtin\Users, which Domain Users is in.
    let primary = [
        format!("CN=Domain Users,CN=Users,{BASE_DN}"),
        format!("CN=Users,CN=Builtin,{BASE_DN}"),
    ];
    let mut expected = primary.to_vec();
    expected.push(format!("CN=inc-group,{base}"));
    expected.sort();
    assert_eq!(erin.groups, expected);
    assert_eq!(
        erin.state,
        TwoFactorState::EnrollmentRequired,
        "the group's policy applies"
    );
    let policy = erin
        .policy
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no policy shown"))?;
    assert_eq!(
        (policy.two_factor, policy.restore),
        (TwoFactorRule::Required, RestoreRule::Prohibited)
    );
    assert_eq!(policy.from_groups, vec!["inc-group".to_owned()]);

    // Out of the group again.
    dc.modify(&format!("dn: CN=inc-group,{base}\nchangetype: modify\ndelete: member\nmember: CN=inc-erin,{base}\n\n"))?;
    let out = sync(&mut admin, false)?;
    assert!(out.ok, "{out:?}");
    let erin = user(&mut admin, "inc-erin")?.ok_or_else(|| anyhow::anyhow!("erin lost"))?;
    assert_eq!(erin.groups, primary.to_vec());
    assert_eq!(
        erin.state,
        TwoFactorState::NotEnrolled,
        "out of the group, the default applies again"
    );

    // Every change is in the audit log.
    let AdminReply::Audit { events } = admin.ok(&AdminRequest::AuditTail { limit: Some(200) })?
    else {
        bail!("no audit")
    };
    for action in [
        "directory_add",
        "directory_update",
        "directory_disable",
        "directory_remove",
        "directory_group",
        "directory_sync",
    ] {
        assert!(
            events.iter().any(|e| e.action == action),
            "{action} audited"
        );
    }
    Ok(())
}

#[tokio::test]
async fn starttls_works_and_plain_ldap_needs_saying_so() -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Tls", &["tls-user"])?;
    let daemon = Daemon::start(&dc.directory_config("corp", STARTTLS, &base, "starttls = true"))?;
    let mut admin = daemon.admin()?;
    let status = sync(&mut admin, true)?;
    assert!(status.ok, "{status:?}");
    assert_eq!(status.entries, 1);
    assert_eq!(status.server.as_deref(), Some(STARTTLS));
    assert!(user(&mut admin, "tls-user")?.is_some());

    // Without starttls or allow_plain_ldap, the config itself is refused, with the line.
    let dir = twofold_tests::TempDir::new("twofold-plain")?;
    let path = dir.path().join("plain.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n{}",
            dc.directory_config("corp", STARTTLS, &base, "")
        ),
    )?;
    let out = std::process::Command::new(twofold_tests::workspace_binary("twofoldd")?)
        .arg("check-config")
        .arg(&path)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains(":4: ") && stderr.contains("plain LDAP"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_or_an_untrusted_certificate_fails_clearly_and_keeps_the_copy(
) -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Fail", &["fail-user"])?;
    let wrong_password = dc.dir.join("wrong-password");
    std::fs::write(&wrong_password, "not the password\n")?;
    let good = dc.directory_config("corp", LDAPS, &base, "");
    let mut daemon = Daemon::start(&good)?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let kept = user(&mut admin, "fail-user")?.ok_or_else(|| anyhow::anyhow!("not synced"))?;

    for (case, key, value, expect) in [
        (
            "wrong password",
            "bind_password_file",
            wrong_password.display().to_string(),
            "52e",
        ),
        (
            "untrusted certificate",
            "ca_file",
            dc.wrong_ca_cert.display().to_string(),
            "certificate",
        ),
    ] {
        // The same data folder, one setting broken.
        let broken: Vec<String> = good
            .lines()
            .map(|l| {
                if l.starts_with(key) {
                    format!("{key} = \"{value}\"")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        daemon.restart_with(&broken.join("\n"))?;
        let mut admin = daemon.admin()?;
        let failed = sync(&mut admin, true)?;
        assert!(!failed.ok, "{case}: {failed:?}");
        assert!(
            failed.errors.iter().any(|e| e.contains(expect)),
            "{case}: {:?}",
            failed.errors
        );
        assert!(
            failed.last_success.is_some(),
            "{case}: the last success is still reported"
        );
        let still = user(&mut admin, "fail-user")?;
        assert_eq!(
            still.as_ref(),
            Some(&kept),
            "{case}: the last good copy is kept unchanged"
        );
    }
    Ok(())
}

#[tokio::test]
async fn controllers_are_tried_in_turn_overrides_win_and_removed_users_are_purged_after_retention(
) -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(dc, "Misc", &["misc-jürgen", "misc-gone"])?;
    // The first controller does not answer; the second does.
    let cfg = dc
        .directory_config("corp", LDAPS, &base, "removed_retention_days = 0")
        .replace(
            &format!("urls = [\"{LDAPS}\"]"),
            &format!("urls = [\"ldaps://127.0.0.1:1\", \"{LDAPS}\"]"),
        );
    let daemon = Daemon::start(&cfg)?;
    let mut admin = daemon.admin()?;
    let status = sync(&mut admin, true)?;
    assert!(status.ok, "{status:?}");
    assert_eq!(status.server.as_deref(), Some(LDAPS));
    let jurgen = user(&mut admin, "misc-jürgen")?
        .ok_or_else(|| anyhow::anyhow!("non-ASCII username not synced"))?;
    assert_eq!(jurgen.mobile.as_deref(), Some("+41 79 100 00 01"));

    // An admin's number wins over the directory's, across syncs, until cleared.
    admin.ok(&AdminRequest::UserSetPhoneOverride {
        user: "misc-jürgen".into(),
        mobile: Some("+41 78 999 99 99".into()),
        voice: None,
    })?;
    dc.modify(&format!("dn: CN=misc-jürgen,{base}\nchangetype: modify\nreplace: mobile\nmobile: +41 79 222 22 22\n\n"))?;
    assert!(sync(&mut admin, false)?.ok);
    let u = user(&mut admin, "misc-jürgen")?.ok_or_else(|| anyhow::anyhow!("lost"))?;
    assert_eq!(
        (u.mobile.as_deref(), u.mobile_override.as_deref()),
        (Some("+41 79 222 22 22"), Some("+41 78 999 99 99"))
    );
    admin.ok(&AdminRequest::UserSetPhoneOverride {
        user: "misc-jürgen".into(),
        mobile: None,
        voice: None,
    })?;
    assert!(sync(&mut admin, false)?.ok);
    let u = user(&mut admin, "misc-jürgen")?.ok_or_else(|| anyhow::anyhow!("lost"))?;
    assert_eq!(
        (u.mobile.as_deref(), u.mobile_override),
        (Some("+41 79 222 22 22"), None)
    );

    // With no retention, a user deleted in AD is removed and purged in the same sync, and audited.
    dc.modify(&format!("dn: CN=misc-gone,{base}\nchangetype: delete\n\n"))?;
    let gone = sync(&mut admin, false)?;
    assert_eq!((gone.removed, gone.purged), (1, 1), "{gone:?}");
    assert!(user(&mut admin, "misc-gone")?.is_none());
    let AdminReply::Audit { events } = admin.ok(&AdminRequest::AuditTail { limit: Some(100) })?
    else {
        bail!("no audit")
    };
    assert!(events
        .iter()
        .any(|e| e.action == "directory_purge" && e.user.as_deref() == Some("misc-gone")));
    Ok(())
}

/// `twofold-admin` as the Unix user `login`: answers (exit code, stdout, stderr).
pub(crate) fn admin_as(
    binary: &std::path::Path,
    socket: &std::path::Path,
    login: &str,
    args: &[&str],
) -> Result<(Option<i32>, String, String)> {
    let out = crate::console::as_user(binary, socket, login, args)?;
    Ok((
        out.status.code(),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

pub(crate) fn audit(admin: &mut Admin, filter: AuditFilter) -> Result<Vec<AuditEvent>> {
    match admin.ok(&AdminRequest::AuditSearch { filter })? {
        AdminReply::Audit { events } => Ok(events),
        other => bail!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn ad_groups_give_admin_roles_to_the_unix_login_of_the_same_name() -> Result<()> {
    if !crate::console::nix_is_root() {
        bail!("the AD role test creates Unix users: run it as root (CI does)");
    }
    let dc = shared_dc()?;
    let tag = std::process::id() % 100_000;
    let (hd, adm) = (format!("tfadhd{tag}"), format!("tfadadm{tag}"));
    let base = make_ou(dc, "RolesAD", &[&hd, &adm])?;
    // The helpdesk group's CN has a comma (escaped in its DN) and a letter outside ASCII.
    let (hd_group, admin_group) = (
        format!("CN=TF Helpdesk\\, Zürich,{base}"),
        format!("CN=TF Admins,{base}"),
    );
    // adm is in both groups (the higher role wins), hd in the helpdesk group only.
    dc.modify(&format!(
        "dn: {hd_group}\nchangetype: add\nobjectClass: group\nsAMAccountName: tfad-hd-{tag}\nmember: CN={hd},{base}\nmember: CN={adm},{base}\n\n\
         dn: {admin_group}\nchangetype: add\nobjectClass: group\nsAMAccountName: tfad-adm-{tag}\nmember: CN={adm},{base}\n\n"
    ))?;

    // Unix logins named after the AD users, in the socket's group and in no role group.
    let socket_group = format!("tfadsock{tag}");
    let mut accounts = crate::console::Accounts::new();
    accounts.group(&socket_group)?;
    let hd_uid = accounts.user(&hd, &socket_group, &[])?;
    let adm_uid = accounts.user(&adm, &socket_group, &[])?;
    let run_dir = twofold_tests::TempDir::new("twofold-adroles")?;
    let socket = run_dir.path().join("admin.sock");
    let binary = run_dir.path().join("twofold-admin");
    std::fs::copy(twofold_tests::workspace_binary("twofold-admin")?, &binary)?;
    // The helpdesk group by its CN, in other case, the admin group by its DN.
    let daemon = Daemon::start(&format!(
        "\n[admin]\nsocket = \"{}\"\ngroup = \"{socket_group}\"\n\n[admin.roles.directory]\nhelpdesk = [\"tf helpdesk, ZÜRICH\"]\nadmin = [\"{admin_group}\"]\n{}",
        socket.display(),
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut root = Admin::connect(&socket)?;
    assert!(sync(&mut root, true)?.ok);
    let api = daemon.api_client()?.with_key(&root.api_key("vpn")?);
    let zed = twofold_tests::enroll(&mut root, &api, "zed").await?;

    // Helpdesk by AD group: may look up, may not reset, and is told the role that would.
    let (code, who, _) = admin_as(&binary, &socket, &hd, &["whoami"])?;
    assert_eq!(code, Some(0));
    assert!(
        who.contains(&format!("uid {hd_uid} ({hd})  role helpdesk  granted by AD group {hd_group} to AD user corp/{hd}")),
        "{who}"
    );
    let (code, shown, stderr) = admin_as(&binary, &socket, &hd, &["user", "show", "zed"])?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(shown.contains(&zed.device), "{shown}");
    let (code, _, stderr) = admin_as(&binary, &socket, &hd, &["user", "reset-2fa", "zed"])?;
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        format!(
            "twofold-admin: reset 2FA needs the admin role; uid {hd_uid} is helpdesk (forbidden)"
        )
    );

    // Admin by AD group (also in the helpdesk group: the higher role wins): the reset goes through.
    let (_, who, _) = admin_as(&binary, &socket, &adm, &["whoami"])?;
    assert!(
        who.contains(&format!(
            "role admin  granted by AD group {admin_group} to AD user corp/{adm}"
        )),
        "{who}"
    );
    let (code, _, stderr) = admin_as(&binary, &socket, &adm, &["user", "reset-2fa", "zed"])?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(user(&mut root, "zed")?.is_some_and(|u| u.devices.is_empty()));

    // The audit names the AD user as the actor, and a refusal the group that gave the role held.
    let reset = audit(
        &mut root,
        AuditFilter {
            action: Some("two_factor_reset".into()),
            ..AuditFilter::default()
        },
    )?;
    assert_eq!(
        reset.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        vec![format!("admin:uid={adm_uid},ad=corp/{adm}")],
        "{reset:?}"
    );
    let refused = audit(
        &mut root,
        AuditFilter {
            outcome: Some("forbidden".into()),
            ..AuditFilter::default()
        },
    )?;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].actor, format!("admin:uid={hd_uid},ad=corp/{hd}"));
    assert_eq!(
        refused[0].detail.as_deref(),
        Some(format!("needs=admin role=helpdesk granted_by=AD group {hd_group}").as_str())
    );

    // Out of the admin group in AD: after the sync, adm's next connection is helpdesk again.
    dc.modify(&format!(
        "dn: {admin_group}\nchangetype: modify\ndelete: member\nmember: CN={adm},{base}\n\n"
    ))?;
    // Before the sync the copy still says admin: the role follows the synced groups.
    let (_, who, _) = admin_as(&binary, &socket, &adm, &["whoami"])?;
    assert!(who.contains("role admin "), "{who}");
    assert!(sync(&mut root, false)?.ok);
    let (_, who, _) = admin_as(&binary, &socket, &adm, &["whoami"])?;
    assert!(
        who.contains(&format!("role helpdesk  granted by AD group {hd_group}")),
        "{who}"
    );
    let (code, _, stderr) = admin_as(&binary, &socket, &adm, &["user", "reset-2fa", "zed"])?;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("needs the admin role; uid {adm_uid} is helpdesk")),
        "{stderr}"
    );

    // Disabled in AD: no role from AD groups at all, and told why.
    dc.modify(&format!(
        "dn: CN={hd},{base}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n\n"
    ))?;
    assert!(sync(&mut root, false)?.ok);
    let (code, _, stderr) = admin_as(&binary, &socket, &hd, &["user", "show", "zed"])?;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("uid {hd_uid} has no Twofold role"))
            && stderr.contains(&format!("AD user corp/{hd} is disabled or removed")),
        "{stderr}"
    );
    drop(daemon);
    Ok(())
}

#[tokio::test]
async fn escaped_and_unicode_group_names_choose_the_policy() -> Result<()> {
    let dc = shared_dc()?;
    let users = ["esc-sales", "esc-admins", "esc-proj", "esc-sued"];
    let base = make_ou(dc, "Escaped", &users)?;
    // (CN as AD escapes it in a DN, sAMAccountName, member)
    let groups = [
        ("Sales\\, EMEA", "esc-g1", "esc-sales"),
        ("\\#Admins", "esc-g2", "esc-admins"),
        ("Proj (Alpha)* \\\\ Team", "esc-g3", "esc-proj"),
        ("Vertrieb Süd", "esc-g4", "esc-sued"),
    ];
    let mut ldif = String::new();
    for (cn, account, member) in groups {
        ldif.push_str(&format!(
            "dn: CN={cn},{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: {account}\nmember: CN={member},{base}\n\n"
        ));
    }
    dc.modify(&ldif)?;
    // Each entry as an admin types the group's name, one in another case; the default is optional.
    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n\
        [[policy.group]]\ngroup = \"Sales, EMEA\"\ntwo_factor = \"required\"\n\n\
        [[policy.group]]\ngroup = \"#Admins\"\ntwo_factor = \"off\"\n\n\
        [[policy.group]]\ngroup = \"Proj (Alpha)* \\\\ Team\"\ntwo_factor = \"required\"\n\n\
        [[policy.group]]\ngroup = \"VERTRIEB SÜD\"\ntwo_factor = \"off\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    let status = sync(&mut admin, true)?;
    assert!(status.ok, "{status:?}");
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    for (name, rule) in [
        ("esc-sales", "required"),
        ("esc-admins", "off"),
        ("esc-proj", "required"),
        ("esc-sued", "off"),
    ] {
        let state = api.get(&format!("/api/v1/users/{name}/two-factor")).await?;
        assert_eq!(state.body["rule"], rule, "{name}: {}", state.raw);
    }
    // A live edit naming the group in other case edits its entry (before, ASCII-only folding made it a
    // second entry, refused as a duplicate).
    let edited = admin.call(&AdminRequest::PolicyGroupSet {
        group: "vertrieb süd".into(),
        key: "two_factor".into(),
        value: Some("required".into()),
    })?;
    assert!(matches!(edited, AdminAnswer::Ok { .. }), "{edited:?}");
    let state = api.get("/api/v1/users/esc-sued/two-factor").await?;
    assert_eq!(state.body["rule"], "required", "{}", state.raw);
    Ok(())
}

/// A DC whose certificate is a CA's own (self-signed, CA:TRUE), given as `ca_file` too: rustls refuses it
/// as `CaUsedAsEndEntity`, and the sync status says in words what is wrong and what to give instead. A TLS
/// listener on 127.0.0.1 presenting that certificate stands in for the DC: the handshake is all there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dc_certificate_that_is_its_own_ca_is_explained() -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

    let dir = twofold_tests::TempDir::new("dc-own-ca")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    let cert_file = dir.path().join("dc-self-signed-ca.pem");
    std::fs::write(&cert_file, cert.pem())?;
    let password_file = dir.path().join("bind-password");
    std::fs::write(&password_file, "unused\n")?;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.pem().as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let serving = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // The client aborts the handshake; nothing else is served.
            let _ = acceptor.accept(tcp).await;
        }
    });

    let daemon = Daemon::start(&format!(
        "\n[[directory]]\nname = \"corp\"\nurls = [\"ldaps://127.0.0.1:{port}\"]\nca_file = \"{}\"\nbind_dn = \"CN=svc,DC=corp,DC=example\"\nbind_password_file = \"{}\"\nsync_interval_seconds = 3600\n",
        cert_file.display(),
        password_file.display()
    ))?;
    let mut admin = daemon.admin()?;
    let failed = sync(&mut admin, true)?;
    serving.abort();
    assert!(!failed.ok, "{failed:?}");
    assert!(
        failed.errors.iter().any(|e| e.contains("CaUsedAsEndEntity")
            && e.contains("presents a CA certificate")
            && e.contains("set ca_file to the CA that issued it")),
        "{:?}",
        failed.errors
    );
    Ok(())
}

/// `systemctl stop` while an admin request is in flight: the request still gets its answer. A DC that
/// accepts and then says nothing keeps an on-demand sync waiting for its 2 s timeout; SIGTERM comes
/// meanwhile. Before, the daemon exited with the request half done and the caller read end-of-file.
#[test]
// Polls a counter and the sync status: neither has anything to wait on.
#[allow(clippy::disallowed_methods)]
fn an_admin_request_in_flight_is_answered_before_the_daemon_stops() -> Result<()> {
    let dir = twofold_tests::TempDir::new("silent-dc")?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.self_signed(&key)?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.pem())?;
    let password_file = dir.path().join("bind-password");
    std::fs::write(&password_file, "unused\n")?;
    // A DC that takes connections and never answers; it counts them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for tcp in listener.incoming().flatten() {
            held.push(tcp);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    let mut daemon = Daemon::start(&format!(
        "\n[[directory]]\nname = \"corp\"\nurls = [\"ldaps://127.0.0.1:{port}\"]\nca_file = \"{}\"\nbind_dn = \"CN=svc,DC=corp,DC=example\"\nbind_password_file = \"{}\"\ntimeout_seconds = 2\nsync_interval_seconds = 3600\n",
        ca_file.display(),
        password_file.display()
    ))?;
    let mut admin = daemon.admin()?;
    // The start-up sync ends first (it holds the domain's sync lock): wait for its status.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while admin
        .ok(&AdminRequest::DirectoryStatus)
        .map(|r| {
            matches!(r, AdminReply::DirectoryStatus { domains } if domains.iter().all(|d| d.last_run.is_some()))
        })
        .ok()
        != Some(true)
    {
        if std::time::Instant::now() > deadline {
            bail!("the start-up sync did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let asking = std::thread::spawn(move || {
        admin.call(&AdminRequest::DirectorySync {
            domain: None,
            full: true,
        })
    });
    // The on-demand sync has reached the DC: it is in flight.
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == before {
        if std::time::Instant::now() > deadline {
            bail!("the on-demand sync never reached the DC");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = daemon.terminate()?;
    let answer = asking
        .join()
        .map_err(|_| anyhow!("the asking thread panicked"))?;
    match answer {
        Ok(AdminAnswer::Ok { reply }) => match *reply {
            AdminReply::DirectoryStatus { domains } => {
                assert!(domains.iter().all(|s| !s.ok), "{domains:?}")
            }
            other => bail!("unexpected {other:?}"),
        },
        other => bail!("the request in flight got no answer: {other:?}"),
    }
    assert_eq!(code, Some(0), "a clean stop");
    Ok(())
}
