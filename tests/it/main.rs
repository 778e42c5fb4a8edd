//! The one integration-test binary: a module per topic, all driving the real
//! `rekindle` binary (and real sshd / simulator processes where SSH is involved).

mod admission;
mod audit;
mod certs;
mod drill;
mod escalation;
mod etcd;
mod hardening;
mod hosts;
mod inventory;
mod inventory_ansible;
mod ipmi;
mod journal;
mod live;
mod plan;
mod power;
mod reboot;
mod remediate;
mod report;
mod retry;
mod run;
mod scripts;
mod sim;
mod ssh;
mod sshd;
mod static_binary;
mod support;
mod sushy;
mod validate;
