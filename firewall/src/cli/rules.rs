//! `firewall rules list`: the installed ruleset with its counters, per
//! chain, like `iptables -L -v -n --line-numbers`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use firewall::{maps::Maps, pins::PinDir, ruleset, sys};
use firewall_common::{Chain, RuleAction};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// The rules in order, per chain, with packet and byte counters.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct ChainView {
    chain: &'static str,
    /// What happens to NEW traffic no rule decides (LAN interfaces accept).
    policy: &'static str,
    rules: Vec<RuleView>,
}

#[derive(Serialize)]
struct RuleView {
    /// 1-based position in the whole ruleset (the config's order).
    num: u32,
    packets: u64,
    bytes: u64,
    action: &'static str,
    rule: String,
}

pub fn rules(pins: &PinDir, a: RulesArgs) -> anyhow::Result<ExitCode> {
    let RulesCommand::List { json } = a.command;
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading the ruleset")?;
    let (hdr, live) = ruleset::live(&maps).context("reading the ruleset")?;
    let chains = [
        (Chain::Input, "INPUT"),
        (Chain::Forward, "FORWARD"),
        (Chain::Output, "OUTPUT"),
    ];
    let mut out: Vec<ChainView> = chains
        .iter()
        .map(|(c, name)| ChainView {
            chain: name,
            policy: if hdr.policy[*c as usize] == RuleAction::Accept as u8 {
                "ACCEPT"
            } else {
                "DROP"
            },
            rules: Vec::new(),
        })
        .collect();
    for r in live {
        let Some(view) = out.get_mut(r.chain as usize) else {
            continue;
        };
        view.rules.push(RuleView {
            num: r.index,
            packets: r.packets,
            bytes: r.bytes,
            action: action_name(r.action),
            rule: r.text,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (i, ch) in out.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("Chain {} (policy {})", ch.chain, ch.policy);
        println!(
            "{:>4} {:>10} {:>12}  {:<7} rule",
            "num", "pkts", "bytes", "target"
        );
        for r in &ch.rules {
            println!(
                "{:>4} {:>10} {:>12}  {:<7} {}",
                r.num, r.packets, r.bytes, r.action, r.rule
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn action_name(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Accept => "ACCEPT",
        RuleAction::Drop => "DROP",
        RuleAction::Reject => "REJECT",
        RuleAction::Log => "LOG",
    }
}
