//! The maps several modules share, whose types all come from
//! `firewall-common` (a module's own scratch slots live beside it). None is
//! declared pinned: the loader pins the shared ones under the instance's
//! pin directory (so several firewalls can run side by side), and the
//! BPF_PROG_TEST_RUN tests get private, unpinned copies.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use firewall_common::{
    CtEntry, CtKey, DEFAULT_CT_ENTRIES, IfaceConfig, MAX_EXPECTATIONS, MAX_HELPERS, MAX_IFACES,
    MAX_PORT_FORWARDS, MAX_RULES, Settings,
    abi::{tc_jump, xdp_jump},
    ftp::{ExpectKey, Expectation},
    nat::{PortFwdKey, PortFwdTarget},
    rule::{
        AddrClassData, COUNTER_SLOTS, ClassBits, IfaceClassKey, MAX_ADDR_CLASSES, MAX_BITMAP_WORDS,
        MAX_CLASSES, MAX_IFACE_CLASSES, META_SLOTS, PORT_SLOTS, RULE_BANKS, RuleCounter, RuleInfo,
        RuleText, RulesetHeader,
    },
    stats::STATS_SLOTS,
};

/// Both directions of every tracked connection (see `firewall_common::ct`).
/// A preallocated hash, not an LRU: the kernel never evicts an entry, so an
/// ASSURED connection cannot be pushed out by a flood and the two halves of
/// a connection cannot be separated; a full table makes room by early drop
/// (`early_drop`). The loader sizes it from the config.
#[map]
pub static CONNTRACK: HashMap<CtKey, CtEntry> = HashMap::with_max_entries(DEFAULT_CT_ENTRIES, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// ifindex → role, for every interface the firewall manages.
#[map]
pub static IFACES: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(MAX_IFACES, 0);

/// WAN-side (proto, port) → LAN target, one entry per forwarded port.
#[map]
pub static PORT_FWD: HashMap<PortFwdKey, PortFwdTarget> =
    HashMap::with_max_entries(MAX_PORT_FORWARDS, 0);

/// (proto, port) of a control connection's server → helper kind (1 = FTP).
#[map]
pub static HELPERS: HashMap<PortFwdKey, u8> = HashMap::with_max_entries(MAX_HELPERS, 0);

/// Data connections a helper announced, keyed by the tuple their first
/// packet will carry minus its source port (netfilter's wildcard). LRU so a
/// flood of commands evicts the stalest, never blocks new ones.
#[map]
pub static EXPECT: LruHashMap<ExpectKey, Expectation> =
    LruHashMap::with_max_entries(MAX_EXPECTATIONS, 0);

/// tc tail-call targets (`abi::tc_jump`). Not pinned: each load fills its
/// own.
#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(tc_jump::SLOTS, 0);

/// XDP tail-call targets (`abi::xdp_jump`). Not pinned: each load fills
/// its own.
#[map]
pub static JUMP_XDP: ProgramArray = ProgramArray::with_max_entries(xdp_jump::SLOTS, 0);

// The compiled ruleset (`firewall_common::rule`): every table holds two
// banks, and `Settings::rule_bank` says which is live.

#[map]
pub static RULESETS: Array<RulesetHeader> = Array::with_max_entries(RULE_BANKS, 0);

/// (chain, family, state, protocol) → class.
#[map]
pub static META_CLASS: Array<u32> = Array::with_max_entries(RULE_BANKS * META_SLOTS, 0);

/// Port (or ICMP type/code) → class, per field.
#[map]
pub static PORT_CLASS: Array<u32> = Array::with_max_entries(RULE_BANKS * 2 * PORT_SLOTS, 0);

/// Interfaces rules name → class; others take the header's default.
#[map]
pub static IFACE_CLASS: HashMap<IfaceClassKey, u32> =
    HashMap::with_max_entries(RULE_BANKS * MAX_IFACE_CLASSES, 0);

/// Address prefixes rules name → class (a /0 per field and family makes
/// every lookup hit). LPM tries must not be preallocated.
#[map]
pub static ADDR_CLASS: LpmTrie<AddrClassData, u32> =
    LpmTrie::with_max_entries(RULE_BANKS * MAX_ADDR_CLASSES, BPF_F_NO_PREALLOC);

#[map]
pub static CLASSES: Array<ClassBits> = Array::with_max_entries(RULE_BANKS * MAX_CLASSES, 0);

/// Non-zero bitmap words, packed per class.
#[map]
pub static RULE_WORDS: Array<u64> = Array::with_max_entries(RULE_BANKS * MAX_BITMAP_WORDS, 0);

#[map]
pub static RULE_INFO: Array<RuleInfo> = Array::with_max_entries(RULE_BANKS * MAX_RULES, 0);

/// What `firewall rules list` shows; the datapath never reads it.
#[map]
pub static RULE_TEXT: Array<RuleText> = Array::with_max_entries(RULE_BANKS * MAX_RULES, 0);

/// By counter slot, which a rule keeps across reloads while unchanged.
#[map]
pub static RULE_STATS: PerCpuArray<RuleCounter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// `-m limit` state (GCRA theoretical arrival time), by counter slot.
/// Shared by all CPUs, updated without a lock: concurrent packets can let
/// a few more through than the rate, never fewer.
#[map]
pub static RULE_LIMITS: Array<u64> = Array::with_max_entries(COUNTER_SLOTS, 0);

/// LOG events for `firewall log`.
#[map]
pub static LOG_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Written only by the daemon (ager counters, its pid, setup complete);
/// declared here so it is pinned beside the other maps and readable by
/// `stats` and `status` from other processes.
#[map]
pub static DAEMON_STATE: Array<u64> = Array::with_max_entries(8, 0);

/// Per-CPU slots where `conntrack::create` builds a new connection's two
/// entries.
#[map]
pub static CT_SCRATCH: PerCpuArray<CtEntry> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
pub fn count(c: firewall_common::Counter) {
    if let Some(slot) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// A managed interface's `IFACES` entry.
#[inline(always)]
pub fn iface(ifindex: u32) -> Option<IfaceConfig> {
    // SAFETY: read-only lookup of a plain value.
    unsafe { IFACES.get(&ifindex) }.copied()
}
