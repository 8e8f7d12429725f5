//! The admin console and the roles, as operators meet them: the real `twofold-admin` in tmux against the
//! real daemon, and every CLI action run as throw-away Unix users whose groups give them a role.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use twofold_tests::{enroll, oathtool, workspace_binary, Admin, Daemon, TempDir};
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest, AuditFilter};

/// A tmux server of our own (`-L`), so the test neither sees nor disturbs anyone else's sessions.
struct Tmux {
    server: String,
}

impl Tmux {
    fn start(command: &[&str]) -> Result<Tmux> {
        let tmux = Tmux {
            server: format!("twofold-e2e-{}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.server,
                "new-session",
                "-d",
                "-s",
                "console",
                "-x",
                "80",
                "-y",
                "24",
                "--",
            ])
            .args(command)
            .status()
            .context("running tmux (Debian package tmux)")?;
        if !status.success() {
            bail!("tmux new-session failed");
        }
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }

    /// Keys as tmux names them (`Enter`, `Tab`, `Down`) or, with `literal`, text to type.
    fn keys(&self, keys: &str, literal: bool) -> Result<()> {
        let mut args = vec!["send-keys", "-t", "console"];
        if literal {
            args.push("-l");
        }
        args.push(keys);
        self.run(&args).map(drop)
    }

    /// Polls the screen until it shows `text`; fails with the screen after 20 s.
    async fn wait_for(&self, text: &str) -> Result<String> {
        self.wait_for_all(&[text]).await
    }

    /// Waits for a screen showing every one of `texts`: a capture may catch a frame half drawn (the
    /// title of a table before its rows), so what belongs together is waited for together.
    async fn wait_for_all(&self, texts: &[&str]) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen()?;
            if texts.iter().all(|text| screen.contains(text)) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("the console never showed all of {texts:?}; it shows:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

#[tokio::test]
async fn console_in_tmux_finds_a_user_and_blocks_a_device_whose_codes_the_api_then_refuses(
) -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    for other in ["yann", "zack", "zelda"] {
        admin.create_user(other)?;
    }
    let zoe = enroll(&mut admin, &api, "zoe").await?;

    let binary = workspace_binary("twofold-admin")?;
    let socket = daemon.admin_socket();
    let tmux = Tmux::start(&[
        &binary.display().to_string(),
        "--socket",
        &socket.display().to_string(),
    ])?;
    tmux.wait_for("Recent audit events").await?;

    // Search: `/` opens the search box, "zo" leaves zoe alone among the four users.
    tmux.keys("Tab", false)?;
    tmux.wait_for("/ to search").await?;
    tmux.keys("/zo", true)?;
    tmux.wait_for("1 of 4 users").await?;
    tmux.keys("Enter", false)?;
    tmux.wait_for_all(&["Devices (1)", "phone", "active"])
        .await?;

    tmux.keys("b", true)?;
    let question = format!("Block device \"phone\" ({}) of zoe?", zoe.device);
    tmux.wait_for_all(&["Confirm", &question]).await?;
    tmux.keys("y", true)?;
    tmux.wait_for(&format!("device {} is blocked", zoe.device))
        .await?;
    tmux.wait_for("BLOCKED").await?;

    // The API refuses the blocked device's code; unblocked again, the very same code passes, so the
    // refusal was the block and not the code.
    crate::step_margin(10).await;
    let code = oathtool(&zoe.secret, 0, &[])?;
    let refused = api
        .post(
            "/api/v1/verify",
            &serde_json::json!({"user": "zoe", "code": code}),
        )
        .await?;
    assert_eq!(refused.body["result"], "reject", "{}", refused.raw);
    assert_eq!(refused.body["reason"], "invalid_code", "{}", refused.raw);
    admin.ok(&AdminRequest::DeviceUnblock {
        user: "zoe".into(),
        device: zoe.device.clone(),
    })?;
    let accepted = api
        .post(
            "/api/v1/verify",
            &serde_json::json!({"user": "zoe", "code": code}),
        )
        .await?;
    assert_eq!(accepted.body["result"], "accept", "{}", accepted.raw);

    let filter = AuditFilter {
        action: Some("device_block".into()),
        ..AuditFilter::default()
    };
    let AdminReply::Audit { events } = admin.ok(&AdminRequest::AuditSearch { filter })? else {
        bail!("no audit reply")
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "admin:uid=0");
    assert_eq!(
        events[0].detail.as_deref(),
        Some(format!("device={}", zoe.device).as_str())
    );

    tmux.keys("C-c", false)?;
    Ok(())
}

#[test]
fn the_console_says_when_it_cannot_reach_the_daemon() -> Result<()> {
    let dir = TempDir::new("twofold-console")?;
    let out = Command::new(workspace_binary("twofold-admin")?)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is the daemon running"), "{stderr}");
    Ok(())
}

/// Throw-away system users and groups, removed on drop.
/// Unix users and groups made for a test, removed when it ends.
pub(crate) struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Accounts {
    pub(crate) fn new() -> Accounts {
        Accounts {
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub(crate) fn group(&mut self, name: &str) -> Result<()> {
        run_ok(Command::new("groupadd").args(["--system", name]))?;
        self.groups.push(name.to_owned());
        Ok(())
    }

    /// A user whose primary group is `primary`, also in `others`.
    pub(crate) fn user(&mut self, name: &str, primary: &str, others: &[&str]) -> Result<u32> {
        let mut command = Command::new("useradd");
        command.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--gid",
            primary,
        ]);
        if !others.is_empty() {
            command.args(["--groups", &others.join(",")]);
        }
        run_ok(command.arg(name))?;
        self.users.push(name.to_owned());
        let out = run_ok(Command::new("id").args(["-u", name]))?;
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = Command::new("userdel").arg(user).output();
        }
        for group in &self.groups {
            let _ = Command::new("groupdel").arg(group).output();
        }
    }
}

fn run_ok(command: &mut Command) -> Result<Output> {
    let out = command.output().with_context(|| format!("{command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `twofold-admin` run as `user`, with the groups the system gives that user.
pub(crate) fn as_user(binary: &Path, socket: &Path, user: &str, args: &[&str]) -> Result<Output> {
    let gid = String::from_utf8(run_ok(Command::new("id").args(["-g", user]))?.stdout)?;
    Ok(Command::new("setpriv")
        .args([
            format!("--reuid={user}"),
            format!("--regid={}", gid.trim()),
            "--init-groups".into(),
        ])
        .arg(binary)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()?)
}

#[test]
fn each_action_is_refused_for_the_roles_that_lack_it_over_the_real_socket() -> Result<()> {
    if !nix_is_root() {
        bail!("the role test creates Unix users and groups: run it as root (CI does)");
    }
    let tag = std::process::id() % 100_000;
    let (socket_group, helpdesk, admin_group, master) = (
        format!("tfsock{tag}"),
        format!("tfhd{tag}"),
        format!("tfadm{tag}"),
        format!("tfmas{tag}"),
    );
    let mut accounts = Accounts::new();
    for g in [&socket_group, &helpdesk, &admin_group, &master] {
        accounts.group(g)?;
    }
    // Helpdesk by primary group, admin and master admin by supplementary group; one with no role.
    let hd_uid = accounts.user(&format!("tfuhd{tag}"), &helpdesk, &[&socket_group])?;
    accounts.user(&format!("tfuadm{tag}"), &socket_group, &[&admin_group])?;
    accounts.user(&format!("tfumas{tag}"), &socket_group, &[&master])?;
    accounts.user(&format!("tfunone{tag}"), &socket_group, &[])?;
    accounts.user(&format!("tfuout{tag}"), &helpdesk, &[])?;

    // The data folder is 0700: the socket goes to a folder others can traverse, with the group.
    let run_dir = TempDir::new("twofold-roles")?;
    let socket = run_dir.path().join("admin.sock");
    let daemon = Daemon::start(&format!(
        "\n[admin]\nsocket = \"{}\"\ngroup = \"{socket_group}\"\n\n[admin.roles]\nhelpdesk = [\"{helpdesk}\"]\nadmin = [\"{admin_group}\"]\nmaster_admin = [\"{master}\"]\n\n[challenge]\naccess_codes = true\n",
        socket.display()
    ))?;
    // The binary may sit under a folder other users cannot enter: they get a copy.
    let binary: PathBuf = run_dir.path().join("twofold-admin");
    std::fs::copy(workspace_binary("twofold-admin")?, &binary)?;

    let mut root = Admin::connect(&socket)?;
    let key = root.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    let rt = tokio::runtime::Runtime::new()?;
    let zoe = rt.block_on(enroll(&mut root, &api, "zoe"))?;
    root.create_user("yan")?;
    let device = zoe.device.as_str();

    // The rule as a table: each command and the least role that may run it. Commands that an allowed
    // role runs on something missing answer not_found or conflict, which is not a refusal.
    let table: &[(&[&str], &str)] = &[
        (&["status"], "helpdesk"),
        (&["whoami"], "helpdesk"),
        (&["dashboard"], "helpdesk"),
        (&["policy", "show"], "helpdesk"),
        (&["plugin", "status"], "helpdesk"),
        (&["deliveries"], "helpdesk"),
        (&["handover", "list"], "helpdesk"),
        (&["handover", "done", "hnosuchentry"], "helpdesk"),
        (&["audit", "--limit", "5"], "helpdesk"),
        (&["audit", "--user", "zoe"], "helpdesk"),
        (&["user", "show", "zoe"], "helpdesk"),
        (&["user", "list"], "helpdesk"),
        (&["device", "list", "zoe"], "helpdesk"),
        (&["user", "unlock", "zoe"], "helpdesk"),
        (&["address", "unlock", "10.1.2.3"], "helpdesk"),
        (&["device", "block", "zoe", device], "helpdesk"),
        (&["device", "unblock", "zoe", device], "admin"),
        (&["device", "delete", "zoe", "dnosuchdevice"], "admin"),
        (&["totp", "enroll", "yan"], "admin"),
        (
            &["totp", "confirm", "yan", "dnosuchdevice", "123456"],
            "admin",
        ),
        (&["user", "disable", "yan"], "admin"),
        (&["user", "enable", "yan"], "admin"),
        (&["user", "create", "newbie"], "admin"),
        (&["user", "delete", "nosuchuser"], "admin"),
        (&["user", "access-code", "zoe"], "admin"),
        (
            &["user", "phones", "yan", "--mobile", "+41 79 555 00 11"],
            "admin",
        ),
        (&["plugin", "reload"], "master admin"),
        (&["apikey", "list"], "master admin"),
        (&["apikey", "create", "key-from-test"], "master admin"),
        (&["apikey", "revoke", "nosuchkey"], "master admin"),
    ];
    let roles = [
        ("helpdesk", format!("tfuhd{tag}")),
        ("admin", format!("tfuadm{tag}")),
        ("master admin", format!("tfumas{tag}")),
    ];
    let rank = |role: &str| {
        ["helpdesk", "admin", "master admin"]
            .iter()
            .position(|r| *r == role)
            .unwrap_or(usize::MAX)
    };
    let mut refused_helpdesk = 0;
    for (role, user) in &roles {
        let who = as_user(&binary, &socket, user, &["whoami"])?;
        assert!(
            String::from_utf8_lossy(&who.stdout).contains(&format!("role {role} ")),
            "{who:?}"
        );
        for (args, least) in table {
            let out = as_user(&binary, &socket, user, args)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if rank(role) >= rank(least) {
                assert!(
                    !stderr.contains("(forbidden)"),
                    "{role} must be allowed {args:?}: {stderr}"
                );
            } else {
                assert_eq!(out.status.code(), Some(1), "{role} {args:?}");
                assert_eq!(stderr.lines().count(), 1, "{stderr}");
                assert!(
                    stderr.contains(&format!("needs the {least} role; uid"))
                        && stderr.contains(&format!("is {role} (forbidden)")),
                    "{role} {args:?}: {stderr}"
                );
                if *role == "helpdesk" {
                    refused_helpdesk += 1;
                }
            }
        }
    }

    // A refused unblock changed nothing: helpdesk blocks, cannot unblock, the device stays blocked.
    let hd = format!("tfuhd{tag}");
    assert!(
        as_user(&binary, &socket, &hd, &["device", "block", "zoe", device])?
            .status
            .success()
    );
    assert!(
        !as_user(&binary, &socket, &hd, &["device", "unblock", "zoe", device])?
            .status
            .success()
    );
    refused_helpdesk += 1;
    let listed = as_user(&binary, &socket, &hd, &["--json", "device", "list", "zoe"])?;
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(json["devices"][0]["status"], "blocked", "{json}");

    // Every refusal is audited with the operator's uid.
    let filter = AuditFilter {
        actor: Some(format!("admin:uid={hd_uid}")),
        outcome: Some("forbidden".into()),
        limit: Some(1000),
        ..AuditFilter::default()
    };
    match root.call(&AdminRequest::AuditSearch { filter })? {
        AdminAnswer::Ok { reply } => match *reply {
            AdminReply::Audit { events } => {
                assert_eq!(events.len(), refused_helpdesk, "{events:?}")
            }
            other => bail!("unexpected {other:?}"),
        },
        AdminAnswer::Error { error } => bail!("{error:?}"),
    }

    // In the socket's group but in no role group: refused at once, saying how to get a role.
    let none = as_user(&binary, &socket, &format!("tfunone{tag}"), &["status"])?;
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr.contains("has no Twofold role") && stderr.contains("[admin.roles]"),
        "{stderr}"
    );
    // Not in the socket's group: the file mode stops them before the daemon is asked.
    let out = as_user(&binary, &socket, &format!("tfuout{tag}"), &["status"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no permission on"), "{stderr}");
    // The console says the same before it takes over the terminal.
    let console = as_user(&binary, &socket, &format!("tfunone{tag}"), &[])?;
    assert!(
        String::from_utf8_lossy(&console.stderr).contains("has no Twofold role"),
        "{console:?}"
    );
    drop(daemon);
    Ok(())
}

pub(crate) fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Unix accounts for each role (helpdesk, admin, master admin), the socket folder and config that
/// grant them, and a copy of `twofold-admin` they may run: for role tables of other features.
pub(crate) struct RoleAccounts {
    accounts: Accounts,
    _run_dir: TempDir,
    pub socket: PathBuf,
    binary: PathBuf,
    groups: [String; 4],
    /// (role name, Unix user)
    users: Vec<(&'static str, String)>,
}

impl RoleAccounts {
    /// `prefix` keeps the names apart from other tests running in the same process.
    pub(crate) fn create(prefix: &str) -> Result<RoleAccounts> {
        if !nix_is_root() {
            bail!("role tests create Unix users and groups: run them as root (CI does)");
        }
        let tag = std::process::id() % 100_000;
        let groups = [
            format!("{prefix}sock{tag}"),
            format!("{prefix}hd{tag}"),
            format!("{prefix}adm{tag}"),
            format!("{prefix}mas{tag}"),
        ];
        let mut accounts = Accounts::new();
        for g in &groups {
            accounts.group(g)?;
        }
        let users = vec![
            ("helpdesk", format!("{prefix}uhd{tag}")),
            ("admin", format!("{prefix}uadm{tag}")),
            ("master admin", format!("{prefix}umas{tag}")),
        ];
        for ((_, user), group) in users.iter().zip(&groups[1..]) {
            accounts.user(user, &groups[0], &[group])?;
        }
        let run_dir = TempDir::new("twofold-roles")?;
        let binary = run_dir.path().join("twofold-admin");
        std::fs::copy(workspace_binary("twofold-admin")?, &binary)?;
        Ok(RoleAccounts {
            socket: run_dir.path().join("admin.sock"),
            accounts,
            _run_dir: run_dir,
            binary,
            groups,
            users,
        })
    }

    /// The group the socket file gets (`[admin] group`); every role's user is in it.
    pub(crate) fn socket_group(&self) -> &str {
        &self.groups[0]
    }

    /// One more user, removed with the others.
    pub(crate) fn add_user(&mut self, name: &str, primary: &str, others: &[&str]) -> Result<u32> {
        self.accounts.user(name, primary, others)
    }

    /// `twofold-admin args` as the user of `role` (helpdesk, admin, master admin).
    pub(crate) fn run_as(&self, role: &str, args: &[&str]) -> Result<Output> {
        let Some((_, user)) = self.users.iter().find(|(r, _)| *r == role) else {
            bail!("no user for role {role}");
        };
        as_user(&self.binary, &self.socket, user, args)
    }

    /// The `[admin]` tables a daemon needs to grant these roles.
    pub(crate) fn config(&self) -> String {
        let [socket_group, helpdesk, admin, master] = &self.groups;
        format!(
            "\n[admin]\nsocket = \"{}\"\ngroup = \"{socket_group}\"\n\n[admin.roles]\nhelpdesk = [\"{helpdesk}\"]\nadmin = [\"{admin}\"]\nmaster_admin = [\"{master}\"]\n",
            self.socket.display()
        )
    }

    /// Runs each command as each role, in order: roles at or above the least role are not refused;
    /// the others get one line naming the role needed and exit 1. Answers the number of refusals.
    pub(crate) fn check_table(&self, table: &[(&[&str], &str)]) -> Result<usize> {
        let rank = |role: &str| {
            ["helpdesk", "admin", "master admin"]
                .iter()
                .position(|r| *r == role)
                .unwrap_or(usize::MAX)
        };
        let mut refusals = 0;
        for (role, user) in &self.users {
            for (args, least) in table {
                let out = as_user(&self.binary, &self.socket, user, args)?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if rank(role) >= rank(least) {
                    assert!(
                        !stderr.contains("(forbidden)"),
                        "{role} must be allowed {args:?}: {stderr}"
                    );
                } else {
                    assert_eq!(out.status.code(), Some(1), "{role} {args:?}");
                    assert_eq!(stderr.lines().count(), 1, "{stderr}");
                    assert!(
                        stderr.contains(&format!("needs the {least} role; uid"))
                            && stderr.contains(&format!("is {role} (forbidden)")),
                        "{role} {args:?}: {stderr}"
                    );
                    refusals += 1;
                }
            }
        }
        Ok(refusals)
    }
}
