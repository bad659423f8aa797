//! A config's `iptables = [...]` key: the lines read with the parser and
//! resolution a dump gets, as rules of the filter table.

use super::{
    Builder, Hook, Omitted, ParseError, Policy, RuleKeys, Table, Target, command::parse_rule,
    keys::rule_keys,
};
use crate::syntax::Family;

/// A config's `iptables = [...]` lines, resolved like a dump's filter table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLines {
    /// The rules' `[[rule]]` keys in order, each with the 1-based index of
    /// the line whose rule it is.
    pub rules: Vec<(usize, RuleKeys)>,
    /// Policies `-P` sets, with the index of the line.
    pub policies: Vec<(Hook, Policy, usize)>,
}

/// Reads a config's `iptables` lines: commands `-A`, `-I`, `-P` and `-N`
/// for the filter table, resolved as a dump's are (user chains inlined,
/// conditions intersected). A rule only for ESTABLISHED/RELATED packets is
/// left out when it accepts them, since the firewall accepts those before
/// any rule, and an error otherwise. An error's `line` is the 1-based index
/// of the offending entry.
pub fn config_lines(lines: &[&str]) -> Result<ConfigLines, ParseError> {
    // The builder records one family for a dump; here nothing reads it, and
    // each rule's family comes from its own addresses, as a `[[rule]]`'s.
    let mut builder = Builder::new(Family::V4);
    for (i, text) in lines.iter().enumerate() {
        let n = i + 1;
        let stmts = parse_rule(text, Table::Filter).map_err(|mut e| {
            if e.message.starts_with("-t ") {
                e.message += " (NAT is configured with masquerade, snat and [[port_forward]])";
            }
            e.or_line(n)
        })?;
        for stmt in stmts {
            builder.apply(Table::Filter, stmt, n)?;
        }
    }
    let rs = builder.finish()?;
    for c in &rs.unused_chains {
        log::warn!(
            "iptables[{}]: chain {} is never jumped to: its {} rule(s) have no effect",
            c.line.unwrap_or(0),
            c.name,
            c.rules
        );
    }
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    for r in &rs.rules {
        match rule_keys(r, &mut problems) {
            Ok(keys) => rules.push((r.line, keys)),
            Err(why @ (Omitted::EstablishedOnly | Omitted::LoopbackAccept))
                if r.action == Target::Accept =>
            {
                log::debug!("iptables[{}]: {}: redundant: {why}", r.line, r.text);
            }
            Err(why @ Omitted::NeverHolds(_)) => {
                log::warn!("iptables[{}]: {}: never matches: {why}", r.line, r.text);
            }
            Err(Omitted::NoTarget) => {
                return Err(ParseError::at(
                    r.line,
                    "no -j target: such a rule only counts packets, which the config has no use for",
                ));
            }
            Err(why) => {
                return Err(ParseError::at(
                    r.line,
                    format!("{} is never reached: {why}", r.action),
                ));
            }
        }
    }
    if let Some(p) = problems.into_iter().min() {
        return Err(ParseError {
            line: p.line,
            message: p.what,
        });
    }
    let policies = Table::Filter
        .hooks()
        .iter()
        .filter_map(|&hook| {
            let (policy, line) = rs.policy(Table::Filter, hook);
            line.map(|l| (hook, policy, l))
        })
        .collect();
    Ok(ConfigLines { rules, policies })
}

#[cfg(test)]
mod tests;
