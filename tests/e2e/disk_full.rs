//! A full disk: the write that finds it gets a clear "unavailable" answer, the daemon exits for its
//! supervisor to restart it (memory may hold writes the disk does not), and the restarted daemon has
//! exactly what was acknowledged: nothing promised is lost, nothing refused appears, and a code
//! accepted before the failure is still a replay after it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest, NewUser};

use crate::step_margin;

/// A small tmpfs mounted on a folder, lazily unmounted when dropped (the daemon may still hold files).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size_mib: u32) -> Result<SmallDisk> {
        std::fs::create_dir_all(at)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!(
                "mount -t tmpfs on {} failed: the test needs root",
                at.display()
            );
        }
        Ok(SmallDisk(at.to_owned()))
    }

    /// Writes zeros until the file system is full.
    fn fill(&self) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path)?;
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let _ = file.sync_all();
        Ok(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_clearly_restarts_and_loses_nothing_acknowledged() -> Result<()> {
    let mut daemon = Daemon::prepare("", &[])?;
    let disk = SmallDisk::mount(&daemon.data_dir(), 24)?;
    daemon.launch()?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    step_margin(20).await;
    let ann = enroll(&mut admin, &api, "ann").await?;
    let code = oathtool(&ann.secret, 0, &[])?;
    let accepted = api
        .post("/api/v1/verify", &json!({"user": "ann", "code": code}))
        .await?;
    assert_eq!(accepted.body["result"], "accept", "{}", accepted.raw);

    let filler = disk.fill()?;
    // Verification writes only the journal, which keeps room allocated ahead: it goes on.
    let wrong = api
        .post("/api/v1/verify", &json!({"user": "ann", "code": "000000"}))
        .await?;
    assert_eq!(wrong.body["reason"], "invalid_code", "{}", wrong.raw);
    // Writes go on while the store's preallocated room lasts; the first one that needs more fails.
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let name = format!("user{i}");
        let answer = admin.call(&AdminRequest::UserCreate(NewUser {
            username: name.clone(),
            email: Some(format!("{name}@example.com")),
            display_name: Some("x".repeat(200)),
            ..NewUser::default()
        }))?;
        match answer {
            AdminAnswer::Error { error } => {
                refused = Some((name, error));
                break;
            }
            _ => acknowledged.push(name),
        }
    }
    let Some((refused_name, error)) = refused else {
        bail!("5,000 users were written to a full 24 MiB disk");
    };
    assert_eq!(error.code, "unavailable", "{error:?}");
    assert!(
        error.message.contains("No space left on device") && error.message.contains("restart"),
        "the operator learns why: {error:?}"
    );
    let status = daemon.wait_exit(Duration::from_secs(20))?;
    assert!(
        matches!(status, Some(code) if code != 0),
        "the daemon exits non-zero for systemd to restart it: {status:?}"
    );
    let log = daemon.log()?;
    assert!(log.contains("store commit failed"), "{log}");

    std::fs::remove_file(filler)?;
    daemon.launch()?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn-2")?);
    match admin.ok(&AdminRequest::UserShow { user: "ann".into() })? {
        AdminReply::User(u) => assert_eq!(
            (u.devices.len(), u.failures),
            (1, 1),
            "the device and the failure counted on the full disk survive: {u:?}"
        ),
        other => bail!("unexpected {other:?}"),
    }
    for name in &acknowledged {
        assert!(
            matches!(
                admin.call(&AdminRequest::UserShow { user: name.clone() })?,
                AdminAnswer::Ok { .. }
            ),
            "{name} was acknowledged before the disk filled and must survive"
        );
    }
    match admin.call(&AdminRequest::UserShow {
        user: refused_name.clone(),
    })? {
        AdminAnswer::Error { error } => assert_eq!(error.code, "not_found", "{error:?}"),
        other => bail!("{refused_name} was refused but exists after the restart: {other:?}"),
    }
    let replay = api
        .post("/api/v1/verify", &json!({"user": "ann", "code": code}))
        .await?;
    assert_eq!(replay.body["reason"], "replayed", "{}", replay.raw);
    admin.create_user("after")?;
    let health = api.get("/health").await?;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    Ok(())
}
