//! `twofoldd`: run the daemon, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use twofoldd::clock::SystemClock;
use twofoldd::config::{Config, SYSTEM_CONFIG};

#[derive(Parser)]
#[command(name = "twofoldd", version, about = "Twofold two-factor authentication daemon")]
struct Cli {
    /// Configuration file. Default: /etc/twofold/twofold.toml if it exists, else built-in defaults
    /// with state in ./twofold-data.
    #[arg(long, short, global = true, env = "TWOFOLD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate a configuration file and report every error with its line.
    CheckConfig {
        /// The file to check (default: --config, then /etc/twofold/twofold.toml).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => {
            let Some(path) = file.or(cli.config).or_else(|| Some(PathBuf::from(SYSTEM_CONFIG))) else {
                return ExitCode::FAILURE;
            };
            match Config::load(&path) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}", e.to_string().trim_start_matches("configuration: "));
                    ExitCode::from(2)
                }
            }
        }
        Command::Run => run(cli.config),
    }
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    let path = config_path.or_else(|| {
        let system = PathBuf::from(SYSTEM_CONFIG);
        system.exists().then_some(system)
    });
    let config = match &path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("twofoldd: {}", e.to_string().trim_start_matches("configuration: "));
                return ExitCode::from(2);
            }
        },
        None => Config::zero_setup(),
    };
    twofoldd::logging::init(&config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twofoldd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "twofoldd stopped");
            eprintln!("twofoldd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>) -> twofoldd::error::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| twofoldd::error::Error::io("SIGTERM", e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| twofoldd::error::Error::io("SIGINT", e))?;
    match &path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file: zero-setup defaults, state in ./twofold-data"),
    }
    let handle = twofoldd::start(config, Arc::new(SystemClock)).await?;
    let status = format!("listening on https://{} admin {}", handle.api_addr, handle.admin_socket.display());
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    let watchdog = watchdog();
    tokio::select! {
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    if let Some(w) = watchdog {
        w.abort();
    }
    handle.shutdown().await
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
