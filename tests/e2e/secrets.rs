//! Secrets and codes never reach the logs or the raw store files.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};

use crate::step_margin;

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn seeds_codes_and_keys_are_absent_from_logs_and_store_files() -> Result<()> {
    let mut daemon = Daemon::start("[log]\nlevel = \"debug\"\n")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?.with_key(&key);
    step_margin(10).await;
    let pia = enroll(&mut admin, &api, "pia").await?;
    let code = oathtool(&pia.secret, 0, &[])?;
    let accepted = api
        .post("/api/v1/verify", &json!({"user": "pia", "code": code}))
        .await?;
    assert_eq!(accepted.body["result"], "accept");
    api.post(
        "/api/v1/verify",
        &json!({"user": "pia", "code": pia.backup_codes[0]}),
    )
    .await?;
    api.post("/api/v1/verify", &json!({"user": "pia", "code": "987654"}))
        .await?;
    daemon.terminate()?; // flushes everything to the files we read

    let raw_seed = data_encoding::BASE32_NOPAD.decode(pia.secret.as_bytes())?;
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("base32 seed".into(), pia.secret.clone().into_bytes()),
        ("raw seed".into(), raw_seed),
        ("API key".into(), key.clone().into_bytes()),
        ("accepted code".into(), code.clone().into_bytes()),
        ("wrong code".into(), b"987654".to_vec()),
    ];
    for c in &pia.backup_codes {
        secrets.push((format!("backup code {c}"), c.clone().into_bytes()));
        secrets.push((
            format!("backup code {c} without dash"),
            c.replace('-', "").into_bytes(),
        ));
    }
    let log = daemon.log()?;
    assert!(
        log.contains("audit") && log.contains("pia"),
        "the log is being written: {}",
        &log[..log.len().min(500)]
    );
    for (what, value) in &secrets {
        assert!(
            !contains(log.as_bytes(), value),
            "{what} appears in the log"
        );
    }
    let mut files = Vec::new();
    files_under(&daemon.data_dir().join("store"), &mut files)?;
    assert!(!files.is_empty());
    let mut scanned = 0;
    for file in files {
        let bytes = std::fs::read(&file)?;
        scanned += bytes.len();
        for (what, value) in &secrets {
            assert!(
                !contains(&bytes, value),
                "{what} appears in {}",
                file.display()
            );
        }
    }
    assert!(scanned > 1000, "store files hold data ({scanned} bytes)");
    Ok(())
}
