use crate::cli::ValidateArgs;
use crate::exit::Exit;

pub fn execute(_args: ValidateArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle validate` is not built yet")
}
