//! `twofoldd`'s command line, in the library so the tests can walk it (every command and argument has
//! help) and the docs generator can write its man pages and shell completions from it.

use std::net::SocketAddr;
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
    /// Address and port of the HTTPS API, over the file's `[api] listen` (default 127.0.0.1:8443).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The data folder (store, keys, admin socket), over the file's `data_dir` (default
    /// ./twofold-data without a file).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// `--listen` and `--data-dir` over a configuration (read from the file or built in), at start
    /// and again at each reload, so a reload does not take them back.
    pub fn apply_overrides(&self, config: &mut crate::config::Config) {
        if let Some(listen) = self.listen {
            config.api.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
    }
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
