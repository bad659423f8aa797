//! What the kernel does between the hooks, in a few lines: routing a
//! packet that both ingress programs passed. What the stack would not
//! forward (not IP, VLAN-tagged with no VLAN device, an IPv4 header that
//! does not check, a local, unroutable or unforwardable destination, more
//! than the MTU) stops there, as on a real router; what it would forward
//! gets a fresh Ethernet header and its TTL decremented; a spent TTL makes
//! the host answer with an ICMP time exceeded.

use std::net::IpAddr;

use crate::{
    router::Side,
    topology,
    view::{self, View},
    wire::{self, Datagram, Eth, Icmp, Ipv4, L4, Net},
};

/// Whether BPF_PROG_TEST_RUN takes `frame` for a tc program: since 6.18's
/// stable updates, an skb whose Ethernet type says IPv4 or IPv6 must hold
/// that header whole (`bpf_prog_test_run_skb` returns EINVAL), a check the
/// stack's own paths make before tc sees a packet anyway.
pub fn tc_runnable(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() >= wire::ETH_LEN + 20,
        Some([0x86, 0xdd]) => frame.len() >= wire::ETH_LEN + 40,
        _ => true,
    }
}

/// Both interfaces' MTU.
const MTU: usize = 1500;

pub enum Next {
    Local,
    Gone,
    /// The host's ICMP time exceeded, to go back out of the arrival side.
    TimeExceeded(Vec<u8>),
    Forward(Side, Vec<u8>),
}

/// What the stack would do with `frame`, received on `from` and passed by
/// both ingress programs.
pub fn route(from: Side, frame: &[u8]) -> Next {
    let Some(v) = view::view(frame) else {
        return Next::Gone;
    };
    if v.tags > 0 || !v.sound {
        return Next::Gone;
    }
    if topology::is_router(v.dst) {
        return Next::Local;
    }
    if !routable(v.src) || !routable(v.dst) || topology::is_unroutable(v.dst) {
        return Next::Gone;
    }
    // Larger than the MTU: the stack fragments it, or answers "too big";
    // neither is modelled.
    if frame.len() - v.l3 > MTU {
        return Next::Gone;
    }
    if v.ttl <= 1 {
        return match time_exceeded(from, frame, &v) {
            Some(e) => Next::TimeExceeded(e),
            None => Next::Gone,
        };
    }
    let to = if topology::is_lan(v.dst) {
        Side::Lan
    } else {
        Side::Wan
    };
    let mut ip = frame[v.l3..].to_vec();
    match v.dst {
        IpAddr::V4(_) => {
            ip[8] -= 1;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = wire::checksum(&ip[..ihl]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        IpAddr::V6(_) => ip[7] -= 1,
    }
    let ethertype = if v.dst.is_ipv4() {
        wire::ETH_P_IP
    } else {
        wire::ETH_P_IPV6
    };
    Next::Forward(to, Eth::plain().frame(ethertype, &ip))
}

/// Addresses the stack forwards between (not multicast, broadcast,
/// loopback, unspecified or link-local).
fn routable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            !(v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(v6) => {
            !(v6.is_multicast()
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unicast_link_local())
        }
    }
}

/// The ICMP time exceeded the stack sends for an IPv4 packet whose TTL ran
/// out: from the router's address on the arrival side, quoting the header
/// and 8 bytes (RFC 792). IPv6 is left out: `wan0` has no global IPv6
/// address to send it from.
fn time_exceeded(from: Side, frame: &[u8], v: &View) -> Option<Vec<u8>> {
    let IpAddr::V4(dst) = v.src else {
        return None;
    };
    let src = match from {
        Side::Lan => topology::ROUTER_LAN_V4,
        Side::Wan => topology::ROUTER_WAN_V4,
    };
    let ihl = usize::from(frame[v.l3] & 0x0f) * 4;
    let quote = frame.get(v.l3..(v.l3 + ihl + 8).min(frame.len()))?;
    let d = Datagram {
        net: Net::V4(Ipv4::new(src.octets(), dst.octets())),
        l4: L4::Icmp(Icmp {
            ty: 11,
            code: 0,
            body: quote.to_vec(),
            ..Icmp::default()
        }),
    };
    Some(Eth::plain().frame(wire::ETH_P_IP, &d.ip()))
}
