//! The plain line printer: one line per finished host and a summary per stage
//! at the end, for terminals and logs alike. A consumer of engine events.
//!
//! Owns the wording of those lines. It must not touch hosts, the journal or
//! the engine's state; everything it prints comes from events.

use std::io::{self, Write};
use std::time::Duration;

use crate::engine::events::{EventKind, HostOutcome, RunOutcome, StageOutcome};
use crate::engine::steps::humane;

/// How many lines of a failing command's output to repeat under its host line.
const OUTPUT_LINES: usize = 5;

pub struct Plain<W: Write> {
    out: W,
    /// Only the final summary.
    quiet: bool,
    /// Step lines too.
    verbose: bool,
    stages: Vec<StageLine>,
}

struct StageLine {
    name: String,
    outcome: StageOutcome,
    done: usize,
    failed: usize,
    skipped: usize,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W, quiet: bool, verbose: bool) -> Self {
        Plain {
            out,
            quiet,
            verbose,
            stages: Vec::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// Prints what `kind` means for people; `elapsed` is time since the run began.
    pub fn event(&mut self, kind: &EventKind, elapsed: Duration) -> io::Result<()> {
        match kind {
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                duration,
            } if !self.quiet => {
                let (word, detail) = match outcome {
                    HostOutcome::Done => ("ok", String::new()),
                    HostOutcome::Failed {
                        step, kind, reason, ..
                    } => (
                        "FAILED",
                        format!("  step {} ({}): {reason}", step + 1, kind.as_str()),
                    ),
                    HostOutcome::Unreachable { reason, .. } => {
                        ("skipped", format!("  unreachable: {reason}"))
                    }
                    HostOutcome::Interrupted { step, kind } => (
                        "interrupted",
                        format!("  during step {} ({})", step + 1, kind.as_str()),
                    ),
                    HostOutcome::Skipped {
                        earlier,
                        unreachable,
                    } => (
                        "skipped",
                        format!("  {}", HostOutcome::skip_reason(earlier, *unreachable)),
                    ),
                };
                writeln!(
                    self.out,
                    "{word:<11} {}  {}  {}{detail}",
                    stage.name,
                    host.name,
                    humane(*duration)
                )?;
                if let HostOutcome::Failed { output, .. } = outcome {
                    let lines: Vec<&str> = output.lines().collect();
                    for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
                        writeln!(self.out, "    | {line}")?;
                    }
                }
            }
            EventKind::StepFinished {
                stage,
                host,
                step,
                kind,
                error,
            } if self.verbose && !self.quiet => {
                let result = error.as_deref().unwrap_or("ok");
                writeln!(
                    self.out,
                    "  step        {}  {}  {} ({}): {result}",
                    stage.name,
                    host.name,
                    step + 1,
                    kind.as_str()
                )?;
            }
            EventKind::StageFinished {
                stage,
                outcome,
                done,
                failed,
                skipped,
            } => self.stages.push(StageLine {
                name: stage.name.clone(),
                outcome: outcome.clone(),
                done: *done,
                failed: *failed,
                skipped: *skipped,
            }),
            EventKind::RunFinished { outcome } => self.summary(*outcome, elapsed)?,
            EventKind::RunPaused => writeln!(
                self.out,
                "paused      no host starts and no host starts a new step; steps in flight finish"
            )?,
            EventKind::RunContinued => writeln!(self.out, "continued   hosts start again")?,
            _ => {}
        }
        Ok(())
    }

    fn summary(&mut self, outcome: RunOutcome, elapsed: Duration) -> io::Result<()> {
        writeln!(self.out)?;
        let width = self.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &self.stages {
            let state = match &s.outcome {
                StageOutcome::Done => "done".to_owned(),
                StageOutcome::Aborted { reason } => format!("ABORTED: {reason}"),
                StageOutcome::Skipped { dependency } => {
                    format!("not started: `{dependency}` did not finish inside its budget")
                }
                StageOutcome::Interrupted => "interrupted".to_owned(),
            };
            writeln!(
                self.out,
                "stage {:<width$}  {} done, {} failed, {} skipped  {state}",
                s.name, s.done, s.failed, s.skipped
            )?;
        }
        let word = match outcome {
            RunOutcome::Success => "every host done",
            RunOutcome::Failures => "finished with failures inside the budgets",
            RunOutcome::Aborted => "ABORTED",
            RunOutcome::Interrupted => "interrupted (resumable)",
        };
        writeln!(self.out, "run: {word} in {}", humane(elapsed))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{HostRef, StageRef, StepKind};

    fn stage(i: usize, name: &str) -> StageRef {
        StageRef {
            index: i,
            name: name.into(),
        }
    }

    fn host(i: usize, name: &str) -> HostRef {
        HostRef {
            index: i,
            name: name.into(),
        }
    }

    fn events() -> Vec<(Duration, EventKind)> {
        let s = Duration::from_secs;
        vec![
            (
                s(0),
                EventKind::StageStarted {
                    stage: stage(0, "storage"),
                    hosts: 3,
                },
            ),
            (
                s(95),
                EventKind::HostFinished {
                    stage: stage(0, "storage"),
                    host: host(0, "st1"),
                    outcome: HostOutcome::Done,
                    duration: s(95),
                },
            ),
            (
                s(100),
                EventKind::HostFinished {
                    stage: stage(0, "storage"),
                    host: host(1, "st2"),
                    outcome: HostOutcome::Failed {
                        step: 1,
                        kind: StepKind::Health,
                        failure: crate::engine::Failure::Unhealthy,
                        reason: "health checks did not pass within 10m: `ceph` exited with 3"
                            .into(),
                        output: "l1\nl2\nl3\nl4\nl5\nl6\n".into(),
                    },
                    duration: s(600),
                },
            ),
            (
                s(101),
                EventKind::HostFinished {
                    stage: stage(0, "storage"),
                    host: host(2, "st3"),
                    outcome: HostOutcome::Unreachable {
                        step: 0,
                        failure: crate::engine::Failure::Connect {
                            error: crate::engine::failure::ConnectKind::Unreachable,
                        },
                        reason: "cannot connect: refused".into(),
                    },
                    duration: s(1),
                },
            ),
            (
                s(700),
                EventKind::StageFinished {
                    stage: stage(0, "storage"),
                    outcome: StageOutcome::Aborted {
                        reason: "failure budget exceeded: 1 hosts failed, budget 0".into(),
                    },
                    done: 1,
                    failed: 1,
                    skipped: 1,
                },
            ),
            (
                s(700),
                EventKind::StageFinished {
                    stage: stage(1, "db"),
                    outcome: StageOutcome::Skipped {
                        dependency: "storage".into(),
                    },
                    done: 0,
                    failed: 0,
                    skipped: 0,
                },
            ),
            (
                s(700),
                EventKind::RunFinished {
                    outcome: RunOutcome::Aborted,
                },
            ),
        ]
    }

    fn render(quiet: bool) -> String {
        let mut p = Plain::new(Vec::new(), quiet, false);
        for (t, e) in events() {
            p.event(&e, t).unwrap();
        }
        String::from_utf8(p.into_inner()).unwrap()
    }

    #[test]
    fn host_lines_and_summary() {
        let expected = "\
ok          storage  st1  1m35s
FAILED      storage  st2  10m  step 2 (health): health checks did not pass within 10m: `ceph` exited with 3
    | l2
    | l3
    | l4
    | l5
    | l6
skipped     storage  st3  1s  unreachable: cannot connect: refused

stage storage  1 done, 1 failed, 1 skipped  ABORTED: failure budget exceeded: 1 hosts failed, budget 0
stage db       0 done, 0 failed, 0 skipped  not started: `storage` did not finish inside its budget
run: ABORTED in 11m40s
";
        assert_eq!(render(false), expected);
    }

    #[test]
    fn quiet_prints_only_the_summary() {
        let out = render(true);
        assert!(out.starts_with("\nstage storage"), "{out}");
        assert!(!out.contains("st1"));
    }
}
