//! The match keys of a `[[rule]]`: protocol, family and addresses, ports,
//! ICMP types, TCP flags, rate and conntrack states. Each reader takes its
//! keys from the block; the checks that hold for any rule, however it was
//! written, are the plain functions at the end, which an `iptables` line's
//! rule passes as well.

use firewall_common::{CtState, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use toml::{Spanned, Value};

use super::{Block, DEFAULT_LIMIT_BURST, FAMILIES, MIN_LIMIT_INTERVAL_NS};
use crate::{
    config::{ConfigError, doc::Doc, raw::Field},
    syntax::{
        AddrRange, CTSTATES, Cidr, Family, HostBits, IcmpType, Limit, MAX_LIMIT_BURST,
        MAX_PORT_SLOTS, Match, PROTOCOLS, PortRange, RateUnit, SYN_ONLY, TCP_FLAG_NAMES, TcpFlags,
        TcpFlagsMatch, ctstate_name, flag_bits, flag_names, parse_addr_range, parse_icmp_type,
        parse_rate, port_slots, proto_by_name, proto_name,
    },
};

/// A rule's addresses, and the family they make it.
pub(in crate::config) struct Addresses {
    pub family: Option<Family>,
    pub src: Match<Cidr>,
    pub dst: Match<Cidr>,
    pub src_range: Match<AddrRange>,
    pub dst_range: Match<AddrRange>,
}

impl Block<'_> {
    /// `proto` and `not_proto`.
    pub(super) fn protocols(&self) -> Result<Match<u8>, ConfigError> {
        let raw = self.raw;
        self.matched(&raw.proto, &raw.not_proto, "proto", |v, k| {
            parse_proto_value(self.doc, v, k)
        })
    }

    /// `family` and the address keys, which must agree on it.
    pub(super) fn addresses(&self) -> Result<Addresses, ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let mut family = FamilyCheck::default();
        if let Some(v) = &raw.family {
            family.family = Some(doc.keyword(v, &self.key("family"), FAMILIES)?);
        }
        let mut cidrs = |pos: &Field, neg: &Field, name: &str| {
            self.matched(pos, neg, name, |v, k| {
                let c = Cidr::parse(doc.string(v, k)?, HostBits::Refused)
                    .map_err(|m| doc.at(v, k, m))?;
                family
                    .note(k, c.family(), c.to_string())
                    .map_err(|m| doc.at(v, k, m))?;
                Ok(c)
            })
        };
        let src = cidrs(&raw.src, &raw.not_src, "src")?;
        let dst = cidrs(&raw.dst, &raw.not_dst, "dst")?;
        let mut ranges = |pos: &Field, neg: &Field, name: &str| {
            self.matched(pos, neg, name, |v, k| {
                let s = doc.string(v, k)?;
                let r = parse_addr_range(s).map_err(|m| doc.at(v, k, format!("{s:?}: {m}")))?;
                family
                    .note(k, r.family(), r.to_string())
                    .map_err(|m| doc.at(v, k, m))?;
                Ok(r)
            })
        };
        let src_range = ranges(&raw.src_range, &raw.not_src_range, "src_range")?;
        let dst_range = ranges(&raw.dst_range, &raw.not_dst_range, "dst_range")?;
        Ok(Addresses {
            family: family.family,
            src,
            dst,
            src_range,
            dst_range,
        })
    }

    /// ICMP and ICMPv6 exist in one family each.
    pub(super) fn check_protocol_families(
        &self,
        proto: &Match<u8>,
        family: Option<Family>,
    ) -> Result<(), ConfigError> {
        let raw = self.raw;
        for (list, k, field) in [
            (&proto.any_of, "proto", &raw.proto),
            (&proto.none_of, "not_proto", &raw.not_proto),
        ] {
            for &p in list {
                if let Some(problem) = protocol_family_problem(p, family) {
                    let v = field.as_ref().expect("a listed protocol has its key");
                    return Err(self.doc.at(v, &self.key(k), problem));
                }
            }
        }
        Ok(())
    }

    /// `sport`/`dport` (`name`) and its `not_` form.
    pub(super) fn ports(
        &self,
        proto: &Match<u8>,
        pos: &Field,
        neg: &Field,
        name: &str,
    ) -> Result<Match<PortRange>, ConfigError> {
        let doc = self.doc;
        let not_name = format!("not_{name}");
        if let Some((v, n)) = first_given(&[(pos, name), (neg, &not_name)])
            && let Some(problem) = ports_problem(proto)
        {
            return Err(doc.at(v, &self.key(n), problem));
        }
        let m = self.matched(pos, neg, name, |v, k| doc.port_range(v, k))?;
        for (list, field, k) in [(&m.any_of, pos, name), (&m.none_of, neg, &not_name)] {
            if let Some(problem) = port_slots_problem(list) {
                let v = field.as_ref().expect("a non-empty list has its key");
                return Err(doc.at(v, &self.key(k), problem));
            }
        }
        Ok(m)
    }

    /// `icmp_type` and `not_icmp_type`, read with the names of the rule's
    /// one ICMP protocol.
    pub(super) fn icmp_types(
        &self,
        only_proto: Option<u8>,
    ) -> Result<Match<IcmpType>, ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let Some((v, n)) = first_given(&[
            (&raw.icmp_type, "icmp_type"),
            (&raw.not_icmp_type, "not_icmp_type"),
        ]) else {
            return Ok(Match::default());
        };
        let v6 = icmp_v6(only_proto).map_err(|m| doc.at(v, &self.key(n), m))?;
        let m = self.matched(
            &raw.icmp_type,
            &raw.not_icmp_type,
            "icmp_type",
            |v, k| match v.get_ref() {
                Value::Integer(_) => Ok(IcmpType::Type(doc.ranged(v, k, 0, 255)? as u8)),
                Value::String(s) => parse_icmp_type(s, v6).map_err(|m| doc.at(v, k, m)),
                other => Err(doc.at(
                    v,
                    k,
                    format!(
                        "expected a type number, \"TYPE/CODE\" or a name, found {}",
                        other.type_str()
                    ),
                )),
            },
        )?;
        if let Some(problem) = icmp_types_problem(&m) {
            let v = raw.not_icmp_type.as_ref().expect("none_of has its key");
            return Err(doc.at(v, &self.key("not_icmp_type"), problem));
        }
        Ok(m)
    }

    /// `tcp_flags`, `not_tcp_flags` or `syn`: one flags test at most.
    pub(super) fn tcp_flags(
        &self,
        only_proto: Option<u8>,
    ) -> Result<Option<TcpFlagsMatch>, ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let given: Vec<(&Spanned<Value>, &str)> = [
            (&raw.tcp_flags, "tcp_flags"),
            (&raw.not_tcp_flags, "not_tcp_flags"),
            (&raw.syn, "syn"),
        ]
        .into_iter()
        .filter_map(|(f, n)| f.as_ref().map(|v| (v, n)))
        .collect();
        Ok(match given.as_slice() {
            [] => None,
            [(v, n), ..] if only_proto != Some(IPPROTO_TCP) => {
                return Err(doc.at(v, &self.key(n), "needs proto tcp"));
            }
            [_, (v, n), ..] => {
                return Err(doc.at(
                    v,
                    &self.key(n),
                    "only one of tcp_flags, not_tcp_flags and syn (a rule holds one flags test)",
                ));
            }
            [(v, n)] => Some(match *n {
                "syn" => TcpFlagsMatch {
                    flags: SYN_ONLY,
                    negated: !doc.boolean(v, &self.key(n))?,
                },
                _ => TcpFlagsMatch {
                    flags: parse_tcp_flags_value(doc, v, &self.key(n))?,
                    negated: *n == "not_tcp_flags",
                },
            }),
        })
    }

    /// `limit` and `limit_burst`.
    pub(super) fn limit(&self) -> Result<Option<Limit>, ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let Some(v) = &raw.limit else {
            if let Some(v) = &raw.limit_burst {
                return Err(doc.at(v, &self.key("limit_burst"), "only with limit"));
            }
            return Ok(None);
        };
        let k = self.key("limit");
        let (count, per) = match v.get_ref() {
            Value::Integer(_) => (
                doc.ranged(v, &k, 1, u32::MAX.into())? as u32,
                RateUnit::Second,
            ),
            Value::String(s) => parse_rate(s).map_err(|m| doc.at(v, &k, format!("{s:?}: {m}")))?,
            other => {
                return Err(doc.at(
                    v,
                    &k,
                    format!(
                        "expected \"N/second\" (or minute, hour, day), found {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let burst = match &raw.limit_burst {
            Some(b) => doc.ranged(b, &self.key("limit_burst"), 1, MAX_LIMIT_BURST.into())? as u32,
            None => DEFAULT_LIMIT_BURST,
        };
        let l = Limit { count, per, burst };
        if let Some(problem) = rate_problem(&l) {
            return Err(doc.at(v, &k, problem));
        }
        Ok(Some(l))
    }

    /// `ctstate`: a list of state names.
    pub(super) fn ctstates(&self) -> Result<Vec<CtState>, ConfigError> {
        let doc = self.doc;
        let Some(v) = &self.raw.ctstate else {
            return Ok(Vec::new());
        };
        let k = self.key("ctstate");
        let Value::Array(items) = v.get_ref() else {
            return Err(doc.at(
                v,
                &k,
                format!(
                    "expected a list of states, found {}",
                    v.get_ref().type_str()
                ),
            ));
        };
        if items.is_empty() {
            return Err(doc.at(v, &k, "empty list would match nothing"));
        }
        let mut states = Vec::new();
        for item in items {
            // Array elements carry no spans of their own; the list's
            // line is close enough.
            let item = Spanned::new(v.span(), item.clone());
            states.push(doc.keyword(&item, &k, CTSTATES)?);
        }
        warn_unseen_states(doc, doc.line(v.span().start), &k, &states);
        Ok(states)
    }

    /// A plain key and its `not_` form, each a value or a list, read with
    /// `one`, which gets the value and the key's full name.
    pub(super) fn matched<T>(
        &self,
        pos: &Field,
        neg: &Field,
        name: &str,
        mut one: impl FnMut(&Spanned<Value>, &str) -> Result<T, ConfigError>,
    ) -> Result<Match<T>, ConfigError> {
        let mut m = Match::default();
        for (field, list, k) in [
            (pos, &mut m.any_of, self.key(name)),
            (neg, &mut m.none_of, self.key(&format!("not_{name}"))),
        ] {
            if let Some(v) = field {
                for item in values(self.doc, v, &k)? {
                    list.push(one(&item, &k)?);
                }
            }
        }
        Ok(m)
    }
}

/// The values of a key that takes one value or a list. Array elements carry
/// no spans of their own, so each gets the list's (its line is close
/// enough).
fn values(doc: &Doc, v: &Spanned<Value>, key: &str) -> Result<Vec<Spanned<Value>>, ConfigError> {
    match v.get_ref() {
        Value::Array(items) if items.is_empty() => Err(doc.at(
            v,
            key,
            "empty list (leave the key out to put no condition on this field)",
        )),
        Value::Array(items) => Ok(items
            .iter()
            .map(|item| Spanned::new(v.span(), item.clone()))
            .collect()),
        _ => Ok(vec![v.clone()]),
    }
}

/// The first of `fields` that is given, with its name.
fn first_given<'f>(fields: &[(&'f Field, &'f str)]) -> Option<(&'f Spanned<Value>, &'f str)> {
    fields.iter().find_map(|(f, n)| f.as_ref().map(|v| (v, *n)))
}

fn parse_proto_value(doc: &Doc, v: &Spanned<Value>, key: &str) -> Result<u8, ConfigError> {
    match v.get_ref() {
        // 0 is the datapath's "any"; accepting it would silently widen the
        // rule.
        Value::Integer(_) => Ok(doc.ranged(v, key, 1, 255)? as u8),
        Value::String(name) => proto_by_name(name).ok_or_else(|| {
            let names: Vec<&str> = PROTOCOLS.iter().map(|(n, _)| *n).collect();
            doc.at(
                v,
                key,
                format!(
                    "unknown protocol {name:?} (expected {} or a number 1-255)",
                    names.join(", ")
                ),
            )
        }),
        other => Err(doc.at(
            v,
            key,
            format!(
                "expected a protocol name or number, found {}",
                other.type_str()
            ),
        )),
    }
}

/// `{ mask = [...], set = [...] }`.
fn parse_tcp_flags_value(
    doc: &Doc,
    v: &Spanned<Value>,
    key: &str,
) -> Result<TcpFlags, ConfigError> {
    let Value::Table(t) = v.get_ref() else {
        return Err(doc.at(
            v,
            key,
            format!(
                "expected {{ mask = [...], set = [...] }}, found {}",
                v.get_ref().type_str()
            ),
        ));
    };
    if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "mask" | "set")) {
        return Err(doc.at(v, key, format!("unknown key {k:?} (expected mask and set)")));
    }
    let names: Vec<String> = TCP_FLAG_NAMES
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let flags = |part: &str| -> Result<u8, ConfigError> {
        let Some(list) = t.get(part) else {
            return Err(doc.at(v, key, format!("{part} is missing (required)")));
        };
        let Value::Array(items) = list else {
            return Err(doc.at(
                v,
                key,
                format!(
                    "{part}: expected a list of flag names, found {}",
                    list.type_str()
                ),
            ));
        };
        let mut bits = 0;
        for item in items {
            let name = item.as_str().unwrap_or_default();
            bits |= match flag_bits(name) {
                Some(b) => b,
                None => {
                    return Err(doc.at(
                        v,
                        key,
                        format!(
                            "{part}: unknown TCP flag {item} (expected {}, or all)",
                            names.join(", ")
                        ),
                    ));
                }
            };
        }
        Ok(bits)
    };
    let flags = TcpFlags {
        mask: flags("mask")?,
        set: flags("set")?,
    };
    if let Some(problem) = tcp_flags_problem(&flags) {
        return Err(doc.at(v, key, problem));
    }
    Ok(flags)
}

// The checks every rule passes, from a `[[rule]]` block or an `iptables`
// line. Each returns the message for the key at fault.

/// The family the address keys make a rule, noted one value at a time.
#[derive(Default)]
pub(in crate::config) struct FamilyCheck {
    pub family: Option<Family>,
    /// The first value that set it, as `key value` (`family` when the
    /// rule names it).
    source: Option<String>,
}

impl FamilyCheck {
    /// A value of `key` (its full name; the message uses its last part) is
    /// `what`, of family `f`.
    pub fn note(&mut self, key: &str, f: Family, what: String) -> Result<(), String> {
        match self.family {
            Some(g) if g != f => {
                let source = self.source.as_deref().unwrap_or("family");
                Err(format!("{what} is {f} but {source} is {g}"))
            }
            Some(_) => Ok(()),
            None => {
                self.family = Some(f);
                self.source = Some(format!("{} {what}", key.rsplit('.').next().unwrap_or(key)));
                Ok(())
            }
        }
    }
}

/// A protocol that exists in one family only, in a rule of the other.
pub(in crate::config) fn protocol_family_problem(p: u8, family: Option<Family>) -> Option<String> {
    let wants = match p {
        IPPROTO_ICMP => Family::V4,
        IPPROTO_ICMPV6 => Family::V6,
        _ => return None,
    };
    match family {
        Some(f) if f != wants => Some(format!(
            "{} only exists in {wants}, but the rule is {f}",
            proto_name(p)
        )),
        _ => None,
    }
}

/// The one protocol every matching packet has, if the rule names one.
pub(in crate::config) fn only_proto(proto: &Match<u8>) -> Option<u8> {
    match proto.any_of.as_slice() {
        [p] => Some(*p),
        _ => None,
    }
}

/// Ports exist only in TCP and UDP.
pub(in crate::config) fn ports_problem(proto: &Match<u8>) -> Option<String> {
    match proto
        .any_of
        .iter()
        .find(|p| !matches!(**p, IPPROTO_TCP | IPPROTO_UDP))
    {
        _ if proto.any_of.is_empty() => Some("ports need proto tcp or udp".into()),
        Some(p) => Some(format!(
            "ports need proto tcp or udp, not {}",
            proto_name(*p)
        )),
        None => None,
    }
}

/// A list holds what multiport holds, so that it imports back.
pub(in crate::config) fn port_slots_problem(list: &[PortRange]) -> Option<String> {
    let slots = port_slots(list);
    (slots > MAX_PORT_SLOTS).then(|| {
        format!(
            "{slots} ports, more than the {MAX_PORT_SLOTS} a list holds (a range counts as 2, as \
             in iptables' multiport)"
        )
    })
}

/// Whether ICMP type names are ICMPv6's: the rule must name one ICMP
/// protocol and no other.
pub(in crate::config) fn icmp_v6(only_proto: Option<u8>) -> Result<bool, &'static str> {
    match only_proto {
        Some(IPPROTO_ICMP) => Ok(false),
        Some(IPPROTO_ICMPV6) => Ok(true),
        _ => Err("needs proto icmp or icmpv6 (alone), whose type names it uses"),
    }
}

/// `not_icmp_type = "any"` excludes every ICMP packet the rule is for.
pub(in crate::config) fn icmp_types_problem(m: &Match<IcmpType>) -> Option<&'static str> {
    m.none_of
        .contains(&IcmpType::Any)
        .then_some("\"any\" would never match")
}

pub(in crate::config) fn tcp_flags_problem(f: &TcpFlags) -> Option<String> {
    if f.mask == 0 {
        return Some("mask is empty, so the test would always hold".into());
    }
    if f.set & !f.mask != 0 {
        return Some(format!(
            "set has {} outside the mask, so the test could never hold",
            flag_names(f.set & !f.mask).join(",").to_ascii_lowercase()
        ));
    }
    None
}

pub(in crate::config) fn rate_problem(l: &Limit) -> Option<String> {
    (l.interval_ns() < MIN_LIMIT_INTERVAL_NS).then(|| {
        format!(
            "{}/{} is faster than 10000/second, the most iptables' limit allows",
            l.count,
            l.per.name()
        )
    })
}

/// Rules never see ESTABLISHED and RELATED packets; a rule for them is
/// harmless but a mistake.
pub(in crate::config) fn warn_unseen_states(doc: &Doc, line: usize, key: &str, states: &[CtState]) {
    if let Some(s) = states
        .iter()
        .find(|s| matches!(s, CtState::Established | CtState::Related))
    {
        log::warn!(
            "{}:{line}: {key}: {} never matches: conntrack passes ESTABLISHED and RELATED \
             packets before the rules are consulted",
            doc.origin,
            ctstate_name(*s)
        );
    }
}
