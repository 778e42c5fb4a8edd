//! The append-only run journal.
