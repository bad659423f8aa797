//! `firewall rules list`: the installed ruleset with its counters, per
//! chain, like `iptables -L -v -n --line-numbers`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use firewall::{describe, maps::Maps, pins::PinDir, sys};
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
    let settings = maps.settings.get(&0, 0).context("reading settings")?;
    let chains = [
        (Chain::Input, "INPUT"),
        (Chain::Forward, "FORWARD"),
        (Chain::Output, "OUTPUT"),
    ];
    let mut out: Vec<ChainView> = chains
        .iter()
        .map(|(c, name)| ChainView {
            chain: name,
            policy: if settings.policy[*c as usize] == RuleAction::Accept as u8 {
                "ACCEPT"
            } else {
                "DROP"
            },
            rules: Vec::new(),
        })
        .collect();
    for i in 0..settings.rule_count {
        let r = maps.rules.get(&i, 0).context("reading a rule")?;
        let c = maps.rule_counter(i);
        let Some(view) = out.get_mut(usize::from(r.chain)) else {
            continue;
        };
        view.rules.push(RuleView {
            num: i + 1,
            packets: c.packets,
            bytes: c.bytes,
            action: if r.action == RuleAction::Accept as u8 {
                "ACCEPT"
            } else {
                "DROP"
            },
            rule: describe::rule(&r),
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
