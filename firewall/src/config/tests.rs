use firewall_common::{Chain, CtState, IPPROTO_TCP, Role, RuleAction};

use super::*;
use crate::{config::test_support::*, syntax::*};

const SAMPLE: &str = r#"xdp_mode = "auto"          # optional: auto | native | generic

[[interface]]
name = "eth1"
role = "lan"               # lan | wan

[[interface]]
name = "eth0"
role = "wan"

[conntrack]                # optional
max_entries = 262144

[timeouts]
tcp_established = 432000
udp = 30

[policy]
input = "drop"

[[rule]]
chain = "input"
proto = "tcp"
family = "ipv4"
src = "10.0.0.0/8"
dst = "192.168.1.1"
sport = 22
dport = "8000-8100"
iif = "eth0"
ctstate = ["new"]
action = "accept"
comment = "ssh"
"#;

#[test]
fn sample_parses() {
    let c = parse(SAMPLE, "fw.toml").unwrap();
    assert_eq!(c.xdp_mode, XdpMode::Auto);
    assert_eq!(
        c.interfaces,
        vec![
            InterfaceConfig {
                name: "eth1".into(),
                role: Role::Lan,
                nat: None,
                nat_ports: DEFAULT_NAT_PORTS,
            },
            InterfaceConfig {
                name: "eth0".into(),
                role: Role::Wan,
                nat: None,
                nat_ports: DEFAULT_NAT_PORTS,
            },
        ]
    );
    assert_eq!(c.max_entries, 262_144);
    assert_eq!(c.timeouts, Timeouts::NETFILTER);
    assert_eq!(
        c.policy,
        [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept]
    );
    assert_eq!(c.rules.len(), 1);
    let r = &c.rules[0];
    assert_eq!(r.chain, Chain::Input);
    assert_eq!(r.action, RuleAction::Accept);
    assert_eq!(r.family, Some(Family::V4));
    assert_eq!(r.proto, Match::is(IPPROTO_TCP));
    assert_eq!(
        r.src,
        Match::is(Cidr {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8
        })
    );
    assert_eq!(
        r.dst,
        Match::is(Cidr {
            addr: "192.168.1.1".parse().unwrap(),
            prefix: 32
        })
    );
    assert_eq!(r.sport, Match::is(PortRange { lo: 22, hi: 22 }));
    assert_eq!(r.dport, Match::is(PortRange { lo: 8000, hi: 8100 }));
    assert_eq!(
        r.iif,
        Match::is(Iface {
            name: "eth0".into(),
            wildcard: false
        })
    );
    assert_eq!(r.ctstate, vec![CtState::New]);
    assert_eq!(r.comment.as_deref(), Some("ssh"));
    assert_eq!(r.line, 21);
    assert_eq!(r.index, 1);
    assert_eq!(
        r.summary(),
        "input tcp sport 22 dport 8000-8100 src 10.0.0.0/8 dst 192.168.1.1 iif eth0 \
             ctstate new -> accept /* ssh */"
    );
}

#[test]
fn fast_path_defaults_on_and_can_be_switched_off() {
    assert!(parse(IFACES, "fw.toml").unwrap().fast_path);
    let on = parse(&format!("fast_path = true\n{IFACES}"), "fw.toml").unwrap();
    assert!(on.fast_path);
    let off = parse(&format!("fast_path = false\n{IFACES}"), "fw.toml").unwrap();
    assert!(!off.fast_path);
}

#[test]
fn fast_path_must_be_a_boolean() {
    let err = parse(&format!("fast_path = \"yes\"\n{IFACES}"), "fw.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "fw.toml:1: fast_path: expected true or false, found string"
    );
}

#[test]
fn defaults_when_sections_absent() {
    let c = parse(IFACES, "fw.toml").unwrap();
    assert_eq!(c.xdp_mode, XdpMode::Auto);
    assert_eq!(c.max_entries, firewall_common::DEFAULT_CT_ENTRIES);
    assert_eq!(c.timeouts, Timeouts::NETFILTER);
    assert_eq!(
        c.policy,
        [RuleAction::Drop, RuleAction::Drop, RuleAction::Accept]
    );
    assert!(c.rules.is_empty());
    assert!(c.port_forwards.is_empty());
    // Helpers are off unless a [[helper]] assigns one.
    assert!(c.helpers.is_empty());
    assert_eq!(c.interfaces[0].nat, None);
    assert_eq!(
        c.interfaces[0].nat_ports,
        PortRange {
            lo: 1024,
            hi: 65535
        }
    );
}

#[test]
fn overrides_apply() {
    let text = format!(
        "xdp_mode = \"generic\"\n{IFACES}[timeouts]\nudp = 60\ngeneric = 1\n\
             [policy]\nforward = \"accept\"\noutput = \"drop\"\n"
    );
    let c = parse(&text, "fw.toml").unwrap();
    assert_eq!(c.xdp_mode, XdpMode::Generic);
    assert_eq!(c.xdp_mode.to_string(), "generic");
    assert_eq!(c.timeouts.udp, 60);
    assert_eq!(c.timeouts.generic, 1);
    assert_eq!(c.timeouts.tcp_established, 432_000);
    assert_eq!(
        c.policy,
        [RuleAction::Drop, RuleAction::Accept, RuleAction::Drop]
    );
}

#[test]
fn unknown_key() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nprot = \"tcp\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].prot: unknown key"],
    );
    assert_err(
        &with_ifaces("[timeouts]\nudp_strem = 5\n"),
        &["fw.toml:5: timeouts.udp_strem: unknown key"],
    );
    assert_err(
        &format!("colour = 1\n{IFACES}"),
        &["fw.toml:1: colour: unknown key"],
    );
    // After a table header a key belongs to that table.
    assert_err(
        &with_ifaces("colour = 1\n"),
        &[
            "fw.toml:4: interface[1].colour: unknown key (expected one of `name`, `role`, \
                 `masquerade`, `snat`, `nat_ports`)",
        ],
    );
    assert_err(
        "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\nmtu = 9000\n",
        &["fw.toml:4: interface[1].mtu: unknown key"],
    );
}

#[test]
fn toml_syntax_error() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\naction = \"drop\"\n"),
        &["fw.toml:5:", "invalid basic string"],
    );
    assert_err("a = 1\na = 2\n", &["fw.toml:2:1: duplicate key"]);
}

#[test]
fn load_reads_file_and_reports_missing() {
    let dir = std::env::temp_dir().join(format!("fwcfg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fw.toml");
    std::fs::write(&path, SAMPLE).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.rules.len(), 1);
    std::fs::write(&path, "[[interface]]\nname = \"eth0\"\nrole = \"x\"\n").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3: interface[1].role:", path.display())),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let e = load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("cannot read"), "{e}");
}
