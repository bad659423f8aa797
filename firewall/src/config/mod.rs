//! The TOML configuration file: parsing, validation and compilation of rules
//! to the datapath form.
//!
//! Every leaf value is read as a `toml::Spanned<toml::Value>` and checked by
//! hand rather than by serde, so each error can name the offending key and the
//! line it sits on (`fw.toml:12: rule[2].dport: ...`); serde only enforces the
//! shape of the document (`deny_unknown_fields`). Rule and interface indices
//! in messages are 1-based, counting blocks as a person reading the file would.
//!
//! NAT is IPv4 only: source NAT per `wan` interface (`masquerade` or `snat`)
//! and destination NAT through `[[port_forward]]` blocks. IPv6 traffic stays
//! stateful but untranslated, and asking to translate it is an error.
//!
//! Conntrack helpers are off by default. As with modern netfilter (`ct helper
//! set`, `-j CT --helper`, no automatic assignment by port), a helper only
//! watches a port that a `[[helper]]` block assigns it to.
//!
//! One module per concern: `raw` (the document's shape), `doc` (spans,
//! typed values), `error`, a module per section (`interfaces`,
//! `port_forward`, `helpers`, `conntrack` for `[conntrack]` and
//! `[timeouts]`, `policy`, `rule` for `[[rule]]`, `iptables_lines` for the
//! `iptables` key) and `compile` (a rule in the datapath's form).

mod compile;
mod conntrack;
mod doc;
mod error;
mod helpers;
mod interfaces;
mod iptables_lines;
mod policy;
mod port_forward;
mod raw;
mod rule;

#[cfg(test)]
mod test_support;

use std::{fmt, path::Path};

use firewall_common::{MAX_RULES, RuleAction, Timeouts, tcp::track::TcpConfig};

pub use self::{
    conntrack::MIN_CT_ENTRIES,
    error::ConfigError,
    helpers::{Helper, HelperKind},
    interfaces::{DEFAULT_NAT_PORTS, InterfaceConfig, Nat},
    port_forward::{MAX_FORWARDED_PORTS, PortForward},
    rule::{DEFAULT_LIMIT_BURST, RuleConfig},
};
use self::{doc::Doc, raw::RawConfig};

const XDP_MODES: &[(&str, XdpMode)] = &[
    ("auto", XdpMode::Auto),
    ("native", XdpMode::Native),
    ("generic", XdpMode::Generic),
];

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native where the driver supports it, generic (skb) otherwise.
    #[default]
    Auto,
    /// Driver mode only; attaching fails on drivers without XDP support.
    Native,
    /// skb mode: works everywhere, at the cost of running after skb
    /// allocation.
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// A validated configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub xdp_mode: XdpMode,
    /// Forward ESTABLISHED packets in XDP where possible (`fast_path`,
    /// default on); off sends every packet through the stack, for
    /// comparison.
    pub fast_path: bool,
    pub interfaces: Vec<InterfaceConfig>,
    /// Conntrack map capacity in entries (two per connection).
    pub max_entries: u32,
    /// The TCP tracker's settings (`tcp_be_liberal`, `tcp_loose`,
    /// `tcp_max_retrans`).
    pub tcp: TcpConfig,
    pub timeouts: Timeouts,
    /// Default verdict per chain, indexed by `Chain as usize`.
    pub policy: [RuleAction; 3],
    pub rules: Vec<RuleConfig>,
    /// Destination NAT, in file order; empty unless some interface is `wan`.
    pub port_forwards: Vec<PortForward>,
    /// Conntrack helper assignments, in file order; empty unless the file
    /// has `[[helper]]` blocks. No two share a protocol and port.
    pub helpers: Vec<Helper>,
}

/// Read, parse and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        origin: origin.clone(),
        error,
    })?;
    let config = parse(&text, &origin)?;
    log::debug!(
        "{origin}: {} interface(s), {} rule(s), {} port forward(s), {} helper(s), \
         conntrack {} entries, xdp mode {}, fast path {}",
        config.interfaces.len(),
        config.rules.len(),
        config.port_forwards.len(),
        config.helpers.len(),
        config.max_entries,
        config.xdp_mode,
        if config.fast_path { "on" } else { "off" }
    );
    Ok(config)
}

/// Parse and validate configuration text; `origin` names it in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc = Doc::new(text, origin);
    let raw: RawConfig = toml::from_str(text).map_err(|e| doc.toml_error(&e))?;
    validate(raw, &doc)
}

/// Each section in turn; errors are reported in this order.
fn validate(raw: RawConfig, doc: &Doc) -> Result<Config, ConfigError> {
    let xdp_mode = match &raw.xdp_mode {
        Some(v) => doc.keyword(v, "xdp_mode", XDP_MODES)?,
        None => XdpMode::Auto,
    };
    let fast_path = match &raw.fast_path {
        Some(v) => doc.boolean(v, "fast_path")?,
        None => true,
    };
    let (interfaces, iface_lines) = interfaces::validate_interfaces(doc, &raw.interface)?;
    let max_entries = conntrack::max_entries(doc, raw.conntrack.as_ref())?;
    let tcp = conntrack::tcp(doc, raw.conntrack.as_ref())?;
    let timeouts = conntrack::timeouts(doc, raw.timeouts.as_ref())?;
    let (mut policy, explicit_policy) = policy::validate_policy(doc, raw.policy.as_ref())?;
    let mut rules = rule::validate_rules(doc, &raw.rule, &iface_lines)?;
    if let Some(lines) = &raw.iptables {
        let (more, policies) = iptables_lines::validate_iptables(
            doc,
            lines,
            rules.len() + 1,
            &iface_lines,
            explicit_policy,
        )?;
        for (chain, action) in policies {
            policy[chain as usize] = action;
        }
        rules.extend(more);
        if rules.len() > MAX_RULES as usize {
            return Err(doc.invalid(
                doc.line(lines.span().start),
                "iptables",
                format!(
                    "too many rules: {} with the [[rule]]s (at most {MAX_RULES})",
                    rules.len()
                ),
            ));
        }
    }
    let port_forwards = port_forward::validate_port_forwards(doc, &raw.port_forward, &interfaces)?;
    let helpers = helpers::validate_helpers(doc, &raw.helper)?;
    Ok(Config {
        xdp_mode,
        fast_path,
        interfaces,
        max_entries,
        tcp,
        timeouts,
        policy,
        rules,
        port_forwards,
        helpers,
    })
}

#[cfg(test)]
mod tests;
