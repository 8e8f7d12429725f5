//! What one call into a plugin may spend, and why it was stopped.
//!
//! The rule: a plugin is stopped when the CPU its thread used inside the plugin passes the CPU budget
//! (`[delivery] plugin_cpu_ms`). CPU, not wall time: on a busy machine three deliveries at once each get
//! a fraction of a core, and wall time would stop plugins that use only a few milliseconds. The CPU is
//! the thread's own (`getrusage(RUSAGE_THREAD)`), sampled by the epoch callback every tick; what the
//! thread spends inside host functions (an HTTP request, a log line) is the host's and is subtracted.
//! Wall time stays as a backstop, for a thread the scheduler starves: `WALL_BACKSTOP_FACTOR` times the
//! CPU budget inside the plugin.

use std::time::{Duration, Instant};

/// The wall time a plugin may spend inside itself, as a multiple of its CPU budget: even with ten
/// busy threads per core a legitimate plugin gets through, and an endless loop is stopped regardless.
pub const WALL_BACKSTOP_FACTOR: u32 = 10;

/// Why a call was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its thread used more CPU inside the plugin than the budget.
    Cpu(Duration),
    /// It stayed inside the plugin longer than the wall-time backstop.
    WallBackstop(Duration),
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
    wall_backstop: Duration,
    started: Instant,
    cpu_started: Duration,
    host_wall: Duration,
    host_cpu: Duration,
    /// Set by the epoch callback when it interrupts the call.
    pub stopped: Option<Stop>,
}

impl Budget {
    /// Starts the clocks: call on the thread that will run the plugin.
    pub fn start(cpu: Duration) -> Budget {
        Budget {
            cpu,
            wall_backstop: cpu.saturating_mul(WALL_BACKSTOP_FACTOR),
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

    /// Samples the clocks (the epoch callback, every tick): why the call must stop now, if it must.
    pub fn check(&mut self) -> Option<Stop> {
        let stop = verdict(
            self.plugin_cpu(),
            self.plugin_wall(),
            self.cpu,
            self.wall_backstop,
        );
        if stop.is_some() {
            self.stopped = stop;
        }
        stop
    }
}

/// The rule as a pure function of what was measured.
pub fn verdict(
    cpu: Duration,
    wall: Duration,
    budget: Duration,
    backstop: Duration,
) -> Option<Stop> {
    if cpu > budget {
        Some(Stop::Cpu(budget))
    } else if wall > backstop {
        Some(Stop::WallBackstop(backstop))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stops_a_plugin_wall_time_only_far_past_it() {
        let ms = Duration::from_millis;
        let table = [
            // (cpu, wall, expected): budget 1000 ms CPU, backstop 10 s wall.
            (ms(70), ms(2_500), None),
            (ms(999), ms(9_999), None),
            (ms(1_001), ms(1_001), Some(Stop::Cpu(ms(1_000)))),
            (ms(1_001), ms(20_000), Some(Stop::Cpu(ms(1_000)))),
            (ms(300), ms(10_001), Some(Stop::WallBackstop(ms(10_000)))),
        ];
        for (cpu, wall, expected) in table {
            assert_eq!(
                verdict(cpu, wall, ms(1_000), ms(10_000)),
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
        let mut budget = Budget::start(Duration::from_millis(1_000));
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
}
