//! Command-line types (clap derive). Owns flag names, defaults and help text;
//! does no I/O. `commands` turns a parsed [`Cli`] into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rekindle",
    version,
    about = "Bring a fleet of servers back: dependency-ordered, rate-limited, health-gated restarts over SSH",
    after_help = "Exit codes: 0 all hosts done; 1 finished with failures inside the budgets (validate: invalid); \
                  2 usage or input error; 3 aborted (failure budget exceeded or canary failed); \
                  4 the journal could not record every outcome; 5 fenced: the run's etcd lease was lost, \
                  another bastion may drive it; 130 interrupted."
)]
pub struct Cli {
    /// More detail on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where Ansible inventories' playbook-side `group_vars/` and `host_vars/`
    /// are read (as `ansible-inventory --playbook-dir`); default: the current directory.
    #[arg(long, value_name = "DIR", global = true)]
    pub playbook_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check playbooks (and inventories, if given); report every problem.
    Validate(ValidateArgs),
    /// List the expanded inventory with labels, to debug selectors.
    Hosts(HostsArgs),
    /// Show how rekindle reaches hosts after ~/.ssh/config, as `ssh -G` does.
    SshConfig(SshConfigArgs),
    /// Dry run: show what a playbook would do to an inventory. Touches no host.
    Plan(PlanArgs),
    /// Check a plan against the fleet before the fire: the dependencies hosts show,
    /// and what rekindle itself needs. Read-only: changes nothing on any host.
    Audit(AuditArgs),
    /// Execute a playbook against an inventory over SSH.
    Run(RunArgs),
    /// Continue an interrupted run from its journal.
    Resume(ResumeArgs),
    /// Hold a run: no new host or step starts; steps in flight finish.
    Pause(ControlArgs),
    /// Let a paused run go on.
    Continue(ControlArgs),
    /// Summarise a run from its journal.
    Report(ReportArgs),
    /// List the runs kept in etcd: live, stale and finished, with their drivers.
    Status(StatusArgs),
    /// Wait as the standby of a run kept in etcd; take it over when its driver's lease expires.
    Standby(StandbyArgs),
    /// Serve a simulated fleet of SSH hosts on loopback.
    Sim(SimArgs),
    /// Fire drill: run a playbook against a simulated copy of an inventory.
    Drill(DrillArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(CompletionsArgs),
    /// Write rekindle's man pages (rekindle.1 and one per subcommand).
    Man(ManArgs),
    /// Internal: serve one shard of a simulated fleet (started by `sim`; reads its hosts on stdin).
    #[command(hide = true)]
    SimWorker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// `file:line:col: severity: message`, the source line and a caret.
    Text,
    /// A JSON array of {file, line, column, severity, code, message, help}.
    Json,
    /// GitHub Actions workflow commands (`::error file=...`): annotations on a pull request.
    Github,
    /// SARIF 2.1.0, for GitHub code scanning and other static-analysis viewers.
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Junit,
    Html,
    /// The hosts (by `--status`) as one selector for `--limit`.
    Hosts,
}

/// A host's result in a run, as `report --status` filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostStatus {
    Done,
    Failed,
    /// Unreachable and set aside (`on_unreachable: skip`).
    Unreachable,
    /// Stopped mid-step (interrupted, or the journal ends while it ran).
    Interrupted,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Playbook files to check.
    #[arg(required = true, value_name = "PLAYBOOK")]
    pub playbooks: Vec<String>,
    /// Inventory files (repeatable); enables the checks that need hosts.
    #[arg(short, long = "inventory", value_name = "INV")]
    pub inventories: Vec<String>,
    /// How to print problems: text with the source line, JSON, GitHub annotations, or SARIF.
    #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
    pub format: DiagFormat,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Inventory files (repeatable): native YAML, Ansible INI or Ansible YAML.
    #[arg(short, long = "inventory", value_name = "INV", required = true)]
    pub inventories: Vec<String>,
    /// Only hosts matching, e.g. `role=db,dc=pangyo`, `group=web`, `name=pg-r00*`, `host=web[01-04]`.
    #[arg(long, value_name = "SELECTOR")]
    pub select: Option<String>,
    /// Output format: an aligned table, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// Hosts to show: inventory names with `-i` (default: every host), else
    /// plain names resolved through the ssh config alone, as `ssh -G NAME`.
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Inventory files (repeatable): native YAML, Ansible INI or Ansible YAML.
    #[arg(short, long = "inventory", value_name = "INV")]
    pub inventories: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// What a command that plans works on: a playbook, the inventories its
/// selectors read, and an optional `--limit` (plan, audit, run, drill).
#[derive(Debug, Clone, Args)]
pub struct Inputs {
    /// The playbook (YAML): its stages in dependency order.
    #[arg(value_name = "PLAYBOOK")]
    pub playbook: String,
    /// Inventory files (repeatable): native YAML, Ansible INI or Ansible YAML.
    #[arg(short, long = "inventory", value_name = "INV", required = true)]
    pub inventories: Vec<String>,
    /// Narrow every stage to hosts matching this selector, e.g. `rack=pg-r017`.
    #[arg(long, value_name = "SELECTOR")]
    pub limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: Inputs,
    /// Output format: text for people, JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Also connect to every selected host (auth, host key, boot id); changes nothing.
    #[arg(long)]
    pub preflight: bool,
    /// BMC credentials file: check that every host a power_on step reaches has its entry.
    #[arg(long, value_name = "FILE")]
    pub bmc_credentials: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub bmc_tls: BmcTlsArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub input: Inputs,
    /// Output format: text for people, JSON for tools.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Reads of each host's TCP sockets (more catch more short-lived connections).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub samples: usize,
    /// Time between two reads of one host.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub interval: String,
    /// Hosts read at once (each holds a connection through its samples).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub parallel: usize,
    /// The site to assume lost (e.g. `dc=pangyo`): every dependency of the recovery in it is an error.
    #[arg(long, value_name = "SELECTOR")]
    pub assume_lost: Option<String>,
    /// The etcd a run would be kept in (comma-separated client endpoints), checked as a dependency.
    #[arg(long, value_name = "ENDPOINTS", env = "REKINDLE_ETCD")]
    pub etcd: Option<String>,
    /// Webhooks a run would notify (as `run --notify`), checked as dependencies.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// BMC credentials file (`user:password`, mode 0600): reads the boot path of
    /// every host with a `bmc` label.
    #[arg(long, value_name = "FILE")]
    pub bmc_credentials: Option<PathBuf>,
    #[command(flatten)]
    pub bmc_tls: BmcTlsArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Which certificates BMCs may present over HTTPS (docs/bmc.md). A host
/// label `bmc_cert_sha256` pins one BMC's certificate too.
#[derive(Debug, Clone, Default, Args)]
pub struct BmcTlsArgs {
    /// CA bundle (PEM) to trust for BMC HTTPS; a BMC presenting a certificate
    /// of this file as its own (self-signed) is trusted too.
    #[arg(long, value_name = "FILE")]
    pub bmc_ca: Option<PathBuf>,
    /// Skip TLS verification for BMCs: trusts any certificate.
    #[arg(long)]
    pub bmc_insecure: bool,
    /// Known BMC certificates (`BMC SHA256-FINGERPRINT` lines), like
    /// known_hosts: a BMC listed must present that certificate.
    #[arg(long, value_name = "FILE")]
    pub bmc_known_certs: Option<PathBuf>,
    /// Record the certificate of a BMC not yet in --bmc-known-certs (trust
    /// on first use); a changed certificate is still refused.
    #[arg(long)]
    pub accept_new_bmc_certs: bool,
}

/// How to reach hosts over SSH. The inventory's `defaults` may also set these.
#[derive(Debug, Clone, Default, Args)]
pub struct SshArgs {
    /// Private key to offer (repeatable), after ssh-agent.
    #[arg(long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// OpenSSH known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// OpenSSH client config [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Append unknown host keys to known_hosts (like StrictHostKeyChecking=accept-new).
    /// A changed key still fails the host.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: Inputs,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// `--etcd-prefix`'s default.
pub const DEFAULT_ETCD_PREFIX: &str = crate::etcd::DEFAULT_PREFIX;

/// Keeping a run in etcd, so that another bastion can see it and finish it.
#[derive(Debug, Clone, Default, Args)]
pub struct EtcdArgs {
    /// Keep the run in etcd too: comma-separated `http(s)://host:port` client endpoints.
    #[arg(long, value_name = "ENDPOINTS", env = "REKINDLE_ETCD")]
    pub etcd: Option<String>,
    /// Key prefix of rekindle's runs in etcd.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = DEFAULT_ETCD_PREFIX,
        env = "REKINDLE_ETCD_PREFIX"
    )]
    pub etcd_prefix: String,
    /// CA bundle (PEM) to trust for the etcd endpoints' TLS.
    #[arg(long, value_name = "FILE", env = "REKINDLE_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's TLS client authentication (with --etcd-key).
    #[arg(long, value_name = "FILE", env = "REKINDLE_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", env = "REKINDLE_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// Time to live of the driver's lease: a driver that cannot renew it stops acting.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub etcd_ttl: String,
    /// This bastion's name as other bastions see it [default: the host name].
    #[arg(long, value_name = "NAME", env = "REKINDLE_BASTION")]
    pub bastion: Option<String>,
}

/// Options shared by everything that executes a plan (run, resume, drill).
#[derive(Debug, Clone, Default, Args)]
pub struct ExecArgs {
    /// Global cap on hosts in flight across all stages.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Global cap on host starts, e.g. `100/s` or `3000/m`.
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Directory for the run's journal and lock.
    #[arg(long, value_name = "DIR", default_value = "rekindle-journal")]
    pub journal: PathBuf,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Print only the final summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Take over the plan's lock (and registry entry) of a run this machine
    /// cannot check: one on another bastion, or an unreadable lock. Only
    /// when that run is known to be dead; a run whose process is alive on
    /// this machine is never taken by this flag.
    #[arg(long)]
    pub break_lock: bool,
    /// DANGEROUS: take over even a run whose process is alive on this
    /// machine. It stops acting at its next intent; hosts it is rebooting
    /// right now may still be mid-reboot. Prefer stopping that run first.
    #[arg(long)]
    pub break_live_lock: bool,
    /// BMC credentials file (`user:password`, mode 0600) for power_on steps.
    #[arg(long, value_name = "FILE")]
    pub bmc_credentials: Option<PathBuf>,
    #[command(flatten)]
    pub bmc_tls: BmcTlsArgs,
    /// Allow `http://` BMC URLs: the BMC password then crosses the network
    /// in cleartext (a host labelled `bmc_allow_http: "true"` allows it too).
    #[arg(long)]
    pub bmc_allow_http: bool,
    /// Serve a live status page, /api/status and /metrics on ADDR: `PORT` (loopback),
    /// `127.0.0.1:PORT`, or an interface's `IP:PORT` named explicitly (never 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// POST a JSON message (Slack-compatible `text`) to URL when a stage starts, finishes
    /// or aborts and when the run ends (repeatable; `@FILE` reads URLs from a file).
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// The sudo password for `become` (first line; mode 0600), fed to `sudo -S` on stdin.
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The run: its journal file, or its run id (its journal is in --journal DIR).
    #[arg(value_name = "RUN")]
    pub run: String,
    /// Directory of the run's journal, for a run id.
    #[arg(long, value_name = "DIR", default_value = "rekindle-journal")]
    pub journal: PathBuf,
    /// A run kept in etcd is paused there (its journal's header names the cluster; `--etcd` reaches one whose journal is not on this machine).
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The journal file of the interrupted run (with `--etcd`: its run id).
    #[arg(value_name = "JOURNAL")]
    pub journal_file: PathBuf,
    /// Resume even if the playbook or inventory changed since the run began.
    #[arg(long)]
    pub force: bool,
    /// Retry only the hosts that failed (or were set aside unreachable); leave the rest for a later resume.
    #[arg(long)]
    pub failed_only: bool,
    /// Resume only hosts matching this selector (within the run's own --limit); leave the rest for a later resume.
    #[arg(long, value_name = "SELECTOR")]
    pub limit: Option<String>,
    /// With --limit or --failed-only: go on although failed hosts left out break their stage's failure budget (that stage then counts as finished and the stages after it run).
    #[arg(long)]
    pub accept_failures: bool,
    /// Resume a run kept in etcd from the local journal alone, outside etcd's lease: only when that etcd is gone for good and no other bastion can drive the run.
    #[arg(long)]
    pub without_etcd: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's journal file (`rekindle-journal/RUN_ID.jsonl`).
    #[arg(value_name = "JOURNAL")]
    pub journal_file: PathBuf,
    /// Output format: text summary, JSON facts, JUnit XML, a self-contained HTML page, or a host selector.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// With `--format hosts`: only hosts with this result (repeatable, or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATUS")]
    pub status: Vec<HostStatus>,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With `--etcd`, JOURNAL is a run id: the run is read from etcd.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct StandbyArgs {
    /// The run to stand by for (its id, as `rekindle status --etcd ...` lists it).
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `rekindle completions bash > /etc/bash_completion.d/rekindle`.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (rekindle.1, rekindle-run.1, ...) into DIR instead of printing rekindle.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The simulated fleet's shape and faults, shared by `sim` and `drill`.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Boot time of a simulated host, fixed (`20s`) or a range (`20s..60s`).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub boot_time: String,
    /// Faults by fraction, e.g. `never_returns=0.01,unhealthy=0.02`. Kinds:
    /// never_returns, unhealthy, slow_boot, hang_handshake, flap, no_reboot,
    /// bmc_unreachable, stuck_powering_on, bmc_bad_credentials. A
    /// never_returns or stuck_powering_on fault may add `:recover=P`, the
    /// chance that a BMC power cycle brings such a host back
    /// (`never_returns=0.01:recover=0.5`; default 0; needs --bmcs or --powered-off).
    #[arg(long, value_name = "KIND=FRACTION[:recover=P],...")]
    pub fail: Option<String>,
    /// Seed for boot times and fault placement (same seed, same fleet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start every host powered off, with a Redfish BMC per host.
    #[arg(long)]
    pub powered_off: bool,
    /// Give every host a Redfish BMC, hosts up (a drill adds them when the plan powers hosts on or power-cycles them).
    #[arg(long)]
    pub bmcs: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of hosts (named sim-00001...).
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "inventories",
        required_unless_present = "inventories"
    )]
    pub hosts: Option<usize>,
    /// Mirror these inventories' hosts (names and labels kept).
    #[arg(short, long = "inventory", value_name = "INV")]
    pub inventories: Vec<String>,
    /// SSH port on every host address [default: 22 as root, else 2222].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// HTTP health port on every host address [default: 8080 as root, else 8081].
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Redfish BMC port on every host address with --powered-off [default: 443 as root, else 8443].
    #[arg(long, value_name = "PORT")]
    pub bmc_port: Option<u16>,
    /// How long a `bmc_unreachable` BMC refuses connections before it answers.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub bmc_outage: String,
    /// How every BMC behaves: generic, dell, hpe, supermicro, openbmc, lenovo (docs/bmc.md).
    #[arg(long, value_name = "PROFILE", default_value = "generic")]
    pub bmc_profile: String,
    /// Where to write inventory.yaml, known_hosts, id_ed25519 and status.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Connections between hosts, shown in their /proc/net/tcp for `rekindle audit`:
    /// lines of `CLIENTS SERVERS PORT [N]` (host patterns).
    #[arg(long, value_name = "FILE")]
    pub deps: Option<PathBuf>,
    /// Hosts per worker process (a fleet of at most this many runs in one process).
    #[arg(long, value_name = "N", default_value_t = crate::sim::config::DEFAULT_SHARD_SIZE)]
    pub shard_size: usize,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub input: Inputs,
    /// Simulate this fraction of the inventory, keeping label proportions.
    #[arg(long, value_name = "FRACTION", default_value_t = 1.0)]
    pub sample: f64,
    /// Compress simulated boot times by this factor; reported times are scaled back.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument and flag of every subcommand, `path: id`, that has no help line.
    fn missing_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                out.push(format!("{path}: {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() {
                continue;
            }
            if sub.get_about().is_none() {
                out.push(format!("{path} {}: (no about)", sub.get_name()));
            }
            missing_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_and_flag_has_help() {
        let mut cmd = Cli::command();
        // Builds clap's own --help/--version so they are walked like the rest.
        cmd.build();
        let mut missing = Vec::new();
        missing_help(&cmd, "rekindle", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn the_walker_sees_arguments_without_help() {
        // The check above must be able to fail: an argument with no doc comment is caught.
        let cmd = clap::Command::new("x")
            .subcommand(clap::Command::new("plan").arg(clap::Arg::new("playbook").required(true)));
        let mut missing = Vec::new();
        missing_help(&cmd, "x", &mut missing);
        assert_eq!(missing, ["x plan: (no about)", "x plan: playbook"]);
    }
}
