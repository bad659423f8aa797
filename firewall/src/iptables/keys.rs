//! A resolved filter rule as the config's `[[rule]]` keys: the conditions
//! a rule met on its way through user chains, intersected per key.
//!
//! [`rule_block`] writes each resolved filter rule with the `[[rule]]`
//! keys of [`crate::config`]: `! -p` → `not_proto`, `! -s` → `not_src`,
//! `-m iprange` → `src_range`/`dst_range`, `-i eth+` → `iif = "eth+"`,
//! multiport → `dport = [80, 443]`, `--icmp-type` → `icmp_type`,
//! `--tcp-flags`/`--syn` → `tcp_flags`/`not_tcp_flags`, `-m limit` →
//! `limit`/`limit_burst`, REJECT → `reject_with`, LOG → `log_prefix`,
//! `log_level`. A config's `iptables = [...]` lines go through the same
//! parser, resolution and [`rule_block`] ([`config_lines`]), so the two
//! front ends cannot drift apart.

use std::fmt::{self, Write as _};

use firewall_common::CtState;

use super::{FlatCond, FlatRule, Hook, Target, Test, Unexpressible};
use crate::syntax::{
    ALL_STATES, AddrRange, Cidr, Family, IcmpType, Iface, Limit, MAX_PORT_SLOTS, PROTOCOLS,
    PortRange, TcpFlags, ctstate_name, flag_names, port_slots, proto_name, state_bits, states_of,
};

pub(super) const EST_REL: u8 = 1 << CtState::Established as u8 | 1 << CtState::Related as u8;
/// The states of packets the config's rules see.
pub(super) const RULE_STATES: u8 = ALL_STATES & !EST_REL;

/// Why a resolved filter rule gets no `[[rule]]` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Omitted {
    /// No `-j`: the rule only counts packets.
    NoTarget,
    /// Its conditions exclude each other (after inlining).
    NeverHolds(String),
    /// An ACCEPT on `lo`, which is never filtered.
    LoopbackAccept,
    /// It matches only ESTABLISHED/RELATED packets, which are accepted
    /// before the rules.
    EstablishedOnly,
}

impl fmt::Display for Omitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Omitted::NoTarget => f.write_str("no target, it only counts packets"),
            Omitted::NeverHolds(why) => write!(f, "its conditions never hold together ({why})"),
            Omitted::LoopbackAccept => f.write_str("loopback traffic is never filtered"),
            Omitted::EstablishedOnly => f.write_str(
                "it only matches ESTABLISHED/RELATED packets, which the firewall accepts \
                 before any rule",
            ),
        }
    }
}

/// The keys of the `[[rule]]` block (without the header) that a resolved
/// filter rule stands for, or why it has none. `family` is written when
/// given (an imported dump is of one family); a config's `iptables` line
/// leaves it to the addresses, as a `[[rule]]` does. What the config cannot
/// express goes to `problems`, one entry per line of the dump; the block is
/// still written, as a draft.
pub fn rule_block(
    r: &FlatRule,
    family: Option<Family>,
    problems: &mut Vec<Unexpressible>,
) -> Result<String, Omitted> {
    if r.action == Target::Continue {
        return Err(Omitted::NoTarget);
    }
    let keys = Keys::build(&r.conds).map_err(Omitted::NeverHolds)?;
    let mut problem = |line: usize, what: String| {
        problems.push(Unexpressible {
            line: Some(line),
            what,
        });
    };
    let on_lo = |s: &Option<(Iface, Vec<usize>)>| s.as_ref().is_some_and(|(i, _)| i.is_loopback());
    if on_lo(&keys.iif) || on_lo(&keys.oif) {
        if r.action == Target::Accept {
            return Err(Omitted::LoopbackAccept);
        }
        problem(
            r.line,
            format!("{} on lo: loopback traffic is never filtered", r.action),
        );
    }
    let states = keys.states.as_ref().map(|(s, _)| s & RULE_STATES);
    if states == Some(0) {
        return Err(Omitted::EstablishedOnly);
    }
    if r.hook == Hook::Output && matches!(r.action, Target::Reject { .. }) {
        problem(
            r.line,
            "REJECT in OUTPUT: the datapath answers only packets arriving on an interface (use DROP)"
                .to_string(),
        );
    }

    let mut block = String::new();
    kv(
        &mut block,
        "chain",
        toml_str(&r.hook.name().to_ascii_lowercase()),
    );
    if let Some(f) = family {
        kv(&mut block, "family", toml_str(&f.to_string()));
    }
    if let Some((p, _)) = &keys.proto {
        kv(&mut block, "proto", toml_proto(*p));
    }
    if !keys.not_proto.is_empty() {
        kv(
            &mut block,
            "not_proto",
            toml_list(&keys.not_proto, |(p, _)| toml_proto(*p)),
        );
    }
    for (name, pos, neg, range, neg_range) in [
        (
            "src",
            &keys.src,
            &keys.not_src,
            &keys.src_range,
            &keys.not_src_range,
        ),
        (
            "dst",
            &keys.dst,
            &keys.not_dst,
            &keys.dst_range,
            &keys.not_dst_range,
        ),
    ] {
        if let Some((c, _)) = pos {
            kv(&mut block, name, toml_str(&c.to_string()));
        }
        if !neg.is_empty() {
            kv(
                &mut block,
                &format!("not_{name}"),
                toml_list(neg, |(c, _)| toml_str(&c.to_string())),
            );
        }
        if let Some((a, _)) = range {
            kv(
                &mut block,
                &format!("{name}_range"),
                toml_str(&a.to_string()),
            );
        }
        if !neg_range.is_empty() {
            kv(
                &mut block,
                &format!("not_{name}_range"),
                toml_list(neg_range, |(a, _)| toml_str(&a.to_string())),
            );
        }
    }
    for (name, pos, neg) in [
        ("sport", &keys.sport, &keys.not_sport),
        ("dport", &keys.dport, &keys.not_dport),
    ] {
        let mut too_many = |list: &[PortRange], lines: &[usize], what: &str| {
            if port_slots(list) > MAX_PORT_SLOTS {
                for &l in lines {
                    problem(
                        l,
                        format!(
                            "{what} ports after inlining ({}), more than the {MAX_PORT_SLOTS} \
                             a {name} list holds",
                            PortList(list)
                        ),
                    );
                }
            }
        };
        if let Some((l, lines)) = pos {
            kv(&mut block, name, toml_ports(l));
            too_many(l, lines, "the intersected");
        }
        if !neg.is_empty() {
            let all: Vec<PortRange> = neg.iter().flat_map(|(l, _)| l.iter().copied()).collect();
            kv(&mut block, &format!("not_{name}"), toml_ports(&all));
            too_many(&all, &lines_of(neg), "the negated");
        }
    }
    for (name, pos, neg) in [
        ("iif", &keys.iif, &keys.not_iif),
        ("oif", &keys.oif, &keys.not_oif),
    ] {
        if let Some((i, _)) = pos {
            kv(&mut block, name, toml_str(&i.to_string()));
        }
        if !neg.is_empty() {
            kv(
                &mut block,
                &format!("not_{name}"),
                toml_list(neg, |(i, _)| toml_str(&i.to_string())),
            );
        }
    }
    if let Some(s) = states
        && s != RULE_STATES
    {
        let names: Vec<String> = states_of(s)
            .into_iter()
            .map(|s| toml_str(ctstate_name(s)))
            .collect();
        kv(&mut block, "ctstate", format!("[{}]", names.join(", ")));
    }
    if let Some((t, _)) = &keys.icmp {
        kv(&mut block, "icmp_type", toml_icmp(t));
    }
    if !keys.not_icmp.is_empty() {
        kv(
            &mut block,
            "not_icmp_type",
            toml_list(&keys.not_icmp, |(t, _)| toml_icmp(t)),
        );
    }
    // A rule holds one TCP flags test; intersecting positive ones keeps
    // it one, but "not these and not those" or "these and not those" would
    // take two.
    match (&keys.tcp_flags, keys.not_tcp_flags.as_slice()) {
        (Some((f, _)), []) => kv(&mut block, "tcp_flags", toml_tcp_flags(f)),
        (None, [(f, _)]) => kv(&mut block, "not_tcp_flags", toml_tcp_flags(f)),
        (None, []) => {}
        (pos, neg) => {
            let mut lines: Vec<usize> = pos.iter().flat_map(|(_, l)| l.clone()).collect();
            lines.extend(lines_of(neg));
            for l in lines {
                problem(
                    l,
                    "several --tcp-flags/--syn conditions, some negated, after inlining (a \
                     rule holds one)"
                        .into(),
                );
            }
        }
    }
    match keys.limits.as_slice() {
        [] => {}
        [(l, _)] => {
            kv(
                &mut block,
                "limit",
                toml_str(&format!("{}/{}", l.count, l.per.name())),
            );
            kv(&mut block, "limit_burst", l.burst.to_string());
        }
        several => {
            for (_, l) in several {
                problem(
                    *l,
                    "several -m limit conditions after inlining (a rule holds one rate)".into(),
                );
            }
        }
    }
    match &r.action {
        Target::Accept => kv(&mut block, "action", toml_str("accept")),
        Target::Drop => kv(&mut block, "action", toml_str("drop")),
        Target::Reject { with } => {
            kv(&mut block, "action", toml_str("reject"));
            if let Some(w) = with {
                kv(&mut block, "reject_with", toml_str(w));
            }
        }
        Target::Log { prefix, level } => {
            kv(&mut block, "action", toml_str("log"));
            if let Some(p) = prefix {
                kv(&mut block, "log_prefix", toml_str(p));
            }
            if let Some(l) = level {
                kv(&mut block, "log_level", l.to_string());
            }
        }
        other => unreachable!("{other} in the filter table after resolution"),
    }
    if let Some(c) = &r.comment {
        kv(&mut block, "comment", toml_str(c));
    }
    Ok(block)
}

type Pos<T> = Option<(T, Vec<usize>)>;
type Neg<T> = Vec<(T, usize)>;

/// A resolved rule's conditions merged per config key, with the lines each
/// came from.
#[derive(Default)]
struct Keys {
    proto: Pos<u8>,
    not_proto: Neg<u8>,
    src: Pos<Cidr>,
    not_src: Neg<Cidr>,
    dst: Pos<Cidr>,
    not_dst: Neg<Cidr>,
    src_range: Pos<AddrRange>,
    not_src_range: Neg<AddrRange>,
    dst_range: Pos<AddrRange>,
    not_dst_range: Neg<AddrRange>,
    iif: Pos<Iface>,
    not_iif: Neg<Iface>,
    oif: Pos<Iface>,
    not_oif: Neg<Iface>,
    sport: Pos<Vec<PortRange>>,
    not_sport: Neg<Vec<PortRange>>,
    dport: Pos<Vec<PortRange>>,
    not_dport: Neg<Vec<PortRange>>,
    /// Allowed states as bits, when any ctstate condition exists.
    states: Pos<u8>,
    icmp: Pos<IcmpType>,
    not_icmp: Neg<IcmpType>,
    tcp_flags: Pos<TcpFlags>,
    not_tcp_flags: Neg<TcpFlags>,
    limits: Neg<Limit>,
}

/// Intersect a positive key with one more condition; `Err` when nothing can
/// satisfy both.
fn meet<T: Clone + fmt::Display>(
    slot: &mut Pos<T>,
    value: &T,
    line: usize,
    f: impl Fn(&T, &T) -> Option<T>,
) -> Result<(), String> {
    match slot {
        None => {
            *slot = Some((value.clone(), vec![line]));
            Ok(())
        }
        Some((old, lines)) => match f(old, value) {
            Some(v) => {
                *old = v;
                lines.push(line);
                Ok(())
            }
            None => Err(format!("{old} and {value}")),
        },
    }
}

struct PortList<'a>(&'a [PortRange]);

impl fmt::Display for PortList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The ports both lists allow.
fn ports_meet(a: &[PortRange], b: &[PortRange]) -> Option<Vec<PortRange>> {
    let mut out: Vec<PortRange> = Vec::new();
    for x in a {
        for y in b {
            let lo = x.lo.max(y.lo);
            let hi = x.hi.min(y.hi);
            if lo <= hi {
                out.push(PortRange { lo, hi });
            }
        }
    }
    out.sort_by_key(|r| (r.lo, r.hi));
    out.dedup();
    (!out.is_empty()).then_some(out)
}

impl Keys {
    fn build(conds: &[FlatCond]) -> Result<Keys, String> {
        let mut k = Keys::default();
        for fc in conds {
            let (c, line) = (&fc.cond, fc.line);
            if c.negated {
                match &c.test {
                    Test::Proto(p) => k.not_proto.push((*p, line)),
                    Test::Src(a) => k.not_src.push((*a, line)),
                    Test::Dst(a) => k.not_dst.push((*a, line)),
                    Test::SrcRange(a) => k.not_src_range.push((*a, line)),
                    Test::DstRange(a) => k.not_dst_range.push((*a, line)),
                    // Loopback is never filtered, so every packet the
                    // firewall sees is not on lo.
                    Test::InIface(i) | Test::OutIface(i) if i.is_loopback() => {}
                    Test::InIface(i) => k.not_iif.push((i.clone(), line)),
                    Test::OutIface(i) => k.not_oif.push((i.clone(), line)),
                    Test::Sport(l) => k.not_sport.push((l.clone(), line)),
                    Test::Dport(l) => k.not_dport.push((l.clone(), line)),
                    Test::CtState(s) => {
                        let allowed = k.states.as_ref().map_or(ALL_STATES, |(s, _)| *s);
                        let mut lines = k.states.take().map(|(_, l)| l).unwrap_or_default();
                        lines.push(line);
                        k.states = Some((allowed & !state_bits(s), lines));
                    }
                    Test::Icmp(IcmpType::Any) => return Err("! --icmp-type any".into()),
                    Test::Icmp(t) | Test::Icmpv6(t) => k.not_icmp.push((*t, line)),
                    // Flags set outside the mask never match, so the
                    // negation always holds.
                    Test::TcpFlags(f) if f.set & !f.mask != 0 => {}
                    Test::TcpFlags(f) => k.not_tcp_flags.push((*f, line)),
                    Test::Limit(_) => unreachable!("a limit cannot be negated"),
                }
                continue;
            }
            match &c.test {
                Test::Proto(p) => meet(&mut k.proto, p, line, |a, b| (a == b).then_some(*a))?,
                Test::Src(a) => meet(&mut k.src, a, line, Cidr::meet)?,
                Test::Dst(a) => meet(&mut k.dst, a, line, Cidr::meet)?,
                Test::SrcRange(a) => meet(&mut k.src_range, a, line, AddrRange::meet)?,
                Test::DstRange(a) => meet(&mut k.dst_range, a, line, AddrRange::meet)?,
                Test::InIface(i) => meet(&mut k.iif, i, line, Iface::meet)?,
                Test::OutIface(i) => meet(&mut k.oif, i, line, Iface::meet)?,
                Test::Sport(l) | Test::Dport(l) => {
                    let slot = if matches!(c.test, Test::Sport(_)) {
                        &mut k.sport
                    } else {
                        &mut k.dport
                    };
                    match slot {
                        None => *slot = Some((l.clone(), vec![line])),
                        Some((old, lines)) => match ports_meet(old, l) {
                            Some(v) => {
                                *old = v;
                                lines.push(line);
                            }
                            None => {
                                return Err(format!("ports {} and {}", PortList(old), PortList(l)));
                            }
                        },
                    }
                }
                Test::CtState(s) => {
                    let allowed = k.states.as_ref().map_or(ALL_STATES, |(s, _)| *s);
                    let mut lines = k.states.take().map(|(_, l)| l).unwrap_or_default();
                    lines.push(line);
                    k.states = Some((allowed & state_bits(s), lines));
                }
                // -p icmp already says as much.
                Test::Icmp(IcmpType::Any) => {}
                Test::Icmp(t) | Test::Icmpv6(t) => meet(&mut k.icmp, t, line, IcmpType::meet)?,
                Test::TcpFlags(f) if f.set & !f.mask != 0 => {
                    return Err(format!("--tcp-flags {f} sets flags outside its mask"));
                }
                Test::TcpFlags(f) => meet(&mut k.tcp_flags, f, line, TcpFlags::meet)?,
                Test::Limit(l) => k.limits.push((*l, line)),
            }
        }
        if let Some((0, _)) = k.states {
            return Err("the states exclude each other".into());
        }
        Ok(k)
    }
}

fn lines_of<T>(list: &[(T, usize)]) -> Vec<usize> {
    list.iter().map(|(_, l)| *l).collect()
}

pub(super) fn kv(out: &mut String, key: &str, value: String) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML basic string.
pub(super) fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\t' => out += "\\t",
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    match items {
        [one] => f(one),
        _ => format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", ")),
    }
}

/// The config reads a protocol it names as a string, any other as a number.
pub(super) fn toml_proto(p: u8) -> String {
    if PROTOCOLS.iter().any(|(_, n)| *n == p) {
        toml_str(&proto_name(p))
    } else {
        p.to_string()
    }
}

pub(super) fn toml_ports(list: &[PortRange]) -> String {
    toml_list(list, |p| {
        if p.lo == p.hi {
            p.lo.to_string()
        } else {
            toml_str(&p.to_string())
        }
    })
}

fn toml_icmp(t: &IcmpType) -> String {
    match t {
        IcmpType::Type(n) => n.to_string(),
        other => toml_str(&other.to_string()),
    }
}

fn toml_tcp_flags(f: &TcpFlags) -> String {
    let names = |bits| {
        flag_names(bits)
            .iter()
            .map(|n| toml_str(&n.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{{ mask = [{}], set = [{}] }}", names(f.mask), names(f.set))
}
