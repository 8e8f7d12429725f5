//! Failure counting, per user and per source address.
//!
//! The rule, for each counter (user and address have their own `LockoutRule`):
//! - Each failed attempt adds one. A success clears the user's counter (not the address's: otherwise an
//!   attacker with one valid account could clear their address between guesses).
//! - From `delay_after` failures on, the next attempt must wait `2^(failures - delay_after)` seconds after
//!   the last failure (counted from the end of the clock second it fell in, so never less), capped at
//!   `max_delay_seconds`. An attempt made sooner is refused *without checking the
//!   code* and without counting, so a fast-retrying client cannot lock a user out on its own.
//! - At `max_failures` the counter locks: every attempt is refused unchecked. With `lock_seconds` 0 the
//!   lock holds until an admin unlocks. Otherwise the n-th lock of a run lasts
//!   `lock_seconds * 2^(n-1)`, at most `max_lock_seconds`; when it lifts, the failures start again from
//!   0 (so the delays too) but the run remembers its locks, so each re-lock lasts longer. Nobody can lock
//!   a user for good, and a guesser's rate falls with every lock.
//! - A run (failures and locks) is forgotten `forget_after_seconds` (when not 0) after its last failure
//!   or, once a lock lifted, after the lift: a guesser who keeps going keeps the run, and its locks.
//! - Where the site enables it (`known_address_days`), a user's own delays and lock do not stop an
//!   attempt from an address the user recently succeeded from (`KnownAddresses`); the address's own
//!   counter still does. A guesser elsewhere can then not lock a user out of their usual place.
//!
//! Counters are kept for names that are not users too, so the answers do not tell users from non-users.
//! Each counter has a key: `user:<id>`, `name:<lowercased name>` (a name that is no user) or
//! `addr:<ip>`.
//!
//! Counters live in memory (and the store's journal). `prune` runs at each journal compaction: it drops
//! counters that have run out (forgotten failures, lifted locks of rules whose locks do not grow:
//! dropping them changes no answer), and keeps only the `max_unknown_names` most recently failed names
//! that are no user, so that guessing random names from many addresses cannot grow the daemon's memory
//! without bound. A user's counter is never dropped while it means something.

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

/// The user id of a user's counter key; `None` for the key of a name or an address.
pub fn user_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(USER_PREFIX)
}

/// The counter key of a name that is no user.
pub fn unknown_name_key(name: &str) -> String {
    format!("{NAME_PREFIX}{}", name.to_lowercase())
}

/// The counter key of a source address.
pub fn address_key(ip: IpAddr) -> String {
    // An IPv4 client seen through an IPv6 socket is the same client.
    format!("{ADDRESS_PREFIX}{}", ip.to_canonical())
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
    /// Failures since the run began or its last lock lifted.
    pub failures: u32,
    /// When the last failure was; once a lock lifted, when it lifted (the forget window runs from there).
    pub last_failure: i64,
    /// When the counter reached `max_failures`, while the lock holds.
    pub locked_at: Option<i64>,
    /// Locks in this run, the current one included: the next lasts twice as long as the last.
    #[serde(default)]
    pub locks: u32,
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

impl Gate {
    /// The verdict on an attempt from its user's (or unknown name's) gate and its address's: the
    /// stricter of the two, but the user's is waived for an address the user recently succeeded from.
    pub fn combine(user: Gate, address: Gate, known_address: bool) -> Gate {
        let user = if known_address { Gate::Open } else { user };
        match (user, address) {
            (Gate::Locked(after), _) | (_, Gate::Locked(after)) => Gate::Locked(after),
            (Gate::Wait(a), Gate::Wait(b)) => Gate::Wait(a.max(b)),
            (Gate::Wait(s), Gate::Open) | (Gate::Open, Gate::Wait(s)) => Gate::Wait(s),
            (Gate::Open, Gate::Open) => Gate::Open,
        }
    }
}

impl LockoutRule {
    /// How long the `locks`-th lock of a run lasts; `None`: until an admin unlocks.
    pub fn lock_duration(&self, locks: u32) -> Option<u64> {
        if self.lock_seconds == 0 {
            return None;
        }
        let doubled = 1u64
            .checked_shl(locks.saturating_sub(1).min(63))
            .and_then(|factor| self.lock_seconds.checked_mul(factor))
            .unwrap_or(u64::MAX);
        Some(doubled.min(self.longest_lock()))
    }

    fn longest_lock(&self) -> u64 {
        self.max_lock_seconds
            .unwrap_or(self.lock_seconds)
            .max(self.lock_seconds)
    }

    /// Whether a later lock of a run lasts longer than the first.
    fn locks_grow(&self) -> bool {
        self.lock_seconds > 0 && self.longest_lock() > self.lock_seconds
    }
}

impl FailureCount {
    /// The counter as it stands at `now`: a lock that ran out lifted, a forgotten run dropped.
    pub fn current(self, rule: &LockoutRule, now: i64) -> FailureCount {
        let mut c = self;
        if let Some(locked_at) = c.locked_at {
            let Some(duration) = rule.lock_duration(c.locks) else {
                return c;
            };
            let lifts_at = locked_at.saturating_add(secs(duration));
            if now < lifts_at {
                return c;
            }
            if !rule.locks_grow() {
                return FailureCount::default();
            }
            c = FailureCount {
                failures: 0,
                last_failure: lifts_at,
                locked_at: None,
                locks: c.locks,
            };
        }
        if rule.forget_after_seconds > 0
            && (c.failures > 0 || c.locks > 0)
            && now
                >= c.last_failure
                    .saturating_add(secs(rule.forget_after_seconds))
        {
            return FailureCount::default();
        }
        c
    }

    pub fn gate(self, rule: &LockoutRule, now: i64) -> Gate {
        let c = self.current(rule, now);
        if let Some(locked_at) = c.locked_at {
            return Gate::Locked(
                rule.lock_duration(c.locks)
                    .map(|d| remaining(locked_at.saturating_add(secs(d)), now)),
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

    /// The counter after one more failure at `now`. A failure while locked (from a known address)
    /// counts but neither moves nor lengthens the lock.
    pub fn fail(self, rule: &LockoutRule, now: i64) -> FailureCount {
        let c = self.current(rule, now);
        let failures = c.failures.saturating_add(1);
        let locks_now = c.locked_at.is_none() && failures >= rule.max_failures;
        FailureCount {
            failures,
            last_failure: now,
            locked_at: c.locked_at.or(locks_now.then_some(now)),
            locks: c.locks.saturating_add(u32::from(locks_now)),
        }
    }
}

/// Addresses a user recently succeeded from (address counter keys, with the time of the last success
/// from each), the most recent first: at most `KNOWN_ADDRESSES` of them, each for `days` after its last
/// success. Bounded, so that a user who roams cannot grow it, and short, because a lock it waives
/// should be waived only where the user really is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownAddresses(pub Vec<(String, i64)>);

/// Addresses remembered per user: home, office, a phone's carrier and a VPN, about.
pub const KNOWN_ADDRESSES: usize = 4;
/// A known address's time is written again only once it is this old, so that a user who signs in
/// often from one place costs one store write a day, not one per sign-in.
const KNOWN_ADDRESS_REFRESH_SECONDS: i64 = 86_400;

impl KnownAddresses {
    pub fn knows(&self, addr_key: &str, now: i64, days: u32) -> bool {
        self.0
            .iter()
            .any(|(key, at)| key == addr_key && !expired(*at, now, days))
    }

    /// The list after a success from `addr_key` at `now`; `None` when it need not be written again.
    pub fn remember(&self, addr_key: &str, now: i64, days: u32) -> Option<KnownAddresses> {
        let fresh = self.0.iter().any(|(key, at)| {
            key == addr_key && now.saturating_sub(*at) < KNOWN_ADDRESS_REFRESH_SECONDS
        });
        if fresh {
            return None;
        }
        let mut list: Vec<(String, i64)> = self
            .0
            .iter()
            .filter(|(key, at)| key != addr_key && !expired(*at, now, days))
            .cloned()
            .collect();
        list.insert(0, (addr_key.to_owned(), now));
        list.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        list.truncate(KNOWN_ADDRESSES);
        Some(KnownAddresses(list))
    }
}

fn expired(at: i64, now: i64, days: u32) -> bool {
    now >= at.saturating_add(i64::from(days).saturating_mul(86_400))
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
    use crate::config::MAX_FAILURES_CEILING;

    #[test]
    fn prune_drops_what_ran_out_and_the_oldest_unknown_names_beyond_the_cap() {
        let config = LockoutConfig {
            user: rule(10, 3, 60, 0, 0),
            address: rule(100, 50, 30, 900, 900),
            max_unknown_names: 2,
            known_address_days: 0,
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
            max_lock_seconds: None,
            forget_after_seconds: forget,
        }
    }

    #[test]
    fn locks_lift_grow_and_are_forgotten_as_a_table() {
        let r = LockoutRule {
            max_lock_seconds: Some(400),
            ..rule(2, 2, 1, 100, 1000)
        };
        enum Step {
            Fail(i64),
            Expect(i64, Gate),
        }
        use Step::{Expect, Fail};
        let steps = [
            Fail(0),
            Fail(0),
            // the first lock: lock_seconds
            Expect(0, Gate::Locked(Some(100))),
            Expect(99, Gate::Locked(Some(1))),
            Expect(100, Gate::Open),
            // after the lift the failures start from 0: no delay, two to lock again
            Fail(100),
            Expect(100, Gate::Open),
            Fail(100),
            // the second lock lasts twice as long, the third twice that
            Expect(100, Gate::Locked(Some(200))),
            Expect(300, Gate::Open),
            Fail(300),
            Fail(300),
            Expect(300, Gate::Locked(Some(400))),
            // the fourth would be 800: max_lock_seconds holds it at 400
            Fail(700),
            Fail(700),
            Expect(700, Gate::Locked(Some(400))),
            // forget_after_seconds counts from the lift (1100): at 2099 the run is remembered...
            Expect(2099, Gate::Open),
            Fail(2099),
            Fail(2099),
            Expect(2099, Gate::Locked(Some(400))),
            // ... and a quiet forget window after a lift starts the locks from lock_seconds again
            Fail(3499),
            Fail(3499),
            Expect(3499, Gate::Locked(Some(100))),
        ];
        let mut c = FailureCount::default();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Fail(t) => c = c.fail(&r, t),
                Expect(t, expected) => assert_eq!(c.gate(&r, t), expected, "step {i}: {c:?}"),
            }
        }
    }

    /// A guesser going flat out, from a fresh counter: the times of the codes that get checked.
    fn checked_guesses(r: &LockoutRule, for_seconds: i64) -> Vec<i64> {
        let (mut c, mut t, mut checked) = (FailureCount::default(), 0, Vec::new());
        while t < for_seconds {
            match c.gate(r, t) {
                Gate::Open => {
                    c = c.fail(r, t);
                    checked.push(t);
                }
                Gate::Wait(s) | Gate::Locked(Some(s)) => t += secs(s),
                Gate::Locked(None) => break,
            }
        }
        checked
    }

    fn most_in_any_window(times: &[i64], window: i64) -> usize {
        let mut first = 0;
        (0..times.len())
            .map(|last| {
                while times[last] - times[first] >= window {
                    first += 1;
                }
                last - first + 1
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_default_user_rule_checks_at_most_70_codes_a_day_and_never_locks_for_good() {
        const DAY: i64 = 86_400;
        let r = LockoutRule::user_default();
        let year = checked_guesses(&r, 365 * DAY);
        // (what, codes checked): the figures packaging/twofold.toml gives.
        let table = [
            ("first hour", year.iter().filter(|&&t| t < 3600).count()),
            ("first day", year.iter().filter(|&&t| t < DAY).count()),
            ("most in any day", most_in_any_window(&year, DAY)),
            ("a year", year.len()),
        ];
        assert_eq!(
            table,
            [
                ("first hour", 30),
                ("first day", 70),
                ("most in any day", 70),
                ("a year", 3710)
            ]
        );
        assert!(
            table[2].1 <= MAX_FAILURES_CEILING as usize,
            "NIST SP 800-63B"
        );
        // Flat out, the last code of the year was checked within a day and a bit of the year's end:
        // locks last a day at most, so the guesser (or the user) is never shut out for longer.
        let last = year.last().copied().unwrap_or_default();
        assert!(365 * DAY - last <= DAY + 200, "last checked at {last}");
    }

    #[test]
    fn the_user_gate_is_waived_from_a_known_address_and_the_address_gate_never() {
        let (open, wait, locked) = (Gate::Open, Gate::Wait(5), Gate::Locked(Some(60)));
        // (user, address, from a known address, verdict)
        let table = [
            (open, open, false, open),
            (locked, open, false, locked),
            (wait, open, false, wait),
            (open, wait, false, wait),
            (Gate::Wait(3), Gate::Wait(7), false, Gate::Wait(7)),
            (locked, wait, false, locked),
            (Gate::Locked(None), open, false, Gate::Locked(None)),
            (locked, open, true, open),
            (Gate::Locked(None), open, true, open),
            (wait, open, true, open),
            (locked, wait, true, wait),
            (open, locked, true, locked),
            (locked, locked, true, locked),
        ];
        for (i, (user, address, known, expected)) in table.into_iter().enumerate() {
            assert_eq!(Gate::combine(user, address, known), expected, "row {i}");
        }
    }

    #[test]
    fn known_addresses_keep_the_latest_four_for_their_days() {
        const DAY: i64 = 86_400;
        let a = |n: u8| format!("addr:192.0.2.{n}");
        let empty = KnownAddresses::default();
        assert!(!empty.knows(&a(1), 0, 30));
        let one = empty.remember(&a(1), 0, 30).unwrap_or_default();
        assert_eq!(one, KnownAddresses(vec![(a(1), 0)]));
        // (asked at, address, known)
        for (now, address, known) in [
            (0, a(1), true),
            (30 * DAY - 1, a(1), true),
            (30 * DAY, a(1), false),
            (0, a(2), false),
        ] {
            assert_eq!(one.knows(&address, now, 30), known, "{address} at {now}");
        }
        assert_eq!(
            one.remember(&a(1), DAY - 1, 30),
            None,
            "a fresh entry is not written again"
        );
        assert_eq!(
            one.remember(&a(1), DAY, 30),
            Some(KnownAddresses(vec![(a(1), DAY)]))
        );
        let mut list = one;
        for n in 2..=5 {
            list = list
                .remember(&a(n), i64::from(n) * DAY, 30)
                .unwrap_or_default();
        }
        let kept: Vec<&str> = list.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kept,
            [
                "addr:192.0.2.5",
                "addr:192.0.2.4",
                "addr:192.0.2.3",
                "addr:192.0.2.2"
            ]
        );
        // at day 32 the address last seen at day 2 has expired: it goes at the next write
        let later = list.remember(&a(9), 32 * DAY, 30).unwrap_or_default();
        let kept: Vec<&str> = later.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kept,
            [
                "addr:192.0.2.9",
                "addr:192.0.2.5",
                "addr:192.0.2.4",
                "addr:192.0.2.3"
            ]
        );
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
