//! The document's shape as serde reads it: every section and key, each
//! leaf kept as a spanned TOML value for the validators to type and check,
//! so that an error can name its line.

use std::ops::Range;

use serde::{Deserialize, de::IgnoredAny};
use toml::{Spanned, Value};

use super::conntrack::RawTimeouts;

pub(super) type Field = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) xdp_mode: Field,
    pub(super) fast_path: Field,
    #[serde(default)]
    pub(super) interface: Vec<Spanned<RawInterface>>,
    pub(super) conntrack: Option<RawConntrack>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) policy: Option<RawPolicy>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub(super) port_forward: Vec<Spanned<RawPortForward>>,
    #[serde(default)]
    pub(super) helper: Vec<Spanned<RawHelper>>,
    /// iptables command lines, after the `[[rule]]`s.
    pub(super) iptables: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Field,
    pub(super) role: Field,
    pub(super) masquerade: Field,
    pub(super) snat: Field,
    pub(super) nat_ports: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPortForward {
    pub(super) proto: Field,
    pub(super) port: Field,
    pub(super) to: Field,
    pub(super) comment: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHelper {
    pub(super) proto: Field,
    pub(super) port: Field,
    pub(super) kind: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    pub(super) max_entries: Field,
    pub(super) tcp_be_liberal: Field,
    pub(super) tcp_loose: Field,
    pub(super) tcp_max_retrans: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) input: Field,
    pub(super) forward: Field,
    pub(super) output: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) chain: Field,
    pub(super) proto: Field,
    pub(super) not_proto: Field,
    pub(super) family: Field,
    pub(super) src: Field,
    pub(super) not_src: Field,
    pub(super) dst: Field,
    pub(super) not_dst: Field,
    pub(super) src_range: Field,
    pub(super) not_src_range: Field,
    pub(super) dst_range: Field,
    pub(super) not_dst_range: Field,
    pub(super) sport: Field,
    pub(super) not_sport: Field,
    pub(super) dport: Field,
    pub(super) not_dport: Field,
    pub(super) iif: Field,
    pub(super) not_iif: Field,
    pub(super) oif: Field,
    pub(super) not_oif: Field,
    pub(super) icmp_type: Field,
    pub(super) not_icmp_type: Field,
    pub(super) tcp_flags: Field,
    pub(super) not_tcp_flags: Field,
    pub(super) syn: Field,
    pub(super) limit: Field,
    pub(super) limit_burst: Field,
    pub(super) ctstate: Field,
    pub(super) action: Field,
    pub(super) reject_with: Field,
    pub(super) log_prefix: Field,
    pub(super) log_level: Field,
    pub(super) comment: Field,
}

/// The document's sections with their spans only, read leniently after a
/// shape error so the message can say which `[[rule]]` or table it is in.
#[derive(Deserialize)]
pub(super) struct Skeleton {
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
    pub(super) fn section_at(&self, offset: usize) -> Option<String> {
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
