//! `rekindle drill`: a fire drill. Loads and plans like `run`, then hands
//! the plan to the session's drill pipeline (a simulated copy of the hosts
//! it touches, the plan's rehearsal, a journal like any run's) and prints
//! what it says: the preamble, progress with the plain printer, and a
//! rendering of the run's summary in real time (the predicted recovery
//! time, each stage's duration, the slowest stage, failures by kind).
//!
//! Owns the drill's terminal output; the pipeline is `session::drill`'s.

use super::args;
use crate::cli::DrillArgs;
use crate::diag::Sources;
use crate::exit::{Exit, usage};
use crate::session::drill::{self, DrillConfig, Drilled};

pub fn execute(args: DrillArgs, verbose: u8) -> anyhow::Result<Exit> {
    if let Some(file) = &args.exec.become_password_file {
        eprintln!(
            "warning: --become-password-file {} is not used by a drill: the simulated hosts' sudo asks for no password",
            file.display()
        );
    }
    let shape =
        args::drill_shape(args.sample, args.speed, &args.fleet, &args.exec).map_err(usage)?;
    let mut sources = Sources::new();
    let loaded = args::load(
        &args.input.inventories,
        &args.input.playbook,
        args.input.limit.as_deref(),
        &mut sources,
    )?;
    let config = DrillConfig {
        shape,
        powered_off: args.fleet.powered_off,
        bmcs: args.fleet.bmcs,
        parallel: args.exec.parallel,
        journal_dir: args.exec.journal.clone(),
        playbook: args.input.playbook.clone(),
        inventories: args.input.inventories.clone(),
        limit: args.input.limit.clone(),
        rate_text: args.exec.rate.clone(),
        quiet: args.exec.quiet,
        verbose: verbose > 0,
    };
    let exec = &args.exec;
    let views = Box::new(|header: &crate::journal::Header, plan: &_, fed: &_| {
        args::live_views(exec, &header.run_id, plan, fed).map_err(|e| anyhow::anyhow!("{e}"))
    });
    let drilled = drill::run(
        loaded,
        &config,
        views,
        &mut |ready| {
            args::print_notes(ready.notes);
            print!("{}", ready.preamble(&config.shape));
        },
        args::notice,
    );
    let rehearsed = match drilled {
        Ok(Drilled::Finished(r)) => r,
        Ok(Drilled::Interrupted) => {
            eprintln!("interrupted before the fleet was ready");
            return Ok(Exit::Interrupted);
        }
        Err(e) => return Err(e),
    };
    let finished = &rehearsed.finished;
    for w in &finished.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(lost) = &finished.lost {
        eprintln!("error: {}", lost.message());
    }
    print!(
        "{}",
        crate::report::drill::render(
            &finished.summary,
            &rehearsed.prediction,
            config.shape.speed,
            rehearsed.sample.fraction,
            finished.elapsed,
            &crate::report::drill::Faults {
                injected: &rehearsed.injected,
                placed: &rehearsed.placed,
                caveats: &rehearsed.caveats,
            }
        )
    );
    if let Some(path) = &finished.journal {
        println!("journal: {}", path.display());
    }
    Ok(finished.exit)
}
