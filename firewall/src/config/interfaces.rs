//! `[[interface]]` blocks: which interfaces are filtered, their role, and
//! the source NAT of a `wan`.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use firewall_common::Role;
use toml::Spanned;

use super::{
    ConfigError,
    doc::{Doc, name_of},
    raw::RawInterface,
};
use crate::syntax::{PortRange, interface_name_problem};

/// Source ports (and ICMP ids) NAT allocates from when the original is taken
/// and the interface sets no `nat_ports`.
pub const DEFAULT_NAT_PORTS: PortRange = PortRange {
    lo: 1024,
    hi: 65535,
};

/// The message for any attempt to translate IPv6.
pub(super) const NO_IPV6_NAT: &str =
    "IPv6 NAT is not supported; IPv6 stays stateful but untranslated";

const ROLES: &[(&str, Role)] = &[("lan", Role::Lan), ("wan", Role::Wan)];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub role: Role,
    /// Source NAT for IPv4 traffic leaving this interface; only ever set on a
    /// `wan` interface.
    pub nat: Option<Nat>,
    /// Where allocated source ports / ICMP ids come from when the original
    /// is taken; [`DEFAULT_NAT_PORTS`] unless the file says otherwise. `lo`
    /// is at least 1.
    pub nat_ports: PortRange,
}

/// Source NAT on an interface (IPv4 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Translate to the interface's current IPv4 address.
    Masquerade,
    /// Translate to this fixed address.
    Snat(Ipv4Addr),
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nat::Masquerade => f.write_str("masquerade"),
            Nat::Snat(a) => write!(f, "snat {a}"),
        }
    }
}

/// The `[[interface]]` blocks, at least one, no name twice; with the line
/// each name is on, for the rules that name them.
pub(super) fn validate_interfaces(
    doc: &Doc,
    raws: &[Spanned<RawInterface>],
) -> Result<(Vec<InterfaceConfig>, HashMap<String, usize>), ConfigError> {
    if raws.is_empty() {
        return Err(doc.invalid(1, "interface", "at least one [[interface]] is required"));
    }
    let mut interfaces: Vec<InterfaceConfig> = Vec::new();
    let mut iface_lines: HashMap<String, usize> = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        let prefix = format!("interface[{}]", i + 1);
        let line = doc.line(raw.span().start);
        let raw = raw.get_ref();
        let missing = |k: &str| doc.invalid(line, format!("{prefix}.{k}"), "missing (required)");
        let key = format!("{prefix}.name");
        let name_v = raw.name.as_ref().ok_or_else(|| missing("name"))?;
        let name = doc.string(name_v, &key)?;
        if let Some(problem) = interface_name_problem(name) {
            return Err(doc.at(name_v, &key, problem));
        }
        let name_line = doc.line(name_v.span().start);
        if let Some(first) = iface_lines.insert(name.to_string(), name_line) {
            return Err(doc.at(
                name_v,
                &key,
                format!("duplicate interface {name:?} (first at line {first})"),
            ));
        }
        let role_v = raw.role.as_ref().ok_or_else(|| missing("role"))?;
        let role = doc.keyword(role_v, &format!("{prefix}.role"), ROLES)?;
        let (nat, nat_ports) = validate_interface_nat(doc, raw, &prefix, name, role)?;
        interfaces.push(InterfaceConfig {
            name: name.to_string(),
            role,
            nat,
            nat_ports,
        });
    }
    Ok((interfaces, iface_lines))
}

/// `masquerade`, `snat` and `nat_ports` of one `[[interface]]` whose name and
/// role are already checked. `masquerade = false` is accepted anywhere and
/// means no NAT, the same as leaving it out.
fn validate_interface_nat(
    doc: &Doc,
    raw: &RawInterface,
    prefix: &str,
    name: &str,
    role: Role,
) -> Result<(Option<Nat>, PortRange), ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let masquerade = match &raw.masquerade {
        Some(v) => doc.boolean(v, &key("masquerade"))?.then_some(v),
        None => None,
    };
    let snat = match &raw.snat {
        Some(v) => {
            let addr = nat_address(doc.string(v, &key("snat"))?)
                .map_err(|m| doc.at(v, &key("snat"), m))?;
            Some((addr, v))
        }
        None => None,
    };
    let nat = match (masquerade, snat) {
        (Some(m), Some((_, v))) => {
            return Err(doc.at(
                v,
                &key("snat"),
                format!(
                    "cannot be combined with masquerade = true (line {}); choose one",
                    doc.line(m.span().start)
                ),
            ));
        }
        (Some(v), None) => Some((Nat::Masquerade, v, "masquerade")),
        (None, Some((addr, v))) => Some((Nat::Snat(addr), v, "snat")),
        (None, None) => None,
    };
    if let Some((_, v, k)) = nat
        && role != Role::Wan
    {
        return Err(doc.at(
            v,
            &key(k),
            format!(
                "NAT is only done on wan interfaces, and {name:?} has role {}",
                name_of(ROLES, role)
            ),
        ));
    }
    let nat_ports = match &raw.nat_ports {
        None => DEFAULT_NAT_PORTS,
        Some(v) => {
            let k = key("nat_ports");
            let range = doc.port_range(v, &k)?;
            if range.lo == 0 {
                return Err(doc.at(
                    v,
                    &k,
                    format!(
                        "{range} includes port 0, which cannot be allocated (start at 1 or above)"
                    ),
                ));
            }
            if nat.is_none() {
                log::warn!(
                    "{}:{}: {k}: has no effect without masquerade or snat",
                    doc.origin,
                    doc.line(v.span().start),
                );
            }
            range
        }
    };
    Ok((nat.map(|(n, _, _)| n), nat_ports))
}

/// An address to translate to: IPv4, and a host rather than a special
/// address that could never answer.
fn nat_address(s: &str) -> Result<Ipv4Addr, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => usable_host(a),
        Ok(IpAddr::V6(_)) => Err(format!("{s}: {NO_IPV6_NAT}")),
        Err(_) => Err(format!("{s:?} is not an IPv4 address")),
    }
}

pub(super) fn usable_host(a: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let kind = if a.is_unspecified() {
        "the unspecified"
    } else if a.is_broadcast() {
        "the broadcast"
    } else if a.is_multicast() {
        "a multicast"
    } else if a.is_loopback() {
        "a loopback"
    } else {
        return Ok(a);
    };
    Err(format!("{a} is {kind} address, not a host to translate to"))
}

#[cfg(test)]
mod tests;
