//! Translation of a resolved dump to this firewall's config (`firewall
//! import`), or the list of lines it cannot express.
//!
//! The config's model differs from iptables in ways `to_toml` checks:
//!
//! * Only listed interfaces are filtered. Interfaces named by `-i`/`-o` get
//!   an `[[interface]]`; the role is a guess (`wan` for the `-o` of
//!   MASQUERADE/SNAT and the `-i` of DNAT, `lan` otherwise) and says so. A
//!   `lan` accepts NEW traffic no rule decides, where iptables applied the
//!   policy, so a `lan` in a chain with policy DROP gets an explicit final
//!   drop rule. Loopback is never filtered: `-i lo ... -j ACCEPT` is
//!   redundant, `! -i lo` always holds, anything else on `lo` is refused.
//! * ESTABLISHED and RELATED packets are accepted before rules. The dump
//!   must agree: no DROP/REJECT (and no DROP policy) may reach such packets
//!   before a `--ctstate ESTABLISHED,RELATED -j ACCEPT` covers them, unless
//!   the chain is a FORWARD that accepts nothing (then no forwarded
//!   connection can exist). Rules see only NEW, INVALID and UNTRACKED
//!   packets, so `ctstate` lists are reduced to those (`! --ctstate INVALID`
//!   becomes `["new", "untracked"]`) and an accept of ESTABLISHED/RELATED
//!   only is redundant.
//! * Conditions met twice after inlining are intersected (`-s 10.0.0.0/8`
//!   and `-s 10.1.0.0/16` is `10.1.0.0/16`); a rule whose conditions cannot
//!   all hold is left out, with a comment.
//! * NAT is per interface: MASQUERADE/SNAT must be `-o IFACE` and nothing
//!   else; DNAT must be `-i IFACE -p tcp|udp --dport ...` (multiport becomes
//!   one `[[port_forward]]` per entry) to one IPv4 address and at most one
//!   port, and with several `wan` interfaces it cannot be limited to one.
//! * A port forward is accepted unless a FORWARD rule drops it, and those
//!   rules see the packet before translation; iptables ran FORWARD after
//!   translation and fell back to the policy. Each forward's packets are
//!   walked through both (a condition on what is unknown, such as the
//!   source, counts as "may match"), and both must accept all of them.
//!
//! * A rule holds one TCP flags test and one rate: "not these flags and
//!   not those" (or "these and not those") and two `-m limit`s after
//!   inlining are refused, line by line. So are port lists that outgrow
//!   multiport's 15 slots when inlining intersects them.

use std::{
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr},
};

use firewall_common::{CtState, IPPROTO_TCP, IPPROTO_UDP, MAX_RULES};

use super::{
    Cond, FlatCond, FlatRule, Hook, NatTo, Policy, Ruleset, Table, Target, Test,
    keys::{EST_REL, RULE_STATES, kv, rule_block, toml_ports, toml_proto, toml_str},
};
use crate::syntax::{
    ALL_STATES, AddrRange, Cidr, Family, Iface, PortRange, ctstate_upper, iptables_proto_name,
    state_bits, states_of,
};

/// A line (or the dump as a whole) that the config cannot express yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unexpressible {
    pub line: Option<usize>,
    pub what: String,
}

impl Unexpressible {
    /// `rules.v4:12: what`
    pub fn in_file(&self, origin: &str) -> String {
        match self.line {
            Some(l) => format!("{origin}:{l}: {}", self.what),
            None => format!("{origin}: {}", self.what),
        }
    }
}

impl fmt::Display for Unexpressible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Why [`to_toml`] refused: every line using something the config cannot
/// express, in line order, and the config it would have written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToTomlError {
    pub items: Vec<Unexpressible>,
    pub draft: String,
}

impl fmt::Display for ToTomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.items.iter().map(ToString::to_string).collect();
        write!(
            f,
            "the config cannot express this yet: {}",
            items.join("; ")
        )
    }
}

impl std::error::Error for ToTomlError {}

/// Write the ruleset as this firewall's TOML config, or refuse with every
/// line whose meaning it cannot express (see the module documentation). The
/// result always passes [`crate::config::parse`].
pub fn to_toml(ruleset: &Ruleset) -> Result<String, ToTomlError> {
    let mut t = Translation::new(ruleset);
    t.collect_interfaces();
    t.nat();
    t.filter();
    let draft = t.render();
    let mut items = t.problems;
    items.sort();
    items.dedup();
    if !items.is_empty() {
        return Err(ToTomlError { items, draft });
    }
    if let Err(e) = crate::config::parse(&draft, "imported config") {
        return Err(ToTomlError {
            items: vec![Unexpressible {
                line: None,
                what: format!("the generated config does not validate: {e}"),
            }],
            draft,
        });
    }
    Ok(draft)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceNat {
    Masquerade,
    Snat(Ipv4Addr),
}

struct IfaceOut {
    name: String,
    first_line: usize,
    /// Why it is guessed to be `wan`; `None` is `lan`.
    wan_because: Option<String>,
    nat: Option<(SourceNat, usize)>,
}

struct ForwardOut {
    proto: u8,
    ports: PortRange,
    to: Ipv4Addr,
    to_port: Option<u16>,
    comment: Option<String>,
    origin: String,
    text: String,
    line: usize,
}

struct Translation<'r> {
    rs: &'r Ruleset,
    problems: Vec<Unexpressible>,
    ifaces: Vec<IfaceOut>,
    forwards: Vec<ForwardOut>,
    /// `[[rule]]` blocks and comments, per filter chain.
    rules_text: String,
    rule_count: usize,
    nat_notes: Vec<String>,
}

impl<'r> Translation<'r> {
    fn new(rs: &'r Ruleset) -> Self {
        Translation {
            rs,
            problems: Vec::new(),
            ifaces: Vec::new(),
            forwards: Vec::new(),
            rules_text: String::new(),
            rule_count: 0,
            nat_notes: Vec::new(),
        }
    }

    fn problem(&mut self, line: Option<usize>, what: impl Into<String>) {
        self.problems.push(Unexpressible {
            line,
            what: what.into(),
        });
    }

    /// Every exactly named interface a rule mentions, except `lo`.
    fn collect_interfaces(&mut self) {
        let mut found: Vec<(usize, String)> = Vec::new();
        for r in &self.rs.rules {
            for c in &r.conds {
                if let Test::InIface(i) | Test::OutIface(i) = &c.cond.test
                    && !i.wildcard
                    && !i.is_loopback()
                    && !found.iter().any(|(_, n)| *n == i.name)
                {
                    found.push((c.line, i.name.clone()));
                }
            }
        }
        found.sort();
        self.ifaces = found
            .into_iter()
            .map(|(first_line, name)| IfaceOut {
                name,
                first_line,
                wan_because: None,
                nat: None,
            })
            .collect();
    }

    fn iface_mut(&mut self, name: &str) -> Option<&mut IfaceOut> {
        self.ifaces.iter_mut().find(|i| i.name == name)
    }

    fn mark_wan(&mut self, name: &str, because: String) {
        if let Some(i) = self.iface_mut(name) {
            i.wan_because.get_or_insert(because);
        }
    }

    fn nat(&mut self) {
        let rs = self.rs;
        let rules: Vec<&FlatRule> = rs.rules.iter().filter(|r| r.table == Table::Nat).collect();
        // Roles first: every MASQUERADE/SNAT -o and DNAT -i is a wan.
        for r in &rules {
            for c in &r.conds {
                match (&r.action, &c.cond.test) {
                    (Target::Masquerade { .. } | Target::Snat { .. }, Test::OutIface(i))
                    | (Target::Dnat { .. }, Test::InIface(i))
                        if !c.cond.negated && !i.wildcard =>
                    {
                        let what = match r.action {
                            Target::Masquerade { .. } => "MASQUERADE -o",
                            Target::Snat { .. } => "SNAT -o",
                            _ => "DNAT -i",
                        };
                        self.mark_wan(&i.name, format!("{what} {} on line {}", i.name, r.line));
                    }
                    _ => {}
                }
            }
        }
        let wans: Vec<String> = self
            .ifaces
            .iter()
            .filter(|i| i.wan_because.is_some())
            .map(|i| i.name.clone())
            .collect();

        for (idx, r) in rules.iter().enumerate() {
            let later_nat = rules[idx + 1..].iter().any(|l| {
                l.hook == r.hook
                    && matches!(
                        l.action,
                        Target::Masquerade { .. } | Target::Snat { .. } | Target::Dnat { .. }
                    )
            });
            let origin = r.origin();
            match &r.action {
                Target::Masquerade { .. } | Target::Snat { .. } if r.hook == Hook::Postrouting => {
                    self.source_nat(r);
                }
                Target::Dnat { to } if r.hook == Hook::Prerouting => {
                    self.port_forward(r, to, &wans);
                }
                Target::Snat { .. } => {
                    self.problem(Some(r.line), "SNAT in INPUT (the firewall translates only on the way out)");
                }
                Target::Dnat { .. } => self.problem(
                    Some(r.line),
                    "DNAT in OUTPUT (the firewall forwards only traffic arriving on a wan interface)",
                ),
                Target::Accept if later_nat => self.problem(
                    Some(r.line),
                    format!(
                        "{} in nat {} exempts packets from the NAT rules after it",
                        r.action, r.hook
                    ),
                ),
                Target::Accept => self.nat_notes.push(format!(
                    "{origin}: {}: nothing follows it in nat {}, so it changes nothing",
                    r.text, r.hook
                )),
                Target::Continue => self.nat_notes.push(format!(
                    "{origin}: {}: no target, only counts packets",
                    r.text
                )),
                Target::Log { .. } => self.problem(
                    Some(r.line),
                    "LOG in the nat table (the firewall logs from filter rules)",
                ),
                other => self.problem(Some(r.line), format!("{other} in the nat table")),
            }
        }
    }

    fn source_nat(&mut self, r: &FlatRule) {
        let what = match r.action {
            Target::Masquerade { .. } => "MASQUERADE",
            _ => "SNAT",
        };
        if self.rs.family == Family::V6 {
            self.problem(Some(r.line), format!("{what}: IPv6 NAT is not supported"));
            return;
        }
        let oif = r.conds.iter().find_map(|c| match &c.cond.test {
            Test::OutIface(i) if !c.cond.negated && !i.wildcard => Some(i.name.clone()),
            _ => None,
        });
        let Some(oif) = oif else {
            self.problem(
                Some(r.line),
                format!("{what} without -o IFACE (the firewall translates per interface)"),
            );
            return;
        };
        for c in &r.conds {
            if matches!(&c.cond.test, Test::OutIface(i) if i.name == oif && !c.cond.negated) {
                continue;
            }
            self.problem(
                Some(c.line),
                format!(
                    "{what} only for {}: the firewall translates every IPv4 connection \
                     forwarded out of {oif}",
                    c.cond
                ),
            );
        }
        let nat = match &r.action {
            Target::Masquerade { ports: Some(p) } => {
                self.problem(Some(r.line), format!("MASQUERADE --to-ports {p}"));
                return;
            }
            Target::Masquerade { ports: None } => SourceNat::Masquerade,
            Target::Snat { to } => match (to.addrs, to.ports) {
                (
                    Some(AddrRange {
                        lo: IpAddr::V4(a),
                        hi,
                    }),
                    None,
                ) if IpAddr::V4(a) == hi => SourceNat::Snat(a),
                _ => {
                    self.problem(
                        Some(r.line),
                        format!("SNAT --to-source {to} (only one address, without ports)"),
                    );
                    return;
                }
            },
            _ => unreachable!("source_nat is called for MASQUERADE and SNAT"),
        };
        let line = r.line;
        let text = r.text.clone();
        let Some(iface) = self.iface_mut(&oif) else {
            // Only lo is left out of the interfaces.
            self.problem(
                Some(r.line),
                format!("{what} -o {oif}: loopback traffic is never translated"),
            );
            return;
        };
        match iface.nat {
            Some((_, first)) => {
                let note = format!(
                    "line {line}: {text}: never applies, line {first} translates {oif} first"
                );
                self.nat_notes.push(note);
            }
            None => iface.nat = Some((nat, line)),
        }
    }

    fn port_forward(&mut self, r: &FlatRule, to: &NatTo, wans: &[String]) {
        if self.rs.family == Family::V6 {
            self.problem(Some(r.line), "DNAT: IPv6 NAT is not supported");
            return;
        }
        let mut proto = None;
        let mut ports: Option<Vec<PortRange>> = None;
        let mut iif = None;
        for c in &r.conds {
            match &c.cond.test {
                Test::Proto(p @ (IPPROTO_TCP | IPPROTO_UDP)) if !c.cond.negated => proto = Some(*p),
                Test::Dport(l) if !c.cond.negated && ports.is_none() => ports = Some(l.clone()),
                Test::InIface(i) if !c.cond.negated && !i.wildcard && iif.is_none() => {
                    iif = Some(i.name.clone());
                }
                _ => self.problem(
                    Some(c.line),
                    format!(
                        "DNAT only for {}: a port forward matches only protocol, port and \
                         arrival on a wan interface",
                        c.cond
                    ),
                ),
            }
        }
        let (Some(proto), Some(ports)) = (proto, ports) else {
            self.problem(
                Some(r.line),
                "DNAT without -p tcp|udp and --dport (a port forward needs both)",
            );
            return;
        };
        match &iif {
            Some(i) if i == "lo" => self.problem(
                Some(r.line),
                "DNAT -i lo: loopback traffic is never translated",
            ),
            None => self.problem(
                Some(r.line),
                "DNAT without -i: port forwards apply only to traffic arriving on wan interfaces",
            ),
            Some(i) if wans.len() > 1 => self.problem(
                Some(r.line),
                format!(
                    "DNAT only on {i}: port forwards apply on every wan interface ({})",
                    wans.join(", ")
                ),
            ),
            Some(_) => {}
        }
        let addr = match to.addrs {
            Some(AddrRange {
                lo: IpAddr::V4(a),
                hi,
            }) if IpAddr::V4(a) == hi => a,
            _ => {
                self.problem(
                    Some(r.line),
                    format!("DNAT --to-destination {to} (a port forward goes to one IPv4 address)"),
                );
                return;
            }
        };
        let to_port = match to.ports {
            None => None,
            Some(p) if p.lo == p.hi => Some(p.lo),
            Some(p) => {
                self.problem(
                    Some(r.line),
                    format!(
                        "DNAT to the port range {p} (a port forward maps to one port or keeps it)"
                    ),
                );
                return;
            }
        };
        for range in ports {
            if to_port.is_some() && range.lo != range.hi {
                self.problem(
                    Some(r.line),
                    format!(
                        "DNAT of ports {range} to one port: iptables sends them all to it, a \
                         port forward maps a range port by port"
                    ),
                );
                continue;
            }
            let overlap = self
                .forwards
                .iter()
                .find(|f| f.proto == proto && f.ports.lo <= range.hi && range.lo <= f.ports.hi);
            if let Some(f) = overlap {
                if f.ports.lo <= range.lo && range.hi <= f.ports.hi {
                    let note = format!(
                        "{}: {}: never applies, line {} forwards these ports first",
                        r.origin(),
                        r.text,
                        f.line
                    );
                    self.nat_notes.push(note);
                } else {
                    let what = format!("DNAT of ports {range} partly overlaps line {}", f.line);
                    self.problem(Some(r.line), what);
                }
                continue;
            }
            self.check_forward_accepted(r, proto, range, iif.as_deref(), addr, to_port);
            self.forwards.push(ForwardOut {
                proto,
                ports: range,
                to: addr,
                to_port,
                comment: r.comment.clone(),
                origin: r.origin(),
                text: r.text.clone(),
                line: r.line,
            });
        }
    }

    /// iptables passes a port-forwarded connection through FORWARD after
    /// translation, with the policy as fallback; the firewall runs FORWARD
    /// rules on the packet before translation and accepts what no rule
    /// decides. Both must accept every packet of the forward.
    fn check_forward_accepted(
        &mut self,
        r: &FlatRule,
        proto: u8,
        wan_ports: PortRange,
        iif: Option<&str>,
        to: Ipv4Addr,
        to_port: Option<u16>,
    ) {
        let rs = self.rs;
        let forward: Vec<&FlatRule> = rs.chain_rules(Table::Filter, Hook::Forward).collect();
        let (policy, policy_line) = rs.policy(Table::Filter, Hook::Forward);
        let what = format!(
            "the port forward {} {wan_ports}",
            iptables_proto_name(proto)
        );
        let translated = PacketClass {
            iif,
            proto,
            dst: Some(IpAddr::V4(to)),
            dport: to_port.map_or(wan_ports, |p| PortRange { lo: p, hi: p }),
        };
        if let Err((line, verb)) = all_accepted(&forward, &translated, policy, policy_line) {
            let at = match line {
                Some(l) if Some(l) == policy_line => format!("by its policy DROP, line {l}"),
                Some(l) => format!("at line {l}"),
                None => "by its policy DROP".into(),
            };
            self.problem(
                Some(r.line),
                format!(
                    "{what}: iptables' FORWARD {verb} it {at} (after translation); the \
                     firewall accepts a port forward that no rule drops"
                ),
            );
        }
        let untranslated = PacketClass {
            iif,
            proto,
            dst: None,
            dport: wan_ports,
        };
        if let Err((Some(line), verb)) = all_accepted(&forward, &untranslated, Policy::Accept, None)
        {
            self.problem(
                Some(r.line),
                format!(
                    "{what}: line {line} {verb} it in the firewall, whose FORWARD rules see \
                     the address before translation"
                ),
            );
        }
    }

    fn filter(&mut self) {
        let rs = self.rs;
        for &hook in Table::Filter.hooks() {
            let (policy, policy_line) = rs.policy(Table::Filter, hook);
            let rules: Vec<&FlatRule> = rs.chain_rules(Table::Filter, hook).collect();
            self.established_first(hook, &rules, policy, policy_line);
            for r in rules {
                self.filter_rule(r);
            }
            // A lan accepts what no rule decides; iptables applied the
            // policy to it.
            if policy == Policy::Drop && hook != Hook::Output {
                let lans: Vec<String> = self
                    .ifaces
                    .iter()
                    .filter(|i| i.wan_because.is_none())
                    .filter(|i| {
                        !decides_all(
                            &rs.chain_rules(Table::Filter, hook).collect::<Vec<_>>(),
                            &i.name,
                        )
                    })
                    .map(|i| i.name.clone())
                    .collect();
                for lan in lans {
                    let mut block = format!(
                        "\n# {lan} is a lan, where the firewall accepts NEW traffic no rule \
                         decides;\n# iptables applied the DROP policy of {hook} to it.\n"
                    );
                    block += "[[rule]]\n";
                    kv(
                        &mut block,
                        "chain",
                        toml_str(&hook.name().to_ascii_lowercase()),
                    );
                    kv(&mut block, "family", toml_str(&rs.family.to_string()));
                    kv(&mut block, "iif", toml_str(&lan));
                    kv(&mut block, "action", toml_str("drop"));
                    kv(
                        &mut block,
                        "comment",
                        toml_str(&format!("{hook} policy DROP")),
                    );
                    self.rules_text += &block;
                    self.rule_count += 1;
                }
            }
        }
        if self.rule_count > MAX_RULES as usize {
            self.problem(
                None,
                format!(
                    "{} rules, more than the {MAX_RULES} the config holds",
                    self.rule_count
                ),
            );
        }
    }

    /// The firewall accepts ESTABLISHED and RELATED packets before any rule;
    /// refuse when iptables could drop some of them.
    fn established_first(
        &mut self,
        hook: Hook,
        rules: &[&FlatRule],
        policy: Policy,
        policy_line: Option<usize>,
    ) {
        // No forwarded connection exists when FORWARD accepts nothing.
        if hook == Hook::Forward
            && policy == Policy::Drop
            && !rules.iter().any(|r| r.action == Target::Accept)
        {
            return;
        }
        let mut covered = 0u8;
        for r in rules {
            if covered == EST_REL {
                return;
            }
            let allowed = allowed_states(&r.conds);
            match r.action {
                Target::Accept
                    if r.conds
                        .iter()
                        .all(|c| matches!(c.cond.test, Test::CtState(_))) =>
                {
                    covered |= allowed & EST_REL;
                }
                Target::Drop | Target::Reject { .. } if allowed & EST_REL & !covered != 0 => {
                    self.problem(
                        Some(r.line),
                        format!(
                            "{} also applies to ESTABLISHED/RELATED packets here (no \
                             --ctstate ESTABLISHED,RELATED -j ACCEPT before it); the firewall \
                             accepts those before any rule",
                            r.action
                        ),
                    );
                }
                _ => {}
            }
        }
        if covered != EST_REL && policy == Policy::Drop {
            let missing: Vec<String> = states_of(EST_REL & !covered)
                .into_iter()
                .map(ctstate_upper)
                .collect();
            self.problem(
                policy_line,
                format!(
                    "policy DROP of {hook} also applies to {} packets (no --ctstate \
                     ESTABLISHED,RELATED -j ACCEPT covers them); the firewall accepts those \
                     before any rule",
                    missing.join(" and ")
                ),
            );
        }
    }

    fn filter_rule(&mut self, r: &FlatRule) {
        let origin = r.origin();
        match rule_block(r, Some(self.rs.family), &mut self.problems) {
            Ok(body) => {
                self.rules_text += &format!("\n# {origin}: {}\n[[rule]]\n{body}", r.text);
                self.rule_count += 1;
            }
            Err(why) => {
                self.rules_text += &format!("\n# {origin}: {}\n#   left out: {why}\n", r.text);
            }
        }
    }

    fn render(&self) -> String {
        let rs = self.rs;
        let mut out = String::new();
        let family = rs.family;
        let other = match family {
            Family::V4 => "ip6tables-save",
            Family::V6 => "iptables-save",
        };
        let _ = writeln!(
            out,
            "# Imported by `firewall import` from an {}-save dump ({family}).",
            match family {
                Family::V4 => "iptables",
                Family::V6 => "ip6tables",
            }
        );
        out += "# Check before use:\n";
        out += "# * Only the [[interface]]s below are filtered, where iptables filtered every\n";
        out += "#   interface: add each one that carries traffic. The roles are guesses.\n";
        out += "# * ESTABLISHED and RELATED packets are accepted before any rule, and packets\n";
        out += "#   conntrack finds INVALID are dropped; loopback is never filtered.\n";
        let _ = writeln!(
            out,
            "# * The rules are for {family} only; the other family meets only [policy].\n\
             #   Import the {other} dump as well and merge the two."
        );
        if !self.forwards.is_empty() {
            out += "# * Port forwards are accepted unless a rule drops them, and rules see the\n";
            out += "#   address before translation (iptables' FORWARD saw it after).\n";
        }
        for (table, line) in &rs.empty_tables {
            let _ = writeln!(
                out,
                "# Table {table} (line {line}) has no rules and ACCEPT policies: nothing to import."
            );
        }
        for c in &rs.unused_chains {
            let at = c.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "# Chain {}{at} of table {} is never jumped to: its {} rule(s) have no effect.",
                c.name,
                c.table.name(),
                c.rules
            );
        }

        if self.ifaces.is_empty() {
            out += "\n# No rule names an interface, and the config needs one: set this to the\n";
            out += "# interface to filter (a single wan is host mode).\n";
            out += "[[interface]]\nname = \"CHANGE-ME\"\nrole = \"wan\"\n";
        }
        for i in &self.ifaces {
            out += "\n[[interface]]\n";
            kv(&mut out, "name", toml_str(&i.name));
            match &i.wan_because {
                Some(why) => {
                    let _ = writeln!(out, "role = \"wan\"  # guessed from {why}; check");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "role = \"lan\"  # guessed (first named on line {}); check",
                        i.first_line
                    );
                }
            }
            match i.nat {
                Some((SourceNat::Masquerade, line)) => {
                    let _ = writeln!(out, "masquerade = true  # line {line}");
                }
                Some((SourceNat::Snat(a), line)) => {
                    let _ = writeln!(out, "snat = {}  # line {line}", toml_str(&a.to_string()));
                }
                None => {}
            }
        }

        out += "\n[policy]\n";
        for &hook in Table::Filter.hooks() {
            let (policy, line) = rs.policy(Table::Filter, hook);
            let value = match policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            };
            let at = line
                .map(|l| format!("  # line {l}"))
                .unwrap_or_else(|| "  # iptables' default".to_string());
            let _ = writeln!(
                out,
                "{} = {}{at}",
                hook.name().to_ascii_lowercase(),
                toml_str(value)
            );
        }

        out += &self.rules_text;

        for note in &self.nat_notes {
            let _ = writeln!(out, "\n# {note}");
        }
        for f in &self.forwards {
            let _ = write!(out, "\n# {}: {}\n[[port_forward]]\n", f.origin, f.text);
            kv(&mut out, "proto", toml_proto(f.proto));
            kv(&mut out, "port", toml_ports(&[f.ports]));
            let to = match f.to_port {
                Some(p) => format!("{}:{p}", f.to),
                None => f.to.to_string(),
            };
            kv(&mut out, "to", toml_str(&to));
            if let Some(c) = &f.comment {
                kv(&mut out, "comment", toml_str(c));
            }
        }
        out
    }
}

/// Whether a rule decides every packet the rules see arriving on `iface`,
/// so nothing is left for the lan's default.
fn decides_all(rules: &[&FlatRule], iface: &str) -> bool {
    rules.iter().any(|r| {
        matches!(
            r.action,
            Target::Accept | Target::Drop | Target::Reject { .. }
        ) && allowed_states(&r.conds) & RULE_STATES == RULE_STATES
            && r.conds.iter().all(|c| match &c.cond.test {
                Test::InIface(i) if !c.cond.negated => i
                    .meet(&Iface {
                        name: iface.to_string(),
                        wildcard: false,
                    })
                    .is_some(),
                Test::CtState(_) => true,
                _ => false,
            })
    })
}

/// States a rule's conditions let through, as `CtState` bits.
fn allowed_states(conds: &[FlatCond]) -> u8 {
    conds
        .iter()
        .fold(ALL_STATES, |allowed, c| match &c.cond.test {
            Test::CtState(s) if c.cond.negated => allowed & !state_bits(s),
            Test::CtState(s) => allowed & state_bits(s),
            _ => allowed,
        })
}

/// What is known of the first packet of a port-forwarded connection: the
/// rest (source, output interface, ...) can be anything.
struct PacketClass<'a> {
    iif: Option<&'a str>,
    proto: u8,
    dst: Option<IpAddr>,
    dport: PortRange,
}

/// Whether `cond` holds for every packet of the class (`Some(true)`), for
/// none (`Some(false)`), or depends on what is not known (`None`).
fn holds(cond: &Cond, class: &PacketClass) -> Option<bool> {
    let p = class.dport;
    let result = match &cond.test {
        Test::Proto(x) => Some(*x == class.proto),
        Test::Dst(c) => class.dst.map(|a| c.contains(&Cidr::host(a))),
        Test::DstRange(r) => class.dst.map(|a| r.lo <= a && a <= r.hi),
        Test::Dport(list) => {
            if list.iter().any(|r| r.lo <= p.lo && p.hi <= r.hi) {
                Some(true)
            } else if list.iter().all(|r| r.hi < p.lo || r.lo > p.hi) {
                Some(false)
            } else {
                None
            }
        }
        Test::InIface(i) => class.iif.map(|name| {
            i.meet(&Iface {
                name: name.to_string(),
                wildcard: false,
            })
            .is_some()
        }),
        Test::CtState(s) => Some(s.contains(&CtState::New)),
        Test::Icmp(_) | Test::Icmpv6(_) => Some(false),
        Test::Src(_)
        | Test::SrcRange(_)
        | Test::Sport(_)
        | Test::OutIface(_)
        | Test::TcpFlags(_)
        | Test::Limit(_) => None,
    };
    result.map(|b| b != cond.negated)
}

/// Walks a first-match chain for a class of packets: `Ok` when every one is
/// accepted, else the line (`None`: the policy) that drops some and how
/// surely.
fn all_accepted(
    rules: &[&FlatRule],
    class: &PacketClass,
    policy: Policy,
    policy_line: Option<usize>,
) -> Result<(), (Option<usize>, &'static str)> {
    let mut some_accepted = false;
    for r in rules {
        let mut all = true;
        let mut never = false;
        for c in &r.conds {
            match holds(&c.cond, class) {
                Some(true) => {}
                Some(false) => never = true,
                None => all = false,
            }
        }
        if never {
            continue;
        }
        match (&r.action, all) {
            (Target::Accept, true) => return Ok(()),
            (Target::Drop | Target::Reject { .. }, true) => return Err((Some(r.line), "drops")),
            (Target::Drop | Target::Reject { .. }, false) => {
                return Err((Some(r.line), "may drop"));
            }
            (Target::Accept, false) => some_accepted = true,
            _ => {}
        }
    }
    match policy {
        Policy::Accept => Ok(()),
        Policy::Drop if some_accepted => Err((policy_line, "may drop")),
        Policy::Drop => Err((policy_line, "drops")),
    }
}

#[cfg(test)]
mod tests;
