//! rekindle brings a fleet back: it reads an inventory and a playbook, plans
//! dependency-ordered stages, and executes them over SSH with rate limits,
//! failure budgets and proof that each host came back.
//!
//! Data flows one way:
//!
//! ```text
//! inventory + playbook -> plan (pure) -> engine -> events -> journal / progress / report
//!                                          |
//!                                      transport (SSH, HTTP, Redfish)
//! ```
//!
//! - [`diag`], [`yaml`]: spans, diagnostics, the spanned YAML tree.
//! - [`inventory`], [`playbook`], [`select`]: input formats into typed models.
//! - [`plan`]: models into an execution plan; no I/O.
//! - [`engine`]: executes a plan, reports only through events.
//! - [`transport`]: SSH, TCP/HTTP probes, Redfish.
//! - [`journal`], [`report`]: consumers of the event stream.
//! - [`live`]: the live status page, JSON status and metrics of `--listen`.
//! - [`etcd`]: a run kept in etcd (`--etcd`): journal mirror, lease, fencing, takeover.
//! - [`session`]: the execution pipeline `run`, `resume` and `drill` share
//!   (inputs checked, lock, journal, engine, consumers, exit code).
//! - [`audit`]: `rekindle audit`: the plan checked against the dependencies
//!   hosts show and what rekindle itself needs; read-only.
//! - [`sim`]: the simulated fleet; the engine never imports it.
//! - [`files`]: a private file written whole (temporary file and rename).
//! - [`child_env`]: the environment of programs rekindle starts, without its secrets.
//! - [`cli`], [`commands`]: the command line: arguments into typed
//!   settings, confirmation, printing.

pub mod audit;
pub mod child_env;
pub mod cli;
pub mod commands;
pub mod diag;
pub mod engine;
pub mod etcd;
pub mod exit;
pub mod files;
pub mod inventory;
pub mod journal;
pub mod live;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod select;
pub mod session;
pub mod shell;
pub mod sim;
pub mod time;
pub mod transport;
pub mod yaml;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::Exit::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::execute(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::Exit::Usage.into()
        }
    }
}
