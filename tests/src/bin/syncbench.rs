//! Directory sync benchmark: a full sync of N users from a real Samba AD DC, against an `ldapsearch`
//! paged dump of the same attributes from the same server in the same run; then an incremental sync of
//! 100 changes; and the daemon's resident memory after the sync.
//!
//!     cargo build --release --workspace --bins
//!     target/release/twofold-syncbench --users 100000
//!
//! It binds the standard LDAP ports on 127.0.0.1: do not run it while the tests run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use twofold_tests::samba::{SambaDc, BASE_DN};
use twofold_tests::Daemon;
use twofold_wire::admin::{AdminReply, AdminRequest, SyncStatus};

#[derive(Parser)]
struct Args {
    /// Users seeded in OU=Bulk.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Users changed for the incremental sync.
    #[arg(long, default_value_t = 100)]
    changes: usize,
}

const ATTRIBUTES: &[&str] = &[
    "objectGUID",
    "sAMAccountName",
    "userPrincipalName",
    "displayName",
    "mail",
    "mobile",
    "telephoneNumber",
    "memberOf",
    "userAccountControl",
];

fn ldapsearch_dump(dc: &SambaDc, base: &str) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let out = dc
        .ldap_tool("ldapsearch")
        .args(["-E", "pr=1000/noprompt", "-b", base, "-LLL", "(&(objectCategory=person)(objectClass=user))"])
        .args(ATTRIBUTES)
        .stderr(Stdio::inherit())
        .output()
        .context("ldapsearch")?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("ldapsearch failed");
    }
    let entries = out.stdout.windows(4).filter(|w| w == b"dn: ").count();
    Ok((elapsed, entries))
}

fn status(daemon: &Daemon) -> Result<SyncStatus> {
    match daemon.admin()?.ok(&AdminRequest::DirectoryStatus)? {
        AdminReply::DirectoryStatus { mut domains } if !domains.is_empty() => Ok(domains.remove(0)),
        other => bail!("unexpected {other:?}"),
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seeding = Instant::now();
    let dc = SambaDc::provision_and_start(args.users)?;
    println!("seeded {} users and started the DC in {:.1} s", args.users, seeding.elapsed().as_secs_f64());
    let base = format!("OU=Bulk,{BASE_DN}");

    let (dump_before, dumped) = ldapsearch_dump(&dc, &base)?;
    println!("ldapsearch paged dump: {dumped} entries in {:.2} s", dump_before.as_secs_f64());

    // The daemon's first sync (at start) is the full sync measured.
    let daemon = Daemon::start(&dc.directory_config("corp", "ldaps://127.0.0.1:636", &base, "page_size = 1000"))?;
    let pid = daemon.pid().context("daemon pid")?;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let full = loop {
        let s = status(&daemon)?;
        if s.last_run.is_some() && s.duration_ms > 0 {
            break s;
        }
        if Instant::now() > deadline {
            bail!("no sync finished within an hour");
        }
        std::thread::park_timeout(Duration::from_millis(250));
    };
    if !full.ok || full.added as usize != args.users {
        bail!("full sync did not add every user: {full:?}");
    }
    let rss_after_full = rss_kib(pid)?;
    let (dump_after, _) = ldapsearch_dump(&dc, &base)?;
    println!("ldapsearch paged dump again: {:.2} s", dump_after.as_secs_f64());

    let mut ldif = String::new();
    for i in 1..=args.changes {
        let name = format!("bulk{:05}", i * (args.users / args.changes.max(1)).max(1));
        ldif.push_str(&format!("dn: CN={name},{base}\nchangetype: modify\nreplace: mail\nmail: changed.{name}@corp.example.test\n\n"));
    }
    dc.modify(&ldif)?;
    let mut admin = daemon.admin()?;
    let incremental = match admin.ok(&AdminRequest::DirectorySync { domain: None, full: false })? {
        AdminReply::DirectoryStatus { mut domains } if !domains.is_empty() => domains.remove(0),
        other => bail!("unexpected {other:?}"),
    };
    if !incremental.ok || incremental.changed as usize != args.changes || incremental.mode != "incremental" {
        bail!("incremental sync: {incremental:?}");
    }
    let rss_end = rss_kib(pid)?;

    let dump = dump_before.min(dump_after).as_secs_f64();
    let sync = full.duration_ms as f64 / 1000.0;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| users | {} |", args.users);
    println!("| ldapsearch paged dump (best of 2) | {dump:.2} s |");
    println!("| full sync (pages {}, entries {}) | {sync:.2} s |", full.pages, full.entries);
    println!("| full sync / dump | {:.2}x |", sync / dump);
    println!("| incremental sync of {} changes | {} ms |", args.changes, incremental.duration_ms);
    println!("| daemon RSS after full sync | {:.1} MiB |", rss_after_full as f64 / 1024.0);
    println!("| daemon RSS after incremental | {:.1} MiB |", rss_end as f64 / 1024.0);
    Ok(())
}
