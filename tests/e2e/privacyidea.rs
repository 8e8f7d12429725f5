//! The privacyIDEA-compatible validate API end to end: the requests privacyIDEA's own clients send
//! (form-encoded POST with `user` and `pass` as privacyidea_pam, FreeRADIUS and the credential provider
//! send them; GET with query parameters; JSON bodies; the two-step challenge with `transaction_id` or
//! `state`; radiuscheck; triggerchallenge), against the real daemon over HTTPS, with codes delivered to
//! the SMS-gateway and SMTP stand-ins. Every field such a client reads is checked.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use twofold_tests::delivery::{find_code, plugins_dir, Gateway, SmtpServer, TestCa};
use twofold_tests::{enroll, oathtool, Admin, Answer, Api, Daemon};
use twofold_wire::admin::{AdminReply, AdminRequest, NewUser};

use crate::step_margin;

const WAIT: Duration = Duration::from_secs(20);
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn form(pairs: &[(&str, &str)]) -> Result<Vec<u8>> {
    Ok(serde_urlencoded::to_string(pairs)?.into_bytes())
}

/// A privacyIDEA client's form-encoded POST, with the API key sent bare in `Authorization` as those
/// clients send their token.
async fn post_form(
    api: &Api,
    path: &str,
    key: Option<&str>,
    pairs: &[(&str, &str)],
) -> Result<Answer> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("authorization", k)).into_iter().collect();
    api.send("POST", path, FORM, &form(pairs)?, &headers).await
}

async fn get_query(
    api: &Api,
    path: &str,
    key: Option<&str>,
    pairs: &[(&str, &str)],
) -> Result<Answer> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("authorization", k)).into_iter().collect();
    let query = serde_urlencoded::to_string(pairs)?;
    api.send("GET", &format!("{path}?{query}"), None, &[], &headers)
        .await
}

/// The envelope every answer shares, and a 200.
fn envelope(answer: &Answer) -> Result<&Value> {
    if answer.status != 200 {
        bail!("answered {}: {}", answer.status, answer.raw);
    }
    let body = &answer.body;
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], 1, "{body}");
    assert!(
        body["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("privacyIDEA 3.")),
        "{body}"
    );
    assert!(body["time"].is_number(), "{body}");
    assert_eq!(body["result"]["status"], true, "{body}");
    Ok(body)
}

fn assert_accept(answer: &Answer, message: &str, serial: &str, token_type: &str) -> Result<()> {
    let body = envelope(answer)?;
    assert_eq!(body["result"]["value"], true, "{body}");
    assert_eq!(body["result"]["authentication"], "ACCEPT", "{body}");
    assert_eq!(body["detail"]["message"], message, "{body}");
    assert_eq!(body["detail"]["serial"], serial, "{body}");
    assert_eq!(body["detail"]["type"], token_type, "{body}");
    Ok(())
}

fn assert_reject(answer: &Answer, message: &str) -> Result<()> {
    let body = envelope(answer)?;
    assert_eq!(body["result"]["value"], false, "{body}");
    assert_eq!(body["result"]["authentication"], "REJECT", "{body}");
    assert_eq!(body["detail"]["message"], message, "{body}");
    assert!(body["detail"].get("transaction_id").is_none(), "{body}");
    Ok(())
}

/// privacyIDEA's error envelope: `result.status` false, a numeric `result.error.code` (the credential
/// provider reads it as an integer), a message, and a 4xx.
fn assert_error(answer: &Answer, status: u16, code: i64, message_part: &str) {
    let body = &answer.body;
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert_eq!(body["result"]["status"], false, "{body}");
    assert_eq!(
        body["result"]["error"]["code"].as_i64(),
        Some(code),
        "{body}"
    );
    assert!(
        body["result"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(message_part)),
        "{body}"
    );
    assert!(body["result"].get("value").is_none(), "{body}");
}

fn audit_details(admin: &mut Admin, action: &str) -> Result<Vec<String>> {
    match admin.ok(&AdminRequest::AuditTail { limit: Some(200) })? {
        AdminReply::Audit { events } => Ok(events
            .into_iter()
            .filter(|e| e.action == action)
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e.actor,
                    e.user.unwrap_or_default(),
                    e.outcome,
                    e.detail.unwrap_or_default()
                )
            })
            .collect()),
        other => bail!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_and_backup_codes_by_form_query_and_json_with_replay_realms_and_radiuscheck(
) -> Result<()> {
    let daemon = Daemon::start("\n[privacyidea]\nenabled = true\n")?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?;
    let alice = enroll(&mut admin, &api.clone().with_key(&key), "alice").await?;
    let check = "/validate/check";
    step_margin(8).await;

    // privacyidea_pam / FreeRADIUS: a form POST with user, pass and an empty realm.
    let code = oathtool(&alice.secret, 0, &[])?;
    let ok = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "alice"), ("realm", ""), ("pass", &code)],
    )
    .await?;
    assert_accept(&ok, "matching 1 tokens", &alice.device, "totp")?;
    assert_eq!(ok.body["detail"]["otplen"], 6, "{}", ok.raw);

    // The same code again: privacyIDEA's replay message, which clients match on.
    let again = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "alice"), ("pass", &code)],
    )
    .await?;
    assert_reject(&again, "wrong otp value. previous otp used again")?;

    // GET with query parameters, naming the device as the serial; `Bearer` works as well.
    let next = oathtool(&alice.secret, 30, &[])?;
    let bearer = format!("Bearer {key}");
    let by_get = get_query(
        &api,
        check,
        Some(&bearer),
        &[
            ("user", "alice"),
            ("serial", &alice.device),
            ("pass", &next),
        ],
    )
    .await?;
    assert_accept(&by_get, "matching 1 tokens", &alice.device, "totp")?;

    // A JSON body with a wrong code.
    let wrong = api
        .send(
            "POST",
            check,
            Some("application/json"),
            br#"{"user": "alice", "pass": "000000"}"#,
            &[("authorization", &key)],
        )
        .await?;
    let wrong_message = if code == "000000" || next == "000000" {
        "wrong otp value. previous otp used again"
    } else {
        "wrong otp value"
    };
    assert_reject(&wrong, wrong_message)?;

    // A serial that is not the user's device accepts nothing, not even a backup code.
    let backup = &alice.backup_codes[0];
    let other_serial = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "alice"), ("serial", "dnothere"), ("pass", backup)],
    )
    .await?;
    assert_reject(&other_serial, "wrong otp value")?;

    // A backup code, in the realm of local users (realms compare without case).
    let by_backup = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "alice"), ("realm", "LOCAL"), ("pass", backup)],
    )
    .await?;
    assert_accept(&by_backup, "matching 1 tokens", "backup_codes", "tan")?;

    // An unknown realm is a REJECT, not an error; an unknown user answers as a wrong code.
    let realm = post_form(
        &api,
        check,
        Some(&key),
        &[
            ("user", "alice"),
            ("realm", "elsewhere"),
            ("pass", &alice.backup_codes[1]),
        ],
    )
    .await?;
    assert_reject(&realm, "unknown realm: elsewhere")?;
    let nobody = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "nobody"), ("pass", "123456")],
    )
    .await?;
    assert_reject(&nobody, "wrong otp value")?;

    // radiuscheck: an empty 204 on success, an empty 400 otherwise.
    let radius = "/validate/radiuscheck";
    let accepted = post_form(
        &api,
        radius,
        Some(&key),
        &[("user", "alice"), ("pass", &alice.backup_codes[1])],
    )
    .await?;
    assert_eq!((accepted.status, accepted.raw.as_str()), (204, ""));
    let refused = post_form(
        &api,
        radius,
        Some(&key),
        &[("user", "alice"), ("pass", &alice.backup_codes[1])],
    )
    .await?;
    assert_eq!((refused.status, refused.raw.as_str()), (400, ""));

    // Requests privacyIDEA refuses get its error envelope.
    let no_pass = post_form(&api, check, Some(&key), &[("user", "alice")]).await?;
    assert_error(&no_pass, 400, 905, "Missing parameter: 'pass'");
    let no_user = post_form(&api, check, Some(&key), &[("pass", "123456")]).await?;
    assert_error(&no_user, 400, 905, "user");
    let serial_only = post_form(
        &api,
        check,
        Some(&key),
        &[("serial", &alice.device), ("pass", "123456")],
    )
    .await?;
    assert_error(&serial_only, 400, 905, "send user");
    let bad_json = api
        .send(
            "POST",
            check,
            Some("application/json"),
            b"{\"user\": ",
            &[("authorization", &key)],
        )
        .await?;
    assert_error(&bad_json, 400, 905, "JSON");
    let no_key = post_form(&api, check, None, &[("user", "alice"), ("pass", "123456")]).await?;
    assert_error(&no_key, 401, 4033, "API key");
    let bad_key = post_form(
        &api,
        check,
        Some("not-a-key"),
        &[("user", "alice"), ("pass", "123456")],
    )
    .await?;
    assert_error(&bad_key, 401, 4033, "API key");
    let radius_error =
        post_form(&api, radius, None, &[("user", "alice"), ("pass", "123456")]).await?;
    assert_error(&radius_error, 401, 4033, "API key");

    // The native path did the work: the same audit events, the replay recorded as such.
    let verifies = audit_details(&mut admin, "verify")?;
    assert!(
        verifies
            .iter()
            .any(|v| v.starts_with("api:vpn alice reject reason=replayed")),
        "{verifies:#?}"
    );
    assert_eq!(
        verifies
            .iter()
            .filter(|v| v.starts_with("api:vpn alice accept"))
            .count(),
        4,
        "{verifies:#?}"
    );
    Ok(())
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// SMS through the sms-http plugin to the gateway stand-in, email over SMTP (STARTTLS, AUTH), and the
/// privacyIDEA API by client address.
fn delivery_config(ca: &TestCa, sms: &Gateway, smtp: &SmtpServer) -> Result<String> {
    Ok(format!(
        r#"
[challenge]
min_interval_seconds = 0

[delivery]
plugin_dirs = ["{plugins}"]
sms = ["sms"]
retry_initial_seconds = 1

[[plugin]]
name = "sms"
file = "sms_http.wasm"
allow_hosts = ["127.0.0.1:{sms_port}"]
ca_file = "{ca}"
[plugin.config]
url = "https://127.0.0.1:{sms_port}/send?ref={{transaction|url}}"
message = "Code {{code}}, valid {{minutes}} min."
success_body_contains = "msg-"

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "starttls"
ca_file = "{ca}"
username = "{smtp_user}"
password_file = "{smtp_password}"
from = "Twofold <twofold@example.com>"

[privacyidea]
enabled = true
auth = "address"
allowed_addresses = ["127.0.0.0/8"]
"#,
        plugins = toml_path(&plugins_dir()?),
        ca = toml_path(&ca.ca_file),
        sms_port = sms.addr.port(),
        smtp_port = smtp.port,
        smtp_user = smtp.username,
        smtp_password = toml_path(&smtp.password_file),
    ))
}

fn mail_code(mail: &str) -> Result<String> {
    find_code(
        mail.split_once("\r\n\r\n").map_or(mail, |(_, body)| body),
        6,
    )
    .context("a 6-digit code in the mail")
}

/// The `CHALLENGE` answer: one transaction id over one `multi_challenge` entry per channel. `value` is
/// false from `/validate/check`, the number of challenges from `/validate/triggerchallenge`.
fn assert_challenge(answer: &Answer, value: Value, types: &[&str]) -> Result<String> {
    let body = envelope(answer)?;
    assert_eq!(body["result"]["value"], value, "{body}");
    assert_eq!(body["result"]["authentication"], "CHALLENGE", "{body}");
    let detail = &body["detail"];
    let tx = detail["transaction_id"]
        .as_str()
        .context("detail.transaction_id")?
        .to_owned();
    let entries = detail["multi_challenge"]
        .as_array()
        .context("multi_challenge")?;
    let found: Vec<&str> = entries.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(found, types, "{body}");
    for entry in entries {
        assert_eq!(entry["transaction_id"], tx.as_str(), "{body}");
        assert_eq!(entry["client_mode"], "interactive", "{body}");
        assert_eq!(entry["serial"], entry["type"], "{body}");
        assert!(
            entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Enter the OTP from the")),
            "{body}"
        );
        assert!(entry.get("attributes").is_some(), "{body}");
    }
    let messages: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(detail["message"], messages.join(", "), "{body}");
    assert_eq!(
        detail["messages"].as_array().map(Vec::len),
        Some(entries.len()),
        "{body}"
    );
    assert_eq!(detail["preferred_client_mode"], "interactive", "{body}");
    Ok(tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pass_sends_sms_and_email_under_one_transaction_and_the_code_completes_it(
) -> Result<()> {
    let dir = twofold_tests::TempDir::new("privacyidea-challenge")?;
    let ca = TestCa::create(dir.path())?;
    let sms = Gateway::start(Some(&ca)).await?;
    let smtp = SmtpServer::start(dir.path(), &ca)?;
    let daemon = Daemon::start(&delivery_config(&ca, &sms, &smtp)?)?;
    let mut admin = daemon.admin()?;
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "bob".to_owned(),
        email: Some("bob@example.com".to_owned()),
        mobile: Some("+41 79 123 45 67".to_owned()),
        ..NewUser::default()
    }))?;
    // No phone, no email: no challenge channel.
    admin.ok(&AdminRequest::UserCreate(NewUser {
        username: "dave".to_owned(),
        ..NewUser::default()
    }))?;
    let key = admin.api_key("sso")?;
    let api = daemon.api_client()?;
    let check = "/validate/check";

    // Step one, as the credential provider's "send empty password" and LDAP proxies do: no header
    // (the address is allowed), user and an empty pass.
    let first = post_form(&api, check, None, &[("user", "bob"), ("pass", "")]).await?;
    let tx = assert_challenge(&first, Value::Bool(false), &["sms", "email"])?;
    let sms_text = sms.wait_for(1, WAIT).await?.remove(0).body;
    let sms_code = find_code(&sms_text, 6).context("a code in the SMS")?;
    let email_code = mail_code(&smtp.wait_for(1, WAIT).await?.remove(0))?;

    // Step two: the SMS code with the transaction id completes it.
    let second = post_form(
        &api,
        check,
        None,
        &[
            ("user", "bob"),
            ("transaction_id", &tx),
            ("pass", &sms_code),
        ],
    )
    .await?;
    assert_accept(&second, "Found matching challenge", "sms", "sms")?;
    // The group is done: the email code stops working (sent as `state`, privacyIDEA's alias), and the
    // SMS code is not accepted twice.
    let stale = post_form(
        &api,
        check,
        None,
        &[("user", "bob"), ("state", &tx), ("pass", &email_code)],
    )
    .await?;
    assert_reject(&stale, "Response did not match the challenge.")?;
    let replay = post_form(
        &api,
        check,
        None,
        &[
            ("user", "bob"),
            ("transaction_id", &tx),
            ("pass", &sms_code),
        ],
    )
    .await?;
    assert_reject(&replay, "Response did not match the challenge.")?;

    // triggerchallenge is for callers with an API key, also when addresses are allowed.
    let trigger = "/validate/triggerchallenge";
    let anonymous = post_form(&api, trigger, None, &[("user", "bob")]).await?;
    assert_error(&anonymous, 401, 4033, "API key");
    let triggered = post_form(
        &api,
        trigger,
        Some(&key),
        &[("user", "bob"), ("type", "email")],
    )
    .await?;
    let tx2 = assert_challenge(&triggered, Value::from(1), &["email"])?;
    assert_ne!(tx, tx2);
    assert_eq!(triggered.body["detail"]["transaction_ids"][0], tx2.as_str());
    let mails = smtp.wait_for(2, WAIT).await?;
    let code2 = mail_code(&mails[1])?;
    // Completed by a GET with query parameters.
    let done = get_query(
        &api,
        check,
        None,
        &[("user", "bob"), ("transaction_id", &tx2), ("pass", &code2)],
    )
    .await?;
    assert_accept(&done, "Found matching challenge", "email", "email")?;

    // No channel and no such user answer alike; triggerchallenge counts 0.
    for name in ["dave", "nobody"] {
        let none = post_form(&api, check, None, &[("user", name), ("pass", "")]).await?;
        assert_reject(&none, "wrong otp value")?;
        let zero = post_form(&api, trigger, Some(&key), &[("user", name)]).await?;
        assert_eq!(zero.body["result"]["value"], 0, "{}", zero.raw);
        assert_eq!(
            zero.body["detail"]["transaction_ids"],
            serde_json::json!([]),
            "{}",
            zero.raw
        );
    }
    // Only the SMS and the two mails asked for were sent.
    assert_eq!(sms.received().len(), 1);
    assert_eq!(smtp.messages()?.len(), 2);

    // The challenges were audited like native ones, under the caller's address.
    let sent = audit_details(&mut admin, "challenge")?;
    assert!(
        sent.iter()
            .any(|s| s.starts_with("api:address:127.0.0.1 bob sent channel=sms")),
        "{sent:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_allowed_by_address_or_by_key_as_configured() -> Result<()> {
    // Off by default: the routes do not exist.
    let mut daemon = Daemon::start("")?;
    let key = daemon.admin()?.api_key("radius")?;
    let api = daemon.api_client()?;
    let off = post_form(
        &api,
        "/validate/check",
        None,
        &[("user", "a"), ("pass", "1")],
    )
    .await?;
    assert_eq!(off.status, 404, "{}", off.raw);

    // By address, and 127.0.0.1 is not in the list: refused without a key, served with one.
    daemon.restart_with(
        "\n[privacyidea]\nenabled = true\nauth = \"address\"\nallowed_addresses = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n",
    )?;
    let api = daemon.api_client()?;
    let pairs = [("user", "nobody"), ("pass", "123456")];
    let refused = post_form(&api, "/validate/check", None, &pairs).await?;
    assert_error(
        &refused,
        403,
        4033,
        "127.0.0.1 is not an allowed client address",
    );
    let with_key = post_form(&api, "/validate/check", Some(&key), &pairs).await?;
    assert_reject(&with_key, "wrong otp value")?;

    // By key, with an address list as well: the key alone is not enough from elsewhere.
    daemon.restart_with(
        "\n[privacyidea]\nenabled = true\nauth = \"api_key\"\nallowed_addresses = [\"192.0.2.0/24\"]\n",
    )?;
    let api = daemon.api_client()?;
    let elsewhere = post_form(&api, "/validate/check", Some(&key), &pairs).await?;
    assert_error(&elsewhere, 403, 4033, "not an allowed client address");
    daemon.restart_with(
        "\n[privacyidea]\nenabled = true\nauth = \"api_key\"\nallowed_addresses = [\"127.0.0.1\"]\n",
    )?;
    let api = daemon.api_client()?;
    let here = post_form(&api, "/validate/check", Some(&key), &pairs).await?;
    assert_reject(&here, "wrong otp value")?;
    // privacyIDEA clients that send the key in PI-Authorization.
    let pi_header = api
        .send(
            "POST",
            "/validate/check",
            FORM,
            &form(&pairs)?,
            &[("pi-authorization", &key)],
        )
        .await?;
    assert_reject(&pi_header, "wrong otp value")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_a_second_factor_by_policy_are_accepted_as_with_pass_on_no_token(
) -> Result<()> {
    let daemon = Daemon::start(
        "\n[policy]\ntwo_factor = \"off\"\n\n[privacyidea]\nenabled = true\ndefault_realm = \"staff\"\n\n[privacyidea.realms]\nstaff = \"local\"\n",
    )?;
    let mut admin = daemon.admin()?;
    let key = admin.api_key("vpn")?;
    admin.create_user("erin")?;
    let api = daemon.api_client()?;
    // In the default realm (no realm sent) and in it by name: accepted, the code not checked.
    for realm in ["", "Staff"] {
        let ok = post_form(
            &api,
            "/validate/check",
            Some(&key),
            &[("user", "erin"), ("realm", realm), ("pass", "123456")],
        )
        .await?;
        let body = envelope(&ok)?;
        assert_eq!(body["result"]["value"], true, "{body}");
        assert_eq!(body["result"]["authentication"], "ACCEPT", "{body}");
        assert_eq!(
            body["detail"]["message"], "user has no token, accepted due to 'passOnNoToken' policy",
            "{body}"
        );
    }
    let radius = post_form(
        &api,
        "/validate/radiuscheck",
        Some(&key),
        &[("user", "erin"), ("pass", "1")],
    )
    .await?;
    assert_eq!(radius.status, 204, "{}", radius.raw);
    // `local` is not a realm once realms are listed: the same user there is refused.
    let elsewhere = post_form(
        &api,
        "/validate/check",
        Some(&key),
        &[("user", "erin"), ("realm", "local"), ("pass", "123456")],
    )
    .await?;
    assert_reject(&elsewhere, "unknown realm: local")?;
    // Unknown users are not let in by the policy.
    let nobody = post_form(
        &api,
        "/validate/check",
        Some(&key),
        &[("user", "nobody"), ("pass", "123456")],
    )
    .await?;
    assert_reject(&nobody, "wrong otp value")?;
    Ok(())
}

/// Realms name user sources: a realm mapped to a `[[directory]]` finds that domain's users (synced from
/// the Samba AD DC) and no one else, and a user asked for in another realm is refused before their
/// code is looked at (so the code stays good for the right realm).
#[tokio::test]
async fn a_realm_mapped_to_an_ad_domain_finds_its_users_and_no_others() -> Result<()> {
    let dc = twofold_tests::samba::shared_dc()?;
    let base = format!("OU=PiRealm,{}", twofold_tests::samba::BASE_DN);
    dc.modify(&format!(
        "dn: {base}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
         dn: CN=pi-ad,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: pi-ad\n\
         userPrincipalName: pi-ad@corp.example.test\nuserAccountControl: 544\n\n"
    ))?;
    let daemon = Daemon::start(&format!(
        "\n[privacyidea]\nenabled = true\n\n[privacyidea.realms]\nstaff = \"corp\"\nexternals = \"local\"\n{}",
        dc.directory_config("corp", "ldaps://127.0.0.1:636", &base, "")
    ))?;
    let mut admin = daemon.admin()?;
    let AdminReply::DirectoryStatus { domains } = admin.ok(&AdminRequest::DirectorySync {
        domain: None,
        full: true,
    })?
    else {
        bail!("no sync status");
    };
    assert!(domains.iter().all(|d| d.ok), "{domains:?}");
    let key = admin.api_key("vpn")?;
    let api = daemon.api_client()?;
    let with_key = api.clone().with_key(&key);
    // The AD user enrolls like anyone (no local account is created for them).
    let started = with_key
        .post(
            "/api/v1/users/pi-ad/totp",
            &serde_json::json!({"label": "phone"}),
        )
        .await?;
    assert_eq!(started.status, 201, "{}", started.raw);
    let ad_secret = started.body["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ad_device = started.body["device"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    step_margin(8).await;
    let confirmed = with_key
        .post(
            &format!("/api/v1/users/pi-ad/totp/{ad_device}/confirm"),
            &serde_json::json!({"code": oathtool(&ad_secret, -30, &[])?}),
        )
        .await?;
    assert_eq!(confirmed.status, 200, "{}", confirmed.raw);
    let local = enroll(&mut admin, &with_key, "pi-local").await?;

    let check = "/validate/check";
    let ad_code = oathtool(&ad_secret, 0, &[])?;
    let local_code = oathtool(&local.secret, 0, &[])?;
    // Each user in the other's realm: refused, as an unknown user is.
    let wrong_realm = post_form(
        &api,
        check,
        Some(&key),
        &[
            ("user", "pi-ad"),
            ("realm", "externals"),
            ("pass", &ad_code),
        ],
    )
    .await?;
    assert_reject(&wrong_realm, "wrong otp value")?;
    let wrong_realm = post_form(
        &api,
        check,
        Some(&key),
        &[
            ("user", "pi-local"),
            ("realm", "staff"),
            ("pass", &local_code),
        ],
    )
    .await?;
    assert_reject(&wrong_realm, "wrong otp value")?;
    // The same codes in their own realms: accepted (the refusals above did not use them).
    let ok = post_form(
        &api,
        check,
        Some(&key),
        &[("user", "pi-ad"), ("realm", "staff"), ("pass", &ad_code)],
    )
    .await?;
    assert_accept(&ok, "matching 1 tokens", &ad_device, "totp")?;
    let ok = post_form(
        &api,
        check,
        Some(&key),
        &[
            ("user", "pi-local"),
            ("realm", "externals"),
            ("pass", &local_code),
        ],
    )
    .await?;
    assert_accept(&ok, "matching 1 tokens", &local.device, "totp")?;
    Ok(())
}
