//! The execution engine (see engine/ files).
