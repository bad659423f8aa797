//! The `iptables = [...]` key: iptables commands for the filter table,
//! read by [`crate::iptables::config_lines`] exactly as `firewall import`
//! reads a dump, after the `[[rule]]`s. Each resolved rule comes as the
//! `[[rule]]` keys it stands for ([`RuleKeys`]) and is checked as that
//! block would be, by the same functions, without writing it as TOML.

use std::collections::HashMap;

use firewall_common::{Chain, IPPROTO_TCP, RuleAction};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{
    ConfigError, RuleConfig,
    doc::Doc,
    rule::{
        FamilyCheck, chain_action_problem, chain_name, icmp_types_problem, icmp_v6, iface_problem,
        iface_warning, log_prefix_problem, only_proto, port_slots_problem, ports_problem,
        protocol_family_problem, rate_problem, reject_with_problem, tcp_flags_problem,
        unknown_reject_with,
    },
};
use crate::{
    iptables::{self, RuleKeys},
    syntax::{DEFAULT_LOG_LEVEL, Match, reject_name},
};

/// A chain's policy as an `iptables` line's `-P` sets it.
type ChainPolicy = (Chain, RuleAction);

/// The `iptables` lines (see [`crate::iptables::config_lines`]): their
/// rules, numbered on from `first_index`, and the policies `-P` sets.
/// `explicit_policy` holds the line of each `[policy]` key given.
pub(super) fn validate_iptables(
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
        let chain = chain_of(hook);
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

    let mut rules = Vec::new();
    for (i, keys) in &resolved.rules {
        let entry = Entry {
            doc,
            key: format!("iptables[{i}]"),
            line: texts[i - 1].1,
        };
        let rule = entry
            .rule(keys, first_index + rules.len(), interfaces)
            .map_err(|(field, message)| at(Some(*i), format!("{}: {message}", option(&field))))?;
        rules.push(rule);
    }
    Ok((rules, policies))
}

/// The iptables option a `[[rule]]` key stands for, where their names
/// differ, so that a message about an `iptables` line speaks iptables.
fn option(field: &str) -> &str {
    match field {
        "iif" => "-i",
        "not_iif" => "! -i",
        "oif" => "-o",
        "not_oif" => "! -o",
        other => other,
    }
}

/// One `iptables` line, `key` in messages.
struct Entry<'a> {
    doc: &'a Doc<'a>,
    key: String,
    line: usize,
}

/// The `[[rule]]` key at fault and what is wrong with it.
type KeyError = (String, String);

impl Entry<'_> {
    /// The rule of the `[[rule]]` block `keys` stands for, with the checks
    /// that block would meet, in the same order, so that a line is refused
    /// when its block would be, with the same words. What iptables' parser
    /// already guarantees (values in range, names known) is not checked
    /// again.
    fn rule(
        &self,
        keys: &RuleKeys,
        index: usize,
        interfaces: &HashMap<String, usize>,
    ) -> Result<RuleConfig, KeyError> {
        let RuleKeys {
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
        } = keys;
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        let chain = chain_of(*hook);
        if let Some(problem) = chain_action_problem(chain, *action) {
            return fail("action", problem.into());
        }

        let mut family = FamilyCheck::default();
        let cidrs = [("src", src), ("dst", dst)];
        let ranges = [("src_range", src_range), ("dst_range", dst_range)];
        let noted = cidrs
            .iter()
            .flat_map(|(name, m)| fields(name, m))
            .map(|(field, c)| (field, c.family(), c.to_string()))
            .chain(
                ranges
                    .iter()
                    .flat_map(|(name, m)| fields(name, m))
                    .map(|(field, r)| (field, r.family(), r.to_string())),
            );
        for (field, f, what) in noted {
            if let Err(problem) = family.note(&field, f, what) {
                return fail(&field, problem);
            }
        }
        let family = family.family;
        for (field, &p) in fields("proto", proto) {
            if let Some(problem) = protocol_family_problem(p, family) {
                return fail(&field, problem);
            }
        }

        let only_proto = only_proto(proto);
        for (name, m) in [("sport", sport), ("dport", dport)] {
            if let Some((field, _)) = fields(name, m).next()
                && let Some(problem) = ports_problem(proto)
            {
                return fail(&field, problem);
            }
            for (field, list) in [
                (name.to_string(), &m.any_of),
                (format!("not_{name}"), &m.none_of),
            ] {
                if let Some(problem) = port_slots_problem(list) {
                    return fail(&field, problem);
                }
            }
        }
        if let Some((field, _)) = fields("icmp_type", icmp_type).next() {
            if let Err(problem) = icmp_v6(only_proto) {
                return fail(&field, problem.into());
            }
            if let Some(problem) = icmp_types_problem(icmp_type) {
                return fail("not_icmp_type", problem.into());
            }
        }
        if let Some(t) = tcp_flags {
            let field = if t.negated {
                "not_tcp_flags"
            } else {
                "tcp_flags"
            };
            if only_proto != Some(IPPROTO_TCP) {
                return fail(field, "needs proto tcp".into());
            }
            if let Some(problem) = tcp_flags_problem(&t.flags) {
                return fail(field, problem);
            }
        }
        if let Some(l) = limit
            && let Some(problem) = rate_problem(l)
        {
            return fail("limit", problem);
        }

        let reject_with = match reject_with {
            None => None,
            Some(w) => {
                let Some(canonical) = reject_name(w) else {
                    return fail("reject_with", unknown_reject_with(w));
                };
                if let Some(problem) = reject_with_problem(canonical, only_proto) {
                    return fail("reject_with", problem.into());
                }
                Some(canonical)
            }
        };
        if let Some(p) = log_prefix
            && let Some(problem) = log_prefix_problem(p)
        {
            return fail("log_prefix", problem);
        }

        for (name, m) in [("iif", iif), ("oif", oif)] {
            for (field, i) in fields(name, m) {
                if let Err(problem) = iface_problem(i, name, chain, interfaces) {
                    return fail(&field, problem);
                }
                if let Some(warning) = iface_warning(i, name, interfaces) {
                    log::warn!(
                        "{}:{}: {}: {}: {warning}",
                        self.doc.origin,
                        self.line,
                        self.key,
                        option(&field)
                    );
                }
            }
        }
        // The states never include ESTABLISHED or RELATED (rule_keys left
        // them out), so there is nothing to warn about.

        Ok(RuleConfig {
            chain,
            action: *action,
            family,
            proto: proto.clone(),
            src: src.clone(),
            dst: dst.clone(),
            src_range: src_range.clone(),
            dst_range: dst_range.clone(),
            sport: sport.clone(),
            dport: dport.clone(),
            iif: iif.clone(),
            oif: oif.clone(),
            icmp_type: icmp_type.clone(),
            tcp_flags: *tcp_flags,
            limit: *limit,
            ctstate: ctstate.clone(),
            reject_with,
            log_prefix: log_prefix.clone(),
            log_level: log_level.unwrap_or(DEFAULT_LOG_LEVEL),
            comment: comment.clone(),
            line: self.line,
            index,
            origin: self.doc.origin.to_string(),
            key: self.key.clone(),
            iface_lines: [self.line; 4],
        })
    }
}

fn chain_of(hook: iptables::Hook) -> Chain {
    match hook {
        iptables::Hook::Input => Chain::Input,
        iptables::Hook::Forward => Chain::Forward,
        iptables::Hook::Output => Chain::Output,
        other => unreachable!("{other} is not a chain of the filter table"),
    }
}

/// The values of a key and its `not_` form, each with its key's name, in
/// the order a `[[rule]]` block is read.
fn fields<'m, T>(name: &str, m: &'m Match<T>) -> impl Iterator<Item = (String, &'m T)> {
    let not_name = format!("not_{name}");
    let name = name.to_string();
    m.any_of
        .iter()
        .map(move |v| (name.clone(), v))
        .chain(m.none_of.iter().map(move |v| (not_name.clone(), v)))
}

#[cfg(test)]
mod tests;
