//! Failure counting, per user and per source address.
//!
//! The rule, for each counter (user and address have their own `LockoutRule`):
//! - Each failed attempt adds one. A success clears the user's counter (not the address's: otherwise an
//!   attacker with one valid account could clear their address between guesses).
//! - From `delay_after` failures on, the next attempt must wait `2^(failures - delay_after)` seconds after
//!   the last failure (counted from the end of the clock second it fell in, so never less), capped at
//!   `max_delay_seconds`. An attempt made sooner is refused *without checking the
//!   code* and without counting, so a fast-retrying client cannot lock a user out on its own.
//! - At `max_failures` the counter locks: every attempt is refused unchecked until an admin unlocks, or
//!   until `lock_seconds` pass when that is not 0.
//! - Failures older than `forget_after_seconds` (when not 0) no longer count.
//!
//! Counters are kept for names that are not users too, so the answers do not tell users from non-users.
//! Each counter has a key: `user:<id>`, `name:<lowercased name>` (a name that is no user) or
//! `addr:<ip>`.
//!
//! Counters live in memory (and the store's journal). `prune` runs at each journal compaction: it drops
//! counters that have run out (forgotten failures, expired locks: dropping them changes no answer), and
//! keeps only the `max_unknown_names` most recently failed names that are no user, so that guessing
//! random names from many addresses cannot grow the daemon's memory without bound. A user's counter is
//! never dropped while it means something.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{LockoutConfig, LockoutRule};

const USER_PREFIX: &str = "user:";
const NAME_PREFIX: &str = "name:";
pub(crate) const ADDRESS_PREFIX: &str = "addr:";

/// The counter key of a user.
pub fn user_key(id: &str) -> String {
    format!("{USER_PREFIX}{id}")
}

/// The counter key of a name that is no user.
pub fn unknown_name_key(name: &str) -> String {
    format!("{NAME_PREFIX}{}", name.to_lowercase())
}

/// The counter key of a source address.
pub fn address_key(ip: IpAddr) -> String {
    // An IPv4 client seen through an IPv6 socket is the same client.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    format!("{ADDRESS_PREFIX}{ip}")
}

/// Drops the counters that no longer mean anything at `now`, then the least recently failed names that
/// are no user beyond `config.max_unknown_names`. Returns how many were dropped.
pub fn prune(
    counters: &mut HashMap<String, FailureCount>,
    config: &LockoutConfig,
    now: i64,
) -> usize {
    let before = counters.len();
    counters.retain(|key, count| {
        let rule = if key.starts_with(ADDRESS_PREFIX) {
            &config.address
        } else {
            &config.user
        };
        count.current(rule, now) != FailureCount::default()
    });
    let mut unknown: Vec<(i64, String)> = counters
        .iter()
        .filter(|(key, _)| key.starts_with(NAME_PREFIX))
        .map(|(key, count)| (count.last_failure, key.clone()))
        .collect();
    if unknown.len() > config.max_unknown_names {
        let excess = unknown.len() - config.max_unknown_names;
        unknown.select_nth_unstable(excess - 1);
        for (_, key) in &unknown[..excess] {
            counters.remove(key);
        }
    }
    before - counters.len()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    pub failures: u32,
    pub last_failure: i64,
    /// When the counter reached `max_failures`.
    pub locked_at: Option<i64>,
}

/// Whether an attempt may be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too soon after the last failure: retry after this many seconds.
    Wait(u64),
    /// Locked; `Some(s)`: the lock lifts in s seconds, `None`: until an admin unlocks.
    Locked(Option<u64>),
}

impl FailureCount {
    /// The counter as it stands at `now`, with forgotten failures and expired locks dropped.
    pub fn current(self, rule: &LockoutRule, now: i64) -> FailureCount {
        if let Some(locked_at) = self.locked_at {
            if rule.lock_seconds > 0 && now >= locked_at.saturating_add(secs(rule.lock_seconds)) {
                return FailureCount::default();
            }
            return self;
        }
        if rule.forget_after_seconds > 0
            && self.failures > 0
            && now
                >= self
                    .last_failure
                    .saturating_add(secs(rule.forget_after_seconds))
        {
            return FailureCount::default();
        }
        self
    }

    pub fn gate(self, rule: &LockoutRule, now: i64) -> Gate {
        let c = self.current(rule, now);
        if let Some(locked_at) = c.locked_at {
            return Gate::Locked(
                (rule.lock_seconds > 0)
                    .then(|| remaining(locked_at.saturating_add(secs(rule.lock_seconds)), now)),
            );
        }
        if c.failures >= rule.delay_after && c.failures > 0 {
            let exponent = (c.failures - rule.delay_after).min(32);
            let delay = 1u64
                .checked_shl(exponent)
                .unwrap_or(u64::MAX)
                .min(rule.max_delay_seconds);
            // The clock has whole seconds: a failure stamped t happened somewhere in [t, t+1), so the
            // wait runs from t+1, or a "1 s" delay could end milliseconds after the failure.
            let ready_at = c.last_failure.saturating_add(1).saturating_add(secs(delay));
            if now < ready_at {
                return Gate::Wait(remaining(ready_at, now));
            }
        }
        Gate::Open
    }

    /// The counter after one more failure at `now`.
    pub fn fail(self, rule: &LockoutRule, now: i64) -> FailureCount {
        let c = self.current(rule, now);
        let failures = c.failures.saturating_add(1);
        FailureCount {
            failures,
            last_failure: now,
            locked_at: c
                .locked_at
                .or((failures >= rule.max_failures).then_some(now)),
        }
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn remaining(at: i64, now: i64) -> u64 {
    u64::try_from(at.saturating_sub(now)).unwrap_or(0).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_what_ran_out_and_the_oldest_unknown_names_beyond_the_cap() {
        let config = LockoutConfig {
            user: rule(10, 3, 60, 0, 0),
            address: rule(100, 50, 30, 900, 900),
            max_unknown_names: 2,
        };
        let failed = |times: &[i64]| after(&config.user, times);
        let mut counters: HashMap<String, FailureCount> = [
            // a user's failures are never forgotten under this rule
            (user_key("u1"), failed(&[0])),
            // an address's failures are forgotten after 900 s, its lock lifts after 900 s
            ("addr:10.0.0.1".to_owned(), after(&config.address, &[0])),
            ("addr:10.0.0.2".to_owned(), after(&config.address, &[950])),
            // names that are no user: the two latest stay
            (unknown_name_key("Ghost1"), failed(&[10])),
            (unknown_name_key("ghost2"), failed(&[30])),
            (unknown_name_key("ghost3"), failed(&[20])),
        ]
        .into_iter()
        .collect();
        assert_eq!(prune(&mut counters, &config, 1000), 2);
        let mut kept: Vec<&str> = counters.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            vec!["addr:10.0.0.2", "name:ghost2", "name:ghost3", "user:u1"]
        );
        assert_eq!(
            prune(&mut counters, &config, 1000),
            0,
            "nothing left to drop"
        );
        assert_eq!(
            prune(&mut counters, &config, 2000),
            1,
            "the address forgotten"
        );
    }

    fn rule(max: u32, delay_after: u32, max_delay: u64, lock: u64, forget: u64) -> LockoutRule {
        LockoutRule {
            max_failures: max,
            delay_after,
            max_delay_seconds: max_delay,
            lock_seconds: lock,
            forget_after_seconds: forget,
        }
    }

    fn after(rule: &LockoutRule, times: &[i64]) -> FailureCount {
        times
            .iter()
            .fold(FailureCount::default(), |c, &t| c.fail(rule, t))
    }

    #[test]
    fn the_rule_as_a_table() {
        let r = rule(10, 3, 60, 0, 0);
        // (failures made at these times, asked at, expected gate)
        let table: &[(&[i64], i64, Gate)] = &[
            (&[], 0, Gate::Open),
            (&[0, 0], 0, Gate::Open),
            // a failure at second 0 may have been at 0.999: a 1 s wait runs to 2
            (&[0, 0, 0], 0, Gate::Wait(2)),
            (&[0, 0, 0], 1, Gate::Wait(1)),
            (&[0, 0, 0], 2, Gate::Open),
            (&[0, 1, 2, 3], 3, Gate::Wait(3)),
            (&[0, 1, 2, 3], 6, Gate::Open),
            (&[0, 1, 2, 3, 6, 11], 11, Gate::Wait(9)),
            (&[0, 1, 2, 3, 6, 11], 19, Gate::Wait(1)),
            (&[0, 1, 2, 3, 6, 11], 20, Gate::Open),
            // the delay never exceeds max_delay_seconds (plus the failure's own second)
            (&[0, 0, 0, 0, 0, 0, 0, 0, 0], 0, Gate::Wait(61)),
            (&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, Gate::Locked(None)),
            // a lock without expiry holds forever
            (
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                1_000_000,
                Gate::Locked(None),
            ),
        ];
        for (i, (times, now, expected)) in table.iter().enumerate() {
            assert_eq!(after(&r, times).gate(&r, *now), *expected, "row {i}");
        }
    }

    #[test]
    fn timed_locks_lift_and_old_failures_are_forgotten() {
        let r = rule(3, 3, 30, 900, 600);
        let locked = after(&r, &[100, 100, 100]);
        assert_eq!(locked.gate(&r, 100), Gate::Locked(Some(900)));
        assert_eq!(locked.gate(&r, 999), Gate::Locked(Some(1)));
        assert_eq!(locked.gate(&r, 1000), Gate::Open);
        let two = after(&r, &[0, 0]);
        assert_eq!(two.current(&r, 599).failures, 2);
        assert_eq!(two.current(&r, 600).failures, 0);
        // a failure after forgetting starts from one again
        assert_eq!(two.fail(&r, 700).failures, 1);
    }

    #[test]
    fn counting_stops_growing_the_lock() {
        let r = rule(2, 2, 1, 0, 0);
        let c = after(&r, &[5, 6, 7]);
        assert_eq!(c.locked_at, Some(6));
        assert_eq!(c.failures, 3);
    }
}
