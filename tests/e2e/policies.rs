//! Live policies end to end: a master admin edits them with the real `twofold-admin` over the real
//! socket, the very next verification and challenge follow the edit, a SIGKILL and restart keep it, bad
//! values are refused with one line, a file re-read on SIGHUP applies only on `reset-to-config`, and
//! only master admins may edit.

use std::process::{Command, Output};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use twofold_tests::delivery::plugins_dir;
use twofold_tests::{enroll, oathtool, workspace_binary, Admin, Api, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest, AuditFilter, NewUser, PolicyOverview};
use twofold_wire::policy::PolicySource;

use crate::console::RoleAccounts;
use crate::step_margin;

const KIOSK: &str = "CN=lp-kiosk,OU=Groups,DC=corp,DC=example";

/// The in-person desk (a code waits in the handover queue, no network needed) and a group whose
/// members may only use their authenticator app.
fn config() -> Result<String> {
    Ok(format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n[[plugin]]\nname = \"desk\"\nfile = \"in_person.wasm\"\nhandover = true\n\n[[policy.group]]\ngroup = \"lp-kiosk\"\nchannels = [\"totp\"]\n",
        plugins_dir()?.display()
    ))
}

fn cli(daemon: &Daemon, args: &[&str]) -> Result<Output> {
    Ok(Command::new(workspace_binary("twofold-admin")?)
        .arg("--socket")
        .arg(daemon.admin_socket())
        .args(args)
        .output()?)
}

/// Runs a command that must succeed and answers its output.
fn cli_ok(daemon: &Daemon, args: &[&str]) -> Result<String> {
    let out = cli(daemon, args)?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn shown(admin: &mut Admin) -> Result<PolicyOverview> {
    match admin.ok(&AdminRequest::PolicyShow)? {
        AdminReply::Policies(p) => Ok(p),
        other => bail!("unexpected {other:?}"),
    }
}

async fn state(api: &Api, name: &str) -> Result<String> {
    let answer = api.get(&format!("/api/v1/users/{name}/two-factor")).await?;
    if answer.status != 200 {
        bail!("two-factor status of {name}: {}", answer.raw);
    }
    Ok(answer.body["state"].as_str().unwrap_or_default().to_owned())
}

async fn verify(api: &Api, body: Value) -> Result<Value> {
    let answer = api.post("/api/v1/verify", &body).await?;
    if answer.status != 200 {
        bail!("verify answered {}: {}", answer.status, answer.raw);
    }
    Ok(answer.body)
}

/// An in-person challenge for `user`: its status and body.
async fn challenge(api: &Api, user: &str) -> Result<(u16, Value)> {
    let answer = api
        .post(
            "/api/v1/challenge",
            &json!({"user": user, "channel": "in_person"}),
        )
        .await?;
    Ok((answer.status, answer.body))
}

/// The code handed to the in-person queue for `user`, once the desk plugin has queued it.
async fn handover_code(admin: &mut Admin, user: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let AdminReply::Handovers { entries } = admin.ok(&AdminRequest::HandoverList)? else {
            bail!("no handover reply");
        };
        if let Some(entry) = entries.into_iter().find(|e| e.user == user) {
            return Ok(entry.code);
        }
        if std::time::Instant::now() > deadline {
            bail!("no handover entry for {user} within 20 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_policy_edit_applies_to_the_next_request_and_survives_a_restart() -> Result<()> {
    let mut daemon = Daemon::start(&config()?)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "kim".into(),
        display_name: Some("Kim Example".into()),
        groups: vec![KIOSK.into()],
        ..NewUser::default()
    }))?;
    step_margin(10).await;
    // ann is in no group: the defaults apply to her.
    let ann = enroll(&mut admin, &api, "ann").await?;
    let seeded = shown(&mut admin)?;
    let origin = seeded.origin.clone();
    assert_eq!(
        origin.map(|o| (o.source, o.changed_by, o.revision)),
        Some((PolicySource::ConfigFile, "daemon".to_owned(), 1))
    );
    assert!(!seeded.config_differs);

    // The file's policy: kim's group may only use an authenticator app.
    let (status, body) = challenge(&api, "kim").await?;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            403,
            Some("the user's policy does not allow codes by in_person")
        ),
        "{body}"
    );
    assert_eq!(state(&api, "kim").await?, "not_enrolled");

    // A master admin allows codes handed over in person: the very next challenge is sent, and its code
    // signs kim in.
    let out = cli_ok(
        &daemon,
        &[
            "policy",
            "group",
            "set",
            "lp-kiosk",
            "channels",
            "totp,in_person",
        ],
    )?;
    assert!(
        out.contains("changed group lp-kiosk: channels totp -> totp, in_person"),
        "{out}"
    );
    let (status, body) = challenge(&api, "kim").await?;
    assert_eq!(status, 202, "{body}");
    let code = handover_code(&mut admin, "kim").await?;
    let accepted = verify(
        &api,
        json!({"user": "kim", "code": code, "transaction_id": body["transaction_id"]}),
    )
    .await?;
    assert_eq!(accepted["result"], "accept", "{accepted}");

    // Required for the group: kim must enroll at once; ann, outside the group, is untouched.
    let out = cli_ok(
        &daemon,
        &[
            "policy",
            "group",
            "set",
            "lp-kiosk",
            "two_factor",
            "required",
        ],
    )?;
    assert!(out.contains("two_factor - -> required"), "{out}");
    assert_eq!(state(&api, "kim").await?, "enrollment_required");
    assert_eq!(state(&api, "ann").await?, "enrolled");
    // The default off: ann's codes are no longer asked for, kim's group still requires them.
    cli_ok(&daemon, &["policy", "set", "two_factor", "off"])?;
    let off = verify(&api, json!({"user": "ann", "code": "000000"})).await?;
    assert_eq!(off["reason"], "two_factor_off", "{off}");
    assert_eq!(state(&api, "kim").await?, "enrollment_required");
    cli_ok(&daemon, &["policy", "set", "two_factor", "optional"])?;
    let code = oathtool(&ann.secret, 0, &[])?;
    let accepted = verify(&api, json!({"user": "ann", "code": code})).await?;
    assert_eq!(accepted["result"], "accept", "{accepted}");

    // Bad input: one line on stderr, exit 1, nothing changed.
    let before = shown(&mut admin)?;
    for (args, says) in [
        (
            &["policy", "group", "set", "lp-kiosk", "two_factor", "sometimes"][..],
            "two_factor: unknown variant `sometimes`, expected one of `required`, `optional`, `off`",
        ),
        (
            &["policy", "set", "restore_period_days", "0"][..],
            "restore_period_days must be at least 1 when restore_limit is set",
        ),
        (
            &["policy", "set", "restore_resend_channels", "email,totp"][..],
            "restore_resend_channels cannot hold totp",
        ),
        (
            &["policy", "set", "restore_limit", "lots"][..],
            "restore_limit takes a whole number",
        ),
        (
            &["policy", "set", "colour", "red"][..],
            "unknown policy setting \"colour\"",
        ),
        (
            &["policy", "group", "remove", "nosuchgroup"][..],
            "no group entry for \"nosuchgroup\"",
        ),
        (
            &["policy", "group", "move", "lp-kiosk", "2"][..],
            "position must be between 1 and 1",
        ),
    ] {
        let out = cli(&daemon, args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("(invalid_request)"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(shown(&mut admin)?, before);
    let origin = before.origin.clone();
    assert_eq!(
        origin.map(|o| (o.source, o.changed_by, o.revision)),
        Some((PolicySource::Admin, "admin:uid=0".to_owned(), 5))
    );
    assert!(before.config_differs);

    // SIGKILL: what the edits' answers promised is on disk.
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal2")?);
    assert_eq!(shown(&mut admin)?, before);
    assert_eq!(state(&api, "kim").await?, "enrollment_required");
    let (status, body) = challenge(&api, "kim").await?;
    assert_eq!(status, 202, "{body}");
    assert!(
        daemon.log()?.contains("differ from the live policies"),
        "the restart says the file differs"
    );

    // Every edit is audited with the operator and each setting's before and after.
    let filter = AuditFilter {
        action: Some("policy".into()),
        outcome: Some("ok".into()),
        ..AuditFilter::default()
    };
    let AdminReply::Audit { events } = admin.ok(&AdminRequest::AuditSearch { filter })? else {
        bail!("no audit reply");
    };
    let audited: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.detail.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        audited,
        vec![
            (
                "daemon",
                "policy_seed",
                "copied from the configuration file, group entries: 1"
            ),
            (
                "admin:uid=0",
                "policy_group_set",
                "group lp-kiosk: channels totp -> totp, in_person (revision 2)"
            ),
            (
                "admin:uid=0",
                "policy_group_set",
                "group lp-kiosk: two_factor - -> required (revision 3)"
            ),
            (
                "admin:uid=0",
                "policy_set",
                "two_factor: optional -> off (revision 4)"
            ),
            (
                "admin:uid=0",
                "policy_set",
                "two_factor: off -> optional (revision 5)"
            ),
        ]
    );

    // reset-to-config brings the file's policy back: in person is refused again.
    let out = cli_ok(&daemon, &["--json", "policy", "reset-to-config"])?;
    let reply: Value = serde_json::from_str(&out)?;
    assert_eq!(
        reply["changes"],
        json!([
            "group lp-kiosk: two_factor required -> -",
            "group lp-kiosk: channels totp, in_person -> totp"
        ]),
        "{reply}"
    );
    assert_eq!(reply["policies"]["origin"]["source"], "config_file");
    assert_eq!(reply["policies"]["config_differs"], false);
    let (status, _) = challenge(&api, "kim").await?;
    assert_eq!(status, 403);
    assert_eq!(state(&api, "kim").await?, "not_enrolled");
    Ok(())
}

#[test]
fn only_master_admins_edit_policies_over_the_real_socket() -> Result<()> {
    let accounts = RoleAccounts::create("tfpol")?;
    let daemon = Daemon::start(&format!(
        "{}\n[[policy.group]]\ngroup = \"lp-vpn\"\ntwo_factor = \"required\"\n",
        accounts.config()
    ))?;
    let table: &[(&[&str], &str)] = &[
        (&["policy", "show"], "helpdesk"),
        (&["policy", "set", "two_factor", "optional"], "master admin"),
        (
            &["policy", "group", "set", "lp-vpn", "channels", "totp,sms"],
            "master admin",
        ),
        (
            &["policy", "group", "unset", "lp-vpn", "channels"],
            "master admin",
        ),
        (&["policy", "group", "move", "lp-vpn", "1"], "master admin"),
        (
            &["policy", "group", "remove", "nosuchgroup"],
            "master admin",
        ),
        (&["policy", "reset-to-config"], "master admin"),
    ];
    let refusals = accounts.check_table(table)?;
    assert_eq!(refusals, 12, "helpdesk and admin, six edits each");
    // The refusals changed nothing and were audited with the role needed.
    let mut root = Admin::connect(&accounts.socket)?;
    let filter = AuditFilter {
        action: Some("policy".into()),
        ..AuditFilter::default()
    };
    let AdminReply::Audit { events } = root.ok(&AdminRequest::AuditSearch { filter })? else {
        bail!("no audit reply");
    };
    let forbidden: Vec<&str> = events
        .iter()
        .filter(|e| e.outcome == "forbidden")
        .map(|e| e.detail.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(forbidden.len(), 12, "{events:?}");
    assert!(forbidden
        .iter()
        .all(|d| d.starts_with("needs=master admin role=")));
    let edited: Vec<&str> = events
        .iter()
        .filter(|e| e.outcome == "ok" && e.action != "policy_seed")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        edited,
        vec!["policy_group_set", "policy_group_set"],
        "only the master admin's edits that changed something: {events:?}"
    );
    drop(daemon);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_file_applies_only_when_a_master_admin_resets_to_it() -> Result<()> {
    let sso_off = "\n[[policy.group]]\ngroup = \"lp-sso\"\ntwo_factor = \"off\"\n";
    let daemon = Daemon::start(sso_off)?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "sam".into(),
        groups: vec!["lp-sso".into()],
        ..NewUser::default()
    }))?;
    assert_eq!(state(&api, "sam").await?, "off");

    // The file now requires 2FA for the group; SIGHUP reads it, the live policies stay and the
    // difference is said.
    std::fs::write(
        &daemon.config_path,
        format!(
            "{}\n[[policy.group]]\ngroup = \"lp-sso\"\ntwo_factor = \"required\"\n",
            twofold_tests::base_config(&daemon.data_dir())
        ),
    )?;
    let pid = daemon
        .pid()
        .ok_or_else(|| anyhow::anyhow!("daemon not running"))?;
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !daemon
        .log()?
        .contains("reload: the file's policy sections differ")
    {
        if std::time::Instant::now() > deadline {
            bail!("no reload warning within 10 s:\n{}", daemon.log()?);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        state(&api, "sam").await?,
        "off",
        "the file does not win by itself"
    );
    assert!(shown(&mut admin)?.config_differs);
    let text = cli_ok(&daemon, &["policy", "show"])?;
    assert!(
        text.contains("the configuration file's policy sections differ from these"),
        "{text}"
    );

    // reset-to-config applies the file as reloaded, at once.
    let out = cli_ok(&daemon, &["policy", "reset-to-config"])?;
    assert!(
        out.contains("changed group lp-sso: two_factor off -> required"),
        "{out}"
    );
    assert_eq!(state(&api, "sam").await?, "enrollment_required");
    assert!(!shown(&mut admin)?.config_differs);
    Ok(())
}
