//! The daemon run in-process on a manual clock: time windows, growing delays and timed locks are tested
//! as tables over time, without waiting for time to pass.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use serde_json::json;
use twofold_tests::{base_config, Admin, Api, TempDir};
use twofoldd::clock::ManualClock;
use twofoldd::config::Config;
use twofoldd::totp::{code_at, TotpParams};

/// 10 s into a 30 s step.
const T0: i64 = 1_700_000_010;

struct InProcess {
    _dir: TempDir,
    clock: Arc<ManualClock>,
    handle: twofoldd::DaemonHandle,
    api: Api,
    admin: Admin,
}

async fn start(extra: &str) -> Result<InProcess> {
    start_on(
        TempDir::new("twofold-clock")?,
        ManualClock::new(T0),
        extra,
        "app",
    )
    .await
}

/// Starts the daemon on `dir`'s data, with an API key of its own named `key`.
async fn start_on(
    dir: TempDir,
    clock: Arc<ManualClock>,
    extra: &str,
    key: &str,
) -> Result<InProcess> {
    let config = Config::parse(&format!("{}{extra}", base_config(dir.path())))
        .map_err(|e| anyhow!("{e:?}"))?;
    let handle = twofoldd::start(config, clock.clone()).await?;
    let mut admin = Admin::connect(&handle.admin_socket)?;
    let api = Api::new(
        &handle.api_addr.to_string(),
        &dir.path().join("tls/cert.pem"),
    )?
    .with_key(&admin.api_key(key)?);
    Ok(InProcess {
        _dir: dir,
        clock,
        handle,
        api,
        admin,
    })
}

impl InProcess {
    /// Stops the daemon and starts it again on the same data and clock.
    async fn restart(self, extra: &str, key: &str) -> Result<InProcess> {
        let InProcess {
            _dir: dir,
            clock,
            handle,
            api,
            admin,
        } = self;
        // Their connections hold the service, and with it the store, open.
        drop((api, admin));
        handle.shutdown().await?;
        start_on(dir, clock, extra, key).await
    }

    async fn enroll(&mut self, user: &str) -> Result<Vec<u8>> {
        self.admin.create_user(user)?;
        self.enroll_existing(user).await
    }

    /// Enrolls a TOTP device for a user the daemon already has (a synced one).
    async fn enroll_existing(&mut self, user: &str) -> Result<Vec<u8>> {
        let started = self
            .api
            .post(&format!("/api/v1/users/{user}/totp"), &json!({}))
            .await?;
        let secret = data_encoding::BASE32_NOPAD.decode(
            started.body["secret"]
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let device = started.body["device"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let code = code_at(TotpParams::default(), &secret, self.clock_now() - 30)?;
        let confirmed = self
            .api
            .post(
                &format!("/api/v1/users/{user}/totp/{device}/confirm"),
                &json!({"code": code}),
            )
            .await?;
        assert_eq!(confirmed.status, 200, "{}", confirmed.raw);
        Ok(secret)
    }

    fn clock_now(&self) -> i64 {
        use twofoldd::clock::Clock;
        self.clock.now()
    }

    async fn verify(&self, user: &str, code: &str) -> Result<(String, Option<u64>)> {
        let a = self
            .api
            .post("/api/v1/verify", &json!({"user": user, "code": code}))
            .await?;
        assert_eq!(a.status, 200, "{}", a.raw);
        let outcome = match a.body["result"].as_str() {
            Some("accept") => "accept".to_owned(),
            _ => a.body["reason"].as_str().unwrap_or("?").to_owned(),
        };
        Ok((outcome, a.body["retry_after"].as_u64()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_moves_with_the_clock_and_used_steps_stay_used() -> Result<()> {
    let mut d = start("").await?;
    let secret = d.enroll("rosa").await?;
    let code = |t: i64| code_at(TotpParams::default(), &secret, t);
    // (clock advance before the attempt, code's time, expected outcome)
    let table: &[(i64, i64, &str)] = &[
        (0, T0, "accept"),
        (0, T0 + 60, "invalid_code"),   // two steps ahead: outside ±1
        (0, T0 + 30, "accept"),         // one step ahead
        (30, T0 + 60, "accept"),        // the clock moved: now one step ahead
        (300, T0 + 30, "invalid_code"), // long past: outside the window
        (0, T0 + 330, "accept"),
        (0, T0 + 300, "replayed"), // inside the window but before the last used step
        (0, T0 + 330, "replayed"),
    ];
    for (i, &(advance, at, expected)) in table.iter().enumerate() {
        d.clock.advance(advance);
        let (outcome, _) = d.verify("rosa", &code(at)?).await?;
        assert_eq!(outcome, expected, "row {i}");
    }
    d.handle.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_grow_then_a_timed_lock_lifts() -> Result<()> {
    let mut d = start(
        "[lockout.user]\nmax_failures = 5\ndelay_after = 2\nmax_delay_seconds = 600\nlock_seconds = 3600\nforget_after_seconds = 0\n",
    )
    .await?;
    let secret = d.enroll("sam").await?;
    // (clock advance before the attempt, code sent, expected outcome, expected retry_after)
    let table: &[(i64, &str, &str, Option<u64>)] = &[
        (0, "000000", "invalid_code", None),
        (0, "000000", "invalid_code", None),
        // 2 failures in clock second 0, which may have ended at 0.999: 1 s of wait runs to 2
        (0, "000000", "rate_limited", Some(2)),
        (1, "000000", "rate_limited", Some(1)),
        (1, "000000", "invalid_code", None), // 3rd failure, at 2
        (0, "000000", "rate_limited", Some(3)), // wait doubles: 2 s from 3
        (1, "000000", "rate_limited", Some(2)),
        (2, "000000", "invalid_code", None), // 4th, at 5: 4 s from 6
        (5, "000000", "invalid_code", None), // 5th: locked for an hour
        (0, "000000", "locked", Some(3600)),
        (3599, "000000", "locked", Some(1)),
    ];
    for (i, &(advance, code, expected, retry)) in table.iter().enumerate() {
        d.clock.advance(advance);
        let (outcome, retry_after) = d.verify("sam", code).await?;
        assert_eq!(
            (outcome.as_str(), retry_after),
            (expected, retry),
            "row {i}"
        );
    }
    d.clock.advance(1);
    let now = d.clock_now();
    let (outcome, _) = d
        .verify("sam", &code_at(TotpParams::default(), &secret, now)?)
        .await?;
    assert_eq!(outcome, "accept", "the lock lifted after lock_seconds");
    d.handle.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_drops_counters_that_ran_out_and_caps_guessed_names() -> Result<()> {
    let mut d = start(
        "[lockout]\nmax_unknown_names = 2\n[lockout.user]\nmax_failures = 3\ndelay_after = 3\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n[lockout.address]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 60\nforget_after_seconds = 60\n",
    )
    .await?;
    d.admin.create_user("real")?;
    assert_eq!(d.verify("real", "000000").await?.0, "invalid_code");
    // Three names that are no user, locked one second apart: ghost1 is the least recent.
    for ghost in ["ghost1", "ghost2", "ghost3"] {
        for _ in 0..3 {
            assert_eq!(d.verify(ghost, "000000").await?.0, "invalid_code");
        }
        assert_eq!(d.verify(ghost, "000000").await?.0, "locked");
        d.clock.advance(1);
    }
    // user:real, name:ghost1-3, addr:127.0.0.1; the cap of 2 unknown names drops ghost1.
    let done = d.handle.service.compact_journal()?;
    assert_eq!((done.counters_dropped, done.counters_kept), (1, 4));
    assert_eq!(d.verify("ghost3", "000000").await?.0, "locked");
    assert_eq!(
        d.verify("ghost1", "000000").await?.0,
        "invalid_code",
        "a dropped name starts again from zero"
    );
    // The address's failures are forgotten 60 s after the last; the user's never are. ghost1 failed
    // again, so of the three names ghost2 is now the least recent: dropped for the cap.
    d.clock.advance(61);
    let done = d.handle.service.compact_journal()?;
    assert_eq!((done.counters_dropped, done.counters_kept), (2, 3));
    assert_eq!(d.verify("ghost3", "000000").await?.0, "locked");
    assert_eq!(d.verify("ghost2", "000000").await?.0, "invalid_code");
    d.handle.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_past_the_retention_go_by_whole_segments_and_their_going_is_audited(
) -> Result<()> {
    use twofold_wire::admin::{AdminReply, AdminRequest, AuditEvent, AuditLogStatus};
    const DAY: i64 = 86_400;
    // Failures kept until a success (the shipped rule forgets them after a quiet day).
    let extra = "[audit]\nretention_days = 30\n[lockout.user]\nmax_failures = 10\ndelay_after = 3\nmax_delay_seconds = 60\nlock_seconds = 900\nforget_after_seconds = 0\n";
    let audit_log = |admin: &mut Admin| -> Result<AuditLogStatus> {
        match admin.ok(&AdminRequest::Status)? {
            AdminReply::Status(s) => s.audit_log.ok_or_else(|| anyhow!("no audit_log")),
            other => Err(anyhow!("unexpected {other:?}")),
        }
    };
    let audit = |admin: &mut Admin| -> Result<Vec<AuditEvent>> {
        match admin.ok(&AdminRequest::AuditTail { limit: Some(1000) })? {
            AdminReply::Audit { events } => Ok(events),
            other => Err(anyhow!("unexpected {other:?}")),
        }
    };
    let mut d = start(extra).await?;
    let secret = d.enroll("rosa").await?;
    let code = code_at(TotpParams::default(), &secret, T0)?;
    assert_eq!(d.verify("rosa", &code).await?.0, "accept");
    let first_day = audit(&mut d.admin)?;
    assert!(first_day.iter().all(|e| e.time == T0), "{first_day:?}");

    // A day on, the compaction starts a new journal segment: the first day's events are in a finished
    // one, which is younger than the retention and stays.
    d.clock.advance(DAY + 60);
    assert_eq!(d.handle.service.compact_journal()?.segments_dropped, 0);
    assert_eq!(d.verify("rosa", "000000").await?.0, "invalid_code");
    let log = audit_log(&mut d.admin)?;
    assert_eq!(
        (log.segments, log.oldest_event, log.retention_days),
        (2, Some(T0), 30)
    );

    // 30 days after the first day, its segment goes, and the log says so; the second day's stays.
    d.clock.advance(29 * DAY);
    assert_eq!(d.handle.service.compact_journal()?.segments_dropped, 1);
    let events = audit(&mut d.admin)?;
    let first = &events[0];
    assert_eq!(
        (first.time, first.action.as_str(), first.outcome.as_str()),
        (T0 + DAY + 60, "verify", "reject"),
        "{events:?}"
    );
    let dropped = events.last().ok_or_else(|| anyhow!("no events"))?;
    assert_eq!(
        (dropped.actor.as_str(), dropped.action.as_str()),
        ("daemon", "audit_retention")
    );
    let first_id = first_day.first().map_or(0, |e| e.id);
    let last_id = first_day.last().map_or(0, |e| e.id);
    assert_eq!(
        dropped
            .detail
            .as_deref()
            .and_then(|d| d.split_once(" bytes="))
            .map(|(head, _)| head),
        Some("segments=1")
    );
    assert!(
        dropped.detail.as_deref().is_some_and(|d| d.ends_with(&format!(
            " events={first_id}..{last_id} from=2023-11-14T22:13:30Z to=2023-11-14T22:13:30Z retention_days=30"
        ))),
        "{dropped:?}"
    );
    let log = audit_log(&mut d.admin)?;
    assert_eq!((log.segments, log.oldest_event), (2, Some(T0 + DAY + 60)));

    // After a restart the device's use and the user's failure, recorded in the segment that went and
    // in the one that stayed, are both still known.
    let mut d = d.restart(extra, "app-2").await?;
    match d.admin.ok(&AdminRequest::UserShow {
        user: "rosa".into(),
    })? {
        AdminReply::User(u) => {
            assert_eq!((u.devices[0].last_used, u.failures), (Some(T0), 1), "{u:?}")
        }
        other => return Err(anyhow!("unexpected {other:?}")),
    }
    assert_eq!(audit(&mut d.admin)?[0].time, T0 + DAY + 60);
    d.handle.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_lock_lifts_and_each_relock_lasts_twice_as_long() -> Result<()> {
    let mut d = start("").await?;
    let secret = d.enroll("lee").await?;
    let wrong = |now: i64| -> Result<String> {
        let right: u32 = code_at(TotpParams::default(), &secret, now)?.parse()?;
        Ok(format!("{:06}", (right + 500_000) % 1_000_000))
    };
    // A guesser going flat out under the shipped defaults: each refusal's retry_after is waited out on
    // the clock. (codes checked before the lock, the lock's retry_after)
    let mut locks = Vec::new();
    let mut checked = 0;
    for _ in 0..100 {
        let (outcome, retry_after) = d.verify("lee", &wrong(d.clock_now())?).await?;
        match outcome.as_str() {
            "invalid_code" => checked += 1,
            "rate_limited" => d.clock.advance(retry_after.unwrap_or(0) as i64),
            "locked" => {
                locks.push((checked, retry_after));
                d.clock.advance(retry_after.unwrap_or(0) as i64);
            }
            other => panic!("unexpected {other}"),
        }
        if locks.len() == 2 {
            break;
        }
    }
    assert_eq!(
        locks,
        vec![(10, Some(900)), (20, Some(1800))],
        "locks of 15 min, then 30, each after 10 codes"
    );
    let now = d.clock_now();
    let (outcome, _) = d
        .verify("lee", &code_at(TotpParams::default(), &secret, now)?)
        .await?;
    assert_eq!(outcome, "accept", "the second lock lifted after 1800 s");
    d.handle.shutdown().await?;
    Ok(())
}

/// AD lifts a lockout by itself once the domain's lockoutDuration (Samba's default: 30 minutes) has run,
/// without changing the user's uSNChanged: no incremental sync sees it. Twofold keeps when it ends, so
/// the user signs in again on time, with no sync in between. The daemon runs on a manual clock set to
/// the real time, since the DC stamps lockoutTime with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ad_lockout_ends_by_itself_after_the_domains_lockout_duration() -> Result<()> {
    use twofold_tests::samba::shared_dc;
    let dc = shared_dc()?;
    let base = crate::directory::make_ou(dc, "LockEnds", &["lockend-eve"])?;
    let dn = format!("CN=lockend-eve,{base}");
    let mut d = start_on(
        TempDir::new("twofold-clock")?,
        ManualClock::new(twofold_tests::unix_now()),
        &dc.directory_config("corp", crate::directory::LDAPS, &base, ""),
        "app",
    )
    .await?;
    let full = crate::directory::sync(&mut d.admin, true)?;
    assert!(full.ok && full.entries == 1, "{full:?}");
    let secret = d.enroll_existing("lockend-eve").await?;
    // AD locks eve now; the incremental sync sees it.
    let lockout_time = (twofold_tests::unix_now() + 11_644_473_600) * 10_000_000;
    dc.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: {lockout_time}\n\n"
    ))?;
    let inc = crate::directory::sync(&mut d.admin, false)?;
    assert!(inc.ok && inc.mode == "incremental", "{inc:?}");
    let eve = crate::directory::user(&mut d.admin, "lockend-eve")?
        .ok_or_else(|| anyhow!("lockend-eve lost"))?;
    let until = eve
        .directory
        .as_ref()
        .filter(|l| l.locked_out)
        .and_then(|l| l.locked_until)
        .ok_or_else(|| anyhow!("not locked, or no end to the lockout: {eve:?}"))?;
    // lockoutTime + 30 minutes, to the second (lockoutTime was written in whole seconds).
    assert_eq!(until, lockout_time / 10_000_000 - 11_644_473_600 + 1800);
    let code = |t: i64| code_at(TotpParams::default(), &secret, t);
    // (seconds the clock moves before the attempt, outcome)
    let table: [(i64, &str); 3] = [
        (60, "invalid_code"),
        (1800 - 120, "invalid_code"),
        (90, "accept"),
    ];
    for (row, (advance, expected)) in table.into_iter().enumerate() {
        d.clock.advance(advance);
        let now = d.clock_now();
        let (outcome, _) = d.verify("lockend-eve", &code(now)?).await?;
        assert_eq!(
            outcome,
            expected,
            "row {row}: {} s before the end",
            until - now
        );
    }
    d.handle.shutdown().await?;
    dc.modify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: 0\n\n"
    ))?;
    Ok(())
}
