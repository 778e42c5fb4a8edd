use crate::cli::ReportArgs;
use crate::exit::Exit;

pub fn execute(_args: ReportArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle report` is not built yet")
}
