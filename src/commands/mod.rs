//! One function per subcommand: its arguments into typed settings (the
//! strings that carry values typed once, in `args`), confirmation, a call
//! into the library, and printing. Errors go back through `?` (an
//! [`crate::exit::Error`], or a plain message for a usage error); lib.rs
//! prints them and [`crate::exit::Exit::of`] maps them to the exit code.
//!
//! Owns what goes to stdout/stderr for each command; the modules below it
//! never print (the pipelines that talk while they run, resume, takeover
//! and standby, say their lines through `args::Terminal`). It must not run
//! anything itself: resume, takeover, the standby loop and pause/continue
//! are `session`'s.

mod args;
mod audit;
mod control;
mod drill;
mod etcd;
mod hosts;
mod plan;
mod report;
mod resume;
mod run;
mod shell;
mod sim;
mod ssh_config;
mod status;
mod validate;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

pub fn execute(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(dir) = &cli.playbook_dir {
        if !dir.is_dir() {
            return Err(crate::exit::usage(format!(
                "--playbook-dir {}: not a directory",
                dir.display()
            )));
        }
        crate::inventory::set_playbook_dir(dir.clone());
    }
    match cli.command {
        Command::Validate(args) => validate::execute(args),
        Command::Hosts(args) => hosts::execute(args),
        Command::SshConfig(args) => ssh_config::execute(args),
        Command::Plan(args) => plan::execute(args),
        Command::Audit(args) => audit::execute(args),
        Command::Run(args) => run::execute(args, cli.verbose),
        Command::Resume(args) => resume::execute(args, cli.verbose),
        Command::Pause(args) => control::execute(args, true),
        Command::Continue(args) => control::execute(args, false),
        Command::Report(args) => report::execute(args),
        Command::Status(args) => status::execute(args),
        Command::Standby(args) => etcd::standby(args, cli.verbose),
        Command::Sim(args) => sim::execute(args),
        Command::Drill(args) => drill::execute(args, cli.verbose),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        Command::SimWorker => sim::worker(),
    }
}
