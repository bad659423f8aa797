//! `[[port_forward]]` blocks: destination NAT of new connections arriving
//! on a `wan`.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddrV6},
};

use firewall_common::Role;
use toml::{Spanned, Value};

use super::{
    ConfigError,
    doc::Doc,
    interfaces::{InterfaceConfig, NO_IPV6_NAT, usable_host},
    raw::RawPortForward,
    rule::one_line,
};
use crate::syntax::{PORT_PROTOCOLS, PortRange, proto_name};

/// Most WAN-side ports all `[[port_forward]]` blocks together may forward
/// (each port of a range counts), so the datapath's DNAT map has a fixed size.
pub const MAX_FORWARDED_PORTS: u32 = 16384;

/// One validated `[[port_forward]]`: new connections arriving on the WAN
/// side for `proto`/`ports` are sent to `to_addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForward {
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// WAN-side destination ports; never includes 0.
    pub ports: PortRange,
    pub to_addr: Ipv4Addr,
    /// Target port for `ports.lo`, the rest following consecutively (never
    /// past 65535); `None` keeps each port as it is.
    pub to_port: Option<u16>,
    pub comment: Option<String>,
    /// 1-based line of the `[[port_forward]]` header.
    pub line: usize,
    /// 1-based position among the port forwards (`port_forward[N]`).
    pub index: usize,
}

impl PortForward {
    /// Every (wan_port, target_port) pair, in order.
    ///
    /// Exactly `ports.hi - ports.lo + 1` pairs for a parsed forward; for a
    /// hand-built one whose targets would pass 65535 it stops there.
    pub fn mappings(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (self.ports.lo..=self.ports.hi).map_while(move |p| match self.to_port {
            None => Some((p, p)),
            Some(t) => t.checked_add(p - self.ports.lo).map(|t| (p, t)),
        })
    }

    /// Human one-line summary, e.g. `tcp 8080 -> 192.168.1.10:80`,
    /// `tcp 5000-5100 -> 10.0.0.5:6000-6100` or
    /// `udp 5000-5100 -> 10.0.0.5 (ports kept)`, then the comment if any.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} {} -> {}",
            proto_name(self.proto),
            self.ports,
            self.to_addr
        );
        match self.to_port {
            None => out += " (ports kept)",
            Some(t) => {
                let last = self.mappings().last().map_or(t, |(_, t)| t);
                out += &format!(":{}", PortRange { lo: t, hi: last });
            }
        }
        if let Some(c) = &self.comment {
            out += &format!(" /* {} */", one_line(c));
        }
        out
    }
}

/// A `[[port_forward]]` target: `ADDR` or `ADDR:PORT`, IPv4 only.
fn forward_target(s: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => return Ok((usable_host(a)?, None)),
        Ok(IpAddr::V6(_)) => return Err(format!("{s}: {NO_IPV6_NAT}")),
        Err(_) if s.parse::<SocketAddrV6>().is_ok() => {
            return Err(format!("{s}: {NO_IPV6_NAT}"));
        }
        Err(_) => {}
    }
    let bad = || format!("{s:?} is not an IPv4 address with an optional :PORT");
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok((usable_host(addr)?, Some(p))),
        _ => Err(format!("port {port} is out of range (1-65535)")),
    }
}

pub(super) fn validate_port_forwards(
    doc: &Doc,
    raws: &[Spanned<RawPortForward>],
    interfaces: &[InterfaceConfig],
) -> Result<Vec<PortForward>, ConfigError> {
    if let Some(first) = raws.first()
        && !interfaces.iter().any(|i| i.role == Role::Wan)
    {
        return Err(doc.invalid(
            doc.line(first.span().start),
            "port_forward[1]",
            "port forwarding needs an [[interface]] with role wan",
        ));
    }
    // Per protocol, the forwards so far by first port: (last port, index,
    // line). They never overlap, so only the one starting last at or below a
    // new range's end can overlap it.
    let mut taken: HashMap<u8, BTreeMap<u16, (u16, usize, usize)>> = HashMap::new();
    let mut total = 0u32;
    let mut forwards = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let (pf, port_v) = validate_port_forward(doc, raw, i + 1)?;
        let key = format!("port_forward[{}].port", pf.index);
        let by_lo = taken.entry(pf.proto).or_default();
        if let Some((&lo, &(hi, index, line))) = by_lo.range(..=pf.ports.hi).next_back()
            && hi >= pf.ports.lo
        {
            let other = PortRange { lo, hi };
            let proto = proto_name(pf.proto);
            return Err(doc.at(
                port_v,
                &key,
                format!(
                    "{proto} {} overlaps port_forward[{index}] ({proto} {other}, line {line})",
                    pf.ports
                ),
            ));
        }
        by_lo.insert(pf.ports.lo, (pf.ports.hi, pf.index, pf.line));
        total += port_count(pf.ports);
        if total > MAX_FORWARDED_PORTS {
            return Err(doc.at(
                port_v,
                &key,
                format!(
                    "too many forwarded ports: {total} across port_forward[1-{}] \
                     (at most {MAX_FORWARDED_PORTS})",
                    pf.index
                ),
            ));
        }
        forwards.push(pf);
    }
    Ok(forwards)
}

fn port_count(r: PortRange) -> u32 {
    u32::from(r.hi) - u32::from(r.lo) + 1
}

/// One `[[port_forward]]` on its own, with the `port` value for errors that
/// involve the others.
fn validate_port_forward<'r>(
    doc: &Doc,
    spanned: &'r Spanned<RawPortForward>,
    index: usize,
) -> Result<(PortForward, &'r Spanned<Value>), ConfigError> {
    let line = doc.line(spanned.span().start);
    let raw = spanned.get_ref();
    let key = |k: &str| format!("port_forward[{index}].{k}");
    let missing = |k: &str| doc.invalid(line, key(k), "missing (required)");

    let proto_v = raw.proto.as_ref().ok_or_else(|| missing("proto"))?;
    let proto = doc.keyword(proto_v, &key("proto"), PORT_PROTOCOLS)?;

    let port_v = raw.port.as_ref().ok_or_else(|| missing("port"))?;
    let ports = doc.port_range(port_v, &key("port"))?;
    if ports.lo == 0 {
        return Err(doc.at(port_v, &key("port"), "port 0 cannot be forwarded"));
    }

    let to_v = raw.to.as_ref().ok_or_else(|| missing("to"))?;
    let (to_addr, to_port) =
        forward_target(doc.string(to_v, &key("to"))?).map_err(|m| doc.at(to_v, &key("to"), m))?;
    if let Some(t) = to_port {
        let last = u32::from(t) + port_count(ports) - 1;
        if last > u32::from(u16::MAX) {
            return Err(doc.at(
                to_v,
                &key("to"),
                format!("port range {ports} mapped from {t} would end at {last}, past 65535"),
            ));
        }
    }

    let comment = match &raw.comment {
        Some(v) => Some(doc.string(v, &key("comment"))?.to_string()),
        None => None,
    };

    Ok((
        PortForward {
            proto,
            ports,
            to_addr,
            to_port,
            comment,
            line,
            index,
        },
        port_v,
    ))
}

#[cfg(test)]
mod tests;
