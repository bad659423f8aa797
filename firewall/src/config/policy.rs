//! `[policy]`: each chain's verdict for what no rule decides.

use firewall_common::{Chain, RuleAction};

use super::{ConfigError, doc::Doc, raw::RawPolicy, rule::chain_name};

/// A chain's policy decides, silently: REJECT and LOG are rule actions.
const POLICIES: &[(&str, RuleAction)] =
    &[("accept", RuleAction::Accept), ("drop", RuleAction::Drop)];

/// The policies (input drop, forward drop, output accept unless set), and
/// the line of each one the file sets, which an `iptables` line's `-P`
/// may not set again.
pub(super) fn validate_policy(
    doc: &Doc,
    raw: Option<&RawPolicy>,
) -> Result<([RuleAction; 3], [Option<usize>; 3]), ConfigError> {
    let mut policy = [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept];
    let mut explicit_policy = [None; 3];
    if let Some(p) = raw {
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
    Ok((policy, explicit_policy))
}
