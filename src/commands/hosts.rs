use crate::cli::HostsArgs;
use crate::exit::Exit;

pub fn execute(_args: HostsArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("`rekindle hosts` is not built yet")
}
