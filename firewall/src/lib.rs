//! Userspace side of the firewall: configuration, loading and attaching the
//! eBPF programs, the pinned-state layout, the conntrack ager, and readers
//! for the live tables. `main.rs` and `cli/` are thin layers over this.

pub mod ager;
pub mod batch;
pub mod config;
pub mod iptables;
pub mod loader;
pub mod maps;
pub mod pins;
pub mod reload;
pub mod ruleset;
pub mod syntax;
pub mod sys;
pub mod table;

/// The compiled eBPF object (both programs and all maps), embedded at build
/// time by `build.rs`.
pub fn ebpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall"))
}

/// The early-drop ring (`firewall_common::early_drop`): the keys, each
/// region's positions, and its geometry. Pinned with the table whose
/// connections they name, and sized by the loader.
pub const EARLY_DROP_MAPS: [&str; 3] = [EARLY_DROP_RING, EARLY_DROP_POS, EARLY_DROP_GEOM];
pub const EARLY_DROP_RING: &str = "CT_EARLY_DROP";
pub const EARLY_DROP_POS: &str = "EARLY_DROP_POS";
pub const EARLY_DROP_GEOM: &str = "EARLY_DROP_GEOM";

/// Names of the programs inside [`ebpf_object`].
pub const XDP_PROGRAM: &str = "firewall_xdp";
pub const TC_PROGRAM: &str = "firewall_tc_egress";
pub const TC_INGRESS_PROGRAM: &str = "firewall_tc_ingress";
/// Reached only by tail call from [`TC_PROGRAM`], never attached.
pub const TC_FTP_PROGRAM: &str = "firewall_tc_ftp";
/// Reached only by tail call from [`TC_PROGRAM`], never attached.
pub const TC_CREATE_PROGRAM: &str = "firewall_tc_create";
/// Reached only by tail call from [`XDP_PROGRAM`], never attached.
pub const XDP_REJECT_PROGRAM: &str = "firewall_xdp_reject";
/// Reached only by tail call from [`XDP_PROGRAM`], never attached.
pub const XDP_FASTPATH_PROGRAM: &str = "firewall_xdp_fastpath";
/// Reached only by tail call from [`XDP_PROGRAM`], never attached.
pub const XDP_ADMIT_PROGRAM: &str = "firewall_xdp_admit";
/// Bench only (not loaded by the firewall): stateless XDP forwarding, the
/// hook's limit.
pub const BARE_FORWARD_PROGRAM: &str = "bare_forward";
/// Bench only: `XDP_PASS`, attached natively to veth peers so that they
/// accept redirected XDP frames.
pub const BARE_PASS_PROGRAM: &str = "bare_pass";

/// The maps pinned under an instance's pin directory (in the order `down`
/// removes them): the state and configuration the CLI and a restarted
/// daemon share. Every other map of the object is in [`PRIVATE_MAPS`]; the
/// loader refuses an object with a map in neither list, so a new map cannot
/// silently go unpinned (every test that loads the object checks it).
pub const MAP_NAMES: [&str; 24] = [
    "CONNTRACK",
    "FRAGMENTS",
    EARLY_DROP_RING,
    EARLY_DROP_POS,
    EARLY_DROP_GEOM,
    "SETTINGS",
    "IFACES",
    "PORT_FWD",
    "HELPERS",
    "EXPECT",
    "RULESETS",
    "META_CLASS",
    "PORT_CLASS",
    "IFACE_CLASS",
    "ADDR_CLASS",
    "CLASSES",
    "RULE_WORDS",
    "RULE_INFO",
    "RULE_TEXT",
    "RULE_STATS",
    "RULE_LIMITS",
    "LOG_EVENTS",
    "STATS",
    "DAEMON_STATE",
];

/// The program arrays: each load pins its own under a generation
/// (`PinDir::program_array`), so its tail calls outlive the daemon.
pub const PROGRAM_ARRAYS: [&str; 2] = ["JUMP", "JUMP_XDP"];

/// Maps each load keeps to itself: per-CPU scratch slots, and the program
/// arrays ([`PROGRAM_ARRAYS`]), which hold this load's programs.
pub const PRIVATE_MAPS: [&str; 19] = [
    "JUMP",
    "JUMP_XDP",
    "FASTPATH_ARGS",
    "REJECT_ARGS",
    "FTP_SCRATCH",
    "CT_SCRATCH",
    "EARLY_DROP_WALK",
    "WALK",
    "SCRATCH",
    "FIB_PARAMS",
    "SUM",
    "OPTION_WALK",
    "NEW_CONNECTION",
    "ND_OPTIONS",
    "EXT_WALK",
    "SCTP",
    "TCP_SLOT",
    ".bss",
    ".rodata",
];

/// `DAEMON_STATE` slots.
pub const AGER_SCANS: u32 = 0;
pub const AGER_REMOVED: u32 = 1;
/// pid of the daemon that last completed setup (0: none).
pub const DAEMON_PID: u32 = 2;
/// 1 once a daemon finished attaching every interface; stays 1 while an
/// adopting daemon swaps programs, since the old ones keep enforcing.
pub const SETUP_COMPLETE: u32 = 3;
/// Reloads the daemon processed (SIGHUP), and how many of them it refused;
/// `firewall reload` waits for the first to move.
pub const RELOADS: u32 = 4;
pub const RELOADS_REFUSED: u32 = 5;
