//! Failures and their replay. A phase keeps a journal of what it did (every
//! frame and every move of the clock); a failure prints the seed, the
//! packet, the hook and the frame, and writes the journal as a replay file.
//! `--replay FILE` pushes a file's events through a fresh instance of the
//! phase with every check on; `--minimise` then drops events while the
//! same invariant still fails, and writes what is left.
//!
//! A replay file is text, one event a line: `phase NAME` first, then
//! `ORIGIN HEX` for a frame, where ORIGIN is `lan` or `wan` (received on
//! that interface), `host-lan`/`host-wan` (sent by the router's stack out
//! of it) or `raw-lan`/`raw-wan` (sent by the router through a raw socket),
//! and `clock SECONDS` for time passing (followed by the ager). Lines
//! starting with `#` are comments.

use std::{collections::VecDeque, fmt::Write as _, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::{
    checks::Known,
    router::{Failure, Hook, Origin, Router},
    table,
    topology::{PHASES, Phase},
    view::{hex, unhex},
};

/// Events a phase keeps for the replay file: enough for any failure that
/// shows within a few clock moves of its cause, bounded so that a run of
/// millions of packets does not hold them all.
const JOURNAL: usize = 100_000;

/// Something a phase did.
#[derive(Clone, Debug)]
pub enum Event {
    Frame(Origin, Vec<u8>),
    /// The clock moved this many seconds, then the ager ran.
    Clock(u64),
}

/// A phase's recent events.
#[derive(Default)]
pub struct Journal {
    events: VecDeque<Event>,
    /// Events dropped from the front.
    dropped: u64,
}

impl Journal {
    pub fn push(&mut self, e: Event) {
        if self.events.len() == JOURNAL {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }
}

/// Where in a run a failure happened.
pub struct Position {
    pub seed: u64,
    /// Packets sent before the failing one, over the whole run.
    pub packet: u64,
}

/// An invariant that failed: after a frame (with the run that failed) or
/// in a table-wide check.
pub struct Failed {
    pub invariant: &'static str,
    pub detail: String,
    /// The run and frame, for a per-run invariant.
    pub run: Option<(Hook, Vec<u8>)>,
}

impl From<Failure> for Failed {
    fn from(f: Failure) -> Failed {
        Failed {
            invariant: f.invariant,
            detail: f.detail,
            run: Some((f.hook, f.frame)),
        }
    }
}

impl Failed {
    pub fn table(invariant: &'static str, detail: String) -> Failed {
        Failed {
            invariant,
            detail,
            run: None,
        }
    }
}

/// Prints the failure and writes `events` (ending with the failing frame,
/// if a frame failed) as a replay file in `dir`. Returns the file's path.
pub fn report(
    f: &Failed,
    phase: Phase,
    at: Option<&Position>,
    events: &[Event],
    dropped: u64,
    dir: &Path,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "FAILED: {}", f.invariant);
    let _ = writeln!(text, "  {}", f.detail);
    if let Some(at) = at {
        let _ = writeln!(
            text,
            "  seed {:#x}, phase {}, packet {} (0-based); \
             `cargo xtask fuzz --seed {:#x} --packets {}` reruns the run",
            at.seed,
            phase.name,
            at.packet,
            at.seed,
            at.packet + 1
        );
    }
    if let Some((hook, frame)) = &f.run {
        let _ = writeln!(text, "  in {hook}, given {}", hex(frame));
    }
    if let Some(Event::Frame(origin, frame)) = events.last().filter(|_| f.run.is_some()) {
        let _ = writeln!(
            text,
            "  the packet entered at {}: {}",
            origin.name(),
            hex(frame)
        );
    }
    let mut file = String::new();
    let _ = writeln!(file, "# {}", f.invariant);
    let _ = writeln!(file, "# {}", f.detail.replace('\n', " "));
    if let Some(at) = at {
        let _ = writeln!(file, "# seed {:#x}, packet {}", at.seed, at.packet);
    }
    if dropped > 0 {
        let _ = writeln!(
            file,
            "# the phase's first {dropped} events are not here: the replay may not reproduce"
        );
    }
    let _ = writeln!(file, "phase {}", phase.name);
    for e in events {
        let _ = match e {
            Event::Frame(origin, frame) => writeln!(file, "{} {}", origin.name(), hex(frame)),
            Event::Clock(secs) => writeln!(file, "clock {secs}"),
        };
    }
    let name = match at {
        Some(a) => format!("failure-{:x}-{}.replay", a.seed, a.packet),
        None => "failure-minimised.replay".to_string(),
    };
    let path = dir.join(name);
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, &file))
        .map(|()| path.display().to_string());
    match &written {
        Ok(p) => {
            let _ = writeln!(
                text,
                "  {} events written to {p}\n  replay: cargo xtask fuzz --replay {p} [--minimise]",
                events.len()
            );
        }
        Err(e) => {
            let _ = writeln!(text, "  (could not write the replay file: {e})");
        }
    }
    eprint!("{text}");
    written.unwrap_or_default()
}

/// Writes the journal of a failed phase; `failing` is the frame whose run
/// failed, if one did.
pub fn report_journal(
    f: &Failed,
    phase: Phase,
    at: &Position,
    journal: &Journal,
    failing: Option<(Origin, &[u8])>,
    dir: &Path,
) {
    let mut events: Vec<Event> = journal.events.iter().cloned().collect();
    if let Some((origin, frame)) = failing {
        events.push(Event::Frame(origin, frame.to_vec()));
    }
    report(f, phase, Some(at), &events, journal.dropped, dir);
}

/// A replay file's phase and events.
pub struct Replay {
    pub phase: Phase,
    pub events: Vec<Event>,
}

pub fn load(path: &Path) -> Result<Replay> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut phase = PHASES[0];
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let at = || format!("line {}", n + 1);
        match word {
            "phase" => {
                phase = *PHASES
                    .iter()
                    .find(|p| p.name == rest.trim())
                    .with_context(|| format!("{}: unknown phase {rest}", at()))?;
            }
            "clock" => events.push(Event::Clock(
                rest.trim()
                    .parse()
                    .with_context(|| format!("{}: seconds", at()))?,
            )),
            _ => {
                let origin = Origin::parse(word)
                    .with_context(|| format!("{}: unknown origin {word}", at()))?;
                let frame = unhex(rest).with_context(|| format!("{}: not hex", at()))?;
                if frame.len() < 14 {
                    bail!("{}: a frame needs at least an Ethernet header", at());
                }
                events.push(Event::Frame(origin, frame));
            }
        }
    }
    Ok(Replay { phase, events })
}

/// Pushes `events` through a fresh instance of `phase`, with the per-run
/// checks, the ager's after each clock move, and the table-wide checks
/// (after every frame for short replays, every 64 frames and at the end for
/// long ones). Returns the index of the failing event and the failure.
pub fn run(phase: Phase, events: &[Event], strict: bool) -> Option<(usize, Failed)> {
    let mut r = Router::new(phase, strict);
    let every = if events.len() <= 2000 { 1 } else { 64 };
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Frame(origin, frame) => {
                if let Err(f) = r.inject(*origin, frame) {
                    return Some((i, f.into()));
                }
            }
            Event::Clock(secs) => {
                if let Err(f) = r.advance_clock(*secs) {
                    return Some((i, f));
                }
            }
        }
        if ((i + 1) % every == 0 || i + 1 == events.len())
            && let Err(f) = whole_table(&mut r)
        {
            return Some((i, f));
        }
    }
    None
}

/// The table-wide invariants, on the state after the last run.
pub fn whole_table(r: &mut Router) -> Result<(), Failed> {
    let t = r.table();
    r.victims.retain(|k| t.contains_key(k));
    let found = table::pairs(&t, r.strict, &r.victims).map_err(|d| {
        Failed::table(
            "both halves of every connection exist and point at each other",
            d,
        )
    })?;
    let new = found.selves.iter().filter(|k| r.selves.insert(**k)).count();
    r.note(Known::SelfInverseTuple, new as u64);
    table::translations(&t, &r.victims)
        .map_err(|d| Failed::table("no two connections hold the same translated tuple", d))?;
    r.check_counter_sum()
        .map_err(|d| Failed::table("the verdict counters add up to the packets processed", d))
}

/// Replays `path`; with `minimise`, then drops events while the same
/// invariant still fails (halves first, then smaller and smaller runs of
/// events, as delta debugging does), and writes what is left.
pub fn replay(path: &Path, minimise: bool, strict: bool, out: &Path) -> Result<()> {
    let Replay { phase, mut events } = load(path)?;
    println!("replaying {} events in phase {}", events.len(), phase.name);
    let Some((at, failure)) = run(phase, &events, strict) else {
        println!("no invariant failed");
        return Ok(());
    };
    events.truncate(at + 1);
    let mut failure = failure;
    if minimise {
        let invariant = failure.invariant;
        let mut chunk = events.len().div_ceil(2);
        while chunk >= 1 {
            let mut i = 0;
            let mut shrunk = false;
            while i < events.len() && events.len() > 1 {
                let mut fewer = events.clone();
                fewer.drain(i..(i + chunk).min(events.len()));
                match run(phase, &fewer, strict) {
                    Some((at, f)) if f.invariant == invariant => {
                        fewer.truncate(at + 1);
                        events = fewer;
                        failure = f;
                        shrunk = true;
                        println!("  {} events still fail", events.len());
                    }
                    _ => i += chunk,
                }
            }
            if !shrunk {
                chunk /= 2;
            }
        }
    }
    report(&failure, phase, None, &events, 0, out);
    bail!("invariant failed: {}", failure.invariant)
}
