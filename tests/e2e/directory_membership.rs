//! Who AD lets in, against the real Samba DC: membership through nested groups and the primary group
//! decides the policy and the admin role, and accounts AD has expired or locked out cannot authenticate.

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use twofold_tests::ranged_ldap::RangedLdap;
use twofold_tests::samba::{shared_dc, SambaDc, BASE_DN};
use twofold_tests::{enroll_existing, oathtool, Admin, Api, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest, AuditFilter};

use crate::directory::{admin_as, audit, make_ou, sync, user, LDAPS};
use crate::step_margin;

/// The 2FA rule the API reports for `name`.
async fn rule(api: &Api, name: &str) -> Result<String> {
    let state = api.get(&format!("/api/v1/users/{name}/two-factor")).await?;
    state.body["rule"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{name}: {}", state.raw))
}

/// A group's primaryGroupToken (its RID), as a user's primaryGroupID names it.
fn primary_group_token(dc: &SambaDc, group_dn: &str) -> Result<String> {
    let out = dc
        .ldap_tool("ldapsearch")
        .args(["-LLL", "-b", group_dn, "-s", "base", "primaryGroupToken"])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| l.strip_prefix("primaryGroupToken: "))
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| anyhow!("no primaryGroupToken for {group_dn}: {text}"))
}

/// The `member` values of a group, as the DC lists them.
fn members(dc: &SambaDc, group_dn: &str) -> Result<Vec<String>> {
    let out = dc
        .ldap_tool("ldapsearch")
        .args([
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-b",
            group_dn,
            "-s",
            "base",
            "member",
        ])
        .output()?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| l.strip_prefix("member: ").map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn nested_and_primary_groups_decide_the_policy_and_follow_incremental_syncs() -> Result<()> {
    let dc = shared_dc()?;
    let people = [
        "nest-deep",
        "nest-direct",
        "nest-none",
        "nest-late",
        "nest-prim",
    ];
    let base = make_ou(dc, "Nested", &people)?;
    let g = |cn: &str| format!("CN={cn},{base}");
    let (vpn, staff, team, late, prim) = (
        g("Nest VPN Users"),
        g("Nest VPN Staff"),
        g("Nest Team"),
        g("Nest Late"),
        g("Nest Primary"),
    );
    // Three deep: nest-deep is in Team, Team in Staff, Staff in VPN Users; VPN Users is in Team too (a
    // cycle). Late stands alone for now; Primary is nest-prim's group (a member first, as AD requires).
    dc.modify(&format!(
        "dn: {vpn}\nchangetype: add\nobjectClass: group\nsAMAccountName: nest-vpn\nmember: {}\n\n\
         dn: {staff}\nchangetype: add\nobjectClass: group\nsAMAccountName: nest-staff\n\n\
         dn: {team}\nchangetype: add\nobjectClass: group\nsAMAccountName: nest-team\nmember: {}\n\n\
         dn: {late}\nchangetype: add\nobjectClass: group\nsAMAccountName: nest-late-g\nmember: {}\n\n\
         dn: {prim}\nchangetype: add\nobjectClass: group\nsAMAccountName: nest-prim-g\nmember: {}\n\n\
         dn: {vpn}\nchangetype: modify\nadd: member\nmember: {staff}\n\n\
         dn: {staff}\nchangetype: modify\nadd: member\nmember: {team}\n\n\
         dn: {team}\nchangetype: modify\nadd: member\nmember: {vpn}\n\n",
        g("nest-direct"),
        g("nest-deep"),
        g("nest-late"),
        g("nest-prim"),
    ))?;
    let token = primary_group_token(dc, &prim)?;
    dc.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: primaryGroupID\nprimaryGroupID: {token}\n\n",
        g("nest-prim")
    ))?;
    // As AD does, the primary group is not in `member`: drop the link if the DC kept it.
    if members(dc, &prim)?
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&g("nest-prim")))
    {
        dc.modify(&format!(
            "dn: {prim}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            g("nest-prim")
        ))?;
    }
    assert!(
        members(dc, &prim)?.is_empty(),
        "nest-prim only by primaryGroupID"
    );

    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n\
        [[policy.group]]\ngroup = \"Nest VPN Users\"\ntwo_factor = \"required\"\n\n\
        [[policy.group]]\ngroup = \"Nest Primary\"\ntwo_factor = \"required\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    // The cycle ends: the sync answers.
    let full = sync(&mut admin, true)?;
    assert!(full.ok, "{full:?}");
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    for (name, expected) in [
        ("nest-deep", "required"),
        ("nest-direct", "required"),
        ("nest-prim", "required"),
        ("nest-none", "optional"),
        ("nest-late", "optional"),
    ] {
        assert_eq!(rule(&api, name).await?, expected, "{name}");
    }
    // Each group once, cycle or not, with the primary group (Domain Users) of every other user and
    // Builtin\Users, which Domain Users is in.
    let deep = user(&mut admin, "nest-deep")?.ok_or_else(|| anyhow!("nest-deep not synced"))?;
    let mut expected = vec![
        format!("CN=Domain Users,CN=Users,{BASE_DN}"),
        format!("CN=Users,CN=Builtin,{BASE_DN}"),
        team.clone(),
        staff.clone(),
        vpn.clone(),
    ];
    expected.sort();
    assert_eq!(deep.groups, expected);
    let primary = user(&mut admin, "nest-prim")?.ok_or_else(|| anyhow!("nest-prim not synced"))?;
    // (AD makes the old primary group, Domain Users, an explicit member when the primary changes.)
    assert!(primary.groups.contains(&prim), "{:?}", primary.groups);

    // Nested later: Late goes into Staff, and nest-none into Team. The next incremental sync sees it.
    dc.modify(&format!(
        "dn: {staff}\nchangetype: modify\nadd: member\nmember: {late}\n\n\
         dn: {team}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        g("nest-none")
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    assert_eq!(rule(&api, "nest-late").await?, "required");
    assert_eq!(rule(&api, "nest-none").await?, "required");
    let late_user = user(&mut admin, "nest-late")?.ok_or_else(|| anyhow!("nest-late lost"))?;
    assert!(late_user.groups.contains(&vpn), "{:?}", late_user.groups);

    // Un-nested: Staff leaves VPN Users. Only nest-direct keeps the required policy (and nest-prim).
    dc.modify(&format!(
        "dn: {vpn}\nchangetype: modify\ndelete: member\nmember: {staff}\n\n"
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    for (name, expected) in [
        ("nest-deep", "optional"),
        ("nest-late", "optional"),
        ("nest-none", "optional"),
        ("nest-direct", "required"),
        ("nest-prim", "required"),
    ] {
        assert_eq!(rule(&api, name).await?, expected, "{name} after un-nesting");
    }
    // A full sync agrees with what the incremental ones built.
    let again = sync(&mut admin, true)?;
    assert_eq!((again.changed, again.added), (0, 0), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn a_nested_ad_group_gives_its_admin_role() -> Result<()> {
    if !crate::console::nix_is_root() {
        bail!("the AD role test creates Unix users: run it as root (CI does)");
    }
    let dc = shared_dc()?;
    let tag = std::process::id() % 100_000;
    let op = format!("tfnest{tag}");
    let base = make_ou(dc, "RolesNested", &[&op])?;
    let (admins, ops) = (
        format!("CN=TFN Admins,{base}"),
        format!("CN=TFN Ops,{base}"),
    );
    // op is in Ops; Ops is in Admins, which gives the admin role.
    dc.modify(&format!(
        "dn: {ops}\nchangetype: add\nobjectClass: group\nsAMAccountName: tfn-ops-{tag}\nmember: CN={op},{base}\n\n\
         dn: {admins}\nchangetype: add\nobjectClass: group\nsAMAccountName: tfn-adm-{tag}\nmember: {ops}\n\n"
    ))?;
    let socket_group = format!("tfnsock{tag}");
    let mut accounts = crate::console::Accounts::new();
    accounts.group(&socket_group)?;
    accounts.user(&op, &socket_group, &[])?;
    let run_dir = twofold_tests::TempDir::new("twofold-nestroles")?;
    let socket = run_dir.path().join("admin.sock");
    let binary = run_dir.path().join("twofold-admin");
    std::fs::copy(twofold_tests::workspace_binary("twofold-admin")?, &binary)?;
    let _daemon = Daemon::start(&format!(
        "\n[admin]\nsocket = \"{}\"\ngroup = \"{socket_group}\"\n\n[admin.roles.directory]\nadmin = [\"TFN Admins\"]\n{}",
        socket.display(),
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut root = Admin::connect(&socket)?;
    assert!(sync(&mut root, true)?.ok);
    let (code, who, stderr) = admin_as(&binary, &socket, &op, &["whoami"])?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        who.contains(&format!("role admin  granted by AD group {admins}")),
        "{who}"
    );
    // Ops leaves Admins: the role goes with the next incremental sync.
    dc.modify(&format!(
        "dn: {admins}\nchangetype: modify\ndelete: member\nmember: {ops}\n\n"
    ))?;
    assert!(sync(&mut root, false)?.ok);
    let (code, _, stderr) = admin_as(&binary, &socket, &op, &["whoami"])?;
    assert_eq!(code, Some(1), "no role any more: {stderr}");
    Ok(())
}

/// A FILETIME (100 ns since 1601) `seconds` from now.
fn filetime_in(seconds: i64) -> i64 {
    (twofold_tests::unix_now() + seconds + 11_644_473_600) * 10_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_locked_out_accounts_cannot_authenticate_until_cleared() -> Result<()> {
    let dc = shared_dc()?;
    let people = ["exp-ann", "lock-bob", "ok-cid"];
    let base = make_ou(dc, "Expiry", &people)?;
    let config = format!(
        "\n[privacyidea]\nenabled = true\n{}",
        dc.directory_config("corp", LDAPS, &base, "")
    );
    let mut daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    let mut secrets = Vec::new();
    for name in people {
        secrets.push(enroll_existing(&api, name, "phone").await?.secret);
    }

    // ann's account expired yesterday; bob is locked out now (AD stamps lockoutTime when it locks).
    dc.modify(&format!(
        "dn: CN=exp-ann,{base}\nchangetype: modify\nreplace: accountExpires\naccountExpires: {}\n\n\
         dn: CN=lock-bob,{base}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: {}\n\n",
        filetime_in(-86_400),
        filetime_in(0)
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok, "{inc:?}");
    step_margin(10).await;
    let verify = |name: &'static str, secret: String| {
        let api = api.clone();
        async move {
            let code = oathtool(&secret, 0, &[])?;
            let answer = api
                .post("/api/v1/verify", &json!({"user": name, "code": code}))
                .await?;
            Ok::<_, anyhow::Error>(answer.body["result"].as_str().unwrap_or("").to_owned())
        }
    };
    assert_eq!(verify("exp-ann", secrets[0].clone()).await?, "reject");
    assert_eq!(verify("lock-bob", secrets[1].clone()).await?, "reject");
    assert_eq!(verify("ok-cid", secrets[2].clone()).await?, "accept");
    // The audit says why (the answer does not: it must not tell who exists).
    let rejects = audit(
        &mut admin,
        AuditFilter {
            action: Some("verify".into()),
            outcome: Some("reject".into()),
            ..AuditFilter::default()
        },
    )?;
    for (name, reason) in [
        ("exp-ann", "reason=ad_account_expired"),
        ("lock-bob", "reason=ad_locked_out"),
    ] {
        assert!(
            rejects.iter().any(|e| e.user.as_deref() == Some(name)
                && e.detail.as_deref().is_some_and(|d| d.contains(reason))),
            "{name}: {rejects:?}"
        );
    }
    // privacyIDEA's /validate/check refuses them too.
    let code = oathtool(&secrets[0], 0, &[])?;
    let body = format!("user=exp-ann&realm=corp&pass={code}");
    let pi = api
        .send(
            "POST",
            "/validate/check",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
            &[("authorization", key.as_str())],
        )
        .await?;
    assert_eq!(pi.body["result"]["value"], false, "{}", pi.raw);
    // `user show` says why, in words and in its JSON.
    let ann = user(&mut admin, "exp-ann")?.ok_or_else(|| anyhow!("exp-ann lost"))?;
    assert!(
        ann.cannot_sign_in
            .as_deref()
            .is_some_and(|w| w.contains("expired")),
        "{ann:?}"
    );
    let cli = twofold_tests::workspace_binary("twofold-admin")?;
    let shown = std::process::Command::new(&cli)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(["user", "show", "lock-bob"])
        .output()?;
    let text = String::from_utf8(shown.stdout)?;
    assert!(
        text.contains("sign-in:      REFUSED: locked out in the directory"),
        "{text}"
    );
    let json_shown = std::process::Command::new(&cli)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(["--json", "user", "show", "exp-ann"])
        .output()?;
    let json: serde_json::Value = serde_json::from_slice(&json_shown.stdout)?;
    assert!(
        json["cannot_sign_in"]
            .as_str()
            .is_some_and(|w| w.contains("accountExpires")),
        "{json}"
    );
    assert!(json["directory"]["expires"].as_i64().is_some(), "{json}");

    // honour_ad_lockout = false: the locked-out account passes, the expired one still does not.
    daemon.restart_with(&format!(
        "\n[privacyidea]\nenabled = true\n{}",
        dc.directory_config("corp", LDAPS, &base, "honour_ad_lockout = false")
    ))?;
    let mut admin = daemon.admin()?;
    let bob = user(&mut admin, "lock-bob")?.ok_or_else(|| anyhow!("lock-bob lost"))?;
    assert_eq!(bob.cannot_sign_in, None, "{bob:?}");
    let ann = user(&mut admin, "exp-ann")?.ok_or_else(|| anyhow!("exp-ann lost"))?;
    assert!(ann.cannot_sign_in.is_some(), "{ann:?}");
    daemon.restart_with(&config)?;
    let mut admin = daemon.admin()?;

    // Cleared in AD and synced: both sign in again.
    dc.modify(&format!(
        "dn: CN=exp-ann,{base}\nchangetype: modify\nreplace: accountExpires\naccountExpires: 0\n\n\
         dn: CN=lock-bob,{base}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: 0\n\n"
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok, "{inc:?}");
    match admin.ok(&AdminRequest::UserShow {
        user: "lock-bob".into(),
    })? {
        AdminReply::User(u) => assert_eq!(u.cannot_sign_in, None, "{u:?}"),
        other => bail!("unexpected {other:?}"),
    }
    let api = daemon.api_client()?.with_key(&key);
    step_margin(10).await;
    for (name, secret) in [("exp-ann", &secrets[0]), ("lock-bob", &secrets[1])] {
        // Refused codes are not spent: the current one may be the one refused above.
        let code = oathtool(secret, 0, &[])?;
        let answer = api
            .post("/api/v1/verify", &json!({"user": name, "code": code}))
            .await?;
        assert_eq!(answer.body["result"], "accept", "{name}: {}", answer.raw);
    }
    Ok(())
}

/// Windows sends a group's `member` a range at a time (MaxValRange, 1,500 by default); Samba sends all
/// of it. Through `RangedLdap` (MaxValRange = 10), a group of 24 comes in the ranges 0-9, 10-19 and
/// 20-*, and an incremental sync must read every one of them, or the members past the first range
/// would lose the group's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_longer_than_one_range_is_read_to_its_end() -> Result<()> {
    let dc = shared_dc()?;
    let names: Vec<String> = (0..25).map(|i| format!("rng-{i:02}")).collect();
    let people: Vec<&str> = names.iter().map(String::as_str).collect();
    let base = make_ou(dc, "Ranged", &people)?;
    let group = format!("CN=Rng VPN,{base}");
    let member = |n: &str| format!("member: CN={n},{base}\n");
    let mut ldif =
        format!("dn: {group}\nchangetype: add\nobjectClass: group\nsAMAccountName: rng-vpn\n");
    for n in &names[..24] {
        ldif.push_str(&member(n));
    }
    dc.modify(&format!("{ldif}\n"))?;
    let proxy = RangedLdap::start(dc, 10)?;
    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n\
        [[policy.group]]\ngroup = \"Rng VPN\"\ntwo_factor = \"required\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", &proxy.url, &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    let full = sync(&mut admin, true)?;
    assert!(full.ok && full.entries == 25, "{full:?}");
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    // The users whose rule is `required`, in name order.
    let required = |api: Api| {
        let names = names.clone();
        async move {
            let mut out = Vec::new();
            for n in names {
                if rule(&api, &n).await? == "required" {
                    out.push(n);
                }
            }
            Ok::<_, anyhow::Error>(out)
        }
    };
    assert_eq!(required(api.clone()).await?, names[..24]);

    // rng-24 joins: the group changed, and the incremental sync reads its 25 members in three ranges.
    dc.modify(&format!(
        "dn: {group}\nchangetype: modify\nadd: member\n{}\n",
        member(&names[24])
    ))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    assert_eq!(required(api.clone()).await?, names);

    // Five leave (the last range): the 20 left still come in two ranges.
    let mut leave = format!("dn: {group}\nchangetype: modify\ndelete: member\n");
    for n in &names[20..] {
        leave.push_str(&member(n));
    }
    dc.modify(&format!("{leave}\n"))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    assert_eq!(required(api).await?, names[..20]);
    Ok(())
}

/// A deleted group leaves only a tombstone, which keeps its objectSid but not its DN, and its members'
/// `memberOf` loses it without their uSNChanged moving. The next incremental sync finds the tombstone
/// and takes the group from its direct members and from those who had it through nesting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_group_stops_counting_at_the_next_incremental_sync() -> Result<()> {
    let dc = shared_dc()?;
    let base = make_ou(
        dc,
        "DelGroup",
        &["delg-direct", "delg-nested", "delg-other"],
    )?;
    let g = |cn: &str| format!("CN={cn},{base}");
    let (vpn, staff, other) = (g("DelG VPN"), g("DelG Staff"), g("DelG Other"));
    dc.modify(&format!(
        "dn: {staff}\nchangetype: add\nobjectClass: group\nsAMAccountName: delg-g-staff\nmember: {}\n\n\
         dn: {vpn}\nchangetype: add\nobjectClass: group\nsAMAccountName: delg-g-vpn\nmember: {}\nmember: {staff}\n\n\
         dn: {other}\nchangetype: add\nobjectClass: group\nsAMAccountName: delg-g-other\nmember: {}\n\n",
        g("delg-nested"),
        g("delg-direct"),
        g("delg-other"),
    ))?;
    let policy = "\n[policy]\ntwo_factor = \"optional\"\n\n\
        [[policy.group]]\ngroup = \"DelG VPN\"\ntwo_factor = \"required\"\n\n\
        [[policy.group]]\ngroup = \"DelG Other\"\ntwo_factor = \"required\"\n";
    let daemon = Daemon::start(&format!(
        "{policy}{}",
        dc.directory_config("corp", LDAPS, &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    assert!(sync(&mut admin, true)?.ok);
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    for name in ["delg-direct", "delg-nested", "delg-other"] {
        assert_eq!(rule(&api, name).await?, "required", "{name}");
    }

    dc.modify(&format!("dn: {vpn}\nchangetype: delete\n\n"))?;
    let inc = sync(&mut admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    for (name, expected) in [
        ("delg-direct", "optional"),
        ("delg-nested", "optional"),
        ("delg-other", "required"),
    ] {
        assert_eq!(rule(&api, name).await?, expected, "{name}");
        let groups = user(&mut admin, name)?
            .ok_or_else(|| anyhow!("{name} lost"))?
            .groups;
        assert!(!groups.contains(&vpn), "{name}: {groups:?}");
    }
    let nested = user(&mut admin, "delg-nested")?.ok_or_else(|| anyhow!("lost"))?;
    assert!(nested.groups.contains(&staff), "{:?}", nested.groups);
    // A full sync agrees with what the incremental one made of the deletion.
    let again = sync(&mut admin, true)?;
    assert_eq!((again.changed, again.added), (0, 0), "{again:?}");
    Ok(())
}
