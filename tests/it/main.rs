//! The one integration-test binary: a module per topic, all driving the real
//! `rekindle` binary (and real sshd / simulator processes where SSH is involved).

mod hosts;
mod inventory;
mod plan;
mod power;
mod sim;
mod ssh;
mod sshd;
mod support;
mod validate;
