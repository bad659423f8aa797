//! The TOML configuration file: parsing, validation and compilation of rules
//! to the datapath form.
//!
//! Every leaf value is read as a `toml::Spanned<toml::Value>` and checked by
//! hand rather than by serde, so each error can name the offending key and the
//! line it sits on (`fw.toml:12: rule[2].dport: ...`); serde only enforces the
//! shape of the document (`deny_unknown_fields`). Rule and interface indices
//! in messages are 1-based, counting blocks as a person reading the file would.
//!
//! NAT is IPv4 only: source NAT per `wan` interface (`masquerade` or `snat`)
//! and destination NAT through `[[port_forward]]` blocks. IPv6 traffic stays
//! stateful but untranslated, and asking to translate it is an error.
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
//! an answer for both ([`REJECT_WITH`]), since a rule without addresses
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
//!
//! Conntrack helpers are off by default. As with modern netfilter (`ct helper
//! set`, `-j CT --helper`, no automatic assignment by port), a helper only
//! watches a port that a `[[helper]]` block assigns it to.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV6};
use std::ops::Range;
use std::path::Path;

use firewall_common::{
    Chain, CtState, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, MAX_RULES, Role,
    RuleAction, Timeouts,
    rule::model::{Cond, LimitSpec, MatchRule, Prefix, TcpFlagsSpec},
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::{Spanned, Value};

use crate::{
    iptables,
    syntax::{
        AddrRange, CTSTATES, Cidr, DEFAULT_LOG_LEVEL, Family, HostBits, IcmpType, Iface, Limit,
        MAX_LIMIT_BURST, MAX_LOG_PREFIX, MAX_PORT_SLOTS, PROTOCOLS, PortRange, REJECT_WITH,
        RateUnit, SYN_ONLY, TCP_FLAG_NAMES, TcpFlags, TcpFlagsMatch, ctstate_name, flag_bits,
        flag_names, interface_name_problem, parse_addr_range, parse_icmp_type, parse_log_level,
        parse_rate, port_slots, proto_by_name, proto_name, reject_answer, reject_name,
    },
};
/// Smallest accepted conntrack capacity: below this a busy host would evict
/// live connections constantly, which looks like random drops.
pub const MIN_CT_ENTRIES: u32 = 1024;

/// Most WAN-side ports all `[[port_forward]]` blocks together may forward
/// (each port of a range counts), so the datapath's DNAT map has a fixed size.
pub const MAX_FORWARDED_PORTS: u32 = 16384;

/// Source ports (and ICMP ids) NAT allocates from when the original is taken
/// and the interface sets no `nat_ports`.
pub const DEFAULT_NAT_PORTS: PortRange = PortRange {
    lo: 1024,
    hi: 65535,
};

/// The message for any attempt to translate IPv6.
const NO_IPV6_NAT: &str = "IPv6 NAT is not supported; IPv6 stays stateful but untranslated";

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native where the driver supports it, generic (skb) otherwise.
    #[default]
    Auto,
    /// Driver mode only; attaching fails on drivers without XDP support.
    Native,
    /// skb mode: works everywhere, at the cost of running after skb
    /// allocation.
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// A validated configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub xdp_mode: XdpMode,
    /// Forward ESTABLISHED packets in XDP where possible (`fast_path`,
    /// default on); off sends every packet through the stack, for
    /// comparison.
    pub fast_path: bool,
    pub interfaces: Vec<InterfaceConfig>,
    /// Conntrack map capacity in entries (two per connection).
    pub max_entries: u32,
    pub timeouts: Timeouts,
    /// Default verdict per chain, indexed by `Chain as usize`.
    pub policy: [RuleAction; 3],
    pub rules: Vec<RuleConfig>,
    /// Destination NAT, in file order; empty unless some interface is `wan`.
    pub port_forwards: Vec<PortForward>,
    /// Conntrack helper assignments, in file order; empty unless the file
    /// has `[[helper]]` blocks. No two share a protocol and port.
    pub helpers: Vec<Helper>,
}

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

/// A connection-tracking helper: the protocol parser that finds the data
/// connections a control connection announces and lets them in as RELATED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperKind {
    /// FTP (`nf_conntrack_ftp`/`nf_nat_ftp`): PORT, EPRT, 227 and 229.
    Ftp,
}

impl HelperKind {
    /// The one IP protocol this helper works on.
    pub fn proto(self) -> u8 {
        match self {
            HelperKind::Ftp => IPPROTO_TCP,
        }
    }
}

impl fmt::Display for HelperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(HELPER_KINDS, *self))
    }
}

/// One validated `[[helper]]`: connections to `proto`/`port` are watched by
/// the `kind` helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    /// Always `kind.proto()` (`IPPROTO_TCP` for FTP).
    pub proto: u8,
    /// Destination (server) port of the control connection; never 0.
    pub port: u16,
    pub kind: HelperKind,
    /// 1-based line of the `[[helper]]` header.
    pub line: usize,
    /// 1-based position among the helpers (`helper[N]`).
    pub index: usize,
}

impl Helper {
    /// Human one-line summary, e.g. `tcp 21 -> ftp helper`.
    pub fn summary(&self) -> String {
        format!(
            "{} {} -> {} helper",
            proto_name(self.proto),
            self.port,
            self.kind
        )
    }
}

/// A condition on one packet field as the config writes it: the plain key
/// (`src`) lists what the value must be one of, the `not_` key (`not_src`)
/// what it must be none of. Both empty: no condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<T> {
    pub any_of: Vec<T>,
    pub none_of: Vec<T>,
}

impl<T> Default for Match<T> {
    fn default() -> Self {
        Match {
            any_of: Vec::new(),
            none_of: Vec::new(),
        }
    }
}

impl<T> Match<T> {
    pub fn is(v: T) -> Self {
        Match {
            any_of: vec![v],
            none_of: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// The compiler's conditions: one for the plain key, one negated for
    /// the `not_` key, each value expanded by `expand` (a range to its
    /// prefixes, a wildcard to its interfaces). A negated condition that
    /// expands to nothing excludes nothing and is left out; a positive one
    /// is kept, and never holds.
    fn conds<U, E>(
        &self,
        mut expand: impl FnMut(&T, bool) -> Result<Vec<U>, E>,
    ) -> Result<Vec<Cond<U>>, E> {
        let mut out = Vec::new();
        if !self.any_of.is_empty() {
            let mut any_of = Vec::new();
            for v in &self.any_of {
                any_of.extend(expand(v, false)?);
            }
            out.push(Cond {
                negated: false,
                any_of,
            });
        }
        let mut none_of = Vec::new();
        for v in &self.none_of {
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

    /// [`Match::conds`] for expansions that cannot fail.
    fn expanded<U>(&self, expand: impl Fn(&T) -> Vec<U>) -> Vec<Cond<U>> {
        match self.conds(|v, _| Ok::<_, std::convert::Infallible>(expand(v))) {
            Ok(c) => c,
            Err(never) => match never {},
        }
    }

    /// ` dport 80,443 dport !22`, as `iptables -L` writes negation.
    fn summary(&self, name: &str, show: impl Fn(&T) -> String) -> String {
        let list = |l: &[T]| l.iter().map(&show).collect::<Vec<_>>().join(",");
        let mut out = String::new();
        if !self.any_of.is_empty() {
            out += &format!(" {name} {}", list(&self.any_of));
        }
        if !self.none_of.is_empty() {
            out += &format!(" {name} !{}", list(&self.none_of));
        }
        out
    }
}

/// `limit_burst` when absent, as iptables' `--limit-burst`.
pub const DEFAULT_LIMIT_BURST: u32 = 5;
/// iptables refuses rates above 10,000 per second (`XT_LIMIT_SCALE`).
const MIN_LIMIT_INTERVAL_NS: u64 = 100_000;

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
    /// Canonical [`REJECT_WITH`] name; `None` is icmp-port-unreachable.
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
    origin: String,
    /// `rule[N]` or `iptables[N]`.
    key: String,
    /// Lines of `iif`, `not_iif`, `oif`, `not_oif`.
    iface_lines: [usize; 4],
}

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
        rule.proto = proto.expanded(|p| vec![*p]);
        for (out, cidrs, ranges) in [
            (&mut rule.src, src, src_range),
            (&mut rule.dst, dst, dst_range),
        ] {
            out.extend(cidrs.expanded(|c| vec![cidr_prefix(c)]));
            out.extend(ranges.expanded(range_prefixes));
        }
        rule.sport = sport.expanded(|p| vec![(p.lo, p.hi)]);
        rule.dport = dport.expanded(|p| vec![(p.lo, p.hi)]);
        rule.icmp = icmp_type.expanded(|t| vec![icmp_range(t)]);
        for (out, m, name, lines) in [
            (&mut rule.iif, iif, "iif", [iface_lines[0], iface_lines[1]]),
            (&mut rule.oif, oif, "oif", [iface_lines[2], iface_lines[3]]),
        ] {
            *out = m.conds(|i, negated| {
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
        out += &self.sport.summary("sport", PortRange::to_string);
        out += &self.dport.summary("dport", PortRange::to_string);
        out += &self.icmp_type.summary("icmp-type", IcmpType::to_string);
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
        out += &self.src.summary("src", Cidr::to_string);
        out += &self.src_range.summary("src-range", AddrRange::to_string);
        out += &self.dst.summary("dst", Cidr::to_string);
        out += &self.dst_range.summary("dst-range", AddrRange::to_string);
        out += &self.iif.summary("iif", Iface::to_string);
        out += &self.oif.summary("oif", Iface::to_string);
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

    /// Points an `iptables` line's rule, validated from the `[[rule]]`
    /// block it stands for, back at the line.
    fn relocate(&mut self, key: String, line: usize) {
        self.key = key;
        self.line = line;
        self.iface_lines = [line; 4];
    }
}

/// Keeps a summary on one line whatever the comment holds.
fn one_line(comment: &str) -> String {
    comment
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message
    /// rather than a `source` so that the one line is complete on its own and
    /// chains printed with `{:#}` do not repeat it.
    #[error("{origin}: cannot read: {error}")]
    Read {
        origin: String,
        error: std::io::Error,
    },
    /// The text is not TOML (or not the document shape at all).
    #[error("{origin}:{}: {message}", position_text(*.position))]
    Syntax {
        origin: String,
        /// 1-based line and column, when the TOML parser reported one.
        position: Option<(usize, usize)>,
        message: String,
    },
    /// Well-formed TOML with a bad value, an unknown key or a broken rule.
    #[error("{origin}:{line}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        /// Dotted path of the offending key, e.g. `rule[2].dport`.
        key: String,
        message: String,
    },
}

fn position_text(position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!("{line}:{column}"),
        None => "?".into(),
    }
}

/// Read, parse and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        origin: origin.clone(),
        error,
    })?;
    let config = parse(&text, &origin)?;
    log::debug!(
        "{origin}: {} interface(s), {} rule(s), {} port forward(s), {} helper(s), \
         conntrack {} entries, xdp mode {}, fast path {}",
        config.interfaces.len(),
        config.rules.len(),
        config.port_forwards.len(),
        config.helpers.len(),
        config.max_entries,
        config.xdp_mode,
        if config.fast_path { "on" } else { "off" }
    );
    Ok(config)
}

/// Parse and validate configuration text; `origin` names it in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc = Doc::new(text, origin);
    let raw: RawConfig = toml::from_str(text).map_err(|e| doc.toml_error(&e))?;
    raw.validate(&doc)
}

// ---------------------------------------------------------------------------
// Raw document shape.

type Field = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    xdp_mode: Field,
    fast_path: Field,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
    conntrack: Option<RawConntrack>,
    timeouts: Option<RawTimeouts>,
    policy: Option<RawPolicy>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    port_forward: Vec<Spanned<RawPortForward>>,
    #[serde(default)]
    helper: Vec<Spanned<RawHelper>>,
    /// iptables command lines, after the `[[rule]]`s.
    iptables: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Field,
    role: Field,
    masquerade: Field,
    snat: Field,
    nat_ports: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortForward {
    proto: Field,
    port: Field,
    to: Field,
    comment: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHelper {
    proto: Field,
    port: Field,
    kind: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    max_entries: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    input: Field,
    forward: Field,
    output: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    chain: Field,
    proto: Field,
    not_proto: Field,
    family: Field,
    src: Field,
    not_src: Field,
    dst: Field,
    not_dst: Field,
    src_range: Field,
    not_src_range: Field,
    dst_range: Field,
    not_dst_range: Field,
    sport: Field,
    not_sport: Field,
    dport: Field,
    not_dport: Field,
    iif: Field,
    not_iif: Field,
    oif: Field,
    not_oif: Field,
    icmp_type: Field,
    not_icmp_type: Field,
    tcp_flags: Field,
    not_tcp_flags: Field,
    syn: Field,
    limit: Field,
    limit_burst: Field,
    ctstate: Field,
    action: Field,
    reject_with: Field,
    log_prefix: Field,
    log_level: Field,
    comment: Field,
}

/// Declares `RawTimeouts` from the list of `Timeouts` fields, so the accepted
/// keys and the struct cannot drift apart: the exhaustive pattern below stops
/// compiling when a field is added to `Timeouts` and not listed here.
macro_rules! timeouts {
    ($($field:ident),* $(,)?) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawTimeouts {
            $($field: Field,)*
        }

        impl RawTimeouts {
            fn apply(&self, doc: &Doc, t: &mut Timeouts) -> Result<(), ConfigError> {
                let Timeouts { $($field: _,)* _pad: _ } = *t;
                $(
                    if let Some(v) = &self.$field {
                        let key = concat!("timeouts.", stringify!($field));
                        t.$field = doc.ranged(v, key, 1, u32::MAX.into())? as u32;
                    }
                )*
                Ok(())
            }
        }
    };
}

timeouts!(
    tcp_syn_sent,
    tcp_syn_recv,
    tcp_established,
    tcp_fin_wait,
    tcp_close_wait,
    tcp_last_ack,
    tcp_time_wait,
    tcp_close,
    tcp_syn_sent2,
    tcp_unack,
    udp,
    udp_stream,
    icmp,
    generic,
);

/// The document's sections with their spans only, read leniently after a
/// shape error so the message can say which `[[rule]]` or table it is in.
#[derive(Deserialize)]
struct Skeleton {
    #[serde(default)]
    interface: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    rule: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    port_forward: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    helper: Vec<Spanned<IgnoredAny>>,
    conntrack: Option<Spanned<IgnoredAny>>,
    timeouts: Option<Spanned<IgnoredAny>>,
    policy: Option<Spanned<IgnoredAny>>,
}

impl Skeleton {
    fn section_at(&self, offset: usize) -> Option<String> {
        let inside = |s: Range<usize>| s.contains(&offset);
        let indexed = |name: &str, items: &[Spanned<IgnoredAny>]| {
            items
                .iter()
                .position(|t| inside(t.span()))
                .map(|i| format!("{name}[{}]", i + 1))
        };
        indexed("interface", &self.interface)
            .or_else(|| indexed("rule", &self.rule))
            .or_else(|| indexed("port_forward", &self.port_forward))
            .or_else(|| indexed("helper", &self.helper))
            .or_else(|| {
                [
                    ("conntrack", &self.conntrack),
                    ("timeouts", &self.timeouts),
                    ("policy", &self.policy),
                ]
                .into_iter()
                .find(|(_, t)| t.as_ref().is_some_and(|t| inside(t.span())))
                .map(|(name, _)| name.to_string())
            })
    }
}

// ---------------------------------------------------------------------------
// Locating and typing values.

/// The text being parsed, for turning byte spans into lines.
struct Doc<'a> {
    text: &'a str,
    origin: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Doc {
            text,
            origin,
            line_starts,
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    fn invalid(
        &self,
        line: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    fn at(&self, v: &Spanned<Value>, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid(self.line(v.span().start), key, message)
    }

    /// Condenses a toml error to one line. Errors in the document's shape
    /// (unknown keys, a table where a list belongs) get the section they are
    /// in, so they read like the semantic errors; anything the lenient
    /// [`Skeleton`] cannot read either is reported as a syntax error.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        // toml's `Spanned` meets a dotted key or sub-table where it expects a
        // single value and reports it in terms of its own internals.
        if let Some(rest) = message.strip_prefix("invalid type: string ")
            && let Some(name) = rest.strip_suffix(", expected a borrowed string")
        {
            message = format!("unexpected sub-table or dotted key {name}");
        }
        let Some(span) = e.span() else {
            return ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: None,
                message,
            };
        };
        let shape_error_in = toml::from_str::<Skeleton>(self.text)
            .ok()
            .map(|s| s.section_at(span.start));
        let Some(section) = shape_error_in else {
            return ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: Some(self.position(span.start)),
                message,
            };
        };
        let line = self.line(span.start);
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((name, expected)) = rest.split_once("`, ")
        {
            let key = match section {
                Some(s) => format!("{s}.{name}"),
                None => name.to_string(),
            };
            // TOML puts every key after a `[section]` header into it.
            let hint = match (&key, name) {
                (k, "xdp_mode" | "iptables") if k != name => {
                    "; top-level keys go before the first [section]"
                }
                _ => "",
            };
            return self.invalid(line, key, format!("unknown key ({expected}){hint}"));
        }
        match section {
            Some(s) => self.invalid(line, s, message),
            None => ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: Some(self.position(span.start)),
                message,
            },
        }
    }

    fn string<'v>(&self, v: &'v Spanned<Value>, key: &str) -> Result<&'v str, ConfigError> {
        match v.get_ref() {
            Value::String(s) => Ok(s),
            other => Err(self.at(
                v,
                key,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn integer(&self, v: &Spanned<Value>, key: &str) -> Result<i64, ConfigError> {
        match v.get_ref() {
            Value::Integer(n) => Ok(*n),
            other => Err(self.at(
                v,
                key,
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }

    fn boolean(&self, v: &Spanned<Value>, key: &str) -> Result<bool, ConfigError> {
        match v.get_ref() {
            Value::Boolean(b) => Ok(*b),
            other => Err(self.at(
                v,
                key,
                format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    fn ranged(
        &self,
        v: &Spanned<Value>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let n = self.integer(v, key)?;
        if n < min || n > max {
            return Err(self.at(v, key, format!("{n} is out of range ({min}-{max})")));
        }
        Ok(n)
    }

    fn keyword<T: Copy>(
        &self,
        v: &Spanned<Value>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let s = self.string(v, key)?;
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, t)| t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.at(
                    v,
                    key,
                    format!("unknown value {s:?} (expected {})", one_of(&names)),
                )
            })
    }

    fn port_range(&self, v: &Spanned<Value>, key: &str) -> Result<PortRange, ConfigError> {
        let port = |n: i64| {
            u16::try_from(n)
                .map_err(|_| self.at(v, key, format!("port {n} is out of range (0-65535)")))
        };
        let (lo, hi) = match v.get_ref() {
            Value::Integer(n) => (port(*n)?, port(*n)?),
            Value::String(s) => {
                let bad = || {
                    self.at(
                        v,
                        key,
                        format!("invalid port range {s:?} (expected \"LO-HI\")"),
                    )
                };
                let num = |t: &str| {
                    let t = t.trim();
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    port(t.parse().unwrap_or(i64::MAX))
                };
                match s.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => (num(s)?, num(s)?),
                }
            }
            other => {
                return Err(self.at(
                    v,
                    key,
                    format!(
                        "expected a port number or \"LO-HI\" string, found {}",
                        other.type_str()
                    ),
                ));
            }
        };
        if lo > hi {
            return Err(self.at(v, key, format!("port range {lo}-{hi} is reversed")));
        }
        Ok(PortRange { lo, hi })
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

const CHAINS: &[(&str, Chain)] = &[
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
/// A chain's policy decides, silently: REJECT and LOG are rule actions.
const POLICIES: &[(&str, RuleAction)] =
    &[("accept", RuleAction::Accept), ("drop", RuleAction::Drop)];
const ROLES: &[(&str, Role)] = &[("lan", Role::Lan), ("wan", Role::Wan)];
const FORWARD_PROTOS: &[(&str, u8)] = &[("tcp", IPPROTO_TCP), ("udp", IPPROTO_UDP)];
const HELPER_KINDS: &[(&str, HelperKind)] = &[("ftp", HelperKind::Ftp)];
const XDP_MODES: &[(&str, XdpMode)] = &[
    ("auto", XdpMode::Auto),
    ("native", XdpMode::Native),
    ("generic", XdpMode::Generic),
];
const FAMILIES: &[(&str, Family)] = &[("ipv4", Family::V4), ("ipv6", Family::V6)];
fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], t: T) -> &'static str {
    table.iter().find(|(_, x)| *x == t).map_or("?", |(n, _)| n)
}

fn chain_name(c: Chain) -> &'static str {
    name_of(CHAINS, c)
}

fn action_name(a: RuleAction) -> &'static str {
    name_of(ACTIONS, a)
}

// ---------------------------------------------------------------------------
// Validation.

impl RawConfig {
    fn validate(self, doc: &Doc) -> Result<Config, ConfigError> {
        let xdp_mode = match &self.xdp_mode {
            Some(v) => doc.keyword(v, "xdp_mode", XDP_MODES)?,
            None => XdpMode::Auto,
        };
        let fast_path = match &self.fast_path {
            Some(v) => doc.boolean(v, "fast_path")?,
            None => true,
        };

        if self.interface.is_empty() {
            return Err(doc.invalid(1, "interface", "at least one [[interface]] is required"));
        }
        let mut interfaces: Vec<InterfaceConfig> = Vec::new();
        let mut iface_lines: HashMap<String, usize> = HashMap::new();
        for (i, raw) in self.interface.iter().enumerate() {
            let prefix = format!("interface[{}]", i + 1);
            let line = doc.line(raw.span().start);
            let raw = raw.get_ref();
            let missing =
                |k: &str| doc.invalid(line, format!("{prefix}.{k}"), "missing (required)");
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

        let max_entries = match self.conntrack.as_ref().and_then(|c| c.max_entries.as_ref()) {
            Some(v) => doc.ranged(
                v,
                "conntrack.max_entries",
                MIN_CT_ENTRIES.into(),
                u32::MAX.into(),
            )? as u32,
            None => firewall_common::DEFAULT_CT_ENTRIES,
        };

        let mut timeouts = Timeouts::NETFILTER;
        if let Some(t) = &self.timeouts {
            t.apply(doc, &mut timeouts)?;
        }

        let mut policy = [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept];
        let mut explicit_policy = [None; 3];
        if let Some(p) = &self.policy {
            for (chain, field) in [
                (Chain::Input, &p.input),
                (Chain::Forward, &p.forward),
                (Chain::Output, &p.output),
            ] {
                if let Some(v) = field {
                    let key = format!("policy.{}", chain_name(chain));
                    policy[chain as usize] = doc.keyword(v, &key, POLICIES)?;
                    explicit_policy[chain as usize] = Some(doc.line(v.span().start));
                }
            }
        }

        if let Some(extra) = self.rule.get(MAX_RULES as usize) {
            return Err(doc.invalid(
                doc.line(extra.span().start),
                format!("rule[{}]", MAX_RULES + 1),
                format!("too many rules (at most {MAX_RULES})"),
            ));
        }
        let mut rules = self
            .rule
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                validate_rule(doc, raw, &format!("rule[{}]", i + 1), i + 1, &iface_lines)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(lines) = &self.iptables {
            let (more, policies) =
                validate_iptables(doc, lines, rules.len() + 1, &iface_lines, explicit_policy)?;
            for (chain, action) in policies {
                policy[chain as usize] = action;
            }
            rules.extend(more);
            if rules.len() > MAX_RULES as usize {
                return Err(doc.invalid(
                    doc.line(lines.span().start),
                    "iptables",
                    format!(
                        "too many rules: {} with the [[rule]]s (at most {MAX_RULES})",
                        rules.len()
                    ),
                ));
            }
        }

        let port_forwards = validate_port_forwards(doc, &self.port_forward, &interfaces)?;
        let helpers = validate_helpers(doc, &self.helper)?;

        Ok(Config {
            xdp_mode,
            fast_path,
            interfaces,
            max_entries,
            timeouts,
            policy,
            rules,
            port_forwards,
            helpers,
        })
    }
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

fn usable_host(a: Ipv4Addr) -> Result<Ipv4Addr, String> {
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

fn validate_port_forwards(
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
    let proto = doc.keyword(proto_v, &key("proto"), FORWARD_PROTOS)?;

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

/// The `[[helper]]` blocks: each valid on its own, and no protocol and port
/// given a helper twice.
fn validate_helpers(doc: &Doc, raws: &[Spanned<RawHelper>]) -> Result<Vec<Helper>, ConfigError> {
    let mut helpers: Vec<Helper> = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let (helper, port_v) = validate_helper(doc, raw, i + 1)?;
        if let Some(first) = helpers
            .iter()
            .find(|h| (h.proto, h.port) == (helper.proto, helper.port))
        {
            return Err(doc.at(
                port_v,
                &format!("helper[{}].port", helper.index),
                format!(
                    "{} port {} is assigned twice: helper[{}] (line {}) already gives it the \
                     {} helper, and a port takes one helper",
                    proto_name(helper.proto),
                    helper.port,
                    first.index,
                    first.line,
                    first.kind
                ),
            ));
        }
        helpers.push(helper);
    }
    Ok(helpers)
}

/// One `[[helper]]` on its own, with the `port` value for the duplicate
/// check.
fn validate_helper<'r>(
    doc: &Doc,
    spanned: &'r Spanned<RawHelper>,
    index: usize,
) -> Result<(Helper, &'r Spanned<Value>), ConfigError> {
    let line = doc.line(spanned.span().start);
    let raw = spanned.get_ref();
    let key = |k: &str| format!("helper[{index}].{k}");
    let missing = |k: &str| doc.invalid(line, key(k), "missing (required)");

    let proto_v = raw.proto.as_ref().ok_or_else(|| missing("proto"))?;
    let proto = doc.keyword(proto_v, &key("proto"), FORWARD_PROTOS)?;

    let port_v = raw.port.as_ref().ok_or_else(|| missing("port"))?;
    let port = match port_v.get_ref() {
        Value::Integer(_) => doc.ranged(port_v, &key("port"), 1, u16::MAX.into())? as u16,
        Value::String(s) if s.contains('-') => {
            return Err(doc.at(
                port_v,
                &key("port"),
                format!(
                    "{s:?} is a range; a helper is assigned to a single port \
                     (one [[helper]] per port)"
                ),
            ));
        }
        other => {
            return Err(doc.at(
                port_v,
                &key("port"),
                format!("expected a port number 1-65535, found {}", other.type_str()),
            ));
        }
    };

    let kind_v = raw.kind.as_ref().ok_or_else(|| missing("kind"))?;
    let name = doc.string(kind_v, &key("kind"))?;
    let kind = HELPER_KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, k)| k)
        .ok_or_else(|| {
            let names: Vec<&str> = HELPER_KINDS.iter().map(|(n, _)| *n).collect();
            doc.at(
                kind_v,
                &key("kind"),
                format!("unknown helper {name:?} (supported: {})", names.join(", ")),
            )
        })?;

    if proto != kind.proto() {
        return Err(doc.at(
            proto_v,
            &key("proto"),
            format!(
                "the {kind} helper works on {}, not {}",
                proto_name(kind.proto()),
                proto_name(proto)
            ),
        ));
    }

    Ok((
        Helper {
            proto,
            port,
            kind,
            line,
            index,
        },
        port_v,
    ))
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

/// A plain key and its `not_` form, each a value or a list, read with
/// `one`, which gets the value and the key's full name.
fn matched<T>(
    doc: &Doc,
    pos: &Field,
    neg: &Field,
    name: &str,
    key: &dyn Fn(&str) -> String,
    mut one: impl FnMut(&Spanned<Value>, &str) -> Result<T, ConfigError>,
) -> Result<Match<T>, ConfigError> {
    let mut m = Match::default();
    for (field, list, k) in [
        (pos, &mut m.any_of, key(name)),
        (neg, &mut m.none_of, key(&format!("not_{name}"))),
    ] {
        if let Some(v) = field {
            for item in values(doc, v, &k)? {
                list.push(one(&item, &k)?);
            }
        }
    }
    Ok(m)
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

/// An `iif`/`oif` value: a name, or a prefix ending in `+`.
fn parse_iface_value(doc: &Doc, v: &Spanned<Value>, key: &str) -> Result<Iface, ConfigError> {
    let s = doc.string(v, key)?;
    let (name, wildcard) = match s.strip_suffix('+') {
        Some("") => {
            return Err(doc.at(v, key, "\"+\" alone is every interface (leave the key out)"));
        }
        Some(prefix) => (prefix, true),
        None => (s, false),
    };
    if let Some(problem) = interface_name_problem(name) {
        return Err(doc.at(v, key, problem));
    }
    Ok(Iface {
        name: name.to_string(),
        wildcard,
    })
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
    let mask = flags("mask")?;
    let set = flags("set")?;
    if mask == 0 {
        return Err(doc.at(v, key, "mask is empty, so the test would always hold"));
    }
    if set & !mask != 0 {
        return Err(doc.at(
            v,
            key,
            format!(
                "set has {} outside the mask, so the test could never hold",
                flag_names(set & !mask).join(",").to_ascii_lowercase()
            ),
        ));
    }
    Ok(TcpFlags { mask, set })
}

/// Family of each address value, to infer the rule's and refuse a mix.
struct FamilyCheck {
    family: Option<Family>,
    source: String,
}

impl FamilyCheck {
    fn note(
        &mut self,
        doc: &Doc,
        v: &Spanned<Value>,
        key: &str,
        f: Family,
        what: String,
    ) -> Result<(), ConfigError> {
        match self.family {
            Some(g) if g != f => {
                Err(doc.at(v, key, format!("{what} is {f} but {} is {g}", self.source)))
            }
            Some(_) => Ok(()),
            None => {
                self.family = Some(f);
                self.source = format!("{} {what}", key.rsplit('.').next().unwrap_or(key));
                Ok(())
            }
        }
    }
}

fn validate_rule(
    doc: &Doc,
    spanned: &Spanned<RawRule>,
    prefix: &str,
    index: usize,
    interfaces: &HashMap<String, usize>,
) -> Result<RuleConfig, ConfigError> {
    let line = doc.line(spanned.span().start);
    let raw = spanned.get_ref();
    let key = |k: &str| format!("{prefix}.{k}");
    let missing = |k: &str| doc.invalid(line, key(k), "missing (required)");
    let chain_v = raw.chain.as_ref().ok_or_else(|| missing("chain"))?;
    let chain = doc.keyword(chain_v, &key("chain"), CHAINS)?;
    let action_v = raw.action.as_ref().ok_or_else(|| missing("action"))?;
    let action = doc.keyword(action_v, &key("action"), ACTIONS)?;
    if action == RuleAction::Reject && chain == Chain::Output {
        // The answer would have to reach a local socket from tc egress,
        // which the datapath does not do (see ARCHITECTURE, Rules).
        return Err(doc.at(
            action_v,
            &key("action"),
            "reject is not supported on chain output (use drop)",
        ));
    }

    let proto = matched(doc, &raw.proto, &raw.not_proto, "proto", &key, |v, k| {
        parse_proto_value(doc, v, k)
    })?;

    let mut family = FamilyCheck {
        family: None,
        source: "family".into(),
    };
    if let Some(v) = &raw.family {
        family.family = Some(doc.keyword(v, &key("family"), FAMILIES)?);
    }
    let mut cidrs = |pos: &Field, neg: &Field, name: &str| {
        matched(doc, pos, neg, name, &key, |v, k| {
            let c =
                Cidr::parse(doc.string(v, k)?, HostBits::Refused).map_err(|m| doc.at(v, k, m))?;
            family.note(doc, v, k, c.family(), c.to_string())?;
            Ok(c)
        })
    };
    let src = cidrs(&raw.src, &raw.not_src, "src")?;
    let dst = cidrs(&raw.dst, &raw.not_dst, "dst")?;
    let mut ranges = |pos: &Field, neg: &Field, name: &str| {
        matched(doc, pos, neg, name, &key, |v, k| {
            let s = doc.string(v, k)?;
            let r = parse_addr_range(s).map_err(|m| doc.at(v, k, format!("{s:?}: {m}")))?;
            family.note(doc, v, k, r.family(), r.to_string())?;
            Ok(r)
        })
    };
    let src_range = ranges(&raw.src_range, &raw.not_src_range, "src_range")?;
    let dst_range = ranges(&raw.dst_range, &raw.not_dst_range, "dst_range")?;
    let family = family.family;

    for (list, k) in [(&proto.any_of, "proto"), (&proto.none_of, "not_proto")] {
        for &p in list {
            let wants = match p {
                IPPROTO_ICMP => Family::V4,
                IPPROTO_ICMPV6 => Family::V6,
                _ => continue,
            };
            if let Some(f) = family
                && f != wants
            {
                let v = if k == "proto" {
                    &raw.proto
                } else {
                    &raw.not_proto
                };
                return Err(doc.at(
                    v.as_ref().expect("a listed protocol has its key"),
                    &key(k),
                    format!(
                        "{} only exists in {wants}, but the rule is {f}",
                        proto_name(p)
                    ),
                ));
            }
        }
    }
    // The one protocol every matching packet has, if the rule names one.
    let only_proto = match proto.any_of.as_slice() {
        [p] => Some(*p),
        _ => None,
    };

    let ports = |pos: &Field, neg: &Field, name: &str| -> Result<_, ConfigError> {
        if let Some((v, n)) = first_given(&[(pos, name), (neg, &format!("not_{name}"))]) {
            let k = key(n);
            match proto
                .any_of
                .iter()
                .find(|p| !matches!(**p, IPPROTO_TCP | IPPROTO_UDP))
            {
                _ if proto.any_of.is_empty() => {
                    return Err(doc.at(v, &k, "ports need proto tcp or udp"));
                }
                Some(p) => {
                    return Err(doc.at(
                        v,
                        &k,
                        format!("ports need proto tcp or udp, not {}", proto_name(*p)),
                    ));
                }
                None => {}
            }
        }
        let m = matched(doc, pos, neg, name, &key, |v, k| doc.port_range(v, k))?;
        for (list, field, k) in [
            (&m.any_of, pos, name.to_string()),
            (&m.none_of, neg, format!("not_{name}")),
        ] {
            let slots = port_slots(list);
            if slots > MAX_PORT_SLOTS {
                return Err(doc.at(
                    field.as_ref().expect("a non-empty list has its key"),
                    &key(&k),
                    format!(
                        "{slots} ports, more than the {} a list holds (a range counts as 2, as \
                         in iptables' multiport)",
                        MAX_PORT_SLOTS
                    ),
                ));
            }
        }
        Ok(m)
    };
    let sport = ports(&raw.sport, &raw.not_sport, "sport")?;
    let dport = ports(&raw.dport, &raw.not_dport, "dport")?;

    let icmp_type = match first_given(&[
        (&raw.icmp_type, "icmp_type"),
        (&raw.not_icmp_type, "not_icmp_type"),
    ]) {
        None => Match::default(),
        Some((v, n)) => {
            let v6 = match only_proto {
                Some(IPPROTO_ICMP) => false,
                Some(IPPROTO_ICMPV6) => true,
                _ => {
                    return Err(doc.at(
                        v,
                        &key(n),
                        "needs proto icmp or icmpv6 (alone), whose type names it uses",
                    ));
                }
            };
            let m = matched(
                doc,
                &raw.icmp_type,
                &raw.not_icmp_type,
                "icmp_type",
                &key,
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
            if m.none_of.contains(&IcmpType::Any) {
                let v = raw.not_icmp_type.as_ref().expect("none_of has its key");
                return Err(doc.at(v, &key("not_icmp_type"), "\"any\" would never match"));
            }
            m
        }
    };

    let tcp_flags = {
        let given: Vec<(&Spanned<Value>, &str)> = [
            (&raw.tcp_flags, "tcp_flags"),
            (&raw.not_tcp_flags, "not_tcp_flags"),
            (&raw.syn, "syn"),
        ]
        .into_iter()
        .filter_map(|(f, n)| f.as_ref().map(|v| (v, n)))
        .collect();
        match given.as_slice() {
            [] => None,
            [(v, n), ..] if only_proto != Some(IPPROTO_TCP) => {
                return Err(doc.at(v, &key(n), "needs proto tcp"));
            }
            [_, (v, n), ..] => {
                return Err(doc.at(
                    v,
                    &key(n),
                    "only one of tcp_flags, not_tcp_flags and syn (a rule holds one flags test)",
                ));
            }
            [(v, n)] => Some(match *n {
                "syn" => TcpFlagsMatch {
                    flags: SYN_ONLY,
                    negated: !doc.boolean(v, &key(n))?,
                },
                _ => TcpFlagsMatch {
                    flags: parse_tcp_flags_value(doc, v, &key(n))?,
                    negated: *n == "not_tcp_flags",
                },
            }),
        }
    };

    let limit = match &raw.limit {
        None => {
            if let Some(v) = &raw.limit_burst {
                return Err(doc.at(v, &key("limit_burst"), "only with limit"));
            }
            None
        }
        Some(v) => {
            let k = key("limit");
            let (count, per) = match v.get_ref() {
                Value::Integer(_) => (
                    doc.ranged(v, &k, 1, u32::MAX.into())? as u32,
                    RateUnit::Second,
                ),
                Value::String(s) => {
                    parse_rate(s).map_err(|m| doc.at(v, &k, format!("{s:?}: {m}")))?
                }
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
                Some(b) => doc.ranged(b, &key("limit_burst"), 1, MAX_LIMIT_BURST.into())? as u32,
                None => DEFAULT_LIMIT_BURST,
            };
            let l = Limit { count, per, burst };
            if l.interval_ns() < MIN_LIMIT_INTERVAL_NS {
                return Err(doc.at(
                    v,
                    &k,
                    format!(
                        "{count}/{} is faster than 10000/second, the most iptables' limit allows",
                        per.name()
                    ),
                ));
            }
            Some(l)
        }
    };

    let only_with = |f: &Field, k: &str, a: RuleAction| -> Result<(), ConfigError> {
        match f {
            Some(v) if action != a => Err(doc.at(
                v,
                &key(k),
                format!("only with action = \"{}\"", action_name(a)),
            )),
            _ => Ok(()),
        }
    };
    only_with(&raw.reject_with, "reject_with", RuleAction::Reject)?;
    only_with(&raw.log_prefix, "log_prefix", RuleAction::Log)?;
    only_with(&raw.log_level, "log_level", RuleAction::Log)?;
    let reject_with = match &raw.reject_with {
        None => None,
        Some(v) => {
            let k = key("reject_with");
            let name = doc.string(v, &k)?;
            let canonical = reject_name(name).ok_or_else(|| {
                let names: Vec<&str> = REJECT_WITH.iter().map(|(n, _, _)| *n).collect();
                doc.at(
                    v,
                    &k,
                    format!("unknown value {name:?} (expected {})", one_of(&names)),
                )
            })?;
            if canonical == "tcp-reset" && only_proto != Some(IPPROTO_TCP) {
                return Err(doc.at(v, &k, "tcp-reset needs proto tcp"));
            }
            Some(canonical)
        }
    };
    let log_prefix = match &raw.log_prefix {
        None => None,
        Some(v) => {
            let k = key("log_prefix");
            let p = doc.string(v, &k)?;
            if p.len() > MAX_LOG_PREFIX {
                return Err(doc.at(
                    v,
                    &k,
                    format!(
                        "{} bytes, more than the {MAX_LOG_PREFIX} iptables' LOG keeps",
                        p.len()
                    ),
                ));
            }
            if p.contains('\0') {
                return Err(doc.at(v, &k, "contains a NUL byte"));
            }
            Some(p.to_string())
        }
    };
    let log_level = match &raw.log_level {
        None => DEFAULT_LOG_LEVEL,
        Some(v) => {
            let k = key("log_level");
            match v.get_ref() {
                Value::Integer(_) => doc.ranged(v, &k, 0, 7)? as u8,
                Value::String(s) => parse_log_level(s).map_err(|m| doc.at(v, &k, m))?,
                other => {
                    return Err(doc.at(
                        v,
                        &k,
                        format!(
                            "expected 0-7 or a syslog level name, found {}",
                            other.type_str()
                        ),
                    ));
                }
            }
        }
    };

    let mut iface_lines = [line; 4];
    let mut ifaces = |pos: &Field, neg: &Field, name: &str, slot: usize| {
        for (f, i) in [(pos, slot), (neg, slot + 1)] {
            if let Some(v) = f {
                iface_lines[i] = doc.line(v.span().start);
            }
        }
        matched(doc, pos, neg, name, &key, |v, k| {
            let i = parse_iface_value(doc, v, k)?;
            let not_here = match (name, chain) {
                ("iif", Chain::Output) => Some(
                    "not allowed on chain output (locally generated packets have no input \
                     interface)",
                ),
                ("oif", Chain::Input) => Some(
                    "not allowed on chain input (packets for the host have no output interface)",
                ),
                _ => None,
            };
            if let Some(why) = not_here {
                return Err(doc.at(v, k, why));
            }
            // Packets arrive only on configured interfaces: an exact input
            // interface that is not one is a typo. Output interfaces can be
            // any (the host routes to unmanaged ones too).
            if name == "iif" {
                let mut known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
                known.sort_unstable();
                if !i.wildcard && !interfaces.contains_key(&i.name) {
                    return Err(doc.at(
                        v,
                        k,
                        format!(
                            "{:?} is not a configured [[interface]] (configured: {})",
                            i.name,
                            known.join(", ")
                        ),
                    ));
                }
                if i.wildcard && !known.iter().any(|n| n.starts_with(&i.name)) {
                    log::warn!(
                        "{}:{}: {k}: {i} names no configured [[interface]] (configured: {}), \
                         and packets arrive only on those",
                        doc.origin,
                        doc.line(v.span().start),
                        known.join(", ")
                    );
                }
            }
            Ok(i)
        })
    };
    let iif = ifaces(&raw.iif, &raw.not_iif, "iif", 0)?;
    let oif = ifaces(&raw.oif, &raw.not_oif, "oif", 2)?;

    let ctstate = match &raw.ctstate {
        None => Vec::new(),
        Some(v) => {
            let Value::Array(items) = v.get_ref() else {
                return Err(doc.at(
                    v,
                    &key("ctstate"),
                    format!(
                        "expected a list of states, found {}",
                        v.get_ref().type_str()
                    ),
                ));
            };
            if items.is_empty() {
                return Err(doc.at(v, &key("ctstate"), "empty list would match nothing"));
            }
            let mut states = Vec::new();
            for item in items {
                // Array elements carry no spans of their own; the list's
                // line is close enough.
                let item = Spanned::new(v.span(), item.clone());
                states.push(doc.keyword(&item, &key("ctstate"), CTSTATES)?);
            }
            if let Some(s) = states
                .iter()
                .find(|s| matches!(s, CtState::Established | CtState::Related))
            {
                log::warn!(
                    "{}:{}: {}: {} never matches: conntrack passes ESTABLISHED and RELATED \
                     packets before the rules are consulted",
                    doc.origin,
                    doc.line(v.span().start),
                    key("ctstate"),
                    ctstate_name(*s)
                );
            }
            states
        }
    };

    let comment = match &raw.comment {
        Some(v) => Some(doc.string(v, &key("comment"))?.to_string()),
        None => None,
    };

    Ok(RuleConfig {
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
        comment,
        line,
        index,
        origin: doc.origin.to_string(),
        key: prefix.to_string(),
        iface_lines,
    })
}

/// A chain's policy as an `iptables` line's `-P` sets it.
type ChainPolicy = (Chain, RuleAction);

/// The `iptables` lines (see [`crate::iptables::config_lines`]): their
/// rules, numbered on from `first_index`, and the policies `-P` sets.
/// `explicit_policy` holds the line of each `[policy]` key given.
fn validate_iptables(
    doc: &Doc,
    list: &Spanned<Value>,
    first_index: usize,
    interfaces: &HashMap<String, usize>,
    explicit_policy: [Option<usize>; 3],
) -> Result<(Vec<RuleConfig>, Vec<ChainPolicy>), ConfigError> {
    let Value::Array(_) = list.get_ref() else {
        return Err(doc.at(
            list,
            "iptables",
            format!(
                "expected a list of iptables command lines, found {}",
                list.get_ref().type_str()
            ),
        ));
    };
    // Read again for the entries' own spans, which a `Value` array lacks.
    #[derive(Deserialize)]
    struct Entries {
        iptables: Vec<Spanned<Value>>,
    }
    let entries: Entries = toml::from_str(doc.text).map_err(|e| doc.toml_error(&e))?;
    let mut texts: Vec<(&str, usize)> = Vec::new();
    for (i, v) in entries.iptables.iter().enumerate() {
        let k = format!("iptables[{}]", i + 1);
        texts.push((doc.string(v, &k)?, doc.line(v.span().start)));
    }
    let at = |i: Option<usize>, message: String| match i {
        Some(i) if (1..=texts.len()).contains(&i) => {
            doc.invalid(texts[i - 1].1, format!("iptables[{i}]"), message)
        }
        _ => doc.invalid(doc.line(list.span().start), "iptables", message),
    };
    let lines: Vec<&str> = texts.iter().map(|(t, _)| *t).collect();
    let resolved = iptables::config_lines(&lines).map_err(|e| at(e.line, e.message))?;

    let mut policies = Vec::new();
    for (hook, policy, i) in resolved.policies {
        let chain = match hook {
            iptables::Hook::Input => Chain::Input,
            iptables::Hook::Forward => Chain::Forward,
            _ => Chain::Output,
        };
        if let Some(l) = explicit_policy[chain as usize] {
            return Err(at(
                Some(i),
                format!(
                    "-P {hook} conflicts with policy.{} (line {l}); set each policy in one place",
                    chain_name(chain)
                ),
            ));
        }
        let action = match policy {
            iptables::Policy::Accept => RuleAction::Accept,
            iptables::Policy::Drop => RuleAction::Drop,
        };
        policies.push((chain, action));
    }

    #[derive(Deserialize)]
    struct OneRule {
        rule: Vec<Spanned<RawRule>>,
    }
    let mut rules = Vec::new();
    for (i, body) in resolved.rules {
        let k = format!("iptables[{i}]");
        let text = format!("[[rule]]\n{body}");
        let block_doc = Doc::new(&text, doc.origin);
        let parsed: OneRule = toml::from_str(&text).map_err(|e| {
            at(
                Some(i),
                format!("internal error: rule block does not parse: {e}"),
            )
        })?;
        let raw = parsed
            .rule
            .first()
            .ok_or_else(|| at(Some(i), "internal error: empty rule block".into()))?;
        let mut rule = validate_rule(&block_doc, raw, &k, first_index + rules.len(), interfaces)
            .map_err(|e| match e {
                // The block's key names the iptables option it came from.
                ConfigError::Invalid {
                    key: bad, message, ..
                } => {
                    let field = bad.rsplit('.').next().unwrap_or(&bad);
                    let opt = match field {
                        "iif" => "-i",
                        "not_iif" => "! -i",
                        "oif" => "-o",
                        "not_oif" => "! -o",
                        other => other,
                    };
                    at(Some(i), format!("{opt}: {message}"))
                }
                other => other,
            })?;
        rule.relocate(k, texts[i - 1].1);
        rules.push(rule);
    }
    Ok((rules, policies))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use firewall_common::{
        FAMILY_V4, FAMILY_V6,
        rule::{MatchInput, model::RejectWith},
    };

    use super::*;

    const SAMPLE: &str = r#"xdp_mode = "auto"          # optional: auto | native | generic

[[interface]]
name = "eth1"
role = "lan"               # lan | wan

[[interface]]
name = "eth0"
role = "wan"

[conntrack]                # optional
max_entries = 262144

[timeouts]
tcp_established = 432000
udp = 30

[policy]
input = "drop"

[[rule]]
chain = "input"
proto = "tcp"
family = "ipv4"
src = "10.0.0.0/8"
dst = "192.168.1.1"
sport = 22
dport = "8000-8100"
iif = "eth0"
ctstate = ["new"]
action = "accept"
comment = "ssh"
"#;

    const IFACES: &str = "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\n";

    /// `IFACES` (lines 1-3) followed by `rest`, which therefore starts on
    /// line 4.
    fn with_ifaces(rest: &str) -> String {
        format!("{IFACES}{rest}")
    }

    fn err(text: &str) -> String {
        parse(text, "fw.toml").unwrap_err().to_string()
    }

    fn assert_err(text: &str, expected: &[&str]) {
        let msg = err(text);
        assert!(!msg.contains('\n'), "multi-line error: {msg}");
        for e in expected {
            assert!(msg.contains(e), "{msg:?} does not contain {e:?}");
        }
    }

    fn one_rule(body: &str) -> RuleConfig {
        let text = with_ifaces(&format!("[[rule]]\n{body}"));
        let mut config = parse(&text, "fw.toml").unwrap();
        assert_eq!(config.rules.len(), 1);
        config.rules.pop().unwrap()
    }

    /// The test host's interfaces: `eth0` and `eth1` are configured in
    /// the tests' configs, `wlan0` and `ethx` are not.
    fn ifaces() -> Vec<(String, u32)> {
        [
            ("lo", 1),
            ("eth0", 2),
            ("eth1", 3),
            ("wlan0", 4),
            ("ethx", 5),
        ]
        .into_iter()
        .map(|(n, i)| (n.to_string(), i))
        .collect()
    }

    #[test]
    fn sample_parses() {
        let c = parse(SAMPLE, "fw.toml").unwrap();
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert_eq!(
            c.interfaces,
            vec![
                InterfaceConfig {
                    name: "eth1".into(),
                    role: Role::Lan,
                    nat: None,
                    nat_ports: DEFAULT_NAT_PORTS,
                },
                InterfaceConfig {
                    name: "eth0".into(),
                    role: Role::Wan,
                    nat: None,
                    nat_ports: DEFAULT_NAT_PORTS,
                },
            ]
        );
        assert_eq!(c.max_entries, 262_144);
        assert_eq!(c.timeouts, Timeouts::NETFILTER);
        assert_eq!(
            c.policy,
            [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept]
        );
        assert_eq!(c.rules.len(), 1);
        let r = &c.rules[0];
        assert_eq!(r.chain, Chain::Input);
        assert_eq!(r.action, RuleAction::Accept);
        assert_eq!(r.family, Some(Family::V4));
        assert_eq!(r.proto, Match::is(IPPROTO_TCP));
        assert_eq!(
            r.src,
            Match::is(Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8
            })
        );
        assert_eq!(
            r.dst,
            Match::is(Cidr {
                addr: "192.168.1.1".parse().unwrap(),
                prefix: 32
            })
        );
        assert_eq!(r.sport, Match::is(PortRange { lo: 22, hi: 22 }));
        assert_eq!(r.dport, Match::is(PortRange { lo: 8000, hi: 8100 }));
        assert_eq!(
            r.iif,
            Match::is(Iface {
                name: "eth0".into(),
                wildcard: false
            })
        );
        assert_eq!(r.ctstate, vec![CtState::New]);
        assert_eq!(r.comment.as_deref(), Some("ssh"));
        assert_eq!(r.line, 21);
        assert_eq!(r.index, 1);
        assert_eq!(
            r.summary(),
            "input tcp sport 22 dport 8000-8100 src 10.0.0.0/8 dst 192.168.1.1 iif eth0 \
             ctstate new -> accept /* ssh */"
        );
    }

    #[test]
    fn fast_path_defaults_on_and_can_be_switched_off() {
        assert!(parse(IFACES, "fw.toml").unwrap().fast_path);
        let on = parse(&format!("fast_path = true\n{IFACES}"), "fw.toml").unwrap();
        assert!(on.fast_path);
        let off = parse(&format!("fast_path = false\n{IFACES}"), "fw.toml").unwrap();
        assert!(!off.fast_path);
    }

    #[test]
    fn fast_path_must_be_a_boolean() {
        let err = parse(&format!("fast_path = \"yes\"\n{IFACES}"), "fw.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "fw.toml:1: fast_path: expected true or false, found string"
        );
    }

    #[test]
    fn defaults_when_sections_absent() {
        let c = parse(IFACES, "fw.toml").unwrap();
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert_eq!(c.max_entries, firewall_common::DEFAULT_CT_ENTRIES);
        assert_eq!(c.timeouts, Timeouts::NETFILTER);
        assert_eq!(
            c.policy,
            [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept]
        );
        assert!(c.rules.is_empty());
        assert!(c.port_forwards.is_empty());
        // Helpers are off unless a [[helper]] assigns one.
        assert!(c.helpers.is_empty());
        assert_eq!(c.interfaces[0].nat, None);
        assert_eq!(
            c.interfaces[0].nat_ports,
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
    }

    #[test]
    fn overrides_apply() {
        let text = format!(
            "xdp_mode = \"generic\"\n{IFACES}[timeouts]\nudp = 60\ngeneric = 1\n\
             [policy]\nforward = \"accept\"\noutput = \"drop\"\n"
        );
        let c = parse(&text, "fw.toml").unwrap();
        assert_eq!(c.xdp_mode, XdpMode::Generic);
        assert_eq!(c.xdp_mode.to_string(), "generic");
        assert_eq!(c.timeouts.udp, 60);
        assert_eq!(c.timeouts.generic, 1);
        assert_eq!(c.timeouts.tcp_established, 432_000);
        assert_eq!(
            c.policy,
            [RuleAction::Drop, RuleAction::Accept, RuleAction::Drop]
        );
    }

    #[test]
    fn reject_on_output_is_refused() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"output\"\nproto = \"tcp\"\naction = \"reject\"\n"),
            &["fw.toml:7: rule[1].action: reject is not supported on chain output"],
        );
    }

    #[test]
    fn unknown_key() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nprot = \"tcp\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].prot: unknown key"],
        );
        assert_err(
            &with_ifaces("[timeouts]\nudp_strem = 5\n"),
            &["fw.toml:5: timeouts.udp_strem: unknown key"],
        );
        assert_err(
            &format!("colour = 1\n{IFACES}"),
            &["fw.toml:1: colour: unknown key"],
        );
        // After a table header a key belongs to that table.
        assert_err(
            &with_ifaces("colour = 1\n"),
            &[
                "fw.toml:4: interface[1].colour: unknown key (expected one of `name`, `role`, \
                 `masquerade`, `snat`, `nat_ports`)",
            ],
        );
        assert_err(
            "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\nmtu = 9000\n",
            &["fw.toml:4: interface[1].mtu: unknown key"],
        );
    }

    #[test]
    fn bad_role() {
        assert_err(
            "[[interface]]\nname = \"eth0\"\nrole = \"dmz\"\n",
            &["fw.toml:3: interface[1].role: unknown value \"dmz\" (expected lan or wan)"],
        );
    }

    #[test]
    fn bad_cidr() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nsrc = \"10.0.0.0/33\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].src: ", "prefix length must be 0-32"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\ndst = \"10.0.0\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].dst: ", "not an IP address"],
        );
    }

    #[test]
    fn host_bits_set() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nsrc = \"10.0.0.1/8\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].src: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"],
        );
    }

    #[test]
    fn reversed_range() {
        let rule = "[[rule]]\nchain = \"input\"\nproto = \"tcp\"\naction = \"drop\"\n";
        let text = with_ifaces(&format!("{rule}{rule}dport = \"9000-8000\"\n"));
        assert_err(
            &text,
            &["fw.toml:12: rule[2].dport: port range 9000-8000 is reversed"],
        );
    }

    #[test]
    fn bad_ports() {
        let base = "[[rule]]\nchain = \"input\"\nproto = \"udp\"\naction = \"drop\"\n";
        assert_err(
            &with_ifaces(&format!("{base}sport = 70000\n")),
            &["fw.toml:8: rule[1].sport: port 70000 is out of range"],
        );
        assert_err(
            &with_ifaces(&format!("{base}sport = \"1-2-3\"\n")),
            &["fw.toml:8: rule[1].sport: invalid port range"],
        );
    }

    #[test]
    fn sport_with_icmp() {
        assert_err(
            &with_ifaces(
                "[[rule]]\nchain = \"input\"\nproto = \"icmp\"\nsport = 1\naction = \"drop\"\n",
            ),
            &["fw.toml:7: rule[1].sport: ports need proto tcp or udp, not icmp"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\ndport = 1\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].dport: ports need proto tcp or udp"],
        );
    }

    #[test]
    fn iif_unknown() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\niif = \"eth9\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].iif: \"eth9\" is not a configured [[interface]]"],
        );
    }

    #[test]
    fn iif_on_output_chain() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"output\"\niif = \"eth0\"\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].iif: not allowed on chain output"],
        );
    }

    #[test]
    fn duplicate_interface() {
        assert_err(
            &with_ifaces("[[interface]]\nname = \"eth0\"\nrole = \"lan\"\n"),
            &["fw.toml:5: interface[2].name: duplicate interface \"eth0\" (first at line 2)"],
        );
    }

    #[test]
    fn interface_name_rules() {
        assert_err(
            "[[interface]]\nname = \"abcdefghijklmnop\"\nrole = \"lan\"\n",
            &["fw.toml:2: interface[1].name: ", "must be 1-15 bytes"],
        );
        assert_err(
            "[[interface]]\nname = \"\"\nrole = \"lan\"\n",
            &["fw.toml:2: interface[1].name: "],
        );
        assert_err(
            "[[interface]]\nrole = \"lan\"\n",
            &["fw.toml:1: interface[1].name: missing"],
        );
        assert_err(
            "xdp_mode = \"auto\"\n",
            &["fw.toml:1: interface: at least one"],
        );
    }

    #[test]
    fn family_conflict() {
        assert_err(
            &with_ifaces(
                "[[rule]]\nchain = \"forward\"\nsrc = \"10.0.0.0/8\"\ndst = \"2001:db8::/32\"\n\
                 action = \"drop\"\n",
            ),
            &["fw.toml:7: rule[1].dst: 2001:db8::/32 is ipv6 but src 10.0.0.0/8 is ipv4"],
        );
        assert_err(
            &with_ifaces(
                "[[rule]]\nchain = \"input\"\nfamily = \"ipv6\"\nsrc = \"10.0.0.0/8\"\naction = \"drop\"\n",
            ),
            &["fw.toml:7: rule[1].src: 10.0.0.0/8 is ipv4 but family is ipv6"],
        );
        assert_err(
            &with_ifaces(
                "[[rule]]\nchain = \"input\"\nproto = \"icmp\"\nsrc = \"::1\"\naction = \"drop\"\n",
            ),
            &["fw.toml:6: rule[1].proto: icmp only exists in ipv4"],
        );
    }

    #[test]
    fn too_many_rules() {
        let rule = "[[rule]]\nchain = \"input\"\naction = \"drop\"\n";
        let text = with_ifaces(&rule.repeat(MAX_RULES as usize));
        assert_eq!(
            parse(&text, "fw.toml").unwrap().rules.len(),
            MAX_RULES as usize
        );
        let text = with_ifaces(&rule.repeat(MAX_RULES as usize + 1));
        let line = 4 + 3 * MAX_RULES;
        assert_err(
            &text,
            &[&format!(
                "fw.toml:{line}: rule[{}]: too many rules (at most {MAX_RULES})",
                MAX_RULES + 1
            )],
        );
    }

    #[test]
    fn zero_timeout() {
        assert_err(
            &with_ifaces("[timeouts]\ntcp_close = 0\n"),
            &["fw.toml:5: timeouts.tcp_close: 0 is out of range (1-4294967295)"],
        );
        assert_err(
            &with_ifaces("[timeouts]\nudp = \"30\"\n"),
            &["fw.toml:5: timeouts.udp: expected an integer, found string"],
        );
    }

    #[test]
    fn small_conntrack() {
        assert_err(
            &with_ifaces("[conntrack]\nmax_entries = 100\n"),
            &["fw.toml:5: conntrack.max_entries: 100 is out of range (1024-"],
        );
    }

    #[test]
    fn toml_syntax_error() {
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\naction = \"drop\"\n"),
            &["fw.toml:5:", "invalid basic string"],
        );
        assert_err("a = 1\na = 2\n", &["fw.toml:2:1: duplicate key"]);
    }

    #[test]
    fn missing_and_mistyped_rule_fields() {
        assert_err(
            &with_ifaces("\n[[rule]]\nchain = \"input\"\n"),
            &["fw.toml:5: rule[1].action: missing"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = 1\naction = \"drop\"\n"),
            &["fw.toml:5: rule[1].chain: expected a string, found integer"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nproto = 0\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].proto: 0 is out of range (1-255)"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nctstate = []\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].ctstate: empty list"],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nctstate = [\"fresh\"]\naction = \"drop\"\n"),
            &["fw.toml:6: rule[1].ctstate: unknown value \"fresh\""],
        );
        assert_err(
            &with_ifaces("[[rule]]\nchain = \"input\"\nsrc.a = 1\n"),
            &["fw.toml:6: rule[1]: unexpected sub-table or dotted key \"a\""],
        );
        assert_err(
            &with_ifaces("[timeouts.tcp]\nx = 1\n"),
            &["fw.toml:4:11: unknown field `tcp`"],
        );
    }

    fn v4b(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn to_match_v4_cidr() {
        let r = one_rule("chain = \"forward\"\nsrc = \"10.1.0.0/16\"\naction = \"drop\"\n");
        let rule = r.to_match(&ifaces()).unwrap();
        assert_eq!(rule.family, Some(FAMILY_V4));
        assert_eq!(rule.chain, Chain::Forward);
        assert_eq!(rule.action, RuleAction::Drop);
        assert!(rule.proto.is_empty());
        assert_eq!(
            rule.src,
            vec![Cond::is(Prefix::new(v4b([10, 1, 0, 0]), 16))]
        );
        let p = MatchInput {
            chain: Chain::Forward as u8,
            src: v4b([10, 1, 200, 3]),
            ..MatchInput::default()
        };
        assert!(rule.matches(&p));
        assert!(!rule.matches(&MatchInput {
            src: v4b([10, 2, 0, 1]),
            ..p
        }));
        assert_eq!(r.summary(), "forward src 10.1.0.0/16 -> drop");
    }

    #[test]
    fn to_match_v6_cidr() {
        let r = one_rule("chain = \"input\"\ndst = \"2001:db8:ab00::/40\"\naction = \"accept\"\n");
        let rule = r.to_match(&ifaces()).unwrap();
        assert_eq!(rule.family, Some(FAMILY_V6));
        let inside: Ipv6Addr = "2001:db8:abff::1".parse().unwrap();
        let outside: Ipv6Addr = "2001:db8:ac00::1".parse().unwrap();
        let p = MatchInput {
            chain: Chain::Input as u8,
            v6: true,
            dst: inside.octets(),
            ..MatchInput::default()
        };
        assert!(rule.matches(&p));
        assert!(!rule.matches(&MatchInput {
            dst: outside.octets(),
            ..p
        }));
        // An IPv4 packet must not match by accident of its zero bytes.
        assert!(!rule.matches(&MatchInput { v6: false, ..p }));
    }

    #[test]
    fn to_match_port_range() {
        let r = one_rule(
            "chain = \"input\"\nproto = \"udp\"\ndport = \"5000-5010\"\nsport = 53\naction = \"accept\"\n",
        );
        let rule = r.to_match(&ifaces()).unwrap();
        assert_eq!(rule.proto, vec![Cond::is(IPPROTO_UDP)]);
        assert_eq!(rule.family, None);
        assert_eq!(rule.dport, vec![Cond::is((5000, 5010))]);
        assert_eq!(rule.sport, vec![Cond::is((53, 53))]);
        assert_eq!(r.summary(), "input udp sport 53 dport 5000-5010 -> accept");
    }

    #[test]
    fn to_match_ctstate() {
        let r = one_rule(
            "chain = \"forward\"\nctstate = [\"new\", \"invalid\", \"untracked\"]\naction = \"drop\"\n",
        );
        let rule = r.to_match(&ifaces()).unwrap();
        assert_eq!(
            rule.ctstate,
            CtState::New.bit() | CtState::Invalid.bit() | CtState::Untracked.bit()
        );
        assert_eq!(r.summary(), "forward ctstate new,invalid,untracked -> drop");
    }

    #[test]
    fn to_match_iif() {
        let r =
            one_rule("chain = \"input\"\nfamily = \"ipv6\"\niif = \"eth0\"\naction = \"accept\"\n");
        let rule = r.to_match(&ifaces()).unwrap();
        assert_eq!(rule.iif, vec![Cond::is(2)]);
        assert_eq!(rule.family, Some(FAMILY_V6));
        assert_eq!(r.summary(), "input ipv6 iif eth0 -> accept");

        let e = r.to_match(&[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "fw.toml:7: rule[1].iif: interface \"eth0\" does not exist"
        );
    }

    #[test]
    fn numeric_proto() {
        let r = one_rule("chain = \"input\"\nproto = 47\naction = \"drop\"\n");
        assert_eq!(r.to_match(&ifaces()).unwrap().proto, vec![Cond::is(47)]);
        assert_eq!(r.summary(), "input 47 -> drop");
        let r = one_rule("chain = \"input\"\nproto = 6\ndport = 0\naction = \"drop\"\n");
        assert_eq!(r.dport, Match::is(PortRange { lo: 0, hi: 0 }));
    }

    #[test]
    fn load_reads_file_and_reports_missing() {
        let dir = std::env::temp_dir().join(format!("fwcfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fw.toml");
        std::fs::write(&path, SAMPLE).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.rules.len(), 1);
        std::fs::write(&path, "[[interface]]\nname = \"eth0\"\nrole = \"x\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3: interface[1].role:", path.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    const NAT_SAMPLE: &str = r#"[[interface]]
name = "eth1"
role = "lan"

[[interface]]
name = "eth0"
role = "wan"
masquerade = true
nat_ports = "20000-29999"

[[interface]]
name = "eth2"
role = "wan"
snat = "203.0.113.5"
masquerade = false

[[interface]]
name = "ppp0"
role = "wan"
masquerade = true

[[port_forward]]
proto = "tcp"
port = 8080
to = "192.168.1.10:80"
comment = "web"

[[port_forward]]
proto = "udp"
port = "5000-5100"
to = "10.0.0.5"

[[port_forward]]
proto = "udp"
port = "6000-6002"
to = "10.0.0.5:7000"

[[port_forward]]
proto = "tcp"
port = "22"
to = "192.168.1.11"

[[port_forward]]
proto = "tcp"
port = 8081
to = "192.168.1.10:65535"
"#;

    /// Two interfaces (lines 1-6, eth0 wan and eth1 lan) followed by `rest`,
    /// which therefore starts on line 7.
    fn with_wan_lan(rest: &str) -> String {
        format!("{IFACES}[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{rest}")
    }

    /// A `[[port_forward]]` block of four lines.
    fn forward(proto: &str, port: &str, to: &str) -> String {
        format!("[[port_forward]]\nproto = \"{proto}\"\nport = {port}\nto = \"{to}\"\n")
    }

    #[test]
    fn nat_sample_parses() {
        let c = parse(NAT_SAMPLE, "fw.toml").unwrap();
        let nat: Vec<_> = c
            .interfaces
            .iter()
            .map(|i| (i.name.as_str(), i.nat, i.nat_ports))
            .collect();
        assert_eq!(
            nat,
            vec![
                ("eth1", None, DEFAULT_NAT_PORTS),
                (
                    "eth0",
                    Some(Nat::Masquerade),
                    PortRange {
                        lo: 20000,
                        hi: 29999
                    }
                ),
                (
                    "eth2",
                    Some(Nat::Snat(Ipv4Addr::new(203, 0, 113, 5))),
                    DEFAULT_NAT_PORTS
                ),
                ("ppp0", Some(Nat::Masquerade), DEFAULT_NAT_PORTS),
            ]
        );
        assert_eq!(
            DEFAULT_NAT_PORTS,
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
        assert_eq!(Nat::Masquerade.to_string(), "masquerade");
        assert_eq!(
            Nat::Snat(Ipv4Addr::new(203, 0, 113, 5)).to_string(),
            "snat 203.0.113.5"
        );

        let f = &c.port_forwards;
        assert_eq!(f.len(), 5);
        assert_eq!(
            f[0],
            PortForward {
                proto: IPPROTO_TCP,
                ports: PortRange { lo: 8080, hi: 8080 },
                to_addr: Ipv4Addr::new(192, 168, 1, 10),
                to_port: Some(80),
                comment: Some("web".into()),
                line: 22,
                index: 1,
            }
        );
        assert_eq!(f[0].mappings().collect::<Vec<_>>(), vec![(8080, 80)]);
        assert_eq!(f[0].summary(), "tcp 8080 -> 192.168.1.10:80 /* web */");

        // A range without a target port keeps every port.
        assert_eq!(f[1].proto, IPPROTO_UDP);
        assert_eq!(f[1].ports, PortRange { lo: 5000, hi: 5100 });
        assert_eq!(f[1].to_addr, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(f[1].to_port, None);
        assert_eq!(f[1].comment, None);
        assert_eq!((f[1].line, f[1].index), (28, 2));
        let m: Vec<_> = f[1].mappings().collect();
        assert_eq!(m.len(), 101);
        assert_eq!(m[0], (5000, 5000));
        assert_eq!(m[100], (5100, 5100));
        assert!(m.iter().all(|(a, b)| a == b));
        assert_eq!(f[1].summary(), "udp 5000-5100 -> 10.0.0.5 (ports kept)");

        // A range with a target port maps onto consecutive ports.
        assert_eq!(f[2].to_port, Some(7000));
        assert_eq!(
            f[2].mappings().collect::<Vec<_>>(),
            vec![(6000, 7000), (6001, 7001), (6002, 7002)]
        );
        assert_eq!(f[2].summary(), "udp 6000-6002 -> 10.0.0.5:7000-7002");

        // A single port given as a string, kept.
        assert_eq!(f[3].ports, PortRange { lo: 22, hi: 22 });
        assert_eq!(f[3].mappings().collect::<Vec<_>>(), vec![(22, 22)]);
        assert_eq!(f[3].summary(), "tcp 22 -> 192.168.1.11 (ports kept)");

        // The last target port may be 65535.
        assert_eq!(f[4].mappings().collect::<Vec<_>>(), vec![(8081, 65535)]);
        assert_eq!(f[4].index, 5);
    }

    #[test]
    fn forward_range_mapping_arithmetic() {
        let text = with_ifaces(&forward("tcp", "\"5000-5100\"", "10.0.0.5:6000"));
        let c = parse(&text, "fw.toml").unwrap();
        let pf = &c.port_forwards[0];
        let m: Vec<_> = pf.mappings().collect();
        assert_eq!(m.len(), 101);
        assert_eq!(m.first(), Some(&(5000, 6000)));
        assert_eq!(m[50], (5050, 6050));
        assert_eq!(m.last(), Some(&(5100, 6100)));
        assert!(m.iter().all(|&(w, t)| t - w == 1000));
        assert_eq!(pf.summary(), "tcp 5000-5100 -> 10.0.0.5:6000-6100");

        // Right up to the top of the port space.
        let text = with_ifaces(&forward("tcp", "\"5000-5100\"", "10.0.0.5:65435"));
        let c = parse(&text, "fw.toml").unwrap();
        assert_eq!(c.port_forwards[0].mappings().last(), Some((5100, u16::MAX)));

        // Exactly the limit of forwarded ports is fine.
        let text = with_ifaces(&format!(
            "{}{}",
            forward("tcp", "\"1-8192\"", "10.0.0.5"),
            forward("udp", "\"1-8192\"", "10.0.0.5")
        ));
        assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);

        // The same ports on the other protocol do not overlap.
        let text = with_ifaces(&format!(
            "{}{}",
            forward("tcp", "80", "10.0.0.5"),
            forward("udp", "80", "10.0.0.6")
        ));
        assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);
    }

    #[test]
    fn nat_on_lan_interface() {
        assert_err(
            "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\nmasquerade = true\n",
            &[
                "fw.toml:4: interface[1].masquerade: NAT is only done on wan interfaces, \
               and \"eth1\" has role lan",
            ],
        );
        assert_err(
            &with_ifaces("[[interface]]\nname = \"eth1\"\nsnat = \"10.0.0.1\"\nrole = \"lan\"\n"),
            &["fw.toml:6: interface[2].snat: NAT is only done on wan interfaces"],
        );
    }

    #[test]
    fn masquerade_and_snat() {
        assert_err(
            &format!("{IFACES}masquerade = true\nsnat = \"203.0.113.5\"\n"),
            &["fw.toml:5: interface[1].snat: cannot be combined with masquerade = true (line 4)"],
        );
        assert_err(
            &format!("{IFACES}masquerade = \"yes\"\n"),
            &["fw.toml:4: interface[1].masquerade: expected true or false, found string"],
        );
    }

    #[test]
    fn snat_not_ipv4() {
        assert_err(
            &format!("{IFACES}snat = \"2001:db8::1\"\n"),
            &[
                "fw.toml:4: interface[1].snat: 2001:db8::1: IPv6 NAT is not supported; \
               IPv6 stays stateful but untranslated",
            ],
        );
        assert_err(
            &format!("{IFACES}snat = \"203.0.113.0/24\"\n"),
            &["fw.toml:4: interface[1].snat: \"203.0.113.0/24\" is not an IPv4 address"],
        );
        assert_err(
            &format!("{IFACES}snat = \"0.0.0.0\"\n"),
            &["fw.toml:4: interface[1].snat: 0.0.0.0 is the unspecified address"],
        );
        assert_err(
            &format!("{IFACES}snat = 3405803781\n"),
            &["fw.toml:4: interface[1].snat: expected a string, found integer"],
        );
    }

    #[test]
    fn bad_nat_ports() {
        assert_err(
            &format!("{IFACES}masquerade = true\nnat_ports = \"60000-50000\"\n"),
            &["fw.toml:5: interface[1].nat_ports: port range 60000-50000 is reversed"],
        );
        assert_err(
            &format!("{IFACES}masquerade = true\nnat_ports = \"0-1000\"\n"),
            &["fw.toml:5: interface[1].nat_ports: 0-1000 includes port 0"],
        );
        assert_err(
            &format!("{IFACES}masquerade = true\nnat_ports = 0\n"),
            &["fw.toml:5: interface[1].nat_ports: 0 includes port 0"],
        );
        assert_err(
            &format!("{IFACES}masquerade = true\nnat_ports = \"1024-70000\"\n"),
            &["fw.toml:5: interface[1].nat_ports: port 70000 is out of range"],
        );
        // A single port is a (small) range.
        let c = parse(
            &format!("{IFACES}masquerade = true\nnat_ports = 4000\n"),
            "fw.toml",
        )
        .unwrap();
        assert_eq!(c.interfaces[0].nat_ports, PortRange { lo: 4000, hi: 4000 });
    }

    #[test]
    fn forward_to_not_ipv4() {
        let ipv6 = "IPv6 NAT is not supported; IPv6 stays stateful but untranslated";
        for to in ["2001:db8::5", "[2001:db8::5]:80"] {
            assert_err(
                &with_wan_lan(&forward("tcp", "80", to)),
                &[&format!("fw.toml:10: port_forward[1].to: {to}: {ipv6}")],
            );
        }
        for to in ["web.lan:80", "10.0.0.5:", "10.0.0.5:http", "10.0.0.0/24"] {
            assert_err(
                &with_wan_lan(&forward("tcp", "80", to)),
                &[&format!(
                    "fw.toml:10: port_forward[1].to: {to:?} is not an IPv4 address with an \
                     optional :PORT"
                )],
            );
        }
        assert_err(
            &with_wan_lan(&forward("tcp", "80", "10.0.0.5:0")),
            &["fw.toml:10: port_forward[1].to: port 0 is out of range (1-65535)"],
        );
        assert_err(
            &with_wan_lan(&forward("tcp", "80", "10.0.0.5:65536")),
            &["fw.toml:10: port_forward[1].to: port 65536 is out of range (1-65535)"],
        );
        assert_err(
            &with_wan_lan(&forward("tcp", "80", "127.0.0.1:80")),
            &["fw.toml:10: port_forward[1].to: 127.0.0.1 is a loopback address"],
        );
        assert_err(
            &with_wan_lan(&forward("tcp", "80", "255.255.255.255")),
            &["fw.toml:10: port_forward[1].to: 255.255.255.255 is the broadcast address"],
        );
        assert_err(
            &with_wan_lan(&forward("tcp", "80", "224.0.0.1")),
            &["fw.toml:10: port_forward[1].to: 224.0.0.1 is a multicast address"],
        );
    }

    #[test]
    fn forward_target_range_overflows() {
        assert_err(
            &with_wan_lan(&forward("udp", "\"5000-5100\"", "10.0.0.5:65500")),
            &[
                "fw.toml:10: port_forward[1].to: port range 5000-5100 mapped from 65500 \
               would end at 65600, past 65535",
            ],
        );
    }

    #[test]
    fn bad_forward_port() {
        let pf = |port: &str| with_wan_lan(&forward("tcp", port, "10.0.0.5"));
        assert_err(
            &pf("\"9000-8000\""),
            &["fw.toml:9: port_forward[1].port: port range 9000-8000 is reversed"],
        );
        assert_err(
            &pf("0"),
            &["fw.toml:9: port_forward[1].port: port 0 cannot be forwarded"],
        );
        assert_err(
            &pf("\"0-10\""),
            &["fw.toml:9: port_forward[1].port: port 0 cannot be forwarded"],
        );
        assert_err(
            &pf("65536"),
            &["fw.toml:9: port_forward[1].port: port 65536 is out of range"],
        );
        assert_err(
            &pf("\"80,443\""),
            &["fw.toml:9: port_forward[1].port: invalid port range \"80,443\""],
        );
        assert_err(
            &pf("[80]"),
            &["fw.toml:9: port_forward[1].port: expected a port number or \"LO-HI\" string"],
        );
    }

    #[test]
    fn bad_forward_fields() {
        assert_err(
            &with_wan_lan(&forward("icmp", "80", "10.0.0.5")),
            &["fw.toml:8: port_forward[1].proto: unknown value \"icmp\" (expected tcp or udp)"],
        );
        assert_err(
            &with_wan_lan("[[port_forward]]\nport = 80\nto = \"10.0.0.5\"\n"),
            &["fw.toml:7: port_forward[1].proto: missing (required)"],
        );
        assert_err(
            &with_wan_lan("[[port_forward]]\nproto = \"tcp\"\nto = \"10.0.0.5\"\n"),
            &["fw.toml:7: port_forward[1].port: missing (required)"],
        );
        assert_err(
            &with_wan_lan("[[port_forward]]\nproto = \"tcp\"\nport = 80\n"),
            &["fw.toml:7: port_forward[1].to: missing (required)"],
        );
        assert_err(
            &with_wan_lan(&format!(
                "{}comment = 5\n",
                forward("tcp", "80", "10.0.0.5")
            )),
            &["fw.toml:11: port_forward[1].comment: expected a string, found integer"],
        );
        assert_err(
            &with_wan_lan(&format!(
                "{}iif = \"eth0\"\n",
                forward("tcp", "80", "10.0.0.5")
            )),
            &["fw.toml:11: port_forward[1].iif: unknown key"],
        );
    }

    #[test]
    fn overlapping_forwards() {
        let text = with_wan_lan(&format!(
            "{}{}{}",
            forward("tcp", "8080", "10.0.0.5"),
            forward("udp", "\"8000-8100\"", "10.0.0.6"),
            forward("tcp", "\"8000-8100\"", "10.0.0.7")
        ));
        assert_err(
            &text,
            &[
                "fw.toml:17: port_forward[3].port: tcp 8000-8100 overlaps port_forward[1] \
               (tcp 8080, line 7)",
            ],
        );
        // Touching ranges do not overlap; one port more does.
        let text = with_wan_lan(&format!(
            "{}{}",
            forward("udp", "\"5000-5100\"", "10.0.0.5"),
            forward("udp", "\"4000-4999\"", "10.0.0.6")
        ));
        assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);
        let text = with_wan_lan(&format!(
            "{}{}{}",
            forward("udp", "\"5000-5100\"", "10.0.0.5"),
            forward("udp", "\"6000-6100\"", "10.0.0.5"),
            forward("udp", "\"5100-5999\"", "10.0.0.6")
        ));
        assert_err(
            &text,
            &[
                "fw.toml:17: port_forward[3].port: udp 5100-5999 overlaps port_forward[1] \
               (udp 5000-5100, line 7)",
            ],
        );
        // A range that swallows an earlier one entirely.
        let text = with_wan_lan(&format!(
            "{}{}",
            forward("tcp", "443", "10.0.0.5"),
            forward("tcp", "\"1-1000\"", "10.0.0.6")
        ));
        assert_err(
            &text,
            &[
                "fw.toml:13: port_forward[2].port: tcp 1-1000 overlaps port_forward[1] \
               (tcp 443, line 7)",
            ],
        );
    }

    #[test]
    fn too_many_forwarded_ports() {
        let text = with_wan_lan(&format!(
            "{}{}",
            forward("tcp", "\"1-10000\"", "10.0.0.5"),
            forward("udp", "\"20000-26384\"", "10.0.0.5")
        ));
        assert_err(
            &text,
            &[
                "fw.toml:13: port_forward[2].port: too many forwarded ports: 16385 across \
               port_forward[1-2] (at most 16384)",
            ],
        );
        assert_err(
            &with_wan_lan(&forward("udp", "\"1-65535\"", "10.0.0.5")),
            &["fw.toml:9: port_forward[1].port: too many forwarded ports: 65535"],
        );
    }

    #[test]
    fn forward_without_wan() {
        let text = format!(
            "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n\n{}",
            forward("tcp", "80", "10.0.0.5")
        );
        assert_err(
            &text,
            &["fw.toml:5: port_forward[1]: port forwarding needs an [[interface]] with role wan"],
        );
    }

    /// A `[[helper]]` block of four lines.
    fn helper(proto: &str, port: &str, kind: &str) -> String {
        format!("[[helper]]\nproto = {proto}\nport = {port}\nkind = {kind}\n")
    }

    /// One ftp helper with `proto`, `port` and `kind` given as TOML values;
    /// the header is on line 4, proto on 5, port on 6 and kind on 7.
    fn one_helper(proto: &str, port: &str, kind: &str) -> String {
        with_ifaces(&helper(proto, port, kind))
    }

    #[test]
    fn helpers_parse() {
        let text = with_ifaces(&format!(
            "{}\n[[helper]]\nkind = \"ftp\"\nport = 2121\nproto = \"tcp\"\n",
            helper("\"tcp\"", "21", "\"ftp\"")
        ));
        let c = parse(&text, "fw.toml").unwrap();
        assert_eq!(
            c.helpers,
            vec![
                Helper {
                    proto: IPPROTO_TCP,
                    port: 21,
                    kind: HelperKind::Ftp,
                    line: 4,
                    index: 1,
                },
                Helper {
                    proto: IPPROTO_TCP,
                    port: 2121,
                    kind: HelperKind::Ftp,
                    line: 9,
                    index: 2,
                },
            ]
        );
        assert_eq!(HelperKind::Ftp.to_string(), "ftp");
        assert_eq!(HelperKind::Ftp.proto(), IPPROTO_TCP);
        assert_eq!(c.helpers[0].summary(), "tcp 21 -> ftp helper");

        // Both ends of the port space.
        for port in [1, 65535] {
            let c = parse(
                &one_helper("\"tcp\"", &port.to_string(), "\"ftp\""),
                "fw.toml",
            );
            assert_eq!(c.unwrap().helpers[0].port, port);
        }

        // Helpers need no wan interface and sit beside the other sections.
        let text = format!(
            "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{}[[rule]]\nchain = \"input\"\n\
             action = \"drop\"\n",
            helper("\"tcp\"", "21", "\"ftp\"")
        );
        let c = parse(&text, "fw.toml").unwrap();
        assert_eq!((c.helpers.len(), c.rules.len()), (1, 1));
    }

    #[test]
    fn helper_unknown_kind() {
        assert_err(
            &one_helper("\"tcp\"", "21", "\"sip\""),
            &["fw.toml:7: helper[1].kind: unknown helper \"sip\" (supported: ftp)"],
        );
        assert_err(
            &one_helper("\"tcp\"", "21", "\"FTP\""),
            &["fw.toml:7: helper[1].kind: unknown helper \"FTP\" (supported: ftp)"],
        );
        assert_err(
            &one_helper("\"tcp\"", "21", "1"),
            &["fw.toml:7: helper[1].kind: expected a string, found integer"],
        );
    }

    #[test]
    fn helper_bad_port() {
        let bad = |port: &str, expected: &str| {
            assert_err(&one_helper("\"tcp\"", port, "\"ftp\""), &[expected]);
        };
        bad(
            "0",
            "fw.toml:6: helper[1].port: 0 is out of range (1-65535)",
        );
        bad(
            "65536",
            "fw.toml:6: helper[1].port: 65536 is out of range (1-65535)",
        );
        bad(
            "-21",
            "fw.toml:6: helper[1].port: -21 is out of range (1-65535)",
        );
        bad(
            "\"21-22\"",
            "fw.toml:6: helper[1].port: \"21-22\" is a range; a helper is assigned to a single \
             port",
        );
        bad(
            "\"21\"",
            "fw.toml:6: helper[1].port: expected a port number 1-65535, found string",
        );
        bad(
            "21.0",
            "fw.toml:6: helper[1].port: expected a port number 1-65535, found float",
        );
        // The second of two blocks is numbered and located as such.
        let text = with_ifaces(&format!(
            "{}{}",
            helper("\"tcp\"", "21", "\"ftp\""),
            helper("\"tcp\"", "\"2121-2122\"", "\"ftp\"")
        ));
        assert_err(
            &text,
            &["fw.toml:10: helper[2].port: \"2121-2122\" is a range"],
        );
    }

    #[test]
    fn helper_duplicate_port() {
        let text = with_ifaces(&format!(
            "{}{}{}",
            helper("\"tcp\"", "21", "\"ftp\""),
            helper("\"tcp\"", "2121", "\"ftp\""),
            helper("\"tcp\"", "21", "\"ftp\"")
        ));
        assert_err(
            &text,
            &[
                "fw.toml:14: helper[3].port: tcp port 21 is assigned twice: helper[1] (line 4) \
                 already gives it the ftp helper, and a port takes one helper",
            ],
        );
    }

    #[test]
    fn helper_wrong_proto() {
        assert_err(
            &one_helper("\"udp\"", "21", "\"ftp\""),
            &["fw.toml:5: helper[1].proto: the ftp helper works on tcp, not udp"],
        );
        assert_err(
            &one_helper("\"icmp\"", "21", "\"ftp\""),
            &["fw.toml:5: helper[1].proto: unknown value \"icmp\" (expected tcp or udp)"],
        );
        assert_err(
            &one_helper("6", "21", "\"ftp\""),
            &["fw.toml:5: helper[1].proto: expected a string, found integer"],
        );
    }

    #[test]
    fn helper_missing_keys() {
        // Reported on the [[helper]] header (line 5 here, after a blank line).
        for (body, k) in [
            ("port = 21\nkind = \"ftp\"\n", "proto"),
            ("proto = \"tcp\"\nkind = \"ftp\"\n", "port"),
            ("proto = \"tcp\"\nport = 21\n", "kind"),
        ] {
            assert_err(
                &with_ifaces(&format!("\n[[helper]]\n{body}")),
                &[&format!("fw.toml:5: helper[1].{k}: missing (required)")],
            );
        }
        assert_err(
            &with_ifaces("[[helper]]\n"),
            &["fw.toml:4: helper[1].proto: missing (required)"],
        );
    }

    #[test]
    fn helper_unknown_key() {
        assert_err(
            &with_ifaces(&format!(
                "{}comment = \"ftp\"\n",
                helper("\"tcp\"", "21", "\"ftp\"")
            )),
            &[
                "fw.toml:8: helper[1].comment: unknown key (expected one of `proto`, `port`, \
                 `kind`)",
            ],
        );
        assert_err(
            &with_ifaces(&format!(
                "{}{}iif = \"eth0\"\n",
                helper("\"tcp\"", "21", "\"ftp\""),
                helper("\"tcp\"", "2121", "\"ftp\"")
            )),
            &["fw.toml:12: helper[2].iif: unknown key"],
        );
    }

    // -----------------------------------------------------------------------
    // The iptables-level keys.

    /// Two configured interfaces (lines 1-6), then `rest` from line 7.
    fn with_two(rest: &str) -> String {
        format!(
            "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\n\
             [[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{rest}"
        )
    }

    fn rule2(body: &str) -> RuleConfig {
        let mut c = parse(&with_two(&format!("[[rule]]\n{body}")), "fw.toml")
            .unwrap_or_else(|e| panic!("{e}\n{body}"));
        assert_eq!(c.rules.len(), 1);
        c.rules.pop().unwrap()
    }

    fn v4p(a: [u8; 4], len: u8) -> Prefix {
        Prefix::new(v4b(a), len)
    }

    #[test]
    fn negation_and_lists_of_every_field() {
        let r = rule2(
            "chain = \"forward\"\nproto = [\"tcp\", \"udp\"]\nnot_proto = 6\n\
             src = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\nnot_src = \"10.9.0.0/16\"\n\
             not_dst = [\"10.0.0.1\", \"10.0.0.2\"]\n\
             src_range = \"10.0.0.1-10.0.0.6\"\nnot_dst_range = [\"10.1.0.0-10.1.0.3\"]\n\
             dport = [80, 443, \"8000-8100\"]\nnot_sport = \"0-1023\"\n\
             iif = \"eth+\"\nnot_iif = \"eth1\"\noif = [\"wlan0\", \"veth+\"]\nnot_oif = \"eth0\"\n\
             action = \"drop\"\n",
        );
        assert_eq!(r.family, Some(Family::V4));
        assert_eq!(
            r.summary(),
            "forward tcp,udp !tcp sport !0-1023 dport 80,443,8000-8100 \
             src 10.0.0.0/8,192.168.0.0/16 src !10.9.0.0/16 src-range 10.0.0.1-10.0.0.6 \
             dst !10.0.0.1,10.0.0.2 dst-range !10.1.0.0-10.1.0.3 iif eth+ iif !eth1 \
             oif wlan0,veth+ oif !eth0 -> drop"
        );
        let m = r.to_match(&ifaces()).unwrap();
        assert_eq!(m.family, Some(FAMILY_V4));
        assert_eq!(
            m.proto,
            vec![
                Cond {
                    negated: false,
                    any_of: vec![IPPROTO_TCP, IPPROTO_UDP]
                },
                Cond::not(IPPROTO_TCP)
            ]
        );
        assert_eq!(
            m.src,
            vec![
                Cond {
                    negated: false,
                    any_of: vec![v4p([10, 0, 0, 0], 8), v4p([192, 168, 0, 0], 16)]
                },
                Cond::not(v4p([10, 9, 0, 0], 16)),
                Cond {
                    negated: false,
                    any_of: vec![
                        v4p([10, 0, 0, 1], 32),
                        v4p([10, 0, 0, 2], 31),
                        v4p([10, 0, 0, 4], 31),
                        v4p([10, 0, 0, 6], 32)
                    ]
                },
            ]
        );
        assert_eq!(
            m.dst,
            vec![
                Cond {
                    negated: true,
                    any_of: vec![v4p([10, 0, 0, 1], 32), v4p([10, 0, 0, 2], 32)]
                },
                Cond::not(v4p([10, 1, 0, 0], 30)),
            ]
        );
        assert_eq!(
            m.dport,
            vec![Cond {
                negated: false,
                any_of: vec![(80, 80), (443, 443), (8000, 8100)]
            }]
        );
        assert_eq!(m.sport, vec![Cond::not((0, 1023))]);
        // eth+ is every eth interface of the host, configured or not.
        assert_eq!(
            m.iif,
            vec![
                Cond {
                    negated: false,
                    any_of: vec![2, 3, 5]
                },
                Cond::not(3)
            ]
        );
        // veth+ names nothing here: it adds no interface.
        assert_eq!(m.oif, vec![Cond::is(4), Cond::not(2)]);
        firewall_common::rule::compile::compile(&[m], [0; 4]).unwrap();
    }

    #[test]
    fn icmp_types_tcp_flags_and_limits() {
        let r = rule2(
            "chain = \"input\"\nproto = \"icmp\"\n\
             icmp_type = [\"echo-request\", \"3/4\", 11, \"host-unreachable\"]\n\
             not_icmp_type = \"ttl-zero-during-reassembly\"\nlimit = \"5/minute\"\n\
             action = \"accept\"\n",
        );
        let m = r.to_match(&ifaces()).unwrap();
        assert_eq!(
            m.icmp,
            vec![
                Cond {
                    negated: false,
                    any_of: vec![
                        (0x800, 0x8ff),
                        (0x304, 0x304),
                        (0xb00, 0xbff),
                        (0x301, 0x301)
                    ]
                },
                Cond::not((0xb01, 0xb01))
            ]
        );
        assert_eq!(
            m.limit,
            Some(LimitSpec {
                interval_ns: 12_000_000_000,
                burst: 5
            })
        );
        assert_eq!(
            r.summary(),
            "input icmp icmp-type 8,3/4,11,3/1 icmp-type !11/1 limit 5/minute burst 5 -> accept"
        );
        // ICMPv6 names are ICMPv6's.
        let r = rule2(
            "chain = \"input\"\nproto = \"icmpv6\"\nicmp_type = \"echo-request\"\nlimit = 100\n\
             limit_burst = 20\naction = \"accept\"\n",
        );
        let m = r.to_match(&ifaces()).unwrap();
        assert_eq!(m.icmp, vec![Cond::is((128 << 8, 128 << 8 | 0xff))]);
        assert_eq!(
            m.limit,
            Some(LimitSpec {
                interval_ns: 10_000_000,
                burst: 20
            })
        );

        let r = rule2("chain = \"input\"\nproto = \"tcp\"\nsyn = true\naction = \"drop\"\n");
        let t = r.to_match(&ifaces()).unwrap().tcp_flags.unwrap();
        assert_eq!((t.mask, t.comp, t.negated), (0x17, 0x02, false));
        assert_eq!(r.summary(), "input tcp syn -> drop");
        let r = rule2("chain = \"input\"\nproto = \"tcp\"\nsyn = false\naction = \"drop\"\n");
        assert!(r.to_match(&ifaces()).unwrap().tcp_flags.unwrap().negated);
        assert_eq!(r.summary(), "input tcp !syn -> drop");
        let r = rule2(
            "chain = \"input\"\nproto = \"tcp\"\n\
             not_tcp_flags = { mask = [\"all\"], set = [] }\naction = \"drop\"\n",
        );
        let t = r.to_match(&ifaces()).unwrap().tcp_flags.unwrap();
        assert_eq!((t.mask, t.comp, t.negated), (0x3f, 0, true));
        assert_eq!(
            r.summary(),
            "input tcp flags !fin,syn,rst,psh,ack,urg/none -> drop"
        );
    }

    #[test]
    fn reject_and_log_actions() {
        let r = rule2("chain = \"input\"\naction = \"reject\"\n");
        assert_eq!(
            r.to_match(&ifaces()).unwrap().reject,
            RejectWith::PORT_UNREACHABLE
        );
        assert_eq!(r.summary(), "input -> reject");
        for (name, v4, v6) in [
            ("icmp-net-unreachable", (3, 0), (1, 0)),
            ("host-unreach", (3, 1), (1, 3)),
            ("icmp-proto-unreachable", (3, 2), (1, 4)),
            ("icmp-net-prohibited", (3, 9), (1, 1)),
            ("icmp-host-prohibited", (3, 10), (1, 1)),
            ("icmp-admin-prohibited", (3, 13), (1, 1)),
            ("icmp6-no-route", (3, 0), (1, 0)),
            ("icmp6-adm-prohibited", (3, 13), (1, 1)),
            ("icmp6-addr-unreachable", (3, 1), (1, 3)),
            ("icmp6-port-unreachable", (3, 3), (1, 4)),
            ("icmp6-policy-fail", (3, 13), (1, 5)),
            ("icmp6-reject-route", (3, 13), (1, 6)),
        ] {
            let r = rule2(&format!(
                "chain = \"input\"\naction = \"reject\"\nreject_with = \"{name}\"\n"
            ));
            assert_eq!(
                r.to_match(&ifaces()).unwrap().reject,
                RejectWith::Icmp { v4, v6 },
                "{name}"
            );
        }
        let r = rule2(
            "chain = \"input\"\nproto = \"tcp\"\naction = \"reject\"\nreject_with = \"tcp-rst\"\n",
        );
        assert_eq!(r.to_match(&ifaces()).unwrap().reject, RejectWith::TcpReset);
        assert_eq!(r.summary(), "input tcp -> reject tcp-reset");

        let r = rule2(
            "chain = \"forward\"\naction = \"log\"\nlog_prefix = \"fwd: \"\nlog_level = \"info\"\n",
        );
        let m = r.to_match(&ifaces()).unwrap();
        assert_eq!(m.action, RuleAction::Log);
        assert_eq!(&m.log_prefix[..6], b"fwd: \0");
        assert_eq!(m.log_level, 6);
        assert_eq!(r.summary(), "forward -> log \"fwd: \" level 6");
        let m = rule2("chain = \"forward\"\naction = \"log\"\n")
            .to_match(&ifaces())
            .unwrap();
        assert_eq!((m.log_prefix, m.log_level), ([0; 32], 4));
        let r = rule2(&format!(
            "chain = \"forward\"\naction = \"log\"\nlog_prefix = \"{}\"\nlog_level = 0\n",
            "x".repeat(29)
        ));
        assert_eq!(r.to_match(&ifaces()).unwrap().log_level, 0);
    }

    #[test]
    fn interface_keys_by_chain_and_existence() {
        // An exact oif need not be configured, but must exist at load.
        let r = rule2("chain = \"output\"\noif = \"wlan0\"\naction = \"drop\"\n");
        assert_eq!(r.to_match(&ifaces()).unwrap().oif, vec![Cond::is(4)]);
        let r = rule2(
            "chain = \"forward\"\nfamily = \"ipv4\"\nnot_oif = \"ppp0\"\naction = \"drop\"\n",
        );
        assert_eq!(
            r.to_match(&ifaces()).unwrap_err().to_string(),
            "fw.toml:10: rule[1].not_oif: interface \"ppp0\" does not exist"
        );
        // A wildcard that names nothing never matches (positive) or excludes
        // nothing (negated).
        let r =
            rule2("chain = \"forward\"\noif = \"ppp+\"\nnot_iif = \"tun+\"\naction = \"drop\"\n");
        let m = r.to_match(&ifaces()).unwrap();
        assert_eq!(
            m.oif,
            vec![Cond {
                negated: false,
                any_of: vec![]
            }]
        );
        assert!(m.iif.is_empty());
        let p = MatchInput {
            chain: Chain::Forward as u8,
            iif: 2,
            oif: 3,
            ..MatchInput::default()
        };
        assert!(!m.matches(&p));
        firewall_common::rule::compile::compile(&[m], [0; 4]).unwrap();
    }

    #[test]
    fn errors_of_the_new_keys_are_one_line_with_file_line_and_key() {
        let rule = |body: &str| with_two(&format!("[[rule]]\nchain = \"input\"\n{body}"));
        for (body, expected) in [
            (
                "src = []\naction = \"drop\"\n",
                "fw.toml:9: rule[1].src: empty list (leave the key out to put no condition on this field)",
            ),
            (
                "not_src = \"10.0.0.0/8\"\ndst = \"::1\"\naction = \"drop\"\n",
                "fw.toml:10: rule[1].dst: ::1 is ipv6 but not_src 10.0.0.0/8 is ipv4",
            ),
            (
                "src_range = \"10.0.0.9-10.0.0.1\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].src_range: \"10.0.0.9-10.0.0.1\": the range is reversed",
            ),
            (
                "not_dst_range = \"10.0.0.1-::2\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].not_dst_range: \"10.0.0.1-::2\": the ends are of different address families",
            ),
            (
                "not_proto = \"gre\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].not_proto: unknown protocol \"gre\"",
            ),
            (
                "family = \"ipv6\"\nnot_proto = \"icmp\"\naction = \"drop\"\n",
                "fw.toml:10: rule[1].not_proto: icmp only exists in ipv4, but the rule is ipv6",
            ),
            (
                "not_dport = 22\naction = \"drop\"\n",
                "fw.toml:9: rule[1].not_dport: ports need proto tcp or udp",
            ),
            (
                "proto = [\"tcp\", \"icmp\"]\ndport = 22\naction = \"drop\"\n",
                "fw.toml:10: rule[1].dport: ports need proto tcp or udp, not icmp",
            ),
            (
                "proto = \"tcp\"\ndport = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, \"15-16\"]\naction = \"drop\"\n",
                "fw.toml:10: rule[1].dport: 16 ports, more than the 15 a list holds",
            ),
            (
                "icmp_type = 8\naction = \"drop\"\n",
                "fw.toml:9: rule[1].icmp_type: needs proto icmp or icmpv6 (alone)",
            ),
            (
                "proto = \"icmp\"\nicmp_type = \"neighbour-solicitation\"\naction = \"drop\"\n",
                "fw.toml:10: rule[1].icmp_type: unknown ICMP type \"neighbour-solicitation\"",
            ),
            (
                "proto = \"icmp\"\nnot_icmp_type = \"any\"\naction = \"drop\"\n",
                "fw.toml:10: rule[1].not_icmp_type: \"any\" would never match",
            ),
            (
                "proto = \"icmp\"\nicmp_type = 256\naction = \"drop\"\n",
                "fw.toml:10: rule[1].icmp_type: 256 is out of range (0-255)",
            ),
            (
                "syn = true\naction = \"drop\"\n",
                "fw.toml:9: rule[1].syn: needs proto tcp",
            ),
            (
                "proto = \"tcp\"\nsyn = true\ntcp_flags = { mask = [\"syn\"], set = [] }\naction = \"drop\"\n",
                "fw.toml:10: rule[1].syn: only one of tcp_flags, not_tcp_flags and syn",
            ),
            (
                "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"], set = [\"ack\"] }\naction = \"drop\"\n",
                "fw.toml:10: rule[1].tcp_flags: set has ack outside the mask, so the test could never hold",
            ),
            (
                "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"] }\naction = \"drop\"\n",
                "fw.toml:10: rule[1].tcp_flags: set is missing (required)",
            ),
            (
                "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\", \"ece\"], set = [] }\naction = \"drop\"\n",
                "fw.toml:10: rule[1].tcp_flags: mask: unknown TCP flag \"ece\"",
            ),
            (
                "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"], set = [], comp = [] }\naction = \"drop\"\n",
                "fw.toml:10: rule[1].tcp_flags: unknown key \"comp\" (expected mask and set)",
            ),
            (
                "proto = \"tcp\"\ntcp_flags = [\"syn\"]\naction = \"drop\"\n",
                "fw.toml:10: rule[1].tcp_flags: expected { mask = [...], set = [...] }, found array",
            ),
            (
                "limit = \"5/fortnight\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].limit: \"5/fortnight\": unknown unit",
            ),
            (
                "limit = \"20000/s\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].limit: 20000/second is faster than 10000/second",
            ),
            (
                "limit_burst = 3\naction = \"drop\"\n",
                "fw.toml:9: rule[1].limit_burst: only with limit",
            ),
            (
                "limit = 1\nlimit_burst = 0\naction = \"drop\"\n",
                "fw.toml:10: rule[1].limit_burst: 0 is out of range (1-10000)",
            ),
            (
                "action = \"queue\"\n",
                "fw.toml:9: rule[1].action: unknown value \"queue\" (expected accept, drop, reject or log)",
            ),
            (
                "action = \"drop\"\nreject_with = \"tcp-reset\"\n",
                "fw.toml:10: rule[1].reject_with: only with action = \"reject\"",
            ),
            (
                "action = \"reject\"\nreject_with = \"tcp-reset\"\n",
                "fw.toml:10: rule[1].reject_with: tcp-reset needs proto tcp",
            ),
            (
                "action = \"reject\"\nreject_with = \"icmp-bogus\"\n",
                "fw.toml:10: rule[1].reject_with: unknown value \"icmp-bogus\"",
            ),
            (
                "action = \"accept\"\nlog_level = 3\n",
                "fw.toml:10: rule[1].log_level: only with action = \"log\"",
            ),
            (
                "action = \"log\"\nlog_level = 8\n",
                "fw.toml:10: rule[1].log_level: 8 is out of range (0-7)",
            ),
            (
                "action = \"log\"\nlog_level = \"loud\"\n",
                "fw.toml:10: rule[1].log_level: unknown log level \"loud\"",
            ),
            (
                "action = \"log\"\nlog_prefix = \"123456789012345678901234567890\"\n",
                "fw.toml:10: rule[1].log_prefix: 30 bytes, more than the 29 iptables' LOG keeps",
            ),
            (
                "oif = \"eth0\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].oif: not allowed on chain input",
            ),
            (
                "iif = \"+\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].iif: \"+\" alone is every interface (leave the key out)",
            ),
            (
                "not_iif = \"eth9\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].not_iif: \"eth9\" is not a configured [[interface]] (configured: eth0, eth1)",
            ),
            (
                "iif = \"bad/name+\"\naction = \"drop\"\n",
                "fw.toml:9: rule[1].iif: \"bad/name\" is not a valid interface name",
            ),
        ] {
            let msg = err(&rule(body));
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            assert!(
                msg.starts_with(expected),
                "{body}:\n{msg:?}\ndoes not start with\n{expected:?}"
            );
        }
        assert_err(
            &with_two("[[rule]]\nchain = \"output\"\nnot_iif = \"eth0\"\naction = \"drop\"\n"),
            &["fw.toml:9: rule[1].not_iif: not allowed on chain output"],
        );
        assert_err(
            &with_two("[policy]\ninput = \"reject\"\n"),
            &["fw.toml:8: policy.input: unknown value \"reject\" (expected accept or drop)"],
        );
    }

    // -----------------------------------------------------------------------
    // `iptables = [...]`.

    #[test]
    fn iptables_lines_follow_the_rules_in_order() {
        // Lines 1-11, then the interfaces (12-17) and a [[rule]] (18).
        let text = format!(
            "iptables = [\n\
             \"-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\",\n\
             \"-P FORWARD ACCEPT\",\n\
             \"iptables -A INPUT -p tcp -m multiport --dports 22,80 -s 10.0.0.0/8,192.168.0.0/16 -j ACCEPT\",\n\
             \"-N LOGDROP\",\n\
             \"-A LOGDROP -j LOG --log-prefix 'dropped: '\",\n\
             \"-A LOGDROP -j DROP\",\n\
             \"-A INPUT -i eth+ -p icmp --icmp-type echo-request -m limit --limit 2/s -j ACCEPT\",\n\
             \"-I INPUT 1 -p tcp --dport 23 -j REJECT --reject-with tcp-reset\",\n\
             \"-A FORWARD -i eth1 -o wlan0 -j LOGDROP\",\n\
             ]\n{}",
            with_two(
                "[[rule]]\nchain = \"input\"\nproto = \"udp\"\ndport = 53\naction = \"accept\"\n"
            )
        );
        let c = parse(&text, "fw.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.policy,
            [RuleAction::Drop, RuleAction::Accept, RuleAction::Accept]
        );
        let got: Vec<(String, usize, usize)> = c
            .rules
            .iter()
            .map(|r| (r.summary(), r.line, r.index))
            .collect();
        assert_eq!(
            got,
            [
                ("input udp dport 53 -> accept".to_string(), 18, 1),
                ("input tcp dport 23 -> reject tcp-reset".into(), 9, 2),
                (
                    "input tcp dport 22,80 src 10.0.0.0/8 -> accept".into(),
                    4,
                    3
                ),
                (
                    "input tcp dport 22,80 src 192.168.0.0/16 -> accept".into(),
                    4,
                    4
                ),
                (
                    "input icmp icmp-type 8 iif eth+ limit 2/second burst 5 -> accept".into(),
                    8,
                    5
                ),
                // The line of the rule that decides, as `firewall import`
                // names it (the jump is on line 10).
                (
                    "forward iif eth1 oif wlan0 -> log \"dropped: \"".into(),
                    6,
                    6
                ),
                ("forward iif eth1 oif wlan0 -> drop".into(), 7, 7),
            ]
        );
        for r in &c.rules {
            r.to_match(&ifaces()).unwrap();
        }
        // The seeds' line alone: redundant, so no rule at all.
        let c = parse(
            &format!(
                "iptables = [\"-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\"]\n{}",
                with_two("")
            ),
            "fw.toml",
        )
        .unwrap();
        assert!(c.rules.is_empty());
        // An unresolvable oif is reported at the line, under its index.
        let c = parse(
            &format!(
                "iptables = [\n\"-P INPUT DROP\",\n\"-A OUTPUT -o ppp0 -j DROP\",\n]\n{}",
                with_two("")
            ),
            "fw.toml",
        )
        .unwrap();
        assert_eq!(
            c.rules[0].to_match(&ifaces()).unwrap_err().to_string(),
            "fw.toml:3: iptables[2].oif: interface \"ppp0\" does not exist"
        );
        // After a [section] TOML puts the key into it; the message says so.
        assert_err(
            &with_two("iptables = [\"-P INPUT DROP\"]\n"),
            &[
                "fw.toml:7: interface[2].iptables: unknown key",
                "top-level keys go before the first [section]",
            ],
        );
    }

    #[test]
    fn iptables_line_errors_name_the_index_and_the_option() {
        // The offending entry is on line 4.
        let lines = |l: &str| {
            format!(
                "\niptables = [\n  \"-A INPUT -j ACCEPT\",\n{l}\n]\n{}",
                with_two("")
            )
        };
        for (line, expected) in [
            (
                "  \"-A INPUT -m mac --mac-source 00:11:22:33:44:55 -j DROP\",",
                "fw.toml:4: iptables[2]: unsupported option --mac-source (match mac)",
            ),
            (
                "  \"-A INPUT -i eth9 -j DROP\",",
                "fw.toml:4: iptables[2]: -i: \"eth9\" is not a configured [[interface]] (configured: eth0, eth1)",
            ),
            (
                "  \"-t nat -A POSTROUTING -o eth0 -j MASQUERADE\",",
                "fw.toml:4: iptables[2]: -t nat: this line is read for table filter (NAT is configured with masquerade, snat and [[port_forward]])",
            ),
            (
                "  \"-A INPUT -m conntrack --ctstate ESTABLISHED -j DROP\",",
                "fw.toml:4: iptables[2]: -j DROP is never reached: it only matches ESTABLISHED/RELATED packets",
            ),
            (
                "  \"-A INPUT -p tcp\",",
                "fw.toml:4: iptables[2]: no -j target",
            ),
            (
                "  \"-A INPUT -j NOPE\",",
                "fw.toml:4: iptables[2]: unknown chain or unsupported target NOPE",
            ),
            (
                "  \"-F INPUT\",",
                "fw.toml:4: iptables[2]: unsupported command -F",
            ),
            (
                "  \"-A INPUT -i lo -j DROP\",",
                "fw.toml:4: iptables[2]: -j DROP on lo: loopback traffic is never filtered",
            ),
            (
                "  \"-A INPUT -m limit --limit 1/s -m limit --limit 2/s -j ACCEPT\",",
                "fw.toml:4: iptables[2]: several -m limit conditions",
            ),
            (
                "  \"-A INPUT -s 10.0.0.0/8 -d ::1 -j DROP\",",
                "fw.toml:4: iptables[2]: -s 10.0.0.0/8 is ipv4 but -d ::1 is ipv6",
            ),
            (
                "  3,",
                "fw.toml:4: iptables[2]: expected a string, found integer",
            ),
        ] {
            let msg = err(&lines(line));
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            assert!(
                msg.starts_with(expected),
                "{line}:\n{msg:?}\ndoes not start with\n{expected:?}"
            );
        }
        assert_err(
            &format!(
                "iptables = [\"-P INPUT DROP\"]\n{}",
                with_two("[policy]\ninput = \"accept\"\n")
            ),
            &[
                "fw.toml:1: iptables[1]: -P INPUT conflicts with policy.input (line 9); set each \
               policy in one place",
            ],
        );
        assert_err(
            &format!("iptables = \"-A INPUT -j DROP\"\n{}", with_two("")),
            &["fw.toml:1: iptables: expected a list of iptables command lines"],
        );
    }

    // -----------------------------------------------------------------------
    // Property: whatever the config accepts compiles, and the compiled tables
    // agree with the ordered list.

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// A value or a list of 1-3 of `pool`.
    fn one_or_list(rng: &mut Rng, pool: &[&str]) -> String {
        if rng.chance(50) {
            return rng.pick(pool).to_string();
        }
        let n = 1 + rng.below(3);
        let items: Vec<&str> = (0..n).map(|_| *rng.pick(pool)).collect();
        format!("[{}]", items.join(", "))
    }

    fn random_rule(rng: &mut Rng) -> String {
        let mut out = String::from("[[rule]]\n");
        let chain = *rng.pick(&["input", "forward", "output"]);
        out += &format!("chain = \"{chain}\"\n");
        let v6 = rng.chance(30);
        let proto = *rng.pick(&["", "tcp", "udp", "icmp", "tcp_udp", "47"]);
        let proto = if v6 && proto == "icmp" {
            "icmpv6"
        } else {
            proto
        };
        match proto {
            "" => {}
            "tcp_udp" => out += "proto = [\"tcp\", \"udp\"]\n",
            "47" => out += "proto = 47\n",
            p => out += &format!("proto = \"{p}\"\n"),
        }
        if rng.chance(15) {
            out += &format!(
                "not_proto = {}\n",
                one_or_list(rng, &["\"udp\"", "47", "\"tcp\""])
            );
        }
        let addrs: &[&str] = if v6 {
            &[
                "\"2001:db8::/32\"",
                "\"2001:db8::1\"",
                "\"2001:db8:1::/48\"",
                "\"::/0\"",
            ]
        } else {
            &[
                "\"10.0.0.0/8\"",
                "\"10.0.0.1\"",
                "\"10.0.1.0/24\"",
                "\"192.168.1.0/24\"",
                "\"0.0.0.0/0\"",
            ]
        };
        let ranges: &[&str] = if v6 {
            &[
                "\"2001:db8::1-2001:db8::9\"",
                "\"2001:db8::-2001:db8:1::5\"",
            ]
        } else {
            &[
                "\"10.0.0.1-10.0.0.9\"",
                "\"10.0.0.200-10.0.1.7\"",
                "\"192.168.1.5-192.168.1.5\"",
            ]
        };
        for key in ["src", "dst", "not_src", "not_dst"] {
            if rng.chance(20) {
                out += &format!("{key} = {}\n", one_or_list(rng, addrs));
            }
        }
        for key in ["src_range", "dst_range", "not_src_range", "not_dst_range"] {
            if rng.chance(10) {
                out += &format!("{key} = {}\n", one_or_list(rng, ranges));
            }
        }
        if matches!(proto, "tcp" | "udp" | "tcp_udp") {
            let ports = [
                "22",
                "53",
                "80",
                "\"1000-2000\"",
                "\"1-1023\"",
                "65535",
                "0",
            ];
            for key in ["sport", "dport", "not_sport", "not_dport"] {
                if rng.chance(25) {
                    out += &format!("{key} = {}\n", one_or_list(rng, &ports));
                }
            }
        }
        if matches!(proto, "icmp" | "icmpv6") {
            let types: &[&str] = if v6 {
                &[
                    "\"echo-request\"",
                    "1",
                    "\"1/4\"",
                    "\"packet-too-big\"",
                    "\"port-unreachable\"",
                ]
            } else {
                &[
                    "\"echo-request\"",
                    "3",
                    "\"3/4\"",
                    "\"port-unreachable\"",
                    "0",
                    "\"any\"",
                ]
            };
            if rng.chance(40) {
                out += &format!("icmp_type = {}\n", one_or_list(rng, types));
            }
            if rng.chance(20) {
                let types: Vec<&str> = types.iter().copied().filter(|t| *t != "\"any\"").collect();
                out += &format!("not_icmp_type = {}\n", one_or_list(rng, &types));
            }
        }
        if proto == "tcp" {
            match rng.below(5) {
                0 => out += "syn = true\n",
                1 => out += "syn = false\n",
                2 => out += "tcp_flags = { mask = [\"syn\", \"ack\"], set = [\"ack\"] }\n",
                3 => out += "not_tcp_flags = { mask = [\"rst\"], set = [\"rst\"] }\n",
                _ => {}
            }
        }
        if chain != "output" {
            for key in ["iif", "not_iif"] {
                if rng.chance(15) {
                    out += &format!(
                        "{key} = {}\n",
                        one_or_list(rng, &["\"eth0\"", "\"eth1\"", "\"eth+\"", "\"wl+\""])
                    );
                }
            }
        }
        if chain != "input" {
            for key in ["oif", "not_oif"] {
                if rng.chance(15) {
                    out += &format!(
                        "{key} = {}\n",
                        one_or_list(rng, &["\"eth0\"", "\"wlan0\"", "\"eth+\"", "\"ppp+\""])
                    );
                }
            }
        }
        if rng.chance(15) {
            out += &format!(
                "ctstate = {}\n",
                *rng.pick(&[
                    "[\"new\"]",
                    "[\"invalid\", \"untracked\"]",
                    "[\"new\", \"untracked\"]"
                ])
            );
        }
        if !out.contains("src") && !out.contains("dst") && rng.chance(20) {
            out += &format!("family = \"{}\"\n", if v6 { "ipv6" } else { "ipv4" });
        }
        if rng.chance(10) {
            out += "limit = \"10/second\"\n";
        }
        match rng.below(6) {
            0 | 1 => out += "action = \"accept\"\n",
            // REJECT is refused on output.
            2 | 3 | 5 if chain == "output" => out += "action = \"drop\"\n",
            2 => out += "action = \"drop\"\n",
            3 if proto == "tcp" => out += "action = \"reject\"\nreject_with = \"tcp-reset\"\n",
            3 => out += "action = \"reject\"\nreject_with = \"icmp-host-prohibited\"\n",
            4 => out += "action = \"log\"\nlog_prefix = \"x\"\n",
            _ => out += "action = \"reject\"\n",
        }
        out
    }

    fn random_packet(rng: &mut Rng) -> MatchInput {
        let v6 = rng.chance(30);
        let chain = rng.below(3) as u8;
        let addr = |rng: &mut Rng| -> [u8; 16] {
            if v6 {
                let a: Ipv6Addr = rng
                    .pick(&[
                        "2001:db8::1",
                        "2001:db8::5",
                        "2001:db8:1::3",
                        "2001:db8:2::1",
                        "fe80::1",
                    ])
                    .parse()
                    .unwrap();
                a.octets()
            } else {
                let a: Ipv4Addr = rng
                    .pick(&[
                        "10.0.0.1",
                        "10.0.0.5",
                        "10.0.0.255",
                        "10.0.1.3",
                        "192.168.1.5",
                        "8.8.8.8",
                    ])
                    .parse()
                    .unwrap();
                v4b(a.octets())
            }
        };
        let icmp = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
        let proto = *rng.pick(&[IPPROTO_TCP, IPPROTO_UDP, icmp, 47]);
        let (sport, dport) = match proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let ports = [22u16, 53, 80, 1500, 0, 65535, 40000];
                (*rng.pick(&ports), *rng.pick(&ports))
            }
            47 => (0, 0),
            _ => {
                let types: &[u16] = if v6 {
                    &[128 << 8, 1 << 8 | 4, 1 << 8, 2 << 8, 129 << 8]
                } else {
                    &[8 << 8, 3 << 8 | 4, 3 << 8 | 3, 0, 11 << 8]
                };
                (*rng.pick(types), 0)
            }
        };
        let ifaces = [0u32, 2, 3, 4, 5];
        MatchInput {
            chain,
            v6,
            state: *rng.pick(&[
                CtState::New as u8,
                CtState::Invalid as u8,
                CtState::Untracked as u8,
            ]),
            proto,
            src: addr(rng),
            dst: addr(rng),
            iif: if chain == Chain::Output as u8 {
                0
            } else {
                *rng.pick(&ifaces[1..])
            },
            oif: if chain == Chain::Input as u8 {
                0
            } else {
                *rng.pick(&ifaces[1..])
            },
            sport,
            dport,
            tcp_flags: *rng.pick(&[0x02u8, 0x12, 0x10, 0x04, 0x11, 0]),
        }
    }

    #[test]
    fn random_configs_compile_and_agree_with_the_ordered_list() {
        use firewall_common::rule::{compile::compile, model::reference};
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut rules_seen = 0;
        for round in 0..60 {
            let n = 1 + rng.below(40);
            let text = with_two(&(0..n).map(|_| random_rule(&mut rng)).collect::<String>());
            let config = parse(&text, "random.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            let rules: Vec<MatchRule> = config
                .rules
                .iter()
                .map(|r| {
                    r.to_match(&ifaces())
                        .unwrap_or_else(|e| panic!("{e}\n{text}"))
                })
                .collect();
            rules_seen += rules.len();
            let compiled =
                compile(&rules, [0; 4]).unwrap_or_else(|e| panic!("round {round}: {e}\n{text}"));
            for _ in 0..400 {
                let p = random_packet(&mut rng);
                assert_eq!(
                    compiled.evaluate(&p),
                    reference(&rules, &p),
                    "round {round}: {p:?}\n{text}"
                );
            }
        }
        assert!(rules_seen > 500);
    }
}
