//! A resolved filter rule as the config's `[[rule]]` keys: the conditions
//! a rule met on its way through user chains, intersected per key.
//!
//! [`rule_keys`] gives each resolved filter rule's `[[rule]]` keys of
//! [`crate::config`] ([`RuleKeys`]), which [`rule_block`] writes as TOML:
//! `! -p` → `not_proto`, `! -s` → `not_src`,
//! `-m iprange` → `src_range`/`dst_range`, `-i eth+` → `iif = "eth+"`,
//! multiport → `dport = [80, 443]`, `--icmp-type` → `icmp_type`,
//! `--tcp-flags`/`--syn` → `tcp_flags`/`not_tcp_flags`, `-m limit` →
//! `limit`/`limit_burst`, REJECT → `reject_with`, LOG → `log_prefix`,
//! `log_level`. A config's `iptables = [...]` lines go through the same
//! parser, resolution and [`rule_keys`] ([`config_lines`](super::config_lines)),
//! and the config checks their keys as it checks a `[[rule]]`'s, so the two
//! front ends cannot drift apart.

use std::fmt::{self, Write as _};

use firewall_common::{CtState, RuleAction};

use super::{FlatCond, FlatRule, Hook, Target, Test, Unexpressible};
use crate::syntax::{
    ALL_STATES, AddrRange, Cidr, Family, IcmpType, Iface, Limit, MAX_PORT_SLOTS, Match, PROTOCOLS,
    PortRange, TcpFlags, TcpFlagsMatch, ctstate_name, flag_names, port_slots, proto_name,
    state_bits, states_of,
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

/// A resolved filter rule as the `[[rule]]` keys it stands for: what
/// [`rule_block`] writes as TOML, and what a config's `iptables` lines
/// become without being written. A key that is not given is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleKeys {
    /// `INPUT`, `FORWARD` or `OUTPUT`.
    pub hook: Hook,
    /// At most one protocol in `any_of`: conditions met twice intersect.
    pub proto: Match<u8>,
    pub src: Match<Cidr>,
    pub dst: Match<Cidr>,
    pub src_range: Match<AddrRange>,
    pub dst_range: Match<AddrRange>,
    pub sport: Match<PortRange>,
    pub dport: Match<PortRange>,
    pub iif: Match<Iface>,
    pub oif: Match<Iface>,
    /// Of the states rules see; empty when the rule allows all of them.
    pub ctstate: Vec<CtState>,
    pub icmp_type: Match<IcmpType>,
    pub tcp_flags: Option<TcpFlagsMatch>,
    pub limit: Option<Limit>,
    pub action: RuleAction,
    /// As written, or canonical when the family tells which.
    pub reject_with: Option<String>,
    pub log_prefix: Option<String>,
    pub log_level: Option<u8>,
    pub comment: Option<String>,
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
    rule_keys(r, problems).map(|k| k.to_toml(family))
}

/// [`rule_block`]'s keys, typed. `r` is a rule of the filter table.
pub fn rule_keys(r: &FlatRule, problems: &mut Vec<Unexpressible>) -> Result<RuleKeys, Omitted> {
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

    let mut ports = |pos: &Pos<Vec<PortRange>>, neg: &Neg<Vec<PortRange>>, name: &str| {
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
        let mut m = Match::default();
        if let Some((l, lines)) = pos {
            too_many(l, lines, "the intersected");
            m.any_of = l.clone();
        }
        if !neg.is_empty() {
            m.none_of = neg.iter().flat_map(|(l, _)| l.iter().copied()).collect();
            too_many(&m.none_of, &lines_of(neg), "the negated");
        }
        m
    };
    let sport = ports(&keys.sport, &keys.not_sport, "sport");
    let dport = ports(&keys.dport, &keys.not_dport, "dport");

    // A rule holds one TCP flags test; intersecting positive ones keeps
    // it one, but "not these and not those" or "these and not those" would
    // take two.
    let tcp_flags = match (&keys.tcp_flags, keys.not_tcp_flags.as_slice()) {
        (Some((f, _)), []) => Some(TcpFlagsMatch {
            flags: *f,
            negated: false,
        }),
        (None, [(f, _)]) => Some(TcpFlagsMatch {
            flags: *f,
            negated: true,
        }),
        (None, []) => None,
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
            None
        }
    };
    let limit = match keys.limits.as_slice() {
        [] => None,
        [(l, _)] => Some(*l),
        several => {
            for (_, l) in several {
                problem(
                    *l,
                    "several -m limit conditions after inlining (a rule holds one rate)".into(),
                );
            }
            None
        }
    };
    let (action, reject_with, log_prefix, log_level) = match &r.action {
        Target::Accept => (RuleAction::Accept, None, None, None),
        Target::Drop => (RuleAction::Drop, None, None, None),
        Target::Reject { with } => (RuleAction::Reject, with.clone(), None, None),
        Target::Log { prefix, level } => (RuleAction::Log, None, prefix.clone(), *level),
        other => unreachable!("{other} in the filter table after resolution"),
    };
    Ok(RuleKeys {
        hook: r.hook,
        proto: pos_neg(keys.proto, keys.not_proto),
        src: pos_neg(keys.src, keys.not_src),
        dst: pos_neg(keys.dst, keys.not_dst),
        src_range: pos_neg(keys.src_range, keys.not_src_range),
        dst_range: pos_neg(keys.dst_range, keys.not_dst_range),
        sport,
        dport,
        iif: pos_neg(keys.iif, keys.not_iif),
        oif: pos_neg(keys.oif, keys.not_oif),
        ctstate: match states {
            Some(s) if s != RULE_STATES => states_of(s),
            _ => Vec::new(),
        },
        icmp_type: pos_neg(keys.icmp, keys.not_icmp),
        tcp_flags,
        limit,
        action,
        reject_with,
        log_prefix,
        log_level,
        comment: r.comment.clone(),
    })
}

/// A merged key as the config's plain key and its `not_` form.
fn pos_neg<T>(pos: Pos<T>, neg: Neg<T>) -> Match<T> {
    Match {
        any_of: pos.into_iter().map(|(v, _)| v).collect(),
        none_of: neg.into_iter().map(|(v, _)| v).collect(),
    }
}

impl RuleKeys {
    /// The `[[rule]]` block's keys as TOML, in the order the config
    /// documents them.
    pub fn to_toml(&self, family: Option<Family>) -> String {
        let Self {
            hook,
            proto,
            src,
            dst,
            src_range,
            dst_range,
            sport,
            dport,
            iif,
            oif,
            ctstate,
            icmp_type,
            tcp_flags,
            limit,
            action,
            reject_with,
            log_prefix,
            log_level,
            comment,
        } = self;
        let mut block = String::new();
        kv(
            &mut block,
            "chain",
            toml_str(&hook.name().to_ascii_lowercase()),
        );
        if let Some(f) = family {
            kv(&mut block, "family", toml_str(&f.to_string()));
        }
        let cidr = |c: &Cidr| toml_str(&c.to_string());
        let range = |a: &AddrRange| toml_str(&a.to_string());
        let iface = |i: &Iface| toml_str(&i.to_string());
        write_match(&mut block, "proto", proto, |p| toml_proto(*p));
        write_match(&mut block, "src", src, cidr);
        write_match(&mut block, "src_range", src_range, range);
        write_match(&mut block, "dst", dst, cidr);
        write_match(&mut block, "dst_range", dst_range, range);
        for (name, m) in [("sport", sport), ("dport", dport)] {
            if !m.any_of.is_empty() {
                kv(&mut block, name, toml_ports(&m.any_of));
            }
            if !m.none_of.is_empty() {
                kv(&mut block, &format!("not_{name}"), toml_ports(&m.none_of));
            }
        }
        write_match(&mut block, "iif", iif, iface);
        write_match(&mut block, "oif", oif, iface);
        if !ctstate.is_empty() {
            let names: Vec<String> = ctstate.iter().map(|&s| toml_str(ctstate_name(s))).collect();
            kv(&mut block, "ctstate", format!("[{}]", names.join(", ")));
        }
        write_match(&mut block, "icmp_type", icmp_type, toml_icmp);
        if let Some(t) = tcp_flags {
            let name = if t.negated {
                "not_tcp_flags"
            } else {
                "tcp_flags"
            };
            kv(&mut block, name, toml_tcp_flags(&t.flags));
        }
        if let Some(l) = limit {
            kv(
                &mut block,
                "limit",
                toml_str(&format!("{}/{}", l.count, l.per.name())),
            );
            kv(&mut block, "limit_burst", l.burst.to_string());
        }
        let action_name = match action {
            RuleAction::Accept => "accept",
            RuleAction::Drop => "drop",
            RuleAction::Reject => "reject",
            RuleAction::Log => "log",
        };
        kv(&mut block, "action", toml_str(action_name));
        if let Some(w) = reject_with {
            kv(&mut block, "reject_with", toml_str(w));
        }
        if let Some(p) = log_prefix {
            kv(&mut block, "log_prefix", toml_str(p));
        }
        if let Some(l) = log_level {
            kv(&mut block, "log_level", l.to_string());
        }
        if let Some(c) = comment {
            kv(&mut block, "comment", toml_str(c));
        }
        block
    }
}

/// A key's values, and its `not_` form's, each one value or a list.
fn write_match<T>(out: &mut String, name: &str, m: &Match<T>, f: impl Fn(&T) -> String) {
    if !m.any_of.is_empty() {
        kv(out, name, toml_list(&m.any_of, &f));
    }
    if !m.none_of.is_empty() {
        kv(out, &format!("not_{name}"), toml_list(&m.none_of, &f));
    }
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
