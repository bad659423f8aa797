//! Link-scope ICMPv6: neighbour and router discovery and redirects
//! (RFC 4861) and multicast listener discovery (RFC 2710, RFC 3810).
//!
//! netfilter marks these UNTRACKED and lets the ruleset decide. They only
//! mean something on the link they were sent on, so this firewall is
//! stricter (RFC 4890 §4.4.1): they are never forwarded, malformed ones are
//! dropped, and the ones IPv6 needs to work reach the host without a rule.
//! Everything else goes to the rules as UNTRACKED.

use crate::ip::{v6_is_link_local, v6_is_multicast};

/// `IfaceConfig::flags` bits the loader reads from the interface's
/// sysctls and device type.
pub mod iface_flags {
    /// `accept_ra` lets the kernel use router advertisements here (2, or 1
    /// with forwarding off on the interface).
    pub const ACCEPT_RA: u8 = 1 << 0;
    /// `accept_redirects` is on and forwarding off: the kernel acts on
    /// redirects here.
    pub const ACCEPT_REDIRECTS: u8 = 1 << 1;
    /// A virtual device (veth and friends): packets of local senders may
    /// arrive with an offloaded checksum not filled in yet.
    pub const VIRTUAL: u8 = 1 << 2;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdMessage {
    RouterSolicitation,
    RouterAdvertisement,
    NeighbourSolicitation,
    NeighbourAdvertisement,
    Redirect,
    /// MLD query, report or done (130, 131, 132, 143).
    ListenerDiscovery,
}

impl NdMessage {
    pub fn of_type(ty: u8) -> Option<NdMessage> {
        Some(match ty {
            133 => NdMessage::RouterSolicitation,
            134 => NdMessage::RouterAdvertisement,
            135 => NdMessage::NeighbourSolicitation,
            136 => NdMessage::NeighbourAdvertisement,
            137 => NdMessage::Redirect,
            130 | 131 | 132 | 143 => NdMessage::ListenerDiscovery,
            _ => return None,
        })
    }

    /// Where the options start (the fixed part's length, ICMP header
    /// included), or `None` for MLD, which carries none.
    pub fn options_offset(self) -> Option<usize> {
        match self {
            NdMessage::RouterSolicitation => Some(8),
            NdMessage::RouterAdvertisement => Some(16),
            NdMessage::NeighbourSolicitation | NdMessage::NeighbourAdvertisement => Some(24),
            NdMessage::Redirect => Some(40),
            NdMessage::ListenerDiscovery => None,
        }
    }
}

/// The shortest valid message of ICMPv6 type `ty` (ICMP header included).
fn min_len(msg: NdMessage, ty: u8) -> usize {
    match msg {
        NdMessage::ListenerDiscovery if ty == 143 => 8,
        NdMessage::ListenerDiscovery => 24,
        _ => msg.options_offset().unwrap_or(8),
    }
}

/// The fixed-part validation of RFC 4861 §6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1
/// and RFC 2710 §5 / RFC 3810 §5 for a message of `icmp_len` bytes:
/// neighbour discovery must arrive with hop limit 255 (it cannot have
/// crossed a router) and code 0; router advertisements and redirects come
/// from link-local addresses; MLD comes with hop limit 1 from a link-local
/// address (a report may use `::` while its address is tentative). The
/// options are checked by walking them with [`option_len`].
pub fn valid(
    msg: NdMessage,
    ty: u8,
    code: u8,
    hop_limit: u8,
    icmp_len: usize,
    src: &[u32; 4],
) -> bool {
    if code != 0 || icmp_len < min_len(msg, ty) {
        return false;
    }
    match msg {
        NdMessage::ListenerDiscovery => {
            let unspecified = src.iter().all(|w| *w == 0);
            hop_limit == 1 && (v6_is_link_local(src) || (ty == 143 && unspecified))
        }
        NdMessage::RouterAdvertisement | NdMessage::Redirect => {
            hop_limit == 255 && v6_is_link_local(src)
        }
        _ => hop_limit == 255 && !v6_is_multicast(src),
    }
}

/// The length in bytes of an option whose length byte is `units` (units
/// of 8 bytes); `None` for zero, which RFC 4861 §4.6 makes invalid (and
/// which would never advance a walk).
pub fn option_len(units: u8) -> Option<usize> {
    if units == 0 {
        None
    } else {
        Some(units as usize * 8)
    }
}

/// Whether the host takes `msg` without a rule: neighbour solicitations and
/// advertisements always (IPv6 does not work without them), router
/// advertisements and redirects where the interface's settings act on them
/// (`iface` is its [`iface_flags`]), MLD from a `lan`. Router solicitations
/// and the rest are for the rules to decide.
pub fn accepted_without_rule(msg: NdMessage, iface: u8, from_lan: bool) -> bool {
    match msg {
        NdMessage::NeighbourSolicitation | NdMessage::NeighbourAdvertisement => true,
        NdMessage::RouterAdvertisement => iface & iface_flags::ACCEPT_RA != 0,
        NdMessage::Redirect => iface & iface_flags::ACCEPT_REDIRECTS != 0,
        NdMessage::ListenerDiscovery => from_lan,
        NdMessage::RouterSolicitation => false,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::net::Ipv6Addr;

    use super::*;

    fn v6(s: &str) -> [u32; 4] {
        let o = s.parse::<Ipv6Addr>().unwrap().octets();
        core::array::from_fn(|i| {
            u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        })
    }

    #[test]
    fn types_map_to_messages() {
        assert_eq!(
            NdMessage::of_type(135),
            Some(NdMessage::NeighbourSolicitation)
        );
        assert_eq!(NdMessage::of_type(137), Some(NdMessage::Redirect));
        for t in [130, 131, 132, 143] {
            assert_eq!(NdMessage::of_type(t), Some(NdMessage::ListenerDiscovery));
        }
        for t in [1, 128, 129, 138, 139, 144] {
            assert_eq!(NdMessage::of_type(t), None, "{t}");
        }
    }

    #[test]
    fn fixed_part_validation() {
        let ll = v6("fe80::1");
        let global = v6("2001:db8::1");
        let ns = NdMessage::NeighbourSolicitation;
        assert!(valid(ns, 135, 0, 255, 24, &global));
        assert!(valid(ns, 135, 0, 255, 32, &v6("::")), "DAD probe");
        assert!(!valid(ns, 135, 0, 254, 24, &global), "crossed a router");
        assert!(!valid(ns, 135, 1, 255, 24, &global), "code");
        assert!(!valid(ns, 135, 0, 255, 23, &global), "short");
        assert!(
            !valid(ns, 135, 0, 255, 24, &v6("ff02::1")),
            "multicast source"
        );
        let ra = NdMessage::RouterAdvertisement;
        assert!(valid(ra, 134, 0, 255, 16, &ll));
        assert!(
            !valid(ra, 134, 0, 255, 16, &global),
            "RA from a global address"
        );
        assert!(!valid(NdMessage::Redirect, 137, 0, 255, 40, &global));
        assert!(valid(NdMessage::Redirect, 137, 0, 255, 40, &ll));
        let mld = NdMessage::ListenerDiscovery;
        assert!(valid(mld, 131, 0, 1, 24, &ll));
        assert!(!valid(mld, 131, 0, 255, 24, &ll), "MLD hop limit");
        assert!(
            !valid(mld, 131, 0, 1, 24, &global),
            "MLD from a global address"
        );
        assert!(
            valid(mld, 143, 0, 1, 8, &v6("::")),
            "MLDv2 report while tentative"
        );
        assert!(!valid(mld, 131, 0, 1, 8, &ll), "MLDv1 report too short");
    }

    #[test]
    fn option_lengths() {
        assert_eq!(option_len(0), None);
        assert_eq!(option_len(1), Some(8));
        assert_eq!(option_len(4), Some(32));
    }

    #[test]
    fn what_the_host_takes_without_a_rule() {
        use iface_flags::*;
        let ns = NdMessage::NeighbourSolicitation;
        assert!(accepted_without_rule(ns, 0, false));
        assert!(accepted_without_rule(
            NdMessage::NeighbourAdvertisement,
            0,
            false
        ));
        let ra = NdMessage::RouterAdvertisement;
        assert!(!accepted_without_rule(ra, 0, false));
        assert!(accepted_without_rule(ra, ACCEPT_RA, false));
        assert!(!accepted_without_rule(NdMessage::Redirect, ACCEPT_RA, true));
        assert!(accepted_without_rule(
            NdMessage::Redirect,
            ACCEPT_REDIRECTS,
            false
        ));
        assert!(accepted_without_rule(NdMessage::ListenerDiscovery, 0, true));
        assert!(!accepted_without_rule(
            NdMessage::ListenerDiscovery,
            0,
            false
        ));
        assert!(!accepted_without_rule(
            NdMessage::RouterSolicitation,
            !0,
            true
        ));
    }
}
