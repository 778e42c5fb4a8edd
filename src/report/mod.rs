//! Consumers of the event stream that write for people: progress, summary, reports.

pub mod plain;
