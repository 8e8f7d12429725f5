//! `twofoldd`: run the daemon, or check a configuration file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use twofoldd::cli::{Cli, Command};
use twofoldd::clock::SystemClock;
use twofoldd::config::{Config, SYSTEM_CONFIG};
use twofoldd::logging::LogLevel;

fn main() -> ExitCode {
    let code = main_inner();
    twofoldd::logging::flush();
    code
}

fn main_inner() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => {
            let Some(path) = file
                .clone()
                .or(cli.config.clone())
                .or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)))
            else {
                return ExitCode::FAILURE;
            };
            match Config::load(&path) {
                Ok(config) => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let errors = twofoldd::delivery::config::check_plugins(&config, &text);
                    if errors.is_empty() {
                        println!("{}: ok", path.display());
                        ExitCode::SUCCESS
                    } else {
                        for e in errors {
                            eprintln!("{}:{e}", path.display());
                        }
                        ExitCode::from(2)
                    }
                }
                Err(e) => {
                    eprintln!("{}", e.to_string().trim_start_matches("configuration: "));
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Run) | None => run(&cli),
    }
}

fn run(cli: &Cli) -> ExitCode {
    // The process will hold the master key and opened seeds: no core dump of it, and no ptrace or
    // /proc/PID/mem, environ or maps for other processes of the same user (they become root's).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("twofoldd: cannot turn core dumps off (PR_SET_DUMPABLE): {e}");
        return ExitCode::FAILURE;
    }
    let path = cli.config.clone().or_else(|| {
        let system = PathBuf::from(SYSTEM_CONFIG);
        system.exists().then_some(system)
    });
    let mut config = match &path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "twofoldd: {}",
                    e.to_string().trim_start_matches("configuration: ")
                );
                return ExitCode::from(2);
            }
        },
        None => Config::zero_setup(),
    };
    cli.apply_overrides(&mut config);
    let log_level = twofoldd::logging::init(&config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twofoldd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, path, log_level, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "twofoldd stopped");
            eprintln!("twofoldd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    path: Option<PathBuf>,
    log_level: LogLevel,
    cli: &Cli,
) -> twofoldd::error::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| twofoldd::error::Error::io("SIGTERM", e))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| twofoldd::error::Error::io("SIGINT", e))?;
    let mut hangup =
        signal(SignalKind::hangup()).map_err(|e| twofoldd::error::Error::io("SIGHUP", e))?;
    match &path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => {
            tracing::info!(data_dir = %config.data_dir.display(), listen = %config.api.listen, "no configuration file: built-in defaults")
        }
    }
    let handle = twofoldd::start(config, Arc::new(SystemClock)).await?;
    let status = format!(
        "listening on https://{} admin {}",
        handle.api_addr,
        handle.admin_socket.display()
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let watchdog = watchdog();
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            failure = handle.store_failed() => {
                // Memory may hold writes the disk does not: stop, and let systemd (Restart=on-failure)
                // start again from what is on disk. Requests in flight still get their answers
                // ("unavailable" for any that write), within a bound.
                notify(&[sd_notify::NotifyState::Stopping]);
                tracing::error!(error = %failure, "the store failed: stopping for a restart");
                if let Some(w) = watchdog {
                    w.abort();
                }
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handle.shutdown()).await;
                return Err(twofoldd::error::Error::StoreFailed(failure));
            }
            _ = hangup.recv() => {
                let outcome = reload(&handle, path.as_deref(), &log_level, cli);
                notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&format!("{status}; {outcome}"))]);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    if let Some(w) = watchdog {
        w.abort();
    }
    handle.shutdown().await
}

/// SIGHUP (`systemctl reload`): re-read and validate the file, apply what can change live. A bad file
/// leaves the running configuration as it was. Requests keep being served throughout.
fn reload(
    handle: &twofoldd::DaemonHandle,
    path: Option<&Path>,
    log_level: &LogLevel,
    cli: &Cli,
) -> String {
    // systemd needs the time stamp to tell this reload from an earlier one (sd_notify(3)).
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(e) => tracing::warn!(error = %e, "no monotonic clock for RELOADING=1"),
    }
    let Some(path) = path else {
        tracing::info!("reload: no configuration file, nothing to re-read");
        return "reloaded: no configuration file".to_owned();
    };
    let config = match Config::load(path) {
        Ok(mut config) => {
            cli.apply_overrides(&mut config);
            config
        }
        Err(e) => {
            let message = e
                .to_string()
                .trim_start_matches("configuration: ")
                .replace('\n', "; ");
            tracing::error!(config = %path.display(), error = %message, "reload refused: the running configuration stays");
            return format!("reload failed, running configuration kept: {message}");
        }
    };
    if let Err(e) = log_level.set(&config.log.level) {
        tracing::warn!(error = %e, "reload: log level not applied");
    }
    let reloaded = handle.reload(&config);
    let mut outcome = if !reloaded.restart_needed.is_empty() {
        let settings = reloaded.restart_needed.join(", ");
        tracing::warn!(config = %path.display(), settings = %settings, "reload: log.level, policies and plugins applied; these changed settings take effect at the next restart");
        format!("reloaded; these changed settings need a restart: {settings}")
    } else {
        tracing::info!(config = %path.display(), level = %config.log.level, "configuration reloaded");
        "reloaded".to_owned()
    };
    if reloaded.policy_differs {
        tracing::warn!(config = %path.display(), "reload: the file's policy sections differ from the live policies, which stay; `twofold-admin policy reset-to-config` applies the file's");
        outcome.push_str(
            "; the file's policies differ from the live ones (policy reset-to-config applies them)",
        );
    }
    outcome
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}

/// Pings systemd's watchdog at half its interval from the runtime: if the runtime hangs, pings stop.
fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = std::time::Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }))
}
