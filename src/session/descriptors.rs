//! The one file-descriptor policy: raise the soft limit to the hard one,
//! keep [`HEADROOM`] descriptors free, and fit as many hosts in flight as
//! the rest holds. `run`, `resume`, `drill` and `plan --preflight` all ask
//! here.
//!
//! Owns the headroom and the per-host count. It must not schedule anything:
//! the engine gets the number this returns.

use crate::plan::Plan;
use crate::playbook::{Check, Step};

/// Descriptors kept free for everything that is not a host socket
/// (journal, stdio, jump connections, the runtime, local commands).
pub const HEADROOM: u64 = 256;

/// What the limit allows, and a note for the operator when it clamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub parallel: usize,
    pub notes: Vec<String>,
}

/// Raises the soft limit as far as it goes and returns it.
pub fn raise_limit(notes: &mut Vec<String>) -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            notes.push(format!(
                "warning: cannot raise the file descriptor limit: {e}"
            ));
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Hosts in flight that fit under `limit`: each holds `per_host`
/// descriptors; `reserved` more are taken by something else (a drill's
/// in-process listeners).
pub fn fit(
    limit: u64,
    per_host: u64,
    reserved: u64,
    requested: Option<usize>,
    wanted: usize,
) -> Fit {
    let per_host = per_host.max(1);
    let free = limit
        .saturating_sub(HEADROOM)
        .saturating_sub(reserved)
        .max(1);
    let fit = usize::try_from(free / per_host)
        .unwrap_or(usize::MAX)
        .max(1);
    let why = |reserved: u64| {
        let reserved = if reserved > 0 {
            format!(", {reserved} taken by the simulated fleet")
        } else {
            String::new()
        };
        format!(
            "the file descriptor limit is {limit} ({HEADROOM} kept free{reserved}, {per_host} per host)"
        )
    };
    let mut notes = Vec::new();
    let parallel = match requested {
        Some(n) if n > fit => {
            notes.push(format!(
                "note: --parallel {n} clamped to {fit}: {}",
                why(reserved)
            ));
            fit
        }
        Some(n) => n.max(1),
        None => {
            if wanted > fit {
                notes.push(format!(
                    "note: hosts in flight clamped to {fit} (stages ask for up to {wanted} at once): {}",
                    why(reserved)
                ));
            }
            fit
        }
    };
    Fit { parallel, notes }
}

/// For a plan: raises the limit, then [`fit`] with the plan's per-host need
/// and the most hosts its stages ask for at once.
pub fn for_plan(plan: &Plan, requested: Option<usize>, extra_per_host: u64, reserved: u64) -> Fit {
    let mut notes = Vec::new();
    let limit = raise_limit(&mut notes);
    let mut f = fit(
        limit,
        per_host(plan) + extra_per_host,
        reserved,
        requested,
        wanted(plan),
    );
    notes.append(&mut f.notes);
    f.notes = notes;
    f
}

/// The most hosts the plan's stages ask for at once: the widest window, or
/// the widest wave of stages running together.
fn wanted(plan: &Plan) -> usize {
    let widest = plan.stages.iter().map(|s| s.window).max().unwrap_or(1);
    plan.waves
        .iter()
        .map(|w| {
            w.iter()
                .filter_map(|&i| plan.stages.get(i))
                .map(|s| s.window)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(widest)
        .max(widest)
}

/// The most descriptors one host in flight holds at once: its SSH socket (a
/// jump host's channels share one), plus a probe socket during tcp/http
/// checks, or three pipes for a local command.
pub fn per_host(plan: &Plan) -> u64 {
    let step_extra = |step: &Step| match step {
        Step::Local { .. } => 3,
        Step::Health(h) if h.checks.iter().any(|c| !matches!(c, Check::Ssh(_))) => 1,
        Step::PowerOn(_) => 1,
        _ => 0,
    };
    1 + plan
        .stages
        .iter()
        .flat_map(|s| s.steps.iter())
        .map(step_extra)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_a_request_beyond_the_limit_and_says_why() {
        let f = fit(400, 1, 0, Some(5000), 1);
        assert_eq!(f.parallel, 144);
        assert!(
            f.notes[0].contains("--parallel 5000 clamped to 144"),
            "{:?}",
            f.notes
        );
        assert!(f.notes[0].contains("limit is 400"), "{:?}", f.notes);
        assert_eq!(fit(400, 1, 0, Some(10), 1).parallel, 10);
        assert!(fit(400, 1, 0, Some(10), 1).notes.is_empty());
    }

    #[test]
    fn reserved_descriptors_and_wide_stages() {
        let f = fit(1256, 2, 500, None, 10_000);
        assert_eq!(f.parallel, 250);
        assert!(f.notes[0].contains("ask for up to 10000"), "{:?}", f.notes);
        assert!(
            f.notes[0].contains("500 taken by the simulated fleet"),
            "{:?}",
            f.notes
        );
        // Never zero, whatever the limit.
        assert_eq!(fit(10, 5, 100, None, 1).parallel, 1);
    }
}
