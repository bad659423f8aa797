//! Installing a ruleset: compile, fill the inactive bank of every rule
//! table, then flip `Settings::rule_bank` with one map write. The datapath
//! reads the bank once per packet, so no packet sees half a ruleset, and a
//! ruleset that does not compile changes nothing.
//!
//! Counters (and `-m limit` state) live in slots a rule keeps across
//! reloads while its definition is unchanged; new rules get slots the live
//! ruleset does not use, zeroed before the flip.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::maps::{MapError, lpm_trie::Key};
use firewall_common::{
    Settings,
    rule::{
        COUNTER_SLOTS, Chain, IfaceClassKey, LOG_PREFIX_LEN, MAX_BITMAP_WORDS, MAX_CLASSES,
        META_SLOTS, PORT_SLOTS, RULE_TEXT_LEN, RuleAction, RuleCounter, RuleText, RulesetHeader,
        compile::{CompileError, Compiled, compile},
        model::MatchRule,
        rule_slot,
    },
};
use thiserror::Error;

use crate::{batch, maps::Maps};

/// A rule to install and how to show it.
#[derive(Clone, Debug)]
pub struct RuleSource {
    pub rule: MatchRule,
    /// One-line summary for `firewall rules list`.
    pub text: String,
    /// Position in the config (1-based).
    pub line: u32,
}

#[derive(Debug, Error)]
pub enum RulesetError {
    #[error("{0}")]
    Compile(CompileError),
    #[error("writing {map}: {source}")]
    Write {
        map: &'static str,
        source: io::Error,
    },
    #[error("writing {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("reading the live ruleset: {0}")]
    Read(MapError),
}

/// What went live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    pub bank: u32,
    pub generation: u32,
    pub rules: u32,
}

/// A bank that just went out of service may still be read by a packet that
/// loaded the old bank number; programs run for microseconds, so waiting
/// this long before rewriting it is ample.
const GRACE: Duration = Duration::from_millis(50);
static LAST_FLIP: Mutex<Option<Instant>> = Mutex::new(None);

fn fingerprint(rule: &MatchRule) -> u64 {
    // FNV-1a over the full definition: stable for a given build, which is
    // all that counter continuity across reloads needs.
    let text = format!("{rule:?}");
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn text_bytes(s: &str) -> [u8; RULE_TEXT_LEN] {
    let mut out = [0u8; RULE_TEXT_LEN];
    let mut end = s.len().min(RULE_TEXT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// Makes `rules` with `policy` (a [`RuleAction`] per [`Chain`]) the live
/// ruleset.
pub fn install(
    maps: &mut Maps,
    rules: &[RuleSource],
    policy: [u8; 4],
) -> Result<Installed, RulesetError> {
    let compiled = compile_sources(rules, policy)?;
    install_compiled(maps, rules, &compiled)
}

/// The tables for `rules`, or why they cannot be built; nothing is written.
pub fn compile_sources(rules: &[RuleSource], policy: [u8; 4]) -> Result<Compiled, RulesetError> {
    let match_rules: Vec<MatchRule> = rules.iter().map(|r| r.rule.clone()).collect();
    compile(&match_rules, policy).map_err(RulesetError::Compile)
}

/// [`install`] with the tables compiled already (from the same `rules`).
pub fn install_compiled(
    maps: &mut Maps,
    rules: &[RuleSource],
    compiled: &Compiled,
) -> Result<Installed, RulesetError> {
    let settings = maps.settings.get(&0, 0).map_err(RulesetError::Read)?;
    let live = settings.rule_bank & 1;
    let target = live ^ 1;
    let live_hdr = maps.rulesets.get(&live, 0).map_err(RulesetError::Read)?;

    // Counter slots: unchanged rules keep theirs.
    let mut reusable: HashMap<u64, VecDeque<u32>> = HashMap::new();
    let mut live_slots = HashSet::new();
    for i in 0..live_hdr.count {
        let slot = rule_slot(live, i);
        let (Ok(text), Ok(info)) = (maps.rule_text.get(&slot, 0), maps.rule_info.get(&slot, 0))
        else {
            continue;
        };
        live_slots.insert(info.counter);
        reusable
            .entry(text.fingerprint)
            .or_default()
            .push_back(info.counter);
    }
    let mut free = (0..COUNTER_SLOTS).filter(|s| !live_slots.contains(s));
    let ncpus = aya::util::nr_cpus().map_err(|(_, e)| RulesetError::Write {
        map: "RULE_STATS",
        source: e,
    })?;
    let mut infos = compiled.infos.clone();
    let mut texts = Vec::with_capacity(rules.len());
    let mut fresh = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let fp = fingerprint(&r.rule);
        let slot = match reusable.get_mut(&fp).and_then(VecDeque::pop_front) {
            Some(slot) => slot,
            None => {
                // The live ruleset uses at most MAX_RULES slots, so one of
                // the 2 * MAX_RULES is always free.
                let slot = free.next().expect("a free counter slot");
                fresh.push(slot);
                slot
            }
        };
        infos[i].counter = slot;
        texts.push(RuleText {
            fingerprint: fp,
            chain: r.rule.chain as u8,
            action: r.rule.action as u8,
            _pad: [0; 2],
            line: r.line,
            text: text_bytes(&r.text),
        });
    }

    // New rules' slots start from zero (counters and limit state), written
    // in two batches.
    if !fresh.is_empty() {
        let zeros = vec![RuleCounter::default(); fresh.len() * ncpus];
        batch::update_keys(&maps.batch_fds.rule_stats, &fresh, &zeros, ncpus).map_err(
            |source| RulesetError::Write {
                map: "RULE_STATS",
                source,
            },
        )?;
        let zeros = vec![0u64; fresh.len()];
        batch::update_keys(&maps.batch_fds.rule_limits, &fresh, &zeros, 1).map_err(|source| {
            RulesetError::Write {
                map: "RULE_LIMITS",
                source,
            }
        })?;
    }

    // The bank being replaced may have gone out of service a moment ago.
    if let Some(t) = *LAST_FLIP.lock().unwrap_or_else(|e| e.into_inner()) {
        let since = t.elapsed();
        if since < GRACE {
            std::thread::sleep(GRACE - since);
        }
    }

    let write = |map: &'static str, r: io::Result<()>| {
        r.map_err(|source| RulesetError::Write { map, source })
    };
    let fds = &maps.batch_fds;
    write(
        "META_CLASS",
        batch::update_array(&fds.meta_class, target * META_SLOTS, &compiled.meta),
    )?;
    write(
        "PORT_CLASS",
        batch::update_array(&fds.port_class, target * 2 * PORT_SLOTS, &compiled.sport),
    )?;
    write(
        "PORT_CLASS",
        batch::update_array(
            &fds.port_class,
            (target * 2 + 1) * PORT_SLOTS,
            &compiled.dport,
        ),
    )?;
    write(
        "CLASSES",
        batch::update_array(&fds.classes, target * MAX_CLASSES, &compiled.classes),
    )?;
    if !compiled.words.is_empty() {
        write(
            "RULE_WORDS",
            batch::update_array(&fds.rule_words, target * MAX_BITMAP_WORDS, &compiled.words),
        )?;
    }
    if !infos.is_empty() {
        write(
            "RULE_INFO",
            batch::update_array(&fds.rule_info, rule_slot(target, 0), &infos),
        )?;
        write(
            "RULE_TEXT",
            batch::update_array(&fds.rule_text, rule_slot(target, 0), &texts),
        )?;
    }

    let stale_ifaces: Vec<IfaceClassKey> = maps
        .iface_class
        .keys()
        .filter_map(Result::ok)
        .filter(|k| u32::from(k.bank) == target)
        .collect();
    for k in stale_ifaces {
        let _ = maps.iface_class.remove(&k);
    }
    for &(field, ifindex, class) in &compiled.ifaces {
        let key = IfaceClassKey {
            ifindex,
            bank: target as u8,
            field,
            _pad: [0; 2],
        };
        maps.iface_class
            .insert(key, class, 0)
            .map_err(|source| RulesetError::Map {
                map: "IFACE_CLASS",
                source,
            })?;
    }
    let stale_addrs: Vec<Key<firewall_common::rule::AddrClassData>> = maps
        .addr_class
        .keys()
        .filter_map(Result::ok)
        .filter(|k| u32::from(k.data().bank) == target)
        .collect();
    for k in stale_addrs {
        let _ = maps.addr_class.remove(&k);
    }
    for (prefixlen, data, class) in compiled.addr_keys(target as u8) {
        maps.addr_class
            .insert(&Key::new(prefixlen, data), class, 0)
            .map_err(|source| RulesetError::Map {
                map: "ADDR_CLASS",
                source,
            })?;
    }

    let header = RulesetHeader {
        generation: live_hdr.generation.wrapping_add(1),
        ..compiled.header
    };
    maps.rulesets
        .set(target, header, 0)
        .map_err(|source| RulesetError::Map {
            map: "RULESETS",
            source,
        })?;

    // The flip. Re-read the settings: only the bank changes.
    let current = maps.settings.get(&0, 0).map_err(RulesetError::Read)?;
    maps.settings
        .set(
            0,
            Settings {
                rule_bank: target,
                ..current
            },
            0,
        )
        .map_err(|source| RulesetError::Map {
            map: "SETTINGS",
            source,
        })?;
    *LAST_FLIP.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    Ok(Installed {
        bank: target,
        generation: header.generation,
        rules: header.count,
    })
}

/// A rule of the live ruleset, with its summed counters.
#[derive(Clone, Debug)]
pub struct LiveRule {
    /// 1-based position in the whole list.
    pub index: u32,
    pub chain: Chain,
    pub action: RuleAction,
    pub text: String,
    pub line: u32,
    pub packets: u64,
    pub bytes: u64,
}

pub fn chain_of(c: u8) -> Chain {
    match c {
        0 => Chain::Input,
        1 => Chain::Forward,
        _ => Chain::Output,
    }
}

pub fn action_of(a: u8) -> RuleAction {
    match a {
        1 => RuleAction::Accept,
        3 => RuleAction::Reject,
        4 => RuleAction::Log,
        _ => RuleAction::Drop,
    }
}

/// The live bank's header and rules.
pub fn live(maps: &Maps) -> Result<(RulesetHeader, Vec<LiveRule>), MapError> {
    let settings = maps.settings.get(&0, 0)?;
    let bank = settings.rule_bank & 1;
    let hdr = maps.rulesets.get(&bank, 0)?;
    let mut out = Vec::with_capacity(hdr.count as usize);
    for i in 0..hdr.count {
        let slot = rule_slot(bank, i);
        let text = maps.rule_text.get(&slot, 0)?;
        let info = maps.rule_info.get(&slot, 0)?;
        let c = maps.rule_counter(info.counter);
        let end = text
            .text
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(RULE_TEXT_LEN);
        out.push(LiveRule {
            index: i + 1,
            chain: chain_of(text.chain),
            action: action_of(text.action),
            text: String::from_utf8_lossy(&text.text[..end]).into_owned(),
            line: text.line,
            packets: c.packets,
            bytes: c.bytes,
        });
    }
    Ok((hdr, out))
}

/// Copies a LOG prefix into the fixed-size field (cut at a char boundary).
pub fn log_prefix(s: &str) -> [u8; LOG_PREFIX_LEN] {
    let mut out = [0u8; LOG_PREFIX_LEN];
    let mut end = s.len().min(LOG_PREFIX_LEN - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}
