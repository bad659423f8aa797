//! Command-line interface: one module per subcommand.

mod check;
mod conntrack;
mod down;
mod import;
mod log;
mod reload;
mod rules;
mod run;
mod stats;
mod status;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use firewall::pins::{DEFAULT_PIN_DIR, PinDir};

#[derive(Parser, Debug)]
#[command(name = "firewall", version, about = "Stateful XDP/TC firewall")]
pub struct Args {
    /// Directory (on a bpffs) holding this instance's pinned maps and links.
    /// Use one per instance to run several side by side.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load and attach the firewall, then run the conntrack ager until
    /// SIGINT/SIGTERM. The firewall stays in place when the daemon exits.
    Run(run::RunArgs),
    /// Remove everything this instance attached and pinned.
    Down,
    /// Show whether the firewall is attached, and where.
    Status(status::StatusArgs),
    /// Inspect the connection table.
    Conntrack(conntrack::ConntrackArgs),
    /// Show verdict, drop-reason, rule and ager counters.
    Stats(stats::StatsArgs),
    /// The installed rules per chain with their counters.
    Rules(rules::RulesArgs),
    /// Validate a config file without touching the kernel.
    Check(check::CheckArgs),
    /// Translate an iptables-save dump into a config (printed on stdout).
    Import(import::ImportArgs),
    /// Replace the rules (and timeouts, port forwards, helpers) of the
    /// running firewall atomically; tracked connections survive.
    Reload(reload::ReloadArgs),
    /// Follow the events of LOG rules, like the kernel log's netfilter lines.
    Log(log::LogArgs),
}

pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    let pins = PinDir::new(args.pin_dir);
    match args.command {
        Command::Run(a) => run::run(&pins, a),
        Command::Down => down::down(&pins),
        Command::Status(a) => status::status(&pins, a),
        Command::Conntrack(a) => conntrack::conntrack(&pins, a),
        Command::Stats(a) => stats::stats(&pins, a),
        Command::Rules(a) => rules::rules(&pins, a),
        Command::Check(a) => check::check(a),
        Command::Import(a) => import::import(a),
        Command::Reload(a) => reload::reload(&pins, a),
        Command::Log(a) => log::log(&pins, a),
    }
}
