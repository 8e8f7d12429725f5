//! `twofold-admin`: with a command, one request to the daemon for scripts; without, the console.

use std::process::ExitCode;

use clap::Parser;
use twofold_admin::cli::{self, Cli};
use twofold_admin::client;
use twofold_admin::console::Session;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = match cli.socket.clone().map_or_else(client::default_socket, Ok) {
        Ok(socket) => socket,
        Err(message) if cli.json => {
            let error = twofold_wire::ErrorBody {
                code: "no_admin_socket".to_owned(),
                message,
            };
            eprintln!("{}", serde_json::json!({ "error": error }));
            return ExitCode::FAILURE;
        }
        Err(message) => return fail(&message),
    };
    let result = match &cli.command {
        Some(command) => cli::run(&socket, command, cli.json),
        None => console(&socket).map_err(cli::Failure::here("console_failed")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if cli.json => {
            eprintln!("{}", serde_json::json!({ "error": failure.error }));
            ExitCode::FAILURE
        }
        Err(failure) => fail(&failure.text),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("twofold-admin: {message}");
    ExitCode::FAILURE
}

/// Takes over the terminal for the console and gives it back, also when the console panics
/// (`ratatui::try_init` installs a panic hook that restores the terminal first).
fn console(socket: &std::path::Path) -> Result<(), String> {
    let session = Session::connect(socket)?;
    let mut terminal = ratatui::try_init().map_err(|e| format!("terminal: {e}"))?;
    let result = session.run(&mut terminal);
    ratatui::restore();
    result
}
