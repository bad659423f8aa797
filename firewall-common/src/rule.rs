//! Filter rules: the tables an ordered rule list compiles to, and the
//! per-packet walk over them that the datapath runs.
//!
//! The datapath only consults rules for packets that are not
//! ESTABLISHED/RELATED; the first matching terminal rule decides.
//!
//! # Why compiled tables
//!
//! A linear scan costs O(rules) per NEW packet; iptables falls from 194k to
//! 2k packets/s between 0 and 10,000 rules. Instead the list is compiled
//! into one lookup per packet field (the LBVS idea of bpf-iptables): each
//! field value maps to a *class*, and each class names the bitmap of rules
//! whose condition on that field holds for the value. The rules that match
//! a packet are the AND of its fields' bitmaps; the first set bit is the
//! first match.
//!
//! A bitmap of 16,384 rules is 256 words, and ANDing seven of them per
//! packet would still grow with the rule count. So each class also carries a
//! *summary*: one bit per non-zero bitmap word. The walk ANDs the summaries
//! (4 words), and only reads the words whose summary bit survives in every
//! field. Only non-zero words are stored, packed after the class's
//! `offset`; a word's slot is its rank among the summary bits. For the rule
//! sets firewalls carry (most rules pin a port or an address), the summary
//! AND leaves a word or two, so the cost stays flat from 10 to 10,000 rules.
//! The worst case (every field's bitmap non-zero in every word, yet the
//! words' AND empty) is still bounded: 256 candidate words.
//!
//! # Fields
//!
//! `META` folds chain, family, conntrack state and protocol into one array
//! index. Interfaces are a hash lookup by ifindex, addresses an LPM trie
//! (prefixes, negation and `iprange`, which the compiler splits into
//! prefixes), ports an array over all 65,536 values. ICMP types share the
//! `SPORT` field: for ICMP packets its value is `type << 8 | code`, and a
//! rule with an ICMP type requires an ICMP protocol, so the two never mix.
//!
//! # Atomic replacement
//!
//! Every table has two banks. The loader fills the inactive bank completely,
//! then flips `Settings::rule_bank`. A packet reads the bank once, so it sees
//! either the old ruleset or the new, never a mix. Counters live in slots
//! that a rule keeps across reloads while it is unchanged.

use crate::MAX_RULES;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    /// Arriving, addressed to the firewall host.
    Input = 0,
    /// Arriving, routed through the firewall.
    Forward = 1,
    /// Originated by the firewall host.
    Output = 2,
}

impl Chain {
    pub const ALL: [Chain; 3] = [Chain::Input, Chain::Forward, Chain::Output];
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Accept = 1,
    Drop = 2,
    /// Drop and answer with a TCP RST or an ICMP error (`RuleInfo`).
    Reject = 3,
    /// Emit a log event and go on with the next rule, as iptables' LOG.
    Log = 4,
}

impl RuleAction {
    /// Whether a match ends the walk.
    pub const fn terminal(self) -> bool {
        !matches!(self, RuleAction::Log)
    }
}

/// Field numbers: bit `1 << field` in [`RulesetHeader::fields`], and index
/// into `default_class`.
pub mod field {
    pub const META: usize = 0;
    pub const IIF: usize = 1;
    pub const OIF: usize = 2;
    pub const SRC: usize = 3;
    pub const DST: usize = 4;
    /// Source port, or ICMP `type << 8 | code`.
    pub const SPORT: usize = 5;
    pub const DPORT: usize = 6;
    pub const COUNT: usize = 7;
}

/// Two of everything: one live, one being written.
pub const RULE_BANKS: u32 = 2;
/// Bitmap words per class (one bit per rule).
pub const RULE_WORDS: usize = (MAX_RULES / 64) as usize;
/// Summary words per class (one bit per bitmap word).
pub const SUMMARY_WORDS: usize = RULE_WORDS / 64;
/// Classes per bank, over all fields.
pub const MAX_CLASSES: u32 = 32_768;
/// Stored (non-zero) bitmap words per bank.
pub const MAX_BITMAP_WORDS: u32 = 1 << 19;
/// `ADDR_CLASS` entries (prefixes) per bank.
pub const MAX_ADDR_CLASSES: u32 = 65_536;
/// `IFACE_CLASS` entries per bank.
pub const MAX_IFACE_CLASSES: u32 = 1_024;
/// `META_CLASS` slots per bank: chain (2 bits), IPv6 (1), state (3),
/// protocol (8).
pub const META_SLOTS: u32 = 1 << 14;
/// `PORT_CLASS` slots per bank and field.
pub const PORT_SLOTS: u32 = 1 << 16;
/// Counter (and rate-limit) slots: a reload holds the old and the new
/// ruleset's at once.
pub const COUNTER_SLOTS: u32 = 2 * MAX_RULES;
/// Longest LOG prefix kept (iptables allows 29 characters).
pub const LOG_PREFIX_LEN: usize = 32;

#[inline(always)]
pub const fn meta_slot(bank: u32, chain: u8, v6: bool, state: u8, proto: u8) -> u32 {
    (bank & 1) << 14
        | ((chain as u32) & 3) << 12
        | (v6 as u32) << 11
        | ((state as u32) & 7) << 8
        | proto as u32
}

/// `field` is [`field::SPORT`] or [`field::DPORT`].
#[inline(always)]
pub const fn port_slot(bank: u32, field: usize, value: u16) -> u32 {
    let f = if field == field::DPORT { 1 } else { 0 };
    ((bank & 1) * 2 + f) << 16 | value as u32
}

#[inline(always)]
pub const fn class_slot(bank: u32, class: u32) -> u32 {
    (bank & 1) * MAX_CLASSES + class
}

#[inline(always)]
pub const fn rule_slot(bank: u32, rule: u32) -> u32 {
    (bank & 1) * MAX_RULES + rule
}

/// The `field` byte of an [`AddrClassData`]: source or destination, and the
/// family, so IPv4 and IPv6 prefixes never meet in the trie.
#[inline(always)]
pub const fn addr_field(field: usize, v6: bool) -> u8 {
    (field as u8) << 1 | v6 as u8
}

/// One per bank (`RULESETS`): what the walk needs besides the tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RulesetHeader {
    /// Rules in the bank; bits at or beyond it are never set.
    pub count: u32,
    /// `1 << field` for each field some rule conditions on. Other fields'
    /// bitmaps would be all ones, so the walk skips their lookups.
    pub fields: u32,
    /// Class of a value no table entry names (an unlisted interface, an
    /// address outside every prefix).
    pub default_class: [u32; 8],
    /// Per [`Chain`]: a [`RuleAction`] as u8, when no rule decides and the
    /// packet did not arrive on a LAN interface.
    pub policy: [u8; 4],
    /// Counts reloads, so `firewall reload` can see its ruleset went live.
    pub generation: u32,
}
const _: () = assert!(core::mem::size_of::<RulesetHeader>() == 48);

/// `CLASSES` value: which bitmap words are non-zero, and where they are.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ClassBits {
    pub summary: [u64; SUMMARY_WORDS],
    /// Summary bits in the words before each (so a rank is one popcount).
    pub before: [u16; SUMMARY_WORDS],
    /// Index in the bank's part of `RULE_WORDS` of the first stored word.
    pub offset: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ClassBits>() == 48);

impl ClassBits {
    /// A class whose non-zero words (`summary`) are stored from `offset`.
    pub fn new(summary: [u64; SUMMARY_WORDS], offset: u32) -> ClassBits {
        let mut before = [0u16; SUMMARY_WORDS];
        let mut n = 0;
        for (b, s) in before.iter_mut().zip(&summary) {
            *b = n;
            n += s.count_ones() as u16;
        }
        ClassBits {
            summary,
            before,
            offset,
            _pad: 0,
        }
    }

    /// Slot of bitmap word `w` (whose summary bit is set) among the stored
    /// words: the summary bits below it. Branch-free, because the verifier
    /// explores every branch of every field's lookup.
    #[inline(always)]
    pub fn rank(&self, w: u32) -> u32 {
        let i = ((w / 64) as usize) & (SUMMARY_WORDS - 1);
        let below = self.summary[i] & ((1u64 << (w % 64)) - 1);
        self.before[i] as u32 + below.count_ones()
    }
}

/// `ADDR_CLASS` (LPM trie) key data. The trie's prefix length counts from
/// `bank`: 32 bits of bank, field and padding, then the address prefix, so
/// a lookup never crosses banks, fields or families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct AddrClassData {
    pub bank: u8,
    /// [`addr_field`].
    pub field: u8,
    pub _pad: [u8; 2],
    /// Network order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<AddrClassData>() == 20);

/// Prefix length of an [`AddrClassData`] key for an address prefix.
pub const fn addr_prefixlen(len: u8) -> u32 {
    32 + len as u32
}

/// `IFACE_CLASS` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct IfaceClassKey {
    pub ifindex: u32,
    pub bank: u8,
    /// [`field::IIF`] or [`field::OIF`].
    pub field: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<IfaceClassKey>() == 8);

/// `RuleInfo::flags` bits.
pub mod info_flags {
    /// `--tcp-flags`: `tcp_flags & tcp_mask == tcp_comp` (TCP only).
    pub const TCP_FLAGS: u8 = 1 << 0;
    /// `! --tcp-flags`.
    pub const TCP_FLAGS_NEG: u8 = 1 << 1;
    /// `-m limit`: `limit_interval_ns`/`limit_burst_ns` apply.
    pub const LIMIT: u8 = 1 << 2;
    /// REJECT with a TCP RST (only reached by TCP packets).
    pub const REJECT_RST: u8 = 1 << 3;
}

/// `RULE_INFO` value: what the tables cannot say about a rule (its action,
/// the conditions checked only on the candidate) and its counter slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// A [`RuleAction`] as u8.
    pub action: u8,
    pub flags: u8,
    pub tcp_mask: u8,
    pub tcp_comp: u8,
    /// REJECT's ICMP error for IPv4 and IPv6 packets.
    pub icmp4_type: u8,
    pub icmp4_code: u8,
    pub icmp6_type: u8,
    pub icmp6_code: u8,
    /// Slot in `RULE_STATS` and `RULE_LIMITS`.
    pub counter: u32,
    /// syslog level for LOG (0-7).
    pub log_level: u8,
    pub _pad: [u8; 3],
    /// Token bucket as a GCRA: one packet per interval, bursts of up to
    /// `limit_burst_ns / limit_interval_ns` packets.
    pub limit_interval_ns: u64,
    pub limit_burst_ns: u64,
    /// NUL-padded LOG prefix, as words: the datapath copies it with four
    /// stores (a byte array became a `memcpy` call whose byte loop the
    /// verifier walks for every path).
    pub log_prefix: [u64; LOG_PREFIX_LEN / 8],
}
const _: () = assert!(core::mem::size_of::<RuleInfo>() == 64);

impl Default for RuleInfo {
    fn default() -> Self {
        RuleInfo {
            action: RuleAction::Drop as u8,
            flags: 0,
            tcp_mask: 0,
            tcp_comp: 0,
            icmp4_type: 3,
            icmp4_code: 3,
            icmp6_type: 1,
            icmp6_code: 4,
            counter: 0,
            log_level: 4,
            _pad: [0; 3],
            limit_interval_ns: 0,
            limit_burst_ns: 0,
            log_prefix: [0; LOG_PREFIX_LEN / 8],
        }
    }
}

impl RuleInfo {
    /// The conditions the tables do not hold: `--tcp-flags`. (`-m limit` is
    /// separate because it has state.)
    #[inline(always)]
    pub fn residual_ok(&self, proto: u8, tcp_flags: u8) -> bool {
        if self.flags & info_flags::TCP_FLAGS == 0 {
            return true;
        }
        if proto != crate::IPPROTO_TCP {
            return false;
        }
        let hit = tcp_flags & self.tcp_mask == self.tcp_comp;
        hit != (self.flags & info_flags::TCP_FLAGS_NEG != 0)
    }
}

/// `-m limit` as a GCRA over one timestamp (`tat`, the theoretical arrival
/// time of the next packet): admit when `tat` is within the burst allowance
/// of `now`. Equivalent to a token bucket of `burst` tokens refilled one
/// per interval, and it needs one word of state.
#[inline(always)]
pub fn limit_admit(tat: &mut u64, now: u64, interval_ns: u64, burst_ns: u64) -> bool {
    let t = if *tat < now { now } else { *tat };
    // `burst_ns` is (burst - 1) * interval: a full bucket admits `burst`
    // back-to-back packets.
    if t - now > burst_ns {
        return false;
    }
    *tat = t + interval_ns;
    true
}

/// Per-rule counters (`RULE_STATS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<RuleCounter>() == 16);

/// `RULE_TEXT` value: how `firewall rules list` shows a rule, and what
/// identifies it across reloads (so an unchanged rule keeps its counters).
/// Only userspace reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleText {
    /// Hash of the rule's full definition (not of `text`, which may be
    /// cut short).
    pub fingerprint: u64,
    /// A [`Chain`] as u8.
    pub chain: u8,
    /// A [`RuleAction`] as u8.
    pub action: u8,
    pub _pad: [u8; 2],
    /// Position in the config (1-based), for messages.
    pub line: u32,
    /// NUL-padded UTF-8.
    pub text: [u8; RULE_TEXT_LEN],
}
pub const RULE_TEXT_LEN: usize = 176;
const _: () = assert!(core::mem::size_of::<RuleText>() == 192);

/// Log event (`LOG_EVENTS` ring buffer), read by `firewall log`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub ktime_ns: u64,
    pub iif: u32,
    pub oif: u32,
    /// Rule index in its bank, and the bank.
    pub rule: u32,
    pub l3_len: u32,
    pub family: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    pub log_level: u8,
    /// A [`Chain`] as u8.
    pub chain: u8,
    pub ttl: u8,
    pub _pad: [u8; 2],
    /// Network order; IPv4 in the first word.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Host order; ICMP: type and code.
    pub sport: u16,
    pub dport: u16,
    pub _pad2: [u8; 4],
    /// NUL-padded, as [`RuleInfo::log_prefix`].
    pub prefix: [u64; LOG_PREFIX_LEN / 8],
}

/// A NUL-padded prefix as the words [`RuleInfo`] and [`LogEvent`] keep.
pub fn prefix_words(bytes: &[u8; LOG_PREFIX_LEN]) -> [u64; LOG_PREFIX_LEN / 8] {
    let mut out = [0u64; LOG_PREFIX_LEN / 8];
    for (i, w) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        *w = u64::from_ne_bytes(b);
    }
    out
}

/// The bytes of [`prefix_words`].
pub fn prefix_bytes(words: &[u64; LOG_PREFIX_LEN / 8]) -> [u8; LOG_PREFIX_LEN] {
    let mut out = [0u8; LOG_PREFIX_LEN];
    for (i, w) in words.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
    out
}
const _: () = assert!(core::mem::size_of::<LogEvent>() == 104);

/// The packet as rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MatchInput {
    /// A [`Chain`] as u8.
    pub chain: u8,
    pub v6: bool,
    /// A [`crate::CtState`] as u8.
    pub state: u8,
    pub proto: u8,
    /// Network order; IPv4 in the first four bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// 0 = none (OUTPUT has no input interface, INPUT no output).
    pub iif: u32,
    pub oif: u32,
    /// Host order. For ICMP `sport` is `type << 8 | code` and `dport` 0;
    /// for protocols without ports both are 0.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

impl MatchInput {
    pub fn meta_slot(&self, bank: u32) -> u32 {
        meta_slot(bank, self.chain, self.v6, self.state, self.proto)
    }
}

/// Takes the lowest set bit out of a summary AND: the next candidate word,
/// in rule order. Constant indices only, so in the datapath each outcome is
/// one straight path, and the walk's state stays a bitmask (see the
/// datapath's `step`).
#[inline(always)]
pub fn pop_word(sum: &mut [u64; SUMMARY_WORDS]) -> Option<u32> {
    let mut i = 0;
    while i < SUMMARY_WORDS {
        let v = sum[i];
        if v != 0 {
            sum[i] = v & (v - 1);
            return Some(i as u32 * 64 + v.trailing_zeros());
        }
        i += 1;
    }
    None
}

#[cfg(any(feature = "alloc", test))]
pub mod compile;
#[cfg(any(feature = "alloc", test))]
pub mod model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_counts_summary_bits_below_the_word() {
        let c = ClassBits::new([0b1011, 0, 1 << 63, 1], 0);
        assert_eq!(c.before, [0, 3, 3, 4]);
        assert_eq!(c.rank(0), 0);
        assert_eq!(c.rank(1), 1);
        assert_eq!(c.rank(3), 2);
        assert_eq!(c.rank(64 * 2 + 63), 3);
        assert_eq!(c.rank(64 * 3), 4);
    }

    #[test]
    fn pop_word_yields_set_summary_bits_in_order() {
        let mut s = [0b1010, 0, 1 << 63, 1];
        let mut seen = [0u32; 4];
        for slot in &mut seen {
            *slot = pop_word(&mut s).expect("a word");
        }
        assert_eq!(seen, [1, 3, 64 * 2 + 63, 64 * 3]);
        assert_eq!(pop_word(&mut s), None);
        assert_eq!(s, [0; 4]);
    }

    #[test]
    fn slots_of_the_two_banks_never_overlap() {
        assert_eq!(meta_slot(0, 3, true, 7, 255), META_SLOTS - 1);
        assert_eq!(meta_slot(1, 0, false, 0, 0), META_SLOTS);
        assert_eq!(port_slot(0, field::DPORT, 65535), 2 * PORT_SLOTS - 1);
        assert_eq!(port_slot(1, field::SPORT, 0), 2 * PORT_SLOTS);
        assert_eq!(port_slot(1, field::DPORT, 65535), 4 * PORT_SLOTS - 1);
        assert_eq!(class_slot(1, 0), MAX_CLASSES);
        assert_eq!(rule_slot(1, MAX_RULES - 1), 2 * MAX_RULES - 1);
    }

    #[test]
    fn tcp_flags_residual_and_its_negation() {
        use crate::{IPPROTO_TCP, IPPROTO_UDP};
        // --syn: SYN set, RST/ACK/FIN clear.
        let syn = RuleInfo {
            flags: info_flags::TCP_FLAGS,
            tcp_mask: 0x17,
            tcp_comp: 0x02,
            ..RuleInfo::default()
        };
        assert!(syn.residual_ok(IPPROTO_TCP, 0x02));
        assert!(syn.residual_ok(IPPROTO_TCP, 0x02 | 0x08)); // PSH is outside the mask
        assert!(!syn.residual_ok(IPPROTO_TCP, 0x12));
        assert!(!syn.residual_ok(IPPROTO_UDP, 0x02));
        let not_syn = RuleInfo {
            flags: info_flags::TCP_FLAGS | info_flags::TCP_FLAGS_NEG,
            ..syn
        };
        assert!(!not_syn.residual_ok(IPPROTO_TCP, 0x02));
        assert!(not_syn.residual_ok(IPPROTO_TCP, 0x12));
        assert!(RuleInfo::default().residual_ok(IPPROTO_UDP, 0));
    }

    #[test]
    fn limit_admits_the_burst_then_one_per_interval() {
        let interval = 1_000;
        let burst = 3;
        let burst_ns = (burst - 1) * interval;
        let mut tat = 0;
        let now = 1_000_000;
        let admitted = (0..10)
            .filter(|_| limit_admit(&mut tat, now, interval, burst_ns))
            .count();
        assert_eq!(admitted, burst as usize);
        // Half an interval later: still nothing.
        assert!(!limit_admit(
            &mut tat,
            now + interval / 2,
            interval,
            burst_ns
        ));
        // One interval later: one more.
        assert!(limit_admit(&mut tat, now + interval, interval, burst_ns));
        assert!(!limit_admit(&mut tat, now + interval, interval, burst_ns));
        // Idle for long: the bucket refills to the burst, not beyond.
        let later = now + 1_000 * interval;
        let admitted = (0..10)
            .filter(|_| limit_admit(&mut tat, later, interval, burst_ns))
            .count();
        assert_eq!(admitted, burst as usize);
    }
}
