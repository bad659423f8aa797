//! Protocol names. The firewall names four protocols, those with keys of
//! their own (ports, ICMP types); every other protocol is a number in the
//! config, in `rules list` and in `conntrack list`. iptables knows more
//! names, which an import reads and messages about iptables lines repeat.

use firewall_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

const TCP: (&str, u8) = ("tcp", IPPROTO_TCP);
const UDP: (&str, u8) = ("udp", IPPROTO_UDP);

/// The names this firewall reads and writes.
pub const PROTOCOLS: &[(&str, u8)] =
    &[TCP, UDP, ("icmp", IPPROTO_ICMP), ("icmpv6", IPPROTO_ICMPV6)];

/// The protocols with ports (to forward, to help).
pub const PORT_PROTOCOLS: &[(&str, u8)] = &[TCP, UDP];

/// Further names iptables takes for `-p` (libxtables' own and what
/// /etc/protocols commonly has), its own spelling of ICMPv6 first:
/// iptables-save writes `ipv6-icmp`.
const IPTABLES_PROTOCOLS: &[(&str, u8)] = &[
    ("ipv6-icmp", IPPROTO_ICMPV6),
    ("icmp6", IPPROTO_ICMPV6),
    ("udplite", 136),
    ("sctp", 132),
    ("dccp", 33),
    ("esp", 50),
    ("ah", 51),
    ("gre", 47),
    ("igmp", 2),
    ("ipv6", 41),
    ("mh", 135),
    ("ospf", 89),
    ("vrrp", 112),
    ("pim", 103),
    ("l2tp", 115),
];

/// The firewall's name of a protocol, else its number.
pub fn proto_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|(_, n)| *n == p)
        .map_or_else(|| p.to_string(), |(name, _)| (*name).to_string())
}

/// A name the firewall writes.
pub fn proto_by_name(name: &str) -> Option<u8> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|&(_, p)| p)
}

/// A name the firewall or iptables writes, or a number.
pub fn proto_number(name: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .chain(IPTABLES_PROTOCOLS)
        .find(|(n, _)| *n == name)
        .map(|&(_, p)| p)
        .or_else(|| name.parse().ok())
}

/// `-p` as iptables reads it: a name in any case, or a number. `None` is
/// `all` (or 0).
pub fn parse_proto(s: &str) -> Result<Option<u8>, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "all" || lower == "0" {
        return Ok(None);
    }
    if let Some(&(_, p)) = PROTOCOLS
        .iter()
        .chain(IPTABLES_PROTOCOLS)
        .find(|(n, _)| *n == lower)
    {
        return Ok(Some(p));
    }
    match lower.parse::<u8>() {
        Ok(p) => Ok(Some(p)),
        Err(_) if lower.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("protocol {s} is out of range (0-255)"))
        }
        Err(_) => Err(format!("unknown protocol {s:?} (use its number)")),
    }
}

/// The name iptables-save writes for a protocol, else its number.
pub fn iptables_proto_name(p: u8) -> String {
    IPTABLES_PROTOCOLS
        .iter()
        .chain(PROTOCOLS)
        .find(|(_, n)| *n == p)
        .map_or_else(|| p.to_string(), |(name, _)| (*name).to_string())
}
