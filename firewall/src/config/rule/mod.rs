//! `[[rule]]` blocks: the validated rule ([`RuleConfig`]), its summary, and
//! the reading of a block, one concern at a time: `actions` (chain,
//! action and its options), `matches` (protocol, addresses, ports, ICMP
//! types, TCP flags, rate, states) and `ifaces` (interfaces). The checks
//! any rule must pass, however it was written, are plain functions there,
//! so that an `iptables` line's rule is refused with the same words as the
//! `[[rule]]` it stands for.
//!
//! # Rules
//!
//! `[[rule]]` blocks and the `iptables` lines are one ordered list: the
//! blocks first, in file order, then the rules of the `iptables` lines, in
//! the order iptables would have them (`-I` inserts among those lines
//! only). First match wins; LOG rules go on. Only packets that are not
//! ESTABLISHED/RELATED meet them.
//!
//! Every match key takes a value or a list, and has a `not_` form: the
//! plain key holds when the packet's value is one of its values, the
//! `not_` key when it is none of its values, and both may be given. The
//! keys are `proto`, `src`, `dst`, `src_range`, `dst_range`, `sport`,
//! `dport`, `iif`, `oif` and `icmp_type`. `tcp_flags` (or `syn`, or
//! `not_tcp_flags`), `limit`/`limit_burst`, `ctstate` and `family` are
//! single. Iptables' own constraints are kept, so what imports from
//! iptables reads the same here: ports need a tcp or udp `proto`, a port
//! list holds 15 ports (a range counts as two), `icmp_type` needs one
//! `proto` icmp or icmpv6 whose type names it takes, TCP flags and
//! `tcp-reset` need `proto = "tcp"`, `log_prefix` is at most 29 bytes,
//! `limit` at most 10000/second. An address key makes the rule its
//! family's. An `iif` that is not a wildcard must be a configured
//! interface (packets arrive on no other); `oif` may be any interface of
//! the host.
//!
//! `reject_with` takes iptables' names for either family and each maps to
//! an answer for both ([`REJECT_WITH`](crate::syntax::REJECT_WITH)), since a rule without addresses
//! meets both.
//!
//! The `iptables` key holds iptables commands (`-A`, `-I`, `-P`, `-N`) for
//! the filter table, read by [`crate::iptables::config_lines`] exactly as
//! `firewall import` reads a dump. `-P` sets a policy and may not repeat a
//! `[policy]` key. Errors name the entry: `fw.toml:12: iptables[3]:
//! unsupported option --mac-source (match mac)`.
//!
//! Interface names resolve when the ruleset is installed
//! ([`RuleConfig::to_match`]): a `+` wildcard stands for every interface
//! of the network namespace it prefixes (none is fine: the condition then
//! never holds), an exact name must exist.

mod actions;
mod ifaces;
mod matches;

use std::collections::HashMap;

use firewall_common::{Chain, CtState, MAX_RULES, RuleAction};
use toml::Spanned;

pub(super) use self::{
    actions::{chain_action_problem, log_prefix_problem, reject_with_problem, unknown_reject_with},
    ifaces::{iface_problem, iface_warning},
    matches::{
        FamilyCheck, icmp_types_problem, icmp_v6, only_proto, port_slots_problem, ports_problem,
        protocol_family_problem, rate_problem, tcp_flags_problem,
    },
};
use super::{
    ConfigError,
    doc::{Doc, name_of},
    raw::RawRule,
};
use crate::syntax::{
    AddrRange, Cidr, DEFAULT_LOG_LEVEL, Family, IcmpType, Iface, Limit, Match, PortRange, SYN_ONLY,
    TcpFlagsMatch, ctstate_name, flag_names, proto_name,
};

/// `limit_burst` when absent, as iptables' `--limit-burst`.
pub const DEFAULT_LIMIT_BURST: u32 = 5;
/// iptables refuses rates above 10,000 per second (`XT_LIMIT_SCALE`).
const MIN_LIMIT_INTERVAL_NS: u64 = 100_000;

pub(super) const CHAINS: &[(&str, Chain)] = &[
    ("input", Chain::Input),
    ("forward", Chain::Forward),
    ("output", Chain::Output),
];
const ACTIONS: &[(&str, RuleAction)] = &[
    ("accept", RuleAction::Accept),
    ("drop", RuleAction::Drop),
    ("reject", RuleAction::Reject),
    ("log", RuleAction::Log),
];
const FAMILIES: &[(&str, Family)] = &[("ipv4", Family::V4), ("ipv6", Family::V6)];

pub(super) fn chain_name(c: Chain) -> &'static str {
    name_of(CHAINS, c)
}

fn action_name(a: RuleAction) -> &'static str {
    name_of(ACTIONS, a)
}

/// One validated rule, from a `[[rule]]` block or an `iptables` line.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    pub chain: Chain,
    pub action: RuleAction,
    /// Explicit, or inferred from the address keys; `None` matches both
    /// families.
    pub family: Option<Family>,
    /// IP protocol numbers.
    pub proto: Match<u8>,
    pub src: Match<Cidr>,
    pub dst: Match<Cidr>,
    /// `-m iprange`; both ends of one family.
    pub src_range: Match<AddrRange>,
    pub dst_range: Match<AddrRange>,
    /// Only with protocols tcp and udp.
    pub sport: Match<PortRange>,
    pub dport: Match<PortRange>,
    /// Interface names, `wildcard` for a `+` prefix. An exact `iif` names a
    /// configured `[[interface]]`.
    pub iif: Match<Iface>,
    pub oif: Match<Iface>,
    /// Only with protocol icmp or icmpv6 (whose names they were read with).
    pub icmp_type: Match<IcmpType>,
    pub tcp_flags: Option<TcpFlagsMatch>,
    /// `burst` is [`DEFAULT_LIMIT_BURST`] unless `limit_burst` says.
    pub limit: Option<Limit>,
    /// Empty matches any state (an empty list in the file is rejected).
    pub ctstate: Vec<CtState>,
    /// Canonical [`REJECT_WITH`](crate::syntax::REJECT_WITH) name; `None` is icmp-port-unreachable.
    pub reject_with: Option<&'static str>,
    pub log_prefix: Option<String>,
    /// syslog level 0-7.
    pub log_level: u8,
    pub comment: Option<String>,
    /// 1-based line of the `[[rule]]` header, or of the `iptables` line.
    pub line: usize,
    /// 1-based position among all the config's rules.
    pub index: usize,
    /// Kept so that [`RuleConfig::to_match`] can report an unresolvable
    /// interface with the same `file:line: key:` prefix as parse errors.
    pub(in crate::config) origin: String,
    /// `rule[N]` or `iptables[N]`.
    pub(in crate::config) key: String,
    /// Lines of `iif`, `not_iif`, `oif`, `not_oif`.
    pub(in crate::config) iface_lines: [usize; 4],
}

impl RuleConfig {
    /// Human one-line summary like `iptables -L`, e.g.
    /// `input tcp dport 22 src 10.0.0.0/8 -> accept`; a `not_` key shows as
    /// `!` before its values (`dport !22`).
    pub fn summary(&self) -> String {
        let mut out = String::from(chain_name(self.chain));
        let addressed = [&self.src, &self.dst].iter().any(|m| !m.is_empty())
            || [&self.src_range, &self.dst_range]
                .iter()
                .any(|m| !m.is_empty());
        // An address already shows its family.
        if let Some(family) = self.family
            && !addressed
        {
            out += &format!(" {family}");
        }
        let protos = |l: &[u8]| {
            l.iter()
                .map(|&p| proto_name(p))
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.proto.any_of.is_empty() {
            out += &format!(" {}", protos(&self.proto.any_of));
        }
        if !self.proto.none_of.is_empty() {
            out += &format!(" !{}", protos(&self.proto.none_of));
        }
        out += &key_summary(&self.sport, "sport", PortRange::to_string);
        out += &key_summary(&self.dport, "dport", PortRange::to_string);
        out += &key_summary(&self.icmp_type, "icmp-type", IcmpType::to_string);
        if let Some(t) = self.tcp_flags {
            let not = if t.negated { "!" } else { "" };
            if t.flags == SYN_ONLY {
                out += &format!(" {not}syn");
            } else {
                let names = |bits| flag_names(bits).join(",").to_ascii_lowercase();
                let set = match t.flags.set {
                    0 => "none".to_string(),
                    s => names(s),
                };
                out += &format!(" flags {not}{}/{set}", names(t.flags.mask));
            }
        }
        out += &key_summary(&self.src, "src", Cidr::to_string);
        out += &key_summary(&self.src_range, "src-range", AddrRange::to_string);
        out += &key_summary(&self.dst, "dst", Cidr::to_string);
        out += &key_summary(&self.dst_range, "dst-range", AddrRange::to_string);
        out += &key_summary(&self.iif, "iif", Iface::to_string);
        out += &key_summary(&self.oif, "oif", Iface::to_string);
        if !self.ctstate.is_empty() {
            let names: Vec<&str> = self.ctstate.iter().map(|&s| ctstate_name(s)).collect();
            out += &format!(" ctstate {}", names.join(","));
        }
        if let Some(l) = &self.limit {
            out += &format!(" limit {}/{} burst {}", l.count, l.per.name(), l.burst);
        }
        out += &format!(" -> {}", action_name(self.action));
        if let Some(w) = self.reject_with {
            out += &format!(" {w}");
        }
        if self.action == RuleAction::Log {
            if let Some(p) = &self.log_prefix {
                out += &format!(" {:?}", one_line(p));
            }
            if self.log_level != DEFAULT_LOG_LEVEL {
                out += &format!(" level {}", self.log_level);
            }
        }
        if let Some(c) = &self.comment {
            out += &format!(" /* {} */", one_line(c));
        }
        out
    }
}

/// Keeps a summary on one line whatever the comment holds.
/// ` dport 80,443 dport !22`, as `iptables -L` writes negation.
fn key_summary<T>(m: &Match<T>, name: &str, show: impl Fn(&T) -> String) -> String {
    let list = |l: &[T]| l.iter().map(&show).collect::<Vec<_>>().join(",");
    let mut out = String::new();
    if !m.any_of.is_empty() {
        out += &format!(" {name} {}", list(&m.any_of));
    }
    if !m.none_of.is_empty() {
        out += &format!(" {name} !{}", list(&m.none_of));
    }
    out
}

pub(super) fn one_line(comment: &str) -> String {
    comment
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect()
}

/// The `[[rule]]` blocks, `rule[1]` on.
pub(super) fn validate_rules(
    doc: &Doc,
    raws: &[Spanned<RawRule>],
    interfaces: &HashMap<String, usize>,
) -> Result<Vec<RuleConfig>, ConfigError> {
    if let Some(extra) = raws.get(MAX_RULES as usize) {
        return Err(doc.invalid(
            doc.line(extra.span().start),
            format!("rule[{}]", MAX_RULES + 1),
            format!("too many rules (at most {MAX_RULES})"),
        ));
    }
    raws.iter()
        .enumerate()
        .map(|(i, raw)| validate_rule(doc, raw, &format!("rule[{}]", i + 1), i + 1, interfaces))
        .collect()
}

/// One `[[rule]]`, named `prefix` in messages, the `index`th rule of the
/// config.
fn validate_rule(
    doc: &Doc,
    raw: &Spanned<RawRule>,
    prefix: &str,
    index: usize,
    interfaces: &HashMap<String, usize>,
) -> Result<RuleConfig, ConfigError> {
    let block = Block {
        doc,
        raw: raw.get_ref(),
        prefix,
        line: doc.line(raw.span().start),
    };
    block.validate(index, interfaces)
}

/// One `[[rule]]` being read: its keys are named `prefix.key` in messages.
struct Block<'a> {
    doc: &'a Doc<'a>,
    raw: &'a RawRule,
    prefix: &'a str,
    /// The line of the `[[rule]]` header.
    line: usize,
}

impl Block<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.prefix)
    }

    fn missing(&self, k: &str) -> ConfigError {
        self.doc
            .invalid(self.line, self.key(k), "missing (required)")
    }

    /// The keys in the order their errors are reported: what the rule
    /// does, then what it matches, each condition after those it depends
    /// on (ports and ICMP types after the protocol, ...).
    fn validate(
        &self,
        index: usize,
        interfaces: &HashMap<String, usize>,
    ) -> Result<RuleConfig, ConfigError> {
        let (chain, action) = self.chain_and_action()?;
        let proto = self.protocols()?;
        let addresses = self.addresses()?;
        self.check_protocol_families(&proto, addresses.family)?;
        let only_proto = only_proto(&proto);
        let sport = self.ports(&proto, &self.raw.sport, &self.raw.not_sport, "sport")?;
        let dport = self.ports(&proto, &self.raw.dport, &self.raw.not_dport, "dport")?;
        let icmp_type = self.icmp_types(only_proto)?;
        let tcp_flags = self.tcp_flags(only_proto)?;
        let limit = self.limit()?;
        let options = self.action_options(action, only_proto)?;
        let ifaces = self.interfaces(chain, interfaces)?;
        let ctstate = self.ctstates()?;
        let comment = match &self.raw.comment {
            Some(v) => Some(self.doc.string(v, &self.key("comment"))?.to_string()),
            None => None,
        };
        Ok(RuleConfig {
            chain,
            action,
            family: addresses.family,
            proto,
            src: addresses.src,
            dst: addresses.dst,
            src_range: addresses.src_range,
            dst_range: addresses.dst_range,
            sport,
            dport,
            iif: ifaces.iif,
            oif: ifaces.oif,
            icmp_type,
            tcp_flags,
            limit,
            ctstate,
            reject_with: options.reject_with,
            log_prefix: options.log_prefix,
            log_level: options.log_level,
            comment,
            line: self.line,
            index,
            origin: self.doc.origin.to_string(),
            key: self.prefix.to_string(),
            iface_lines: ifaces.lines,
        })
    }
}

#[cfg(test)]
mod tests;
