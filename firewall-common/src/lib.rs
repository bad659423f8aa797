//! Types shared by the eBPF datapath and the userspace loader, and the pure
//! packet logic both sides use.
//!
//! Everything here is `no_std` and allocation-free so the eBPF crate can call
//! it; the host runs the same functions under unit tests. Map keys and values
//! are `#[repr(C)]` with explicit padding, and each carries a compile-time size
//! assertion so layout drift fails the build rather than the verifier.
#![no_std]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

pub mod abi;
pub mod csum;
pub mod ct;
pub mod early_drop;
pub mod frag;
pub mod ftp;
pub mod ip;
pub mod nat;
pub mod nd;
pub mod reject;
pub mod rule;
pub mod sctp;
pub mod stats;
pub mod tcp;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timeouts;

pub use ct::{CtDir, CtEntry, CtKey, CtState};
pub use rule::{Chain, RuleAction};
pub use stats::Counter;
pub use tcp::TcpState;
pub use timeouts::Timeouts;

/// Address family tags stored in keys (not the kernel's AF_* values, which
/// differ between platforms; these are part of our map ABI).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
/// IPv6 "No Next Header": nothing follows the header chain.
pub const IPPROTO_NONE: u8 = 59;

/// Upper bound on rules (over all chains). Bitmaps of this many bits bound
/// the datapath's walk (see `rule`).
pub const MAX_RULES: u32 = 16_384;
/// Interfaces the firewall can manage at once.
pub const MAX_IFACES: u32 = 64;
/// Pending expectations (FTP data connections announced but not yet seen).
pub const MAX_EXPECTATIONS: u32 = 4096;
/// Helper assignments (proto, port).
pub const MAX_HELPERS: u32 = 64;
/// Port-forward map capacity (one entry per forwarded port).
pub const MAX_PORT_FORWARDS: u32 = 16_384;
/// Default conntrack capacity (entries, i.e. two per connection).
pub const DEFAULT_CT_ENTRIES: u32 = 262_144;

/// Role of a managed interface, as configured.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trusted inside: NEW traffic arriving here is allowed when no rule
    /// decides otherwise.
    Lan = 1,
    /// Outside: arriving traffic must be ESTABLISHED/RELATED or accepted by a
    /// rule.
    Wan = 2,
}

/// Value of the `IFACES` map (key: ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfaceConfig {
    /// A [`Role`] as u8 (0 = unmanaged; never stored).
    pub role: u8,
    /// A [`nat::IfaceNat`] as u8.
    pub nat: u8,
    /// [`iface_xdp`] bits: whether packets can be redirected from and to
    /// this interface in XDP (the fast path).
    pub xdp: u8,
    /// [`nd::iface_flags`] bits: the interface's IPv6 settings the
    /// datapath follows, and whether it is a virtual device.
    pub flags: u8,
    /// IPv4 address traffic leaving here is translated to (raw network
    /// order); for masquerade the daemon keeps it equal to the interface's
    /// current address. 0: none known, so nothing can be translated.
    pub nat_addr: u32,
    /// Range for allocated ports and ICMP ids (host order, inclusive).
    pub nat_port_lo: u16,
    pub nat_port_hi: u16,
}
const _: () = assert!(core::mem::size_of::<IfaceConfig>() == 12);

/// `IfaceConfig::xdp` bits, set by the loader from how it attached.
pub mod iface_xdp {
    /// XDP runs in generic (skb) mode here. A packet redirected from a
    /// generic-mode program stays an skb and is sent with the target's
    /// ordinary transmit routine (`generic_xdp_tx`), which every device has.
    pub const GENERIC: u8 = 1 << 0;
    /// A NIC running our program in native mode: its driver takes XDP
    /// frames redirected from another native-mode program
    /// (`ndo_xdp_xmit`; some drivers only with a program loaded, which ours
    /// is). Never set on veth, for two reasons: a veth delivers such frames
    /// only if its peer, possibly in another namespace, has NAPI on (an XDP
    /// program or GRO), which the loader can neither see nor keep true
    /// (otherwise the frame is dropped after the program returned); and a
    /// veth carries packets of local sockets with `CHECKSUM_PARTIAL`, which
    /// an XDP frame cannot express, so a redirected TCP segment arrives
    /// with a bad checksum (seen in the bench lab: `TcpInCsumErrors` at the
    /// receiver with a bare native forwarder).
    pub const FRAME_TARGET: u8 = 1 << 1;
}
/// Single-element `SETTINGS` array value: everything the datapath reads per
/// NEW packet that userspace may change at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub timeouts: Timeouts,
    /// Which bank of the rule tables is live (see `rule`): the loader
    /// fills the other one, then flips this.
    pub rule_bank: u32,
    /// [`settings_nat`] bits: which NAT machinery any interface uses, so
    /// the datapath skips NAT lookups entirely when there is none.
    pub nat: u8,
    /// Non-zero when any conntrack helper is configured.
    pub helpers: u8,
    /// Non-zero: ESTABLISHED forwarded packets may be redirected in XDP
    /// (`fast_path` in the config).
    pub fast_path: u8,
    /// [`settings_tcp`] bits: netfilter's `tcp_be_liberal` and `tcp_loose`.
    pub tcp: u8,
    /// `nf_conntrack_tcp_max_retrans`: retransmissions of one segment
    /// after which the connection's timeout drops to `tcp_retrans`.
    pub tcp_max_retrans: u8,
    pub _pad: [u8; 7],
}

/// `Settings::tcp` bits.
pub mod settings_tcp {
    /// `tcp_be_liberal`: window failures pass (an out-of-window RST never
    /// does).
    pub const BE_LIBERAL: u8 = 1 << 0;
    /// `tcp_loose`: a mid-stream segment may start a connection.
    pub const LOOSE: u8 = 1 << 1;
}

impl Settings {
    /// The TCP tracker's settings.
    #[inline(always)]
    pub fn tcp_config(&self) -> tcp::track::TcpConfig {
        tcp::track::TcpConfig {
            be_liberal: self.tcp & settings_tcp::BE_LIBERAL != 0,
            loose: self.tcp & settings_tcp::LOOSE != 0,
            max_retrans: self.tcp_max_retrans,
        }
    }
}

/// `Settings::nat` bits.
pub mod settings_nat {
    /// Some interface masquerades or SNATs.
    pub const SOURCE: u8 = 1 << 0;
    /// Port forwards exist.
    pub const PORT_FORWARD: u8 = 1 << 1;
}
const _: () = assert!(core::mem::size_of::<Settings>() == 80);

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeouts: Timeouts::NETFILTER,
            rule_bank: 0,
            nat: 0,
            helpers: 0,
            fast_path: 0,
            tcp: settings_tcp::LOOSE,
            tcp_max_retrans: tcp::track::TcpConfig::NETFILTER.max_retrans,
            _pad: [0; 7],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, and have explicit padding
    // fields, so every byte pattern is a valid value.
    unsafe impl aya::Pod for super::IfaceConfig {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::rule::RulesetHeader {}
    unsafe impl aya::Pod for super::rule::ClassBits {}
    unsafe impl aya::Pod for super::rule::AddrClassData {}
    unsafe impl aya::Pod for super::rule::IfaceClassKey {}
    unsafe impl aya::Pod for super::rule::RuleInfo {}
    unsafe impl aya::Pod for super::rule::LogEvent {}
    unsafe impl aya::Pod for super::rule::RuleText {}
    unsafe impl aya::Pod for super::rule::RuleCounter {}
    unsafe impl aya::Pod for super::nat::PortFwdKey {}
    unsafe impl aya::Pod for super::nat::PortFwdTarget {}
    unsafe impl aya::Pod for super::ftp::ExpectKey {}
    unsafe impl aya::Pod for super::ftp::Expectation {}
    unsafe impl aya::Pod for super::ftp::SeqAdj {}
    unsafe impl aya::Pod for super::early_drop::RingGeometry {}
    unsafe impl aya::Pod for super::early_drop::RingCursor {}
}
