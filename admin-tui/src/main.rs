//! `twofold-admin`: the scriptable CLI over the daemon's admin socket.

mod cli;
mod client;
mod render;

use std::process::ExitCode;

use clap::Parser;
use twofold_wire::admin::AdminReply;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("twofold-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &cli::Cli) -> Result<(), String> {
    let socket = cli.socket.clone().unwrap_or_else(client::default_socket);
    let mut client = client::Client::connect(&socket)?;
    let reply = client.call(&cli.command.request())?;
    if let (cli::Command::Totp(cli::TotpCommand::Enroll { qr_png: Some(path), .. }), AdminReply::Enrollment(e)) =
        (&cli.command, &reply)
    {
        let png = data_encoding::BASE64
            .decode(e.qr_png_base64.as_bytes())
            .map_err(|e| format!("QR code from the daemon: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply).map_err(|e| e.to_string())?);
    } else {
        print!("{}", render::text(&reply));
    }
    Ok(())
}
