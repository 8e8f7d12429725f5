//! Instant user search: the console holds every user (`UserIndex` from the daemon) and filters locally.
//!
//! A query is whitespace-separated terms; a user matches when each term is a case-insensitive substring
//! of their username, UPN, display name or email. Typing usually only lengthens the query, and a longer
//! query can only narrow the result, so the next filter runs over the previous matches instead of all
//! users. docs/BENCHMARKS.md has the numbers for 100,000 users.

use twofold_wire::admin::UserIndexEntry;

pub struct UserIndex {
    entries: Vec<UserIndexEntry>,
    /// Lower-cased searchable fields of each entry, joined by a tab (which no field contains).
    haystacks: Vec<String>,
}

impl UserIndex {
    pub fn new(entries: Vec<UserIndexEntry>) -> UserIndex {
        let haystacks = entries
            .iter()
            .map(|e| {
                let mut s = e.username.to_lowercase();
                for field in [&e.upn, &e.display_name, &e.email].into_iter().flatten() {
                    s.push('\t');
                    s.push_str(&field.to_lowercase());
                }
                s
            })
            .collect();
        UserIndex { entries, haystacks }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, i: u32) -> Option<&UserIndexEntry> {
        self.entries.get(i as usize)
    }

    /// Replaces the entry of the same username (after an action changed the user), if present.
    pub fn update(&mut self, entry: UserIndexEntry) {
        if let Ok(i) = self
            .entries
            .binary_search_by(|e| e.username.as_str().cmp(entry.username.as_str()))
        {
            self.entries[i] = entry;
        }
    }

    /// Indices of the entries matching `query`. `previous` is an earlier query and its result: when the
    /// new query extends it, only those are examined.
    pub fn filter(&self, query: &str, previous: Option<(&str, &[u32])>) -> Vec<u32> {
        let query = query.to_lowercase();
        let terms: Vec<&str> = query.split_whitespace().collect();
        let hit = |i: u32| {
            self.haystacks
                .get(i as usize)
                .is_some_and(|h| terms.iter().all(|t| h.contains(t)))
        };
        match previous {
            Some((before, matches)) if query.starts_with(&before.to_lowercase()) => {
                matches.iter().copied().filter(|&i| hit(i)).collect()
            }
            _ => (0..u32::try_from(self.entries.len()).unwrap_or(u32::MAX))
                .filter(|&i| hit(i))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_wire::TwoFactorState;

    pub fn entry(username: &str, display: &str) -> UserIndexEntry {
        UserIndexEntry {
            username: username.into(),
            upn: Some(format!("{username}@corp.example")),
            display_name: Some(display.into()),
            email: Some(format!("{username}@example.com")),
            enabled: true,
            state: TwoFactorState::Enrolled,
            locked: false,
        }
    }

    fn names(index: &UserIndex, found: &[u32]) -> Vec<String> {
        found
            .iter()
            .filter_map(|&i| index.get(i).map(|e| e.username.clone()))
            .collect()
    }

    #[test]
    fn every_term_must_match_some_field_case_insensitively() {
        let index = UserIndex::new(vec![
            entry("alice", "Alice Smith"),
            entry("bob", "Bob Smith"),
            entry("carol", "Carol Jones"),
        ]);
        assert_eq!(
            names(&index, &index.filter("smith", None)),
            ["alice", "bob"]
        );
        assert_eq!(names(&index, &index.filter("SMITH ali", None)), ["alice"]);
        assert_eq!(names(&index, &index.filter("corp.example", None)).len(), 3);
        assert!(index.filter("nobody", None).is_empty());
        assert_eq!(index.filter("", None).len(), 3);
    }

    #[test]
    fn a_longer_query_narrows_the_previous_result_and_a_different_one_starts_over() {
        let index = UserIndex::new(vec![
            entry("alice", "Alice Smith"),
            entry("bob", "Bob Smith"),
            entry("carol", "Carol Jones"),
        ]);
        let smith = index.filter("smi", None);
        // Narrowing reads only the previous matches: carol, outside them, cannot come back.
        assert_eq!(
            names(&index, &index.filter("smith b", Some(("smi", &smith)))),
            ["bob"]
        );
        assert_eq!(
            names(&index, &index.filter("jones", Some(("smi", &smith)))),
            ["carol"]
        );
    }
}
