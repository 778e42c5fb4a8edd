//! `--notify URL`: a small JSON message POSTed when a stage starts, finishes
//! or aborts, when the run is paused or continues, and when it ends, Slack-compatible (`text`) with the facts
//! as fields beside it.
//!
//! Never in the way of the run: the consumer only queues (a bounded queue
//! per URL; a full queue drops the message with a warning), one task per URL
//! sends from a thread of its own, each POST is bounded by [`POST_TIMEOUT`],
//! and at the end of the run the last messages get at most [`FINISH_WAIT`].
//! A failed POST is a warning on stderr, never an error.
//!
//! Owns the message and its delivery. It must not change the run. URLs can
//! carry secrets (a webhook's token): warnings name only scheme, host and port.

use std::io;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::mpsc;

use crate::engine::consumer::{Consumer, Seen};
use crate::engine::events::{Ack, EventKind, RunOutcome, StageOutcome};

/// Longest one POST may take, connection included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages waiting per URL; more are dropped (with a warning).
pub const QUEUE: usize = 64;
/// How long the end of the run waits for the last messages to go out.
pub const FINISH_WAIT: Duration = Duration::from_secs(10);

/// A checked `--notify` target.
#[derive(Debug, Clone)]
pub struct Target {
    url: reqwest::Url,
}

impl Target {
    /// `http://` or `https://` URLs only.
    pub fn parse(input: &str) -> Result<Target, String> {
        let url =
            reqwest::Url::parse(input.trim()).map_err(|e| format!("--notify: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--notify {}: expected an http:// or https:// URL",
                Target { url }.shown()
            ));
        }
        Ok(Target { url })
    }

    /// The URL as warnings name it: no path, query or user (tokens live there).
    pub fn shown(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(p) => format!("{}://{host}:{p}/…", self.url.scheme()),
            None => format!("{}://{host}/…", self.url.scheme()),
        }
    }
}

/// `--notify` values: URLs, or `@FILE` with one URL per line (so a webhook's
/// secret stays out of the process list); blank lines and `#` comments skipped.
pub fn targets(values: &[String]) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for v in values {
        match v.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("--notify @{file}: cannot read: {e}"))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    out.push(Target::parse(line).map_err(|e| format!("{file}:{}:1: {e}", n + 1))?);
                }
            }
            None => out.push(Target::parse(v)?),
        }
    }
    Ok(out)
}

/// The message for an event worth telling the room about, if it is one.
pub fn message(
    run_id: &str,
    plan: &str,
    at: SystemTime,
    kind: &EventKind,
) -> Option<serde_json::Value> {
    let at = crate::journal::rfc3339(at);
    let base = |event: &str, text: String| {
        json!({
            "text": text,
            "event": event,
            "run_id": run_id,
            "plan": plan,
            "at": at,
        })
    };
    let mut m = match kind {
        EventKind::StageStarted { stage, hosts } => {
            let mut m = base(
                "stage_started",
                format!(
                    "rekindle `{plan}`: stage `{}` started ({})",
                    stage.name,
                    crate::report::plural(*hosts, "host")
                ),
            );
            m["stage"] = json!(stage.name);
            m["hosts"] = json!(hosts);
            m
        }
        EventKind::StageFinished {
            stage,
            outcome,
            done,
            failed,
            skipped,
        } => {
            let counts = format!("{done} done, {failed} failed, {skipped} skipped");
            let (event, status, text) = match outcome {
                StageOutcome::Done => (
                    "stage_finished",
                    "done",
                    format!(
                        "rekindle `{plan}`: stage `{}` finished: {counts}",
                        stage.name
                    ),
                ),
                StageOutcome::Aborted { reason } => (
                    "stage_aborted",
                    "aborted",
                    format!(
                        "rekindle `{plan}`: stage `{}` ABORTED: {reason} ({counts})",
                        stage.name
                    ),
                ),
                StageOutcome::Skipped { dependency } => (
                    "stage_finished",
                    "skipped",
                    format!(
                        "rekindle `{plan}`: stage `{}` skipped: `{dependency}` did not finish inside its budget",
                        stage.name
                    ),
                ),
                StageOutcome::Interrupted => (
                    "stage_finished",
                    "interrupted",
                    format!(
                        "rekindle `{plan}`: stage `{}` interrupted ({counts})",
                        stage.name
                    ),
                ),
            };
            let mut m = base(event, text);
            m["stage"] = json!(stage.name);
            m["status"] = json!(status);
            m["done"] = json!(done);
            m["failed"] = json!(failed);
            m["skipped"] = json!(skipped);
            if let StageOutcome::Aborted { reason } = outcome {
                m["reason"] = json!(reason);
            }
            m
        }
        EventKind::RunPaused => base(
            "run_paused",
            format!(
                "rekindle `{plan}`: run {run_id} PAUSED: no host starts, steps in flight finish"
            ),
        ),
        EventKind::RunContinued => base(
            "run_continued",
            format!("rekindle `{plan}`: run {run_id} continues"),
        ),
        EventKind::RunFinished { outcome } => {
            let words = crate::report::summary::outcome_words(Some(*outcome));
            let mut m = base(
                "run_finished",
                format!("rekindle `{plan}`: run {run_id} finished: {words}"),
            );
            m["outcome"] = json!(outcome);
            m["success"] = json!(*outcome == RunOutcome::Success);
            m
        }
        _ => return None,
    };
    m["source"] = json!("rekindle");
    Some(m)
}

/// Queues messages for every target; a thread of its own delivers them.
pub struct NotifyConsumer {
    run_id: String,
    plan: String,
    queues: Vec<(String, mpsc::Sender<serde_json::Value>)>,
    /// Signalled when every queue is drained (or given up).
    done: Option<std_mpsc::Receiver<()>>,
}

impl NotifyConsumer {
    /// Starts the delivery thread. An error is a usage error (before the run).
    pub fn start(run_id: &str, plan: &str, targets: Vec<Target>) -> io::Result<NotifyConsumer> {
        let client = crate::transport::resolve::http(reqwest::Client::builder())
            .timeout(POST_TIMEOUT)
            .connect_timeout(POST_TIMEOUT)
            .user_agent(concat!("rekindle/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for t in targets {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push((t.shown(), tx));
            receivers.push((t, rx));
        }
        let (done_tx, done) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("rekindle-notify".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (t, rx) in receivers {
                        tasks.spawn(deliver(client.clone(), t, rx));
                    }
                    while tasks.join_next().await.is_some() {}
                });
                let _ = done_tx.send(());
            })?;
        Ok(NotifyConsumer {
            run_id: run_id.to_owned(),
            plan: plan.to_owned(),
            queues,
            done: Some(done),
        })
    }
}

/// Sends one target's messages in order, each POST bounded.
async fn deliver(
    client: reqwest::Client,
    target: Target,
    mut rx: mpsc::Receiver<serde_json::Value>,
) {
    while let Some(m) = rx.recv().await {
        let sent = client.post(target.url.clone()).json(&m).send().await;
        let problem = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("answered {}", r.status())),
            Err(e) if e.is_timeout() => {
                Some(format!("no answer within {}s", POST_TIMEOUT.as_secs()))
            }
            Err(e) if e.is_connect() => Some("cannot connect".to_owned()),
            Err(_) => Some("the request failed".to_owned()),
        };
        if let Some(p) = problem {
            eprintln!(
                "warning: --notify {}: {p}; {} not delivered (the run goes on)",
                target.shown(),
                m["event"].as_str().unwrap_or("message")
            );
        }
    }
}

impl Consumer for NotifyConsumer {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        let Some(m) = message(&self.run_id, &self.plan, e.at, e.kind) else {
            return Ok(());
        };
        for (shown, q) in &self.queues {
            if let Err(mpsc::error::TrySendError::Full(m)) = q.try_send(m.clone()) {
                eprintln!(
                    "warning: --notify {shown}: {QUEUE} messages waiting; {} dropped",
                    m["event"].as_str().unwrap_or("message")
                );
            }
        }
        Ok(())
    }

    /// Closes the queues and gives the last messages a bounded time.
    fn finish(&mut self) {
        self.queues.clear();
        if let Some(done) = self.done.take()
            && done.recv_timeout(FINISH_WAIT).is_err()
        {
            eprintln!(
                "warning: --notify: gave up on the messages still waiting after {}s",
                FINISH_WAIT.as_secs()
            );
        }
    }

    fn name(&self) -> &'static str {
        "notify"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::StageRef;

    #[test]
    fn targets_are_http_and_warnings_hide_their_paths() {
        let t = Target::parse("https://hooks.example.com/services/T0/B0/SECRET").unwrap();
        assert_eq!(t.shown(), "https://hooks.example.com/…");
        assert!(!t.shown().contains("SECRET"));
        let t = Target::parse("http://127.0.0.1:9/x?token=1").unwrap();
        assert_eq!(t.shown(), "http://127.0.0.1:9/…");
        assert!(Target::parse("ftp://h/x").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn messages_carry_slack_text_and_the_facts() {
        let stage = StageRef {
            index: 0,
            name: "db".into(),
        };
        let m = message(
            "r1",
            "p",
            SystemTime::UNIX_EPOCH,
            &EventKind::StageFinished {
                stage,
                outcome: StageOutcome::Aborted {
                    reason: "2 failures exceed the budget of 1".into(),
                },
                done: 3,
                failed: 2,
                skipped: 0,
            },
        )
        .expect("a stage's end is told");
        assert_eq!(m["event"], "stage_aborted");
        assert_eq!(m["failed"], 2);
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("stage `db` ABORTED: 2 failures"), "{text}");
        assert!(
            message(
                "r1",
                "p",
                SystemTime::UNIX_EPOCH,
                &EventKind::RunStarted {
                    plan: "p".into(),
                    stages: 1,
                    hosts: 1
                }
            )
            .is_none()
        );
    }
}
