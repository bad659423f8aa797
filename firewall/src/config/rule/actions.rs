//! `chain`, `action` and the options of the REJECT and LOG actions.

use firewall_common::{Chain, IPPROTO_TCP, RuleAction};
use toml::Value;

use super::{ACTIONS, Block, CHAINS, action_name};
use crate::{
    config::{ConfigError, doc::one_of, raw::Field},
    syntax::{DEFAULT_LOG_LEVEL, MAX_LOG_PREFIX, REJECT_WITH, parse_log_level, reject_name},
};

/// `reject_with`, `log_prefix` and `log_level`.
pub(in crate::config) struct ActionOptions {
    pub reject_with: Option<&'static str>,
    pub log_prefix: Option<String>,
    pub log_level: u8,
}

impl Block<'_> {
    pub(super) fn chain_and_action(&self) -> Result<(Chain, RuleAction), ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let chain_v = raw.chain.as_ref().ok_or_else(|| self.missing("chain"))?;
        let chain = doc.keyword(chain_v, &self.key("chain"), CHAINS)?;
        let action_v = raw.action.as_ref().ok_or_else(|| self.missing("action"))?;
        let action = doc.keyword(action_v, &self.key("action"), ACTIONS)?;
        if let Some(problem) = chain_action_problem(chain, action) {
            return Err(doc.at(action_v, &self.key("action"), problem));
        }
        Ok((chain, action))
    }

    pub(super) fn action_options(
        &self,
        action: RuleAction,
        only_proto: Option<u8>,
    ) -> Result<ActionOptions, ConfigError> {
        let (doc, raw) = (self.doc, self.raw);
        let only_with = |f: &Field, k: &str, a: RuleAction| -> Result<(), ConfigError> {
            match f {
                Some(v) if action != a => Err(doc.at(
                    v,
                    &self.key(k),
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
                let k = self.key("reject_with");
                let name = doc.string(v, &k)?;
                let canonical =
                    reject_name(name).ok_or_else(|| doc.at(v, &k, unknown_reject_with(name)))?;
                if let Some(problem) = reject_with_problem(canonical, only_proto) {
                    return Err(doc.at(v, &k, problem));
                }
                Some(canonical)
            }
        };
        let log_prefix = match &raw.log_prefix {
            None => None,
            Some(v) => {
                let k = self.key("log_prefix");
                let p = doc.string(v, &k)?;
                if let Some(problem) = log_prefix_problem(p) {
                    return Err(doc.at(v, &k, problem));
                }
                Some(p.to_string())
            }
        };
        let log_level = match &raw.log_level {
            None => DEFAULT_LOG_LEVEL,
            Some(v) => {
                let k = self.key("log_level");
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
        Ok(ActionOptions {
            reject_with,
            log_prefix,
            log_level,
        })
    }
}

/// The answer would have to reach a local socket from tc egress, which the
/// datapath does not do (see ARCHITECTURE, Rules).
pub(in crate::config) fn chain_action_problem(
    chain: Chain,
    action: RuleAction,
) -> Option<&'static str> {
    (action == RuleAction::Reject && chain == Chain::Output)
        .then_some("reject is not supported on chain output (use drop)")
}

pub(in crate::config) fn unknown_reject_with(name: &str) -> String {
    let names: Vec<&str> = REJECT_WITH.iter().map(|(n, _, _)| *n).collect();
    format!("unknown value {name:?} (expected {})", one_of(&names))
}

pub(in crate::config) fn reject_with_problem(
    canonical: &str,
    only_proto: Option<u8>,
) -> Option<&'static str> {
    (canonical == "tcp-reset" && only_proto != Some(IPPROTO_TCP))
        .then_some("tcp-reset needs proto tcp")
}

pub(in crate::config) fn log_prefix_problem(p: &str) -> Option<String> {
    if p.len() > MAX_LOG_PREFIX {
        return Some(format!(
            "{} bytes, more than the {MAX_LOG_PREFIX} iptables' LOG keeps",
            p.len()
        ));
    }
    p.contains('\0').then(|| "contains a NUL byte".into())
}
