//! `twofoldd`'s command line, in the library so the tests can walk it (every command and argument has
//! help) and the docs generator can write its man pages and shell completions from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "twofoldd",
    version,
    about = "Twofold two-factor authentication daemon",
    long_about = "Twofold two-factor authentication daemon: keeps users and their authenticators, \
                  verifies codes over an HTTPS JSON API and serves twofold-admin on a local socket. \
                  Without a command it runs."
)]
pub struct Cli {
    /// Configuration file. Default: /etc/twofold/twofold.toml if it exists, else built-in defaults
    /// with state in ./twofold-data.
    #[arg(
        long,
        short,
        global = true,
        env = "TWOFOLD_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate a configuration file and report every error with its line.
    CheckConfig {
        /// The file to check (default: --config, then /etc/twofold/twofold.toml).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}
