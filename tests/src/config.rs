//! The daemon's TOML config, built in code by tests.

use serde::Serialize;

/// `firewall run --config` file contents. Unset fields are left out so the daemon's
/// defaults apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<bool>,
    #[serde(rename = "interface")]
    pub interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Timeouts::is_unset")]
    pub timeouts: Timeouts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(rename = "port_forward", skip_serializing_if = "Vec::is_empty")]
    pub port_forwards: Vec<PortForward>,
    #[serde(rename = "helper", skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<Helper>,
    /// TOML written before everything else (top-level keys such as
    /// `iptables = [...]`, which must precede the first table).
    #[serde(skip)]
    pub head: String,
    /// TOML appended as is (`[[rule]]` blocks with keys the builder lacks).
    #[serde(skip)]
    pub tail: String,
}

/// A `[[helper]]`: connections to (`proto`, `port`) get the conntrack helper `kind`.
#[derive(Debug, Clone, Serialize)]
pub struct Helper {
    pub proto: String,
    pub port: u16,
    pub kind: String,
}

impl Helper {
    /// `proto = "tcp" port = PORT kind = "ftp"`.
    pub fn ftp(port: u16) -> Self {
        Self {
            proto: "tcp".to_owned(),
            port,
            kind: "ftp".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    pub role: Role,
    /// Source NAT to the interface's current IPv4 address (`wan` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<bool>,
    /// Source NAT to this fixed IPv4 address (`wan` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snat: Option<String>,
    /// `"lo-hi"`: where NAT picks a port when the original one is taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_ports: Option<String>,
}

impl Interface {
    pub fn new(name: &str, role: Role) -> Self {
        Self {
            name: name.to_owned(),
            role,
            masquerade: None,
            snat: None,
            nat_ports: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Lan,
    Wan,
}

/// Declares [`Timeouts`] with one optional key per field of the daemon's
/// `firewall_common::Timeouts`, from firewall-common's list of them, so that
/// every timeout the daemon reads can be set here under the same name.
macro_rules! timeouts {
    ($($field:ident),* $(,)?) => {
        /// Conntrack timeouts in seconds, netfilter's names without the
        /// `nf_conntrack_` prefix. Unset ones keep the daemon's defaults.
        #[derive(Debug, Clone, Default, Serialize)]
        pub struct Timeouts {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<u32>,
            )*
        }

        impl Timeouts {
            /// Every timeout `seconds` long.
            pub fn all(seconds: u32) -> Self {
                Self { $($field: Some(seconds)),* }
            }

            fn is_unset(&self) -> bool {
                let Self { $($field),* } = self;
                [$($field),*].iter().all(|timeout| timeout.is_none())
            }
        }
    };
}
firewall_common::timeout_fields!(timeouts);

impl Timeouts {
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

/// A `[[port_forward]]`: new connections from a wan interface to `port` go to `to`
/// (`ADDR` keeps the port, `ADDR:PORT` changes it).
#[derive(Debug, Clone, Serialize)]
pub struct PortForward {
    pub proto: String,
    pub port: u16,
    pub to: String,
}

impl PortForward {
    pub fn tcp(port: u16, to: &str) -> Self {
        Self {
            proto: "tcp".to_owned(),
            port,
            to: to.to_owned(),
        }
    }

    pub fn udp(port: u16, to: &str) -> Self {
        Self {
            proto: "udp".to_owned(),
            port,
            to: to.to_owned(),
        }
    }
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
                Interface::new("lan0", Role::Lan),
                Interface::new("wan0", Role::Wan),
            ],
            ..Self::default()
        }
    }

    /// The host of [`crate::topology::HostTopology`]: its only interface `eth0` is wan.
    pub fn host() -> Self {
        Self {
            interfaces: vec![Interface::new("eth0", Role::Wan)],
            ..Self::default()
        }
    }

    /// Adds an interface, e.g. the router's `lan1` of
    /// [`crate::topology::RouterOptions::second_lan_host`].
    pub fn with_interface(mut self, name: &str, role: Role) -> Self {
        self.interfaces.push(Interface::new(name, role));
        self
    }

    /// `masquerade = true` on interface `name`.
    pub fn with_masquerade(mut self, name: &str) -> Self {
        self.interface_mut(name).masquerade = Some(true);
        self
    }

    /// `snat = ADDR` on interface `name`.
    pub fn with_snat(mut self, name: &str, addr: &str) -> Self {
        self.interface_mut(name).snat = Some(addr.to_owned());
        self
    }

    /// `nat_ports = "LO-HI"` on interface `name`.
    pub fn with_nat_ports(mut self, name: &str, lo: u16, hi: u16) -> Self {
        self.interface_mut(name).nat_ports = Some(format!("{lo}-{hi}"));
        self
    }

    pub fn with_port_forward(mut self, forward: PortForward) -> Self {
        self.port_forwards.push(forward);
        self
    }

    /// A test that configures an interface it did not add is wrong, not failing.
    fn interface_mut(&mut self, name: &str) -> &mut Interface {
        self.interfaces
            .iter_mut()
            .find(|interface| interface.name == name)
            .unwrap_or_else(|| panic!("the config has no interface {name:?}"))
    }

    pub fn with_helper(mut self, helper: Helper) -> Self {
        self.helpers.push(helper);
        self
    }

    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Self { timeouts, ..self }
    }

    /// `fast_path = ON` (the daemon's default is on).
    pub fn with_fast_path(self, on: bool) -> Self {
        Self {
            fast_path: Some(on),
            ..self
        }
    }

    /// `xdp_mode = MODE`: `auto`, `native` or `generic`.
    pub fn with_xdp_mode(self, mode: &str) -> Self {
        Self {
            xdp_mode: Some(mode.to_owned()),
            ..self
        }
    }

    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds top-level TOML before the generated tables.
    pub fn with_head(mut self, text: &str) -> Self {
        self.head += text;
        self.head += "\n";
        self
    }

    /// Appends TOML after the generated tables.
    pub fn with_tail(mut self, text: &str) -> Self {
        self.tail += "\n";
        self.tail += text;
        self
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("the config types always serialize");
        format!("{}{body}{}", self.head, self.tail)
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
        assert!(parsed.get("port_forward").is_none());
        assert!(parsed.get("helper").is_none());
        assert!(parsed["interface"][1].get("masquerade").is_none());
    }

    /// Every timeout the daemon knows can be set, under the daemon's name
    /// for it.
    #[test]
    fn timeouts_are_the_daemons() {
        let text = Config::router().with_timeouts(Timeouts::all(7)).to_toml();
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        let table = parsed["timeouts"].as_table().expect("a [timeouts] table");
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut names = firewall_common::Timeouts::NAMES.to_vec();
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
    }

    #[test]
    fn nat_config_is_the_documented_toml() {
        let config = Config::router()
            .with_interface("lan1", Role::Lan)
            .with_masquerade("wan0")
            .with_nat_ports("wan0", 20000, 29999)
            .with_port_forward(PortForward::tcp(8080, "10.0.1.2:80"))
            .with_port_forward(PortForward::udp(6000, "10.0.1.2"));
        let text = config.to_toml();
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        let wan = &parsed["interface"][1];
        assert_eq!(wan["name"].as_str(), Some("wan0"));
        assert_eq!(wan["masquerade"].as_bool(), Some(true));
        assert_eq!(wan["nat_ports"].as_str(), Some("20000-29999"));
        assert!(wan.get("snat").is_none());
        assert_eq!(parsed["interface"][2]["name"].as_str(), Some("lan1"));
        assert_eq!(parsed["port_forward"][0]["proto"].as_str(), Some("tcp"));
        assert_eq!(parsed["port_forward"][0]["port"].as_integer(), Some(8080));
        assert_eq!(
            parsed["port_forward"][0]["to"].as_str(),
            Some("10.0.1.2:80")
        );
        assert_eq!(parsed["port_forward"][1]["to"].as_str(), Some("10.0.1.2"));

        let ftp = Config::router().with_helper(Helper::ftp(21)).to_toml();
        let parsed: toml::Value = toml::from_str(&ftp).expect("valid TOML");
        assert_eq!(parsed["helper"][0]["proto"].as_str(), Some("tcp"));
        assert_eq!(parsed["helper"][0]["port"].as_integer(), Some(21));
        assert_eq!(parsed["helper"][0]["kind"].as_str(), Some("ftp"));

        let snat = Config::router().with_snat("wan0", "10.0.2.1").to_toml();
        let parsed: toml::Value = toml::from_str(&snat).expect("valid TOML");
        assert_eq!(parsed["interface"][1]["snat"].as_str(), Some("10.0.2.1"));
    }
}
