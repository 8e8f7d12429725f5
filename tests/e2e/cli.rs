//! The command-line front ends: `twofoldd check-config` and `twofold-admin`, as an admin runs them.

use anyhow::Result;
use std::process::Command;
use twofold_tests::{workspace_binary, Daemon, TempDir};

#[test]
fn check_config_reports_every_error_with_its_line() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[api]\nlisten = \"127.0.0.1:8443\"\nlisen = 1\n[totp]\nwindow = 50\n[lockout.user]\nmax_failures = 500\ndelay_after = 3\nmax_delay_seconds = 60\nlock_seconds = 0\nforget_after_seconds = 0\n",
    )?;
    let out = check_config(&bad)?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    let path = bad.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{path}:4: ")) && lines[0].contains("lisen"),
        "{stderr}"
    );
    assert!(lines[1].starts_with(&format!("{path}:6: ")), "{stderr}");
    assert!(
        lines[2].starts_with(&format!("{path}:8: ")) && lines[2].contains("100"),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "version = 1\n")?;
    let out = check_config(&good)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_shipped_example_config_is_valid() -> Result<()> {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/twofold.toml");
    let out = check_config(&example)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_daemon_refuses_a_bad_config_with_the_line() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\ndata_dir = 5\n")?;
    let out = Command::new(workspace_binary("twofoldd")?)
        .arg("--config")
        .arg(&bad)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains(":2: "), "{stderr}");
    Ok(())
}

#[test]
fn twofold_admin_prints_one_line_and_fails_on_errors() -> Result<()> {
    let admin = workspace_binary("twofold-admin")?;
    let dir = TempDir::new("twofold-cli")?;
    let out = Command::new(&admin)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("status")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is the daemon running"), "{stderr}");

    let daemon = Daemon::start("")?;
    let socket = daemon.admin_socket();
    let run = |args: &[&str]| {
        Command::new(&admin)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
    };
    let created = run(&[
        "user",
        "create",
        "quinn",
        "--email",
        "quinn@example.com",
        "--mobile",
        "+41 79 123 45 67",
    ])?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let status = String::from_utf8(run(&["status"])?.stdout)?;
    assert!(
        status.contains(" in 1 file, oldest event ") && status.contains(", kept 400 days"),
        "{status}"
    );
    let shown = run(&["--json", "user", "show", "quinn"])?;
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(json["reply"], "user");
    assert_eq!(json["email"], "quinn@example.com");
    let missing = run(&["user", "show", "nobody"])?;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8(missing.stderr)?;
    assert_eq!(
        stderr.trim(),
        r#"twofold-admin: user "nobody" not found (not_found)"#
    );
    let bad = run(&["user", "create", "bad:name"])?;
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8(bad.stderr)?.lines().count(), 1);
    Ok(())
}

#[test]
fn the_commented_directory_ad_role_and_policy_examples_are_valid_when_uncommented() -> Result<()> {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/twofold.toml"),
    )?;
    let start = example
        .find("# [[policy.group]]")
        .ok_or_else(|| anyhow::anyhow!("no policy example"))?;
    let uncommented: String = example[start..]
        .lines()
        .filter(|l| {
            l.starts_with("# ")
                && !l.starts_with("# # ")
                && !l.starts_with("# Active")
                && !l.starts_with("# copy")
                && !l.starts_with("# sync`")
        })
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(
        uncommented.contains("[[directory]]") && uncommented.contains("[[policy.group]]"),
        "{uncommented}"
    );
    // The AD groups that give admin roles need the [[directory]] above.
    let roles_start = example
        .find("[admin.roles.directory]\n")
        .and_then(|at| example[at..].find("# For example:\n").map(|e| at + e))
        .ok_or_else(|| anyhow::anyhow!("no [admin.roles.directory] example"))?;
    let ad_roles: String = example[roles_start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert_eq!(ad_roles.lines().count(), 3, "{ad_roles}");
    let uncommented = format!("[admin.roles.directory]\n{ad_roles}{uncommented}");
    let dir = TempDir::new("twofold-example")?;
    // check-config wants the files the examples name (the AD CA, the bind password): here, in the
    // test's folder.
    let uncommented =
        uncommented.replace("\"/etc/twofold/", &format!("\"{}/", dir.path().display()));
    for line in uncommented.lines() {
        if let Some((_, value)) = line.split_once("_file = \"") {
            std::fs::write(value.trim_end_matches('"'), "")?;
        }
    }
    let path = dir.path().join("example.toml");
    std::fs::write(&path, format!("version = 1\n{uncommented}"))?;
    let out = check_config(&path)?;
    assert!(
        out.status.success(),
        "{}\n{uncommented}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Without `--socket` or `TWOFOLD_ADMIN_SOCKET`, `twofold-admin` tries the packaged socket only: a
/// socket planted in the current folder (where a daemon run from a checkout keeps its own) is never
/// connected to, and the one line it prints says how to name a socket.
#[test]
fn twofold_admin_without_a_socket_names_none_and_never_tries_the_current_folder() -> Result<()> {
    // The packaging test runs a daemon on the packaged socket: not meanwhile.
    let _lock = crate::packaging::machine_lock()?;
    if std::path::Path::new("/run/twofold/admin.sock").exists() {
        anyhow::bail!("/run/twofold/admin.sock exists: a packaged daemon runs on this machine");
    }
    let dir = TempDir::new("twofold-planted")?;
    std::fs::create_dir(dir.path().join("twofold-data"))?;
    let planted =
        std::os::unix::net::UnixListener::bind(dir.path().join("twofold-data/admin.sock"))?;
    planted.set_nonblocking(true)?;
    let admin = workspace_binary("twofold-admin")?;
    for json in [false, true] {
        // `timeout`: a client that connected to the planted socket would wait for an answer.
        let out = Command::new("timeout")
            .arg("20")
            .arg(&admin)
            .args(if json {
                &["--json", "status"][..]
            } else {
                &["status"][..]
            })
            .env_remove("TWOFOLD_ADMIN_SOCKET")
            .current_dir(dir.path())
            .output()?;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        if json {
            let error: serde_json::Value = serde_json::from_str(&stderr)?;
            assert_eq!(error["error"]["code"], "no_admin_socket", "{stderr}");
            assert!(
                error["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("pass --socket")),
                "{stderr}"
            );
        } else {
            assert!(
                stderr.starts_with("twofold-admin: no admin socket at /run/twofold/admin.sock")
                    && stderr.contains("pass --socket PATH (or set TWOFOLD_ADMIN_SOCKET)"),
                "{stderr}"
            );
        }
        assert!(
            planted.accept().is_err(),
            "twofold-admin connected to the socket in the current folder"
        );
    }
    Ok(())
}

/// What a new admin reads: product words, not Rust names; a header over the user list; errors as JSON
/// with `--json`; a QR code file (it holds the TOTP seed) readable by its owner only.
#[test]
fn twofold_admin_speaks_product_words_and_json_errors_and_keeps_qr_files_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let admin = workspace_binary("twofold-admin")?;
    let daemon = Daemon::start("")?;
    let run = |args: &[&str]| {
        Command::new(&admin)
            .arg("--socket")
            .arg(daemon.admin_socket())
            .args(args)
            .output()
    };
    let created = String::from_utf8(run(&["user", "create", "quinn"])?.stdout)?;
    assert!(created.contains("2FA: not_enrolled"), "{created}");
    let listed = String::from_utf8(run(&["user", "list"])?.stdout)?;
    let mut lines = listed.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("USER ") && header.ends_with("2FA"),
        "{listed}"
    );
    assert!(
        lines.any(|l| l.starts_with("quinn ") && l.ends_with(" not_enrolled")),
        "{listed}"
    );
    for text in [&created, &listed] {
        assert!(
            !["NotEnrolled", "Enrolled", "EnrollmentRequired"]
                .iter()
                .any(|rust| text.contains(rust)),
            "{text}"
        );
    }

    let missing = run(&["--json", "user", "show", "nobody"])?;
    assert_eq!(missing.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&missing.stderr)?;
    assert_eq!(
        error,
        serde_json::json!({"error": {"code": "not_found", "message": "user \"nobody\" not found"}})
    );

    let dir = TempDir::new("twofold-qr")?;
    let qr = dir.path().join("qr.png");
    // An existing file others could read is replaced by one they cannot.
    std::fs::write(&qr, b"old")?;
    std::fs::set_permissions(&qr, std::fs::Permissions::from_mode(0o644))?;
    let enrolled = run(&[
        "totp",
        "enroll",
        "quinn",
        "--qr-png",
        &qr.display().to_string(),
    ])?;
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    assert_eq!(std::fs::metadata(&qr)?.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read(&qr)?.starts_with(b"\x89PNG"));
    Ok(())
}

/// A second twofoldd on a data folder in use stops at once, names the daemon that has it, and leaves
/// the folder as it was (no master key or certificate made by the loser).
#[test]
fn a_second_daemon_on_the_same_data_folder_names_the_first() -> Result<()> {
    let daemon = Daemon::start("")?;
    let listing = |dir: &std::path::Path| -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names)
    };
    let before = listing(&daemon.data_dir())?;
    let out = Command::new(workspace_binary("twofoldd")?)
        .arg("--config")
        .arg(&daemon.config_path)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    let pid = daemon.pid().unwrap_or_default();
    assert!(
        stderr.contains(&format!("is in use by twofoldd (pid {pid})")),
        "{stderr}"
    );
    assert!(!stderr.contains("WouldBlock"), "{stderr}");
    assert_eq!(listing(&daemon.data_dir())?, before);
    // The first daemon goes on serving.
    assert!(daemon.admin().is_ok());
    Ok(())
}

/// `level = "verbose"` is a valid tracing filter that logs nothing; check-config refuses it with its
/// line and the levels there are.
#[test]
fn check_config_refuses_a_log_level_that_would_log_nothing() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\n\n[log]\nlevel = \"verbose\"\n")?;
    let out = check_config(&bad)?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:4: ", bad.display()))
            && stderr.contains("trace, debug, info, warn, error or off"),
        "{stderr}"
    );
    Ok(())
}

/// `twofoldd check-config PATH`.
fn check_config(path: &std::path::Path) -> Result<std::process::Output> {
    Ok(Command::new(workspace_binary("twofoldd")?)
        .arg("check-config")
        .arg(path)
        .output()?)
}

/// `--help` of every command and subcommand explains each command, each argument and each value an
/// argument takes from a list: clap's command trees of both binaries, walked whole, list none
/// without help.
#[test]
fn every_command_and_argument_has_help() {
    use clap::CommandFactory;
    let mut missing = Vec::new();
    let mut counted = 0;
    for mut command in [
        twofold_admin::cli::Cli::command(),
        twofoldd::cli::Cli::command(),
    ] {
        command.build();
        counted += without_help(&command, "", &mut missing);
    }
    assert!(
        missing.is_empty(),
        "{} of {counted} commands and arguments have no help:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// Adds to `missing` each command and argument under `command` (itself included) that has no help;
/// returns how many it looked at.
fn without_help(command: &clap::Command, above: &str, missing: &mut Vec<String>) -> usize {
    let path = format!("{above}{}", command.get_name());
    let mut counted = 1;
    // The top commands carry `about` in their attributes; subcommands take it from doc comments.
    if command.get_about().is_none() && command.get_long_about().is_none() {
        missing.push(path.clone());
    }
    for arg in command.get_arguments() {
        counted += 1;
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            let name = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().to_string().to_uppercase(),
            };
            missing.push(format!("{path} {name}"));
        }
        let values = arg.get_possible_values();
        // true and false need no words of their own; the argument's help says what they switch.
        let boolean = values.len() == 2
            && values
                .iter()
                .all(|v| v.matches("true", false) || v.matches("false", false));
        for value in values.iter().filter(|_| !boolean) {
            counted += 1;
            if value.get_help().is_none() && !arg.is_hide_possible_values_set() {
                missing.push(format!("{path} {} {}", arg.get_id(), value.get_name()));
            }
        }
    }
    for sub in command.get_subcommands() {
        // clap's own `help` subcommand has help.
        counted += without_help(sub, &format!("{path} "), missing);
    }
    counted
}

/// A value of the wrong type is explained in an admin's words, not serde's (`invalid type: string
/// "1", expected u8`).
#[test]
fn check_config_says_in_words_what_a_setting_takes() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    for (setting, says) in [
        (
            "[totp]\nwindow = \"1\"",
            r#":3: expected a number from 0 to 255, found the text "1""#,
        ),
        (
            "[totp]\nwindow = 300",
            ":3: expected a number from 0 to 255, found the number 300 (out of range)",
        ),
        (
            "[directory_defaults]\n",
            ":2: unknown field `directory_defaults`",
        ),
        // TOML reads unquoted text as a number gone wrong: "invalid float, expected `inf`".
        (
            "[log]\nlevel = info",
            r#":3: text must be in quotes: level = "info""#,
        ),
        (
            "[api]\nlisten = 127.0.0.1:8443",
            r#":3: text must be in quotes: listen = "127.0.0.1:8443""#,
        ),
        (
            "[api]\nmax_body_bytes = true",
            ":3: expected a whole number, 0 or more, found true",
        ),
    ] {
        let file = dir.path().join("typed.toml");
        std::fs::write(&file, format!("version = 1\n{setting}\n"))?;
        let out = check_config(&file)?;
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("{}{says}", file.display())),
            "{says:?} in {stderr}"
        );
        assert!(
            !stderr.contains("invalid type") && !stderr.contains(" u8"),
            "{stderr}"
        );
    }
    Ok(())
}

/// Broken TOML is one error at its line: what reading on past it found was only what it broke
/// (an unclosed inline table gave a second, confusing `missing comma` error a line below).
#[test]
fn broken_toml_is_one_error() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let file = dir.path().join("broken.toml");
    for (broken, says) in [
        (
            "version = 1\n[api]\nconnections = { a = 1\nlisten = \"127.0.0.1:8443\"\n",
            ":3: unclosed inline table, expected `}`",
        ),
        (
            "version = 1\n[api]\nlisten = [\"a\",\n\"b\"\n[totp]\n",
            ":3: unclosed array, expected `]`",
        ),
    ] {
        std::fs::write(&file, broken)?;
        let out = check_config(&file)?;
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(
            stderr.trim_end(),
            format!("{}{says}", file.display()),
            "{broken:?}"
        );
    }
    Ok(())
}

/// Every key is optional, as the shipped file says: a lockout table with one key keeps the other
/// defaults (it said `missing field delay_after`).
#[test]
fn a_lockout_table_with_one_key_is_valid() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let file = dir.path().join("lockout.toml");
    std::fs::write(
        &file,
        "version = 1\n[lockout.user]\nmax_failures = 5\n[lockout.address]\nlock_seconds = 0\n",
    )?;
    let out = check_config(&file)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A file setting whose file is missing is found by check-config, with its line and name, and by the
/// daemon before it makes anything (it made a master key, then failed on `/nonexistent: No such file
/// or directory` without naming the setting).
#[test]
fn missing_files_are_named_by_their_setting_before_anything_is_made() -> Result<()> {
    let dir = TempDir::new("twofold-config")?;
    let data = dir.path().join("data");
    let file = dir.path().join("files.toml");
    std::fs::write(
        &file,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[api]\ntls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = \"{}\"\n[email]\nhost = \"127.0.0.1\"\nfrom = \"twofold@example.com\"\nusername = \"twofold\"\npassword_file = \"/nonexistent/smtp-password\"\n",
            data.display(),
            dir.path().display()
        ),
    )?;
    let out = check_config(&file)?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    let path = file.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(r#"{path}:4: tls_cert_file = "/nonexistent/cert.pem": no such file"#),
            format!(
                r#"{path}:5: tls_key_file = "{}": is a folder, not a file"#,
                dir.path().display()
            ),
            format!(r#"{path}:10: password_file = "/nonexistent/smtp-password": no such file"#),
        ],
        "{stderr}"
    );
    let out = Command::new(workspace_binary("twofoldd")?)
        .arg("--config")
        .arg(&file)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("tls_cert_file"), "{stderr}");
    assert!(
        !data.exists(),
        "nothing made in the data folder before the check"
    );
    Ok(())
}

/// `twofoldd --listen ADDR --data-dir DIR` runs without a configuration file.
#[test]
fn twofoldd_takes_the_port_and_data_folder_without_a_config_file() -> Result<()> {
    // The installed /etc/twofold/twofold.toml would be read instead; no package is installed while
    // this is held.
    let _machine = crate::packaging::machine_lock()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::prepare("", &[])?;
    let data = daemon.dir.path().join("elsewhere");
    daemon.command_line(&[
        "--listen".as_ref(),
        listen.as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    daemon.launch()?;
    assert_eq!(daemon.api, listen);
    let out = Command::new(workspace_binary("twofold-admin")?)
        .arg("--socket")
        .arg(data.join("admin.sock"))
        .args(["--json", "status"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(status["api_listen"], listen.as_str(), "{status}");
    assert!(!daemon.dir.path().join("twofold-data").exists());
    Ok(())
}
