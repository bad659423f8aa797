//! Ports: ranges, and iptables' spelling of them (`P`, `LO:HI` with open
//! ends, multiport's comma lists of at most 15 slots).

use std::fmt;

/// Inclusive port range in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// xt_multiport's capacity, which the config keeps for `sport`/`dport`
/// lists so that what imports from iptables fits back: 15 ports, a range
/// counting as two.
pub const MAX_PORT_SLOTS: usize = 15;

/// Slots a port list takes in xt_multiport.
pub fn port_slots(list: &[PortRange]) -> usize {
    list.iter().map(|r| if r.lo == r.hi { 1 } else { 2 }).sum()
}

/// A port number; iptables would look a name up in /etc/services, which
/// an import must not depend on.
pub fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if s.chars().any(|c| c.is_ascii_alphabetic()) {
            format!("port {s:?}: service names are not resolved; use the number")
        } else {
            format!("{s:?} is not a port")
        });
    }
    s.parse()
        .map_err(|_| format!("port {s} is out of range (0-65535)"))
}

/// `P`, or a range with `sep` (`:` in matches, `-` in NAT targets) whose
/// missing ends default to 0 and 65535.
pub fn parse_port_range(s: &str, sep: char) -> Result<PortRange, String> {
    let (lo, hi) = match s.split_once(sep) {
        None => {
            let p = parse_port(s)?;
            (p, p)
        }
        Some((a, b)) => (
            if a.is_empty() { 0 } else { parse_port(a)? },
            if b.is_empty() {
                u16::MAX
            } else {
                parse_port(b)?
            },
        ),
    };
    if lo > hi {
        return Err(format!("port range {s} is reversed"));
    }
    Ok(PortRange { lo, hi })
}

/// `-m multiport`'s comma list.
pub fn parse_port_list(s: &str) -> Result<Vec<PortRange>, String> {
    let list = s
        .split(',')
        .map(|p| parse_port_range(p, ':'))
        .collect::<Result<Vec<_>, _>>()?;
    if port_slots(&list) > MAX_PORT_SLOTS {
        return Err(format!(
            "too many ports (multiport holds {MAX_PORT_SLOTS}, a range counts as 2)"
        ));
    }
    Ok(list)
}
