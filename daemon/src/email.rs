//! The built-in email channel: SMTP with lettre over rustls (STARTTLS or implicit TLS), authenticated
//! with a password read from a file, plain-text messages from templates an admin can edit.
//!
//! A template is a text file: a `Subject: ...` line, an empty line, then the body. `{name}` is replaced
//! by a value (`{{` and `}}` are braces); a template naming a value that does not exist is refused when
//! the daemon starts, so a typo never sends a mail with a hole where the code should be.
//!
//! Addresses: a domain outside ASCII (`bücher.example`) is sent IDNA-encoded (`xn--bcher-kva.example`),
//! which every relay takes. A local part outside ASCII needs the relay's SMTPUTF8; a relay without it
//! will refuse that address every time, so that failure, like any permanent (5xx) answer, is final:
//! the delivery fails at once with the reason, instead of being retried as if the relay were busy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::delivery::config::{EmailConfig, EmailSecurity};
use crate::error::{Error, Result};

/// The kinds of mail Twofold sends, each with its template file and the values it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Template {
    /// A challenge's code.
    Code,
    /// Tells a user that an admin generated an access code for their account.
    AccessCodeNotice,
    /// The OTP of a restore (step 2 of restoring onto a new device).
    RestoreOtp,
    /// A new restore code (at activation, rotation, after a restore, or re-sent by an admin).
    RestoreCode,
    /// A device was added (restored, duplicated, enrolled), with the code that blocks it.
    NewDevice,
    /// Tells a user that their first authenticator was confirmed: 2FA now protects their account.
    TwoFactorEnabled,
}

impl Template {
    const ALL: [Template; 6] = [
        Template::Code,
        Template::AccessCodeNotice,
        Template::RestoreOtp,
        Template::RestoreCode,
        Template::NewDevice,
        Template::TwoFactorEnabled,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Template::Code => "code.txt",
            Template::AccessCodeNotice => "access-code-notice.txt",
            Template::RestoreOtp => "restore-otp.txt",
            Template::RestoreCode => "restore-code.txt",
            Template::NewDevice => "new-device.txt",
            Template::TwoFactorEnabled => "two-factor-enabled.txt",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Template::Code => &[
                "code",
                "user",
                "display_name",
                "minutes",
                "expires",
                "transaction",
            ],
            Template::AccessCodeNotice => &["user", "display_name", "admin", "expires"],
            Template::RestoreOtp => &[
                "code",
                "user",
                "display_name",
                "minutes",
                "expires",
                "transaction",
            ],
            Template::RestoreCode => &["restore_code", "user", "display_name"],
            Template::NewDevice => &[
                "user",
                "display_name",
                "device",
                "how",
                "time",
                "block_code",
            ],
            Template::TwoFactorEnabled => &["user", "display_name", "device", "time"],
        }
    }

    fn built_in(self) -> &'static str {
        match self {
            Template::Code => {
                "Subject: Your sign-in code\n\nHello {display_name},\n\nyour sign-in code is {code}\n\nIt is valid for {minutes} minutes (until {expires}). Nobody from IT will ever ask you for it.\nIf you did not try to sign in, tell your IT helpdesk.\n"
            }
            Template::AccessCodeNotice => {
                "Subject: An access code was issued for your account\n\nHello {display_name},\n\nan administrator ({admin}) issued a single-use access code for your account ({user}). It is valid until {expires}.\nIf you did not ask the helpdesk for one, tell your IT security team at once.\n"
            }
            Template::RestoreOtp => {
                "Subject: Your confirmation code for moving to a new device\n\nHello {display_name},\n\nto move your two-factor authentication onto a new device, enter this code: {code}\n\nIt is valid for {minutes} minutes (until {expires}). It is not your restore code (the long one you keep safe): it only shows that this mail reaches you. If you are not restoring your authenticator right now, someone has your restore code: tell your IT helpdesk at once.\n"
            }
            Template::RestoreCode => {
                "Subject: Your new restore code\n\nHello {display_name},\n\nyour restore code for two-factor authentication ({user}) is:\n\n    {restore_code}\n\nKeep it somewhere safe, away from your phone: with it and a code we email you, you can move your authenticator onto a new device. Any restore code you had before no longer works.\n"
            }
            Template::NewDevice => {
                "Subject: A device was added to your two-factor authentication\n\nHello {display_name},\n\na device \"{device}\" was {how} for your account ({user}) at {time}.\n\nIf this wasn't you, block it at once and for good with this code: {block_code}\n(your sign-in page's \"this wasn't me\" link takes it), then tell your IT helpdesk.\n"
            }
            Template::TwoFactorEnabled => {
                "Subject: Two-factor authentication has been enabled\n\nHello {display_name},\n\ntwo-factor authentication has been enabled for your account ({user}) on {time}, with the authenticator \"{device}\".\nFrom now on, signing in asks for a code from it.\nIf you did not set this up, tell your IT security team at once.\n"
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ParsedTemplate {
    subject: String,
    body: String,
}

/// Fills `{name}` placeholders; `{{`/`}}` are literal braces. Unknown names were refused at load.
fn fill(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let (true, Some(end)) = (tail.starts_with('{'), tail.find('}')) {
            out.push_str(values.get(tail[1..end].trim()).map_or("", String::as_str));
            rest = &tail[end + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The placeholder names a template uses.
fn placeholders(text: &str) -> Vec<String> {
    let cleaned = text.replace("{{", "").replace("}}", "");
    cleaned
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

fn parse_template(kind: Template, text: &str, origin: &str) -> Result<ParsedTemplate> {
    let (head, body) = text.split_once("\n\n").ok_or_else(|| {
        Error::Config(format!(
            "{origin}: a template is a Subject: line, an empty line, then the body"
        ))
    })?;
    let subject = head
        .trim()
        .strip_prefix("Subject:")
        .ok_or_else(|| Error::Config(format!("{origin}: the first line must be `Subject: ...`")))?
        .trim()
        .to_owned();
    for name in placeholders(text) {
        if !kind.names().contains(&name.as_str()) {
            return Err(Error::Config(format!(
                "{origin}: unknown placeholder {{{name}}}; known: {}",
                kind.names().join(", ")
            )));
        }
    }
    Ok(ParsedTemplate {
        subject,
        body: body.to_owned(),
    })
}

/// A message that could not be sent, and whether trying again may help.
#[derive(Debug, Clone)]
pub struct SendError {
    pub transient: bool,
    pub message: String,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: BTreeMap<Template, ParsedTemplate>,
    pub server: String,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> Result<Mailer> {
        let tls_parameters = || -> Result<TlsParameters> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| Error::Config(format!("[email] ca_file {}: {e}", ca.display())))?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| Error::Config(format!("[email] TLS: {e}")))
        };
        let (tls, default_port) = match config.security {
            EmailSecurity::Starttls => (Tls::Required(tls_parameters()?), 587),
            EmailSecurity::Tls => (Tls::Wrapper(tls_parameters()?), 465),
            EmailSecurity::None => (Tls::None, 25),
        };
        let port = config.port.unwrap_or(default_port);
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
                .port(port)
                .tls(tls)
                .timeout(Some(Duration::from_secs(config.timeout_seconds)));
        if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
            let password = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| Error::Config(format!("[email] from {:?}: {e}", config.from)))?;
        let mut templates = BTreeMap::new();
        for kind in Template::ALL {
            let (text, origin) = match &config.templates_dir {
                Some(dir) if dir.join(kind.file_name()).exists() => {
                    let path = dir.join(kind.file_name());
                    (
                        std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?,
                        path.display().to_string(),
                    )
                }
                _ => (
                    kind.built_in().to_owned(),
                    format!("built-in {}", kind.file_name()),
                ),
            };
            templates.insert(kind, parse_template(kind, &text, &origin)?);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            templates,
            server: format!("{}:{port}", config.host),
        })
    }

    /// Sends one templated mail to `to`.
    pub async fn send(
        &self,
        kind: Template,
        to: &str,
        values: &BTreeMap<&str, String>,
    ) -> std::result::Result<(), SendError> {
        let permanent = |message: String| SendError {
            transient: false,
            message,
        };
        let template = self
            .templates
            .get(&kind)
            .ok_or_else(|| permanent(format!("no template {}", kind.file_name())))?;
        let address = ascii_domain(to).map_err(permanent)?;
        let to: Mailbox = address
            .parse()
            .map_err(|e| permanent(format!("recipient address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(fill(&template.subject, values))
            .header(ContentType::TEXT_PLAIN)
            .body(fill(&template.body, values))
            .map_err(|e| permanent(format!("building the message: {e}")))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendError {
                // A client error is lettre refusing the message for what the relay offers (SMTPUTF8,
                // an authentication mechanism): the same relay refuses it the same way next time.
                transient: !(e.is_permanent() || e.is_client()),
                message: if e.is_client() && !address.is_ascii() {
                    format!(
                        "the relay does not offer SMTPUTF8, which {address} needs (its local part is not ASCII): use an ASCII address or a relay with SMTPUTF8 ({})",
                        describe(&e)
                    )
                } else {
                    describe(&e)
                },
            })
    }
}

/// `address` with its domain IDNA-encoded (UTS #46, as browsers and mail clients do).
fn ascii_domain(address: &str) -> std::result::Result<String, String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(format!("recipient address {address:?} has no domain"));
    };
    if domain.is_ascii() {
        return Ok(address.to_owned());
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|e| {
        format!("recipient domain {domain:?} is not a valid international domain name: {e}")
    })?;
    Ok(format!("{local}@{ascii}"))
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks the templates in a folder without sending anything (`check-config` runs it).
pub fn check_templates(dir: &Path) -> Result<()> {
    for kind in Template::ALL {
        let path = dir.join(kind.file_name());
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            parse_template(kind, &text, &path.display().to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_domains_are_idna_encoded() {
        for (written, sent) in [
            ("anna@bücher.example", "anna@xn--bcher-kva.example"),
            ("anna@BÜCHER.example", "anna@xn--bcher-kva.example"),
            ("jürgen@bücher.example", "jürgen@xn--bcher-kva.example"),
            ("plain@example.com", "plain@example.com"),
        ] {
            assert_eq!(ascii_domain(written).as_deref(), Ok(sent), "{written}");
        }
        assert!(ascii_domain("nobody").is_err());
    }

    #[test]
    fn templates_fill_and_refuse_unknown_names() -> Result<()> {
        for kind in Template::ALL {
            parse_template(kind, kind.built_in(), "built-in")?;
        }
        let t = parse_template(
            Template::Code,
            "Subject: Code {code}\n\nHi {display_name}, {{literal}} {code}.\n",
            "t",
        )?;
        let values = BTreeMap::from([
            ("code", "123456".to_owned()),
            ("display_name", "Ann".to_owned()),
        ]);
        assert_eq!(fill(&t.subject, &values), "Code 123456");
        assert_eq!(fill(&t.body, &values), "Hi Ann, {literal} 123456.\n");
        let e = parse_template(Template::Code, "Subject: x\n\n{cod}\n", "t")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("{cod}"), "{e}");
        assert!(parse_template(Template::Code, "no subject\n\nbody", "t").is_err());
        for notice in [Template::AccessCodeNotice, Template::TwoFactorEnabled] {
            assert!(
                parse_template(notice, "Subject: x\n\n{code}\n", "t").is_err(),
                "a notice never holds a code"
            );
        }
        Ok(())
    }
}
