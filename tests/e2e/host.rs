//! The daemon on its host, as the unit runs it: as its own user with other processes' /proc hidden
//! (`ProtectProc=invisible`), not dumpable, and closing admin connections that sit idle.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use twofold_tests::Daemon;

use crate::console::RoleAccounts;

/// A daemon running as a user of its own (whose primary group is the socket's, so it may give the
/// socket that group) in a mount namespace whose /proc shows it only its own processes, as
/// `ProtectProc=invisible` does; and Unix users with each admin role. Answers the daemon's uid.
fn daemon_as_its_own_user(prefix: &str) -> Result<(RoleAccounts, Daemon, u32)> {
    let mut accounts = RoleAccounts::create(prefix)?;
    let user = format!("{prefix}d{}", std::process::id() % 100_000);
    let socket_group = accounts.socket_group().to_owned();
    let uid = accounts.add_user(&user, &socket_group, &[])?;
    let mut daemon = Daemon::prepare(&accounts.config(), &[])?;
    let data = daemon.data_dir();
    std::fs::create_dir_all(&data)?;
    std::os::unix::fs::chown(&data, Some(uid), None)?;
    if let Some(socket_dir) = accounts.socket.parent() {
        std::os::unix::fs::chown(socket_dir, Some(uid), None)?;
    }
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={socket_group}"));
    daemon.wrap(&[
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount -t proc -o hidepid=invisible proc /proc && exec \"$@\"",
        "sh",
        "setpriv",
        &reuid,
        &regid,
        "--init-groups",
        "--pdeathsig",
        "keep",
        "--",
    ]);
    daemon.launch()?;
    Ok((accounts, daemon, uid))
}

/// An operator's supplementary groups come from the socket (SO_PEERGROUPS), not from
/// /proc/PID/status of the connecting process: with /proc hidden from the daemon (the unit's
/// `ProtectProc=invisible`), or the process gone or its pid reused, the role is still the right one.
#[test]
fn roles_from_supplementary_groups_hold_when_the_daemon_cannot_see_other_processes() -> Result<()> {
    let (accounts, daemon, _) = daemon_as_its_own_user("tfpg")?;
    // Each role's user has the socket's group as primary group and the role's group as a
    // supplementary one: only the supplementary group gives the role.
    for role in ["helpdesk", "admin", "master admin"] {
        let who = accounts.run_as(role, &["whoami"])?;
        let stdout = String::from_utf8_lossy(&who.stdout);
        assert!(
            who.status.success() && stdout.contains(&format!("role {role} ")),
            "{role}: {who:?}"
        );
    }
    let refused = accounts.run_as("helpdesk", &["apikey", "list"])?;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("needs the master admin role"),
        "{refused:?}"
    );
    drop(daemon);
    Ok(())
}

/// The daemon makes itself non-dumpable (PR_SET_DUMPABLE 0): no core file, and its /proc files that
/// could leak the master key or seeds (mem, environ, maps) belong to root, so another process of the
/// daemon's own user cannot read them.
#[test]
fn the_running_daemon_is_not_dumpable() -> Result<()> {
    let (_accounts, daemon, uid) = daemon_as_its_own_user("tfdu")?;
    let Some(pid) = daemon.pid() else {
        bail!("the daemon is not running");
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())),
        "the daemon runs as uid {uid}: {status}"
    );
    for file in ["environ", "mem", "maps"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}"))?.uid();
        assert_eq!(
            owner, 0,
            "/proc/{pid}/{file} belongs to root, not to uid {uid}"
        );
    }
    let same_user = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            "--regid=65534",
            "--clear-groups",
            "cat",
            &format!("/proc/{pid}/environ"),
        ])
        .output()?;
    assert!(
        !same_user.status.success() && same_user.stdout.is_empty(),
        "a process of the daemon's user cannot read its environment: {same_user:?}"
    );
    Ok(())
}

/// An admin connection that sends no request, or half of one, is closed after
/// `[admin] idle_timeout_seconds`; one in use is not, and the daemon keeps accepting.
#[test]
fn idle_admin_connections_are_closed_and_busy_ones_kept() -> Result<()> {
    let daemon = Daemon::start("\n[admin]\nidle_timeout_seconds = 1\n")?;
    let connect = || -> Result<UnixStream> {
        let stream = UnixStream::connect(daemon.admin_socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(stream)
    };
    // Seconds until the daemon closes `stream`, reading (and discarding) any answers.
    let closed_after = |stream: UnixStream| -> Result<f64> {
        let started = Instant::now();
        let mut rest = Vec::new();
        match (&stream).read_to_end(&mut rest) {
            Ok(_) => Ok(started.elapsed().as_secs_f64()),
            Err(e) => bail!("not closed within 15 s: {e}"),
        }
    };
    let silent = connect()?;
    let mut half = connect()?;
    half.write_all(br#"{"action": "wh"#)?;
    let mut busy = connect()?;
    let mut answers = BufReader::new(busy.try_clone()?);
    // Requests back to back for 2.5 s, more than twice the timeout: idle time, not age, closes.
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(2500) && requests < 100_000 {
        busy.write_all(b"{\"action\": \"who_am_i\"}\n")?;
        let mut answer = String::new();
        answers.read_line(&mut answer)?;
        assert!(answer.contains("\"reply\""), "{answer}");
        requests += 1;
    }
    for (what, stream) in [("silent", silent), ("half a request", half)] {
        let seconds = closed_after(stream)?;
        // Closed while `busy` worked, 1.5 s after the timeout at the latest.
        assert!(
            seconds < 0.1,
            "{what}: closed {seconds:.1} s after the busy requests"
        );
    }
    let seconds = closed_after(busy)?;
    assert!(
        (0.5..5.0).contains(&seconds),
        "the busy connection closed {seconds:.1} s after its last request"
    );
    let mut admin = daemon.admin()?;
    admin.create_user("still-served")?;
    Ok(())
}
