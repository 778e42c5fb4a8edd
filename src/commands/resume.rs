use crate::cli::ResumeArgs;
use crate::exit::Exit;

pub fn execute(_args: ResumeArgs, _verbose: u8) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle resume` is not built yet")
}
