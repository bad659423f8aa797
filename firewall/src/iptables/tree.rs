//! The parse tree of iptables commands (tables, chains, rules, conditions,
//! targets) and the one-line error every layer reports.

use std::fmt;

use firewall_common::CtState;

use crate::syntax::{
    AddrRange, Cidr, IcmpType, Iface, Limit, PortRange, TcpFlags, ctstate_upper,
    iptables_proto_name,
};

/// The iptables tables that are imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    /// Built-in chains in the order iptables-save lists them.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Table::Filter => &[Hook::Input, Hook::Forward, Hook::Output],
            Table::Nat => &[
                Hook::Prerouting,
                Hook::Input,
                Hook::Output,
                Hook::Postrouting,
            ],
        }
    }
}

/// A built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub(super) fn in_table(table: Table, name: &str) -> Option<Hook> {
        table.hooks().iter().copied().find(|h| h.name() == name)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub(super) fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// One statement of an iptables command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `-A CHAIN rule`
    Append { chain: String, rule: Rule },
    /// `-I CHAIN [POSITION] rule`; `position` is 1-based.
    Insert {
        chain: String,
        position: usize,
        rule: Rule,
    },
    /// `-P CHAIN POLICY`
    Policy { chain: String, policy: Policy },
    /// `-N CHAIN`
    NewChain { chain: String },
}

/// One rule: all `conds` must hold for `target` to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Basic selectors first (`-p -s -d -i -o`, which the kernel checks
    /// before any match), then match conditions in the order written.
    pub conds: Vec<Cond>,
    pub target: Target,
    /// `-m comment --comment`; several are joined with "; ".
    pub comment: Option<String>,
    /// 1-based line in the dump; 0 from [`parse_rule`](super::parse_rule).
    pub line: usize,
    /// The rule as written, for messages and the TOML comments.
    pub text: String,
}

/// One condition, possibly negated with `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub negated: bool,
    pub test: Test,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// `-p`; `-p all` is no condition at all.
    Proto(u8),
    Src(Cidr),
    Dst(Cidr),
    InIface(Iface),
    OutIface(Iface),
    /// `-m iprange --src-range`
    SrcRange(AddrRange),
    DstRange(AddrRange),
    /// `--sport` (one range) or `-m multiport --sports` (several).
    Sport(Vec<PortRange>),
    Dport(Vec<PortRange>),
    /// `-m conntrack --ctstate` or `-m state --state`, in `CtState` order.
    CtState(Vec<CtState>),
    Icmp(IcmpType),
    Icmpv6(IcmpType),
    /// `--tcp-flags` and `--syn`.
    TcpFlags(TcpFlags),
    /// `-m limit`: the only condition that cannot be negated.
    Limit(Limit),
}

impl Test {
    pub(super) fn negatable(&self) -> bool {
        !matches!(self, Test::Limit(_))
    }
}

/// A NAT target: `ADDR[-ADDR][:PORT[-PORT]]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatTo {
    pub addrs: Option<AddrRange>,
    pub ports: Option<PortRange>,
}

impl fmt::Display for NatTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.ports.is_some() && self.addrs.is_some_and(|a| a.lo.is_ipv6());
        if let Some(a) = self.addrs {
            if bracket {
                f.write_str("[")?;
            }
            if a.lo == a.hi {
                write!(f, "{}", a.lo)?;
            } else {
                write!(f, "{a}")?;
            }
            if bracket {
                f.write_str("]")?;
            }
        }
        if let Some(p) = self.ports {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    /// `with` as written (canonical name when the family tells which).
    Reject {
        with: Option<String>,
    },
    /// Does not end the scan. `level` is 0-7 (`None`: warning).
    Log {
        prefix: Option<String>,
        level: Option<u8>,
    },
    Return,
    /// `-j CHAIN` to a user chain.
    Jump(String),
    /// No `-j`: the rule only counts packets.
    Continue,
    Masquerade {
        ports: Option<PortRange>,
    },
    Snat {
        to: NatTo,
    },
    Dnat {
        to: NatTo,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Accept => f.write_str("-j ACCEPT"),
            Target::Drop => f.write_str("-j DROP"),
            Target::Reject { with: None } => f.write_str("-j REJECT"),
            Target::Reject { with: Some(w) } => write!(f, "-j REJECT --reject-with {w}"),
            Target::Log { prefix, level } => {
                f.write_str("-j LOG")?;
                if let Some(p) = prefix {
                    write!(f, " --log-prefix {p:?}")?;
                }
                if let Some(l) = level {
                    write!(f, " --log-level {l}")?;
                }
                Ok(())
            }
            Target::Return => f.write_str("-j RETURN"),
            Target::Jump(c) => write!(f, "-j {c}"),
            Target::Continue => f.write_str("(no target)"),
            Target::Masquerade { ports: None } => f.write_str("-j MASQUERADE"),
            Target::Masquerade { ports: Some(p) } => write!(f, "-j MASQUERADE --to-ports {p}"),
            Target::Snat { to } => write!(f, "-j SNAT --to-source {to}"),
            Target::Dnat { to } => write!(f, "-j DNAT --to-destination {to}"),
        }
    }
}

/// iptables syntax, for messages: `! -s 10.0.0.0/8`, `-m multiport --dports
/// 80,443`.
impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = if self.negated { "! " } else { "" };
        let ports = |list: &[PortRange]| {
            list.iter()
                .map(|p| {
                    if p.lo == p.hi {
                        p.lo.to_string()
                    } else {
                        format!("{}:{}", p.lo, p.hi)
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.test {
            Test::Proto(p) => write!(f, "{not}-p {}", iptables_proto_name(*p)),
            Test::Src(c) => write!(f, "{not}-s {c}"),
            Test::Dst(c) => write!(f, "{not}-d {c}"),
            Test::InIface(i) => write!(f, "{not}-i {i}"),
            Test::OutIface(i) => write!(f, "{not}-o {i}"),
            Test::SrcRange(r) => write!(f, "-m iprange {not}--src-range {r}"),
            Test::DstRange(r) => write!(f, "-m iprange {not}--dst-range {r}"),
            Test::Sport(l) if l.len() == 1 => write!(f, "{not}--sport {}", ports(l)),
            Test::Dport(l) if l.len() == 1 => write!(f, "{not}--dport {}", ports(l)),
            Test::Sport(l) => write!(f, "-m multiport {not}--sports {}", ports(l)),
            Test::Dport(l) => write!(f, "-m multiport {not}--dports {}", ports(l)),
            Test::CtState(s) => {
                let names: Vec<String> = s.iter().map(|&s| ctstate_upper(s)).collect();
                write!(f, "-m conntrack {not}--ctstate {}", names.join(","))
            }
            Test::Icmp(t) => write!(f, "-m icmp {not}--icmp-type {t}"),
            Test::Icmpv6(t) => write!(f, "-m icmp6 {not}--icmpv6-type {t}"),
            Test::TcpFlags(t) => write!(f, "{not}--tcp-flags {t}"),
            Test::Limit(l) => write!(
                f,
                "-m limit --limit {}/{} --limit-burst {}",
                l.count,
                l.per.name(),
                l.burst
            ),
        }
    }
}

/// A parse or resolution error: one line, with the dump's line when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line in the dump; `None` for [`parse_rule`](super::parse_rule) on its own, or an
    /// error about the dump as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        ParseError {
            line: None,
            message: message.into(),
        }
    }

    pub(super) fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line: Some(line),
            message: message.into(),
        }
    }

    pub(super) fn or_line(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }

    /// The form `firewall import` prints: `rules.v4:12: message`.
    pub fn in_file(&self, origin: &str) -> String {
        match self.line {
            Some(l) => format!("{origin}:{l}: {}", self.message),
            None => format!("{origin}: {}", self.message),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}
