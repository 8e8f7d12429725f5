//! Group membership as Windows computes it for a logon token.
//!
//! The rule: a user belongs to every group reachable from their direct groups (`memberOf`) and their
//! primary group (`primaryGroupID`, a RID in the user's domain, which AD keeps out of `member` and
//! `memberOf`) by following groups' own `memberOf`, however deep. Nesting may form a cycle (AD allows
//! it): each group is counted once and the walk ends. A group outside the synced group bases is known
//! only by name: it counts itself, but its parents are unknown.
//!
//! Why resolve here rather than ask the DC with LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941):
//! the chain rule answers one group (or one user) per search, so a sync would need a search per group
//! (10,000 in the benchmark) or per user (100,000), each walking the nesting on the DC. Reading every
//! group once with its `memberOf` and `objectSid` is one paged search of 10,000 small entries, and the
//! walk from it costs microseconds per user. The graph is kept in the store, so an incremental sync
//! updates it from the changed groups alone and recomputes the users whose groups it touches.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// The domain's groups and what each is a direct member of, keyed by lower-cased DN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGraph {
    groups: BTreeMap<String, GroupNode>,
    /// objectSid text => lower-cased DN (rebuilt on load: not stored).
    #[serde(skip)]
    by_sid: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupNode {
    /// The DN as AD spells it.
    dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// Lower-cased DNs of the groups this group is a direct member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parents: Vec<String>,
}

impl GroupGraph {
    /// Indexes a graph read back from the store.
    pub fn indexed(mut self) -> GroupGraph {
        self.by_sid = self
            .groups
            .iter()
            .filter_map(|(key, node)| node.sid.clone().map(|sid| (sid, key.clone())))
            .collect();
        self
    }

    /// Adds or replaces one group as read from the DC.
    pub fn put(&mut self, dn: &str, sid: Option<String>, member_of: &[String]) {
        let key = dn.to_lowercase();
        if let Some(old) = self.groups.get(&key).and_then(|n| n.sid.clone()) {
            self.by_sid.remove(&old);
        }
        if let Some(sid) = &sid {
            self.by_sid.insert(sid.clone(), key.clone());
        }
        let mut parents: Vec<String> = member_of.iter().map(|p| p.to_lowercase()).collect();
        parents.sort();
        parents.dedup();
        self.groups.insert(
            key,
            GroupNode {
                dn: dn.to_owned(),
                sid,
                parents,
            },
        );
    }

    /// Takes a changed group's current `member` list: every known group listed is now a direct member
    /// of it, every other one no longer is. (`memberOf` is a back link: changing `member` does not bump
    /// the member group's uSNChanged, so an incremental sync sees nesting only on the parent.)
    pub fn set_members(&mut self, parent_dn: &str, members: &[String]) {
        let parent = parent_dn.to_lowercase();
        let members: HashSet<String> = members.iter().map(|m| m.to_lowercase()).collect();
        for (key, node) in &mut self.groups {
            let listed = members.contains(key);
            let has = node.parents.binary_search(&parent);
            match (listed, has) {
                (true, Err(at)) => node.parents.insert(at, parent.clone()),
                (false, Ok(at)) => {
                    node.parents.remove(at);
                }
                _ => {}
            }
        }
    }

    /// Drops a deleted group, found by its objectSid (a tombstone keeps the SID but not the DN), and
    /// every nesting in it. Returns the DN it had, None when the graph did not know it.
    pub fn remove_by_sid(&mut self, sid: &str) -> Option<String> {
        let key = self.by_sid.remove(sid)?;
        let node = self.groups.remove(&key)?;
        for other in self.groups.values_mut() {
            if let Ok(at) = other.parents.binary_search(&key) {
                other.parents.remove(at);
            }
        }
        Some(node.dn)
    }

    /// Every group the user is in: the direct groups, the primary group (by SID) and all their
    /// ancestors, each once, in AD's spelling, sorted.
    pub fn effective(&self, direct: &[String], primary_sid: Option<&str>) -> Vec<String> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut queue: Vec<(String, String)> = direct
            .iter()
            .map(|dn| (dn.to_lowercase(), dn.clone()))
            .collect();
        if let Some(key) = primary_sid.and_then(|sid| self.by_sid.get(sid)) {
            if let Some(node) = self.groups.get(key) {
                queue.push((key.clone(), node.dn.clone()));
            }
        }
        while let Some((key, dn)) = queue.pop() {
            if !seen.insert(key.clone()) {
                continue;
            }
            let node = self.groups.get(&key);
            // The graph's spelling when known: `member` and `memberOf` may differ in case.
            out.push(node.map_or(dn, |n| n.dn.clone()));
            for parent in node.map(|n| n.parents.as_slice()).unwrap_or_default() {
                if !seen.contains(parent) {
                    let spelled = self
                        .groups
                        .get(parent)
                        .map_or_else(|| parent.clone(), |p| p.dn.clone());
                    queue.push((parent.clone(), spelled));
                }
            }
        }
        out.sort();
        out
    }
}

/// A binary objectSid (MS-DTYP 2.4.2.2) in its `S-1-5-21-...` text form.
pub fn sid_text(raw: &[u8]) -> Option<String> {
    let (&revision, rest) = raw.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let authority = rest.get(..6)?;
    let subs = rest.get(6..)?;
    if subs.len() != usize::from(count) * 4 {
        return None;
    }
    let authority = authority
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut text = format!("S-{revision}-{authority}");
    for sub in subs.chunks_exact(4) {
        let value = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
        text.push_str(&format!("-{value}"));
    }
    Some(text)
}

/// The SID of a user's primary group: the user's domain (their SID without its last part, the RID)
/// followed by `primaryGroupID`.
pub fn primary_group_sid(user_sid: &str, primary_group_id: u32) -> Option<String> {
    let (domain, _rid) = user_sid.rsplit_once('-')?;
    Some(format!("{domain}-{primary_group_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Staff is in Users, Team in Staff; Users is in Team (a cycle); Other stands alone.
    fn graph() -> GroupGraph {
        let mut g = GroupGraph::default();
        g.put(
            "CN=Users,DC=x",
            Some("S-1-5-21-1-2-3-1100".into()),
            &dns(&["CN=Team,DC=x"]),
        );
        g.put(
            "CN=Staff,DC=x",
            Some("S-1-5-21-1-2-3-1101".into()),
            &dns(&["cn=users,dc=x"]),
        );
        g.put(
            "CN=Team,DC=x",
            Some("S-1-5-21-1-2-3-1102".into()),
            &dns(&["CN=Staff,DC=x"]),
        );
        g.put("CN=Other,DC=x", Some("S-1-5-21-1-2-3-513".into()), &[]);
        g
    }

    #[test]
    fn membership_is_transitive_once_per_group_and_survives_a_cycle() {
        let g = graph();
        let all = dns(&["CN=Staff,DC=x", "CN=Team,DC=x", "CN=Users,DC=x"]);
        // (direct groups, primary SID, expected)
        let table: [(&[&str], Option<&str>, Vec<String>); 5] = [
            (&["CN=Team,DC=x"], None, all.clone()),
            (&["cn=staff,dc=x", "CN=Users,DC=x"], None, all.clone()),
            (&[], Some("S-1-5-21-1-2-3-513"), dns(&["CN=Other,DC=x"])),
            (&[], Some("S-1-5-21-9-9-9-513"), Vec::new()),
            (
                &["CN=Unknown,OU=Elsewhere"],
                None,
                dns(&["CN=Unknown,OU=Elsewhere"]),
            ),
        ];
        for (direct, primary, expected) in table {
            assert_eq!(g.effective(&dns(direct), primary), expected, "{direct:?}");
        }
    }

    #[test]
    fn a_changed_parent_nests_and_unnests_its_member_groups() {
        let mut g = graph();
        g.set_members("CN=Other,DC=x", &dns(&["CN=Team,DC=x", "CN=alice,DC=x"]));
        assert!(g
            .effective(&dns(&["CN=Team,DC=x"]), None)
            .contains(&"CN=Other,DC=x".to_owned()));
        g.set_members("CN=Other,DC=x", &[]);
        assert!(!g
            .effective(&dns(&["CN=Team,DC=x"]), None)
            .contains(&"CN=Other,DC=x".to_owned()));
        // Survives the store: the SID index is rebuilt.
        let stored: GroupGraph =
            serde_json::from_slice(&serde_json::to_vec(&g).unwrap_or_default())
                .map(GroupGraph::indexed)
                .unwrap_or_default();
        assert_eq!(
            stored.effective(&[], Some("S-1-5-21-1-2-3-513")),
            dns(&["CN=Other,DC=x"])
        );
    }

    #[test]
    fn a_deleted_group_leaves_the_graph_and_its_nestings() {
        let mut g = graph();
        assert_eq!(
            g.remove_by_sid("S-1-5-21-1-2-3-1100").as_deref(),
            Some("CN=Users,DC=x")
        );
        // Staff was in Users: now Staff's members reach Staff alone (Team is in Staff, not above it).
        assert_eq!(
            g.effective(&dns(&["CN=Staff,DC=x"]), None),
            dns(&["CN=Staff,DC=x"])
        );
        assert_eq!(
            g.effective(&dns(&["CN=Team,DC=x"]), None),
            dns(&["CN=Staff,DC=x", "CN=Team,DC=x"])
        );
        assert_eq!(g.remove_by_sid("S-1-5-21-1-2-3-1100"), None);
        assert_eq!(g.remove_by_sid("S-1-5-21-9-9-9-1"), None);
    }

    #[test]
    fn sids_read_as_windows_writes_them() {
        // S-1-5-21-1004336348-1177238915-682003330-513
        let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1_004_336_348, 1_177_238_915, 682_003_330, 513] {
            raw.extend_from_slice(&sub.to_le_bytes());
        }
        let text = sid_text(&raw);
        assert_eq!(
            text.as_deref(),
            Some("S-1-5-21-1004336348-1177238915-682003330-513")
        );
        assert_eq!(sid_text(&raw[..raw.len() - 1]), None);
        assert_eq!(
            primary_group_sid("S-1-5-21-1-2-3-1105", 513).as_deref(),
            Some("S-1-5-21-1-2-3-513")
        );
    }
}
