//! Map definitions. None is declared pinned: the loader pins each one under
//! the instance's pin directory (so several firewalls can run side by side),
//! and the BPF_PROG_TEST_RUN tests get private, unpinned copies.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
};
use firewall_common::{
    CtEntry, CtKey, DEFAULT_CT_ENTRIES, IfaceConfig, MAX_EXPECTATIONS, MAX_HELPERS, MAX_IFACES,
    MAX_PORT_FORWARDS, MAX_RULES, Rule, Settings,
    ftp::{ExpectKey, Expectation},
    nat::{PortFwdKey, PortFwdTarget},
    rule::RuleCounter,
    stats::STATS_SLOTS,
};

/// Both directions of every tracked connection (see `firewall_common::ct`).
/// LRU so that a full table evicts the coldest flows instead of refusing new
/// ones; the loader may resize it from the config.
#[map]
pub static CONNTRACK: LruHashMap<CtKey, CtEntry> =
    LruHashMap::with_max_entries(DEFAULT_CT_ENTRIES, 0);

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

/// Tail-call targets: 0 = `firewall_tc_ftp`. Not pinned: each load fills
/// its own.
#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Per-CPU buffers for the FTP helper (too big for the stack).
#[map]
pub static FTP_SCRATCH: PerCpuArray<crate::ftp::Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static RULES: Array<Rule> = Array::with_max_entries(MAX_RULES, 0);

#[map]
pub static RULE_STATS: PerCpuArray<RuleCounter> = PerCpuArray::with_max_entries(MAX_RULES, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Written only by the daemon (ager counters, its pid, setup complete);
/// declared here so it is pinned beside the other maps and readable by
/// `stats` and `status` from other processes.
#[map]
pub static DAEMON_STATE: Array<u64> = Array::with_max_entries(8, 0);

/// Per-CPU scratch for the parsed packet (see `parse::parse`).
#[map]
pub static SCRATCH: PerCpuArray<crate::parse::Packet> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count(c: firewall_common::Counter) {
    if let Some(slot) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}
