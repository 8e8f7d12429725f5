//! What the daemon leaves on disk and how it reaches its key: modes, credentials, TLS versions.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::Result;
use twofold_tests::{enroll, oathtool, Daemon};

fn mode(path: &std::path::Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[tokio::test]
async fn state_files_have_tight_modes() -> Result<()> {
    let daemon = Daemon::start("")?;
    let data = daemon.data_dir();
    assert_eq!(mode(&data)?, 0o700, "data folder");
    assert_eq!(mode(&data.join("master.key"))?, 0o600, "master key");
    assert_eq!(std::fs::metadata(data.join("master.key"))?.len(), 32);
    assert_eq!(mode(&data.join("tls/key.pem"))?, 0o600, "TLS key");
    assert_eq!(mode(&daemon.admin_socket())?, 0o660, "admin socket");
    Ok(())
}

#[tokio::test]
async fn the_master_key_can_come_from_a_systemd_credential() -> Result<()> {
    let dir = twofold_tests::TempDir::new("twofold-cred")?;
    std::fs::write(dir.path().join("master-key"), [7u8; 32])?;
    let daemon = Daemon::start_with_env("", &[("CREDENTIALS_DIRECTORY", dir.path().as_os_str())])?;
    assert!(
        !daemon.data_dir().join("master.key").exists(),
        "no key file made when the credential is given"
    );
    daemon.admin()?.create_user("tom")?;
    Ok(())
}

/// A key in the data folder (every install before the credential became the default) keeps working,
/// and the log says how to move it; moved to the credential, the same seeds open; a credential that
/// differs from a key still in the data folder stops the start, naming both.
#[tokio::test]
async fn a_key_in_the_data_folder_keeps_working_until_moved_to_the_credential() -> Result<()> {
    let credentials = twofold_tests::TempDir::new("twofold-cred")?;
    let credential = credentials.path().join("master-key");
    // The unit's LoadCredential= finds no /etc/credstore file: the folder exists without the key.
    let mut daemon = Daemon::start_with_env(
        "",
        &[("CREDENTIALS_DIRECTORY", credentials.path().as_os_str())],
    )?;
    let in_data = daemon.data_dir().join("master.key");
    assert!(
        in_data.exists(),
        "a first start with no key anywhere makes one"
    );
    assert!(
        daemon.log()?.contains(
            "the master key is in the data folder, beside the store it protects: keep it apart with `install -m 0600 -o root"
        ),
        "{}",
        daemon.log()?
    );
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("vpn")?);
    crate::step_margin(10).await;
    let alice = enroll(&mut admin, &api, "alice").await?;

    // Moved as the log says (a copy first): the credential is used, the old copy is the same key.
    std::fs::copy(&in_data, &credential)?;
    daemon.restart()?;
    assert!(
        daemon
            .log()?
            .contains("its old copy in the data folder is the same key"),
        "{}",
        daemon.log()?
    );
    std::fs::remove_file(&in_data)?;
    daemon.restart()?;
    assert!(!in_data.exists(), "nothing made beside the store");
    let api = daemon
        .api_client()?
        .with_key(&daemon.admin()?.api_key("vpn2")?);
    crate::step_margin(10).await;
    let verified = api
        .post(
            "/api/v1/verify",
            &serde_json::json!({"user": "alice", "code": oathtool(&alice.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(verified.body["result"], "accept", "{}", verified.raw);

    // A different key beside the store and in the credential: refused, not guessed.
    std::fs::write(&in_data, [9u8; 32])?;
    std::fs::set_permissions(&in_data, std::fs::Permissions::from_mode(0o600))?;
    let refused = daemon.restart().map_err(|e| e.to_string());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("two different master keys")),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tls_below_1_2_is_refused() -> Result<()> {
    let daemon = Daemon::start("")?;
    let url = format!("https://{}/health", daemon.api);
    let cert = daemon.data_dir().join("tls/cert.pem");
    let curl = |args: &[&str]| {
        Command::new("curl")
            .arg("-s")
            .arg("--cacert")
            .arg(&cert)
            .args(args)
            .arg(&url)
            .output()
    };
    let ok12 = curl(&["--tlsv1.2", "--tls-max", "1.2"])?;
    assert!(
        ok12.status.success(),
        "TLS 1.2 works: {}",
        String::from_utf8_lossy(&ok12.stderr)
    );
    assert_eq!(String::from_utf8(ok12.stdout)?, r#"{"status":"ok"}"#);
    let ok13 = curl(&["--tlsv1.3"])?;
    assert!(ok13.status.success(), "TLS 1.3 works");
    let old = curl(&["--tlsv1.0", "--tls-max", "1.1"])?;
    assert!(!old.status.success(), "TLS 1.0/1.1 must be refused");
    Ok(())
}
