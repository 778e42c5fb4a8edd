//! placeholder
use super::FileInventory;
use crate::diag::Diagnostic;
use std::path::Path;
pub(crate) fn read(
    _r: &crate::yaml::Node,
    _b: &Path,
    _budget: &mut u64,
    _d: &mut Vec<Diagnostic>,
) -> FileInventory {
    FileInventory::default()
}
