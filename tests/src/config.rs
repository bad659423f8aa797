//! The daemon's TOML config, built in code by tests.

use serde::Serialize;

/// `firewall run --config` file contents. Unset fields are left out so the daemon's
/// defaults apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(rename = "interface")]
    pub interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Timeouts::is_unset")]
    pub timeouts: Timeouts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Lan,
    Wan,
}

/// Conntrack timeouts in seconds, netfilter's names without the `nf_conntrack_` prefix.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_syn_sent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_syn_recv: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_fin_wait: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_close_wait: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_last_ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_time_wait: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_close: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_unack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_stream: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generic: Option<u32>,
}

impl Timeouts {
    fn is_unset(&self) -> bool {
        let Self {
            tcp_syn_sent,
            tcp_syn_recv,
            tcp_established,
            tcp_fin_wait,
            tcp_close_wait,
            tcp_last_ack,
            tcp_time_wait,
            tcp_close,
            tcp_unack,
            udp,
            udp_stream,
            icmp,
            generic,
        } = self;
        [
            tcp_syn_sent,
            tcp_syn_recv,
            tcp_established,
            tcp_fin_wait,
            tcp_close_wait,
            tcp_last_ack,
            tcp_time_wait,
            tcp_close,
            tcp_unack,
            udp,
            udp_stream,
            icmp,
            generic,
        ]
        .iter()
        .all(|timeout| timeout.is_none())
    }

    /// Every state after the first FIN lasts `seconds`, so a finished connection leaves
    /// the table quickly.
    pub fn short_tcp_close(seconds: u32) -> Self {
        Self {
            tcp_fin_wait: Some(seconds),
            tcp_close_wait: Some(seconds),
            tcp_last_ack: Some(seconds),
            tcp_time_wait: Some(seconds),
            tcp_close: Some(seconds),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub input: Verdict,
    pub forward: Verdict,
    pub output: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
}

/// A rule's `action`; the same words as a chain policy.
pub type Action = Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Input,
    Forward,
    Output,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub chain: Chain,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iif: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctstate: Option<String>,
    pub action: Action,
}

impl Rule {
    /// `chain=CHAIN proto="tcp" dport=PORT action="accept"`.
    pub fn accept_tcp_port(chain: Chain, dport: u16) -> Self {
        Self {
            chain,
            proto: Some("tcp".to_owned()),
            src: None,
            dst: None,
            sport: None,
            dport: Some(dport),
            iif: None,
            ctstate: None,
            action: Action::Accept,
        }
    }
}

impl Config {
    /// The router of [`crate::topology::RouterTopology`]: `lan0` is lan, `wan0` is wan.
    pub fn router() -> Self {
        Self {
            interfaces: vec![
                Interface {
                    name: "lan0".to_owned(),
                    role: Role::Lan,
                },
                Interface {
                    name: "wan0".to_owned(),
                    role: Role::Wan,
                },
            ],
            ..Self::default()
        }
    }

    /// The host of [`crate::topology::HostTopology`]: its only interface `eth0` is wan.
    pub fn host() -> Self {
        Self {
            interfaces: vec![Interface {
                name: "eth0".to_owned(),
                role: Role::Wan,
            }],
            ..Self::default()
        }
    }

    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Self { timeouts, ..self }
    }

    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config types always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_config_with_rule_and_timeouts_is_the_documented_toml() {
        let config = Config::router()
            .with_timeouts(Timeouts {
                udp: Some(2),
                ..Timeouts::default()
            })
            .with_rule(Rule::accept_tcp_port(Chain::Forward, 8081));
        let text = config.to_toml();
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["interface"][0]["name"].as_str(), Some("lan0"));
        assert_eq!(parsed["interface"][1]["role"].as_str(), Some("wan"));
        assert_eq!(parsed["timeouts"]["udp"].as_integer(), Some(2));
        assert!(parsed["timeouts"].get("icmp").is_none());
        assert_eq!(parsed["rule"][0]["chain"].as_str(), Some("forward"));
        assert_eq!(parsed["rule"][0]["dport"].as_integer(), Some(8081));
        assert_eq!(parsed["rule"][0]["action"].as_str(), Some("accept"));
        assert!(parsed.get("policy").is_none());
    }
}
