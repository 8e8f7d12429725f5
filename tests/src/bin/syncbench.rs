//! Directory sync benchmark: a full sync of N users from a real Samba AD DC, against an `ldapsearch`
//! paged dump of the same attributes from the same server in the same run; then an incremental sync of
//! 100 changes; and the daemon's resident memory after the sync.
//!
//!     cargo build --release --workspace --bins
//!     target/release/twofold-syncbench --users 100000
//!
//! With `--keep DIR` the seeded directory is kept in DIR and reused by later runs with as many users.
//! Seeding runs alongside other test runs; from the DC's start the standard LDAP ports on 127.0.0.1
//! are locked machine-wide, so tests that need Samba wait until the benchmark ends.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use twofold_tests::samba::{bulk_user_dn, Backend, NestedGroups, SambaDc, BASE_DN};
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
    /// Keep the seeded directory in this folder and reuse it on later runs with the same --users
    /// (seeding 100,000 users takes minutes).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    /// The DC's database: `tdb` (Samba's default) or `mdb` (LMDB, which can answer the incremental
    /// sync's `uSNChanged>=N` from its index). Only with --keep.
    #[arg(long, default_value = "tdb", value_parser = ["tdb", "mdb"])]
    backend_store: String,
    /// Groups seeded under OU=Groups, nested `--depth` deep; every user in one to three leaf groups.
    /// 0: no groups (the benchmark as before nested groups).
    #[arg(long, default_value_t = 10_000)]
    groups: usize,
    /// Levels of nesting: top groups hold mid groups, which hold leaf groups, which hold users.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Seed the --keep directory (if not seeded yet) and stop, without starting the DC: seeding takes
    /// minutes and needs no LDAP port, so it can run while others' tests hold them.
    #[arg(long, requires = "keep")]
    seed_only: bool,
}

/// Top groups whose index is a multiple of this get a `[[policy.group]]` rule (`two_factor =
/// "required"`; the default is optional), so the sync's nesting decides real policies.
const RULED_EVERY: usize = 10;

/// What the sync reads of each group (`read_group_graph`): what it is a member of, and its SID.
const GROUP_ATTRIBUTES: &[&str] = &["memberOf", "objectSid"];

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

/// What the sync reads of each user besides `ATTRIBUTES` (`directory::entry::attributes`): the
/// primary group, expiry and AD lockout. msDS-User-Account-Control-Computed is constructed by the DC
/// for each entry, which costs it more than a stored attribute.
const SYNC_EXTRA_ATTRIBUTES: &[&str] = &[
    "objectSid",
    "primaryGroupID",
    "accountExpires",
    "lockoutTime",
    "msDS-User-Account-Control-Computed",
];

fn ldapsearch_dump(dc: &SambaDc, base: &str) -> Result<(Duration, usize)> {
    ldapsearch_dump_of(dc, base, &[ATTRIBUTES, SYNC_EXTRA_ATTRIBUTES].concat())
}

fn ldapsearch_dump_of(dc: &SambaDc, base: &str, attributes: &[&str]) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let out = dc
        .ldap_tool("ldapsearch")
        .args([
            "-E",
            "pr=1000/noprompt",
            "-b",
            base,
            "-LLL",
            "(&(objectCategory=person)(objectClass=user))",
        ])
        .args(attributes)
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

const USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";

/// The dump the sync is measured against: the users under `base` with the nine attributes, then every
/// group of the domain with what the sync reads of it, both paged, one after the other (as the full
/// sync reads them). Returns the total time and the users and groups dumped.
fn dump(dc: &SambaDc, base: &str) -> Result<(Duration, usize, usize)> {
    let (users_took, users) = ldapsearch_dump(dc, base)?;
    let (groups_took, groups) =
        timed_search(dc, BASE_DN, "(objectClass=group)", GROUP_ATTRIBUTES, false)?;
    println!(
        "  dump: {users} users in {:.2} s, {groups} groups in {:.2} s",
        users_took.as_secs_f64(),
        groups_took.as_secs_f64()
    );
    Ok((users_took + groups_took, users, groups))
}

/// The DC alone: one of the daemon's searches (same base, filter, attributes, controls, paging),
/// timed with `ldapsearch`. Returns the time and the entries found.
fn timed_search(
    dc: &SambaDc,
    base: &str,
    filter: &str,
    attributes: &[&str],
    show_deleted: bool,
) -> Result<(Duration, usize)> {
    let mut command = dc.ldap_tool("ldapsearch");
    command.args(["-E", "pr=1000/noprompt", "-b", base, "-LLL"]);
    if show_deleted {
        command.args(["-E", "!1.2.840.113556.1.4.417"]);
    }
    let started = Instant::now();
    let out = command
        .arg(filter)
        .args(attributes)
        .stderr(Stdio::inherit())
        .output()
        .context("ldapsearch")?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("ldapsearch {filter} failed");
    }
    Ok((
        elapsed,
        out.stdout.windows(4).filter(|w| w == b"dn: ").count(),
    ))
}

/// One DirSync search (control 1.2.840.113556.1.4.841) of `filter` from the naming context, with the
/// cookie of an earlier one (or none); returns the time, the entries and the new cookie.
fn dirsync(dc: &SambaDc, filter: &str, cookie: Option<&str>) -> Result<(Duration, usize, String)> {
    let control = match cookie {
        Some(c) => format!("!dirSync=0/0/{c}"),
        None => "!dirSync=0/0".to_owned(),
    };
    let started = Instant::now();
    let out = dc
        .ldap_tool("ldapsearch")
        .args(["-E", &control, "-b", BASE_DN, "-LL", filter])
        .args(ATTRIBUTES)
        .output()
        .context("ldapsearch")?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "DirSync search failed: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ldapsearch shows the answer's control as comments: `# cookie:: BASE64`.
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("# cookie:: "))
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no DirSync cookie in ldapsearch's answer: {:?}",
                text.lines()
                    .filter(|l| l.starts_with('#'))
                    .collect::<Vec<_>>()
            )
        })?;
    Ok((
        elapsed,
        text.matches("\ndn: ").count() + usize::from(text.starts_with("dn: ")),
        cookie,
    ))
}

/// CPU seconds the DC's processes have used: the samba master (its pid file) and the workers it
/// forked, such as the LDAP server's `ldap(N)` (they retitle themselves, so their command line does
/// not tell).
fn dc_cpu_seconds(dc: &SambaDc) -> Result<f64> {
    let master: u32 = std::fs::read_to_string(dc.dir.join("run/samba.pid"))?
        .trim()
        .parse()
        .context("samba.pid")?;
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent is the second field after the command name (which may hold spaces).
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![master];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    // A process that ends between the two reads is left out.
    Ok(family
        .iter()
        .map(|pid| cpu_seconds(*pid).unwrap_or(0.0))
        .sum())
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("/proc/PID/stat")
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name; 100 ticks a second.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
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

/// Sequential verifications of wrong codes for unknown users (the full path: lookup, check, failure
/// counters, audit, durable commit), until `count` are done or `until` has finished.
async fn probe(
    api: &twofold_tests::Api,
    count: usize,
    until: Option<&std::thread::JoinHandle<Result<SyncStatus>>>,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for i in 0..count {
        if until.is_some_and(|t| t.is_finished()) {
            break;
        }
        let body = serde_json::json!({"user": format!("probe{i}"), "code": "000000", "client_ip": format!("10.9.{}.{}", (i / 250) % 250, i % 250)});
        let started = Instant::now();
        let answer = api.post("/api/v1/verify", &body).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if answer.status != 200 || answer.body["reason"] != "invalid_code" {
            bail!("probe answered {}: {}", answer.status, answer.raw);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seeding = Instant::now();
    let plan = NestedGroups {
        groups: args.groups,
        depth: args.depth,
    };
    if args.groups > 0 && (args.depth == 0 || plan.levels().iter().sum::<usize>() != args.groups) {
        bail!(
            "--groups {} --depth {}: need at least one group per level and ten times as many on each level as above it",
            args.groups,
            args.depth
        );
    }
    let backend = if args.backend_store == "mdb" {
        Backend::Mdb
    } else {
        Backend::Tdb
    };
    if let (true, Some(keep)) = (args.seed_only, &args.keep) {
        SambaDc::seed_kept(keep, args.users, plan, backend)?;
        println!(
            "seeded {} users and {} groups ({:?} per level, top first) in {:.1} s, load {}",
            args.users,
            args.groups,
            plan.levels(),
            seeding.elapsed().as_secs_f64(),
            load()
        );
        return Ok(());
    }
    let dc = match &args.keep {
        Some(keep) => SambaDc::start_kept(keep, args.users, plan, backend)?,
        None if args.backend_store == "mdb" => bail!("--backend-store mdb needs --keep"),
        None => SambaDc::provision_and_start_with(args.users, plan)?,
    };
    println!(
        "seeded {} users and {} groups ({:?} per level, top first) and started the DC in {:.1} s, load {}",
        args.users,
        args.groups,
        plan.levels(),
        seeding.elapsed().as_secs_f64(),
        load()
    );
    let base = format!("OU=Bulk,{BASE_DN}");

    let dc_cpu_before_dump = dc_cpu_seconds(&dc)?;
    let (dump_before, dumped, dumped_groups) = dump(&dc, &base)?;
    let dc_cpu_dump = dc_cpu_seconds(&dc)? - dc_cpu_before_dump;
    println!(
        "ldapsearch paged dump: {dumped} users and {dumped_groups} groups in {:.2} s",
        dump_before.as_secs_f64()
    );
    let levels = plan.levels();
    let ruled: Vec<usize> = (0..levels.first().copied().unwrap_or(0))
        .step_by(RULED_EVERY)
        .collect();
    let policy: String = ruled
        .iter()
        .map(|t| {
            format!(
                "\n[[policy.group]]\ngroup = \"{}\"\ntwo_factor = \"required\"\n",
                plan.name(0, *t)
            )
        })
        .collect();

    // The daemon's first sync (at start) is the full sync measured. Lockout is relaxed so that the
    // verification probes below (wrong codes on purpose) are all fully checked, never refused unchecked.
    let relaxed = "\n[lockout.user]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n\n[lockout.address]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 1\nforget_after_seconds = 1\n";
    let daemon = Daemon::start(&format!(
        "{relaxed}\n[policy]\ntwo_factor = \"optional\"\n{policy}{}",
        dc.directory_config("corp", "ldaps://127.0.0.1:636", &base, "page_size = 1000")
    ))?;
    let pid = daemon.pid().context("daemon pid")?;
    let cpu_at_start = cpu_seconds(pid)?;
    let dc_cpu_at_start = dc_cpu_seconds(&dc)?;
    let deadline = Instant::now() + Duration::from_secs(1200);
    let full = loop {
        let s = status(&daemon)?;
        if s.last_run.is_some() && s.duration_ms > 0 {
            break s;
        }
        if Instant::now() > deadline {
            bail!("no sync finished within 20 minutes (a full disk keeps a failed sync from recording its status)");
        }
        std::thread::park_timeout(Duration::from_millis(250));
    };
    if !full.ok || full.added as usize != args.users {
        bail!("full sync did not add every user: {full:?}");
    }
    let rss_after_full = rss_kib(pid)?;
    let cpu_full = cpu_seconds(pid)? - cpu_at_start;
    let dc_cpu_full = dc_cpu_seconds(&dc)? - dc_cpu_at_start;
    let key = daemon.admin()?.api_key("bench")?;
    let api = daemon.api_client()?.with_key(&key);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut admin = daemon.admin()?;
    if args.groups > 0 {
        runtime.block_on(check_nesting(&plan, args.users, &ruled, &api, &mut admin))?;
    }
    let (dump_after, _, _) = dump(&dc, &base)?;
    // For comparison with the earlier tables, whose dump read only the nine attributes.
    let (dump_nine, _) = ldapsearch_dump_of(&dc, &base, ATTRIBUTES)?;
    println!(
        "ldapsearch paged dump again: {:.2} s",
        dump_after.as_secs_f64()
    );

    // A kept directory is reused: values of this run's own, so that each run really changes them.
    let run_mark = dc.highest_usn()?;
    // A DirSync cookie for this point: Samba puts the highest uSNChanged of the entries it returned in
    // the cookie, so the search asks for the entry changed last.
    let cookie = dirsync(&dc, &format!("(uSNChanged>={run_mark})"), None).map(|(_, _, c)| c);
    // Half the changes are users' mail; with groups, the other half are leaf groups' members: a user
    // joins (or, if a former run made them join, leaves) a leaf group under a ruled top group.
    let step = (args.users / args.changes.max(1)).max(1);
    let memberships = if args.groups > 0 { args.changes / 2 } else { 0 };
    let mut ldif = String::new();
    for i in 1..=args.changes - memberships {
        let index = i * step;
        let name = format!("bulk{index:05}");
        ldif.push_str(&format!("dn: {}\nchangetype: modify\nreplace: mail\nmail: changed-{run_mark}.{name}@corp.example.test\n\n", bulk_user_dn("Bulk", args.users, index)));
    }
    let toggles = membership_toggles(&dc, &plan, args.users, &ruled, memberships, step)?;
    for t in &toggles {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\n{op}: member\nmember: {}\n\n",
            t.leaf_dn,
            bulk_user_dn("Bulk", args.users, t.user),
            op = if t.join { "add" } else { "delete" }
        ));
    }
    println!(
        "incremental: {} mail changes, {} users join and {} leave a leaf group",
        args.changes - memberships,
        toggles.iter().filter(|t| t.join).count(),
        toggles.iter().filter(|t| !t.join).count()
    );
    dc.modify(&ldif)?;
    let incremental = match admin.ok(&AdminRequest::DirectorySync {
        domain: None,
        full: false,
    })? {
        AdminReply::DirectoryStatus { mut domains } if !domains.is_empty() => domains.remove(0),
        other => bail!("unexpected {other:?}"),
    };
    if !incremental.ok
        || incremental.changed as usize != args.changes
        || incremental.mode != "incremental"
    {
        bail!("incremental sync: {incremental:?}");
    }
    let rss_end = rss_kib(pid)?;
    runtime.block_on(check_toggles(&toggles, &api, &mut admin))?;
    // The DC alone, right after the daemon's incremental sync: its changed-users search, and DirSync
    // for the same changes.
    let changed = format!("(uSNChanged>={})", run_mark + 1);
    let (dc_search, dc_found) = timed_search(
        &dc,
        &base,
        &format!("(&{changed}{USER_FILTER})"),
        ATTRIBUTES,
        false,
    )?;
    let (dc_groups, _) = timed_search(
        &dc,
        BASE_DN,
        &format!("(&(objectClass=group){changed})"),
        &["member"],
        false,
    )?;
    let (dc_deleted, _) = timed_search(
        &dc,
        BASE_DN,
        &format!("(&{changed}(isDeleted=TRUE))"),
        &["objectGUID"],
        true,
    )?;
    let dc_dirsync = cookie.and_then(|c| dirsync(&dc, USER_FILTER, Some(&c)));

    // Authentication during a sync: verification latency idle, then while a full sync of every user runs.
    // The probes name their own client_ip, so the key is a trusted proxy.
    let idle = runtime.block_on(probe(&api, 400, None))?;
    let socket = daemon.admin_socket();
    let syncing = std::thread::spawn(move || -> Result<SyncStatus> {
        let mut admin = twofold_tests::Admin::connect(&socket)?;
        match admin.ok(&AdminRequest::DirectorySync {
            domain: None,
            full: true,
        })? {
            AdminReply::DirectoryStatus { mut domains } if !domains.is_empty() => {
                Ok(domains.remove(0))
            }
            other => bail!("unexpected {other:?}"),
        }
    });
    let during = runtime.block_on(probe(&api, 100_000, Some(&syncing)))?;
    let second = syncing
        .join()
        .map_err(|_| anyhow::anyhow!("sync thread panicked"))??;

    let dump = dump_before.min(dump_after).as_secs_f64();
    println!("load at the end: {}", load());
    let sync = full.duration_ms as f64 / 1000.0;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| users / groups (per level, top first) | {} / {} {:?} |",
        args.users, args.groups, levels
    );
    println!("| ldapsearch paged dump of users (the sync's 14 attributes) and groups (best of 2) | {dump:.2} s |");
    println!(
        "| users alone with the nine attributes of the earlier tables (once) | {:.2} s |",
        dump_nine.as_secs_f64()
    );
    println!(
        "| full sync (pages {}, entries {}) | {sync:.2} s |",
        full.pages, full.entries
    );
    println!("| full sync / dump | {:.2}x |", sync / dump);
    println!(
        "| daemon: time waiting for the DC / CPU during the full sync | {:.2} s / {cpu_full:.2} s |",
        full.directory_ms as f64 / 1000.0
    );
    println!(
        "| DC's CPU during the first dump / during the full sync | {dc_cpu_dump:.2} s / {dc_cpu_full:.2} s |"
    );
    println!(
        "| incremental sync of {} changes (of which waiting for the DC) | {} ms ({} ms) |",
        args.changes, incremental.duration_ms, incremental.directory_ms
    );
    println!(
        "| DC alone, ldapsearch: changed users ({dc_found} entries) / changed groups / deleted objects | {} / {} / {} ms |",
        dc_search.as_millis(),
        dc_groups.as_millis(),
        dc_deleted.as_millis()
    );
    match dc_dirsync {
        Ok((took, found, _)) => println!(
            "| DC alone: DirSync with a cookie from before the changes ({found} entries) | {} ms |",
            took.as_millis()
        ),
        Err(e) => println!("| DC alone: DirSync | failed: {e} |"),
    }
    println!(
        "| daemon RSS after full sync | {:.1} MiB |",
        rss_after_full as f64 / 1024.0
    );
    println!(
        "| daemon RSS after incremental | {:.1} MiB |",
        rss_end as f64 / 1024.0
    );
    println!(
        "| verify p50 / p99 idle ({} requests) | {:.2} / {:.2} ms |",
        idle.len(),
        pct(&idle, 50),
        pct(&idle, 99)
    );
    println!(
        "| verify p50 / p99 during a full sync ({} requests, sync {:.1} s) | {:.2} / {:.2} ms |",
        during.len(),
        second.duration_ms as f64 / 1000.0,
        pct(&during, 50),
        pct(&during, 99)
    );
    Ok(())
}

/// The load average (1, 5, 15 minutes): the machine is shared.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The groups the daemon holds for `name`.
fn user_groups(admin: &mut twofold_tests::Admin, name: &str) -> Result<Vec<String>> {
    match admin.ok(&AdminRequest::UserShow { user: name.into() })? {
        AdminReply::User(u) => Ok(u.groups),
        other => bail!("unexpected {other:?}"),
    }
}

/// The 2FA rule the API reports for `name`.
async fn rule(api: &twofold_tests::Api, name: &str) -> Result<String> {
    let state = api.get(&format!("/api/v1/users/{name}/two-factor")).await?;
    state.body["rule"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{name}: {}", state.raw))
}

fn has(groups: &[String], dn: &str) -> bool {
    groups.iter().any(|g| g.eq_ignore_ascii_case(dn))
}

/// After the full sync: a user whose only leaf groups sit under a ruled top group has that group
/// (through every level) and its rule; a user with no ruled top group has neither.
async fn check_nesting(
    plan: &NestedGroups,
    users: usize,
    ruled: &[usize],
    api: &twofold_tests::Api,
    admin: &mut twofold_tests::Admin,
) -> Result<()> {
    let depth = plan.levels().len();
    let tops = |i: usize| -> Vec<usize> {
        plan.user_leaves(i)
            .into_iter()
            .map(|j| plan.top_of(depth - 1, j))
            .collect()
    };
    let in_ruled = (1..=users)
        .find(|i| tops(*i).iter().all(|t| ruled.contains(t)))
        .context("no user under a ruled top group only")?;
    let in_none = (1..=users)
        .find(|i| tops(*i).iter().all(|t| !ruled.contains(t)))
        .context("no user outside the ruled top groups")?;
    for (i, expected) in [(in_ruled, "required"), (in_none, "optional")] {
        let name = format!("bulk{i:05}");
        let groups = user_groups(admin, &name)?;
        let leaf = plan.user_leaves(i)[0];
        let mut chain = vec![(depth - 1, leaf)];
        while let Some(&(level, j)) = chain.last() {
            match plan.parent(level, j) {
                Some(p) => chain.push((level - 1, p)),
                None => break,
            }
        }
        for (level, j) in &chain {
            if !has(&groups, &plan.dn(*level, *j)) {
                bail!(
                    "{name} lacks {} after the full sync; it has {groups:?}",
                    plan.dn(*level, *j)
                );
            }
        }
        let got = rule(api, &name).await?;
        let names: Vec<String> = chain.iter().map(|(l, j)| plan.name(*l, *j)).collect();
        println!(
            "nesting: {name} in {} ({} groups in all): rule {got}",
            names.join(" -> "),
            groups.len()
        );
        if got != expected {
            bail!("{name}: rule {got}, expected {expected} (its top groups {:?}, ruled every {RULED_EVERY})", tops(i));
        }
    }
    Ok(())
}

/// One membership change of the incremental sync: `user` joins or leaves leaf group `leaf`.
struct Toggle {
    user: usize,
    leaf: usize,
    leaf_dn: String,
    join: bool,
}

/// `count` users (half-way between the mail changes' users), each with a leaf group under a ruled top
/// group that is not one of theirs from the seeding: they join it, or leave it if a former run on
/// this kept directory made them join (read from the users' memberOf).
fn membership_toggles(
    dc: &SambaDc,
    plan: &NestedGroups,
    users: usize,
    ruled: &[usize],
    count: usize,
    step: usize,
) -> Result<Vec<Toggle>> {
    let levels = plan.levels();
    let (Some(&leaves), true) = (levels.last(), count > 0) else {
        return Ok(Vec::new());
    };
    let depth = levels.len();
    let mut toggles = Vec::new();
    for k in 1..=count {
        let user = (k * step + step / 2).min(users);
        let own = plan.user_leaves(user);
        let leaf = (0..leaves)
            .map(|o| (user * 31 + o) % leaves)
            .find(|j| !own.contains(j) && ruled.contains(&plan.top_of(depth - 1, *j)))
            .context("no leaf group under a ruled top group")?;
        toggles.push(Toggle {
            user,
            leaf,
            leaf_dn: plan.dn(depth - 1, leaf),
            join: true,
        });
    }
    let filter = format!(
        "(|{})",
        toggles
            .iter()
            .map(|t| format!("(sAMAccountName=bulk{:05})", t.user))
            .collect::<String>()
    );
    let out = dc
        .ldap_tool("ldapsearch")
        .args([
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-b",
            BASE_DN,
            &filter,
            "memberOf",
        ])
        .output()
        .context("ldapsearch")?;
    if !out.status.success() {
        bail!(
            "ldapsearch {filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    for entry in text.split("\n\n") {
        let Some(dn) = entry.lines().find_map(|l| l.strip_prefix("dn: ")) else {
            continue;
        };
        let member_of: Vec<String> = entry
            .lines()
            .filter_map(|l| l.strip_prefix("memberOf: ").map(str::to_owned))
            .collect();
        for t in toggles
            .iter_mut()
            .filter(|t| dn.eq_ignore_ascii_case(&bulk_user_dn("Bulk", users, t.user)))
        {
            t.join = !has(&member_of, &t.leaf_dn);
        }
    }
    Ok(toggles)
}

/// After the incremental sync: each user that joined a leaf group has it, its top group and the top
/// group's rule; each that left has it no more.
async fn check_toggles(
    toggles: &[Toggle],
    api: &twofold_tests::Api,
    admin: &mut twofold_tests::Admin,
) -> Result<()> {
    for t in toggles {
        let name = format!("bulk{:05}", t.user);
        let groups = user_groups(admin, &name)?;
        if has(&groups, &t.leaf_dn) != t.join {
            bail!(
                "after the incremental sync {name} {} {} (leaf {}), but its groups are {groups:?}",
                if t.join {
                    "should be in"
                } else {
                    "should have left"
                },
                t.leaf_dn,
                t.leaf
            );
        }
        if t.join && rule(api, &name).await? != "required" {
            bail!(
                "{name} joined {} but has not its top group's rule",
                t.leaf_dn
            );
        }
    }
    if let Some(t) = toggles.first() {
        println!(
            "incremental: bulk{:05} {} {} and the daemon agrees ({} checked)",
            t.user,
            if t.join { "joined" } else { "left" },
            t.leaf_dn,
            toggles.len()
        );
    }
    Ok(())
}
