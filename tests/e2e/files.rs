//! What the daemon leaves on disk and how it reaches its key: modes, credentials, TLS versions.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::Result;
use twofold_tests::Daemon;

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
