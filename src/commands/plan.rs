use crate::cli::PlanArgs;
use crate::exit::Exit;

pub fn execute(_args: PlanArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle plan` is not built yet")
}
