//! Dumps: `iptables-save` output read into tables of chains, checked as
//! iptables-restore checks it, then resolved ([`super::resolve`]).

use std::collections::HashSet;

use super::{
    FlatRule, Hook, ParseError, Policy, Rule, Stmt, Table, Target, UnusedChain,
    command::{UNSUPPORTED_TARGETS, parse_rule_in},
    resolve::resolve,
};
use crate::syntax::Family;

/// A chain as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDump {
    pub name: String,
    /// `None` for a user chain.
    pub policy: Option<Policy>,
    /// Where the policy was set; `None` when it is iptables' default ACCEPT.
    pub policy_line: Option<usize>,
    /// Where a user chain was declared.
    pub line: Option<usize>,
    pub rules: Vec<Rule>,
}

impl ChainDump {
    pub(super) fn builtin(&self) -> bool {
        self.policy.is_some()
    }
}

/// One table as parsed: built-in chains first, then user chains in the order
/// declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDump {
    pub table: Table,
    pub chains: Vec<ChainDump>,
}

impl TableDump {
    fn new(table: Table) -> Self {
        TableDump {
            table,
            chains: table
                .hooks()
                .iter()
                .map(|h| ChainDump {
                    name: h.name().to_string(),
                    policy: Some(Policy::Accept),
                    policy_line: None,
                    line: None,
                    rules: Vec::new(),
                })
                .collect(),
        }
    }

    pub fn chain(&self, name: &str) -> Option<&ChainDump> {
        self.chains.iter().find(|c| c.name == name)
    }

    fn chain_mut(&mut self, name: &str) -> Option<&mut ChainDump> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
}

/// A parsed and resolved dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub family: Family,
    /// The parse tree, per table.
    pub tables: Vec<TableDump>,
    /// The resolved rules: per table, per built-in chain, in order.
    pub rules: Vec<FlatRule>,
    pub unused_chains: Vec<UnusedChain>,
    /// Tables that were present but empty (`mangle`, `raw`, `security`
    /// with ACCEPT policies and no rules), with their line.
    pub empty_tables: Vec<(String, usize)>,
}

impl Ruleset {
    /// The policy of a built-in chain and where it was set.
    pub fn policy(&self, table: Table, hook: Hook) -> (Policy, Option<usize>) {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .and_then(|t| t.chain(hook.name()))
            .map_or((Policy::Accept, None), |c| {
                (c.policy.unwrap_or(Policy::Accept), c.policy_line)
            })
    }

    /// The resolved rules of one built-in chain.
    pub fn chain_rules(&self, table: Table, hook: Hook) -> impl Iterator<Item = &FlatRule> {
        self.rules
            .iter()
            .filter(move |r| r.table == table && r.hook == hook)
    }
}

/// Collects statements into tables; [`Builder::finish`] resolves them.
pub struct Builder {
    family: Family,
    tables: Vec<TableDump>,
    /// Built-in chains whose `:CHAIN POLICY` line was seen.
    declared: HashSet<(Table, String)>,
    empty_tables: Vec<(String, usize)>,
}

impl Builder {
    pub fn new(family: Family) -> Self {
        Builder {
            family,
            tables: Vec::new(),
            declared: HashSet::new(),
            empty_tables: Vec::new(),
        }
    }

    fn table(&mut self, table: Table) -> &mut TableDump {
        if let Some(i) = self.tables.iter().position(|t| t.table == table) {
            return &mut self.tables[i];
        }
        self.tables.push(TableDump::new(table));
        self.tables.last_mut().expect("just pushed")
    }

    /// A `:NAME POLICY` line of a dump.
    fn declare(
        &mut self,
        table: Table,
        name: &str,
        policy: &str,
        line: usize,
    ) -> Result<(), ParseError> {
        let builtin = Hook::in_table(table, name).is_some();
        if builtin {
            if !self.declared.insert((table, name.to_string())) {
                return Err(ParseError::at(
                    line,
                    format!("chain {name} is declared twice"),
                ));
            }
            let policy = match policy {
                "ACCEPT" => Policy::Accept,
                "DROP" => Policy::Drop,
                "-" => {
                    return Err(ParseError::at(
                        line,
                        format!("built-in chain {name} needs a policy"),
                    ));
                }
                other => {
                    return Err(ParseError::at(
                        line,
                        format!("policy {other} is not supported (ACCEPT or DROP)"),
                    ));
                }
            };
            return self.apply(
                table,
                Stmt::Policy {
                    chain: name.to_string(),
                    policy,
                },
                line,
            );
        }
        if policy != "-" {
            return Err(ParseError::at(
                line,
                format!("user chain {name} cannot have a policy ({policy})"),
            ));
        }
        self.apply(
            table,
            Stmt::NewChain {
                chain: name.to_string(),
            },
            line,
        )
    }

    /// Apply one statement read at `line`, checking it as iptables would.
    pub fn apply(&mut self, table: Table, stmt: Stmt, line: usize) -> Result<(), ParseError> {
        let t = self.table(table);
        let err = |m: String| Err(ParseError::at(line, m));
        match stmt {
            Stmt::NewChain { chain } => {
                if t.chain(&chain).is_some() {
                    return err(format!("chain {chain} already exists"));
                }
                let reserved = ["ACCEPT", "DROP", "REJECT", "LOG", "RETURN", "QUEUE"];
                if chain.is_empty()
                    || chain.len() > 28
                    || chain.starts_with(['-', '!'])
                    || chain.contains(char::is_whitespace)
                    || reserved.contains(&chain.as_str())
                    || UNSUPPORTED_TARGETS.contains(&chain.as_str())
                {
                    return err(format!("invalid chain name {chain:?}"));
                }
                t.chains.push(ChainDump {
                    name: chain,
                    policy: None,
                    policy_line: None,
                    line: Some(line),
                    rules: Vec::new(),
                });
            }
            Stmt::Policy { chain, policy } => {
                let Some(c) = t.chain_mut(&chain) else {
                    return err(format!("no chain {chain} in table {}", table.name()));
                };
                if !c.builtin() {
                    return err(format!(
                        "{chain} is a user chain; only built-in chains have a policy"
                    ));
                }
                if table == Table::Nat && policy != Policy::Accept {
                    return err(format!(
                        "policy {} in the nat table: it is not for filtering",
                        policy.name()
                    ));
                }
                c.policy = Some(policy);
                c.policy_line = Some(line);
            }
            Stmt::Append { chain, mut rule } => {
                rule.line = line;
                check_jump(t, &rule, line)?;
                let Some(c) = t.chain_mut(&chain) else {
                    return err(format!("no chain {chain} in table {}", table.name()));
                };
                c.rules.push(rule);
            }
            Stmt::Insert {
                chain,
                position,
                mut rule,
            } => {
                rule.line = line;
                check_jump(t, &rule, line)?;
                let Some(c) = t.chain_mut(&chain) else {
                    return err(format!("no chain {chain} in table {}", table.name()));
                };
                let rules = &mut c.rules;
                if position > rules.len() + 1 {
                    return err(format!(
                        "rule position {position} is past the end of {chain} ({} rules)",
                        rules.len()
                    ));
                }
                rules.insert(position - 1, rule);
            }
        }
        Ok(())
    }

    /// Resolve the collected tables.
    pub fn finish(self) -> Result<Ruleset, ParseError> {
        let (rules, unused_chains) = resolve(&self.tables)?;
        Ok(Ruleset {
            family: self.family,
            tables: self.tables,
            rules,
            unused_chains,
            empty_tables: self.empty_tables,
        })
    }
}

fn check_jump(table: &TableDump, rule: &Rule, line: usize) -> Result<(), ParseError> {
    if let Target::Jump(name) = &rule.target {
        match table.chain(name) {
            None => {
                return Err(ParseError::at(
                    line,
                    format!("unknown chain or unsupported target {name}"),
                ));
            }
            Some(c) if c.builtin() => {
                return Err(ParseError::at(
                    line,
                    format!("cannot jump to built-in chain {name}"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Parse an `iptables-save` (or `ip6tables-save`) dump of `family`.
pub fn parse_save(text: &str, family: Family) -> Result<Ruleset, ParseError> {
    enum Open {
        Imported(Table),
        /// `mangle`, `raw`, `security`: accepted only when empty.
        Other(String),
    }
    let mut builder = Builder::new(family);
    let mut open: Option<(Open, String, usize)> = None;
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some((_, open_name, open_line)) = &open {
                return Err(ParseError::at(
                    n,
                    format!(
                        "table {name} starts before COMMIT of table {open_name} (line {open_line})"
                    ),
                ));
            }
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == name) {
                return Err(ParseError::at(
                    n,
                    format!("table {name} appears twice (first at line {first})"),
                ));
            }
            seen.push((name.to_string(), n));
            let kind = match name {
                "filter" => Open::Imported(Table::Filter),
                "nat" => Open::Imported(Table::Nat),
                "mangle" | "raw" | "security" => Open::Other(name.to_string()),
                other => return Err(ParseError::at(n, format!("unknown table {other:?}"))),
            };
            if let Open::Imported(t) = kind {
                builder.table(t);
            }
            open = Some((kind, name.to_string(), n));
            continue;
        }
        let Some((kind, _, start)) = &open else {
            return Err(ParseError::at(
                n,
                format!("{line:?} outside a table (a dump starts tables with *filter or *nat)"),
            ));
        };
        if line == "COMMIT" {
            if let Open::Other(other) = kind {
                builder.empty_tables.push((other.clone(), *start));
            }
            open = None;
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let words: Vec<&str> = decl.split_whitespace().collect();
            let (chain, policy) = match words.as_slice() {
                [c, p] | [c, p, _] => (*c, *p),
                _ => {
                    return Err(ParseError::at(
                        n,
                        "expected \":CHAIN POLICY [packets:bytes]\"",
                    ));
                }
            };
            if let Some(counters) = words.get(2)
                && !is_counters(counters)
            {
                return Err(ParseError::at(n, format!("bad counters {counters:?}")));
            }
            match kind {
                Open::Imported(t) => builder.declare(*t, chain, policy, n)?,
                Open::Other(_) if matches!(policy, "ACCEPT" | "-") => {}
                Open::Other(other) => {
                    return Err(ParseError::at(
                        n,
                        format!(
                            "policy {policy} of {chain} in table {other} is not supported \
                             (only the filter and nat tables are imported)"
                        ),
                    ));
                }
            }
            continue;
        }
        let rule_text = match line.split_once(' ') {
            Some((first, rest)) if is_counters(first) => rest.trim_start(),
            _ => line,
        };
        let table = match kind {
            Open::Imported(t) => *t,
            Open::Other(other) => {
                return Err(ParseError::at(
                    n,
                    format!(
                        "rules in table {other} are not supported (only filter and nat are imported)"
                    ),
                ));
            }
        };
        let stmts = parse_rule_in(rule_text, table, Some(family)).map_err(|e| e.or_line(n))?;
        for stmt in stmts {
            builder.apply(table, stmt, n)?;
        }
    }
    if let Some((_, name, line)) = open {
        return Err(ParseError::at(line, format!("table {name} has no COMMIT")));
    }
    builder.finish()
}

/// `[packets:bytes]`
fn is_counters(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.split_once(':'))
        .is_some_and(|(p, b)| p.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;
