//! rekindle brings a fleet back: it reads an inventory and a playbook, plans
//! dependency-ordered stages, and executes them over SSH with rate limits,
//! failure budgets and proof that each host came back.
//!
//! Data flows one way:
//!
//! ```text
//! inventory + playbook -> plan (pure) -> engine -> events -> journal / progress / report
//!                                          |
//!                                      transport (SSH, HTTP, Redfish, IPMI)
//! ```
//!
//! The floors, top first; each imports only the floors below it, and
//! `tests/it/layers.rs` fails on a circle or an arrow that runs up:
//!
//! - [`cli`], [`commands`]: the command line: arguments into typed
//!   settings, confirmation, printing.
//! - [`audit`]: `rekindle audit`: the plan checked against the dependencies
//!   hosts show and what rekindle itself needs; read-only.
//! - [`session`]: the execution pipeline `run`, `resume` and `drill` share
//!   (inputs checked, lock, journal, engine, consumers, exit code), the
//!   resume itself, a takeover from etcd and the standby loop.
//! - [`live`]: the live status page, JSON status and metrics of `--listen`;
//!   [`etcd`]: a run kept in etcd (`--etcd`): journal mirror, lease, fencing, takeover.
//! - [`report`]: progress, summary and `report` formats, folded from events
//!   into the run's one state (`report::state::RunState`) that progress, the
//!   live page and metrics, the summary, `report` and `status --etcd` read.
//! - [`journal`]: events into an append-only file; locks, the run registry,
//!   replay. [`exit`]: the exit codes and the one mapping from an error to one.
//! - [`engine`]: executes a plan, reports only through events; [`sim`]: the
//!   simulated fleet beside it (the engine never imports it).
//! - [`transport`]: SSH, TCP/HTTP probes, Redfish and IPMI; takes
//!   inventory data as input, never a playbook or a journal.
//! - [`plan`]: models into an execution plan; no I/O.
//! - [`playbook`], [`select`]: playbooks and host selectors into typed models.
//! - [`inventory`]: every inventory format into [`inventory::Host`]s with
//!   typed fields (address, jump, [`inventory::BmcAddress`], [`inventory::Become`]).
//! - Leaves, used by all and importing none of the above: [`diag`], [`yaml`]
//!   (spans, diagnostics, the spanned YAML tree), [`time`] (durations and
//!   time stamps), [`shell`] (quoting), [`files`] (a private file written
//!   whole), [`child_env`] (the environment of programs rekindle starts,
//!   without its secrets).
//!
//! Where a behaviour lives, by what a user sees:
//!
//! | behaviour | module |
//! |---|---|
//! | inventory formats, `group_vars/`, host patterns | [`inventory`] (one file per format) |
//! | the `bmc` label, `become`/`ansible_become*` | [`inventory::bmc`], [`inventory::escalation`] |
//! | playbook keys, their checks and messages | [`playbook::parse`], [`playbook::validate`] |
//! | `90s`, `1h30m` (every duration flag and key) | [`time`]; rates and amounts: [`playbook::units`] |
//! | `--select`, `--limit` selectors | [`select`] |
//! | stage order, windows, estimates (`plan`) | [`plan`] |
//! | `plan --preflight` | [`session::preflight`], [`session::power_check`] |
//! | what may start now: parallelism, rates, budgets, PDUs | [`engine::admission`] |
//! | one host's steps: connect, run, reboot proof, health | [`engine::steps`] |
//! | `power_on`, `remediate` power cycles, BMC etiquette | [`engine::power`] |
//! | why a host failed, "unreachable" | [`engine::failure`], [`transport::ConnectErrorKind`] |
//! | SSH, `~/.ssh/config`, known_hosts | [`transport::ssh`], [`transport::ssh_config`], [`transport::known_hosts`] |
//! | Redfish, IPMI, BMC certificates | [`transport::redfish`], [`transport::ipmi`], [`transport::bmc_trust`] |
//! | sudo/doas wrapping and refusals | [`transport::escalation`] |
//! | the journal file, locks, `resume` | [`journal`], [`session::resume`] |
//! | terminal progress, summary, `report` formats, the ETA | [`report`] ([`report::state`]) |
//! | `--listen` page and metrics, `--notify` | [`live`] |
//! | `--etcd`, standby and takeover | [`etcd`], [`session::takeover`] |
//! | `sim` and `drill` | [`sim`], [`session::drill`] |
//! | `audit` | [`audit`] |

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
pub mod secret;
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
            if exit::Exit::says(&e) {
                eprintln!("error: {e:#}");
            }
            exit::Exit::of(&e).into()
        }
    }
}
