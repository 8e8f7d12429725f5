//! Active Directory sync: Twofold keeps its own copy of the directory's users, so authentication never
//! waits on a domain controller.
//!
//! The rules:
//! - objectGUID is the identity. A user renamed or moved to another OU keeps their record and devices.
//! - A full sync reads every user under the bases with the paged-results control. A user of the domain not
//!   seen in a *complete* full sync is marked removed. A full sync that sees no users at all while the
//!   domain has users in the store is refused as a misconfiguration, not taken as "everyone left".
//! - An incremental sync reads what changed since the last `highestCommittedUSN`: users (`uSNChanged`),
//!   groups (a membership change bumps only the group's `uSNChanged`, so changed groups' `member` lists
//!   are compared with the users' groups), and deleted objects (show-deleted control, `isDeleted=TRUE`).
//!   USNs are per domain controller: a cursor from another DC, or none, means a full sync.
//! - Groups are transitive (`groups`): a user is in their direct groups, their primary group and every
//!   group those are nested in. A full sync reads every group's `memberOf` and objectSid into a graph
//!   kept in the store; an incremental sync updates it from the changed groups and recomputes users.
//! - Disabled (userAccountControl 0x2), expired (accountExpires) or, with `honour_ad_lockout`, locked
//!   out in AD: cannot authenticate, devices kept (`SignInBlock`). Removed: cannot
//!   authenticate, devices and backup codes revoked, the record kept for `removed_retention_days`, then
//!   purged. Each of these is audited.
//! - A sync that fails (no DC reachable, bind refused, certificate untrusted, search error) changes
//!   nothing it had not already applied, does not move the cursor, and leaves the last good copy in place.
//!   Known users are written one at a time under the same per-user lock verification takes, so a sync
//!   never blocks authentication for longer than one record write; new users (nobody can be verifying
//!   them yet) are written a page at a time, in one store transaction.

mod apply;
pub mod dn;
pub mod entry;
pub mod groups;
pub mod ldap;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use twofold_wire::admin::SyncStatus;

use crate::config::DirectoryConfig;
use crate::error::{Error, Result};
use crate::service::Service;
use apply::Applied;
use groups::GroupGraph;
use ldap::PagedSearch;

/// Lines of errors kept in a sync status.
const MAX_STATUS_ERRORS: usize = 20;

/// How often a sync that removed nobody looks for removed users past their retention. Finding them
/// reads every user record of the domain (0.17 to 0.27 s at 100,000 users); retention is counted in
/// days, so an hour late is on time. A sync that removed someone always looks.
const PURGE_EVERY: i64 = 3600;

/// What a sync knows of the domain besides its users, to resolve each user's groups and lockout.
struct DomainFacts {
    graph: GroupGraph,
    /// The domain's lockoutDuration in seconds; None when a lockout lasts until an admin lifts it.
    lockout_duration: Option<i64>,
}

impl DomainFacts {
    /// Fills in what an entry's own attributes cannot tell.
    fn resolve(&self, entry: &mut entry::DirectoryEntry) {
        entry.groups = self
            .graph
            .effective(&entry.member_of, entry.primary_group.as_deref());
        entry.locked_until = entry
            .locked_at
            .zip(self.lockout_duration)
            .map(|(at, lasts)| at.saturating_add(lasts));
    }
}

/// Where the last successful sync of a domain stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SyncCursor {
    server: String,
    highest_usn: u64,
    last_full: i64,
}

/// The configured domains, each synced by one task at a time.
pub struct Directories {
    domains: Vec<Domain>,
}

struct Domain {
    config: DirectoryConfig,
    running: tokio::sync::Mutex<()>,
    /// When the last purge read every user record of the domain (clock seconds; see `PURGE_EVERY`).
    purged_at: std::sync::Mutex<Option<i64>>,
}

impl Directories {
    pub fn new(configs: &[DirectoryConfig]) -> Directories {
        Directories {
            domains: configs
                .iter()
                .map(|c| Domain {
                    config: c.clone(),
                    running: tokio::sync::Mutex::new(()),
                    purged_at: std::sync::Mutex::new(None),
                })
                .collect(),
        }
    }

    fn domain(&self, name: &str) -> Result<&Domain> {
        self.domains
            .iter()
            .find(|d| d.config.name == name)
            .ok_or(Error::NotFound {
                what: "directory domain",
            })
    }
}

fn cursor_key(domain: &str) -> String {
    format!("directory/{domain}/cursor")
}

fn status_key(domain: &str) -> String {
    format!("directory/{domain}/status")
}

fn groups_key(domain: &str) -> String {
    format!("directory/{domain}/groups")
}

impl Service {
    /// Syncs one domain now (or waits for the sync already running, then runs). Returns its status.
    pub async fn sync_directory(&self, name: &str, full: bool) -> Result<SyncStatus> {
        let domain = self.directories().domain(name)?;
        let _running = domain.running.lock().await;
        let started = Instant::now();
        let mut status = SyncStatus {
            domain: name.to_owned(),
            last_run: Some(self.now()),
            last_success: self
                .store()
                .meta::<SyncStatus>(&status_key(name))?
                .and_then(|s| s.last_success),
            ..SyncStatus::default()
        };
        let outcome = self.run_sync(domain, full, &mut status).await;
        status.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(()) => {
                status.ok = true;
                status.last_success = status.last_run;
            }
            Err(e) => {
                tracing::warn!(domain = name, error = %e, "directory sync failed; the last good copy stays");
                push_error(&mut status, e);
            }
        }
        self.store().set_meta(&status_key(name), &status)?;
        self.audit(
            &crate::service::Actor::Daemon,
            "directory_sync",
            None,
            if status.ok { "ok" } else { "failed" },
            Some(format!(
                "domain={name} mode={} entries={} added={} changed={} disabled={} removed={} purged={} failed={} errors={} ms={}",
                status.mode, status.entries, status.added, status.changed, status.disabled, status.removed, status.purged, status.failed,
                status.errors.len(), status.duration_ms
            )),
        )?;
        self.store().commit().await?;
        release_freed_memory();
        Ok(status)
    }

    /// Syncs every configured domain (or one) now.
    pub async fn sync_directories(
        &self,
        domain: Option<&str>,
        full: bool,
    ) -> Result<Vec<SyncStatus>> {
        let names: Vec<String> = match domain {
            Some(d) => vec![self.directories().domain(d)?.config.name.clone()],
            None => self
                .directories()
                .domains
                .iter()
                .map(|d| d.config.name.clone())
                .collect(),
        };
        let mut out = Vec::new();
        for name in names {
            out.push(self.sync_directory(&name, full).await?);
        }
        Ok(out)
    }

    /// The last sync of each configured domain.
    pub fn directory_status(&self) -> Result<Vec<SyncStatus>> {
        self.directories()
            .domains
            .iter()
            .map(|d| {
                Ok(self
                    .store()
                    .meta::<SyncStatus>(&status_key(&d.config.name))?
                    .unwrap_or_else(|| SyncStatus {
                        domain: d.config.name.clone(),
                        mode: "never run".into(),
                        ..SyncStatus::default()
                    }))
            })
            .collect()
    }

    async fn run_sync(
        &self,
        domain: &Domain,
        full: bool,
        status: &mut SyncStatus,
    ) -> std::result::Result<(), String> {
        let cfg = &domain.config;
        let mut conn = ldap::connect(cfg).await?;
        status.server = Some(conn.url.clone());
        let root = conn.root_dse().await?;
        let lockout_duration = conn.lockout_duration(&root.naming_context).await?;
        let cursor: Option<SyncCursor> = self
            .store()
            .meta(&cursor_key(&cfg.name))
            .map_err(|e| e.to_string())?;
        let now = self.now();
        let graph: Option<GroupGraph> = self
            .store()
            .meta(&groups_key(&cfg.name))
            .map_err(|e| e.to_string())?;
        // No group graph yet (first sync, or records from before groups were transitive): a full
        // sync builds it.
        let incremental_from = cursor.as_ref().filter(|c| {
            graph.is_some()
                && !full
                && c.server == root.server
                && now.saturating_sub(c.last_full)
                    < i64::try_from(cfg.full_sync_interval_seconds).unwrap_or(i64::MAX)
        });
        let user_bases = if cfg.user_bases.is_empty() {
            vec![root.naming_context.clone()]
        } else {
            cfg.user_bases.clone()
        };
        let group_bases = if cfg.group_bases.is_empty() {
            vec![root.naming_context.clone()]
        } else {
            cfg.group_bases.clone()
        };
        let outcome = match incremental_from {
            None => {
                status.mode = "full".into();
                self.full_sync(
                    &mut conn,
                    cfg,
                    &user_bases,
                    &group_bases,
                    lockout_duration,
                    status,
                )
                .await
            }
            Some(c) => {
                status.mode = "incremental".into();
                self.incremental_sync(
                    &mut conn,
                    cfg,
                    &user_bases,
                    &group_bases,
                    &root.naming_context,
                    DomainFacts {
                        graph: graph.map(GroupGraph::indexed).unwrap_or_default(),
                        lockout_duration,
                    },
                    c.highest_usn,
                    status,
                )
                .await
            }
        };
        status.directory_ms = u64::try_from(conn.waited.as_millis()).unwrap_or(u64::MAX);
        conn.close().await;
        outcome?;
        let last_full = match (status.mode.as_str(), &cursor) {
            ("incremental", Some(c)) => c.last_full,
            _ => now,
        };
        let next = SyncCursor {
            server: root.server,
            highest_usn: root.highest_usn,
            last_full,
        };
        self.store()
            .set_meta(&cursor_key(&cfg.name), &next)
            .map_err(|e| e.to_string())?;
        let purge_due = {
            let mut purged_at = domain
                .purged_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = status.removed > 0
                || purged_at.is_none_or(|at| now.saturating_sub(at) >= PURGE_EVERY);
            if due {
                *purged_at = Some(now);
            }
            due
        };
        if purge_due {
            status.purged = self
                .purge_removed(&cfg.name, cfg.removed_retention_days)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Applies every entry of one paged search, adding the GUIDs seen to `seen`. The next page is
    /// fetched while the current one is applied, so the DC's time and the store's overlap.
    async fn apply_search(
        &self,
        conn: &mut ldap::Connection,
        cfg: &DirectoryConfig,
        mut search: PagedSearch,
        facts: &DomainFacts,
        status: &mut SyncStatus,
        seen: &mut HashSet<String>,
    ) -> std::result::Result<(), String> {
        let mut current = conn.page(&mut search).await?;
        while let Some(page) = current {
            let (next, applied) = tokio::join!(conn.page(&mut search), async {
                // Asking for the next page wakes the connection's task from this one, which puts it in
                // this worker's LIFO slot: no other worker may take it from there, so it would send the
                // request only once this page was applied. Yielding lets it send the request first.
                tokio::task::yield_now().await;
                self.apply_page(cfg, page, facts, status, seen).await
            });
            applied?;
            current = next?;
        }
        status.pages += search.pages;
        Ok(())
    }

    /// Applies one page: users already stored one at a time under their lock, new users together in one
    /// store write at the end of the page.
    async fn apply_page(
        &self,
        cfg: &DirectoryConfig,
        page: Vec<ldap3::SearchEntry>,
        facts: &DomainFacts,
        status: &mut SyncStatus,
        seen: &mut HashSet<String>,
    ) -> std::result::Result<(), String> {
        let mut new_users = Vec::new();
        for raw in page {
            status.entries += 1;
            let entry = match entry::read(&raw, &cfg.attributes) {
                Ok(mut e) => {
                    facts.resolve(&mut e);
                    e
                }
                Err(skip) => {
                    status.failed += 1;
                    push_error(status, skip);
                    continue;
                }
            };
            if !seen.insert(entry.guid.clone()) {
                // Seen before in this sync (overlapping bases): it may be among the new users not yet
                // written, so write them first.
                self.add_new_users(cfg, std::mem::take(&mut new_users), status)
                    .await?;
            }
            let found = self
                .store()
                .user_id_by_guid(&cfg.name, &entry.guid)
                .map_err(|e| e.to_string())?;
            let Some(id) = found else {
                new_users.push(entry);
                continue;
            };
            let mut outcome = self.apply_entry(&cfg.name, &id, entry.clone()).await;
            if matches!(outcome, Err(Error::Conflict(_)))
                && self
                    .release_names(&cfg.name, &entry)
                    .await
                    .map_err(|e| e.to_string())?
            {
                outcome = self.apply_entry(&cfg.name, &id, entry).await;
            }
            match outcome {
                Ok(Applied::Changed) => status.changed += 1,
                Ok(Applied::Disabled) => {
                    status.changed += 1;
                    status.disabled += 1;
                }
                Ok(Applied::Unchanged) => {}
                Err(Error::Conflict(message)) => {
                    status.failed += 1;
                    push_error(status, format!("{}: {message}", raw.dn));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        self.add_new_users(cfg, new_users, status).await
    }

    /// Adds the new users; one whose name another record of the domain still holds (a deleted user's,
    /// or one renamed later in this sync) takes it from that record and is added in a second write.
    async fn add_new_users(
        &self,
        cfg: &DirectoryConfig,
        new_users: Vec<entry::DirectoryEntry>,
        status: &mut SyncStatus,
    ) -> std::result::Result<(), String> {
        if new_users.is_empty() {
            return Ok(());
        }
        let (added, conflicts) = self
            .add_entries(&cfg.name, new_users)
            .map_err(|e| e.to_string())?;
        status.added += added;
        let mut retry = Vec::new();
        for (entry, message) in conflicts {
            if self
                .release_names(&cfg.name, &entry)
                .await
                .map_err(|e| e.to_string())?
            {
                retry.push(entry);
            } else {
                status.failed += 1;
                push_error(status, format!("{}: {message}", entry.dn));
            }
        }
        if retry.is_empty() {
            return Ok(());
        }
        let (added, conflicts) = self
            .add_entries(&cfg.name, retry)
            .map_err(|e| e.to_string())?;
        status.added += added;
        for (entry, message) in conflicts {
            status.failed += 1;
            push_error(status, format!("{}: {message}", entry.dn));
        }
        Ok(())
    }

    async fn full_sync(
        &self,
        conn: &mut ldap::Connection,
        cfg: &DirectoryConfig,
        user_bases: &[String],
        group_bases: &[String],
        lockout_duration: Option<i64>,
        status: &mut SyncStatus,
    ) -> std::result::Result<(), String> {
        let facts = DomainFacts {
            graph: read_group_graph(conn, cfg, group_bases, status).await?,
            lockout_duration,
        };
        let mut seen = HashSet::new();
        for base in user_bases {
            let search = PagedSearch::new(
                base,
                &cfg.user_filter,
                entry::attributes(&cfg.attributes),
                cfg.page_size,
            );
            self.apply_search(conn, cfg, search, &facts, status, &mut seen)
                .await?;
        }
        let known = self
            .store()
            .domain_guids(&cfg.name)
            .map_err(|e| e.to_string())?;
        if seen.is_empty() && !known.is_empty() {
            return Err(format!(
                "the full sync found no users under {} but {} are known: refusing to remove them all (check user_bases and user_filter)",
                user_bases.join("; "),
                known.len()
            ));
        }
        for (guid, id) in known {
            if !seen.contains(&guid)
                && self
                    .mark_removed(&id, "not found in a full sync")
                    .await
                    .map_err(|e| e.to_string())?
            {
                status.removed += 1;
            }
        }
        self.store()
            .set_meta(&groups_key(&cfg.name), &facts.graph)
            .map_err(|e| e.to_string())?;
        self.store().commit().await.map_err(|e| e.to_string())?;
        all_applied(status)
    }

    #[allow(clippy::too_many_arguments)]
    async fn incremental_sync(
        &self,
        conn: &mut ldap::Connection,
        cfg: &DirectoryConfig,
        user_bases: &[String],
        group_bases: &[String],
        naming_context: &str,
        mut facts: DomainFacts,
        since: u64,
        status: &mut SyncStatus,
    ) -> std::result::Result<(), String> {
        let changed = format!("(uSNChanged>={})", since.saturating_add(1));
        // Samba has no range index on uSNChanged: it reads every user to answer the users' search (1.8 to
        // 4 s at 100,000 users). The changed groups and deleted objects are searched meanwhile, on a
        // second connection to the same DC, and applied after the users, in the order they always were.
        let before = conn.waited;
        let url = conn.url.clone();
        let mut seen = HashSet::new();
        let (users, others) = tokio::join!(
            async {
                for base in user_bases {
                    // The USN first: Samba evaluates an AND in order (measured at 100,000 users).
                    let filter = format!("(&{changed}{})", cfg.user_filter);
                    let search = PagedSearch::new(
                        base,
                        &filter,
                        entry::attributes(&cfg.attributes),
                        cfg.page_size,
                    );
                    self.apply_search(conn, cfg, search, &facts, status, &mut seen)
                        .await?;
                }
                Ok::<(), String>(())
            },
            changed_groups_and_deletions(cfg, group_bases, naming_context, &changed, &url),
        );
        users?;
        let others = others?;
        // The two connections waited side by side: the DC's share of the time is the longer wait.
        let users_waited = conn.waited.saturating_sub(before);
        conn.waited = before + users_waited.max(others.waited);
        status.pages += others.pages;

        let graph = &mut facts.graph;
        let mut members = Vec::with_capacity(others.groups.len());
        for group in others.groups {
            graph.put(&group.dn, group.sid, &group.member_of);
            members.push((group.dn, group.members));
        }
        for (dn, listed) in &members {
            graph.set_members(dn, listed);
        }
        // A deleted group has no members left: its users lose it, and what it was nested in, now.
        for sid in others.deleted.iter().filter_map(|d| d.sid.as_deref()) {
            if let Some(dn) = graph.remove_by_sid(sid) {
                members.push((dn, Vec::new()));
            }
        }
        if !members.is_empty() {
            status.changed += self
                .apply_groups(&cfg.name, graph, &members)
                .await
                .map_err(|e| e.to_string())?;
            self.store()
                .set_meta(&groups_key(&cfg.name), &*graph)
                .map_err(|e| e.to_string())?;
        }
        for guid in others.deleted.into_iter().filter_map(|d| d.guid) {
            if let Some(user) = self
                .store()
                .user_by_guid(&cfg.name, &guid)
                .map_err(|e| e.to_string())?
            {
                if self
                    .mark_removed(&user.id, "deleted in the directory")
                    .await
                    .map_err(|e| e.to_string())?
                {
                    status.removed += 1;
                }
            }
        }
        self.store().commit().await.map_err(|e| e.to_string())?;
        all_applied(status)
    }
}

/// A sync that could not apply every entry it read has failed, though it kept what it applied: its
/// status says so, and its cursor stays, so the next sync reads those entries again.
fn all_applied(status: &SyncStatus) -> std::result::Result<(), String> {
    match status.failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} entries could not be applied (their reasons are listed); the next sync tries them again",
            status.entries
        )),
    }
}

/// A group as an incremental sync reads it.
struct ChangedGroup {
    dn: String,
    sid: Option<String>,
    /// The groups it is a direct member of.
    member_of: Vec<String>,
    /// Its whole `member` list (every range of it).
    members: Vec<String>,
}

/// An object deleted in the directory, as its tombstone tells it: the GUID names a user, the SID a
/// group (a tombstone's DN is no longer the group's).
struct DeletedObject {
    guid: Option<String>,
    sid: Option<String>,
}

/// What changed besides users since a USN: groups and deleted objects.
struct OtherChanges {
    groups: Vec<ChangedGroup>,
    deleted: Vec<DeletedObject>,
    pages: u64,
    waited: Duration,
}

/// Reads the changed groups and the deleted objects on a connection of its own to `url`.
async fn changed_groups_and_deletions(
    cfg: &DirectoryConfig,
    group_bases: &[String],
    naming_context: &str,
    changed: &str,
    url: &str,
) -> std::result::Result<OtherChanges, String> {
    let mut conn = ldap::connect_url(cfg, url).await?;
    let mut out = OtherChanges {
        groups: Vec::new(),
        deleted: Vec::new(),
        pages: 0,
        waited: Duration::ZERO,
    };
    let outcome = async {
        for base in group_bases {
            let filter = format!("(&(objectClass=group){changed})");
            let mut search = PagedSearch::new(base, &filter, group_attributes(true), cfg.page_size);
            while let Some(page) = conn.page(&mut search).await? {
                for group in page {
                    let members = conn.all_values(&group, "member").await?;
                    let member_of = conn.all_values(&group, "memberOf").await?;
                    out.groups.push(ChangedGroup {
                        sid: entry::binary(&group, "objectSid")
                            .and_then(|raw| groups::sid_text(&raw)),
                        dn: group.dn,
                        member_of,
                        members,
                    });
                }
            }
            out.pages += search.pages;
        }
        // Deleted objects of any class: a GUID that is not one of this domain's users is passed over
        // when applied, and leaving out `objectClass=user` keeps Samba from walking that index, every
        // user of the domain (1.7 s against 0.6 s at 100,000 users).
        let filter = format!("(&{changed}(isDeleted=TRUE))");
        let mut search = PagedSearch::new(
            naming_context,
            &filter,
            vec!["objectGUID".to_owned(), "objectSid".to_owned()],
            cfg.page_size,
        )
        .show_deleted();
        while let Some(page) = conn.page(&mut search).await? {
            out.deleted.extend(page.iter().map(|deleted| DeletedObject {
                guid: entry::binary(deleted, "objectGUID").and_then(|g| entry::guid_text(&g)),
                sid: entry::binary(deleted, "objectSid").and_then(|raw| groups::sid_text(&raw)),
            }));
        }
        out.pages += search.pages;
        Ok::<(), String>(())
    }
    .await;
    out.waited = conn.waited;
    conn.close().await;
    outcome.map(|()| out)
}

/// What a group search asks for; `member` (which may be long) only when it is needed.
fn group_attributes(with_members: bool) -> Vec<String> {
    let mut attrs = vec!["memberOf".to_owned(), "objectSid".to_owned()];
    if with_members {
        attrs.push("member".to_owned());
    }
    attrs
}

/// Every group under the group bases with what it is a direct member of: the graph a full sync
/// resolves nesting and primary groups with.
async fn read_group_graph(
    conn: &mut ldap::Connection,
    cfg: &DirectoryConfig,
    group_bases: &[String],
    status: &mut SyncStatus,
) -> std::result::Result<GroupGraph, String> {
    let mut graph = GroupGraph::default();
    for base in group_bases {
        let mut search = PagedSearch::new(
            base,
            "(objectClass=group)",
            group_attributes(false),
            cfg.page_size,
        );
        while let Some(page) = conn.page(&mut search).await? {
            for group in page {
                let member_of = conn.all_values(&group, "memberOf").await?;
                let sid = entry::binary(&group, "objectSid").and_then(|raw| groups::sid_text(&raw));
                graph.put(&group.dn, sid, &member_of);
            }
        }
        status.pages += search.pages;
    }
    Ok(graph)
}

/// Hands the heap a sync freed back to the system. A sync allocates and frees a great deal (pages of
/// entries, the set of GUIDs seen, sled's nodes) on every thread of the runtime, so in several of
/// glibc's arenas, and glibc returns only the free memory at the top of an arena on its own.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it takes each arena's lock as malloc does.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn push_error(status: &mut SyncStatus, message: String) {
    if status.errors.len() < MAX_STATUS_ERRORS {
        status.errors.push(message);
    }
}

/// One task per domain: a sync at start, then every `sync_interval_seconds`, until stopped.
pub fn spawn(
    service: Arc<Service>,
    configs: &[DirectoryConfig],
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    configs
        .iter()
        .map(|cfg| {
            let service = service.clone();
            let name = cfg.name.clone();
            let interval = Duration::from_secs(cfg.sync_interval_seconds);
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    // Stopping abandons a sync midway: what it applied stays, its cursor does not move.
                    tokio::select! {
                        outcome = service.sync_directory(&name, false) => if let Err(e) = outcome {
                            tracing::warn!(domain = %name, error = %e, "directory sync could not record its status");
                        },
                        _ = stop.changed() => break,
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stop.changed() => break,
                    }
                }
            })
        })
        .collect()
}
