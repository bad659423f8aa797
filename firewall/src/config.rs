//! The TOML configuration file: parsing, validation and compilation of rules
//! to the datapath form.
//!
//! Every leaf value is read as a `toml::Spanned<toml::Value>` and checked by
//! hand rather than by serde, so each error can name the offending key and the
//! line it sits on (`fw.toml:12: rule[2].dport: ...`); serde only enforces the
//! shape of the document (`deny_unknown_fields`). Rule and interface indices
//! in messages are 1-based, counting blocks as a person reading the file would.
//!
//! Whether a named interface exists on this host is not checked here: the
//! loader resolves names when it attaches, through [`RuleConfig::to_rule`].
//!
//! NAT is IPv4 only: source NAT per `wan` interface (`masquerade` or `snat`)
//! and destination NAT through `[[port_forward]]` blocks. IPv6 traffic stays
//! stateful but untranslated, and asking to translate it is an error.
//!
//! Conntrack helpers are off by default. As with modern netfilter (`ct helper
//! set`, `-j CT --helper`, no automatic assignment by port), a helper only
//! watches a port that a `[[helper]]` block assigns it to.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::ops::Range;
use std::path::Path;

use firewall_common::{
    Chain, CtState, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    MAX_RULES, Role, Rule, RuleAction, Timeouts, rule::match_flags,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::{Spanned, Value};

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
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// An address with a prefix length. Host bits are always zero: parsing
/// rejects `10.0.0.1/8` because it usually means a typo, not a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn max_prefix(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Address and mask as the datapath compares them: the raw network-order
    /// bytes reinterpreted in place, so the eBPF side can AND packet words
    /// without byte swapping.
    pub fn words(&self) -> ([u32; 4], [u32; 4]) {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                let addr = u32::from(a) & mask;
                (
                    [u32::from_ne_bytes(addr.to_be_bytes()), 0, 0, 0],
                    [u32::from_ne_bytes(mask.to_be_bytes()), 0, 0, 0],
                )
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                let addr = u128::from(a) & mask;
                (v6_words(addr.to_be_bytes()), v6_words(mask.to_be_bytes()))
            }
        }
    }

    fn parse(s: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!(
                "{s} has host bits set (the network is {network}/{prefix})"
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

fn v6_words(bytes: [u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    [w(0), w(4), w(8), w(12)]
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

/// One validated `[[rule]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    pub chain: Chain,
    pub action: RuleAction,
    /// Explicit, or inferred from `src`/`dst`; `None` matches both families.
    pub family: Option<Family>,
    /// IP protocol number; `None` matches any.
    pub proto: Option<u8>,
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    pub iif: Option<String>,
    /// Empty matches any state (an empty list in the file is rejected).
    pub ctstate: Vec<CtState>,
    pub comment: Option<String>,
    /// 1-based line of the `[[rule]]` header.
    pub line: usize,
    /// 1-based position among the rules, as used in messages (`rule[N]`).
    pub index: usize,
    /// Kept so that [`RuleConfig::to_rule`] can report an unresolvable
    /// interface with the same `file:line: key:` prefix as parse errors.
    origin: String,
    iif_line: usize,
}

impl RuleConfig {
    /// Compile to the datapath form. `ifindex` resolves interface names
    /// (returns `None` if unknown).
    pub fn to_rule(&self, ifindex: &dyn Fn(&str) -> Option<u32>) -> Result<Rule, ConfigError> {
        let mut rule = Rule {
            chain: self.chain as u8,
            action: self.action as u8,
            family: self.family.map_or(0, Family::tag),
            proto: self.proto.unwrap_or(0),
            ..Rule::default()
        };
        if let Some(src) = &self.src {
            (rule.src, rule.src_mask) = src.words();
            rule.match_flags |= match_flags::SRC;
        }
        if let Some(dst) = &self.dst {
            (rule.dst, rule.dst_mask) = dst.words();
            rule.match_flags |= match_flags::DST;
        }
        if let Some(p) = self.sport {
            (rule.sport_lo, rule.sport_hi) = (p.lo, p.hi);
            rule.match_flags |= match_flags::SPORT;
        }
        if let Some(p) = self.dport {
            (rule.dport_lo, rule.dport_hi) = (p.lo, p.hi);
            rule.match_flags |= match_flags::DPORT;
        }
        if let Some(name) = &self.iif {
            rule.iif = ifindex(name).ok_or_else(|| ConfigError::Invalid {
                origin: self.origin.clone(),
                line: self.iif_line,
                key: format!("rule[{}].iif", self.index),
                message: format!("interface {name:?} does not exist"),
            })?;
            rule.match_flags |= match_flags::IIF;
        }
        if !self.ctstate.is_empty() {
            rule.ctstate = self.ctstate.iter().fold(0, |bits, s| bits | s.bit());
            rule.match_flags |= match_flags::CTSTATE;
        }
        Ok(rule)
    }

    /// Human one-line summary like `iptables -L`, e.g.
    /// `input tcp dport 22 src 10.0.0.0/8 -> accept`.
    pub fn summary(&self) -> String {
        let mut out = String::from(chain_name(self.chain));
        // An address already shows its family.
        if let Some(family) = self.family
            && self.src.is_none()
            && self.dst.is_none()
        {
            out += &format!(" {family}");
        }
        if let Some(p) = self.proto {
            out += &format!(" {}", proto_name(p));
        }
        if let Some(p) = self.sport {
            out += &format!(" sport {p}");
        }
        if let Some(p) = self.dport {
            out += &format!(" dport {p}");
        }
        if let Some(a) = &self.src {
            out += &format!(" src {a}");
        }
        if let Some(a) = &self.dst {
            out += &format!(" dst {a}");
        }
        if let Some(i) = &self.iif {
            out += &format!(" iif {i}");
        }
        if !self.ctstate.is_empty() {
            let names: Vec<&str> = self.ctstate.iter().map(|&s| ctstate_name(s)).collect();
            out += &format!(" ctstate {}", names.join(","));
        }
        out += &format!(" -> {}", action_name(self.action));
        if let Some(c) = &self.comment {
            out += &format!(" /* {} */", one_line(c));
        }
        out
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
    family: Field,
    src: Field,
    dst: Field,
    sport: Field,
    dport: Field,
    iif: Field,
    ctstate: Field,
    action: Field,
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
            return self.invalid(line, key, format!("unknown key ({expected})"));
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
const ACTIONS: &[(&str, RuleAction)] =
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
const PROTOS: &[(&str, u8)] = &[
    ("tcp", IPPROTO_TCP),
    ("udp", IPPROTO_UDP),
    ("icmp", IPPROTO_ICMP),
    ("icmpv6", IPPROTO_ICMPV6),
];
const CTSTATES: &[(&str, CtState)] = &[
    ("new", CtState::New),
    ("established", CtState::Established),
    ("related", CtState::Related),
    ("invalid", CtState::Invalid),
    ("untracked", CtState::Untracked),
];

fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], t: T) -> &'static str {
    table.iter().find(|(_, x)| *x == t).map_or("?", |(n, _)| n)
}

fn chain_name(c: Chain) -> &'static str {
    name_of(CHAINS, c)
}

fn action_name(a: RuleAction) -> &'static str {
    name_of(ACTIONS, a)
}

fn ctstate_name(s: CtState) -> &'static str {
    name_of(CTSTATES, s)
}

fn proto_name(p: u8) -> String {
    PROTOS
        .iter()
        .find(|(_, n)| *n == p)
        .map_or_else(|| p.to_string(), |(name, _)| (*name).to_string())
}

/// Mirrors the kernel's `dev_valid_name`, so a name that could never exist is
/// caught here instead of as a confusing lookup failure at attach time.
fn interface_name_problem(name: &str) -> Option<String> {
    let max = libc::IFNAMSIZ - 1;
    if name.is_empty() || name.len() > max {
        return Some(format!("interface name {name:?} must be 1-{max} bytes"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Some(format!("{name:?} is not a valid interface name"));
    }
    None
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
        if let Some(p) = &self.policy {
            for (chain, field) in [
                (Chain::Input, &p.input),
                (Chain::Forward, &p.forward),
                (Chain::Output, &p.output),
            ] {
                if let Some(v) = field {
                    let key = format!("policy.{}", chain_name(chain));
                    policy[chain as usize] = doc.keyword(v, &key, ACTIONS)?;
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
        let rules = self
            .rule
            .iter()
            .enumerate()
            .map(|(i, raw)| validate_rule(doc, raw, i + 1, &iface_lines))
            .collect::<Result<Vec<_>, _>>()?;

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

fn validate_rule(
    doc: &Doc,
    spanned: &Spanned<RawRule>,
    index: usize,
    interfaces: &HashMap<String, usize>,
) -> Result<RuleConfig, ConfigError> {
    let line = doc.line(spanned.span().start);
    let raw = spanned.get_ref();
    let key = |k: &str| format!("rule[{index}].{k}");
    let missing = |k: &str| doc.invalid(line, key(k), "missing (required)");
    let chain_v = raw.chain.as_ref().ok_or_else(|| missing("chain"))?;
    let chain = doc.keyword(chain_v, &key("chain"), CHAINS)?;
    let action_v = raw.action.as_ref().ok_or_else(|| missing("action"))?;
    let action = doc.keyword(action_v, &key("action"), ACTIONS)?;

    let proto = match &raw.proto {
        None => None,
        Some(v) => Some(match v.get_ref() {
            Value::Integer(_) => {
                // 0 is the datapath's "any"; accepting it would silently
                // widen the rule.
                let n = doc.ranged(v, &key("proto"), 1, 255)?;
                n as u8
            }
            Value::String(name) => PROTOS
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(_, p)| p)
                .ok_or_else(|| {
                    doc.at(
                        v,
                        &key("proto"),
                        format!(
                            "unknown protocol {name:?} (expected tcp, udp, icmp, icmpv6 \
                             or a number 1-255)"
                        ),
                    )
                })?,
            other => {
                return Err(doc.at(
                    v,
                    &key("proto"),
                    format!(
                        "expected a protocol name or number, found {}",
                        other.type_str()
                    ),
                ));
            }
        }),
    };

    let explicit_family = match &raw.family {
        Some(v) => Some((doc.keyword(v, &key("family"), FAMILIES)?, v)),
        None => None,
    };
    let mut family = explicit_family.map(|(f, _)| f);
    let mut family_source = "family".to_string();
    let mut address = |field: &Field, k: &str| -> Result<Option<Cidr>, ConfigError> {
        let Some(v) = field else { return Ok(None) };
        let cidr = Cidr::parse(doc.string(v, &key(k))?).map_err(|m| doc.at(v, &key(k), m))?;
        match family {
            Some(f) if f != cidr.family() => {
                return Err(doc.at(
                    v,
                    &key(k),
                    format!("{cidr} is {} but {family_source} is {f}", cidr.family()),
                ));
            }
            _ => {
                family = Some(cidr.family());
                family_source = format!("{k} {cidr}");
            }
        }
        Ok(Some(cidr))
    };
    let src = address(&raw.src, "src")?;
    let dst = address(&raw.dst, "dst")?;

    if let (Some(p @ (IPPROTO_ICMP | IPPROTO_ICMPV6)), Some(f), Some(v)) =
        (proto, family, &raw.proto)
    {
        let wants = if p == IPPROTO_ICMP {
            Family::V4
        } else {
            Family::V6
        };
        if f != wants {
            return Err(doc.at(
                v,
                &key("proto"),
                format!(
                    "{} only exists in {wants}, but the rule is {f}",
                    proto_name(p)
                ),
            ));
        }
    }

    let ports = |field: &Field, k: &str| -> Result<Option<PortRange>, ConfigError> {
        let Some(v) = field else { return Ok(None) };
        match proto {
            Some(IPPROTO_TCP | IPPROTO_UDP) => Ok(Some(doc.port_range(v, &key(k))?)),
            Some(p) => Err(doc.at(
                v,
                &key(k),
                format!("ports need proto tcp or udp, not {}", proto_name(p)),
            )),
            None => Err(doc.at(v, &key(k), "ports need proto tcp or udp")),
        }
    };
    let sport = ports(&raw.sport, "sport")?;
    let dport = ports(&raw.dport, "dport")?;

    let (iif, iif_line) = match &raw.iif {
        None => (None, line),
        Some(v) => {
            let name = doc.string(v, &key("iif"))?;
            if chain == Chain::Output {
                return Err(doc.at(
                    v,
                    &key("iif"),
                    "not allowed on chain output (locally generated packets have no input interface)",
                ));
            }
            if !interfaces.contains_key(name) {
                let mut known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(doc.at(
                    v,
                    &key("iif"),
                    format!(
                        "{name:?} is not a configured [[interface]] (configured: {})",
                        known.join(", ")
                    ),
                ));
            }
            (Some(name.to_string()), doc.line(v.span().start))
        }
    };

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
        sport,
        dport,
        iif,
        ctstate,
        comment,
        line,
        index,
        origin: doc.origin.to_string(),
        iif_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewall_common::rule::RuleInput;

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

    fn ifindex(name: &str) -> Option<u32> {
        match name {
            "eth0" => Some(2),
            "eth1" => Some(3),
            _ => None,
        }
    }

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
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
        assert_eq!(r.proto, Some(IPPROTO_TCP));
        assert_eq!(
            r.src,
            Some(Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8
            })
        );
        assert_eq!(
            r.dst,
            Some(Cidr {
                addr: "192.168.1.1".parse().unwrap(),
                prefix: 32
            })
        );
        assert_eq!(r.sport, Some(PortRange { lo: 22, hi: 22 }));
        assert_eq!(r.dport, Some(PortRange { lo: 8000, hi: 8100 }));
        assert_eq!(r.iif.as_deref(), Some("eth0"));
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

    #[test]
    fn to_rule_v4_cidr() {
        let r = one_rule("chain = \"forward\"\nsrc = \"10.1.0.0/16\"\naction = \"drop\"\n");
        let rule = r.to_rule(&ifindex).unwrap();
        assert_eq!(rule.family, FAMILY_V4);
        assert_eq!(rule.chain, Chain::Forward as u8);
        assert_eq!(rule.action, RuleAction::Drop as u8);
        assert_eq!(rule.proto, 0);
        assert_eq!(rule.match_flags, match_flags::SRC);
        assert_eq!(rule.src, v4([10, 1, 0, 0]));
        assert_eq!(rule.src_mask, v4([255, 255, 0, 0]));
        let p = RuleInput {
            family: FAMILY_V4,
            src: v4([10, 1, 200, 3]),
            ..RuleInput::default()
        };
        assert!(rule.matches(Chain::Forward, &p));
        assert!(!rule.matches(
            Chain::Forward,
            &RuleInput {
                src: v4([10, 2, 0, 1]),
                ..p
            }
        ));
        assert_eq!(r.summary(), "forward src 10.1.0.0/16 -> drop");
    }

    #[test]
    fn to_rule_v6_cidr() {
        let r = one_rule("chain = \"input\"\ndst = \"2001:db8:ab00::/40\"\naction = \"accept\"\n");
        let rule = r.to_rule(&ifindex).unwrap();
        assert_eq!(rule.family, FAMILY_V6);
        assert_eq!(rule.match_flags, match_flags::DST);
        let words = |b: [u8; 16]| v6_words(b);
        let addr: Ipv6Addr = "2001:db8:ab00::".parse().unwrap();
        assert_eq!(rule.dst, words(addr.octets()));
        let mut mask = [0u8; 16];
        mask[..5].fill(0xff);
        assert_eq!(rule.dst_mask, words(mask));
        let inside: Ipv6Addr = "2001:db8:abff::1".parse().unwrap();
        let outside: Ipv6Addr = "2001:db8:ac00::1".parse().unwrap();
        let p = RuleInput {
            family: FAMILY_V6,
            dst: words(inside.octets()),
            ..RuleInput::default()
        };
        assert!(rule.matches(Chain::Input, &p));
        assert!(!rule.matches(
            Chain::Input,
            &RuleInput {
                dst: words(outside.octets()),
                ..p
            }
        ));
        // An IPv4 packet must not match by accident of its zero words.
        assert!(!rule.matches(
            Chain::Input,
            &RuleInput {
                family: FAMILY_V4,
                ..p
            }
        ));
    }

    #[test]
    fn to_rule_port_range() {
        let r = one_rule(
            "chain = \"input\"\nproto = \"udp\"\ndport = \"5000-5010\"\nsport = 53\naction = \"accept\"\n",
        );
        let rule = r.to_rule(&ifindex).unwrap();
        assert_eq!(rule.proto, IPPROTO_UDP);
        assert_eq!(rule.family, 0);
        assert_eq!(rule.match_flags, match_flags::SPORT | match_flags::DPORT);
        assert_eq!((rule.dport_lo, rule.dport_hi), (5000, 5010));
        assert_eq!((rule.sport_lo, rule.sport_hi), (53, 53));
        assert_eq!(r.summary(), "input udp sport 53 dport 5000-5010 -> accept");
    }

    #[test]
    fn to_rule_ctstate() {
        let r = one_rule(
            "chain = \"forward\"\nctstate = [\"new\", \"invalid\", \"untracked\"]\naction = \"drop\"\n",
        );
        let rule = r.to_rule(&ifindex).unwrap();
        assert_eq!(rule.match_flags, match_flags::CTSTATE);
        assert_eq!(
            rule.ctstate,
            CtState::New.bit() | CtState::Invalid.bit() | CtState::Untracked.bit()
        );
        assert_eq!(r.summary(), "forward ctstate new,invalid,untracked -> drop");
    }

    #[test]
    fn to_rule_iif() {
        let r =
            one_rule("chain = \"input\"\nfamily = \"ipv6\"\niif = \"eth0\"\naction = \"accept\"\n");
        let rule = r.to_rule(&ifindex).unwrap();
        assert_eq!(rule.match_flags, match_flags::IIF);
        assert_eq!(rule.iif, 2);
        assert_eq!(rule.family, FAMILY_V6);
        assert_eq!(r.summary(), "input ipv6 iif eth0 -> accept");

        let e = r.to_rule(&|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            "fw.toml:7: rule[1].iif: interface \"eth0\" does not exist"
        );
    }

    #[test]
    fn numeric_proto() {
        let r = one_rule("chain = \"input\"\nproto = 47\naction = \"drop\"\n");
        assert_eq!(r.to_rule(&ifindex).unwrap().proto, 47);
        assert_eq!(r.summary(), "input 47 -> drop");
        let r = one_rule("chain = \"input\"\nproto = 6\ndport = 0\naction = \"drop\"\n");
        assert_eq!(r.dport, Some(PortRange { lo: 0, hi: 0 }));
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
}
