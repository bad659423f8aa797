//! Compiling a validated rule to the datapath's form ([`MatchRule`]):
//! ranges to prefixes, ICMP types to ranges, interface names to the
//! ifindexes of the namespace it is installed in.

use std::net::IpAddr;

use firewall_common::rule::model::{Cond, LimitSpec, MatchRule, Prefix, TcpFlagsSpec};

use super::{ConfigError, RuleConfig};
use crate::syntax::{AddrRange, Cidr, Family, IcmpType, Match, reject_answer};

/// ICMP `type << 8 | code` range of an `icmp_type` value.
fn icmp_range(t: &IcmpType) -> (u16, u16) {
    match *t {
        IcmpType::Any => (0, u16::MAX),
        IcmpType::Type(t) => (u16::from(t) << 8, u16::from(t) << 8 | 0xff),
        IcmpType::TypeCode(t, c) => {
            let v = u16::from(t) << 8 | u16::from(c);
            (v, v)
        }
    }
}

fn cidr_prefix(c: &Cidr) -> Prefix {
    let (addr, len) = c.prefix();
    Prefix::new(addr, len)
}

fn range_prefixes(r: &AddrRange) -> Vec<Prefix> {
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(a) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        IpAddr::V6(a) => a.octets(),
    };
    let bits = if r.lo.is_ipv4() { 32 } else { 128 };
    Prefix::cover(bytes(r.lo), bytes(r.hi), bits)
}

impl RuleConfig {
    /// The rule as the compiler takes it. `interfaces` lists every
    /// interface of the network namespace by name and ifindex: an exact
    /// name must be among them, a `+` wildcard stands for those it
    /// prefixes (possibly none).
    pub fn to_match(&self, interfaces: &[(String, u32)]) -> Result<MatchRule, ConfigError> {
        let Self {
            chain,
            action,
            family,
            proto,
            src,
            dst,
            src_range,
            dst_range,
            sport,
            dport,
            iif,
            oif,
            icmp_type,
            tcp_flags,
            limit,
            ctstate,
            reject_with,
            log_prefix,
            log_level,
            comment: _,
            line: _,
            index: _,
            origin,
            key,
            iface_lines,
        } = self;
        let mut rule = MatchRule::new(*chain, *action);
        rule.family = family.map(Family::tag);
        rule.proto = expanded(proto, |p| vec![*p]);
        for (out, cidrs, ranges) in [
            (&mut rule.src, src, src_range),
            (&mut rule.dst, dst, dst_range),
        ] {
            out.extend(expanded(cidrs, |c| vec![cidr_prefix(c)]));
            out.extend(expanded(ranges, range_prefixes));
        }
        rule.sport = expanded(sport, |p| vec![(p.lo, p.hi)]);
        rule.dport = expanded(dport, |p| vec![(p.lo, p.hi)]);
        rule.icmp = expanded(icmp_type, |t| vec![icmp_range(t)]);
        for (out, m, name, lines) in [
            (&mut rule.iif, iif, "iif", [iface_lines[0], iface_lines[1]]),
            (&mut rule.oif, oif, "oif", [iface_lines[2], iface_lines[3]]),
        ] {
            *out = conds(m, |i, negated| {
                if i.wildcard {
                    return Ok(interfaces
                        .iter()
                        .filter(|(n, _)| n.starts_with(&i.name))
                        .map(|&(_, ix)| ix)
                        .collect());
                }
                match interfaces.iter().find(|(n, _)| *n == i.name) {
                    Some(&(_, ix)) => Ok(vec![ix]),
                    None => Err(ConfigError::Invalid {
                        origin: origin.clone(),
                        line: lines[usize::from(negated)],
                        key: format!("{key}.{}{name}", if negated { "not_" } else { "" }),
                        message: format!("interface {:?} does not exist", i.name),
                    }),
                }
            })?;
        }
        rule.ctstate = ctstate.iter().fold(0, |bits, s| bits | s.bit());
        rule.tcp_flags = tcp_flags.map(|t| TcpFlagsSpec {
            mask: t.flags.mask,
            comp: t.flags.set,
            negated: t.negated,
        });
        rule.limit = limit.map(|l| LimitSpec {
            interval_ns: l.interval_ns(),
            burst: l.burst,
        });
        if let Some(name) = reject_with {
            rule.reject =
                reject_answer(name).expect("validated reject_with names are in the table");
        }
        if let Some(p) = log_prefix {
            rule.log_prefix[..p.len()].copy_from_slice(p.as_bytes());
        }
        rule.log_level = *log_level;
        Ok(rule)
    }
}

/// The compiler's conditions: one for the plain key, one negated for
/// the `not_` key, each value expanded by `expand` (a range to its
/// prefixes, a wildcard to its interfaces). A negated condition that
/// expands to nothing excludes nothing and is left out; a positive one
/// is kept, and never holds.
fn conds<T, U, E>(
    m: &Match<T>,
    mut expand: impl FnMut(&T, bool) -> Result<Vec<U>, E>,
) -> Result<Vec<Cond<U>>, E> {
    let mut out = Vec::new();
    if !m.any_of.is_empty() {
        let mut any_of = Vec::new();
        for v in &m.any_of {
            any_of.extend(expand(v, false)?);
        }
        out.push(Cond {
            negated: false,
            any_of,
        });
    }
    let mut none_of = Vec::new();
    for v in &m.none_of {
        none_of.extend(expand(v, true)?);
    }
    if !none_of.is_empty() {
        out.push(Cond {
            negated: true,
            any_of: none_of,
        });
    }
    Ok(out)
}

/// [`conds`] for expansions that cannot fail.
fn expanded<T, U>(m: &Match<T>, expand: impl Fn(&T) -> Vec<U>) -> Vec<Cond<U>> {
    match conds(m, |v, _| Ok::<_, std::convert::Infallible>(expand(v))) {
        Ok(c) => c,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests;
