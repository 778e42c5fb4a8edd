//! Bench-only helper (bench/rolling-reboot.sh), not a product feature: the
//! makespan bounds a rolling reboot of a simulated fleet can reach, from the
//! simulator's own deterministic boot times (same seed, same sampler).
//!
//! cargo run --release --example boot_times -- HOSTS WINDOW BOOT_TIME SEED
//!
//! Prints JSON: the lower bound for `HOSTS` jobs on `WINDOW` slots
//! (max of total/WINDOW, longest job, W-th + (W+1)-th longest), the makespan
//! of an ideal rolling window in inventory order (a finished host replaced at
//! once, zero overhead), and of ideal `serial` batches (each batch waits for
//! its slowest host, as Ansible's `serial` does).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use anyhow::{Context, bail};
use rekindle::sim::BootTimeRange;

/// The simulator drops a rebooting host's sessions this long after the
/// command (sim::host::REBOOT_GRACE); it is part of every host's outage.
const GRACE: Duration = Duration::from_millis(100);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hosts, window, boot, seed] = args.as_slice() else {
        bail!("usage: boot_times HOSTS WINDOW BOOT_TIME SEED");
    };
    let hosts: usize = hosts.parse().context("HOSTS")?;
    let window: usize = window.parse().context("WINDOW")?;
    let seed: u64 = seed.parse().context("SEED")?;
    let boot = BootTimeRange::parse(boot)?;
    if hosts == 0 || window == 0 {
        bail!("HOSTS and WINDOW must be positive");
    }
    // First reboot of host i is boot number 1 (sim::host).
    let jobs: Vec<f64> = (0..hosts)
        .map(|i| (boot.sample(seed, i, 1) + GRACE).as_secs_f64())
        .collect();
    let total: f64 = jobs.iter().sum();
    let mut sorted = jobs.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let longest = sorted.first().copied().unwrap_or(0.0);
    let pair = if hosts > window {
        sorted[window - 1] + sorted[window]
    } else {
        0.0
    };
    let lower_bound = (total / window as f64).max(longest).max(pair);

    // Rolling window: each job starts on the slot that frees first.
    let mut slots: BinaryHeap<Reverse<u64>> = (0..window.min(hosts)).map(|_| Reverse(0)).collect();
    let mut rolling = 0u64;
    for j in &jobs {
        let Reverse(start) = slots.pop().unwrap_or(Reverse(0));
        let end = start + (j * 1e6) as u64;
        rolling = rolling.max(end);
        slots.push(Reverse(end));
    }
    let serial: f64 = jobs
        .chunks(window)
        .map(|b| b.iter().copied().fold(0.0, f64::max))
        .sum();
    println!(
        "{{\"hosts\": {hosts}, \"window\": {window}, \"mean_job_s\": {:.3}, \"longest_job_s\": {longest:.3}, \
         \"lower_bound_s\": {lower_bound:.3}, \"ideal_rolling_s\": {:.3}, \"ideal_serial_batches_s\": {serial:.3}}}",
        total / hosts as f64,
        rolling as f64 / 1e6
    );
    Ok(())
}
