//! The options of the REJECT and LOG targets: answer names and log levels.

use firewall_common::rule::model::RejectWith;

use super::Family;

/// `reject_with` values: iptables' names and their aliases (libipt_REJECT,
/// libip6t_REJECT), each with the answer for both families, because a rule
/// without addresses applies to both. Where ICMPv6 has no exact
/// counterpart the nearest destination-unreachable code stands in
/// (prohibited → administratively prohibited, protocol → port
/// unreachable); the ICMPv6-named ones map back the same way.
pub const REJECT_WITH: &[(&str, &str, RejectWith)] = &[
    (
        "icmp-port-unreachable",
        "port-unreach",
        RejectWith::PORT_UNREACHABLE,
    ),
    (
        "icmp-net-unreachable",
        "net-unreach",
        RejectWith::Icmp {
            v4: (3, 0),
            v6: (1, 0),
        },
    ),
    (
        "icmp-host-unreachable",
        "host-unreach",
        RejectWith::Icmp {
            v4: (3, 1),
            v6: (1, 3),
        },
    ),
    (
        "icmp-proto-unreachable",
        "proto-unreach",
        RejectWith::Icmp {
            v4: (3, 2),
            v6: (1, 4),
        },
    ),
    (
        "icmp-net-prohibited",
        "net-prohib",
        RejectWith::Icmp {
            v4: (3, 9),
            v6: (1, 1),
        },
    ),
    (
        "icmp-host-prohibited",
        "host-prohib",
        RejectWith::Icmp {
            v4: (3, 10),
            v6: (1, 1),
        },
    ),
    (
        "icmp-admin-prohibited",
        "admin-prohib",
        RejectWith::Icmp {
            v4: (3, 13),
            v6: (1, 1),
        },
    ),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    (
        "icmp6-no-route",
        "no-route",
        RejectWith::Icmp {
            v4: (3, 0),
            v6: (1, 0),
        },
    ),
    (
        "icmp6-adm-prohibited",
        "adm-prohibited",
        RejectWith::Icmp {
            v4: (3, 13),
            v6: (1, 1),
        },
    ),
    (
        "icmp6-addr-unreachable",
        "addr-unreach",
        RejectWith::Icmp {
            v4: (3, 1),
            v6: (1, 3),
        },
    ),
    (
        "icmp6-port-unreachable",
        "port-unreach",
        RejectWith::PORT_UNREACHABLE,
    ),
    (
        "icmp6-policy-fail",
        "policy-fail",
        RejectWith::Icmp {
            v4: (3, 13),
            v6: (1, 5),
        },
    ),
    (
        "icmp6-reject-route",
        "reject-route",
        RejectWith::Icmp {
            v4: (3, 13),
            v6: (1, 6),
        },
    ),
];

/// The family whose REJECT takes `name` (libipt_REJECT names its answers
/// `icmp-`, libip6t_REJECT `icmp6-`); `None` for `tcp-reset`, which both
/// take.
fn reject_family(name: &str) -> Option<Family> {
    if name.starts_with("icmp6-") {
        Some(Family::V6)
    } else if name.starts_with("icmp-") {
        Some(Family::V4)
    } else {
        None
    }
}

/// The canonical name of a `reject_with` value or alias, for either
/// family.
pub fn reject_name(name: &str) -> Option<&'static str> {
    REJECT_WITH
        .iter()
        .find(|(n, alias, _)| *n == name || *alias == name)
        .map(|(n, _, _)| *n)
}

/// The canonical name of `--reject-with name` in `family`'s iptables,
/// where an alias such as `port-unreach` means that family's own answer.
pub fn reject_canonical(name: &str, family: Family) -> Option<&'static str> {
    REJECT_WITH
        .iter()
        .filter(|(n, _, _)| reject_family(n).is_none_or(|f| f == family))
        .find(|(n, alias, _)| *n == name || *alias == name)
        .map(|(n, _, _)| *n)
}

/// The answer of a canonical name.
pub fn reject_answer(name: &str) -> Option<RejectWith> {
    REJECT_WITH
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, _, r)| r)
}

/// iptables' `--log-prefix` holds 29 bytes and a NUL.
pub const MAX_LOG_PREFIX: usize = 29;

/// syslog warning, iptables' default `--log-level`.
pub const DEFAULT_LOG_LEVEL: u8 = 4;

const LOG_LEVELS: &[(&str, u8)] = &[
    ("emerg", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("error", 3),
    ("warning", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

/// `0`-`7` or a syslog name.
pub fn parse_log_level(s: &str) -> Result<u8, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(&(_, l)) = LOG_LEVELS.iter().find(|(n, _)| *n == lower) {
        return Ok(l);
    }
    match s.parse::<u8>() {
        Ok(l) if l <= 7 => Ok(l),
        _ => Err(format!("unknown log level {s:?} (0-7 or a syslog name)")),
    }
}

#[cfg(test)]
mod tests;
