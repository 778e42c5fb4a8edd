//! What the command line lends the pipelines that talk to the operator
//! while they run (resume, takeover, standby): its typing of arguments into
//! settings, its printing, its confirmation and the live views it serves.
//!
//! Owns nothing but the trait: the library decides what to say and when;
//! the command (`commands::args::Terminal`) decides how it shows.

use super::consume::Consumer;
use super::{Finished, Loaded, Settings};
use crate::inventory::Inventory;
use crate::journal::Header;
use crate::plan::Plan;
use crate::report::state::Shared;

pub trait Front {
    /// A line for the operator (stderr); also the interrupt notices.
    fn say(&self) -> fn(&str);
    /// Loads and plans the inputs, showing their diagnostics and warnings.
    fn load(
        &self,
        inventories: &[String],
        playbook: &str,
        limit: Option<&str>,
    ) -> anyhow::Result<Loaded>;
    /// The run's settings: its flags, else what the run's `header` began
    /// with (`--parallel`, `--rate`), then `inventory`'s defaults.
    fn settings(&self, header: &Header, inventory: &Inventory) -> anyhow::Result<Settings>;
    /// Whether the operator goes ahead with `plan`; `Err` when not.
    fn confirm(&self, plan: &Plan) -> anyhow::Result<()>;
    /// The live page and notifications, started and announced.
    fn live_views(
        &self,
        run_id: &str,
        plan: &Plan,
        state: &Shared,
    ) -> anyhow::Result<Vec<Box<dyn Consumer>>>;
    /// Shows a finished execution (summary, warnings, journal).
    fn finished(&self, finished: &Finished);
}
