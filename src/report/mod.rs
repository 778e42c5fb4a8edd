//! The run state folded once from events ([`state::RunState`]) and what
//! people and machines read of it: live progress, the end-of-run summary,
//! and the `report` formats; also the
//! plan's and the inventory's renderings (`rekindle plan`, `hosts`).
//!
//! Owns presentation only. It must never touch a host, and reads the journal
//! only through [`crate::journal`].

pub mod drill;
pub mod failures;
pub mod fold;
pub mod formats;
pub mod hosts;
pub mod nodeset;
pub mod plain;
pub mod plan;
pub mod progress;
pub mod state;
pub mod summary;
pub mod text;
pub mod totals;

#[cfg(test)]
mod tests;

/// `1 host`, `3 hosts`: a count with its noun, singular for one.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
