//! ICMP and ICMPv6 types and codes, by number or by the names iptables
//! lists for each family.

use std::fmt;

/// `--icmp-type` / `--icmpv6-type`, `icmp_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpType {
    /// `any` (IPv4 only): every ICMP packet.
    Any,
    /// A type with any code.
    Type(u8),
    TypeCode(u8, u8),
}

impl IcmpType {
    pub fn meet(&self, other: &IcmpType) -> Option<IcmpType> {
        use IcmpType::*;
        match (*self, *other) {
            (Any, x) | (x, Any) => Some(x),
            (Type(a), Type(b)) => (a == b).then_some(Type(a)),
            (Type(a), TypeCode(b, c)) | (TypeCode(b, c), Type(a)) => {
                (a == b).then_some(TypeCode(b, c))
            }
            (TypeCode(..), TypeCode(..)) => (self == other).then_some(*self),
        }
    }
}

impl fmt::Display for IcmpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IcmpType::Any => f.write_str("any"),
            IcmpType::Type(t) => write!(f, "{t}"),
            IcmpType::TypeCode(t, c) => write!(f, "{t}/{c}"),
        }
    }
}

/// `(name, type, code)` as libipt_icmp lists them (`iptables -p icmp -h`).
pub const ICMP_TYPES: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("tos-network-unreachable", 3, Some(11)),
    ("tos-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("tos-network-redirect", 5, Some(2)),
    ("tos-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

/// As libip6t_icmp6 lists them (`ip6tables -p icmpv6 -h`).
pub const ICMPV6_TYPES: &[(&str, u8, Option<u8>)] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("communication-prohibited", 1, Some(1)),
    ("beyond-scope", 1, Some(2)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("failed-policy", 1, Some(5)),
    ("reject-route", 1, Some(6)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("ttl-exceeded", 3, None),
    ("ttl-zero-during-transit", 3, Some(0)),
    ("ttl-zero-during-reassembly", 3, Some(1)),
    ("parameter-problem", 4, None),
    ("bad-header", 4, Some(0)),
    ("unknown-header-type", 4, Some(1)),
    ("unknown-option", 4, Some(2)),
    ("echo-request", 128, None),
    ("ping", 128, None),
    ("echo-reply", 129, None),
    ("pong", 129, None),
    ("router-solicitation", 133, None),
    ("router-advertisement", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
    ("redirect", 137, None),
];

/// A name of `v6`'s table, `TYPE` or `TYPE/CODE`; `any` only for IPv4.
pub fn parse_icmp_type(s: &str, v6: bool) -> Result<IcmpType, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "any" && !v6 {
        return Ok(IcmpType::Any);
    }
    let table = if v6 { ICMPV6_TYPES } else { ICMP_TYPES };
    if let Some(&(_, t, code)) = table.iter().find(|(n, _, _)| *n == lower) {
        return Ok(match code {
            Some(c) => IcmpType::TypeCode(t, c),
            None => IcmpType::Type(t),
        });
    }
    let number = |n: &str| {
        n.parse::<u8>()
            .map_err(|_| format!("unknown ICMP{} type {s:?}", if v6 { "v6" } else { "" }))
    };
    Ok(match s.split_once('/') {
        Some((t, c)) => IcmpType::TypeCode(number(t)?, number(c)?),
        None => IcmpType::Type(number(s)?),
    })
}
