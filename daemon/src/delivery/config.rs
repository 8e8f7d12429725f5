//! The configuration of the challenge flow and of code delivery: `[challenge]`, `[delivery]`, `[email]`
//! and one `[[plugin]]` table per delivery plugin. `[delivery]` and `[[plugin]]` are applied live on
//! reload (SIGHUP); the rest at the next start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::policy::Channel;

/// `[challenge]`: codes sent out of band, and admin-generated access codes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeConfig {
    /// Digits of a code sent by SMS, voice, email or in person.
    #[serde(default = "default_code_digits")]
    pub code_digits: u8,
    /// How long such a code is accepted. NIST SP 800-63B: out-of-band codes should be short-lived
    /// (10 minutes is the usual bound); the signing product's 24 h is possible (86400) but not the default.
    #[serde(default = "default_lifetime")]
    pub lifetime_seconds: u64,
    /// Least time between two challenges for one user: each one costs an SMS or a call, and a flood of
    /// them is a nuisance to the user.
    #[serde(default = "default_min_interval")]
    pub min_interval_seconds: u64,
    /// Whether admins (with the "generate access codes" permission) may generate a single-use access
    /// code for a user, to hand over verbally.
    #[serde(default)]
    pub access_codes: bool,
    #[serde(default = "default_access_code_lifetime")]
    pub access_code_lifetime_seconds: u64,
}

fn default_code_digits() -> u8 {
    6
}
fn default_lifetime() -> u64 {
    300
}
fn default_min_interval() -> u64 {
    30
}
fn default_access_code_lifetime() -> u64 {
    900
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig {
            code_digits: default_code_digits(),
            lifetime_seconds: default_lifetime(),
            min_interval_seconds: default_min_interval(),
            access_codes: false,
            access_code_lifetime_seconds: default_access_code_lifetime(),
        }
    }
}

/// `[delivery]`: where plugins come from, which plugins serve each channel, retries and sandbox limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Folders searched for a plugin's `file`, in order; the last folder holding it wins, so a plugin in
    /// /etc/twofold/plugins replaces the packaged one of the same name.
    #[serde(default = "default_plugin_dirs")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugins (by `[[plugin]]` name) that deliver each channel: the first, then the next as fallback.
    #[serde(default)]
    pub sms: Vec<String>,
    #[serde(default)]
    pub voice: Vec<String>,
    #[serde(default)]
    pub in_person: Vec<String>,
    /// Rounds over a channel's plugins before a delivery is given up (and never past the code's expiry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second round; it doubles each round up to `retry_max_seconds`. A plugin's
    /// `retry-later` may ask for its own delay (a gateway's `Retry-After`), honoured up to
    /// `retry_max_seconds`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_seconds: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// Memory one plugin instance may grow to.
    #[serde(default = "default_memory_mib")]
    pub plugin_memory_mib: u32,
    /// CPU time one call into a plugin may take: its thread's CPU, not counting the host's own HTTP
    /// requests (`plugins::budget`).
    #[serde(default = "default_cpu_ms")]
    pub plugin_cpu_ms: u64,
    /// Deliveries running at once, over all plugins; the instance pool is sized for it. Each plugin
    /// has its own share too (`[[plugin]] concurrency`), so one channel's outage never takes them all.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// How long one delivery by a plugin may wait for a free slot, and then how long the call may take
    /// with its HTTP requests: a gateway that never answers holds a slot this long at most.
    #[serde(default = "default_plugin_deadline")]
    pub plugin_deadline_seconds: u64,
    /// Timeout of each HTTP request a plugin makes (connect, TLS, answer).
    #[serde(default = "default_http_timeout")]
    pub http_timeout_seconds: u64,
    /// HTTP requests one call into a plugin may make.
    #[serde(default = "default_http_requests")]
    pub http_requests_per_call: u32,
}

fn default_plugin_dirs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/usr/lib/twofold/plugins"),
        PathBuf::from("/etc/twofold/plugins"),
    ]
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_initial() -> u64 {
    2
}
fn default_retry_max() -> u64 {
    60
}
fn default_memory_mib() -> u32 {
    16
}
fn default_cpu_ms() -> u64 {
    1000
}
fn default_concurrency() -> u32 {
    32
}
fn default_plugin_deadline() -> u64 {
    15
}
fn default_plugin_concurrency() -> u32 {
    4
}
fn default_http_timeout() -> u64 {
    10
}
fn default_http_requests() -> u32 {
    4
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            plugin_dirs: default_plugin_dirs(),
            sms: Vec::new(),
            voice: Vec::new(),
            in_person: Vec::new(),
            max_attempts: default_max_attempts(),
            retry_initial_seconds: default_retry_initial(),
            retry_max_seconds: default_retry_max(),
            plugin_memory_mib: default_memory_mib(),
            plugin_cpu_ms: default_cpu_ms(),
            concurrency: default_concurrency(),
            plugin_deadline_seconds: default_plugin_deadline(),
            http_timeout_seconds: default_http_timeout(),
            http_requests_per_call: default_http_requests(),
        }
    }
}

impl DeliveryConfig {
    /// The plugins configured for a channel, in order.
    pub fn route(&self, channel: Channel) -> &[String] {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Voice => &self.voice,
            Channel::InPerson => &self.in_person,
            Channel::Email | Channel::Totp => &[],
        }
    }
}

/// `[[plugin]]`: one delivery plugin and the capabilities it is granted. Nothing is granted by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The name routes in `[delivery]` use, and logs and status show.
    pub name: String,
    /// The component: a file name looked up in `[delivery] plugin_dirs`, or an absolute path.
    pub file: PathBuf,
    /// Hosts the plugin may send HTTP requests to: `host` (port 443) or `host:port`.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// PEM file of the CA(s) the plugin's HTTPS servers are checked against, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allows plain `http://` to allow-listed hosts that are loopback addresses (a local relay or a test
    /// stand-in); plain HTTP to any other host is refused whatever this says.
    #[serde(default)]
    pub allow_plain_http_loopback: bool,
    /// May put codes into the in-person handover queue.
    #[serde(default)]
    pub handover: bool,
    /// Deliveries this plugin runs at once; more wait (at most `plugin_deadline_seconds`), so a
    /// gateway that hangs holds only these slots and the other plugins keep theirs.
    #[serde(default = "default_plugin_concurrency")]
    pub concurrency: u32,
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the plugin reads with `secret(name)`: name = path of a file holding it (mode 0600).
    #[serde(default)]
    pub secrets: BTreeMap<String, PathBuf>,
}

/// `[email]`: the built-in email channel over SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server (the relay that accepts the organisation's mail).
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (port 587 by default), `tls` (implicit TLS, 465) or `none` (25; loopback relays only).
    #[serde(default = "default_email_security")]
    pub security: EmailSecurity,
    /// PEM file of the CA(s) the server's certificate is checked against, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user, with `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `Twofold <twofold@corp.example>`.
    pub from: String,
    /// Folder of templates admins may edit (`code.txt`, `access-code-notice.txt`); a template missing
    /// there is the built-in one.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    #[serde(default = "default_email_timeout")]
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailSecurity {
    Starttls,
    Tls,
    None,
}

fn default_email_security() -> EmailSecurity {
    EmailSecurity::Starttls
}
fn default_email_timeout() -> u64 {
    30
}

/// Checks the rules the types cannot express; each error carries the line of its table or key.
pub fn validate(config: &crate::config::Config, text: &str, errors: &mut Vec<ConfigError>) {
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map_or(1, |n| n + 1)
    };
    let mut fail = |needle: &str, message: String| {
        errors.push(ConfigError {
            line: line_of(needle),
            message,
        })
    };
    let c = &config.challenge;
    if !(6..=10).contains(&c.code_digits) {
        fail(
            "code_digits",
            "[challenge] code_digits must be between 6 and 10".into(),
        );
    }
    if !(30..=7 * 86_400).contains(&c.lifetime_seconds) {
        fail(
            "lifetime_seconds",
            "[challenge] lifetime_seconds must be between 30 and 604800".into(),
        );
    }
    if !(60..=86_400).contains(&c.access_code_lifetime_seconds) {
        fail(
            "access_code_lifetime_seconds",
            "[challenge] access_code_lifetime_seconds must be between 60 and 86400".into(),
        );
    }
    let d = &config.delivery;
    if !(1..=20).contains(&d.max_attempts) {
        fail(
            "max_attempts",
            "[delivery] max_attempts must be between 1 and 20".into(),
        );
    }
    if d.retry_initial_seconds == 0 || d.retry_initial_seconds > d.retry_max_seconds {
        fail(
            "retry_initial_seconds",
            "[delivery] retry_initial_seconds must be at least 1 and at most retry_max_seconds"
                .into(),
        );
    }
    if !(1..=1024).contains(&d.plugin_memory_mib) {
        fail(
            "plugin_memory_mib",
            "[delivery] plugin_memory_mib must be between 1 and 1024".into(),
        );
    }
    if !(10..=60_000).contains(&d.plugin_cpu_ms) {
        fail(
            "plugin_cpu_ms",
            "[delivery] plugin_cpu_ms must be between 10 and 60000".into(),
        );
    }
    if !(1..=1000).contains(&d.concurrency) {
        fail(
            "concurrency",
            "[delivery] concurrency must be between 1 and 1000".into(),
        );
    }
    if !(1..=300).contains(&d.plugin_deadline_seconds) {
        fail(
            "plugin_deadline_seconds",
            "[delivery] plugin_deadline_seconds must be between 1 and 300".into(),
        );
    }
    if !(1..=120).contains(&d.http_timeout_seconds) {
        fail(
            "http_timeout_seconds",
            "[delivery] http_timeout_seconds must be between 1 and 120".into(),
        );
    }
    if !(1..=32).contains(&d.http_requests_per_call) {
        fail(
            "http_requests_per_call",
            "[delivery] http_requests_per_call must be between 1 and 32".into(),
        );
    }
    let mut names = std::collections::HashSet::new();
    for p in &config.plugin {
        let at = format!("name = \"{}\"", p.name);
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            fail(
                &at,
                format!(
                    "[[plugin]] {:?}: name must be letters, digits, - or _",
                    p.name
                ),
            );
        }
        if !names.insert(p.name.as_str()) {
            fail(
                &at,
                format!(
                    "[[plugin]] {}: a plugin with this name is configured twice",
                    p.name
                ),
            );
        }
        if p.file.as_os_str().is_empty()
            || (!p.file.is_absolute() && p.file.components().count() != 1)
        {
            fail(&at, format!("[[plugin]] {}: file must be a file name (looked up in plugin_dirs) or an absolute path", p.name));
        }
        if !(1..=1000).contains(&p.concurrency) {
            fail(
                &at,
                format!(
                    "[[plugin]] {}: concurrency must be between 1 and 1000",
                    p.name
                ),
            );
        }
        for host in &p.allow_hosts {
            if let Err(e) = crate::plugins::capabilities::AllowedHost::parse(host) {
                fail(
                    &at,
                    format!("[[plugin]] {}: allow_hosts {host:?}: {e}", p.name),
                );
            }
        }
    }
    for (key, channel) in [
        ("sms", Channel::Sms),
        ("voice", Channel::Voice),
        ("in_person", Channel::InPerson),
    ] {
        for name in d.route(channel) {
            if !config.plugin.iter().any(|p| &p.name == name) {
                fail(
                    &format!("{key} ="),
                    format!("[delivery] {key}: no [[plugin]] is named {name:?}"),
                );
            }
        }
    }
    if let Some(e) = &config.email {
        if e.host.trim().is_empty() {
            fail("host", "[email] host must name the SMTP server".into());
        }
        if e.username.is_some() != e.password_file.is_some() {
            fail(
                "username",
                "[email] username and password_file must be given together".into(),
            );
        }
        let loopback = e.host == "localhost"
            || e.host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if e.security == EmailSecurity::None && (e.username.is_some() || !loopback) {
            fail("security", "[email] security = \"none\" sends codes (and any password) in clear: only for a relay on this machine without a password; use starttls or tls".into());
        }
        if let Some(dir) = &e.templates_dir {
            if let Err(err) = crate::email::check_templates(dir) {
                fail(
                    "templates_dir",
                    format!(
                        "[email] templates_dir: {}",
                        err.to_string().trim_start_matches("configuration: ")
                    ),
                );
            }
        }
        if e.from.parse::<lettre::message::Mailbox>().is_err() {
            fail("from", format!("[email] from {:?} is not an address such as \"Twofold <twofold@corp.example>\"", e.from));
        }
    }
}

/// What `twofoldd check-config` checks beyond the file's own rules, against the machine it runs on:
/// each plugin's `.wasm` is found, its secret files can be read, every `allow_hosts` entry names its
/// port, its `url` (in `[plugin.config]`) is HTTPS (plain HTTP only to loopback with
/// `allow_plain_http_loopback`) to a host in `allow_hosts`, and every `{secret:NAME}` its config
/// values use is a secret it is given. The daemon itself only reports these when it loads the plugin.
pub fn check_plugins(config: &crate::config::Config, text: &str) -> Vec<ConfigError> {
    use crate::plugins::capabilities::AllowedHost;
    let mut errors = Vec::new();
    for p in &config.plugin {
        let name_line = text
            .lines()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with("name") && l.contains(&format!("\"{}\"", p.name))
            })
            .map_or(1, |n| n + 1);
        // The line of `key` in this plugin's tables: the first after its name that starts with it.
        let line_of = |key: &str| {
            text.lines()
                .enumerate()
                .skip(name_line)
                .take_while(|(_, l)| !l.trim_start().starts_with("[[plugin]]"))
                .find(|(_, l)| l.trim_start().starts_with(key))
                .map_or(name_line, |(n, _)| n + 1)
        };
        let mut fail = |line: usize, message: String| {
            errors.push(ConfigError {
                line,
                message: format!("[[plugin]] {}: {message}", p.name),
            })
        };
        if crate::plugins::locate(&p.file, &config.delivery.plugin_dirs).is_none() {
            fail(
                line_of("file"),
                format!(
                    "file {} is not in any of the plugin folders {:?} ([delivery] plugin_dirs)",
                    p.file.display(),
                    config.delivery.plugin_dirs
                ),
            );
        }
        for (secret, path) in &p.secrets {
            if let Err(e) = std::fs::File::open(path) {
                fail(
                    line_of(secret),
                    format!("secrets.{secret}: {}: {e}", path.display()),
                );
            }
        }
        for host in &p.allow_hosts {
            // An entry that does not parse is validate()'s to report.
            if AllowedHost::parse(host).is_ok_and(|a| a.parts().1.is_none()) {
                fail(
                    line_of("allow_hosts"),
                    format!("allow_hosts {host:?} names no port: write {host}:443 (or the gateway's port)"),
                );
            }
        }
        if let Some(url) = p.config.get("url") {
            if let Some(refusal) = url_refusal(url, &p.allow_hosts, p.allow_plain_http_loopback) {
                fail(line_of("url"), format!("config.url: {refusal}"));
            }
        }
        for (key, value) in &p.config {
            for used in value.split("{secret:").skip(1) {
                let secret = used.split('}').next().unwrap_or_default();
                if !p.secrets.contains_key(secret) {
                    fail(
                        line_of(key),
                        format!(
                            "config.{key} uses {{secret:{secret}}}, but [plugin.secrets] names no secret {secret:?}{}",
                            if p.secrets.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " (it names {})",
                                    p.secrets.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            }
                        ),
                    );
                }
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    errors
}

/// Why a plugin's configured URL cannot be fetched, if it cannot: the host's own rule, applied to
/// the URL's scheme, host and port (its path and query may hold `{placeholders}`).
fn url_refusal(url: &str, allow_hosts: &[String], plain_loopback: bool) -> Option<String> {
    use crate::plugins::capabilities::AllowedHost;
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return Some(format!("{url:?} is not an https:// URL")),
    };
    let authority = rest.split(['/', '?', '#', '{']).next().unwrap_or_default();
    let parsed = AllowedHost::parse(authority).ok()?;
    let (host, port) = parsed.parts();
    let port = port.unwrap_or(default_port);
    let permitted = allow_hosts
        .iter()
        .filter_map(|h| AllowedHost::parse(h).ok())
        .any(|a| a.permits(host, port, default_port));
    if !permitted {
        return Some(format!(
            "host {host}:{port} is not in allow_hosts {allow_hosts:?}"
        ));
    }
    if scheme == "http" {
        let loopback = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if !(plain_loopback && loopback) {
            return Some(format!(
                "plain http:// to {host} is refused: use https://, or for a relay on this machine (a loopback address) set allow_plain_http_loopback"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// (config after `version = 1`, line of the error, words in its message)
    #[test]
    fn mistakes_are_refused_with_their_line() {
        let table: &[(&str, usize, &str)] = &[
            ("[challenge]\ncode_digits = 4\n", 3, "code_digits"),
            ("[challenge]\nlifetime_seconds = 10\n", 3, "lifetime_seconds"),
            ("[delivery]\nsms = [\"nope\"]\n", 3, "no [[plugin]] is named \"nope\""),
            ("[delivery]\nretry_initial_seconds = 120\n", 3, "retry_initial_seconds"),
            ("[delivery]\nmax_attempts = 2\nplugin_deadline_seconds = 0\n", 4, "plugin_deadline_seconds must be between 1 and 300"),
            ("[delivery]\nplugin_deadline_seconds = 301\n", 3, "plugin_deadline_seconds must be between 1 and 300"),
            ("[[plugin]]\nname = \"gw\"\nfile = \"x.wasm\"\nconcurrency = 0\n", 3, "gw: concurrency must be between 1 and 1000"),
            ("[[plugin]]\nname = \"a b\"\nfile = \"x.wasm\"\n", 3, "letters, digits"),
            ("[[plugin]]\nname = \"gw\"\nfile = \"../x.wasm\"\n", 3, "file must be a file name"),
            ("[[plugin]]\nname = \"gw\"\nfile = \"x.wasm\"\nallow_hosts = [\"https://gw\"]\n", 3, "not a URL"),
            ("[[plugin]]\nname = \"gw\"\nfile = \"x.wasm\"\nsecret = \"inline\"\n", 5, "unknown field"),
            ("[email]\nhost = \"smtp.example.com\"\nfrom = \"me@example.com\"\nsecurity = \"none\"\n", 5, "in clear"),
            ("[email]\nhost = \"smtp.example.com\"\nfrom = \"not an address\"\n", 4, "from"),
            ("[email]\nhost = \"smtp.example.com\"\nfrom = \"me@example.com\"\nusername = \"u\"\n", 5, "together"),
        ];
        for (text, line, words) in table {
            let errors = Config::parse(&format!("version = 1\n{text}"))
                .err()
                .unwrap_or_default();
            assert!(
                errors
                    .iter()
                    .any(|e| e.line == *line && e.message.contains(words)),
                "{text:?}: wanted line {line} with {words:?}, got {errors:?}"
            );
        }
        let ok = "[[plugin]]\nname = \"gw\"\nfile = \"/opt/p/x.wasm\"\nallow_hosts = [\"gw.example.com\", \"127.0.0.1:8080\"]\n[delivery]\nsms = [\"gw\"]\n[email]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"Twofold <t@example.com>\"\n";
        assert!(
            Config::parse(&format!("version = 1\n{ok}")).is_ok(),
            "{:?}",
            Config::parse(&format!("version = 1\n{ok}")).err()
        );
    }
}
