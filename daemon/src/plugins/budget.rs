//! What one call into a plugin may spend, and why it was stopped.
//!
//! The rule: a plugin is stopped when the CPU its thread used inside the plugin passes the CPU budget
//! (`[delivery] plugin_cpu_ms`). CPU, not wall time: on a busy machine three deliveries at once each get
//! a fraction of a core, and wall time would stop plugins that use only a few milliseconds. The CPU is
//! the thread's own (`getrusage(RUSAGE_THREAD)`), sampled by the epoch callback every tick; what the
//! thread spends inside host functions (an HTTP request, a log line) is the host's and is subtracted.
//! Wall time stays as the backstop: the whole call, host functions included, ends at the delivery's
//! deadline (`[delivery] plugin_deadline_seconds`), whatever the CPU, so a thread the scheduler starves
//! is stopped too; an HTTP request gets at most the time left.

use std::time::{Duration, Instant};

/// Why a call was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its thread used more CPU inside the plugin than the budget.
    Cpu(Duration),
    /// The call, host functions included, ran past the delivery's deadline.
    Deadline(Duration),
}

/// CPU time this thread has used so far (user and system).
pub fn thread_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
            };
            tv(usage.user_time()) + tv(usage.system_time())
        }
        // RUSAGE_THREAD exists on every Linux this daemon runs on; should it fail, the wall-time
        // backstop still stops the plugin.
        Err(_) => Duration::ZERO,
    }
}

/// The clocks of one call, kept by the thread that runs it.
#[derive(Debug)]
pub struct Budget {
    cpu: Duration,
    deadline: Duration,
    started: Instant,
    cpu_started: Duration,
    host_wall: Duration,
    host_cpu: Duration,
    /// Set by the epoch callback when it interrupts the call.
    pub stopped: Option<Stop>,
}

impl Budget {
    /// Starts the clocks: call on the thread that will run the plugin.
    pub fn start(cpu: Duration, deadline: Duration) -> Budget {
        Budget {
            cpu,
            deadline,
            started: Instant::now(),
            cpu_started: thread_cpu(),
            host_wall: Duration::ZERO,
            host_cpu: Duration::ZERO,
            stopped: None,
        }
    }

    /// Runs a host function, its time and CPU counted as the host's.
    pub fn host<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        let answer = f();
        self.host_wall += wall.elapsed();
        self.host_cpu += thread_cpu().saturating_sub(cpu);
        answer
    }

    /// Counts time measured by the caller as the host's (a host function holding the store).
    pub fn add_host(&mut self, wall: Duration, cpu: Duration) {
        self.host_wall += wall;
        self.host_cpu += cpu;
    }

    /// CPU used inside the plugin so far.
    pub fn plugin_cpu(&self) -> Duration {
        thread_cpu()
            .saturating_sub(self.cpu_started)
            .saturating_sub(self.host_cpu)
    }

    /// Wall time inside the plugin so far.
    pub fn plugin_wall(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_wall)
    }

    /// Time left before the delivery's deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Samples the clocks (the epoch callback, every tick): why the call must stop now, if it must.
    pub fn check(&mut self) -> Option<Stop> {
        let stop = verdict(
            self.plugin_cpu(),
            self.started.elapsed(),
            self.cpu,
            self.deadline,
        );
        if stop.is_some() {
            self.stopped = stop;
        }
        stop
    }
}

/// The rule as a pure function of what was measured: the plugin's CPU, and the call's wall time.
pub fn verdict(
    cpu: Duration,
    call: Duration,
    budget: Duration,
    deadline: Duration,
) -> Option<Stop> {
    if cpu > budget {
        Some(Stop::Cpu(budget))
    } else if call >= deadline {
        Some(Stop::Deadline(deadline))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stops_a_plugin_wall_time_only_at_the_deadline() {
        let ms = Duration::from_millis;
        let table = [
            // (cpu, wall, expected): budget 1000 ms CPU, deadline 15 s wall.
            (ms(70), ms(2_500), None),
            (ms(999), ms(14_999), None),
            (ms(1_001), ms(1_001), Some(Stop::Cpu(ms(1_000)))),
            (ms(1_001), ms(20_000), Some(Stop::Cpu(ms(1_000)))),
            (ms(300), ms(15_000), Some(Stop::Deadline(ms(15_000)))),
        ];
        for (cpu, wall, expected) in table {
            assert_eq!(
                verdict(cpu, wall, ms(1_000), ms(15_000)),
                expected,
                "{cpu:?} {wall:?}"
            );
        }
    }

    /// Spins until this thread has used `cpu` more CPU (at most 10 s of wall time); true if it did.
    fn burn(cpu: Duration) -> bool {
        let (start, wall) = (thread_cpu(), Instant::now());
        while thread_cpu().saturating_sub(start) < cpu {
            if wall.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::hint::black_box(0u64);
        }
        true
    }

    #[test]
    fn the_plugin_is_charged_its_own_cpu_and_not_the_hosts() {
        let mut budget = Budget::start(Duration::from_millis(1_000), Duration::from_secs(15));
        assert!(budget.host(|| burn(Duration::from_millis(40))));
        assert!(
            budget.plugin_cpu() < Duration::from_millis(10),
            "host CPU is not the plugin's: {:?}",
            budget.plugin_cpu()
        );
        assert!(burn(Duration::from_millis(40)));
        assert!(
            budget.plugin_cpu() >= Duration::from_millis(40),
            "{:?}",
            budget.plugin_cpu()
        );
        assert_eq!(budget.check(), None);
    }

    #[test]
    fn the_deadline_counts_host_time_too() {
        let mut budget = Budget::start(Duration::from_millis(1_000), Duration::from_millis(50));
        budget.add_host(Duration::from_secs(1), Duration::ZERO);
        let wait = Instant::now();
        while !budget.left().is_zero() && wait.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
        assert_eq!(
            budget.check(),
            Some(Stop::Deadline(Duration::from_millis(50)))
        );
    }
}
