use std::{collections::BTreeMap, process::ExitCode};

use anyhow::Context as _;
use firewall::{
    AGER_REMOVED, AGER_SCANS,
    maps::Maps,
    pins::PinDir,
    ruleset, sys,
    table::{self, ProtoCounts},
};
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

/// The connection table: how full it is, its limit, what happened when
/// it was full (the counters `ct_early_drop` and `drop_table_full`,
/// repeated here beside the fill they explain), and its connections by
/// protocol.
#[derive(Serialize)]
struct CtStats {
    entries: u64,
    connections: u64,
    max_entries: u32,
    max_connections: u32,
    early_drops: u64,
    table_full_drops: u64,
    protocols: ProtoCounts,
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

fn percent(part: u64, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / f64::from(whole)
    }
}

pub fn stats(pins: &PinDir, a: StatsArgs) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading counters")?;
    let counters: BTreeMap<&str, u64> = Counter::ALL
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
    let fill = table::fill(&maps.conntrack_snapshot());
    let st = Stats {
        conntrack: CtStats {
            entries: fill.entries,
            connections: fill.connections,
            max_entries: maps.conntrack_capacity,
            max_connections: maps.conntrack_capacity / 2,
            early_drops: counters[Counter::CtEarlyDrop.name()],
            table_full_drops: counters[Counter::DropTableFull.name()],
            protocols: fill.protocols,
        },
        counters,
        rules,
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
    let ct = &st.conntrack;
    println!(
        "conntrack: {} connections of {} ({:.1} % full; {} entries of {}, two per connection)",
        ct.connections,
        ct.max_connections,
        percent(ct.entries, ct.max_entries),
        ct.entries,
        ct.max_entries
    );
    let ProtoCounts {
        tcp,
        udp,
        icmp,
        sctp,
        other,
    } = ct.protocols;
    println!(
        "conntrack by protocol: tcp {tcp}, udp {udp}, icmp {icmp}, sctp {sctp}, other {other}"
    );
    println!(
        "conntrack when full: {} early drops, {} first packets dropped (table full)",
        ct.early_drops, ct.table_full_drops
    );
    println!(
        "ager: {} scans, {} entries removed",
        st.ager.scans, st.ager.removed
    );
    Ok(ExitCode::SUCCESS)
}
