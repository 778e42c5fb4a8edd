//! Commands run on the bastion itself (`local` steps).
//!
//! Owns spawning `sh -c`, the output tail and killing the whole process
//! group on timeout. It must not retry.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ExecError, ExecOutput};

const TAIL_BYTES: usize = 4096;
const TAIL_LINES: usize = 20;
/// How long output may trail the shell's exit.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// Runs `command` with `sh -c`, with `env` added to the environment, bounded by `timeout`
/// (the process group is killed on timeout).
pub async fn run(
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let mut cmd = tokio::process::Command::new("sh");
    // The operator's BMC password (every REKINDLE_* variable) is rekindle's,
    // not the hook's; the hook's own REKINDLE_HOST... are set below.
    for name in crate::child_env::inherited_to_remove() {
        cmd.env_remove(name);
    }
    cmd.arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a timeout kills what the shell started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| ExecError::Channel(format!("cannot start sh: {e}")))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    // Dropped before the shell finished (the run was stopped at once): kill
    // the whole group, or what the shell started outlives rekindle.
    let mut group = GroupKill(pgid);
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let readers = [spawn_reader(out, tx.clone()), spawn_reader(err, tx)];

    let mut tail: Vec<u8> = Vec::new();
    let status = tokio::time::timeout(timeout, async {
        // Drain output while waiting, so a chatty command cannot block on a full pipe.
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => push_tail(&mut tail, &c),
                    None => return child.wait().await,
                },
                status = child.wait() => {
                    // Output may still be in flight: collect it, but a background
                    // child holding the pipes open must not keep us waiting.
                    let status = status?;
                    let grace = tokio::time::Instant::now() + OUTPUT_GRACE;
                    while let Ok(Some(c)) = tokio::time::timeout_at(grace, rx.recv()).await {
                        push_tail(&mut tail, &c);
                    }
                    return Ok(status);
                }
            }
        }
    })
    .await;
    match status {
        Err(_) => {
            group.kill();
            let _ = child.kill().await;
            readers.iter().for_each(|r| r.abort());
            Err(ExecError::Timeout(timeout))
        }
        Ok(Err(e)) => Err(ExecError::Channel(format!("waiting for sh: {e}"))),
        Ok(Ok(status)) => {
            // The shell finished: what it left running in the background is
            // the command's business (`nohup ... &`), not ours to kill.
            group.disarm();
            readers.iter().for_each(|r| r.abort());
            Ok(ExecOutput {
                exit_status: status.code().and_then(|c| u32::try_from(c).ok()),
                output: finish_tail(&tail),
            })
        }
    }
}

/// Kills a process group with SIGKILL when told to or when dropped armed.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: plain syscall; pgid is the group our child leads.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    })
}

fn push_tail(tail: &mut Vec<u8>, data: &[u8]) {
    tail.extend_from_slice(data);
    if tail.len() > 2 * TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
}

fn finish_tail(tail: &[u8]) -> String {
    let tail = &tail[tail.len().saturating_sub(TAIL_BYTES)..];
    let text = String::from_utf8_lossy(tail);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
