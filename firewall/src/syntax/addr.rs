//! Addresses: the two families, prefixes (`ADDR/LEN`, and iptables'
//! `ADDR/MASK`) and inclusive address ranges (`-m iprange`).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use firewall_common::{FAMILY_V4, FAMILY_V6};

/// Address family of a rule, kept apart from the datapath's `u8` tags so a
/// rule can say "any" with `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The tag the datapath compares against (`FAMILY_V4`/`FAMILY_V6`).
    pub fn tag(self) -> u8 {
        match self {
            Family::V4 => FAMILY_V4,
            Family::V6 => FAMILY_V6,
        }
    }

    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// An address with a prefix length. Host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// What a prefix with host bits set (`10.0.0.1/8`) means to its reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostBits {
    /// iptables clears them, and takes dotted masks (`/255.255.0.0`) as well
    /// as lengths: a dump says what the kernel holds, whatever was typed.
    Cleared,
    /// The config refuses them: written by hand, `10.0.0.1/8` is more
    /// likely a typo for a host than a network. Lengths only.
    Refused,
}

impl Cidr {
    /// A single address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: max_prefix(addr),
        }
    }

    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    pub fn max_prefix(&self) -> u8 {
        max_prefix(self.addr)
    }

    /// Network-order bytes (IPv4 in the first four) and the prefix
    /// length, as the rule compiler takes them.
    pub fn prefix(&self) -> ([u8; 16], u8) {
        let mut out = [0u8; 16];
        match self.addr {
            IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => out = a.octets(),
        }
        (out, self.prefix)
    }

    /// `ADDR` or `ADDR/LEN`, and with [`HostBits::Cleared`] also
    /// `ADDR/MASK`. Each reader keeps the wording its users know: the
    /// config's messages name the value, iptables' name the part at fault.
    pub fn parse(s: &str, host_bits: HostBits) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = match host_bits {
            HostBits::Cleared => parse_ip(addr_text)?,
            HostBits::Refused => addr_text
                .parse()
                .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?,
        };
        let max = max_prefix(addr);
        let prefix = match (prefix_text, host_bits) {
            (None, _) => max,
            (Some(p), HostBits::Refused) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
            },
            (Some(m), HostBits::Cleared)
                if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) =>
            {
                match m.parse() {
                    Ok(p) if p <= max => p,
                    _ => return Err(format!("prefix length {m} is out of range (0-{max})")),
                }
            }
            (Some(m), HostBits::Cleared) => mask_length(addr, m)?,
        };
        let network = masked(addr, prefix);
        if host_bits == HostBits::Refused && network != addr {
            return Err(format!(
                "{s} has host bits set (the network is {network}/{prefix})"
            ));
        }
        Ok(Cidr {
            addr: network,
            prefix,
        })
    }

    /// Whether every address of `inner` is in this prefix.
    pub fn contains(&self, inner: &Cidr) -> bool {
        self.family() == inner.family()
            && self.prefix <= inner.prefix
            && masked(inner.addr, self.prefix) == self.addr
    }

    /// The addresses both prefixes hold: the narrower, when one holds the
    /// other (two prefixes never overlap otherwise).
    pub fn meet(&self, other: &Cidr) -> Option<Cidr> {
        if self.contains(other) {
            Some(*other)
        } else if other.contains(self) {
            Some(*self)
        } else {
            None
        }
    }
}

/// Host addresses print without `/32` so summaries read like `iptables -L`.
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == self.max_prefix() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The length of a dotted mask, which must be of `addr`'s family and
/// contiguous.
fn mask_length(addr: IpAddr, m: &str) -> Result<u8, String> {
    let mask = parse_ip(m).map_err(|_| format!("{m:?} is not a prefix length or mask"))?;
    let bits = match (addr, mask) {
        (IpAddr::V4(_), IpAddr::V4(m)) => u128::from(u32::from(m)) << 96,
        (IpAddr::V6(_), IpAddr::V6(m)) => u128::from(m),
        _ => return Err(format!("mask {m} is of the other address family")),
    };
    if bits.leading_ones() + bits.trailing_zeros() < 128 && bits != 0 {
        return Err(format!("mask {m} is not contiguous"));
    }
    Ok(bits.leading_ones() as u8)
}

/// An address as iptables reads one: never a host name.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| {
        if s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains(':') {
            format!("{s:?} is not an address (host names are not resolved)")
        } else {
            format!("{s:?} is not an IP address")
        }
    })
}

/// An inclusive address range of one family (`-m iprange`, `src_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    pub lo: IpAddr,
    pub hi: IpAddr,
}

impl AddrRange {
    pub fn family(&self) -> Family {
        Family::of(self.lo)
    }

    pub fn meet(&self, other: &AddrRange) -> Option<AddrRange> {
        if self.family() != other.family() {
            return None;
        }
        let lo = self.lo.max(other.lo);
        let hi = self.hi.min(other.hi);
        (lo <= hi).then_some(AddrRange { lo, hi })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// `FROM-TO`, both of one family, `FROM` not above `TO`.
pub fn parse_addr_range(s: &str) -> Result<AddrRange, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range (expected FROM-TO)"))?;
    let (lo, hi) = (parse_ip(lo)?, parse_ip(hi)?);
    if Family::of(lo) != Family::of(hi) {
        return Err("the ends are of different address families".into());
    }
    if lo > hi {
        return Err("the range is reversed".into());
    }
    Ok(AddrRange { lo, hi })
}

#[cfg(test)]
mod tests;
