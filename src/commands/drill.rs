use crate::cli::DrillArgs;
use crate::exit::Exit;

pub fn execute(_args: DrillArgs, _verbose: u8) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle drill` is not built yet")
}
