//! Reading a frame back: enough of Ethernet, VLAN, IPv4, IPv6 and the
//! transport header to route a packet between the hooks as the kernel
//! would, to learn the translation a connection got, and to check where a
//! packet leaving the router comes from. Deliberately simple and separate
//! from the datapath's parser: it is the observer, not the observed.

use std::net::IpAddr;

use crate::wire::{
    ETH_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, checksum,
};

/// What a frame says about its IP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Offset of the IP header.
    pub l3: usize,
    /// VLAN tags before it.
    pub tags: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Offset of the transport header, if the packet is not a later
    /// fragment.
    pub l4: Option<usize>,
    /// Source and destination port; for ICMP queries the identifier in
    /// both, for other ICMP 0.
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    /// The first fragment of a fragmented datagram (offset 0, more to
    /// come).
    pub first_fragment: bool,
    /// The IP header is consistent: version, length within the frame,
    /// IPv4 header checksum.
    pub sound: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses `frame`; `None` if it is not an IP packet this reader follows.
pub fn view(frame: &[u8]) -> Option<View> {
    let mut off = ETH_LEN;
    let mut ethertype = be16(frame, 12)?;
    let mut tags = 0;
    while (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) && tags < 2 {
        ethertype = be16(frame, off + 2)?;
        off += 4;
        tags += 1;
    }
    let l3 = off;
    match ethertype {
        ETH_P_IP => {
            let h = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(be16(h, 2)?);
            let sound = h[0] >> 4 == 4
                && ihl >= 20
                && total >= ihl
                && l3 + total <= frame.len()
                && frame
                    .get(l3..l3 + ihl)
                    .is_some_and(|hdr| checksum(hdr) == 0);
            let frag = be16(h, 6)?;
            let later = frag & 0x1fff != 0;
            let first = !later && frag & 0x2000 != 0;
            let proto = h[9];
            let src = IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).ok()?);
            let l4 = (!later).then_some(l3 + ihl.max(20));
            let mut v = finish(frame, l3, tags, src, dst, proto, l4, h[8], sound);
            v.first_fragment = first;
            Some(v)
        }
        ETH_P_IPV6 => {
            let h = frame.get(l3..l3 + 40)?;
            let plen = usize::from(be16(h, 4)?);
            let sound = h[0] >> 4 == 6 && l3 + 40 + plen <= frame.len();
            let src = IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?);
            let mut next = h[6];
            let mut at = l3 + 40;
            let mut later = false;
            let mut first = false;
            for _ in 0..8 {
                match next {
                    IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                        let len = (usize::from(*frame.get(at + 1)?) + 1) * 8;
                        next = *frame.get(at)?;
                        at += len;
                    }
                    IPPROTO_AH => {
                        let len = (usize::from(*frame.get(at + 1)?) + 2) * 4;
                        next = *frame.get(at)?;
                        at += len;
                    }
                    IPPROTO_FRAGMENT => {
                        let word = be16(frame, at + 2)?;
                        later = word & 0xfff8 != 0;
                        first = !later && word & 1 != 0;
                        next = *frame.get(at)?;
                        at += 8;
                    }
                    _ => break,
                }
            }
            let l4 = (!later).then_some(at);
            let mut v = finish(frame, l3, tags, src, dst, next, l4, h[7], sound);
            v.first_fragment = first;
            Some(v)
        }
        _ => None,
    }
}

#[expect(clippy::too_many_arguments, reason = "the parts of one view")]
fn finish(
    frame: &[u8],
    l3: usize,
    tags: usize,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: Option<usize>,
    ttl: u8,
    sound: bool,
) -> View {
    let (sport, dport) = match (proto, l4) {
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, Some(at)) => (
            be16(frame, at).unwrap_or(0),
            be16(frame, at + 2).unwrap_or(0),
        ),
        (IPPROTO_ICMP | IPPROTO_ICMPV6, Some(at)) => {
            let id = be16(frame, at + 4).unwrap_or(0);
            (id, id)
        }
        _ => (0, 0),
    };
    View {
        l3,
        tags,
        src,
        dst,
        proto,
        l4,
        sport,
        dport,
        ttl,
        first_fragment: false,
        sound,
    }
}

impl View {
    /// The flags byte of a TCP segment.
    pub fn tcp_flags(&self, frame: &[u8]) -> Option<u8> {
        if self.proto != IPPROTO_TCP {
            return None;
        }
        frame.get(self.l4? + 13).copied()
    }
}

/// Lowercase hex, two digits a byte, nothing between.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
