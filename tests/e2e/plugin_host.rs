//! The plugin host under load: what a plugin may spend is its own CPU, not the time it waits for a core;
//! one channel's outage never delays another channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use twofold_tests::delivery::{plugins_dir, Gateway};
use twofold_tests::Daemon;
use twofold_wire::admin::{AdminRequest, NewUser};
use twofold_wire::delivery::DeliveryState;

use crate::delivery::{challenge, client, settled, WAIT};

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A `[[plugin]]` table of the hostile plugin in `mode`, with extra `[plugin.config]` lines.
fn hostile(name: &str, mode: &str, config: &str) -> String {
    format!("\n[[plugin]]\nname = \"{name}\"\nfile = \"hostile.wasm\"\n[plugin.config]\nmode = \"{mode}\"\n{config}")
}

fn user(admin: &mut twofold_tests::Admin, name: &str) -> Result<()> {
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: name.to_owned(),
        mobile: Some("+41 79 000 00 01".into()),
        voice: Some("+41 44 000 00 01".into()),
        ..NewUser::default()
    }))?;
    Ok(())
}

/// Threads that keep every core busy until dropped: the machine as a busy appliance sees it.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(threads: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Three CPU-heavy deliveries at once (about 80 ms of CPU each) on two cores kept busy by six spinning
/// threads each wait for a core far longer than they compute: all three deliver, because the budget
/// of 300 ms counts each plugin thread's own CPU. An endless loop is still stopped at that budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_heavy_plugins_deliver_on_a_busy_machine_and_an_endless_loop_is_still_stopped(
) -> Result<()> {
    let plugins = plugins_dir()?;
    let mut config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nplugin_cpu_ms = 300\nmax_attempts = 1\nsms = [\"heavy\"]\nvoice = [\"spin\"]\n",
        toml_path(&plugins)
    );
    config.push_str(&hostile("heavy", "cpu-heavy", "rounds = \"80\"\n"));
    config.push_str(&hostile("spin", "endless-loop", ""));
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    for i in 0..3 {
        user(&mut admin, &format!("busy{i}"))?;
    }
    user(&mut admin, "spinner")?;

    let busy = Busy::start(6);
    let mut txs = Vec::new();
    for i in 0..3 {
        let c = challenge(&api, &format!("busy{i}"), "sms").await?;
        txs.push(c["transaction_id"].as_str().unwrap_or_default().to_owned());
    }
    let mut outcomes = Vec::new();
    for tx in &txs {
        let done = settled(&mut admin, tx, WAIT).await?;
        outcomes.push((
            done.state,
            done.attempts[0].detail.clone(),
            done.attempts[0].duration_ms,
        ));
    }
    drop(busy);
    eprintln!("three CPU-heavy deliveries on a busy machine: {outcomes:?}");
    for (state, detail, _) in &outcomes {
        assert_eq!(
            (*state, detail.starts_with("worked 80M rounds")),
            (DeliveryState::Delivered, true),
            "{outcomes:?}"
        );
    }

    let c = challenge(&api, "spinner", "voice").await?;
    let done = settled(
        &mut admin,
        c["transaction_id"].as_str().context("transaction")?,
        WAIT,
    )
    .await?;
    assert_eq!(done.state, DeliveryState::Failed, "{done:?}");
    assert!(
        done.attempts[0]
            .detail
            .contains("stopped after its CPU budget of 300 ms"),
        "{:?}",
        done.attempts[0]
    );
    // Wall time: 300 ms of CPU and at most a tick more, plus the call around it.
    assert!(done.attempts[0].duration_ms < 3_000, "{done:?}");
    Ok(())
}

/// 40 SMS deliveries to a gateway that accepts connections and never answers, then a voice code: the
/// SMS plugin holds only its own 4 slots (`[[plugin]] concurrency`), so the voice code goes out at once
/// instead of waiting for the SMS gateway's timeouts to free one of the daemon's shared slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sms_gateway_does_not_delay_a_voice_code() -> Result<()> {
    // Connections complete in the kernel's backlog; nobody ever reads or answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0")?;
    let sms_port = hanging.local_addr()?.port();
    let voice = Gateway::start(None).await?;
    let plugins = plugins_dir()?;
    let config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{plugins}\"]\nmax_attempts = 1\nsms = [\"sms\"]\nvoice = [\"voice\"]\n\n[[plugin]]\nname = \"sms\"\nfile = \"sms_http.wasm\"\nallow_hosts = [\"127.0.0.1:{sms_port}\"]\nallow_plain_http_loopback = true\n[plugin.config]\nurl = \"http://127.0.0.1:{sms_port}/send\"\n\n[[plugin]]\nname = \"voice\"\nfile = \"voice_http.wasm\"\nallow_hosts = [\"127.0.0.1:{voice_port}\"]\nallow_plain_http_loopback = true\n[plugin.config]\nurl = \"http://127.0.0.1:{voice_port}/call\"\n",
        plugins = toml_path(&plugins),
        voice_port = voice.addr.port(),
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    const QUEUED: usize = 40;
    for i in 0..QUEUED {
        user(&mut admin, &format!("sms{i}"))?;
    }
    user(&mut admin, "caller")?;
    let mut sms = Vec::new();
    for i in 0..QUEUED {
        let c = challenge(&api, &format!("sms{i}"), "sms").await?;
        sms.push(c["transaction_id"].as_str().unwrap_or_default().to_owned());
    }
    let asked = Instant::now();
    challenge(&api, "caller", "voice").await?;
    voice.wait_for(1, WAIT).await?;
    let took = asked.elapsed();
    eprintln!(
        "voice code out {} ms after it was asked for, with {QUEUED} SMS deliveries hanging",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(1),
        "the voice code waited {took:?}"
    );
    // The SMS deliveries are still hanging: the gateway is the one that does not answer.
    let still = settled(&mut admin, &sms[0], Duration::from_millis(1)).await;
    assert!(still.is_err(), "{still:?}");
    drop(hanging);
    Ok(())
}

/// `twofoldd check-config` refuses, each with one line naming the setting and its line, what would
/// only show when the plugin loads or delivers: a missing `.wasm`, a missing secret file, an
/// `allow_hosts` entry without a port, a url whose host is not in `allow_hosts`, a plain `http://`
/// url, and a `{secret:NAME}` that `[plugin.secrets]` does not name.
#[test]
fn check_config_refuses_plugin_settings_that_would_fail_at_delivery() -> Result<()> {
    let dir = twofold_tests::TempDir::new("check-plugins")?;
    let token = dir.path().join("token");
    std::fs::write(&token, "tok\n")?;
    let good = format!(
        "version = 1\n\n[delivery]\nplugin_dirs = [\"{plugins}\"]\nsms = [\"gw\"]\n\n[[plugin]]\nname = \"gw\"\nfile = \"sms_http.wasm\"\nallow_hosts = [\"127.0.0.1:8443\"]\n[plugin.config]\nurl = \"https://127.0.0.1:8443/send?ref={{transaction|url}}\"\nheaders = \"Authorization: Bearer {{secret:token}}\"\n[plugin.secrets]\ntoken = \"{token}\"\n",
        plugins = toml_path(&plugins_dir()?),
        token = toml_path(&token),
    );
    let check = |text: &str| -> Result<std::process::Output> {
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, text)?;
        Ok(
            std::process::Command::new(twofold_tests::workspace_binary("twofoldd")?)
                .arg("check-config")
                .arg(&path)
                .output()?,
        )
    };
    let out = check(&good)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (what is replaced, by what, words of the one error)
    let missing = toml_path(&dir.path().join("missing-token"));
    let table: &[(&str, String, &str)] = &[
        ("file = \"sms_http.wasm\"", "file = \"sms_htp.wasm\"".into(), "file sms_htp.wasm is not in any of the plugin folders"),
        (&format!("token = \"{}\"", toml_path(&token)), format!("token = \"{missing}\""), "secrets.token:"),
        ("allow_hosts = [\"127.0.0.1:8443\"]", "allow_hosts = [\"127.0.0.1:8443\", \"sms.example.net\"]".into(), "allow_hosts \"sms.example.net\" names no port"),
        ("url = \"https://127.0.0.1:8443/", "url = \"https://127.0.0.2:8443/".into(), "config.url: host 127.0.0.2:8443 is not in allow_hosts"),
        ("url = \"https://127.0.0.1:8443/", "url = \"http://127.0.0.1:8443/".into(), "config.url: plain http:// to 127.0.0.1 is refused"),
        ("{secret:token}", "{secret:tokn}".into(), "config.headers uses {secret:tokn}, but [plugin.secrets] names no secret \"tokn\" (it names token)"),
    ];
    for (from, to, words) in table {
        let text = good.replacen(from, to, 1);
        let line = text
            .lines()
            .position(|l| l.contains(to.as_str()))
            .context("changed line")?
            + 1;
        let out = check(&text)?;
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{to}: {stderr}");
        assert!(
            stderr.contains(&format!("twofold.toml:{line}: [[plugin]] gw: "))
                && stderr.contains(words),
            "{to}: wanted line {line} and {words:?}: {stderr}"
        );
    }
    Ok(())
}

/// `twofold-admin deliveries` in text shows every attempt under its delivery, not only the last: the
/// gateway's 429, then the retry that delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_text_show_every_attempt() -> Result<()> {
    let dir = twofold_tests::TempDir::new("deliveries-text")?;
    let ca = twofold_tests::delivery::TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let voice = Gateway::start(None).await?;
    sms.script(&[429]);
    let daemon = Daemon::start(&crate::delivery::plugin_config(
        dir.path(),
        &ca,
        &sms,
        &voice,
    )?)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "retried")?;
    let c = challenge(&api, "retried", "sms").await?;
    let done = settled(
        &mut admin,
        c["transaction_id"].as_str().context("transaction")?,
        WAIT,
    )
    .await?;
    assert_eq!(done.state, DeliveryState::Delivered, "{done:?}");
    let out = daemon.admin_cli(&["deliveries"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("retried") && lines[0].ends_with("delivered"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("    ")
            && lines[1].contains(" sms retry_later (")
            && lines[1].contains("429"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("    ") && lines[2].contains(" sms delivered ("),
        "{text}"
    );
    Ok(())
}

/// A plugin no channel lists is loaded all the same, so a mistake in it shows in `plugin status`
/// before anyone routes a channel to it.
#[test]
fn a_plugin_in_no_channel_is_loaded_and_its_errors_shown() -> Result<()> {
    let dir = twofold_tests::TempDir::new("plugin-unrouted")?;
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm not a component")?;
    let plugins = plugins_dir()?;
    let daemon = Daemon::start(&format!(
        "\n[delivery]\nplugin_dirs = [\"{}\", \"{}\"]\n{}\n[[plugin]]\nname = \"spare\"\nfile = \"junk.wasm\"\n",
        toml_path(&plugins),
        toml_path(dir.path()),
        hostile("idle", "endless-loop", ""),
    ))?;
    let out = daemon.admin_cli(&["plugin", "status"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
    };
    assert!(
        line("idle ").contains(" loaded  (") && line("idle ").contains("sha256 "),
        "{text}"
    );
    assert!(
        line("spare ").contains("NOT LOADED: not a valid WebAssembly component"),
        "{text}"
    );
    Ok(())
}

/// `twofold-admin plugin check FILE`: a good component is reported with its interface version and
/// imports; a file that is no component, one built for the older version of the delivery interface and
/// one importing an unknown interface are each refused with one line and a non-zero exit (JSON with
/// --json).
#[test]
fn plugin_check_reports_a_good_component_and_refuses_each_bad_one() -> Result<()> {
    use crate::plugin_loading::renamed;
    let dir = twofold_tests::TempDir::new("plugin-check")?;
    let daemon = Daemon::start("")?;
    let wasm = std::fs::read(plugins_dir()?.join("hostile.wasm"))?;
    let check = |file: &std::path::Path, json: bool| -> Result<std::process::Output> {
        let mut command =
            std::process::Command::new(twofold_tests::workspace_binary("twofold-admin")?);
        command.arg("--socket").arg(daemon.admin_socket());
        if json {
            command.arg("--json");
        }
        Ok(command.args(["plugin", "check"]).arg(file).output()?)
    };
    let good = dir.path().join("good.wasm");
    std::fs::write(&good, &wasm)?;
    let out = check(&good, false)?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("loads, built for twofold:delivery@0.2.0, sha256 ")
            && text.contains("imports: ")
            && text.contains("twofold:delivery/host@0.2.0"),
        "{text}"
    );

    let older = renamed(
        &renamed(
            &wasm,
            "twofold:delivery/host@0.2.0",
            "twofold:delivery/host@0.1.0",
        )?,
        "twofold:delivery/types@0.2.0",
        "twofold:delivery/types@0.1.0",
    )?;
    let evil = renamed(
        &wasm,
        "wasi:cli/environment@0.2.6",
        "evil:backdoor/shell@10.0.0",
    )?;
    let table: [(&str, Vec<u8>, &str); 3] = [
        (
            "junk.wasm",
            b"not a component at all".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "older.wasm",
            older,
            "built for twofold:delivery@0.1.0; this daemon implements 0.2.0",
        ),
        ("evil.wasm", evil, "imports unknown evil:backdoor/shell"),
    ];
    for (name, bytes, words) in &table {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes)?;
        let out = check(&file, false)?;
        let stderr = String::from_utf8(out.stderr)?;
        assert!(!out.status.success(), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(words) && stderr.contains(name),
            "{name}: {stderr}"
        );
        let out = check(&file, true)?;
        let error: serde_json::Value = serde_json::from_slice(&out.stderr)?;
        assert!(!out.status.success());
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(words),
            "{name}: {error}"
        );
    }
    Ok(())
}

/// `twofold-admin plugin test NAME --to NUMBER`: one call of the plugin against the real gateway, the
/// number as a user's would be dialled, no retry; a gateway that refuses is one line and a non-zero
/// exit (JSON with --json); an unknown plugin and a number with a country code no one can dial are
/// refused before any call (a number without one goes to the plugin as written, as a user's does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_sends_one_message_through_the_real_gateway() -> Result<()> {
    let dir = twofold_tests::TempDir::new("plugin-test")?;
    let ca = twofold_tests::delivery::TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let voice = Gateway::start(None).await?;
    let daemon = Daemon::start(&crate::delivery::plugin_config(
        dir.path(),
        &ca,
        &sms,
        &voice,
    )?)?;
    let admin = |args: &[&str]| daemon.admin_cli(args);
    let out = admin(&["plugin", "test", "sms", "--to", "+41 (0) 79 123 45 67"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("plugin sms to +41791234567: delivered in ") && text.contains("msg-"),
        "{text}"
    );
    let received = sms.received();
    assert_eq!(received.len(), 1, "one call, no more");
    assert!(
        received[0].body.contains("41791234567") && received[0].body.contains("000000"),
        "{:?}",
        received[0].body
    );

    // The gateway refuses: one line naming the outcome and the gateway's answer, a non-zero exit, no retry.
    sms.script(&[400]);
    let out = admin(&["plugin", "test", "sms", "--to", "+41791234567"])?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("plugin sms to +41791234567: failed after ") && stderr.contains("400"),
        "{stderr}"
    );
    sms.script(&[400]);
    let out = admin(&["--json", "plugin", "test", "sms", "--to", "+41791234567"])?;
    let error: serde_json::Value = serde_json::from_slice(&out.stderr)?;
    assert_eq!(error["error"]["code"], "plugin_test_failed", "{error}");
    assert_eq!(sms.received().len(), 3, "one call each");

    // Refused before any call: a plugin not configured, a number no one can dial.
    for (args, words) in [
        (
            ["plugin", "test", "nosuch", "--to", "+41791234567"],
            "nosuch",
        ),
        (
            ["plugin", "test", "sms", "--to", "+999 123 4567"],
            "is not a number to send to: +999 123 4567: no such country code",
        ),
    ] {
        let out = admin(&args)?;
        let stderr = String::from_utf8(out.stderr)?;
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    assert_eq!(sms.received().len(), 3, "no call for a refused test");
    Ok(())
}
