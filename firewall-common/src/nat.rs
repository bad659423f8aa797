//! NAT: interface modes, per-entry rewrites, port forwards and the choice of
//! source ports.
//!
//! Destination rewrites (port forwards, and reversing masquerade on
//! replies) happen on ingress before routing; source rewrites (masquerade,
//! SNAT, and reversing a port forward on replies) on egress after routing:
//! netfilter's PREROUTING/POSTROUTING split. A connection's pair of entries
//! carries one rewrite each, decided when the connection is created, so the
//! reply key stored in the table is the translated tuple replies will carry.

/// `IfaceConfig::nat`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfaceNat {
    None = 0,
    /// Translate to the interface's current address.
    Masquerade = 1,
    /// Translate to a fixed address.
    Snat = 2,
}

/// `CtEntry::nat`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatRewrite {
    None = 0,
    /// Rewrite source address and port (egress).
    Src = 1,
    /// Rewrite destination address and port (ingress).
    Dst = 2,
}

/// Key of the `PORT_FWD` map: a WAN-side port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortFwdKey {
    pub proto: u8,
    pub _pad: u8,
    /// Network order.
    pub port: u16,
}
const _: () = assert!(core::mem::size_of::<PortFwdKey>() == 4);

/// Where a forwarded port goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortFwdTarget {
    /// IPv4, raw network order.
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<PortFwdTarget>() == 8);

/// How many ports the datapath tries before declaring the range exhausted.
/// Each try is one `BPF_NOEXIST` insert of the reply entry, which is what
/// makes a port claim atomic across CPUs.
pub const PORT_TRIES: u32 = 32;

/// How a protocol is source-translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoNat {
    /// TCP, UDP, ICMP queries: the address, and a port (ICMP: identifier)
    /// allocated so that many inside hosts share the address.
    Ports,
    /// SCTP: the address only, the ports kept. Its CRC32c does not cover
    /// the addresses, so nothing else changes; a second inside host using
    /// the same ports to the same peer is refused.
    KeepPorts,
    /// Protocols without ports (GRE, ESP, AH, …): the address only, as
    /// netfilter's generic NAT does, so one inside host per remote peer and
    /// protocol at a time.
    AddressOnly,
    /// DCCP and UDP-Lite checksum the addresses through a pseudo-header
    /// that is not rewritten here: never translated (they do not leave a
    /// NAT interface).
    Refused,
}

/// How protocol `proto` (an IPv4 protocol number) is source-translated.
#[inline(always)]
pub fn proto_nat(proto: u8) -> ProtoNat {
    match proto {
        crate::IPPROTO_TCP | crate::IPPROTO_UDP | crate::IPPROTO_ICMP => ProtoNat::Ports,
        crate::IPPROTO_SCTP => ProtoNat::KeepPorts,
        IPPROTO_DCCP | IPPROTO_UDPLITE => ProtoNat::Refused,
        _ => ProtoNat::AddressOnly,
    }
}

const IPPROTO_DCCP: u8 = 33;
const IPPROTO_UDPLITE: u8 = 136;

/// The port to try on attempt `attempt` (0-based): first the original port
/// (netfilter keeps it when free), then a pseudo-random walk through
/// `[lo, hi]` starting at `seed`. Host order in and out.
#[inline(always)]
pub fn port_candidate(attempt: u32, original: u16, lo: u16, hi: u16, seed: u32) -> u16 {
    if attempt == 0 {
        return original;
    }
    let span = (hi as u32).saturating_sub(lo as u32) + 1;
    // An odd stride visits every port of a power-of-two span and spreads
    // consecutive tries apart otherwise.
    let stride = (seed >> 16) | 1;
    let off = (seed.wrapping_add(attempt.wrapping_mul(stride))) % span;
    (lo as u32 + off) as u16
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn first_candidate_is_the_original_port() {
        assert_eq!(port_candidate(0, 40000, 1024, 65535, 1234), 40000);
        // Even outside the range: netfilter keeps a free original port.
        assert_eq!(port_candidate(0, 80, 1024, 65535, 99), 80);
    }

    #[test]
    fn later_candidates_stay_in_range_and_differ() {
        for seed in [0u32, 1, 0xdead_beef, u32::MAX] {
            let mut seen = HashSet::new();
            for a in 1..PORT_TRIES {
                let p = port_candidate(a, 5, 2000, 2099, seed);
                assert!((2000..=2099).contains(&p), "{p}");
                seen.insert(p);
            }
            assert!(seen.len() > (PORT_TRIES as usize) / 2, "{seen:?}");
        }
    }

    #[test]
    fn protocols_are_translated_as_far_as_their_checksums_allow() {
        assert_eq!(proto_nat(6), ProtoNat::Ports);
        assert_eq!(proto_nat(17), ProtoNat::Ports);
        assert_eq!(proto_nat(1), ProtoNat::Ports);
        assert_eq!(proto_nat(132), ProtoNat::KeepPorts);
        for gre_esp_ah_ipip in [47, 50, 51, 4] {
            assert_eq!(proto_nat(gre_esp_ah_ipip), ProtoNat::AddressOnly);
        }
        assert_eq!(proto_nat(33), ProtoNat::Refused);
        assert_eq!(proto_nat(136), ProtoNat::Refused);
    }

    #[test]
    fn single_port_range_always_yields_that_port() {
        for a in 1..10 {
            assert_eq!(port_candidate(a, 9, 7000, 7000, a * 31), 7000);
        }
    }

    #[test]
    fn full_range_does_not_overflow() {
        for a in 1..PORT_TRIES {
            let p = port_candidate(a, 1, 1, 65535, 0xffff_ffff);
            assert!(p >= 1);
        }
    }
}
