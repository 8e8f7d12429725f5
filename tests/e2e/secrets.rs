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

/// The log line where `needle` appears, if anywhere but in a time stamp's fraction of a second
/// (`12:34:56.123456`): six random digits there are no leak, and at debug level the log has hundreds
/// of them, so a 6-digit code matches one now and then by chance.
fn line_leaking<'a>(log: &'a str, needle: &[u8]) -> Option<&'a str> {
    let bytes = log.as_bytes();
    let in_timestamp = |at: usize| {
        at >= 9
            && bytes[at - 1] == b'.'
            && bytes[at - 9..at - 1].iter().enumerate().all(|(i, b)| {
                if i % 3 == 2 {
                    *b == b':'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    let at = (0..bytes.len().saturating_sub(needle.len().saturating_sub(1)))
        .find(|&at| bytes[at..].starts_with(needle) && !in_timestamp(at))?;
    log[..at]
        .rfind('\n')
        .map_or(Some(log.lines().next()?), |start| {
            log[start + 1..].lines().next()
        })
}

#[test]
fn a_code_is_found_anywhere_in_the_log_but_in_a_time_stamps_fraction() {
    let stamp_only = "2026-11-22T22:33:33.463002Z INFO audit\n";
    assert_eq!(line_leaking(stamp_only, b"463002"), None);
    let leaked =
        format!("{stamp_only}2026-11-22T22:33:34.000001Z DEBUG body code=463002 x\nlast\n");
    assert_eq!(
        line_leaking(&leaked, b"463002"),
        Some("2026-11-22T22:33:34.000001Z DEBUG body code=463002 x")
    );
    assert_eq!(
        line_leaking("463002 at the start", b"463002"),
        Some("463002 at the start")
    );
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
        if let Some(line) = line_leaking(&log, value) {
            panic!("{what} appears in the log: {line}");
        }
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
