//! Human-readable output of admin replies.

use std::fmt::Write;

use twofold_wire::admin::{AdminReply, PolicyOverview, UserView};
use twofold_wire::policy::{PolicyOrigin, PolicySource};
use twofold_wire::text::escape_hazards;
use twofold_wire::DeviceInfo;

fn time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Where the live policies came from, in one line.
fn origin_line(o: &PolicyOrigin) -> String {
    let how = match o.source {
        PolicySource::ConfigFile if o.changed_by == "daemon" => {
            "copied from the configuration file at the first start"
        }
        PolicySource::ConfigFile => "reset to the configuration file",
        PolicySource::Admin => "edited",
    };
    format!(
        "live policies: {how} by {} at {} (revision {})",
        o.changed_by,
        time(o.changed_at),
        o.revision
    )
}

/// Every setting, named as `policy set` takes it; group entries in priority order.
fn policies(out: &mut String, p: &PolicyOverview) {
    out.push_str("defaults [policy]\n");
    for (key, value) in p.default_settings() {
        let _ = writeln!(out, "  {key:<29}{value}");
    }
    if p.groups.is_empty() {
        out.push_str("no group entries: the defaults apply to everyone\n");
    }
    for (n, g) in p.groups.iter().enumerate() {
        let _ = writeln!(out, "group {} ({})", g.group, n + 1);
        let set: Vec<(&str, String)> = g
            .settings()
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
        if set.is_empty() {
            out.push_str("  (no settings)\n");
        }
        for (key, value) in set {
            let _ = writeln!(out, "  {key:<29}{value}");
        }
    }
    if !p.groups.is_empty() {
        out.push_str("per setting, the first group entry that sets it wins; else the default\n");
    }
    if let Some(o) = &p.origin {
        let _ = writeln!(out, "{}", origin_line(o));
    }
    if p.config_differs {
        out.push_str("the configuration file's policy sections differ from these; `twofold-admin policy reset-to-config` applies them\n");
    }
}

fn devices(out: &mut String, devices: &[DeviceInfo]) {
    if devices.is_empty() {
        out.push_str("  (no devices)\n");
    }
    for d in devices {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {:<20}  created {}  last used {}  added {}",
            d.id,
            spelled(&d.kind),
            spelled(&d.status),
            d.label,
            time(d.created),
            d.last_used.map_or_else(|| "never".to_owned(), time),
            spelled(&d.origin)
        );
    }
}

fn user(out: &mut String, u: &UserView) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(out, "user {} ({})", u.username, u.id);
    let _ = writeln!(out, "  upn:          {}", opt(&u.upn));
    let _ = writeln!(out, "  display name: {}", opt(&u.display_name));
    let _ = writeln!(out, "  email:        {}", opt(&u.email));
    let overridden = |o: &Option<String>| {
        o.as_ref()
            .map(|v| format!("   override: {v} (used)"))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "  mobile:       {}{}{}",
        opt(&u.mobile),
        overridden(&u.mobile_override),
        dialled(&u.mobile_dialled)
    );
    let _ = writeln!(
        out,
        "  voice:        {}{}{}",
        opt(&u.voice),
        overridden(&u.voice_override),
        dialled(&u.voice_dialled)
    );
    let _ = writeln!(
        out,
        "  groups:       {}",
        if u.groups.is_empty() {
            "-".to_owned()
        } else {
            u.groups.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  enabled:      {}   source: {}   2FA: {}",
        u.enabled,
        u.source,
        spelled(&u.state)
    );
    if let Some(d) = &u.directory {
        let state = match (d.removed_at, d.account_disabled) {
            (Some(t), _) => format!("REMOVED {}", time(t)),
            (None, true) => "DISABLED in the directory".to_owned(),
            (None, false) => "active".to_owned(),
        };
        let _ = writeln!(
            out,
            "  directory:    {} {}   guid {}   {state}",
            d.domain, d.dn, d.guid
        );
        if let Some(t) = d.expires {
            let _ = writeln!(out, "  AD expiry:    {}", time(t));
        }
        match (d.locked_out, d.locked_until) {
            (true, Some(until)) => {
                let _ = writeln!(
                    out,
                    "  AD lockout:   locked out in AD at the last sync, until {}",
                    time(until)
                );
            }
            (true, None) => {
                let _ = writeln!(
                    out,
                    "  AD lockout:   locked out in AD at the last sync, until an admin unlocks it"
                );
            }
            (false, _) => {}
        }
    }
    if let Some(why) = &u.cannot_sign_in {
        let _ = writeln!(out, "  sign-in:      REFUSED: {why}");
    }
    if let Some(p) = &u.policy {
        let from = if p.from_groups.is_empty() {
            "defaults".to_owned()
        } else {
            p.from_groups.join(", ")
        };
        let _ = writeln!(
            out,
            "  policy:       2FA {}   channels {}   restore {}   (from {from})",
            spelled(&p.two_factor),
            spelled(&p.channels),
            spelled(&p.restore)
        );
    }
    let _ = writeln!(
        out,
        "  failures:     {}{}",
        u.failures,
        if u.locked { "   LOCKED" } else { "" }
    );
    let _ = writeln!(out, "  backup codes: {} left", u.backup_codes_remaining);
    if let Some(r) = &u.restore {
        let _ = writeln!(out, "  restore:      {}", restore_line(r));
    }
    let _ = writeln!(out, "  devices:");
    devices(out, &u.devices);
}

/// `   (dialled +41791234567)`, or why the number cannot be dialled.
fn dialled(number: &Option<twofold_wire::admin::DialledNumber>) -> String {
    number
        .as_ref()
        .map_or_else(String::new, |n| format!("   ({})", n.describe()))
}

/// `activated 2026-...; 1 of 3 restores used in 30 days` and the like.
fn restore_line(r: &twofold_wire::restore::RestoreState) -> String {
    let mut line = match r.activated_at {
        Some(t) if r.activated => format!("activated {}", time(t)),
        _ => "not activated".to_owned(),
    };
    if !r.allowed {
        line.push_str("; self-service restore prohibited (admins restore)");
    }
    if r.limit == 0 {
        let _ = write!(
            line,
            "; {} restores in {} days, no limit",
            r.restores_in_period, r.period_days
        );
    } else {
        let _ = write!(
            line,
            "; {} of {} restores used in {} days",
            r.restores_in_period, r.limit, r.period_days
        );
    }
    if let Some(t) = r.last_restore {
        let _ = write!(line, "; last {}", time(t));
    }
    if let Some(t) = r.next_restore_at {
        let _ = write!(line, "; LIMIT REACHED until {}", time(t));
    }
    line
}

pub fn text(reply: &AdminReply) -> String {
    let mut out = String::new();
    match reply {
        AdminReply::Status(s) => {
            let _ = writeln!(
                out,
                "twofoldd {}  users {}  api https://{}  schema {}",
                s.version, s.users, s.api_listen, s.schema_version
            );
            if let Some(log) = &s.audit_log {
                let _ = writeln!(
                    out,
                    "audit log {:.1} MiB in {} {}, oldest event {}, kept {} days",
                    log.bytes as f64 / (1024.0 * 1024.0),
                    log.segments,
                    if log.segments == 1 { "file" } else { "files" },
                    log.oldest_event.map_or_else(|| "none".to_owned(), time),
                    log.retention_days
                );
            }
        }
        AdminReply::User(u) => user(&mut out, u),
        AdminReply::Users { users } => {
            let _ = writeln!(out, "{:<24} {:<30} {:<8} 2FA", "USER", "NAME", "ACCOUNT");
            for u in users {
                let _ = writeln!(
                    out,
                    "{:<24} {:<30} {:<8} {}",
                    u.username,
                    u.display_name.clone().unwrap_or_default(),
                    if u.enabled { "enabled" } else { "disabled" },
                    spelled(&u.state)
                );
            }
        }
        AdminReply::Devices { devices: list } => devices(&mut out, list),
        AdminReply::Device(d) => devices(&mut out, std::slice::from_ref(d)),
        AdminReply::Enrollment(e) => {
            let _ = writeln!(out, "device:  {}", e.device.id);
            let _ = writeln!(out, "secret:  {}", e.secret);
            let _ = writeln!(out, "uri:     {}", e.otpauth_uri);
            let _ = writeln!(out, "Scan the URI's QR code (--qr-png FILE) or type the secret, then confirm with the first code.");
        }
        AdminReply::Confirmed(c) => {
            let _ = writeln!(out, "device {} is active", c.device.id);
            if let Some(codes) = &c.backup_codes {
                let _ = writeln!(out, "backup codes (shown once, each works once):");
                for code in codes {
                    let _ = writeln!(out, "  {code}");
                }
            }
        }
        AdminReply::ApiKeyCreated { name, key } => {
            let _ = writeln!(out, "API key for {name} (shown once):\n{key}");
        }
        AdminReply::ApiKeys { keys } => {
            for k in keys {
                let scopes: Vec<&str> = k.access.scopes.iter().map(|s| s.name()).collect();
                let _ = writeln!(
                    out,
                    "{:<24} created {}  scopes {}{}{}",
                    k.name,
                    time(k.created),
                    scopes.join(","),
                    if k.access.trusted_proxy {
                        "  trusted proxy"
                    } else {
                        ""
                    },
                    if k.unscoped {
                        "  (made before scopes: narrow it with `apikey set`)"
                    } else {
                        ""
                    }
                );
            }
        }
        AdminReply::Audit { events } => {
            for e in events {
                let _ = writeln!(
                    out,
                    "{} {:<18} {:<22} {:<16} {:<10} {}",
                    time(e.time),
                    e.actor,
                    e.action,
                    e.user.clone().unwrap_or_else(|| "-".to_owned()),
                    e.outcome,
                    e.detail.clone().unwrap_or_default()
                );
            }
        }
        AdminReply::Done { message } => {
            let _ = writeln!(out, "{message}");
        }
        AdminReply::Policies(p) => policies(&mut out, p),
        AdminReply::PolicyChanged { changes, policies } => {
            if changes.is_empty() {
                out.push_str("nothing changed: the policies already say so\n");
            }
            for change in changes {
                let _ = writeln!(out, "changed {change}");
            }
            if let Some(line) = policies.origin.as_ref().map(origin_line) {
                let _ = writeln!(out, "{line}");
            }
        }
        AdminReply::Handovers { entries } => {
            if entries.is_empty() {
                out.push_str("nobody is waiting for a code\n");
            }
            for e in entries {
                let _ = writeln!(
                    out,
                    "{}  {:<16} {:<10} asked {}  expires {}  check: {}",
                    e.id,
                    e.user,
                    e.code,
                    time(e.created),
                    time(e.expires_at),
                    escape_hazards(&e.note)
                );
            }
        }
        AdminReply::Plugins { plugins } => {
            for p in plugins {
                let error = escape_hazards(p.error.as_deref().unwrap_or_default());
                let state = match (p.loaded, p.error.is_some()) {
                    (true, false) => "loaded".to_owned(),
                    (true, true) => format!("loaded, LAST RELOAD FAILED: {error}"),
                    (false, _) => format!("NOT LOADED: {error}"),
                };
                let version = match (&p.sha256, p.loaded_at) {
                    (Some(sha), Some(at)) => {
                        format!(
                            ", sha256 {}, loaded {}",
                            &sha[..sha.len().min(12)],
                            time(at)
                        )
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{:<16} {state}  ({} ms{}{version})",
                    p.name,
                    p.load_ms,
                    if p.from_cache { ", cached" } else { "" }
                );
            }
        }
        AdminReply::PluginTested(t) => {
            let _ = writeln!(
                out,
                "plugin {} to {}: delivered in {} ms, gateway reference {}",
                t.plugin,
                t.to,
                t.duration_ms,
                escape_hazards(&t.detail)
            );
        }
        AdminReply::PluginChecked(c) => {
            let _ = writeln!(
                out,
                "{}: loads, built for {}, sha256 {}",
                c.file, c.interface, c.sha256
            );
            let _ = writeln!(out, "imports: {}", c.imports.join(", "));
        }
        AdminReply::Deliveries { deliveries } => {
            // One row per delivery, then every attempt indented under it: a 429 before the delivery
            // that worked is what an admin looks for.
            for d in deliveries {
                let _ = writeln!(
                    out,
                    "{} {:<16} {:<9} {:<20} {}",
                    time(d.created),
                    d.user,
                    spelled(&d.channel),
                    d.destination,
                    spelled(&d.state)
                );
                // Every attempt when there were several: the 429 before a delivery is what an admin
                // looking into a slow code needs to see.
                if d.attempts.len() > 1 {
                    for a in &d.attempts {
                        let _ = writeln!(
                            out,
                            "    {} {} {} ({} ms): {}",
                            time(a.at),
                            a.via,
                            a.outcome,
                            a.duration_ms,
                            escape_hazards(&a.detail)
                        );
                    }
                }
            }
        }
        AdminReply::RestoreState { user, state } => {
            let _ = writeln!(out, "restore for {user}: {}", restore_line(state));
            let _ = writeln!(out, "  logins counted: {}", state.logins);
        }
        AdminReply::RestoreCodeSent(r) => {
            let _ = writeln!(
                out,
                "a new restore code for {} went by {} to {}; the old one no longer works",
                r.user,
                spelled(&r.channel),
                r.destination
            );
        }
        AdminReply::Restored(r) => {
            let _ = writeln!(out, "{} restored onto device {}", r.user, r.device.id);
            if !r.removed_devices.is_empty() {
                let _ = writeln!(out, "removed devices:");
                devices(&mut out, &r.removed_devices);
            }
            match &r.restore_code.restore_code {
                Some(code) => {
                    let _ = writeln!(
                        out,
                        "new restore code (shown once, give it to the user):\n{code}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "new restore code sent by {} to {}",
                        spelled(&r.restore_code.delivery),
                        r.restore_code.destination.clone().unwrap_or_default()
                    );
                }
            }
        }
        AdminReply::AccessCode(a) => {
            let _ = writeln!(
                out,
                "access code for {} (shown once, valid once until {}):\n{}",
                a.user,
                time(a.expires_at),
                a.code
            );
        }
        AdminReply::Identity(i) => {
            let name = i.name.clone().unwrap_or_else(|| "-".to_owned());
            let _ = write!(
                out,
                "uid {} ({name})  role {}  granted by {}",
                i.uid,
                i.role.name(),
                i.granted_by
            );
            match &i.directory_user {
                Some(user) => {
                    let _ = writeln!(out, " to AD user {user}");
                }
                None => {
                    let _ = writeln!(out);
                }
            }
        }
        AdminReply::Dashboard(d) => {
            let share = if d.users == 0 {
                0.0
            } else {
                d.enrolled as f64 * 100.0 / d.users as f64
            };
            let _ = writeln!(
                out,
                "users {}  enrolled {} ({share:.1}%)  must enroll {}  locked {}  disabled {}",
                d.users, d.enrolled, d.enrollment_required, d.locked, d.disabled
            );
            let _ = writeln!(
                out,
                "devices active {}  blocked {}  pending {}  API keys {}",
                d.devices_active, d.devices_blocked, d.devices_pending, d.api_keys
            );
            out.push_str(&text(&AdminReply::Audit {
                events: d.recent.clone(),
            }));
        }
        AdminReply::UserIndex { users } => {
            let _ = writeln!(out, "{:<24} {:<30} {:<8} 2FA", "USER", "NAME", "ACCOUNT");
            for u in users {
                let _ = writeln!(
                    out,
                    "{:<24} {:<30} {:<8} {}{}",
                    u.username,
                    u.display_name.clone().unwrap_or_default(),
                    if u.enabled { "enabled" } else { "disabled" },
                    spelled(&u.state),
                    if u.locked { " LOCKED" } else { "" }
                );
            }
        }
        AdminReply::DirectoryStatus { domains } => {
            if domains.is_empty() {
                out.push_str("no [[directory]] configured\n");
            }
            for s in domains {
                let _ = writeln!(
                    out,
                    "{}  {}  {}  last run {}  last success {}  {} ms  server {}",
                    s.domain,
                    s.mode,
                    if s.ok { "ok" } else { "FAILED" },
                    s.last_run.map_or_else(|| "never".to_owned(), time),
                    s.last_success.map_or_else(|| "never".to_owned(), time),
                    s.duration_ms,
                    s.server.clone().unwrap_or_else(|| "-".to_owned())
                );
                let _ = writeln!(
                    out,
                    "  entries {}  pages {}  added {}  changed {}  disabled {}  removed {}  purged {}  failed {}",
                    s.entries, s.pages, s.added, s.changed, s.disabled, s.removed, s.purged, s.failed
                );
                for e in &s.errors {
                    let _ = writeln!(out, "  error: {e}");
                }
            }
        }
        AdminReply::SystemTwoFactor(s) => {
            let _ = writeln!(
                out,
                "system-wide 2FA {}  (epoch {})  last switched {} by {}",
                if s.on {
                    "ON: every user must have enrolled since it was switched on"
                } else {
                    "off: the policies apply"
                },
                s.epoch,
                s.changed_at.map_or_else(|| "never".to_owned(), time),
                s.changed_by.clone().unwrap_or_else(|| "-".to_owned())
            );
            let _ = writeln!(
                out,
                "users who must enroll: {} of {}",
                s.enrollment_required, s.users
            );
        }
        // Replies that features add to the wire crate print as JSON until they get a text form here.
        #[allow(unreachable_patterns)]
        other => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(other).unwrap_or_default()
            );
        }
    }
    out
}

/// A policy value as the configuration spells it (`required`, `[totp,sms]`).
fn spelled<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .map(|s| s.replace('"', ""))
        .unwrap_or_default()
}
