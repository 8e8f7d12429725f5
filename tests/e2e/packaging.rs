//! The appliance packages, and what the systemd unit relies on.
//!
//! `the_deb_installs_runs_upgrades_removes_and_purges` installs the real .deb on this machine with dpkg
//! (CI runs as root), starts the packaged daemon as the service user with the packaged config and a
//! NOTIFY_SOCKET we listen on, as systemd would (systemd is not PID 1 here), authenticates a user,
//! upgrades to a higher version, and removes and purges. The packages are made from the dev build the
//! other tests use (packaging/build-packages --profile dev --no-build --fast: strip and package, no
//! compile), so CI compiles nothing twice. Their unoptimised binaries (wasmtime above all) are far
//! larger than the release ones, so the 40 MiB installed-size budget is enforced by build-packages on
//! release builds, not here. The other tests cover what systemd would see without
//! systemd: the rpm's contents and scriptlets, the sd_notify protocol (READY, WATCHDOG, RELOADING,
//! STOPPING), the system calls against the unit's filter, and logging to the journal's socket.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use twofold_tests::{base_config, enroll, oathtool, workspace_binary, Admin, Api, TempDir};
use twofold_wire::admin::{AdminReply, AdminRequest};

use crate::step_margin;

const PACKAGE: &str = "twofold";
const USER: &str = "twofold";
const CONFIG: &str = "/etc/twofold/twofold.toml";
const DATA: &str = "/var/lib/twofold";
const ADMIN_SOCKET: &str = "/run/twofold/admin.sock";
/// The master key the first install makes, loaded by the unit as the credential `master-key`.
const CREDSTORE_KEY: &str = "/etc/credstore/twofold.master-key";
const UNIT: &str = "/usr/lib/systemd/system/twofoldd.service";

/// The lines of `systemd-analyze verify` that are about Twofold's own units. The tool also reports
/// other installed units it loads on the way (with freeradius installed: `freeradius.service:23: Unit
/// uses MemoryLimit=`), which an appliance with other packages has and we cannot fix.
fn complaints_about_our_units(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| line.contains("twofold"))
        .collect()
}

#[test]
fn only_complaints_about_our_own_units_count() {
    let table = [
        ("", 0),
        ("/lib/systemd/system/freeradius.service:23: Unit uses MemoryLimit=; please use MemoryMax= instead.", 0),
        ("/lib/systemd/system/twofoldd.service:12: Unknown key name 'Foo' in section 'Service', ignoring.", 1),
        ("twofoldd.service: Command /usr/bin/twofoldd is not executable: No such file or directory", 1),
        ("/etc/systemd/system/other.service:1: x\n/usr/lib/sysusers.d/twofold.conf:2: bad", 1),
    ];
    for (output, count) in table {
        assert_eq!(complaints_about_our_units(output).len(), count, "{output}");
    }
}
/// The packaged config serves here.
const API: &str = "127.0.0.1:8443";
const MAX_EXPOSURE: f64 = 2.0;

/// Runs a command, failing with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("running {program}"))?;
    check(program, args, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn check(program: &str, args: &[&str], output: &Output) -> Result<()> {
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The .deb and .rpm of the workspace version, and a .deb of a higher version to upgrade to.
#[derive(Clone)]
struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
    upgrade_deb: PathBuf,
    upgrade_version: String,
}

static PACKAGES: Mutex<Option<Packages>> = Mutex::new(None);

/// Packages the dev build once per test process, into target/debug/e2e-packages. Call with the
/// machine lock held: another test process may be packaging into the same folder.
fn packages() -> Result<Packages> {
    let mut built = PACKAGES
        .lock()
        .map_err(|_| anyhow!("packages lock poisoned"))?;
    if let Some(packages) = built.as_ref() {
        return Ok(packages.clone());
    }
    let out = workspace_binary("twofoldd")?
        .parent()
        .ok_or_else(|| anyhow!("no target folder"))?
        .join("e2e-packages");
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/build-packages");
    let script = script.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let out_arg = out.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let first = run(
        script,
        &["--profile", "dev", "--no-build", "--fast", "--out", out_arg],
    )?;
    let mut paths = first.lines().map(PathBuf::from);
    let (deb, rpm) = (paths.next(), paths.next());
    let upgrade_version = format!("{}.1", env!("CARGO_PKG_VERSION"));
    let second = run(
        script,
        &[
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--no-rpm",
            "--version",
            &upgrade_version,
            "--out",
            out_arg,
        ],
    )?;
    let packages = Packages {
        deb: deb.ok_or_else(|| anyhow!("build-packages printed no .deb: {first}"))?,
        rpm: rpm.ok_or_else(|| anyhow!("build-packages printed no .rpm: {first}"))?,
        upgrade_deb: second
            .lines()
            .next()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("no upgrade .deb: {second}"))?,
        upgrade_version,
    };
    for path in [&packages.deb, &packages.rpm, &packages.upgrade_deb] {
        if !path.is_file() {
            bail!("{} was not made", path.display());
        }
    }
    *built = Some(packages.clone());
    Ok(packages)
}

/// Installing a package is machine-wide: one test (of any test process) at a time.
pub(crate) fn machine_lock() -> Result<File> {
    let file = File::create(std::env::temp_dir().join("twofold-packaging-e2e.lock"))?;
    file.lock()?;
    Ok(file)
}

fn installed_version() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", PACKAGE])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.strip_prefix("install ok installed ")
        .map(str::to_owned)
}

/// Datagrams the daemon sends to $NOTIFY_SOCKET.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: PathBuf) -> Result<Notifications> {
        let socket = UnixDatagram::bind(&path)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Notifications {
            socket,
            path,
            seen: Vec::new(),
        })
    }

    /// The next message with a line starting with `wanted`, skipping others; fails after `limit`, or
    /// once `child` has exited and its last messages are read.
    fn wait(
        &mut self,
        wanted: &str,
        limit: Duration,
        child: &mut Child,
        log: &Path,
    ) -> Result<String> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        let mut exited = None;
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(message.clone());
                    if message.lines().any(|line| line.starts_with(wanted)) {
                        return Ok(message);
                    }
                    continue;
                }
                Err(e) if twofold_tests::read_timed_out(&e) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(status) = exited {
                bail!(
                    "twofoldd exited ({status}) before {wanted}; messages {:?}; log:\n{}",
                    self.seen,
                    read_log(log)
                );
            }
            exited = child.try_wait()?;
            if exited.is_none() && Instant::now() > deadline {
                bail!(
                    "no {wanted} within {limit:?}; messages {:?}; log:\n{}",
                    self.seen,
                    read_log(log)
                );
            }
        }
    }

    fn saw(&self, line: &str) -> bool {
        self.seen.iter().any(|m| m.lines().any(|l| l == line))
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn wait_exit(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("twofoldd still running after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A daemon process of this test, killed if the test ends while it still runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, name: &str) -> Result<()> {
    run("kill", &[&format!("-{name}"), &child.id().to_string()]).map(drop)
}

/// Starts `command` through `sh -c` so that WATCHDOG_PID is the daemon's own pid (the shell execs it),
/// with the bare environment a systemd service gets.
fn spawn_with_watchdog(
    command: &str,
    notify: &Path,
    watchdog_usec: u64,
    log: &Path,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new("sh")
        .arg("-c")
        .arg(format!("export WATCHDOG_PID=$$; exec {command}"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting twofoldd")
}

fn mode_owner(path: &str) -> Result<(u32, String, String)> {
    let meta = std::fs::metadata(path).with_context(|| path.to_owned())?;
    let name = |id: u32, db: &str| -> Result<String> {
        let entry = run("getent", &[db, &id.to_string()])?;
        Ok(entry.split(':').next().unwrap_or_default().to_owned())
    };
    Ok((
        meta.permissions().mode() & 0o7777,
        name(meta.uid(), "passwd")?,
        name(meta.gid(), "group")?,
    ))
}

/// Purges the package (and so its data) whatever happens to the test.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .stdin(Stdio::null())
            .output();
    }
}

async fn verify(api: &Api, user: &str, code: &str) -> Result<String> {
    let answer = api
        .post("/api/v1/verify", &json!({"user": user, "code": code}))
        .await?;
    if answer.status != 200 {
        bail!("verify answered {}: {}", answer.status, answer.raw);
    }
    Ok(answer.body["result"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Asks for a code by the in-person channel and reads it from the helpdesk's handover queue, where the
/// in-person plugin (wasm, run by the daemon's plugin engine) puts it.
async fn in_person_code(admin: &mut Admin, api: &Api, user: &str) -> Result<String> {
    let asked = api
        .post(
            "/api/v1/challenge",
            &json!({"user": user, "channel": "in_person"}),
        )
        .await?;
    if asked.status != 202 {
        bail!(
            "in-person challenge answered {}: {}",
            asked.status,
            asked.raw
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let AdminReply::Handovers { entries } = admin.ok(&AdminRequest::HandoverList)? {
            if let Some(entry) = entries.into_iter().find(|e| e.user == user) {
                return Ok(entry.code);
            }
        }
        if Instant::now() > deadline {
            bail!("no handover for {user} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn plugins_loaded(admin: &mut Admin) -> Result<Vec<String>> {
    match admin.ok(&AdminRequest::PluginStatus)? {
        AdminReply::Plugins { plugins } => Ok(plugins
            .into_iter()
            .filter(|p| p.loaded)
            .map(|p| p.name)
            .collect()),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn port_is_free(addr: &str) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

#[tokio::test]
async fn the_deb_installs_runs_upgrades_removes_and_purges() -> Result<()> {
    let _lock = machine_lock()?;
    let packages = packages()?;
    if installed_version().is_some() {
        // A run that was killed before its cleanup; this machine is a test machine.
        run("dpkg", &["--purge", PACKAGE])?;
    }
    if !port_is_free(API) {
        bail!("{API} is in use: the packaged config serves there; stop whatever listens on it");
    }
    let _purge = Purge;

    // Install.
    run("dpkg", &["-i", path_str(&packages.deb)?])?;
    assert_eq!(
        installed_version().as_deref(),
        Some(format!("{}-1", env!("CARGO_PKG_VERSION")).as_str())
    );
    for (path, mode, owner, group) in [
        ("/usr/bin/twofoldd", 0o755, "root", "root"),
        ("/usr/bin/twofold-admin", 0o755, "root", "root"),
        (UNIT, 0o644, "root", "root"),
        ("/usr/lib/sysusers.d/twofold.conf", 0o644, "root", "root"),
        ("/usr/lib/tmpfiles.d/twofold.conf", 0o644, "root", "root"),
        ("/usr/lib/twofold/plugins", 0o755, "root", "root"),
        ("/usr/share/doc/twofold/README.md", 0o644, "root", "root"),
        ("/etc/twofold", 0o750, "root", USER),
        (CONFIG, 0o640, "root", USER),
        (DATA, 0o700, USER, USER),
        ("/run/twofold", 0o755, USER, USER),
    ] {
        assert_eq!(
            mode_owner(path)?,
            (mode, owner.to_owned(), group.to_owned()),
            "{path}"
        );
    }
    let conffiles = run("dpkg-query", &["-W", "-f", "${Conffiles}", PACKAGE])?;
    assert!(
        conffiles.contains(CONFIG),
        "{CONFIG} is a conffile: {conffiles:?}"
    );
    let account = run("getent", &["passwd", USER])?;
    let fields: Vec<&str> = account.trim().split(':').collect();
    let uid: u32 = fields
        .get(2)
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| anyhow!("bad passwd entry {account}"))?;
    assert!(uid < 1000, "a system account: {account}");
    assert_eq!(
        fields.get(5..7),
        Some(&[DATA, "/usr/sbin/nologin"][..]),
        "{account}"
    );
    assert_eq!(
        run("/usr/bin/twofoldd", &["check-config", CONFIG])?.trim(),
        format!("{CONFIG}: ok")
    );
    let help = run("/usr/bin/twofold-admin", &["--help"])?;
    assert!(help.contains("Usage"), "{help}");
    documented_and_completed()?;

    // The unit, as installed.
    let verify_unit = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()
        .context("systemd-analyze")?;
    check("systemd-analyze", &["verify", UNIT], &verify_unit)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&verify_unit.stdout),
        String::from_utf8_lossy(&verify_unit.stderr)
    );
    let ours = complaints_about_our_units(&output);
    assert!(ours.is_empty(), "systemd-analyze verify is clean: {ours:?}");
    let exposure = exposure_of(UNIT)?;
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}");

    // The first install made the master key apart from the data, for the unit's LoadCredential=.
    assert_eq!(
        mode_owner(CREDSTORE_KEY)?,
        (0o600, "root".to_owned(), "root".to_owned())
    );
    assert_eq!(std::fs::metadata(CREDSTORE_KEY)?.len(), 32);

    // Run the packaged daemon as its user with the packaged config, as the unit does: systemd copies
    // the credential into a folder only the service's user can read and names it in the environment.
    let dir = TempDir::new("twofold-pkg")?;
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials)?;
    std::fs::copy(CREDSTORE_KEY, credentials.join("master-key"))?;
    for (path, mode) in [
        (credentials.join("master-key"), 0o400),
        (credentials.clone(), 0o500),
    ] {
        std::os::unix::fs::chown(&path, Some(uid), None)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    let log = dir.path().join("daemon.log");
    let mut notify = Notifications::bind(dir.path().join("notify.sock"))?;
    std::os::unix::fs::chown(&notify.path, Some(uid), None)?;
    let command = format!(
        "env CREDENTIALS_DIRECTORY={} setpriv --reuid={USER} --regid={USER} --init-groups --no-new-privs -- /usr/bin/twofoldd --config {CONFIG} run",
        credentials.display()
    );
    let mut daemon = Running(spawn_with_watchdog(
        &command,
        &notify.path,
        2_000_000,
        &log,
    )?);
    let ready = notify.wait("READY=1", Duration::from_secs(60), &mut daemon.0, &log)?;
    assert!(
        ready.contains(&format!(
            "STATUS=listening on https://{API} admin {ADMIN_SOCKET}"
        )),
        "{ready}"
    );
    notify.wait("WATCHDOG=1", Duration::from_secs(5), &mut daemon.0, &log)?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id()))?;
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    assert_eq!(
        uids.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![uid.to_string(); 4],
        "runs as {USER}: {uids}"
    );
    assert!(
        status.lines().any(|l| l == "NoNewPrivs:\t1"),
        "no new privileges"
    );
    assert!(
        !Path::new(&format!("{DATA}/master.key")).exists(),
        "no master key beside the store"
    );
    assert_eq!(mode_owner(ADMIN_SOCKET)?.0, 0o660);

    // Authenticate a user through the packaged daemon.
    let cert = PathBuf::from(format!("{DATA}/tls/cert.pem"));
    let mut admin = Admin::connect(Path::new(ADMIN_SOCKET))?;
    let api = Api::new(API, &cert)?.with_key(&admin.api_key("pkg-test")?);
    step_margin(10).await;
    let alice = enroll(&mut admin, &api, "alice").await?;
    assert_eq!(
        verify(&api, "alice", &oathtool(&alice.secret, 0, &[])?).await?,
        "accept"
    );

    // The admin edits the config (another issuer; the packaged in-person plugin for the helpdesk); an
    // upgrade keeps the edit and the data.
    let packaged = std::fs::read_to_string(CONFIG)?;
    let edited = packaged
        .replace("issuer = \"Twofold\"", "issuer = \"Twofold Appliance\"")
        .replace("in_person = []", "in_person = [\"helpdesk\"]")
        + "\n[[plugin]]\nname = \"helpdesk\"\nfile = \"in-person.wasm\"\nhandover = true\n";
    assert!(
        edited.contains("Twofold Appliance") && edited.contains("in_person = [\"helpdesk\"]"),
        "the packaged config has both keys"
    );
    std::fs::write(CONFIG, &edited)?;
    run("/usr/bin/twofoldd", &["check-config", CONFIG])?;
    run("dpkg", &["-i", path_str(&packages.upgrade_deb)?])?;
    assert_eq!(
        installed_version(),
        Some(format!("{}-1", packages.upgrade_version))
    );
    assert_eq!(
        std::fs::read_to_string(CONFIG)?,
        edited,
        "the edited conffile is kept"
    );
    assert_eq!(
        mode_owner(CONFIG)?,
        (0o640, "root".to_owned(), USER.to_owned())
    );
    // What the unit's restart does: SIGTERM (STOPPING=1, clean exit), then the new binary.
    signal(&daemon.0, "TERM")?;
    let _ = notify.wait("STOPPING=1", Duration::from_secs(10), &mut daemon.0, &log);
    assert!(
        notify.saw("STOPPING=1"),
        "STOPPING=1 on SIGTERM: {:?}",
        notify.seen
    );
    assert!(
        wait_exit(&mut daemon.0, Duration::from_secs(30))
            .await?
            .success(),
        "clean exit on SIGTERM"
    );
    let mut daemon = Running(spawn_with_watchdog(
        &command,
        &notify.path,
        2_000_000,
        &log,
    )?);
    notify.wait("READY=1", Duration::from_secs(60), &mut daemon.0, &log)?;
    let mut admin = Admin::connect(Path::new(ADMIN_SOCKET))?;
    step_margin(10).await;
    assert_eq!(
        verify(&api, "alice", &oathtool(&alice.secret, 30, &[])?).await?,
        "accept",
        "alice's device survived"
    );
    let bob = enroll(&mut admin, &api, "bob").await?;
    assert!(
        bob.uri.contains("issuer=Twofold%20Appliance"),
        "the kept config is in force: {}",
        bob.uri
    );
    // The packaged plugin runs in the packaged daemon, as the service user.
    assert_eq!(plugins_loaded(&mut admin)?, vec!["helpdesk".to_owned()]);
    let handed_over = in_person_code(&mut admin, &api, "alice").await?;
    assert_eq!(
        verify(&api, "alice", &handed_over).await?,
        "accept",
        "the code the plugin queued"
    );
    // The packaged CLI finds the packaged daemon's socket by itself.
    let shown = Command::new("/usr/bin/twofold-admin")
        .args(["--json", "user", "show", "alice"])
        .env_remove("TWOFOLD_ADMIN_SOCKET")
        .current_dir("/")
        .output()?;
    check(
        "twofold-admin",
        &["--json", "user", "show", "alice"],
        &shown,
    )?;
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&alice.device),
        "alice's device is listed"
    );

    // Remove stops the daemon and keeps data and config. dpkg runs alongside: this test is the
    // daemon's parent and must reap it for prerm to see it gone.
    let remove = Command::new("dpkg")
        .args(["-r", PACKAGE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    assert!(
        wait_exit(&mut daemon.0, Duration::from_secs(40))
            .await?
            .success(),
        "prerm stopped the daemon cleanly"
    );
    check("dpkg", &["-r", PACKAGE], &remove.wait_with_output()?)?;
    assert!(!Path::new("/usr/bin/twofoldd").exists());
    for kept in [CONFIG, CREDSTORE_KEY, &format!("{DATA}/store")] {
        assert!(Path::new(kept).exists(), "{kept} is kept on remove");
    }

    // Purge deletes data and config; the system account stays (Debian policy).
    run("dpkg", &["--purge", PACKAGE])?;
    assert_eq!(installed_version(), None);
    for gone in [DATA, "/etc/twofold", CREDSTORE_KEY] {
        assert!(!Path::new(gone).exists(), "{gone} is removed on purge");
    }
    assert!(
        run("getent", &["passwd", USER]).is_ok(),
        "the account stays"
    );
    Ok(())
}

/// The installed man pages (one per command and subcommand) render, and bash, zsh and fish find the
/// completions of both commands where they look.
fn documented_and_completed() -> Result<()> {
    let man1 = Path::new("/usr/share/man/man1");
    let pages: Vec<String> = std::fs::read_dir(man1)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|n| n.starts_with("twofold"))
        .collect();
    // Every command and subcommand of both binaries has its page (60 today: twofoldd 3, twofold-admin 57).
    for page in [
        "twofoldd.1.gz",
        "twofoldd-check-config.1.gz",
        "twofold-admin.1.gz",
        "twofold-admin-user-create.1.gz",
        "twofold-admin-policy-group-move.1.gz",
        "twofold-admin-restore-confirm.1.gz",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} in {pages:?}");
    }
    assert!(pages.len() >= 60, "{} pages: {pages:?}", pages.len());
    for page in &pages {
        assert_eq!(
            mode_owner(&format!("/usr/share/man/man1/{page}"))?,
            (0o644, "root".to_owned(), "root".to_owned()),
            "{page}"
        );
    }
    // man renders the page as an admin reads it, the help of each option included.
    let rendered = Command::new("man")
        .args(["-l", "/usr/share/man/man1/twofold-admin-user-create.1.gz"])
        .env("MANWIDTH", "100")
        .stdin(Stdio::null())
        .output()
        .context("man -l")?;
    check("man", &["-l", "twofold-admin-user-create.1.gz"], &rendered)?;
    // Bold and underline come as overstrikes ("-\x08-"): the plain text is what follows each.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&rendered.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    for expected in [
        "twofold-admin-user-create",
        "Create a local user",
        "--email",
        "Mail address for codes and notices",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    for (path, says) in [
        (
            "/usr/share/bash-completion/completions/twofold-admin",
            "complete -F",
        ),
        (
            "/usr/share/bash-completion/completions/twofoldd",
            "complete -F",
        ),
        (
            "/usr/share/zsh/vendor-completions/_twofold-admin",
            "#compdef twofold-admin",
        ),
        (
            "/usr/share/zsh/vendor-completions/_twofoldd",
            "#compdef twofoldd",
        ),
        (
            "/usr/share/fish/vendor_completions.d/twofold-admin.fish",
            "complete -c twofold-admin",
        ),
        (
            "/usr/share/fish/vendor_completions.d/twofoldd.fish",
            "complete -c twofoldd",
        ),
    ] {
        let script = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
        assert!(script.contains(says), "{says:?} in {path}");
    }
    // bash loads the completion and completes a subcommand from it.
    let completed = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/twofold-admin \
             && f=$(complete -p twofold-admin | sed 's/.* -F \\([^ ]*\\) .*/\\1/') \
             && COMP_WORDS=(twofold-admin us) COMP_CWORD=1 COMP_LINE='twofold-admin us' COMP_POINT=16 \
             && \"$f\" twofold-admin us twofold-admin && printf '%s\\n' \"${COMPREPLY[@]}\"",
        ],
    )?;
    assert_eq!(completed.trim(), "user", "{completed}");
    Ok(())
}

/// On a machine without systemd's tools (Debian minbase, a container), postinst makes the account with
/// adduser: its home is there first, so the install prints no warning (it printed `adduser: Warning:
/// The home dir /var/lib/twofold you specified can't be accessed`), and ends 0700 twofold.
#[test]
fn the_deb_installs_without_systemd_and_without_a_warning() -> Result<()> {
    let _lock = machine_lock()?;
    let packages = packages()?;
    if installed_version().is_some() {
        run("dpkg", &["--purge", PACKAGE])?;
    }
    let _purge = Purge;
    // A first install: no account yet (purge keeps it, so an earlier test's stays).
    if run("getent", &["passwd", USER]).is_ok() {
        run("userdel", &[USER])?;
    }
    if run("getent", &["group", USER]).is_ok() {
        run("groupdel", &[USER])?;
    }
    // Every program of this machine but systemd's sysusers and tmpfiles, as on a minbase install.
    let farm = TempDir::new("twofold-no-systemd")?;
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let name = entry?.file_name();
            let link = farm.path().join(&name);
            if name == "systemd-sysusers" || name == "systemd-tmpfiles" || link.exists() {
                continue;
            }
            std::os::unix::fs::symlink(Path::new(dir).join(&name), link)?;
        }
    }
    let deb = path_str(&packages.deb)?;
    let installed = Command::new("dpkg")
        .args(["-i", deb])
        .env("PATH", farm.path())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()?;
    check("dpkg", &["-i", deb], &installed)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(
        !said.to_lowercase().contains("warning"),
        "the install warns:\n{said}"
    );
    let account = run("getent", &["passwd", USER])?;
    assert!(
        account
            .trim()
            .ends_with(":/var/lib/twofold:/usr/sbin/nologin"),
        "{account}"
    );
    assert_eq!(mode_owner(DATA)?, (0o700, USER.to_owned(), USER.to_owned()));
    Ok(())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", path.display()))
}

/// `systemd-analyze security --offline=true`'s overall exposure (0 = locked down, 10 = exposed).
fn exposure_of(unit: &str) -> Result<f64> {
    let report = Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()?;
    let text = String::from_utf8_lossy(&report.stdout);
    text.lines()
        .find_map(|l| {
            l.split("Overall exposure level for twofoldd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "no exposure in systemd-analyze output:\n{text}{}",
                String::from_utf8_lossy(&report.stderr)
            )
        })
}

#[tokio::test]
async fn the_rpm_has_the_same_files_and_its_scriptlets() -> Result<()> {
    let _lock = machine_lock()?;
    let packages = packages()?;
    let rpm = path_str(&packages.rpm)?;
    let rpm_files: BTreeSet<String> = run("rpm", &["-qlp", rpm])?
        .lines()
        .map(str::to_owned)
        .collect();
    let deb_files: BTreeSet<String> = run("dpkg-deb", &["--contents", path_str(&packages.deb)?])?
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_owned())
        // dpkg's own copyright notice, which rpm keeps in its header instead.
        .filter(|p| p != "/usr/share/doc/twofold/copyright")
        // zsh looks for vendor completions in vendor-completions on Debian, site-functions on Fedora.
        .map(|p| p.replace("/zsh/vendor-completions/", "/zsh/site-functions/"))
        .collect();
    assert_eq!(rpm_files, deb_files);

    let attributes = run(
        "rpm",
        &[
            "-qp",
            "--queryformat",
            "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]",
            rpm,
        ],
    )?;
    for expected in [
        "/usr/bin/twofoldd -rwxr-xr-x root root",
        "/usr/bin/twofold-admin -rwxr-xr-x root root",
        "/etc/twofold/twofold.toml -rw-r----- root twofold",
        "/usr/lib/systemd/system/twofoldd.service -rw-r--r-- root root",
    ] {
        assert!(
            attributes.lines().any(|l| l == expected),
            "{expected} in\n{attributes}"
        );
    }
    assert_eq!(run("rpm", &["-qp", "--configfiles", rpm])?.trim(), CONFIG);

    let scripts = run("rpm", &["-qp", "--scripts", rpm])?;
    let sysusers = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/twofold.sysusers.conf"),
    )?;
    let account = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .ok_or_else(|| anyhow!("no account in sysusers.d"))?;
    for expected in [
        "preinstall scriptlet",
        account,
        "postinstall scriptlet",
        "systemd-tmpfiles --create twofold.conf",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now twofoldd.service",
        "postuninstall scriptlet",
        "systemctl try-restart twofoldd.service",
    ] {
        assert!(
            scripts.contains(expected),
            "{expected:?} in the scriptlets:\n{scripts}"
        );
    }
    for tag in ["PREIN", "POSTIN", "PREUN", "POSTUN"] {
        let script = run(
            "rpm",
            &["-qp", "--queryformat", &format!("%{{{tag}}}"), rpm],
        )?;
        let mut sh = Command::new("sh")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        sh.stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write_all(script.as_bytes())?;
        let checked = sh.wait_with_output()?;
        assert!(
            checked.status.success(),
            "{tag} is valid sh: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    Ok(())
}

/// The sd_notify protocol of the workspace binary: READY with the address, watchdog pings, RELOADING
/// and READY around SIGHUP (a bad file keeps the running config), STOPPING on SIGTERM.
#[tokio::test]
async fn the_daemon_speaks_sd_notify_ready_watchdog_reload_stopping() -> Result<()> {
    let dir = TempDir::new("twofold-notify")?;
    let config = dir.path().join("twofold.toml");
    let good = base_config(&dir.path().join("data"));
    std::fs::write(&config, &good)?;
    let log = dir.path().join("daemon.log");
    let mut notify = Notifications::bind(dir.path().join("notify.sock"))?;
    let binary = workspace_binary("twofoldd")?;
    // An inherited JOURNAL_STREAM that is not this stderr must not divert the logs (asserted below
    // through the log file).
    let command = format!(
        "env JOURNAL_STREAM=0:0 {} --config {} run",
        binary.display(),
        config.display()
    );
    let mut running = Running(spawn_with_watchdog(
        &command,
        &notify.path,
        1_000_000,
        &log,
    )?);
    let daemon = &mut running.0;
    let ready = notify.wait("READY=1", Duration::from_secs(60), daemon, &log)?;
    let addr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=listening on https://"))
        .and_then(|s| s.split_whitespace().next())
        .ok_or_else(|| anyhow!("no address in {ready}"))?
        .to_owned();
    for _ in 0..2 {
        notify.wait("WATCHDOG=1", Duration::from_secs(3), daemon, &log)?;
    }

    // A valid change: log.level applies live. At info, a failed TLS handshake is not logged...
    let handshake_failures = || read_log(&log).matches("TLS handshake failed").count();
    fail_a_tls_handshake(&addr)?;
    assert_eq!(handshake_failures(), 0);
    std::fs::write(&config, format!("{good}\n[log]\nlevel = \"debug\"\n"))?;
    signal(daemon, "HUP")?;
    let reloading = notify.wait("RELOADING=1", Duration::from_secs(10), daemon, &log)?;
    let stamp = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_default();
    assert!(
        stamp.parse::<u64>().is_ok_and(|usec| usec > 0),
        "RELOADING=1 carries MONOTONIC_USEC: {reloading}"
    );
    let reloaded = notify.wait("READY=1", Duration::from_secs(10), daemon, &log)?;
    assert!(reloaded.contains("; reloaded"), "{reloaded}");
    // ...at debug it is.
    fail_a_tls_handshake(&addr)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake_failures() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        handshake_failures(),
        1,
        "debug logging after the reload, to stderr"
    );

    // A broken file: refused with its line, the daemon keeps serving with what it had.
    std::fs::write(&config, format!("lisen = 1\n{good}"))?;
    signal(daemon, "HUP")?;
    notify.wait("RELOADING=1", Duration::from_secs(10), daemon, &log)?;
    let refused = notify.wait("READY=1", Duration::from_secs(10), daemon, &log)?;
    assert!(
        refused.contains("reload failed, running configuration kept"),
        "{refused}"
    );
    assert!(refused.contains("lisen"), "names the bad key: {refused}");
    let api = Api::new(&addr, &dir.path().join("data/tls/cert.pem"))?;
    assert_eq!(api.get("/health").await?.status, 200);

    // A change that needs a restart is said to need one, by name.
    std::fs::write(
        &config,
        good.replace("[totp]", "")
            .replace("[api]\n", "[totp]\nwindow = 2\n\n[api]\n"),
    )?;
    signal(daemon, "HUP")?;
    let pending = notify.wait("READY=1", Duration::from_secs(10), daemon, &log)?;
    assert!(
        pending.contains("; reloaded; these changed settings need a restart: totp.window\n")
            || pending.ends_with("; reloaded; these changed settings need a restart: totp.window"),
        "{pending}"
    );

    signal(daemon, "TERM")?;
    let exited = wait_exit(daemon, Duration::from_secs(30)).await?;
    let _ = notify.wait("STOPPING=1", Duration::from_secs(2), daemon, &log);
    assert!(
        notify.saw("STOPPING=1"),
        "STOPPING=1 on SIGTERM: {:?}",
        notify.seen
    );
    assert!(exited.success(), "clean exit: {exited}");
    Ok(())
}

/// Plain text where a TLS ClientHello should be.
fn fail_a_tls_handshake(addr: &str) -> Result<()> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
    Ok(())
}

/// The names a `SystemCallFilter=` item stands for: a `@group` expanded (recursively) by
/// systemd-analyze, or a single system call.
fn syscalls_of(item: &str) -> Result<BTreeSet<String>> {
    if !item.starts_with('@') {
        return Ok(BTreeSet::from([item.to_owned()]));
    }
    let listing = run("systemd-analyze", &["syscall-filter", item])?;
    let mut names = BTreeSet::new();
    for line in listing.lines().skip(1).map(str::trim) {
        if line.starts_with('@') {
            names.extend(syscalls_of(line)?);
        } else if !line.is_empty() && !line.starts_with('#') {
            names.insert(line.to_owned());
        }
    }
    Ok(names)
}

/// What the unit's `SystemCallFilter=` lines let through: the allow-lists, less the `~` deny-lists.
fn unit_syscall_filter() -> Result<BTreeSet<String>> {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/twofoldd.service"),
    )?;
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (deny, items) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        for item in items.split_whitespace() {
            let names = syscalls_of(item)?;
            if deny {
                denied.extend(names)
            } else {
                allowed.extend(names)
            }
        }
    }
    if allowed.is_empty() {
        bail!("the unit has no SystemCallFilter allow-list");
    }
    Ok(&allowed - &denied)
}

/// The unit's seccomp filter cannot be applied without systemd as PID 1, so the daemon runs under
/// strace through start, enrollment, verification, an in-person code from a wasm plugin, reload
/// (plugins again) and stop, and every system call it made must be one the filter allows (a denied
/// one would fail with EPERM under the unit).
#[tokio::test]
async fn the_daemon_stays_inside_the_units_system_call_filter() -> Result<()> {
    let allowed = unit_syscall_filter()?;
    let dir = TempDir::new("twofold-syscalls")?;
    let config = dir.path().join("twofold.toml");
    // The in-person plugin, so that the wasm engine compiles and runs code under the filter too.
    let plugin = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n\
         [[plugin]]\nname = \"desk\"\nfile = \"in_person.wasm\"\nhandover = true\n",
        twofold_tests::delivery::plugins_dir()?.display()
    );
    std::fs::write(
        &config,
        format!("{}{plugin}", base_config(&dir.path().join("data"))),
    )?;
    let log = dir.path().join("daemon.log");
    let summary = dir.path().join("strace.txt");
    let mut notify = Notifications::bind(dir.path().join("notify.sock"))?;
    let command = format!(
        "strace -f -qq -c -o {} {} --config {} run",
        summary.display(),
        workspace_binary("twofoldd")?.display(),
        config.display()
    );
    let mut running = Running(spawn_with_watchdog(
        &command,
        &notify.path,
        1_000_000,
        &log,
    )?);
    let traced = &mut running.0;
    let ready = notify.wait("READY=1", Duration::from_secs(60), traced, &log)?;
    let addr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=listening on https://"))
        .and_then(|s| s.split_whitespace().next())
        .ok_or_else(|| anyhow!("no address in {ready}"))?
        .to_owned();
    let mut admin = Admin::connect(&dir.path().join("data/admin.sock"))?;
    let api =
        Api::new(&addr, &dir.path().join("data/tls/cert.pem"))?.with_key(&admin.api_key("strace")?);
    step_margin(5).await;
    let carol = enroll(&mut admin, &api, "carol").await?;
    assert_eq!(
        verify(&api, "carol", &oathtool(&carol.secret, 0, &[])?).await?,
        "accept"
    );
    assert_eq!(
        verify(&api, "carol", &carol.backup_codes[0]).await?,
        "accept"
    );
    assert_eq!(plugins_loaded(&mut admin)?, vec!["desk".to_owned()]);
    let handed_over = in_person_code(&mut admin, &api, "carol").await?;
    assert_eq!(verify(&api, "carol", &handed_over).await?, "accept");
    // strace (which the shell exec'd, so WATCHDOG_PID names it and the daemon pings nothing) blocks
    // fatal signals while it traces a command: signal the daemon, its child, directly.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", traced.id()))?;
    let daemon = children
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("strace has no child"))?
        .to_owned();
    run("kill", &["-HUP", &daemon])?;
    notify.wait("READY=1", Duration::from_secs(10), traced, &log)?;
    run("kill", &["-TERM", &daemon])?;
    assert!(
        wait_exit(traced, Duration::from_secs(60)).await?.success(),
        "log:\n{}",
        read_log(&log)
    );

    let report = std::fs::read_to_string(&summary)?;
    let used: BTreeSet<String> = report
        .lines()
        .filter(|l| !l.starts_with('%') && !l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| *name != "total")
        .map(str::to_owned)
        .collect();
    assert!(
        used.contains("accept4") && used.contains("fsync"),
        "strace saw the daemon work:\n{report}"
    );
    let outside: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "system calls the unit's filter would refuse: {outside:?}"
    );
    Ok(())
}

/// One journald native-protocol datagram as (FIELD, value) pairs: `NAME=value\n`, or `NAME\n`, a
/// 64-bit little-endian length, the value and `\n` (systemd.io/JOURNAL_NATIVE_PROTOCOL).
fn journal_fields(mut datagram: &[u8]) -> Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    while !datagram.is_empty() {
        let end = datagram
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| anyhow!("unterminated field"))?;
        let line = String::from_utf8_lossy(&datagram[..end]).into_owned();
        datagram = &datagram[end + 1..];
        if let Some((name, value)) = line.split_once('=') {
            fields.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let (size, rest) = datagram
            .split_at_checked(8)
            .ok_or_else(|| anyhow!("{line}: no length"))?;
        let size = usize::try_from(u64::from_le_bytes(size.try_into()?))?;
        let value = rest
            .get(..size)
            .ok_or_else(|| anyhow!("{line}: short value"))?;
        fields.push((line, String::from_utf8_lossy(value).into_owned()));
        datagram = rest.get(size + 1..).unwrap_or_default();
    }
    Ok(fields)
}

/// Under systemd stderr is the journal and JOURNAL_STREAM names it. The daemon runs in a private
/// mount namespace (unshare, as root) whose /run/systemd/journal/socket is a socket of this test, so
/// the records it sends are read here without a journald.
#[tokio::test]
async fn logs_go_to_journald_with_structured_fields_when_stderr_is_the_journal() -> Result<()> {
    let dir = TempDir::new("twofold-journal")?;
    let journal_dir = dir.path().join("journal");
    std::fs::create_dir(&journal_dir)?;
    let journal = UnixDatagram::bind(journal_dir.join("socket"))?;
    journal.set_read_timeout(Some(Duration::from_millis(200)))?;
    let config = dir.path().join("twofold.toml");
    std::fs::write(&config, base_config(&dir.path().join("data")))?;
    let log = dir.path().join("stderr.log");
    File::create(&log)?;
    let stderr = std::fs::metadata(&log)?;
    let mut notify = Notifications::bind(dir.path().join("notify.sock"))?;
    let command = format!(
        "unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal \
         && mount --bind {} /run/systemd/journal && exec {} --config {} run'",
        journal_dir.display(),
        workspace_binary("twofoldd")?.display(),
        config.display()
    );
    let log_file = std::fs::OpenOptions::new().append(true).open(&log)?;
    let mut running = Running(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .env("NOTIFY_SOCKET", &notify.path)
            .env(
                "JOURNAL_STREAM",
                format!("{}:{}", stderr.dev(), stderr.ino()),
            )
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?,
    );
    // Read as journald does, from the start: once the socket's queue is full (net.unix.max_dgram_qlen,
    // 10 by default) the daemon's next log call waits for a reader. Until the confirmation's audit
    // record, which comes last.
    let journal_reader = std::thread::spawn(move || -> Result<Vec<Vec<(String, String)>>> {
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut buf = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            match journal.recv(&mut buf) {
                Ok(n) if n > 0 => {
                    let fields = journal_fields(&buf[..n])?;
                    let done = fields
                        .iter()
                        .any(|(k, v)| k == "F_ACTION" && v == "totp_confirm");
                    records.push(fields);
                    if done {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) if twofold_tests::read_timed_out(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(records)
    });
    let ready = notify.wait("READY=1", Duration::from_secs(60), &mut running.0, &log)?;
    let addr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=listening on https://"))
        .and_then(|s| s.split_whitespace().next())
        .ok_or_else(|| anyhow!("no address in {ready}"))?
        .to_owned();
    let mut admin = Admin::connect(&dir.path().join("data/admin.sock"))?;
    let api = Api::new(&addr, &dir.path().join("data/tls/cert.pem"))?
        .with_key(&admin.api_key("journal")?);
    let dave = enroll(&mut admin, &api, "dave").await?;

    let records = journal_reader
        .join()
        .map_err(|_| anyhow!("the journal reader panicked"))??;
    let has = |record: &Vec<(String, String)>, key: &str, value: &str| {
        record.iter().any(|(k, v)| k == key && v == value)
    };
    let started = records
        .iter()
        .find(|r| has(r, "MESSAGE", "twofoldd started"))
        .ok_or_else(|| anyhow!("no start record in {records:?}"))?;
    assert!(has(started, "SYSLOG_IDENTIFIER", "twofoldd"), "{started:?}");
    assert!(
        has(started, "PRIORITY", "6"),
        "info is priority 6: {started:?}"
    );
    assert!(
        has(started, "F_API", &addr),
        "the address as its own field: {started:?}"
    );
    let confirmed = records
        .iter()
        .find(|r| has(r, "F_ACTION", "totp_confirm"))
        .ok_or_else(|| anyhow!("no audit record of the confirmation in {records:?}"))?;
    assert!(
        has(confirmed, "F_USER", "dave") && has(confirmed, "F_OUTCOME", "ok"),
        "{confirmed:?}"
    );
    let everything = format!("{records:?}");
    assert!(
        !everything.contains(&dave.secret),
        "the TOTP secret is never logged"
    );
    let stderr_text = read_log(&log);
    assert!(
        !stderr_text.contains("twofoldd started"),
        "records go to the journal, not stderr:\n{stderr_text}"
    );
    Ok(())
}
