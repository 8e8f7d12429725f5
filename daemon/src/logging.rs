//! Logs go to journald (structured fields) when systemd started us, to stderr otherwise.
//! Codes and secrets are never logged: audit events name devices and outcomes, not values.
//!
//! The level is a reloadable filter, so `systemctl reload twofoldd` applies a new `log.level` live.

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the filter of the installed logger.
pub struct LogLevel(Option<reload::Handle<EnvFilter, Registry>>);

impl LogLevel {
    /// Applies a filter such as `info` or `twofoldd=debug,info`.
    pub fn set(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?;
        match &self.0 {
            Some(handle) => handle.reload(filter).map_err(|e| format!("log level: {e}")),
            None => Err("no logger of ours is installed".to_owned()),
        }
    }
}

pub fn init(level: &str) -> LogLevel {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => registry
                .with(
                    journald
                        .with_syslog_identifier("twofoldd".into())
                        .with_priority_mappings(syslog_priorities()),
                )
                .try_init(),
            Err(_) => registry.with(stderr_layer()).try_init(),
        }
    } else {
        registry.with(stderr_layer()).try_init()
    };
    LogLevel(installed.ok().map(|()| handle))
}

/// syslog's meaning of the levels (info = 6, debug = 7), so `journalctl -p info` hides debug output;
/// tracing-journald's default maps info to notice.
fn syslog_priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

fn stderr_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a service whose stderr is the journal. A child that
/// inherited the variable but had its stderr redirected elsewhere must keep logging to stderr, so the
/// variable counts only when it names the stderr we actually have (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(stderr) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(stderr.st_dev) && ino.parse() == Ok(stderr.st_ino)
}
