//! `cargo xtask fuzz`: structured mutation of valid frames of every kind the
//! parser knows, pushed through the real XDP, tcx ingress and tcx egress
//! programs with BPF_PROG_TEST_RUN, as conversations so that state builds
//! up, with the datapath's invariants checked while it runs (xtask cannot
//! depend on the firewall crate, so it builds and runs this example).
//!
//! ```text
//! fuzz [--packets N] [--seed S] [--phase NAME] [--check-every N] [--strict] [--out DIR]
//! fuzz --replay FILE [--minimise] [--strict] [--out DIR]
//! fuzz --self-test
//! ```
//!
//! A run is split into phases, each a fresh private instance in a network
//! namespace of its own (the harness of `firewall/tests`): `nat`
//! (masquerade on `wan0`, port forwards, the FTP helper, rules of every
//! action), `plain` (no NAT, default policies) and `small-table` (the NAT
//! config with a 96-entry table, so early drop and table-full drops run).
//! The invariants, and where each is checked, are listed in
//! docs/FUZZING.md. A failure prints the seed, the packet, the hook and the
//! frame, writes the failing flow's frames to `target/fuzz/*.replay`, and
//! exits non-zero.
//!
//! Needs root.

#[path = "fuzz/checks.rs"]
mod checks;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "fuzz/flows.rs"]
mod flows;
#[path = "fuzz/masquerade.rs"]
mod masquerade;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/packets.rs"]
mod packets;
#[path = "fuzz/replay.rs"]
mod replay;
#[path = "fuzz/rng.rs"]
mod rng;
#[path = "fuzz/router.rs"]
mod router;
#[path = "fuzz/selftest.rs"]
mod selftest;
#[path = "fuzz/stack.rs"]
mod stack;
#[path = "fuzz/state.rs"]
mod state;
#[path = "fuzz/table.rs"]
mod table;
#[path = "fuzz/topology.rs"]
mod topology;
#[path = "fuzz/view.rs"]
mod view;
#[path = "fuzz/wire.rs"]
mod wire;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use firewall_common::stats::Counter;

use crate::{
    flows::Flow,
    replay::{Event, Failed, Journal, Position},
    rng::Rng,
    router::{Origin, Router},
    topology::{PHASES, Phase},
};

/// Conversations open at once.
const MAX_FLOWS: usize = 48;
/// Frames a flow keeps for retransmissions and the report.
const FLOW_LOG: usize = 64;

struct Options {
    packets: u64,
    seed: u64,
    phase: Option<String>,
    check_every: u64,
    replay: Option<PathBuf>,
    minimise: bool,
    strict: bool,
    self_test: bool,
    /// Where failures' replay files go.
    out: PathBuf,
}

impl Options {
    fn parse() -> Result<Options> {
        let mut o = Options {
            packets: 1_000_000,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            phase: None,
            check_every: 256,
            replay: None,
            minimise: false,
            strict: false,
            self_test: false,
            out: PathBuf::from("target/fuzz"),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--minimise" => {
                    o.minimise = true;
                    continue;
                }
                "--strict" => {
                    o.strict = true;
                    continue;
                }
                "--self-test" => {
                    o.self_test = true;
                    continue;
                }
                _ => {}
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--packets" => o.packets = value.replace('_', "").parse().context("--packets")?,
                "--seed" => o.seed = parse_seed(value)?,
                "--phase" => o.phase = Some(value.clone()),
                "--check-every" => o.check_every = value.parse().context("--check-every")?,
                "--replay" => o.replay = Some(PathBuf::from(value)),
                "--out" => o.out = PathBuf::from(value),
                other => bail!(
                    "unknown option {other}; usage: fuzz [--packets N] [--seed S] \
                     [--phase NAME] [--check-every N] [--strict] [--out DIR] | \
                     fuzz --replay FILE [--minimise] [--strict] [--out DIR] | fuzz --self-test"
                ),
            }
        }
        if o.check_every == 0 {
            bail!("--check-every must be at least 1");
        }
        Ok(o)
    }
}

fn parse_seed(s: &str) -> Result<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).context("--seed"),
        None => s.parse().context("--seed"),
    }
}

fn main() -> ExitCode {
    let result = Options::parse().and_then(|o| match &o.replay {
        _ if o.self_test => selftest::run(),
        Some(path) => replay::replay(path, o.minimise, o.strict, &o.out),
        None => fuzz(&o),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fuzz: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a phase reached.
struct PhaseResult {
    phase: Phase,
    packets: u64,
    elapsed: Duration,
    counters: Vec<u64>,
    tally: router::Tally,
    known: Vec<(checks::Known, u64)>,
}

fn fuzz(o: &Options) -> Result<()> {
    let phases: Vec<Phase> = match &o.phase {
        Some(name) => vec![
            *PHASES
                .iter()
                .find(|p| p.name == name)
                .with_context(|| format!("no phase {name}"))?,
        ],
        None => PHASES.to_vec(),
    };
    let share_total: u64 = phases.iter().map(|p| p.share).sum();
    println!(
        "fuzz: seed {:#x}, {} packets, phases {}",
        o.seed,
        o.packets,
        phases.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    );
    let mut rng = Rng::new(o.seed);
    let mut results = Vec::new();
    let mut offset = 0;
    for (i, phase) in phases.iter().enumerate() {
        let n = if i + 1 == phases.len() {
            o.packets - offset
        } else {
            o.packets * phase.share / share_total
        };
        let result = run_phase(&mut rng, *phase, n, offset, o)
            .map_err(|()| anyhow::anyhow!("an invariant failed (seed {:#x}); see above", o.seed))?;
        offset += n;
        results.push(result);
    }
    summary(&results);
    Ok(())
}

/// One phase: `n` packets on a fresh instance. `offset` is the number of
/// packets sent by earlier phases, to name packets across the run.
fn run_phase(
    rng: &mut Rng,
    phase: Phase,
    n: u64,
    offset: u64,
    o: &Options,
) -> Result<PhaseResult, ()> {
    let started = Instant::now();
    let mut r = Router::new(phase, o.strict);
    let mut flows: Vec<Flow> = Vec::new();
    let mut journal = Journal::default();
    let mut sent = 0u64;
    let mut next_check = o.check_every;
    let mut next_clock = rng.range(200, 1200) as u64;
    let mut last_progress = Instant::now();
    let fail = |f: Failed, sent: u64, journal: &Journal, failing: Option<(Origin, &[u8])>| {
        let at = Position {
            seed: o.seed,
            packet: offset + sent,
        };
        replay::report_journal(&f, phase, &at, journal, failing, &o.out);
    };
    while sent < n {
        let pick = rng.below(100);
        if pick < 10 || flows.is_empty() {
            if flows.len() < MAX_FLOWS {
                flows.push(Flow::new(rng, phase.masquerade));
            }
            continue;
        }
        if pick < 22 {
            let (origin, frames) = packets::standalone(rng);
            for frame in frames {
                if let Err(f) = r.inject(origin, &frame) {
                    fail(f.into(), sent, &journal, Some((origin, &frame)));
                    return Err(());
                }
                journal.push(Event::Frame(origin, frame));
                sent += 1;
            }
        } else {
            let i = rng.below(flows.len());
            let step = flows[i].next(rng);
            for frame in &step.frames {
                let fate = match r.inject(step.origin, frame) {
                    Ok(fate) => fate,
                    Err(f) => {
                        fail(f.into(), sent, &journal, Some((step.origin, frame)));
                        return Err(());
                    }
                };
                journal.push(Event::Frame(step.origin, frame.clone()));
                sent += 1;
                if let Some(data) = flows[i].learn(rng, &step, &fate)
                    && flows.len() < MAX_FLOWS
                {
                    flows.push(data);
                }
                let log = &mut flows[i].log;
                if log.len() == FLOW_LOG {
                    log.remove(0);
                }
                log.push((step.origin, frame.clone()));
            }
            if flows[i].done {
                flows.swap_remove(i);
            }
        }
        if sent >= next_check {
            next_check = sent + o.check_every;
            if let Err(f) = replay::whole_table(&mut r) {
                fail(f, sent, &journal, None);
                return Err(());
            }
        }
        if sent >= next_clock {
            // The controllable clock: time passes for every connection at
            // once, then the ager runs.
            next_clock = sent + rng.range(200, 1200) as u64;
            let secs = *rng.pick(&[1, 5, 31, 121, 301, 3601, 6 * 86400]);
            journal.push(Event::Clock(secs));
            if let Err(f) = r.advance_clock(secs) {
                fail(f, sent, &journal, None);
                return Err(());
            }
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            last_progress = Instant::now();
            let rate = sent as f64 / started.elapsed().as_secs_f64();
            println!("fuzz: {}: {sent}/{n} packets, {rate:.0}/s", phase.name);
        }
    }
    let end = replay::whole_table(&mut r).and_then(|()| r.advance_clock(0).map(|_| ()));
    if let Err(f) = end {
        fail(f, sent, &journal, None);
        return Err(());
    }
    let elapsed = started.elapsed();
    println!(
        "fuzz: {}: {sent} packets in {:.1} s, {:.0} packets/s",
        phase.name,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    Ok(PhaseResult {
        phase,
        packets: sent,
        elapsed,
        counters: r.counters().to_vec(),
        tally: r.tally,
        known: r.known.clone(),
    })
}

fn summary(results: &[PhaseResult]) {
    let packets: u64 = results.iter().map(|r| r.packets).sum();
    let secs: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    println!();
    println!(
        "{:<12} {:>10} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "phase", "packets", "s", "packets/s", "XDP runs", "tc runs", "aged"
    );
    for r in results {
        let t = &r.tally;
        println!(
            "{:<12} {:>10} {:>8.1} {:>10.0} {:>10} {:>10} {:>8}",
            r.phase.name,
            r.packets,
            r.elapsed.as_secs_f64(),
            r.packets as f64 / r.elapsed.as_secs_f64(),
            t.xdp,
            t.tc_ingress + t.tc_egress,
            t.aged
        );
    }
    println!(
        "{:<12} {:>10} {:>8.1} {:>10.0}",
        "all",
        packets,
        secs,
        packets as f64 / secs
    );
    println!("\ncounters reached (all phases):");
    let mut unreached = Vec::new();
    for c in Counter::ALL {
        let v: u64 = results.iter().map(|r| r.counters[*c as usize]).sum();
        if v == 0 {
            unreached.push(c.name());
        } else {
            println!("  {:<34} {v:>10}", c.name());
        }
    }
    if !unreached.is_empty() {
        println!("not reached: {}", unreached.join(", "));
    }
    for k in checks::Known::ALL {
        let n: u64 = results
            .iter()
            .flat_map(|r| &r.known)
            .filter(|(known, _)| *known == k)
            .map(|(_, n)| n)
            .sum();
        if n > 0 {
            println!(
                "known deviation {} tolerated {n} times (--strict fails on it)",
                k.name()
            );
        }
    }
    println!("fuzz: {packets} packets, no invariant failed");
}
