//! The `iptables = [...]` key: iptables commands for the filter table,
//! read by [`crate::iptables::config_lines`] exactly as `firewall import`
//! reads a dump, after the `[[rule]]`s.

use std::collections::HashMap;

use firewall_common::{Chain, RuleAction};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{
    ConfigError, RuleConfig,
    doc::Doc,
    raw::RawRule,
    rule::{chain_name, validate_rule},
};
use crate::iptables;

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
        // Points the rule, validated from the `[[rule]]` block it stands
        // for, back at the line.
        let line = texts[i - 1].1;
        rule.key = k;
        rule.line = line;
        rule.iface_lines = [line; 4];
        rules.push(rule);
    }
    Ok((rules, policies))
}

#[cfg(test)]
mod tests;
