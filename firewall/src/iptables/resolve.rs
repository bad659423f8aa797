//! Resolving user chains: every jump inlined into the built-in chain it is
//! reached from.
//!
//! A rule is a conjunction of conditions and an action. Inlining `-j X`
//! replaces the jump by X's rules, each with the jump's conditions prefixed;
//! a packet that matches none of them falls through to the caller's next
//! rule, which is what an inlined, first-match list does anyway.
//!
//! `RETURN` inside X leaves X early. A packet matching the RETURN rule must
//! skip X's later rules, so those get "and not the RETURN condition". That is
//! one condition only when the RETURN rule has a single negatable condition
//! (`-s 10.0.0.0/8 -j RETURN` turns the rest into `! -s 10.0.0.0/8 ...`); the
//! negation of several is a disjunction, which one rule cannot hold, so that
//! is an error unless the RETURN is X's last rule (a no-op) or has no
//! condition (the rest of X is unreachable). A RETURN in a built-in chain
//! applies the chain's policy. A `-m limit` on a jump, or inside a chain
//! reached from more than one place, is an error: each inlined copy would
//! count its own rate. Loops and nesting deeper than 32 are errors.

use std::collections::{HashMap, HashSet};

use super::{ChainDump, Cond, Hook, ParseError, Policy, Rule, Table, TableDump, Target, Test};

/// A condition of a resolved rule and the line it was written on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatCond {
    pub cond: Cond,
    pub line: usize,
}

/// A rule of a built-in chain after user chains are inlined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatRule {
    pub table: Table,
    pub hook: Hook,
    /// The jump rules' conditions, then negated RETURN conditions, then the
    /// rule's own.
    pub conds: Vec<FlatCond>,
    /// Never `Jump` or `Return`: a RETURN in a built-in chain becomes its
    /// policy.
    pub action: Target,
    /// The rule's comment, or the nearest jump's.
    pub comment: Option<String>,
    /// The line of the rule that decides.
    pub line: usize,
    /// Lines of the jumps that led here, outermost first.
    pub via: Vec<usize>,
    pub text: String,
}

impl FlatRule {
    /// `line 20 (via line 9)`
    pub(super) fn origin(&self) -> String {
        let mut out = format!("line {}", self.line);
        if !self.via.is_empty() {
            let via: Vec<String> = self.via.iter().map(|l| l.to_string()).collect();
            out += &format!(" (via line {})", via.join(", "));
        }
        out
    }
}

/// A user chain no built-in chain reaches: it has no effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnusedChain {
    pub table: Table,
    pub name: String,
    pub line: Option<usize>,
    pub rules: usize,
}

const MAX_DEPTH: usize = 32;
const MAX_FLAT_RULES: usize = 100_000;

pub(super) fn resolve(
    tables: &[TableDump],
) -> Result<(Vec<FlatRule>, Vec<UnusedChain>), ParseError> {
    let mut out = Vec::new();
    let mut unused = Vec::new();
    for dump in tables {
        let mut f = Flattener {
            dump,
            hook: Hook::Input,
            policy: Policy::Accept,
            out: &mut out,
            stack: Vec::new(),
            visited: HashSet::new(),
            limit_sites: HashMap::new(),
        };
        for &hook in dump.table.hooks() {
            let chain = dump
                .chain(hook.name())
                .expect("built-in chains always exist");
            f.hook = hook;
            f.policy = chain.policy.unwrap_or(Policy::Accept);
            f.walk(chain, &[], &[], None)?;
        }
        let visited = f.visited;
        for c in dump.chains.iter().filter(|c| !c.builtin()) {
            if !visited.contains(c.name.as_str()) {
                unused.push(UnusedChain {
                    table: dump.table,
                    name: c.name.clone(),
                    line: c.line,
                    rules: c.rules.len(),
                });
            }
        }
    }
    Ok((out, unused))
}

struct Flattener<'a, 'o> {
    dump: &'a TableDump,
    hook: Hook,
    policy: Policy,
    out: &'o mut Vec<FlatRule>,
    /// User chains being inlined, outermost first.
    stack: Vec<&'a str>,
    visited: HashSet<&'a str>,
    /// Rules with `-m limit` in user chains: where they were first inlined.
    limit_sites: HashMap<(&'a str, usize), usize>,
}

impl<'a> Flattener<'a, '_> {
    fn walk(
        &mut self,
        chain: &'a ChainDump,
        prefix: &[FlatCond],
        via: &[usize],
        comment: Option<&str>,
    ) -> Result<(), ParseError> {
        let mut guards: Vec<FlatCond> = Vec::new();
        let last = chain.rules.len().saturating_sub(1);
        for (i, rule) in chain.rules.iter().enumerate() {
            self.check_hook(rule, via)?;
            let mut conds = prefix.to_vec();
            conds.extend(guards.iter().cloned());
            conds.extend(rule.conds.iter().map(|c| FlatCond {
                cond: c.clone(),
                line: rule.line,
            }));
            let comment = rule.comment.as_deref().or(comment);
            if !chain.builtin() && rule.conds.iter().any(|c| matches!(c.test, Test::Limit(_))) {
                let site = via.last().copied().unwrap_or(0);
                if let Some(first) = self.limit_sites.insert((chain.name.as_str(), i), site) {
                    return Err(ParseError::at(
                        rule.line,
                        format!(
                            "-m limit in chain {}, which is reached from more than one place \
                             (lines {first} and {site}): each inlined copy would count its own rate",
                            chain.name
                        ),
                    ));
                }
            }
            let action = match &rule.target {
                Target::Jump(name) => {
                    if rule.conds.iter().any(|c| matches!(c.test, Test::Limit(_))) {
                        return Err(ParseError::at(
                            rule.line,
                            format!(
                                "-m limit on a jump to {name} is not supported: inlining the \
                                 chain would count the rate once per rule in it"
                            ),
                        ));
                    }
                    if self.stack.contains(&name.as_str()) || *name == chain.name {
                        let mut path: Vec<&str> = self.stack.clone();
                        path.push(name);
                        return Err(ParseError::at(
                            rule.line,
                            format!("chain loop: {} -> {}", self.hook, path.join(" -> ")),
                        ));
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(ParseError::at(
                            rule.line,
                            format!("user chains nest deeper than {MAX_DEPTH}"),
                        ));
                    }
                    let target = self
                        .dump
                        .chain(name)
                        .ok_or_else(|| ParseError::at(rule.line, format!("no chain {name}")))?;
                    self.visited.insert(target.name.as_str());
                    self.stack.push(target.name.as_str());
                    let mut inner_via = via.to_vec();
                    inner_via.push(rule.line);
                    self.walk(target, &conds, &inner_via, comment)?;
                    self.stack.pop();
                    continue;
                }
                Target::Return if chain.builtin() => match self.policy {
                    Policy::Accept => Target::Accept,
                    Policy::Drop => Target::Drop,
                },
                Target::Return => {
                    if rule.conds.is_empty() {
                        // Nothing after an unconditional RETURN is reached.
                        break;
                    }
                    if i == last {
                        continue;
                    }
                    match rule.conds.as_slice() {
                        [c] if c.test.negatable() => {
                            guards.push(FlatCond {
                                cond: Cond {
                                    negated: !c.negated,
                                    test: c.test.clone(),
                                },
                                line: rule.line,
                            });
                            continue;
                        }
                        [_] => {
                            return Err(ParseError::at(
                                rule.line,
                                format!(
                                    "RETURN with -m limit inside chain {} is not supported \
                                     (a rate cannot be negated)",
                                    chain.name
                                ),
                            ));
                        }
                        _ => {
                            return Err(ParseError::at(
                                rule.line,
                                format!(
                                    "RETURN with multiple conditions inside chain {} is not \
                                     supported (only as the chain's last rule, or with one \
                                     condition)",
                                    chain.name
                                ),
                            ));
                        }
                    }
                }
                other => other.clone(),
            };
            let unconditional_return = matches!(rule.target, Target::Return) && conds.is_empty();
            self.out.push(FlatRule {
                table: self.dump.table,
                hook: self.hook,
                conds,
                action,
                comment: comment.map(str::to_string),
                line: rule.line,
                via: via.to_vec(),
                text: rule.text.clone(),
            });
            if self.out.len() > MAX_FLAT_RULES {
                return Err(ParseError::new(format!(
                    "inlining user chains gives more than {MAX_FLAT_RULES} rules"
                )));
            }
            if unconditional_return {
                break;
            }
        }
        Ok(())
    }

    /// The checks iptables makes when a rule is reached from a built-in
    /// chain: interfaces and NAT targets the hook cannot have.
    fn check_hook(&self, rule: &Rule, via: &[usize]) -> Result<(), ParseError> {
        let hook = self.hook;
        let context = match via.first() {
            Some(l) => format!(" (reached from {hook} at line {l})"),
            None => String::new(),
        };
        let fail = |what: String| Err(ParseError::at(rule.line, format!("{what}{context}")));
        for c in &rule.conds {
            match c.test {
                Test::InIface(_) if matches!(hook, Hook::Output | Hook::Postrouting) => {
                    return fail(format!("-i cannot be used in {hook}"));
                }
                Test::OutIface(_) if matches!(hook, Hook::Input | Hook::Prerouting) => {
                    return fail(format!("-o cannot be used in {hook}"));
                }
                _ => {}
            }
        }
        match rule.target {
            Target::Masquerade { .. } if hook != Hook::Postrouting => {
                fail("MASQUERADE is only valid in POSTROUTING".into())
            }
            Target::Snat { .. } if !matches!(hook, Hook::Postrouting | Hook::Input) => {
                fail("SNAT is only valid in POSTROUTING and INPUT".into())
            }
            Target::Dnat { .. } if !matches!(hook, Hook::Prerouting | Hook::Output) => {
                fail("DNAT is only valid in PREROUTING and OUTPUT".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
