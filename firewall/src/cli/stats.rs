use std::{collections::BTreeMap, process::ExitCode};

use anyhow::Context as _;
use firewall::{AGER_REMOVED, AGER_SCANS, maps::Maps, pins::PinDir, ruleset, sys};
use firewall_common::{Chain, Counter, RuleAction};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Stats {
    counters: BTreeMap<&'static str, u64>,
    rules: Vec<RuleStats>,
    conntrack: CtStats,
    ager: AgerStats,
}

#[derive(Serialize)]
struct RuleStats {
    index: u32,
    chain: &'static str,
    action: &'static str,
    summary: String,
    packets: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct CtStats {
    entries: usize,
}

#[derive(Serialize)]
struct AgerStats {
    scans: u64,
    removed: u64,
}

fn chain_name(c: u8) -> &'static str {
    match c {
        x if x == Chain::Input as u8 => "input",
        x if x == Chain::Forward as u8 => "forward",
        x if x == Chain::Output as u8 => "output",
        _ => "?",
    }
}

pub fn stats(pins: &PinDir, a: StatsArgs) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading counters")?;
    let counters = Counter::ALL
        .iter()
        .map(|c| (c.name(), maps.counter(*c as u32)))
        .collect();
    let (_, live) = ruleset::live(&maps).context("reading the ruleset")?;
    let rules = live
        .into_iter()
        .map(|r| RuleStats {
            index: r.index,
            chain: chain_name(r.chain as u8),
            action: match r.action {
                RuleAction::Accept => "accept",
                RuleAction::Drop => "drop",
                RuleAction::Reject => "reject",
                RuleAction::Log => "log",
            },
            packets: r.packets,
            bytes: r.bytes,
            summary: r.text,
        })
        .collect();
    let st = Stats {
        counters,
        rules,
        conntrack: CtStats {
            entries: maps.conntrack.keys().count(),
        },
        ager: AgerStats {
            scans: maps.daemon_stat(AGER_SCANS),
            removed: maps.daemon_stat(AGER_REMOVED),
        },
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("verdicts and drop reasons:");
    // As wide as the longest counter name, so the numbers line up.
    let width = st.counters.keys().map(|n| n.len()).max().unwrap_or(0);
    for (name, v) in &st.counters {
        println!("  {name:<width$} {v:>12}");
    }
    println!("rules:");
    println!(
        "  {:>4} {:>12} {:>14}  chain    action",
        "num", "pkts", "bytes"
    );
    for r in &st.rules {
        println!(
            "  {:>4} {:>12} {:>14}  {:<8} {}",
            r.index, r.packets, r.bytes, r.chain, r.action
        );
    }
    println!(
        "conntrack entries: {} (two per connection)",
        st.conntrack.entries
    );
    println!(
        "ager: {} scans, {} entries removed",
        st.ager.scans, st.ager.removed
    );
    Ok(ExitCode::SUCCESS)
}
