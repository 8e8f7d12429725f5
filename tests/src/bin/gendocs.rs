//! twofold-gendocs: writes the man pages and shell completions of `twofoldd` and `twofold-admin` from
//! their clap definitions, so what the packages install says what the binaries accept.
//!
//!   OUT/man/NAME.1            a page per command and subcommand (twofold-admin-user-create.1)
//!   OUT/completions/bash/NAME bash-completion's file per command
//!   OUT/completions/zsh/_NAME
//!   OUT/completions/fish/NAME.fish

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use clap_complete::Shell;

#[derive(Parser)]
#[command(
    name = "twofold-gendocs",
    about = "Write the man pages and bash, zsh and fish completions of twofoldd and twofold-admin"
)]
struct Args {
    /// The folder to write man/ and completions/ into (made if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let man = args.out.join("man");
    std::fs::create_dir_all(&man).with_context(|| man.display().to_string())?;
    let mut pages = 0;
    for command in [
        twofoldd::cli::Cli::command(),
        twofold_admin::cli::Cli::command(),
    ] {
        let name = command.get_name().to_owned();
        clap_mangen::generate_to(command.clone(), &man)
            .with_context(|| format!("man pages of {name} in {}", man.display()))?;
        pages += count_pages(&command);
        for (shell, folder) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let dir = args.out.join("completions").join(folder);
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let written = clap_complete::generate_to(shell, &mut command.clone(), &name, &dir)
                .with_context(|| format!("{folder} completion of {name} in {}", dir.display()))?;
            // bash-completion loads a command's file by the command's bare name.
            if shell == Shell::Bash {
                rename(&written, &dir.join(&name))?;
            }
        }
    }
    println!(
        "{pages} man pages and bash, zsh and fish completions in {}",
        args.out.display()
    );
    Ok(())
}

/// One page per command and each of its subcommands, as `clap_mangen::generate_to` writes them (it
/// leaves out the `help` subcommand).
fn count_pages(command: &clap::Command) -> usize {
    1 + command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(count_pages)
        .sum::<usize>()
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("{} -> {}", from.display(), to.display()))
}
