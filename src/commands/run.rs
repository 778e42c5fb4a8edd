use crate::cli::RunArgs;
use crate::exit::Exit;

pub fn execute(_args: RunArgs, _verbose: u8) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle run` is not built yet")
}
