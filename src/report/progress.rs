//! Live progress, a consumer of engine events. On a terminal: indicatif bars,
//! a header with totals and one bar per running stage, failures printed
//! above them. Off a terminal (CI, logs): one line per finished or failed
//! host and a status line every 10 s. `--quiet`: nothing live.
//!
//! Owns the live display's wording. It must not touch hosts or the journal,
//! and prints nothing that events did not tell it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::OUTPUT_LINES;
use crate::engine::events::{EventKind, HostOutcome};
use crate::engine::steps::humane;

/// How often the off-terminal status line is printed.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Run-wide counts, shared by both displays.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    /// Unreachable and set aside, or interrupted.
    pub skipped: usize,
    pub in_flight: usize,
    /// Hosts of stages that ended without running them (aborted, not started).
    pub not_run: usize,
    /// Hosts finished in this process (for the rate; a resume's skipped hosts do not count).
    finished_here: usize,
    stages: HashMap<String, StageCount>,
}

#[derive(Debug, Default, Clone)]
struct StageCount {
    hosts: usize,
    finished: usize,
    done_here: usize,
}

impl Totals {
    /// `stages`: every stage's name and host count; `already_done`: hosts a
    /// resumed run skips because they finished before.
    pub fn new(stages: impl IntoIterator<Item = (String, usize)>, already_done: usize) -> Self {
        let stages: HashMap<String, StageCount> = stages
            .into_iter()
            .map(|(n, hosts)| {
                (
                    n,
                    StageCount {
                        hosts,
                        ..StageCount::default()
                    },
                )
            })
            .collect();
        Totals {
            total: stages.values().map(|s| s.hosts).sum(),
            done: already_done,
            stages,
            ..Totals::default()
        }
    }

    pub fn waiting(&self) -> usize {
        self.total
            .saturating_sub(self.done + self.failed + self.skipped + self.in_flight + self.not_run)
    }

    fn event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::HostStarted { .. } => self.in_flight += 1,
            EventKind::HostFinished { stage, outcome, .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.finished_here += 1;
                match outcome {
                    HostOutcome::Done => self.done += 1,
                    HostOutcome::Failed { .. } => self.failed += 1,
                    HostOutcome::Unreachable { .. } | HostOutcome::Interrupted { .. } => {
                        self.skipped += 1;
                    }
                }
                let s = self.stages.entry(stage.name.clone()).or_default();
                s.finished += 1;
                s.done_here += usize::from(matches!(outcome, HostOutcome::Done));
            }
            EventKind::StageFinished { stage, done, .. } => {
                // `done` also counts hosts a resume skipped as finished before;
                // whatever neither finished here nor before never ran.
                let s = self.stages.entry(stage.name.clone()).or_default();
                let before = done.saturating_sub(s.done_here);
                self.not_run += s.hosts.saturating_sub(s.finished + before);
            }
            _ => {}
        }
    }

    /// `120/400 done, 3 failed, 0 skipped, 50 in flight, 227 waiting, 1.5 hosts/s, elapsed 1m20s, ETA 2m31s`
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.finished_here as f64 / secs
        } else {
            0.0
        };
        let left = self.waiting() + self.in_flight;
        let eta = if left == 0 {
            "0s".to_owned()
        } else if rate > 0.0 {
            humane(Duration::from_secs_f64(
                (left as f64 / rate).min(1e7).round(),
            ))
        } else {
            "unknown".to_owned()
        };
        format!(
            "{}/{} done, {} failed, {} skipped, {} in flight, {} waiting, {rate:.1} hosts/s, elapsed {}, ETA {eta}",
            self.done,
            self.total,
            self.failed,
            self.skipped,
            self.in_flight,
            self.waiting(),
            humane(Duration::from_secs(elapsed.as_secs())),
        )
    }
}

/// The one-line description of a finished host, or `None` for a plain success in quiet modes.
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
    })
}

/// Off-terminal progress: host lines and a periodic status line.
pub struct Lines<W: Write> {
    out: W,
    totals: Totals,
    next_status: Duration,
    /// Step lines too (`-v`).
    verbose: bool,
}

impl<W: Write> Lines<W> {
    pub fn new(out: W, totals: Totals) -> Self {
        Lines {
            out,
            totals,
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
        self.totals.event(kind);
        if let Some((_, line)) = host_line(kind) {
            writeln!(self.out, "{line}")?;
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
            self.totals.line(elapsed)
        )?;
        self.out.flush()
    }
}

/// Terminal progress with indicatif on stderr.
pub struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    stages: HashMap<String, ProgressBar>,
    totals: Totals,
}

impl Bars {
    pub fn new(totals: Totals) -> Self {
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
            totals,
        }
    }

    pub fn event(&mut self, kind: &EventKind, elapsed: Duration) {
        self.totals.event(kind);
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
        self.header.set_message(self.totals.line(elapsed));
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
    Lines(Lines<io::Stdout>),
    Quiet,
}

impl Progress {
    pub fn new(quiet: bool, verbose: bool, totals: Totals) -> Progress {
        use std::io::IsTerminal;
        if quiet {
            Progress::Quiet
        } else if io::stderr().is_terminal() {
            Progress::Bars(Box::new(Bars::new(totals)))
        } else {
            Progress::Lines(Lines::new(io::stdout(), totals).verbose(verbose))
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

#[cfg(test)]
impl Totals {
    pub(crate) fn event_for_test(&mut self, kind: &EventKind) {
        self.event(kind);
    }
}
