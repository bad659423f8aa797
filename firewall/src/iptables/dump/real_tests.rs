//! Real iptables output: these tests run iptables in a scratch network
//! namespace, so they need root and iptables installed, and fail without
//! them.

use super::*;
use crate::iptables::{lex::tokenize, test_support::*, *};

/// A scratch network namespace, deleted when dropped (also when a test
/// fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("fwimp-{}-{tag}", std::process::id());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("running ip");
        assert!(status.success(), "ip netns add {name}");
        Netns(name)
    }

    fn exec(&self, args: &[String]) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("running ip netns exec");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// These tests compare with the real iptables, so they need it and root
/// (for a network namespace); `cargo xtask setup` installs `tools` and the
/// tests run as root. Without them a test fails here, rather than passing
/// without having compared anything.
fn require_iptables(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test runs iptables in a scratch network namespace, which needs root \
         (cargo xtask test runs it as root)"
    );
    for tool in tools {
        let installed = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            installed,
            "this test needs {tool}, which is not installed (cargo xtask setup installs it)"
        );
    }
}

/// Runs `(table, command)`s with the real `program` in `ns`, and builds
/// what `parse_rule` makes of the same commands.
fn apply_both(ns: &Netns, program: &str, family: Family, commands: &[(Table, &str)]) -> Ruleset {
    let mut expected = Builder::new(family);
    for (n, (table, command)) in commands.iter().enumerate() {
        let mut args = vec![program.to_string(), "-t".into(), table.name().into()];
        args.extend(tokenize(command).unwrap());
        ns.exec(&args);
        for stmt in parse_rule_in(command, *table, Some(family)).unwrap() {
            expected.apply(*table, stmt, n + 1).unwrap();
        }
    }
    expected.finish().unwrap()
}

/// Chains, policies and rules (conditions, target, comment), without
/// line numbers and text; user chains by name, as iptables-save sorts
/// them.
fn shape(rs: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for t in &rs.tables {
        let mut chains: Vec<&ChainDump> = t.chains.iter().collect();
        chains.sort_by_key(|c| (!c.builtin(), if c.builtin() { "" } else { c.name.as_str() }));
        for c in chains {
            out.push(format!("{} {} {:?}", t.table.name(), c.name, c.policy));
            for r in &c.rules {
                out.push(format!("  {:?} {:?} {:?}", r.conds, r.target, r.comment));
            }
        }
    }
    out
}

const V4_COMMANDS: &[(Table, &str)] = &[
    (Table::Filter, "-N SSH"),
    (Table::Filter, "-N LOGDROP"),
    (Table::Filter, "-P INPUT DROP"),
    (Table::Filter, "-P FORWARD DROP"),
    (
        Table::Filter,
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ),
    (Table::Filter, "-A INPUT -i lo -j ACCEPT"),
    (Table::Filter, "-A INPUT -m state --state INVALID -j DROP"),
    (
        Table::Filter,
        r#"-A INPUT -p tcp --dport 22 -m comment --comment "ssh \"in\" \\ 1" -j SSH"#,
    ),
    (
        Table::Filter,
        "-A INPUT -p tcp --syn -m multiport --dports 80,443,8000:8100 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p tcp ! --syn -m conntrack --ctstate NEW -j DROP",
    ),
    (
        Table::Filter,
        "-A INPUT -p udp -m udp --sport 53:54 --dport :1023 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p udp -m multiport ! --sports 1,2 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p icmp --icmp-type echo-request -m limit --limit 5/min --limit-burst 10 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p icmp -m icmp --icmp-type port-unreachable -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p icmp -m icmp ! --icmp-type 3 -j ACCEPT",
    ),
    (Table::Filter, "-A INPUT -p icmp --icmp-type any -j ACCEPT"),
    (
        Table::Filter,
        "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.50 ! --dst-range 10.1.0.1-10.1.0.9 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -s 10.0.0.1,10.0.0.2 -d 10.2.0.0/16 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT ! -s 10.3.0.0/255.255.0.0 ! -d 10.4.0.1 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -i eth+ -p tcp --tcp-flags ALL NONE -j DROP",
    ),
    (
        Table::Filter,
        "-A INPUT ! -i wg0 -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset",
    ),
    (
        Table::Filter,
        r#"-A INPUT -m limit -j LOG --log-prefix "in: " --log-level info"#,
    ),
    (
        Table::Filter,
        "-A INPUT -j REJECT --reject-with icmp-host-prohibited",
    ),
    (Table::Filter, "-A INPUT -s 192.0.2.0/24"),
    (
        Table::Filter,
        "-A INPUT -m conntrack ! --ctstate NEW,INVALID -j LOGDROP",
    ),
    (Table::Filter, "-I INPUT 2 -p tcp --dport 23 -j DROP"),
    (Table::Filter, "-A FORWARD ! -o eth0 -p gre -j ACCEPT"),
    (Table::Filter, "-A FORWARD -i eth1 ! -p tcp -j ACCEPT"),
    (Table::Filter, "-A FORWARD -o ppp+ -j RETURN"),
    (
        Table::Filter,
        "-A OUTPUT -o eth0 -p udp -m udp --dport 123 -j ACCEPT",
    ),
    (Table::Filter, "-A SSH -s 10.0.0.0/8 -j RETURN"),
    (Table::Filter, "-A SSH -m conntrack --ctstate NEW -j ACCEPT"),
    (Table::Filter, r#"-A LOGDROP -j LOG --log-prefix "drop: ""#),
    (Table::Filter, "-A LOGDROP -j DROP"),
    (
        Table::Nat,
        "-A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80",
    ),
    (
        Table::Nat,
        "-A PREROUTING -i eth0 -p udp -m multiport --dports 5000:5100 -j DNAT --to-destination 192.168.1.11",
    ),
    (
        Table::Nat,
        "-A POSTROUTING -s 192.168.1.0/24 -o eth0 -j MASQUERADE",
    ),
    (
        Table::Nat,
        "-A POSTROUTING -o eth1 -p tcp -j MASQUERADE --to-ports 1024-2000",
    ),
    (
        Table::Nat,
        "-A POSTROUTING -o eth2 -j SNAT --to-source 203.0.113.5",
    ),
];

const V6_COMMANDS: &[(Table, &str)] = &[
    (Table::Filter, "-P INPUT DROP"),
    (
        Table::Filter,
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p icmpv6 -m icmp6 --icmpv6-type neighbour-solicitation -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 1/3 -j REJECT --reject-with icmp6-adm-prohibited",
    ),
    (
        Table::Filter,
        "-A INPUT -s 2001:db8::/32 -p tcp --dport 22 -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::ff -j ACCEPT",
    ),
    (
        Table::Filter,
        "-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
    ),
    (Table::Nat, "-A POSTROUTING -o eth0 -j MASQUERADE"),
];

#[test]
fn real_iptables_save_output_parses_to_the_commands_that_made_it() {
    require_iptables(&["iptables", "iptables-save", "ip6tables", "ip6tables-save"]);
    let ns = Netns::new("syntax");
    for (program, save_program, family, commands) in [
        ("iptables", "iptables-save", Family::V4, V4_COMMANDS),
        ("ip6tables", "ip6tables-save", Family::V6, V6_COMMANDS),
    ] {
        let expected = apply_both(&ns, program, family, commands);
        let dump = ns.exec(&[save_program.to_string()]);
        assert_eq!(detect_family(&dump), Ok(Some(family)), "{dump}");
        let parsed = parse_save(&dump, family).unwrap_or_else(|e| panic!("{e}\n{dump}"));
        let mut got = shape(&parsed);
        // Tables iptables-save prints that the commands never touched.
        got.retain(|l| !l.starts_with("mangle") && !l.starts_with("raw"));
        assert_eq!(got, shape(&expected), "{dump}");
        // The resolved rules agree too, lines aside.
        let flat = |rs: &Ruleset| -> Vec<String> {
            rs.rules
                .iter()
                .map(|r| {
                    let conds: Vec<String> = r.conds.iter().map(|c| c.cond.to_string()).collect();
                    format!(
                        "{} {:?} {} {}",
                        r.table.name(),
                        r.hook,
                        conds.join(" "),
                        r.action
                    )
                })
                .collect()
        };
        assert_eq!(flat(&parsed), flat(&expected), "{dump}");
        // Most of it the config cannot express yet, which is refused
        // line by line; every line named is in the dump.
        let e = to_toml(&parsed).unwrap_err();
        let lines = dump.lines().count();
        assert!(!e.items.is_empty());
        assert!(
            e.items.iter().all(|i| i.line.is_none_or(|l| l <= lines)),
            "{e}"
        );
    }
}

#[test]
fn real_router_dump_imports_to_a_valid_config() {
    require_iptables(&["iptables", "iptables-save"]);
    let ns = Netns::new("router");
    let commands: &[(Table, &str)] = &[
        (Table::Filter, "-N LAN_IN"),
        (Table::Filter, "-P INPUT DROP"),
        (Table::Filter, "-P FORWARD DROP"),
        (
            Table::Filter,
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        ),
        (Table::Filter, "-A INPUT -i lo -j ACCEPT"),
        (
            Table::Filter,
            "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        ),
        (Table::Filter, "-A INPUT -i eth1 -j LAN_IN"),
        (
            Table::Filter,
            "-A INPUT -p tcp -s 198.51.100.0/24 --dport 22 -m comment --comment 'ssh from the office' -j ACCEPT",
        ),
        (Table::Filter, "-A LAN_IN -p udp --dport 53 -j ACCEPT"),
        (Table::Filter, "-A LAN_IN -p tcp --dport 53 -j ACCEPT"),
        (
            Table::Filter,
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        ),
        (Table::Filter, "-A FORWARD -i eth1 -j ACCEPT"),
        (
            Table::Filter,
            "-A FORWARD -i eth0 -d 192.168.1.10 -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT",
        ),
        (
            Table::Nat,
            "-A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80",
        ),
        (Table::Nat, "-A POSTROUTING -o eth0 -j MASQUERADE"),
    ];
    let expected = apply_both(&ns, "iptables", Family::V4, commands);
    let dump = ns.exec(&["iptables-save".to_string()]);
    let parsed = parse_save(&dump, Family::V4).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    let mut got = shape(&parsed);
    got.retain(|l| !l.starts_with("mangle") && !l.starts_with("raw"));
    assert_eq!(got, shape(&expected));
    let out = to_toml(&parsed).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    let config = crate::config::parse(&out, "imported").unwrap();
    assert_eq!(
        summaries(&config),
        [
            "input ipv4 ctstate invalid -> drop",
            "input ipv4 udp dport 53 iif eth1 -> accept",
            "input ipv4 tcp dport 53 iif eth1 -> accept",
            "input tcp dport 22 src 198.51.100.0/24 -> accept /* ssh from the office */",
            "input ipv4 iif eth1 -> drop /* INPUT policy DROP */",
            "forward ipv4 iif eth1 -> accept",
            "forward tcp dport 80 dst 192.168.1.10 iif eth0 ctstate new -> accept",
        ]
    );
    let forwards: Vec<String> = config.port_forwards.iter().map(|p| p.summary()).collect();
    assert_eq!(forwards, ["tcp 8080 -> 192.168.1.10:80"]);
}
