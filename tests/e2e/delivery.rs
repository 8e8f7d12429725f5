//! Code delivery end to end: the SDK's example plugins built for wasm32-wasip2 and run by the real
//! daemon, against an HTTPS SMS-gateway stand-in, a plain-HTTP telephony stand-in on loopback, the
//! in-person handover queue and a real SMTP server (aiosmtpd, STARTTLS + AUTH); hostile plugins; failover
//! and retries; reload and the precompiled-artifact cache; policy, lockout and admin access codes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use twofold_tests::delivery::{find_code, plugins_dir, Gateway, SmtpServer, TestCa};
use twofold_tests::{Admin, Api, Daemon};
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest, NewUser};
use twofold_wire::delivery::{DeliveryInfo, DeliveryState, HandoverEntry, PluginInfo};

pub(crate) const WAIT: Duration = Duration::from_secs(20);

fn user(
    admin: &mut Admin,
    name: &str,
    mobile: Option<&str>,
    voice: Option<&str>,
    groups: &[&str],
) -> Result<()> {
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: name.to_owned(),
        display_name: Some(format!("{name} Example")),
        email: Some(format!("{name}@example.com")),
        mobile: mobile.map(str::to_owned),
        voice: voice.map(str::to_owned),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..NewUser::default()
    }))?;
    Ok(())
}

pub(crate) async fn client(daemon: &Daemon) -> Result<Api> {
    let key = daemon.admin()?.api_key("portal")?;
    Ok(daemon.api_client()?.with_key(&key))
}

pub(crate) async fn challenge(api: &Api, user: &str, channel: &str) -> Result<Value> {
    let answer = api
        .post(
            "/api/v1/challenge",
            &json!({"user": user, "channel": channel}),
        )
        .await?;
    if answer.status != 202 {
        bail!(
            "challenge for {user} on {channel} answered {}: {}",
            answer.status,
            answer.raw
        );
    }
    Ok(answer.body)
}

async fn verify(api: &Api, user: &str, code: &str, transaction: Option<&str>) -> Result<Value> {
    let mut body = json!({"user": user, "code": code});
    if let Some(tx) = transaction {
        body["transaction_id"] = json!(tx);
    }
    let answer = api.post("/api/v1/verify", &body).await?;
    if answer.status != 200 {
        bail!("verify answered {}: {}", answer.status, answer.raw);
    }
    Ok(answer.body)
}

pub(crate) fn deliveries(admin: &mut Admin, user: Option<&str>) -> Result<Vec<DeliveryInfo>> {
    match admin.ok(&AdminRequest::DeliveryList {
        user: user.map(str::to_owned),
        limit: None,
    })? {
        AdminReply::Deliveries { deliveries } => Ok(deliveries),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// Waits until the challenge's delivery reaches a final state, and returns it.
pub(crate) async fn settled(
    admin: &mut Admin,
    transaction: &str,
    within: Duration,
) -> Result<DeliveryInfo> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let found = deliveries(admin, None)?
            .into_iter()
            .find(|d| d.transaction_id == transaction);
        if let Some(d) = &found {
            if matches!(
                d.state,
                DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Cancelled
            ) {
                return Ok(d.clone());
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("delivery of {transaction} did not settle within {within:?}: {found:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn handovers(admin: &mut Admin) -> Result<Vec<HandoverEntry>> {
    match admin.ok(&AdminRequest::HandoverList)? {
        AdminReply::Handovers { entries } => Ok(entries),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn plugin_status(admin: &mut Admin) -> Result<Vec<PluginInfo>> {
    match admin.ok(&AdminRequest::PluginStatus)? {
        AdminReply::Plugins { plugins } => Ok(plugins),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `[delivery]` and `[[plugin]]` tables: the SMS gateway over HTTPS (test CA, bearer token from a secret
/// file, Swiss number rewriting), the telephony API over plain HTTP on loopback, the in-person desk.
pub(crate) fn plugin_config(
    dir: &std::path::Path,
    ca: &TestCa,
    sms: &Gateway,
    voice: &Gateway,
) -> Result<String> {
    let token = dir.join("sms-token");
    std::fs::write(&token, "tok-123\n")?;
    Ok(format!(
        r#"
[challenge]
min_interval_seconds = 0

[delivery]
plugin_dirs = ["{plugins}"]
sms = ["sms"]
voice = ["voice"]
in_person = ["desk"]
retry_initial_seconds = 1

[[plugin]]
name = "sms"
file = "sms_http.wasm"
allow_hosts = ["127.0.0.1:{sms_port}"]
ca_file = "{ca}"
[plugin.config]
url = "https://127.0.0.1:{sms_port}/send?ref={{transaction|url}}"
headers = "Authorization: Bearer {{secret:token}}"
number_rewrite = "0041=>+41; 00=>+; 0=>+41"
message = "Code {{code}} for {{display_name}}, valid {{minutes}} min."
success_body_contains = "msg-"
[plugin.secrets]
token = "{token}"

[[plugin]]
name = "voice"
file = "voice_http.wasm"
allow_hosts = ["127.0.0.1:{voice_port}"]
allow_plain_http_loopback = true
[plugin.config]
url = "http://127.0.0.1:{voice_port}/call"
number_rewrite = "0=>+41; +=>00"

[[plugin]]
name = "desk"
file = "in_person.wasm"
handover = true
[plugin.config]
note = "Check the photo ID."
"#,
        plugins = toml_path(&plugins_dir()?),
        ca = toml_path(&ca.ca_file),
        token = toml_path(&token),
        sms_port = sms.addr.port(),
        voice_port = voice.addr.port(),
    ))
}

pub(crate) fn email_config(smtp: &SmtpServer, ca: &TestCa) -> String {
    format!(
        "\n[email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\nfrom = \"Twofold <twofold@example.com>\"\n",
        smtp.port,
        toml_path(&ca.ca_file),
        smtp.username,
        toml_path(&smtp.password_file)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_reach_users_by_sms_voice_in_person_and_email_and_verify_once() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-channels")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let voice = Gateway::start(None).await?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let daemon = Daemon::start(&format!(
        "{}{}",
        plugin_config(dir.path(), &ca, &sms, &voice)?,
        email_config(&smtp, &ca)
    ))?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    // Two users share one mobile number (a team phone): each gets a code of their own.
    user(&mut admin, "alice", Some("079 123 45 67"), None, &[])?;
    user(&mut admin, "bob", Some("079 123 45 67"), None, &[])?;
    user(&mut admin, "carol", None, Some("044 555 01 02"), &[])?;
    user(&mut admin, "dave", None, None, &[])?;
    user(&mut admin, "erin", None, None, &[])?;
    let plugins = plugin_status(&mut admin)?;
    assert!(plugins.iter().all(|p| p.loaded), "{plugins:?}");

    // SMS: the gateway gets the rewritten number, the bearer token from the secret file, the text.
    let a = challenge(&api, "alice", "sms").await?;
    assert_eq!(a["destination"], "••••67");
    let b = challenge(&api, "bob", "sms").await?;
    assert_ne!(a["transaction_id"], b["transaction_id"]);
    let received = sms.wait_for(2, WAIT).await?;
    let mut codes = Vec::new();
    // The two deliveries run at once: match each request to its challenge by the reference in the URL.
    for tx in [&a, &b] {
        let path = format!(
            "/send?ref={}",
            tx["transaction_id"].as_str().unwrap_or_default()
        );
        let request = received
            .iter()
            .find(|r| r.path == path)
            .with_context(|| format!("no request for {path}: {received:?}"))?;
        let body: Value = serde_json::from_str(&request.body).context("gateway body is JSON")?;
        assert_eq!(body["to"], "+41791234567", "{body}");
        assert_eq!(request.header("authorization"), Some("Bearer tok-123"));
        assert_eq!(request.method, "POST");
        let text = body["text"].as_str().unwrap_or_default();
        assert!(text.contains("valid 5 min"), "{text}");
        codes.push(find_code(text, 6).context("a 6-digit code in the SMS")?);
    }
    let (alice_code, bob_code) = (codes[0].clone(), codes[1].clone());
    if alice_code != bob_code {
        let crossed = verify(&api, "bob", &alice_code, None).await?;
        assert_eq!(crossed["result"], "reject", "alice's code is not bob's");
    }
    let ok = verify(&api, "alice", &alice_code, None).await?;
    assert_eq!(
        (ok["result"].as_str(), ok["factor"].as_str()),
        (Some("accept"), Some("sms")),
        "{ok}"
    );
    let again = verify(&api, "alice", &alice_code, None).await?;
    assert_eq!(
        again["result"], "reject",
        "a code is accepted once: {again}"
    );
    let ok = verify(&api, "bob", &bob_code, b["transaction_id"].as_str()).await?;
    assert_eq!(ok["result"], "accept", "{ok}");
    // The gateway may hand us the SMS before the daemon has read the gateway's answer: wait (bounded)
    // for the daemon to record the delivery.
    let status_path = format!(
        "/api/v1/challenge/{}",
        a["transaction_id"].as_str().unwrap_or_default()
    );
    let mut status = api.get(&status_path).await?;
    for _ in 0..100 {
        if status.body["state"] != "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = api.get(&status_path).await?;
    }
    assert_eq!(
        (
            status.status,
            status.body["state"].as_str(),
            status.body["used"].as_bool()
        ),
        (200, Some("delivered"), Some(true)),
        "{}",
        status.raw
    );

    // Voice ("call me" for a user without a mobile): the code is spelled digit by digit.
    let c = challenge(&api, "carol", "voice").await?;
    let call = voice.wait_for(1, WAIT).await?.remove(0);
    let body: Value = serde_json::from_str(&call.body)?;
    assert_eq!(body["to"], "0041445550102", "{body}");
    let say = body["say"].as_str().unwrap_or_default();
    let digits: String = say
        .split("Once more")
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(digits.len(), 6, "{say}");
    assert!(
        say.contains(
            &digits
                .chars()
                .map(String::from)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "{say}"
    );
    let ok = verify(&api, "carol", &digits, c["transaction_id"].as_str()).await?;
    assert_eq!(
        (ok["result"].as_str(), ok["factor"].as_str()),
        (Some("accept"), Some("voice")),
        "{ok}"
    );

    // In person: the helpdesk's queue shows the code with the plugin's note; using it empties the queue.
    let d = challenge(&api, "dave", "in_person").await?;
    settled(
        &mut admin,
        d["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    let queue = handovers(&mut admin)?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(
        (queue[0].user.as_str(), queue[0].note.as_str()),
        ("dave", "Check the photo ID.")
    );
    let ok = verify(&api, "dave", &queue[0].code, None).await?;
    assert_eq!(
        (ok["result"].as_str(), ok["factor"].as_str()),
        (Some("accept"), Some("in_person")),
        "{ok}"
    );
    assert!(handovers(&mut admin)?.is_empty());

    // Email over SMTP with STARTTLS (the test CA) and AUTH (password from a file).
    let e = challenge(&api, "erin", "email").await?;
    assert_eq!(e["destination"], "e•••@example.com");
    let mail = smtp.wait_for(1, WAIT).await?.remove(0);
    assert!(
        mail.contains("X-Tls: True") && mail.contains("X-Auth-User: twofold"),
        "{mail}"
    );
    assert!(
        mail.contains("X-Envelope-To: erin@example.com")
            && mail.contains("Subject: Your sign-in code"),
        "{mail}"
    );
    let code = find_code(
        mail.split_once("\r\n\r\n")
            .map_or(mail.as_str(), |(_, body)| body),
        6,
    )
    .with_context(|| format!("a code in the mail body: {mail}"))?;
    let ok = verify(&api, "erin", &code, None).await?;
    assert_eq!(
        (ok["result"].as_str(), ok["factor"].as_str()),
        (Some("accept"), Some("email")),
        "{ok}"
    );

    // Admins see every delivery and its attempts; no code is in the log or the audit trail.
    let all = deliveries(&mut admin, None)?;
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(
        all.iter()
            .all(|d| d.state == DeliveryState::Delivered && d.used),
        "{all:?}"
    );
    assert_eq!(
        all.iter()
            .find(|d| d.user == "carol")
            .map(|d| d.attempts[0].via.as_str()),
        Some("voice")
    );
    let log = daemon.log()?;
    let audit = serde_json::to_string(&admin.ok(&AdminRequest::AuditTail { limit: Some(500) })?)?;
    for code in [&alice_code, &bob_code, &digits, &code] {
        assert!(!log.contains(code.as_str()), "code {code} in the log");
        assert!(
            !audit.contains(code.as_str()),
            "code {code} in the audit log"
        );
    }
    assert!(
        audit.contains("handover_list"),
        "showing the queue is audited"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_and_the_daemon_keeps_serving() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-hostile")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let plugins = plugins_dir()?;
    std::fs::write(
        dir.path().join("broken.wasm"),
        b"\0asm this is not a component",
    )?;
    let hostile = |name: &str, mode: &str| {
        format!(
            "\n[[plugin]]\nname = \"{name}\"\nfile = \"{}\"\nallow_hosts = [\"127.0.0.1:{}\"]\n[plugin.config]\nmode = \"{mode}\"\n",
            toml_path(&plugins.join("hostile.wasm")),
            sms.addr.port()
        )
    };
    let modes = [
        ("spin", "endless-loop"),
        ("hog", "memory-bomb"),
        ("crash", "panic"),
        ("leak", "exfiltrate"),
        ("snoop", "read-file"),
        ("chatty", "print"),
    ];
    let mut config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\", \"{}\"]\nplugin_cpu_ms = 300\nmax_attempts = 1\nsms = [{}, \"broken\", \"good\"]\n",
        toml_path(&plugins),
        toml_path(dir.path()),
        modes.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    );
    for (name, mode) in modes {
        config.push_str(&hostile(name, mode));
    }
    config.push_str(&format!(
        "\n[[plugin]]\nname = \"broken\"\nfile = \"broken.wasm\"\n\n[[plugin]]\nname = \"good\"\nfile = \"sms_http.wasm\"\nallow_hosts = [\"127.0.0.1:{port}\"]\nca_file = \"{ca}\"\n[plugin.config]\nurl = \"https://127.0.0.1:{port}/send\"\n",
        port = sms.addr.port(),
        ca = toml_path(&ca.ca_file)
    ));
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "mallory", Some("+41 79 000 00 01"), None, &[])?;

    let status = plugin_status(&mut admin)?;
    let broken = status
        .iter()
        .find(|p| p.name == "broken")
        .context("broken listed")?;
    assert!(
        !broken.loaded
            && broken
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("not a valid WebAssembly component"),
        "{broken:?}"
    );
    assert_eq!(status.iter().filter(|p| p.loaded).count(), 7, "{status:?}");

    for round in 0..2 {
        let c = challenge(&api, "mallory", "sms").await?;
        let tx = c["transaction_id"].as_str().unwrap_or_default().to_owned();
        let done = settled(&mut admin, &tx, WAIT).await?;
        let by: Vec<(&str, &str, &str)> = done
            .attempts
            .iter()
            .map(|a| (a.via.as_str(), a.outcome.as_str(), a.detail.as_str()))
            .collect();
        let expect = [
            ("spin", "stopped after its CPU budget of 300 ms"),
            ("hog", "stopped growing its memory past the cap of 16 MiB"),
            ("crash", "panicked: deliberate panic holding the code [code]"),
            ("leak", "refused as expected: host attacker.example:443 is not in this plugin's allow_hosts"),
            ("snoop", "called wasi:filesystem/"),
            ("chatty", "called wasi:cli/"),
            ("broken", "plugin broken is not loaded: not a valid WebAssembly component"),
        ];
        for (i, (name, text)) in expect.iter().enumerate() {
            assert_eq!(
                (by[i].0, by[i].1),
                (*name, "failed"),
                "round {round}: {by:?}"
            );
            assert!(
                by[i].2.contains(text),
                "round {round}, {name}: {:?} lacks {text:?}",
                by[i].2
            );
        }
        assert_eq!(
            (by[7].0, by[7].1, done.state),
            ("good", "delivered", DeliveryState::Delivered),
            "{by:?}"
        );
        let request = sms.wait_for(round + 1, WAIT).await?.remove(round);
        let code = find_code(&request.body, 6).context("code in the SMS")?;
        let ok = verify(&api, "mallory", &code, Some(&tx)).await?;
        assert_eq!(ok["result"], "accept", "{ok}");
    }
    assert_eq!(
        sms.received().len(),
        2,
        "the exfiltrating plugin reached nothing"
    );
    let health = api.get("/health").await?;
    assert_eq!(health.status, 200);
    let log = daemon.log()?;
    assert!(
        log.contains("[code]"),
        "the panic message was logged, code blanked out"
    );
    for request in sms.received() {
        let code = find_code(&request.body, 6).unwrap_or_default();
        assert!(!log.contains(&code), "code {code} in the log");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_second_gateway_and_retries_while_a_gateway_is_down() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-failover")?;
    let ca = TestCa::create(dir.path())?;
    let first = Gateway::start(Some(&ca)).await?;
    let second = Gateway::start(Some(&ca)).await?;
    let plugins = plugins_dir()?;
    let gateway = |name: &str, port: u16| {
        format!(
            "\n[[plugin]]\nname = \"{name}\"\nfile = \"sms_http.wasm\"\nallow_hosts = [\"127.0.0.1:{port}\"]\nca_file = \"{}\"\n[plugin.config]\nurl = \"https://127.0.0.1:{port}/send\"\n",
            toml_path(&ca.ca_file)
        )
    };
    // voice goes to a gateway that is down at first: nothing listens on its port yet.
    let down_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nsms = [\"first\", \"second\"]\nvoice = [\"later\"]\nretry_initial_seconds = 1\nretry_max_seconds = 2\nmax_attempts = 8\n{}{}{}",
        toml_path(&plugins),
        gateway("first", first.addr.port()),
        gateway("second", second.addr.port()),
        gateway("later", down_port).replace("sms_http.wasm", "voice_http.wasm"),
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "fay", Some("+41 79 000 00 02"), None, &[])?;

    // The first gateway refuses (400: for good) then fails (503: in passing); the second delivers.
    first.script(&[400, 503]);
    for expected_first in ["failed", "retry_later"] {
        let c = challenge(&api, "fay", "sms").await?;
        let done = settled(
            &mut admin,
            c["transaction_id"].as_str().unwrap_or_default(),
            WAIT,
        )
        .await?;
        let by: Vec<(&str, &str)> = done
            .attempts
            .iter()
            .map(|a| (a.via.as_str(), a.outcome.as_str()))
            .collect();
        assert_eq!(
            by,
            vec![("first", expected_first), ("second", "delivered")],
            "{done:?}"
        );
    }
    assert_eq!((first.received().len(), second.received().len()), (2, 2));

    // The telephony gateway is down: the delivery waits and retries, and delivers once it is back.
    let c = challenge(&api, "fay", "voice").await?;
    let tx = c["transaction_id"].as_str().unwrap_or_default().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let d = deliveries(&mut admin, Some("fay"))?
            .into_iter()
            .find(|d| d.transaction_id == tx)
            .context("listed")?;
        if d.state == DeliveryState::Retrying {
            assert_eq!(d.attempts[0].outcome, "retry_later", "{d:?}");
            assert!(
                d.attempts[0].detail.contains("Connection refused")
                    || d.attempts[0].detail.contains("connect"),
                "{d:?}"
            );
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("never retrying: {d:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let back = Gateway::start_at(([127, 0, 0, 1], down_port).into(), Some(&ca)).await?;
    let done = settled(&mut admin, &tx, WAIT).await?;
    assert_eq!(done.state, DeliveryState::Delivered, "{done:?}");
    assert!(
        done.attempts.len() >= 2
            && done
                .attempts
                .iter()
                .rev()
                .skip(1)
                .all(|a| a.outcome == "retry_later"),
        "{done:?}"
    );
    let call = back.wait_for(1, WAIT).await?.remove(0);
    let digits: String = serde_json::from_str::<Value>(&call.body)?["say"]
        .as_str()
        .unwrap_or_default()
        .split("Once more")
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(
        verify(&api, "fay", &digits, None).await?["result"],
        "accept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reload_on_sighup_and_on_request_and_load_from_the_sealed_cache() -> Result<()> {
    let plugins = plugins_dir()?;
    let desk = |name: &str| {
        format!("\n[[plugin]]\nname = \"{name}\"\nfile = \"in_person.wasm\"\nhandover = true\n")
    };
    let base = format!(
        "\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n{}",
        toml_path(&plugins),
        desk("desk")
    );
    let mut daemon = Daemon::start(&base)?;
    let mut admin = daemon.admin()?;
    let first = plugin_status(&mut admin)?;
    assert_eq!(
        (first.len(), first[0].loaded, first[0].from_cache),
        (1, true, false),
        "{first:?}"
    );
    let cache = daemon.data_dir().join("plugin-cache");
    let artifacts: Vec<_> = std::fs::read_dir(&cache)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");

    // SIGHUP with a second plugin configured: it loads without a restart.
    let pid = daemon.pid().context("running")?;
    let config = std::fs::read_to_string(&daemon.config_path)?;
    std::fs::write(&daemon.config_path, format!("{config}{}", desk("desk2")))?;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let deadline = std::time::Instant::now() + WAIT;
    while plugin_status(&mut admin)?.len() != 2 {
        if std::time::Instant::now() > deadline {
            bail!(
                "SIGHUP did not load desk2: {:?}",
                plugin_status(&mut admin)?
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let reloaded = plugin_status(&mut admin)?;
    assert!(
        reloaded.iter().all(|p| p.loaded && p.from_cache),
        "same component, so from the cache: {reloaded:?}"
    );
    match admin.call(&AdminRequest::PluginReload)? {
        AdminAnswer::Ok { reply } => {
            assert!(matches!(*reply, AdminReply::Plugins { ref plugins } if plugins.len() == 2))
        }
        AdminAnswer::Error { error } => bail!("reload refused: {error:?}"),
    }

    // A restart loads the precompiled artifact; a tampered artifact is refused and compiled anew.
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    assert!(plugin_status(&mut admin)?
        .iter()
        .all(|p| p.loaded && p.from_cache));
    let artifact = &artifacts[0];
    let mut bytes = std::fs::read(artifact)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(artifact, &bytes)?;
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    let after = plugin_status(&mut admin)?;
    assert!(after.iter().all(|p| p.loaded), "{after:?}");
    assert!(
        !after[0].from_cache,
        "a bad seal means compile again: {after:?}"
    );
    assert!(daemon.log()?.contains("bad seal"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_lockout_replacement_and_access_codes() -> Result<()> {
    let plugins = plugins_dir()?;
    let config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\naccess_codes = true\n\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n[[plugin]]\nname = \"desk\"\nfile = \"in_person.wasm\"\nhandover = true\n\n[[policy.group]]\ngroup = \"Kiosk\"\nchannels = [\"totp\"]\n\n[lockout.user]\nmax_failures = 3\ndelay_after = 3\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n",
        toml_path(&plugins)
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "gus", None, None, &[])?;
    user(
        &mut admin,
        "kim",
        Some("+41 79 000 00 03"),
        None,
        &["CN=Kiosk,OU=Groups,DC=corp,DC=example"],
    )?;
    user(&mut admin, "lou", None, None, &[])?;

    // Refusals: the policy, no destination, no delivery configured, bad input.
    let table = [
        (
            json!({"user": "kim", "channel": "in_person"}),
            403,
            "forbidden",
        ),
        (json!({"user": "gus", "channel": "sms"}), 409, "conflict"),
        (json!({"user": "gus", "channel": "email"}), 409, "conflict"),
        (
            json!({"user": "nobody", "channel": "in_person"}),
            404,
            "not_found",
        ),
        (
            json!({"user": "gus", "channel": "pigeon"}),
            400,
            "invalid_request",
        ),
        (
            json!({"user": "gus", "channel": "totp"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in table {
        let answer = api.post("/api/v1/challenge", &body).await?;
        assert_eq!(
            (answer.status, answer.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {}",
            answer.raw
        );
    }

    // A new challenge replaces the open one: the first code stops working.
    let first = challenge(&api, "gus", "in_person").await?;
    settled(
        &mut admin,
        first["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    let old_code = handovers(&mut admin)?.remove(0).code;
    let second = challenge(&api, "gus", "in_person").await?;
    settled(
        &mut admin,
        second["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    let queue = handovers(&mut admin)?;
    assert_eq!(
        queue.len(),
        1,
        "the newer code replaced the older in the queue: {queue:?}"
    );
    let new_code = queue[0].code.clone();
    if old_code != new_code {
        assert_eq!(
            verify(&api, "gus", &old_code, None).await?["result"],
            "reject"
        );
        assert_eq!(
            verify(&api, "gus", &old_code, first["transaction_id"].as_str()).await?["result"],
            "reject"
        );
    }
    assert_eq!(
        verify(&api, "gus", &new_code, None).await?["factor"],
        "in_person"
    );
    let statuses = deliveries(&mut admin, Some("gus"))?;
    assert_eq!(statuses.len(), 2);

    // Wrong codes count toward the lockout; once locked, even the right code is refused.
    let c = challenge(&api, "lou", "in_person").await?;
    settled(
        &mut admin,
        c["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    let right = handovers(&mut admin)?
        .into_iter()
        .find(|h| h.user == "lou")
        .context("lou queued")?
        .code;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let answer = verify(&api, "lou", wrong, None).await?;
        reasons.push(answer["reason"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        reasons,
        ["invalid_code", "invalid_code", "invalid_code", "locked"]
    );
    assert_eq!(verify(&api, "lou", &right, None).await?["reason"], "locked");

    // Access codes: generated by an admin, shown once, accepted once.
    let issued = match admin.ok(&AdminRequest::AccessCodeGenerate { user: "gus".into() })? {
        AdminReply::AccessCode(issued) => issued,
        other => bail!("unexpected {other:?}"),
    };
    assert_eq!(
        issued.code.len(),
        14,
        "12 digits in groups of 4: {}",
        issued.code
    );
    let ok = verify(&api, "gus", &issued.code, None).await?;
    assert_eq!(
        (ok["result"].as_str(), ok["factor"].as_str()),
        (Some("accept"), Some("access_code")),
        "{ok}"
    );
    assert_eq!(
        verify(&api, "gus", &issued.code, None).await?["result"],
        "reject"
    );
    let audit = serde_json::to_string(&admin.ok(&AdminRequest::AuditTail { limit: Some(200) })?)?;
    assert!(audit.contains("access_code_generate"));
    assert!(!audit.contains(&issued.code) && !audit.contains(&issued.code.replace('-', "")));
    assert!(!daemon.log()?.contains(&issued.code.replace('-', "")));
    Ok(())
}

#[tokio::test]
async fn access_codes_are_refused_while_switched_off() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    admin.create_user("hal")?;
    match admin.call(&AdminRequest::AccessCodeGenerate { user: "hal".into() })? {
        AdminAnswer::Error { error } => assert!(
            error.code == "forbidden" && error.message.contains("access_codes"),
            "{error:?}"
        ),
        AdminAnswer::Ok { reply } => bail!("generated while off: {reply:?}"),
    }
    Ok(())
}

#[test]
fn the_commented_plugin_and_email_examples_are_valid_when_uncommented() -> Result<()> {
    let example = std::fs::read_to_string(
        twofold_tests::delivery::repo_root().join("packaging/twofold.toml"),
    )?;
    let start = example
        .find("\n# [[plugin]]\n")
        .context("no plugin example")?;
    let end = example[start..]
        .find("\n\n# 2FA policies")
        .map_or(example.len(), |e| start + e);
    // The TOML lines of the examples: tables and keys, not the prose around them.
    let uncommented: String = example[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        uncommented.matches("[[plugin]]").count(),
        3,
        "{uncommented}"
    );
    assert!(uncommented.contains("[email]"), "{uncommented}");
    let dir = twofold_tests::TempDir::new("delivery-example")?;
    // check-config wants the files the examples name (the SMTP password, the SMS token) and the plugins'
    // .wasm files: here, in the test's folder.
    for file in [
        "sms-http.wasm",
        "voice-http.wasm",
        "in-person.wasm",
        "sms-token",
    ] {
        std::fs::write(dir.path().join(file), "")?;
    }
    let uncommented =
        uncommented.replace("\"/etc/twofold/", &format!("\"{}/", dir.path().display()));
    for line in uncommented.lines() {
        if let Some((_, value)) = line.split_once("_file = \"") {
            std::fs::write(value.trim_end_matches('"'), "")?;
        }
    }
    let uncommented = format!(
        "[delivery]\nplugin_dirs = [\"{}\"]\n{}",
        toml_path(dir.path()),
        uncommented
    );
    let path = dir.path().join("example.toml");
    std::fs::write(&path, format!("version = 1\n{uncommented}"))?;
    let out = std::process::Command::new(twofold_tests::workspace_binary("twofoldd")?)
        .arg("check-config")
        .arg(&path)
        .output()?;
    assert!(
        out.status.success(),
        "{}\n{uncommented}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a mistake in such a table is refused with its line.
    std::fs::write(
        &path,
        format!(
            "version = 1\n{}",
            uncommented.replace(
                "allow_hosts = [\"sms.example.net:443\"]",
                "allow_hosts = [\"https://sms.example.net\"]"
            )
        ),
    )?;
    let out = std::process::Command::new(twofold_tests::workspace_binary("twofoldd")?)
        .arg("check-config")
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not a URL"),
        "{stderr}"
    );
    Ok(())
}

/// In-process on a manual clock: a code is accepted until `lifetime_seconds` after it was made, and not
/// at that second or later; a 24 h lifetime (the signing product's) is as good as the short default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_lives_exactly_as_long_as_configured() -> Result<()> {
    use twofoldd::clock::{Clock, ManualClock};
    const T0: i64 = 1_700_000_000;
    // (lifetime_seconds, seconds after the challenge, accepted)
    let table = [
        (300, 299, true),
        (300, 300, false),
        (86_400, 86_399, true),
        (86_400, 86_400, false),
    ];
    for (lifetime, after, accepted) in table {
        let dir = twofold_tests::TempDir::new("delivery-clock")?;
        let extra = format!(
            "\n[challenge]\nlifetime_seconds = {lifetime}\n\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n[[plugin]]\nname = \"desk\"\nfile = \"in_person.wasm\"\nhandover = true\n",
            toml_path(&plugins_dir()?)
        );
        let config = twofoldd::config::Config::parse(&format!(
            "{}{extra}",
            twofold_tests::base_config(dir.path())
        ))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let clock = ManualClock::new(T0);
        let handle = twofoldd::start(config, clock.clone()).await?;
        let mut admin = Admin::connect(&handle.admin_socket)?;
        let api = Api::new(
            &handle.api_addr.to_string(),
            &dir.path().join("tls/cert.pem"),
        )?
        .with_key(&admin.api_key("app")?);
        admin.create_user("ivy")?;
        let c = challenge(&api, "ivy", "in_person").await?;
        assert_eq!(c["expires_at"].as_i64(), Some(T0 + lifetime), "{c}");
        settled(
            &mut admin,
            c["transaction_id"].as_str().unwrap_or_default(),
            WAIT,
        )
        .await?;
        let code = handle
            .service
            .challenges()?
            .delivery()
            .handover()
            .list(clock.now())
            .remove(0)
            .code;
        clock.advance(after);
        let answer = verify(&api, "ivy", &code, c["transaction_id"].as_str()).await?;
        assert_eq!(
            answer["result"] == "accept",
            accepted,
            "lifetime {lifetime}, {after} s later: {answer}"
        );
        handle.shutdown().await?;
    }
    Ok(())
}

/// `[[plugin]]` tables of the hostile plugin, one per (name, mode), behind a `[delivery]` table that
/// routes SMS through them in order and then through a good plugin on `sms`.
fn hostile_config(
    modes: &[(&str, &str)],
    ca: &TestCa,
    sms: &Gateway,
    extra: &str,
) -> Result<String> {
    let plugins = plugins_dir()?;
    let mut config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nmax_attempts = 1\nsms = [{}, \"good\"]\n{extra}",
        toml_path(&plugins),
        modes.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    );
    for (name, mode) in modes {
        config.push_str(&format!(
            "\n[[plugin]]\nname = \"{name}\"\nfile = \"hostile.wasm\"\n[plugin.config]\nmode = \"{mode}\"\n"
        ));
    }
    config.push_str(&format!(
        "\n[[plugin]]\nname = \"good\"\nfile = \"sms_http.wasm\"\nallow_hosts = [\"127.0.0.1:{port}\"]\nca_file = \"{ca}\"\n[plugin.config]\nurl = \"https://127.0.0.1:{port}/send\"\n",
        port = sms.addr.port(),
        ca = toml_path(&ca.ca_file)
    ));
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_forge_lines_in_the_log_or_in_deliveries() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-forge")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let daemon = Daemon::start(&hostile_config(
        &[("forger", "forge-lines")],
        &ca,
        &sms,
        "",
    )?)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "mallory", Some("+41 79 000 00 01"), None, &[])?;
    let c = challenge(&api, "mallory", "sms").await?;
    let tx = c["transaction_id"].as_str().unwrap_or_default().to_owned();
    let done = settled(&mut admin, &tx, WAIT).await?;
    assert_eq!(done.state, DeliveryState::Delivered, "{done:?}");
    assert!(
        done.attempts[0]
            .detail
            .starts_with("gateway said no\\nFORGED-ROW"),
        "{:?}",
        done.attempts[0].detail
    );

    // The log: the forged audit entry is inside the plugin's line, never a line of its own.
    let log = daemon.log()?;
    let forged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("action=user_delete"))
        .collect();
    assert!(!forged.is_empty(), "the plugin's line was logged");
    for line in &forged {
        assert!(
            line.contains("gateway slow\\r\\n2026-12-05") && line.contains("forger"),
            "forged: {line}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-05T10:00:00") || l.starts_with("FORGED")),
        "{log}"
    );

    // `twofold-admin deliveries`: one row per delivery, the forged row inside the real one.
    let out = daemon.admin_cli(&["deliveries"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("mallory")).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
    assert!(
        !text.contains('\u{2028}') && !text.contains('\u{202e}'),
        "{text}"
    );
    Ok(())
}

/// The daemon's resident memory, from /proc.
fn rss_mib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kib >> 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_strings_from_plugins_stay_outside_the_host() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-huge")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    // 14 MiB strings, in instances of 32 MiB.
    let config = hostile_config(
        &[("huge", "huge-strings")],
        &ca,
        &sms,
        "plugin_memory_mib = 32\n",
    )?
    .replace(
        "mode = \"huge-strings\"\n",
        "mode = \"huge-strings\"\nmib = \"14\"\n",
    );
    let daemon = Daemon::start(&config)?;
    let pid = daemon.pid().context("running")?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    const USERS: usize = 60;
    for i in 0..USERS {
        user(
            &mut admin,
            &format!("u{i}"),
            Some("+41 79 000 00 01"),
            None,
            &[],
        )?;
    }
    let mut txs = Vec::new();
    for i in 0..USERS {
        let c = challenge(&api, &format!("u{i}"), "sms").await?;
        txs.push(c["transaction_id"].as_str().unwrap_or_default().to_owned());
    }
    let mut peak = rss_mib(pid)?;
    let before = peak;
    for (i, tx) in txs.iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            peak = peak.max(rss_mib(pid)?);
            let d = deliveries(&mut admin, Some(&format!("u{i}")))?
                .into_iter()
                .find(|d| &d.transaction_id == tx)
                .context("listed")?;
            if d.state == DeliveryState::Delivered {
                let reason = &d.attempts[0].detail;
                assert!(
                    reason.len() <= 500 && reason.starts_with("xxx"),
                    "{}",
                    reason.len()
                );
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("{tx} not delivered: {d:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(peak < 150, "the daemon's RSS peaked at {peak} MiB");
    eprintln!("60 deliveries, each with a 14 MiB log line, note and reason: RSS {before} MiB before, peak {peak} MiB, after {} MiB", rss_mib(pid)?);
    Ok(())
}

/// A request with 10,000 headers of 1 KiB (a body far under its limit) is refused whole in the host,
/// before anything is sent; the plugin reads the refusal, and the next plugin delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_flood_is_refused_before_anything_is_sent() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-flood")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let config = hostile_config(&[("flood", "header-flood")], &ca, &sms, "")?.replace(
        "mode = \"header-flood\"\n",
        &format!(
            "mode = \"header-flood\"\nurl = \"https://127.0.0.1:{}/send\"\n",
            sms.addr.port()
        ),
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "mallory", Some("+41 79 000 00 01"), None, &[])?;
    let c = challenge(&api, "mallory", "sms").await?;
    let done = settled(
        &mut admin,
        c["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    let by: Vec<(&str, &str, &str)> = done
        .attempts
        .iter()
        .map(|a| (a.via.as_str(), a.outcome.as_str(), a.detail.as_str()))
        .collect();
    assert_eq!(
        by,
        [
            (
                "flood",
                "failed",
                "flood refused: 10000 headers: at most 32 may be sent"
            ),
            ("good", "delivered", by[1].2),
        ],
        "{done:?}"
    );
    let received = sms.received();
    assert_eq!(received.len(), 1, "only the good plugin's request arrived");
    assert!(
        !received[0]
            .headers
            .iter()
            .any(|(n, _)| n.starts_with("x-flood")),
        "{:?}",
        received[0].headers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_cache_artifacts_are_refused_and_a_fifo_does_not_block_the_start() -> Result<()> {
    let plugins = plugins_dir()?;
    let config = format!(
        "\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n[[plugin]]\nname = \"desk\"\nfile = \"in_person.wasm\"\nhandover = true\n\n[[plugin]]\nname = \"spin\"\nfile = \"hostile.wasm\"\n",
        toml_path(&plugins)
    );
    let mut daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let first = plugin_status(&mut admin)?;
    assert!(first.iter().all(|p| p.loaded && !p.from_cache), "{first:?}");
    let cache = daemon.data_dir().join("plugin-cache");
    let artifact_of = |p: &PluginInfo| -> Result<std::path::PathBuf> {
        let sha = p.sha256.clone().context("sha256")?;
        std::fs::read_dir(&cache)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&sha))
            })
            .context("artifact of the plugin")
    };
    let (a, b) = (artifact_of(&first[0])?, artifact_of(&first[1])?);
    // Two artifacts, each sealed by this daemon, swapped between the two plugins.
    let (bytes_a, bytes_b) = (std::fs::read(&a)?, std::fs::read(&b)?);
    std::fs::write(&a, &bytes_b)?;
    std::fs::write(&b, &bytes_a)?;
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    let after = plugin_status(&mut admin)?;
    assert!(
        after.iter().all(|p| p.loaded && !p.from_cache),
        "swapped artifacts recompiled: {after:?}"
    );
    assert_eq!(
        after.iter().map(|p| p.sha256.clone()).collect::<Vec<_>>(),
        first.iter().map(|p| p.sha256.clone()).collect::<Vec<_>>()
    );
    assert!(daemon.log()?.contains("bad seal"));

    // A FIFO at an artifact's path: skipped, the start is not blocked, the plugin compiled again.
    std::fs::remove_file(&a)?;
    let made = std::process::Command::new("mkfifo").arg(&a).status()?;
    assert!(made.success());
    daemon.restart()?;
    let mut admin = daemon.admin()?;
    let status = plugin_status(&mut admin)?;
    assert!(status.iter().all(|p| p.loaded), "{status:?}");
    assert!(
        daemon.log()?.contains("not a regular file"),
        "the FIFO was named"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_last_good_plugin() -> Result<()> {
    let dir = twofold_tests::TempDir::new("delivery-bad-reload")?;
    let plugins = plugins_dir()?;
    let copy = dir.path().join("desk.wasm");
    std::fs::copy(plugins.join("in_person.wasm"), &copy)?;
    let config = format!(
        "\n[challenge]\nmin_interval_seconds = 0\n\n[delivery]\nplugin_dirs = [\"{}\"]\nin_person = [\"desk\"]\n\n[[plugin]]\nname = \"desk\"\nfile = \"{}\"\nhandover = true\n",
        toml_path(&plugins),
        toml_path(&copy)
    );
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let api = client(&daemon).await?;
    user(&mut admin, "gus", None, None, &[])?;
    let good = plugin_status(&mut admin)?;
    // A truncated file, then a reload.
    let bytes = std::fs::read(&copy)?;
    std::fs::write(&copy, &bytes[..bytes.len() / 2])?;
    let status = match admin.ok(&AdminRequest::PluginReload)? {
        AdminReply::Plugins { plugins } => plugins,
        other => bail!("unexpected {other:?}"),
    };
    assert!(
        status[0].loaded,
        "the last good version stays loaded: {status:?}"
    );
    assert_eq!(status[0].sha256, good[0].sha256);
    let error = status[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("reloading") && error.contains("not a valid WebAssembly component"),
        "{error}"
    );
    // And it still delivers.
    let c = challenge(&api, "gus", "in_person").await?;
    let done = settled(
        &mut admin,
        c["transaction_id"].as_str().unwrap_or_default(),
        WAIT,
    )
    .await?;
    assert_eq!(done.state, DeliveryState::Delivered, "{done:?}");
    assert!(daemon.log()?.contains("plugin reload failed"));
    Ok(())
}
