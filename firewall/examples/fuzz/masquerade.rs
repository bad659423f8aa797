//! What leaves a masquerading interface: never a LAN source the WAN side
//! did not choose itself.

use std::net::IpAddr;

use firewall_common::{CtKey, FAMILY_V4, IPPROTO_ICMP};

use crate::{
    checks::Known,
    state::Table,
    table, topology,
    view::{self, View},
};

/// No IPv4 packet leaving the masquerading `wan0` carries a LAN source,
/// unless the WAN peer addressed that LAN address itself, or the host made
/// the packet about nothing it tracks:
///
/// * a packet of a connection the WAN side opened to it: the reply
///   direction of an entry whose original tuple is this packet's inverse
///   (a WAN client to the router's LAN address, whose INPUT rule accepted
///   it; a port forward matched on a LAN destination, whose replies are
///   translated back to it). netfilter's MASQUERADE leaves these alone too:
///   it translates connections leaving the interface, not replies;
/// * an ICMP error answering a packet sent to that address (the host's
///   errors come from the address the offending packet was sent to, as the
///   kernel's `icmp_send` picks it);
/// * an ICMP error of the host's own about a packet that has no connection
///   (`accept_local_icmp_error`, `local_error`): there is no translation
///   to apply, and the kernel gives such an error the address the
///   offending packet was sent to, or the outgoing interface's. An error
///   about a translated connection is RELATED to it and still checked.
///
/// `table` reads the connection table after the run (asked for only when
/// a LAN source is found). `host`: the host sent the packet. Returns the
/// known deviation tolerated, if any.
pub fn no_untranslated_lan_source(
    out: &[u8],
    host: bool,
    local_error: bool,
    strict: bool,
    table: impl FnOnce() -> Table,
) -> Result<Option<Known>, String> {
    let Some(v) = view::view(out) else {
        return Ok(None);
    };
    if !v.src.is_ipv4()
        || !topology::is_lan(v.src)
        || (host && local_error)
        || answers_its_sender(out, &v)
    {
        return Ok(None);
    }
    if v.l4.is_none() && host && !strict {
        return Ok(Some(Known::HostFragmentUntranslated));
    }
    if let Some(key) = key_of(out, &v) {
        let t = table();
        if t.get(&table::invert(&key)).is_some_and(|e| !e.is_reply()) {
            return Ok(None);
        }
    }
    Err(format!(
        "left wan0 from {} to {} (protocol {}, ports {}/{}): {}",
        v.src,
        v.dst,
        v.proto,
        v.sport,
        v.dport,
        view::hex(out)
    ))
}

/// An ICMPv4 error whose quoted packet was sent by the error's receiver to
/// the error's source.
fn answers_its_sender(frame: &[u8], v: &View) -> bool {
    let Some(l4) = v.l4 else {
        return false;
    };
    if v.proto != IPPROTO_ICMP || !matches!(frame.get(l4), Some(3 | 4 | 5 | 11 | 12)) {
        return false;
    }
    let quote = l4 + 8;
    let (Some(qsrc), Some(qdst)) = (
        frame.get(quote + 12..quote + 16),
        frame.get(quote + 16..quote + 20),
    ) else {
        return false;
    };
    let addr = |b: &[u8]| IpAddr::from(<[u8; 4]>::try_from(b).expect("four bytes"));
    addr(qdst) == v.src && addr(qsrc) == v.dst
}

/// The conntrack key of an IPv4 packet, as the datapath builds it: raw
/// address words, ports in network order, an ICMP query's identifier and
/// type.
fn key_of(frame: &[u8], v: &View) -> Option<CtKey> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (v.src, v.dst) else {
        return None;
    };
    let l4 = v.l4?;
    let (sport, dport) = match v.proto {
        IPPROTO_ICMP => (v.sport.to_be(), u16::from(*frame.get(l4)?)),
        _ => (v.sport.to_be(), v.dport.to_be()),
    };
    Some(CtKey {
        src: [u32::from_ne_bytes(s.octets()), 0, 0, 0],
        dst: [u32::from_ne_bytes(d.octets()), 0, 0, 0],
        sport,
        dport,
        proto: v.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    })
}
