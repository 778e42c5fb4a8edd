use crate::cli::SimArgs;
use crate::exit::Exit;

pub fn execute(_args: SimArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle sim` is not built yet")
}
