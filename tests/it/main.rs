//! The one integration-test binary: a module per topic, all driving the real
//! `rekindle` binary (and real sshd / simulator processes where SSH is involved).

mod admission;
mod audit;
mod book;
mod certs;
mod conventions;
mod dmtf;
mod drill;
mod escalation;
mod etcd;
mod hardening;
mod hosts;
mod inventory;
mod inventory_ansible;
mod ipmi;
mod journal;
mod layers;
mod live;
mod openssh_conformance;
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
mod ssh_config_oracle;
mod sshd;
mod static_binary;
mod support;
mod sushy;
mod validate;
