//! Logs go to journald (structured fields) when systemd started us, to stderr otherwise.
//! Codes and secrets are never logged: audit events name devices and outcomes, not values.
//!
//! The level is a reloadable filter, so `systemctl reload twofoldd` applies a new `log.level` live.
//!
//! On stderr, info and debug lines are gathered and written by one thread (see `BufferedStderr`): under
//! load a `write` per audit line cost a third of the line. Warnings and errors are written at once.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::fmt::MakeWriter;
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
    // Colours only for a person at a terminal: a log file or pipe gets plain text, which is also
    // cheaper to format for the audit line every verification writes.
    tracing_subscriber::fmt::layer()
        .with_writer(BufferedStderr::start())
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
}

/// Writes out buffered log lines; called before the process exits.
pub fn flush() {
    if let Some(buffer) = STDERR_BUFFER.get() {
        buffer.write_out(&mut buffer.lock());
    }
}

static STDERR_BUFFER: OnceLock<Arc<LineBuffer>> = OnceLock::new();

/// How long an info line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this many buffered bytes the writer thread is woken at once.
const FLUSH_AT: usize = 64 * 1024;

/// stderr for the fmt layer: info and debug lines go to a buffer that a thread writes out within
/// `FLUSH_EVERY`, warnings and errors (after what is buffered) at once. Lines still buffered when the
/// process is killed are lost; the audit log proper is the store's journal, durable before each answer.
#[derive(Clone)]
struct BufferedStderr {
    /// `None` when the writer thread could not start: every line is written at once.
    buffer: Option<Arc<LineBuffer>>,
}

struct LineBuffer {
    lines: Mutex<Vec<u8>>,
    filled: Condvar,
}

impl BufferedStderr {
    fn start() -> BufferedStderr {
        let buffer = STDERR_BUFFER.get_or_init(|| {
            Arc::new(LineBuffer {
                lines: Mutex::new(Vec::with_capacity(FLUSH_AT)),
                filled: Condvar::new(),
            })
        });
        let writer = buffer.clone();
        let started = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())
            .is_ok();
        BufferedStderr {
            buffer: started.then(|| buffer.clone()),
        }
    }
}

impl LineBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run(&self) {
        let mut out = Vec::with_capacity(FLUSH_AT);
        loop {
            {
                let lines = self
                    .filled
                    .wait_while(self.lock(), |l| l.is_empty())
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Gather what else arrives for a moment, so one write carries many lines.
                let (mut lines, _) = self
                    .filled
                    .wait_timeout_while(lines, FLUSH_EVERY, |l| l.len() < FLUSH_AT)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                std::mem::swap(&mut *lines, &mut out);
            }
            let _ = std::io::stderr().write_all(&out);
            out.clear();
        }
    }

    fn write_out(&self, lines: &mut Vec<u8>) {
        let _ = std::io::stderr().write_all(lines);
        lines.clear();
    }
}

/// One log line on its way to stderr.
enum LineWriter<'a> {
    Buffered(&'a LineBuffer),
    /// A warning or error, or no writer thread: written at once.
    Direct(Option<&'a LineBuffer>),
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        match self {
            LineWriter::Buffered(buffer) => {
                let mut lines = buffer.lock();
                let was_empty = lines.is_empty();
                lines.extend_from_slice(line);
                // Waking the thread costs a system call: only when it sleeps on an empty buffer or
                // should write early.
                if was_empty || lines.len() >= FLUSH_AT {
                    buffer.filled.notify_one();
                }
            }
            LineWriter::Direct(Some(buffer)) => {
                let mut lines = buffer.lock();
                lines.extend_from_slice(line);
                buffer.write_out(&mut lines);
            }
            LineWriter::Direct(None) => std::io::stderr().write_all(line)?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter::Direct(self.buffer.as_deref())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        match self.buffer.as_deref() {
            Some(buffer) if *meta.level() >= tracing::Level::INFO => LineWriter::Buffered(buffer),
            buffer => LineWriter::Direct(buffer),
        }
    }
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
