//! Applying what the directory says to the store, one user at a time, under the user's lock.
//!
//! Names belong to whoever holds them in AD now. objectGUID is a record's identity; its username and
//! UPN are only what AD last said. AD keeps names unique within a domain, so when an entry's name is
//! still held by another record of the same domain (a different GUID), that record's claim is stale: it
//! was renamed in the same sync (a swap: a->b and b->a cannot both go first), or deleted (its removed
//! record keeps its history, not its name). Such a record gives the name up (`release_names`): its
//! username becomes `<old> [<objectGUID>]`, which no AD or local username can be (`[` is refused in
//! both), and its UPN is dropped; its own entry, when the sync reaches it, gives it its new name. A
//! name held by a local user or another domain's user is not ours to take: that entry is not applied
//! and the sync reports the failure until an admin settles it.

use std::collections::HashSet;

use super::entry::DirectoryEntry;
use super::groups::GroupGraph;
use crate::error::{Error, Result};
use crate::lockout::user_key;
use crate::service::{Actor, Service};
use crate::store::records::{DirectoryLink, UserRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// Changed, and newly disabled in the directory.
    Disabled,
    Unchanged,
}

impl Service {
    /// Creates the users of a page that are new to the store, in one store write. Returns, for each one
    /// left out because its name is taken by another user, the entry and the `Conflict` message.
    pub(crate) fn add_entries(
        &self,
        domain: &str,
        entries: Vec<DirectoryEntry>,
    ) -> Result<(u64, Vec<(DirectoryEntry, String)>)> {
        let now = self.now();
        let users: Vec<UserRecord> = entries
            .iter()
            .cloned()
            .map(|entry| UserRecord {
                id: crate::service::new_user_id(),
                username: entry.username,
                upn: entry.upn,
                display_name: entry.display_name,
                email: entry.email,
                mobile: entry.mobile,
                voice: entry.voice,
                groups: entry.groups,
                enabled: true,
                source: format!("ad:{domain}"),
                enrollment_required: false,
                created: now,
                devices: Vec::new(),
                backup_codes: None,
                directory: Some(DirectoryLink {
                    domain: domain.to_owned(),
                    guid: entry.guid,
                    dn: entry.dn,
                    account_disabled: entry.disabled,
                    removed_at: None,
                    member_of: entry.member_of,
                    primary_group: entry.primary_group,
                    expires: entry.expires,
                    locked_out: entry.locked_out,
                    locked_until: entry.locked_until,
                }),
                mobile_override: None,
                voice_override: None,
                enrolled_epoch: 0,
            })
            .collect();
        let outcome = self.store().insert_users(&users)?;
        let mut added = 0;
        let mut conflicts = Vec::new();
        for ((user, entry), taken) in users.into_iter().zip(entries).zip(outcome) {
            match taken {
                None => {
                    self.audit(
                        &Actor::Daemon,
                        "directory_add",
                        Some(&user.username),
                        "ok",
                        Some(format!("domain={domain}")),
                    )?;
                    added += 1;
                }
                Some(message) => conflicts.push((entry, message)),
            }
        }
        Ok((added, conflicts))
    }

    /// Updates the stored user `id` (found by this entry's GUID) from the entry. A name taken by
    /// another user is a `Conflict`.
    pub(crate) async fn apply_entry(
        &self,
        domain: &str,
        id: &str,
        entry: DirectoryEntry,
    ) -> Result<Applied> {
        let _guard = self.lock_user(&user_key(id)).await;
        let before = self
            .store()
            .user(id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let mut user = before.clone();
        user.username = entry.username;
        user.upn = entry.upn;
        user.display_name = entry.display_name;
        user.email = entry.email;
        user.mobile = entry.mobile;
        user.voice = entry.voice;
        user.groups = entry.groups;
        let was_disabled = before
            .directory
            .as_ref()
            .is_some_and(|d| d.account_disabled);
        user.directory = Some(DirectoryLink {
            domain: domain.to_owned(),
            guid: entry.guid,
            dn: entry.dn,
            account_disabled: entry.disabled,
            // Seen again (restored from the recycle bin, or back in scope).
            removed_at: None,
            member_of: entry.member_of,
            primary_group: entry.primary_group,
            expires: entry.expires,
            locked_out: entry.locked_out,
            locked_until: entry.locked_until,
        });
        if user == before {
            return Ok(Applied::Unchanged);
        }
        self.store().replace_user(Some(&before), &user)?;
        let changed = changed_fields(&before, &user);
        let newly_disabled = entry.disabled && !was_disabled;
        let action = if newly_disabled {
            "directory_disable"
        } else {
            "directory_update"
        };
        self.audit(
            &Actor::Daemon,
            action,
            Some(&user.username),
            "ok",
            Some(format!("domain={domain} changed={changed}")),
        )?;
        Ok(if newly_disabled {
            Applied::Disabled
        } else {
            Applied::Changed
        })
    }

    /// Takes the entry's username and UPN from any other record of `domain` that still holds them (see
    /// the module's rule). Each holder is changed under its own lock, never while another user's lock
    /// is held (locks are striped: two held at once may be one). True if a name was released.
    pub(crate) async fn release_names(&self, domain: &str, entry: &DirectoryEntry) -> Result<bool> {
        let mut released = false;
        let names = std::iter::once(&entry.username)
            .chain(entry.upn.as_ref())
            .map(|n| n.to_lowercase());
        for name in names {
            let Some(holder) = self.store().user_id(&name)? else {
                continue;
            };
            let _guard = self.lock_user(&user_key(&holder)).await;
            let Some(before) = self.store().user(&holder)? else {
                continue;
            };
            let Some(guid) = before
                .directory
                .as_ref()
                .filter(|d| d.domain == domain && d.guid != entry.guid)
                .map(|d| d.guid.clone())
            else {
                continue;
            };
            let mut after = before.clone();
            if after.username.to_lowercase() == name {
                after.username = format!("{} [{guid}]", before.username);
            }
            if after.upn.as_ref().is_some_and(|u| u.to_lowercase() == name) {
                after.upn = None;
            }
            if after == before {
                continue;
            }
            self.store().replace_user(Some(&before), &after)?;
            self.audit(
                &Actor::Daemon,
                "directory_name_released",
                Some(&before.username),
                "ok",
                Some(format!(
                    "domain={domain} name={name} taken_by_guid={} now={}",
                    entry.guid, after.username
                )),
            )?;
            released = true;
        }
        Ok(released)
    }

    /// Marks a synced user removed and revokes their devices. False if already removed.
    pub(crate) async fn mark_removed(&self, id: &str, why: &str) -> Result<bool> {
        let _guard = self.lock_user(&user_key(id)).await;
        let Some(mut user) = self.store().user(id)? else {
            return Ok(false);
        };
        let Some(link) = user.directory.as_mut() else {
            return Ok(false);
        };
        if link.removed_at.is_some() {
            return Ok(false);
        }
        link.removed_at = Some(self.now());
        let revoked = user.devices.len();
        user.devices.clear();
        user.backup_codes = None;
        self.store().put_user(&user)?;
        self.audit(
            &Actor::Daemon,
            "directory_remove",
            Some(&user.username),
            "ok",
            Some(format!("reason={why} devices_revoked={revoked}")),
        )?;
        Ok(true)
    }

    /// Brings every user of the domain in line with the changed groups' current `member` lists and
    /// the group graph (already updated from them): direct groups first, then every group they are
    /// nested in. One pass over the domain's users whatever the number of changed groups. Returns how
    /// many users changed.
    pub(crate) async fn apply_groups(
        &self,
        domain: &str,
        graph: &GroupGraph,
        changed: &[(String, Vec<String>)],
    ) -> Result<u64> {
        let changed: Vec<(&str, HashSet<String>)> = changed
            .iter()
            .map(|(dn, members)| {
                (
                    dn.as_str(),
                    members.iter().map(|m| m.to_lowercase()).collect(),
                )
            })
            .collect();
        let regroup = |user: &UserRecord| -> Option<(Vec<String>, Vec<String>)> {
            let link = user.directory.as_ref()?;
            let dn = link.dn.to_lowercase();
            let mut direct = link.member_of.clone();
            for (group, members) in &changed {
                direct.retain(|g| !g.eq_ignore_ascii_case(group));
                if members.contains(&dn) {
                    direct.push((*group).to_owned());
                }
            }
            direct.sort();
            let groups = graph.effective(&direct, link.primary_group.as_deref());
            (direct != link.member_of || groups != user.groups).then_some((direct, groups))
        };
        let mut count = 0;
        for (_, id) in self.store().domain_guids(domain)? {
            let Some(user) = self.store().user(&id)? else {
                continue;
            };
            if regroup(&user).is_none() {
                continue;
            }
            let _guard = self.lock_user(&user_key(&id)).await;
            let Some(mut user) = self.store().user(&id)? else {
                continue;
            };
            let Some((direct, groups)) = regroup(&user) else {
                continue;
            };
            let added: Vec<&String> = groups.iter().filter(|g| !user.groups.contains(g)).collect();
            let removed: Vec<&String> =
                user.groups.iter().filter(|g| !groups.contains(g)).collect();
            let detail = format!(
                "added_to={} removed_from={}",
                added
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(";"),
                removed
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(";")
            );
            user.groups = groups;
            if let Some(link) = user.directory.as_mut() {
                link.member_of = direct;
            }
            self.store().put_user(&user)?;
            self.audit(
                &Actor::Daemon,
                "directory_group",
                Some(&user.username),
                "ok",
                Some(detail),
            )?;
            count += 1;
        }
        Ok(count)
    }

    /// Deletes users removed from the directory longer ago than the retention. Returns how many.
    pub(crate) async fn purge_removed(&self, domain: &str, retention_days: u32) -> Result<u64> {
        let cutoff = self.now() - i64::from(retention_days) * 86_400;
        let mut purged = 0;
        for id in self.store().removed_before(domain, cutoff)? {
            let _guard = self.lock_user(&user_key(&id)).await;
            // Read again under the lock: seen again in the directory since, it is no longer removed.
            let Some(user) = self.store().user(&id)? else {
                continue;
            };
            if user
                .directory
                .as_ref()
                .and_then(|d| d.removed_at)
                .is_some_and(|t| t <= cutoff)
            {
                self.store().delete_user(&user)?;
                self.store().clear_failure_count(&user_key(&id))?;
                self.audit(
                    &Actor::Daemon,
                    "directory_purge",
                    Some(&user.username),
                    "ok",
                    Some(format!("domain={domain}")),
                )?;
                purged += 1;
            }
        }
        if purged > 0 {
            self.store().commit().await?;
        }
        Ok(purged)
    }
}

/// Names of the fields that differ, for the audit log (values are not secrets, but names suffice).
fn changed_fields(a: &UserRecord, b: &UserRecord) -> String {
    let mut out = Vec::new();
    let link = |u: &UserRecord| u.directory.clone();
    for (name, differs) in [
        ("username", a.username != b.username),
        ("upn", a.upn != b.upn),
        ("display_name", a.display_name != b.display_name),
        ("email", a.email != b.email),
        ("mobile", a.mobile != b.mobile),
        ("voice", a.voice != b.voice),
        ("groups", a.groups != b.groups),
        ("dn", link(a).map(|l| l.dn) != link(b).map(|l| l.dn)),
        (
            "disabled",
            link(a).map(|l| l.account_disabled) != link(b).map(|l| l.account_disabled),
        ),
        (
            "expires",
            link(a).and_then(|l| l.expires) != link(b).and_then(|l| l.expires),
        ),
        (
            "locked_out",
            link(a).map(|l| l.locked_out) != link(b).map(|l| l.locked_out),
        ),
        ("restored", link(a).and_then(|l| l.removed_at).is_some()),
    ] {
        if differs {
            out.push(name);
        }
    }
    out.join(",")
}
