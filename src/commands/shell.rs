//! `rekindle completions SHELL` and `rekindle man [--out DIR]`: the shell's
//! conventions, generated from the clap definitions in [`crate::cli`] (so a
//! new flag is completed and documented without touching this file).
//! scripts/install.sh puts both where bash, zsh, fish and man look.

use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit::Exit;

pub fn completions(args: CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "rekindle", &mut out);
    out.flush().context("writing the completion script")?;
    Ok(Exit::Success)
}

pub fn man(args: ManArgs) -> anyhow::Result<Exit> {
    // As generate_to does for the files: `help` is no page of its own.
    let cmd = Cli::command().disable_help_subcommand(true);
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|()| out.flush())
                .context("writing the man page")?;
        }
    }
    Ok(Exit::Success)
}
