//! Policy for packets that are not ESTABLISHED/RELATED: the compiled rule
//! tables (`firewall_common::rule`), then the LAN allowance, then the
//! chain's default.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_ktime_get_ns, generated::bpf_loop},
    macros::map,
    maps::{PerCpuArray, lpm_trie::Key},
};
use firewall_common::{
    Chain, Counter, CtState, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, MAX_RULES, Role, RuleAction,
    Settings,
    rule::{
        AddrClassData, IfaceClassKey, LogEvent, MAX_BITMAP_WORDS, RULE_WORDS, RuleInfo,
        RulesetHeader, SUMMARY_WORDS, addr_field, addr_prefixlen, class_slot, field, info_flags,
        limit_admit, meta_slot, pop_word, port_slot, rule_slot,
    },
};

use crate::{
    maps::{
        ADDR_CLASS, CLASSES, IFACE_CLASS, LOG_EVENTS, META_CLASS, PORT_CLASS, RULE_INFO,
        RULE_LIMITS, RULE_STATS, RULE_WORDS as WORDS, RULESETS, count,
    },
    parse::{L4Kind, Packet, SCRATCH},
};

pub enum PolicyVerdict {
    Accept(Counter),
    Drop(Counter),
    /// Drop and answer: a TCP RST, or an ICMP error of this type and code.
    Reject(Reject),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub rst: bool,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// What applies when no rule matches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// LAN allowance, then the chain policy.
    Policy,
    /// Accept with this counter (a port forward lets its traffic in unless
    /// a rule drops it).
    Accept(Counter),
}

/// Where the packet stands: the chain, its interfaces and the input
/// interface's role (None for host-originated traffic).
#[derive(Clone, Copy)]
pub struct Position {
    pub chain: Chain,
    pub iif: u32,
    /// 0 when the packet is not forwarded.
    pub oif: u32,
    pub role: Option<Role>,
    pub state: CtState,
}

/// The live bank's header.
#[inline(always)]
pub fn ruleset(s: &Settings) -> Option<&'static RulesetHeader> {
    RULESETS.get(s.rule_bank & 1)
}

#[inline(always)]
pub fn decide(p: &Packet, s: &Settings, at: &Position, fallback: Fallback) -> PolicyVerdict {
    let Some(hdr) = ruleset(s) else {
        return PolicyVerdict::Drop(Counter::DropPolicy);
    };
    if hdr.count > 0 {
        let bank = s.rule_bank & 1;
        // The walk's state lives in a per-CPU slot, not on the stack: the
        // main program's frame plus a callback's must fit 512 bytes.
        let Some(walk) = WALK.get_ptr_mut(0) else {
            return PolicyVerdict::Drop(Counter::DropPolicy);
        };
        // SAFETY: this CPU's slot; nothing else runs on it meanwhile.
        unsafe {
            *walk = Walk {
                sum: [!0; SUMMARY_WORDS],
                word: 0,
                cls: [0; 8],
                bank,
                w: 0,
                found: NO_MATCH,
                iif: at.iif,
                oif: at.oif,
                proto: p.key.proto,
                tcp_flags: p.tcp_flags,
                chain: at.chain as u8,
                state: at.state as u8,
                ready: 0,
                _pad: [0; 3],
            };
        }
        // Both steps run as bpf_loop callbacks so the verifier checks each
        // once: inlined, the branches on which fields are used multiply
        // with every path through the rest of the program.
        unsafe { bpf_loop(1, classify as *mut c_void, core::ptr::null_mut(), 0) };
        // Fresh lookups after each call: LLVM must not forward the values
        // written before it.
        if WALK.get(0).is_some_and(|w| w.ready != 0) {
            unsafe {
                bpf_loop(
                    RULE_WORDS as u32 + MAX_RULES + 1,
                    step as *mut c_void,
                    core::ptr::null_mut(),
                    0,
                )
            };
            let found = WALK.get(0).map_or(NO_MATCH, |w| w.found);
            if found != NO_MATCH {
                if let Some(info) = RULE_INFO.get(rule_slot(bank, found)) {
                    return verdict_of(info, p.key.family == FAMILY_V6);
                }
            }
        }
    }
    if let Fallback::Accept(c) = fallback {
        return PolicyVerdict::Accept(c);
    }
    if at.role == Some(Role::Lan) {
        return PolicyVerdict::Accept(Counter::AcceptNew);
    }
    let policy = hdr.policy[(at.chain as usize) & 3];
    if policy == RuleAction::Accept as u8 {
        PolicyVerdict::Accept(Counter::AcceptNew)
    } else {
        PolicyVerdict::Drop(Counter::DropPolicy)
    }
}

#[inline(always)]
fn verdict_of(info: &RuleInfo, v6: bool) -> PolicyVerdict {
    if info.action == RuleAction::Accept as u8 {
        PolicyVerdict::Accept(Counter::AcceptRule)
    } else if info.action == RuleAction::Reject as u8 {
        let (icmp_type, icmp_code) = if v6 {
            (info.icmp6_type, info.icmp6_code)
        } else {
            (info.icmp4_type, info.icmp4_code)
        };
        PolicyVerdict::Reject(Reject {
            rst: info.flags & info_flags::REJECT_RST != 0,
            icmp_type,
            icmp_code,
        })
    } else {
        PolicyVerdict::Drop(Counter::DropRule)
    }
}

const NO_MATCH: u32 = u32::MAX;

/// The walk's state between `bpf_loop` calls (per-CPU `WALK`).
#[repr(C)]
pub struct Walk {
    /// What is left of the AND of the fields' summaries.
    sum: [u64; SUMMARY_WORDS],
    /// Candidate bits of word `w` not yet tried.
    word: u64,
    /// `CLASSES` index per field.
    cls: [u32; 8],
    bank: u32,
    w: u32,
    found: u32,
    iif: u32,
    oif: u32,
    proto: u8,
    tcp_flags: u8,
    chain: u8,
    state: u8,
    /// Set by `classify` when some rule may match.
    ready: u8,
    _pad: [u8; 3],
}

/// `bpf_loop` callback (run once): each field's class, and the AND of
/// their summaries. `ready` stays 0 when no rule can match (or the tables
/// are incomplete, which the loader never leaves live).
#[inline(never)]
extern "C" fn classify(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(walk) = WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let walk = unsafe { &mut *walk };
    let (Some(p), Some(hdr)) = (SCRATCH.get(0), RULESETS.get(walk.bank)) else {
        return 1;
    };
    walk.ready = u8::from(fill_classes(p, hdr, walk));
    1
}

#[inline(always)]
fn fill_classes(p: &Packet, hdr: &RulesetHeader, walk: &mut Walk) -> bool {
    let bank = walk.bank;
    let v6 = p.key.family == FAMILY_V6;
    let Some(&meta) = META_CLASS.get(meta_slot(bank, walk.chain, v6, walk.state, p.key.proto))
    else {
        return false;
    };
    walk.cls[field::META] = class_slot(bank, meta);
    let used = hdr.fields;
    walk.cls[field::IIF] = class_slot(bank, hdr.default_class[field::IIF]);
    if used & (1 << field::IIF) != 0 {
        walk.cls[field::IIF] = class_slot(bank, iface_class(hdr, bank, field::IIF, walk.iif));
    }
    walk.cls[field::OIF] = class_slot(bank, hdr.default_class[field::OIF]);
    if used & (1 << field::OIF) != 0 {
        walk.cls[field::OIF] = class_slot(bank, iface_class(hdr, bank, field::OIF, walk.oif));
    }
    // Unused fields take the header's class of every rule; only the
    // costlier hash and LPM lookups are skipped for them. Every field then
    // takes part in the AND, with no branch on which are used: branches
    // per field multiply the verifier's paths.
    walk.cls[field::SRC] = class_slot(bank, hdr.default_class[field::SRC]);
    if used & (1 << field::SRC) != 0 {
        let Some(c) = addr_class(bank, field::SRC, v6, &p.key.src) else {
            return false;
        };
        walk.cls[field::SRC] = class_slot(bank, c);
    }
    walk.cls[field::DST] = class_slot(bank, hdr.default_class[field::DST]);
    if used & (1 << field::DST) != 0 {
        let Some(c) = addr_class(bank, field::DST, v6, &p.key.dst) else {
            return false;
        };
        walk.cls[field::DST] = class_slot(bank, c);
    }
    let (sport, dport) = l4_values(p);
    let Some(&c) = PORT_CLASS.get(port_slot(bank, field::SPORT, sport)) else {
        return false;
    };
    walk.cls[field::SPORT] = class_slot(bank, c);
    let Some(&c) = PORT_CLASS.get(port_slot(bank, field::DPORT, dport)) else {
        return false;
    };
    walk.cls[field::DPORT] = class_slot(bank, c);
    let mut f = 0;
    while f < field::COUNT {
        let Some(cb) = CLASSES.get(walk.cls[f]) else {
            return false;
        };
        let mut i = 0;
        while i < SUMMARY_WORDS {
            walk.sum[i] &= cb.summary[i];
            i += 1;
        }
        f += 1;
    }
    walk.sum.iter().any(|&w| w != 0)
}

/// The values rules compare ports with: ports for TCP/UDP, `type << 8 |
/// code` for ICMP queries (the only ICMP that reaches rules), else 0.
#[inline(always)]
pub fn l4_values(p: &Packet) -> (u16, u16) {
    if p.key.has_ports() {
        (u16::from_be(p.key.sport), u16::from_be(p.key.dport))
    } else if p.kind == L4Kind::IcmpQuery
        && (p.key.proto == IPPROTO_ICMP || p.key.proto == IPPROTO_ICMPV6)
    {
        // The tuple keeps the type in `dport` (host order).
        ((p.key.dport & 0xff) << 8 | p.icmp_code as u16, 0)
    } else {
        (0, 0)
    }
}

#[inline(always)]
fn iface_class(hdr: &RulesetHeader, bank: u32, f: usize, ifindex: u32) -> u32 {
    let key = IfaceClassKey {
        ifindex,
        bank: bank as u8,
        field: f as u8,
        _pad: [0; 2],
    };
    // SAFETY: read-only copy of a plain value.
    match unsafe { IFACE_CLASS.get(&key) } {
        Some(&c) => c,
        None => hdr.default_class[f & 7],
    }
}

#[inline(always)]
fn addr_class(bank: u32, f: usize, v6: bool, addr: &[u32; 4]) -> Option<u32> {
    // SAFETY: [u32; 4] and [u8; 16] have the same size; the words hold
    // network-order bytes.
    let bytes: [u8; 16] = unsafe { core::mem::transmute(*addr) };
    let key = Key::new(
        addr_prefixlen(if v6 { 128 } else { 32 }),
        AddrClassData {
            bank: bank as u8,
            field: addr_field(f, v6),
            _pad: [0; 2],
            addr: bytes,
        },
    );
    ADDR_CLASS.get(&key).copied()
}

/// `bpf_loop` callback: one candidate word fetched, or one candidate rule
/// tried, per call. Returns 1 to stop.
///
/// The walk keeps only bitmasks between calls (what is left of the
/// summary AND and of the current word), never a cursor: the verifier
/// re-checks a callback until its state repeats, and a cursor that grows
/// every call would never repeat.
#[inline(never)]
extern "C" fn step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(walk) = WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let walk = unsafe { &mut *walk };
    let word = walk.word;
    if word == 0 {
        let Some(w) = pop_word(&mut walk.sum) else {
            return 1;
        };
        walk.w = w;
        let mut word = !0u64;
        let mut f = 0;
        while f < field::COUNT {
            let Some(cb) = CLASSES.get(walk.cls[f]) else {
                return 1;
            };
            let idx = walk.bank * MAX_BITMAP_WORDS + cb.offset + cb.rank(w);
            let Some(&v) = WORDS.get(idx) else {
                return 1;
            };
            word &= v;
            f += 1;
        }
        walk.word = word;
        return 0;
    }
    walk.word = word & (word - 1);
    let r = walk.w * 64 + word.trailing_zeros();
    let Some(info) = RULE_INFO.get(rule_slot(walk.bank, r)) else {
        return 0;
    };
    if !info.residual_ok(walk.proto, walk.tcp_flags) {
        return 0;
    }
    // The clock is read only by what needs it (limit, LOG).
    let mut now = 0;
    if info.flags & info_flags::LIMIT != 0 {
        now = unsafe { bpf_ktime_get_ns() };
        let Some(tat) = RULE_LIMITS.get_ptr_mut(info.counter) else {
            return 0;
        };
        // SAFETY: shared slot; a racing update only admits a little more.
        let admit = limit_admit(
            unsafe { &mut *tat },
            now,
            info.limit_interval_ns,
            info.limit_burst_ns,
        );
        if !admit {
            count(Counter::RuleLimited);
            return 0;
        }
    }
    let Some(p) = SCRATCH.get(0) else { return 1 };
    if let Some(c) = RULE_STATS.get_ptr_mut(info.counter) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += p.l3_len as u64;
        }
    }
    if info.action == RuleAction::Log as u8 {
        if now == 0 {
            now = unsafe { bpf_ktime_get_ns() };
        }
        log(walk, p, info, r, now);
        return 0;
    }
    walk.found = r;
    1
}

#[inline(always)]
fn log(walk: &Walk, p: &Packet, info: &RuleInfo, r: u32, now: u64) {
    let Some(mut entry) = LOG_EVENTS.reserve::<LogEvent>(0) else {
        count(Counter::LogLost);
        return;
    };
    let (sport, dport) = l4_values(p);
    // Field by field into the ring buffer: a LogEvent built on the stack
    // first would not fit beside the walk.
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is the reserved, exclusively owned record.
    unsafe {
        (*e).ktime_ns = now;
        (*e).iif = walk.iif;
        (*e).oif = walk.oif;
        (*e).rule = r | walk.bank << 31;
        (*e).l3_len = p.l3_len;
        (*e).family = p.key.family;
        (*e).proto = p.key.proto;
        (*e).tcp_flags = p.tcp_flags;
        (*e).log_level = info.log_level;
        (*e).chain = walk.chain;
        (*e).ttl = p.ttl;
        (*e)._pad = [0; 2];
        // Element by element: whole-array assignments become `memcpy`
        // calls, whose byte loops the verifier walks.
        let mut i = 0;
        while i < 4 {
            (*e).src[i] = p.key.src[i];
            (*e).dst[i] = p.key.dst[i];
            (*e).prefix[i] = info.log_prefix[i];
            i += 1;
        }
        (*e).sport = sport;
        (*e).dport = dport;
        (*e)._pad2 = [0; 4];
    }
    entry.submit(0);
    count(Counter::LogEmitted);
}

/// Per-CPU state of the rule walk.
#[map]
pub static WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);
