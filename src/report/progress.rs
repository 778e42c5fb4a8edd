//! Live progress, a consumer of engine events. On a terminal: indicatif bars,
//! a header with totals and one bar per running stage, failures printed
//! above them. Off a terminal (CI, logs): one line per finished or failed
//! host and a status line every 10 s. `--quiet`: nothing live.
//!
//! The counts and the ETA are [`Totals`]', which the run's state
//! ([`super::state::RunState`]) holds and the session feeds; the display
//! only reads them.
//!
//! Owns the live display's wording and the ETA's rule. It must not touch
//! hosts or the journal, and prints nothing that events did not tell it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::OUTPUT_LINES;
pub use super::totals::Totals;
use crate::engine::events::{EventKind, HostOutcome};
use crate::engine::steps::humane;

/// How often the off-terminal status line is printed.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The one-line description of a finished host, or `None` for a plain success in quiet modes.
/// The line that says the run was paused or goes on.
fn pause_line(kind: &EventKind) -> Option<&'static str> {
    match kind {
        EventKind::RunPaused => Some(
            "paused: no host starts and no host starts a new step; steps in flight finish (`rekindle continue` goes on)",
        ),
        EventKind::RunContinued => Some("continued: hosts start again"),
        _ => None,
    }
}

fn host_line(kind: &EventKind) -> Option<(bool, String)> {
    let EventKind::HostFinished {
        stage,
        host,
        outcome,
        duration,
    } = kind
    else {
        return None;
    };
    let d = humane(*duration);
    Some(match outcome {
        HostOutcome::Done => (
            false,
            format!("ok          {}  {}  {d}", stage.name, host.name),
        ),
        HostOutcome::Failed {
            step,
            kind,
            reason,
            output,
            ..
        } => {
            let mut s = format!(
                "FAILED      {}  {}  {d}  step {} ({}): {reason}",
                stage.name,
                host.name,
                step + 1,
                kind.as_str()
            );
            let lines: Vec<&str> = output.lines().collect();
            for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
                s.push_str("\n    | ");
                s.push_str(line);
            }
            (true, s)
        }
        HostOutcome::Unreachable { reason, .. } => (
            true,
            format!(
                "skipped     {}  {}  {d}  unreachable: {reason}",
                stage.name, host.name
            ),
        ),
        HostOutcome::Interrupted { step, kind } => (
            true,
            format!(
                "interrupted {}  {}  {d}  during step {} ({})",
                stage.name,
                host.name,
                step + 1,
                kind.as_str()
            ),
        ),
        HostOutcome::Skipped {
            earlier,
            unreachable,
        } => (
            true,
            format!(
                "skipped     {}  {}  {}",
                stage.name,
                host.name,
                HostOutcome::skip_reason(earlier, *unreachable)
            ),
        ),
    })
}

/// Off-terminal progress: host lines and a periodic status line.
pub struct Lines<W: Write> {
    out: W,
    /// The run's state, which the session feeds before a display sees the event.
    state: super::state::Shared,
    next_status: Duration,
    /// Step lines too (`-v`).
    verbose: bool,
}

impl<W: Write> Lines<W> {
    /// Lines that read the run's state (the session feeds it).
    pub fn reading(out: W, state: super::state::Shared) -> Self {
        Lines {
            out,
            state,
            next_status: STATUS_EVERY,
            verbose: false,
        }
    }

    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn event(&mut self, kind: &EventKind, elapsed: Duration) -> io::Result<()> {
        if let Some((_, line)) = host_line(kind) {
            writeln!(self.out, "{line}")?;
        }
        if let Some(line) = pause_line(kind) {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        if let EventKind::StepFinished {
            stage,
            host,
            step,
            kind,
            error,
        } = kind
            && self.verbose
        {
            writeln!(
                self.out,
                "  step      {}  {}  {} ({}): {}",
                stage.name,
                host.name,
                step + 1,
                kind.as_str(),
                error.as_deref().unwrap_or("ok")
            )?;
        }
        self.tick(elapsed)
    }

    /// Prints the status line when it is due (every [`STATUS_EVERY`]).
    pub fn tick(&mut self, elapsed: Duration) -> io::Result<()> {
        if elapsed < self.next_status {
            return Ok(());
        }
        // Whole periods: a quiet stretch gives one line, not a burst.
        let periods = elapsed.as_secs() / STATUS_EVERY.as_secs();
        self.next_status = STATUS_EVERY * u32::try_from(periods + 1).unwrap_or(u32::MAX);
        writeln!(
            self.out,
            "[{}] {}",
            humane(Duration::from_secs(elapsed.as_secs())),
            super::state::lock(&self.state).totals.line(elapsed)
        )?;
        self.out.flush()
    }
}

/// Terminal progress with indicatif on stderr.
pub struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    stages: HashMap<String, ProgressBar>,
    /// The run's state, which the session feeds before a display sees the event.
    state: super::state::Shared,
}

impl Bars {
    /// Bars that read the run's state (the session feeds it).
    pub fn new(state: super::state::Shared) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Bars {
            multi,
            header,
            stages: HashMap::new(),
            state,
        }
    }

    pub fn event(&mut self, kind: &EventKind, elapsed: Duration) {
        match kind {
            EventKind::StageStarted { stage, hosts } => {
                let bar = self.multi.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:<16} [{bar:30}] {pos}/{len} {msg}")
                        .map(|s| s.progress_chars("=> "))
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(stage.name.clone());
                self.stages.insert(stage.name.clone(), bar);
            }
            EventKind::StageFinished { stage, .. } => {
                if let Some(bar) = self.stages.remove(&stage.name) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            EventKind::RunPaused | EventKind::RunContinued => {
                if let Some(line) = pause_line(kind) {
                    let _ = self.multi.println(line);
                }
            }
            EventKind::HostFinished { stage, .. } => {
                if let Some(bar) = self.stages.get(&stage.name) {
                    bar.inc(1);
                }
                if let Some((true, line)) = host_line(kind) {
                    // Printed above the bars, so failures scroll and stay.
                    let _ = self.multi.println(line);
                }
            }
            _ => {}
        }
        self.tick(elapsed);
    }

    pub fn tick(&mut self, elapsed: Duration) {
        let line = super::state::lock(&self.state).totals.line(elapsed);
        self.header.set_message(line);
        self.header.tick();
    }

    pub fn finish(&self) {
        for bar in self.stages.values() {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// The live display a run uses: chosen by terminal and `--quiet`.
pub enum Progress {
    Bars(Box<Bars>),
    Lines(Box<Lines<io::Stdout>>),
    Quiet,
}

impl Progress {
    /// The display for this terminal, reading the run's `state`.
    pub fn new(quiet: bool, verbose: bool, state: super::state::Shared) -> Progress {
        use std::io::IsTerminal;
        if quiet {
            Progress::Quiet
        } else if io::stderr().is_terminal() {
            Progress::Bars(Box::new(Bars::new(state)))
        } else {
            Progress::Lines(Box::new(
                Lines::reading(io::stdout(), state).verbose(verbose),
            ))
        }
    }

    pub fn event(&mut self, kind: &EventKind, elapsed: Duration) -> io::Result<()> {
        match self {
            Progress::Bars(b) => b.event(kind, elapsed),
            Progress::Lines(l) => l.event(kind, elapsed)?,
            Progress::Quiet => {}
        }
        Ok(())
    }

    pub fn tick(&mut self, elapsed: Duration) -> io::Result<()> {
        match self {
            Progress::Bars(b) => b.tick(elapsed),
            Progress::Lines(l) => l.tick(elapsed)?,
            Progress::Quiet => {}
        }
        Ok(())
    }

    pub fn finish(&mut self) {
        if let Progress::Bars(b) = self {
            b.finish();
        }
    }
}
