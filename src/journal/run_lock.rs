//! What a run holds while it runs: its plan's lock file ([`super::lock`])
//! and its entry in the per-user run registry ([`super::registry`]), taken
//! together and checked together before every write.
//!
//! Owns only the pair; taking, breaking and reading each is its own
//! module's. It must not write the journal.

use super::lock::{Held, Lock};
use super::registry::Entry;

/// Both places a run holds: its plan's lock file and its entry in the
/// per-user run registry. Released (each only if still this run's) on drop.
#[derive(Debug)]
pub struct RunLock {
    pub plan: Lock,
    pub registry: Entry,
}

impl RunLock {
    /// What the journal checks before writing and before acknowledging
    /// intents: cheap (two `stat`s), so it runs for every batch.
    pub fn held(&self) -> Held {
        Held {
            files: vec![
                (
                    self.plan.path.clone(),
                    self.plan.identity,
                    "the plan's lock",
                ),
                (
                    self.registry.path().to_owned(),
                    self.registry.identity(),
                    "the run's registry entry",
                ),
            ],
        }
    }
}
