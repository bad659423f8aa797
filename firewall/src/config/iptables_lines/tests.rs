use firewall_common::RuleAction;

use crate::config::{test_support::*, *};

#[test]
fn iptables_lines_follow_the_rules_in_order() {
    // Lines 1-11, then the interfaces (12-17) and a [[rule]] (18).
    let text = format!(
        "iptables = [\n\
             \"-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\",\n\
             \"-P FORWARD ACCEPT\",\n\
             \"iptables -A INPUT -p tcp -m multiport --dports 22,80 -s 10.0.0.0/8,192.168.0.0/16 -j ACCEPT\",\n\
             \"-N LOGDROP\",\n\
             \"-A LOGDROP -j LOG --log-prefix 'dropped: '\",\n\
             \"-A LOGDROP -j DROP\",\n\
             \"-A INPUT -i eth+ -p icmp --icmp-type echo-request -m limit --limit 2/s -j ACCEPT\",\n\
             \"-I INPUT 1 -p tcp --dport 23 -j REJECT --reject-with tcp-reset\",\n\
             \"-A FORWARD -i eth1 -o wlan0 -j LOGDROP\",\n\
             ]\n{}",
        with_two("[[rule]]\nchain = \"input\"\nproto = \"udp\"\ndport = 53\naction = \"accept\"\n")
    );
    let c = parse(&text, "fw.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.policy,
        [RuleAction::Drop, RuleAction::Accept, RuleAction::Accept]
    );
    let got: Vec<(String, usize, usize)> = c
        .rules
        .iter()
        .map(|r| (r.summary(), r.line, r.index))
        .collect();
    assert_eq!(
        got,
        [
            ("input udp dport 53 -> accept".to_string(), 18, 1),
            ("input tcp dport 23 -> reject tcp-reset".into(), 9, 2),
            (
                "input tcp dport 22,80 src 10.0.0.0/8 -> accept".into(),
                4,
                3
            ),
            (
                "input tcp dport 22,80 src 192.168.0.0/16 -> accept".into(),
                4,
                4
            ),
            (
                "input icmp icmp-type 8 iif eth+ limit 2/second burst 5 -> accept".into(),
                8,
                5
            ),
            // The line of the rule that decides, as `firewall import`
            // names it (the jump is on line 10).
            (
                "forward iif eth1 oif wlan0 -> log \"dropped: \"".into(),
                6,
                6
            ),
            ("forward iif eth1 oif wlan0 -> drop".into(), 7, 7),
        ]
    );
    for r in &c.rules {
        r.to_match(&ifaces()).unwrap();
    }
    // The seeds' line alone: redundant, so no rule at all.
    let c = parse(
        &format!(
            "iptables = [\"-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\"]\n{}",
            with_two("")
        ),
        "fw.toml",
    )
    .unwrap();
    assert!(c.rules.is_empty());
    // An unresolvable oif is reported at the line, under its index.
    let c = parse(
        &format!(
            "iptables = [\n\"-P INPUT DROP\",\n\"-A OUTPUT -o ppp0 -j DROP\",\n]\n{}",
            with_two("")
        ),
        "fw.toml",
    )
    .unwrap();
    assert_eq!(
        c.rules[0].to_match(&ifaces()).unwrap_err().to_string(),
        "fw.toml:3: iptables[2].oif: interface \"ppp0\" does not exist"
    );
    // After a [section] TOML puts the key into it; the message says so.
    assert_err(
        &with_two("iptables = [\"-P INPUT DROP\"]\n"),
        &[
            "fw.toml:7: interface[2].iptables: unknown key",
            "top-level keys go before the first [section]",
        ],
    );
}

#[test]
fn iptables_line_errors_name_the_index_and_the_option() {
    // The offending entry is on line 4.
    let lines = |l: &str| {
        format!(
            "\niptables = [\n  \"-A INPUT -j ACCEPT\",\n{l}\n]\n{}",
            with_two("")
        )
    };
    for (line, expected) in [
        (
            "  \"-A INPUT -m mac --mac-source 00:11:22:33:44:55 -j DROP\",",
            "fw.toml:4: iptables[2]: unsupported option --mac-source (match mac)",
        ),
        (
            "  \"-A INPUT -i eth9 -j DROP\",",
            "fw.toml:4: iptables[2]: -i: \"eth9\" is not a configured [[interface]] (configured: eth0, eth1)",
        ),
        (
            "  \"-t nat -A POSTROUTING -o eth0 -j MASQUERADE\",",
            "fw.toml:4: iptables[2]: -t nat: this line is read for table filter (NAT is configured with masquerade, snat and [[port_forward]])",
        ),
        (
            "  \"-A INPUT -m conntrack --ctstate ESTABLISHED -j DROP\",",
            "fw.toml:4: iptables[2]: -j DROP is never reached: it only matches ESTABLISHED/RELATED packets",
        ),
        (
            "  \"-A INPUT -p tcp\",",
            "fw.toml:4: iptables[2]: no -j target",
        ),
        (
            "  \"-A INPUT -j NOPE\",",
            "fw.toml:4: iptables[2]: unknown chain or unsupported target NOPE",
        ),
        (
            "  \"-F INPUT\",",
            "fw.toml:4: iptables[2]: unsupported command -F",
        ),
        (
            "  \"-A INPUT -i lo -j DROP\",",
            "fw.toml:4: iptables[2]: -j DROP on lo: loopback traffic is never filtered",
        ),
        (
            "  \"-A INPUT -m limit --limit 1/s -m limit --limit 2/s -j ACCEPT\",",
            "fw.toml:4: iptables[2]: several -m limit conditions",
        ),
        (
            "  \"-A INPUT -s 10.0.0.0/8 -d ::1 -j DROP\",",
            "fw.toml:4: iptables[2]: -s 10.0.0.0/8 is ipv4 but -d ::1 is ipv6",
        ),
        (
            "  3,",
            "fw.toml:4: iptables[2]: expected a string, found integer",
        ),
    ] {
        let msg = err(&lines(line));
        assert!(!msg.contains('\n'), "multi-line error: {msg}");
        assert!(
            msg.starts_with(expected),
            "{line}:\n{msg:?}\ndoes not start with\n{expected:?}"
        );
    }
    assert_err(
        &format!(
            "iptables = [\"-P INPUT DROP\"]\n{}",
            with_two("[policy]\ninput = \"accept\"\n")
        ),
        &[
            "fw.toml:1: iptables[1]: -P INPUT conflicts with policy.input (line 9); set each \
               policy in one place",
        ],
    );
    assert_err(
        &format!("iptables = \"-A INPUT -j DROP\"\n{}", with_two("")),
        &["fw.toml:1: iptables: expected a list of iptables command lines"],
    );
}

/// The rules of `iptables` lines are built without writing their
/// `[[rule]]` blocks; they must be the rules those blocks (as `firewall
/// import` writes them) would give.
#[test]
fn iptables_lines_give_the_rules_of_the_blocks_they_stand_for() {
    let lines = [
        "-N LOGDROP",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        "-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset",
        "-A INPUT ! -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j LOGDROP",
        "-A INPUT -p tcp -m multiport --dports 22,80,443,8000:8100 -j ACCEPT",
        "-A INPUT -p icmp -m icmp --icmp-type 8 -m limit --limit 5/sec -j ACCEPT",
        "-A INPUT -p icmp -m icmp ! --icmp-type 3/4 -j DROP",
        "-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j DROP",
        "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT",
        "-A INPUT -p udp ! --sport 53 -m iprange ! --dst-range 192.168.1.0-192.168.1.9 -j REJECT --reject-with port-unreach",
        "-A INPUT -i eth+ -p udp -j LOG --log-prefix \"udp: \" --log-level info",
        "-A INPUT -s 2001:db8::/32 -p ipv6-icmp --icmpv6-type echo-request -m comment --comment ping6 -j ACCEPT",
        "-A INPUT ! -p udp -m conntrack ! --ctstate NEW -j REJECT",
        "-A FORWARD -i eth1 -o eth0 -p udp -m multiport ! --dports 53,123 -j ACCEPT",
        "-A FORWARD -i eth0 ! -o eth0 -p tcp --syn -j LOGDROP",
        "-A FORWARD ! -p tcp -o wlan+ ! -i eth1 -j ACCEPT",
        "-A OUTPUT -d 203.0.113.0/24 -j DROP",
        "-A LOGDROP -j LOG --log-prefix \"dropped: \" --log-level 4",
        "-A LOGDROP -j DROP",
    ];
    let entries: Vec<String> = lines
        .iter()
        .map(|l| format!("  {},\n", toml::Value::String(l.to_string())))
        .collect();
    let text = format!("iptables = [\n{}]\n{}", entries.concat(), with_two(""));
    let from_lines = parse(&text, "fw.toml").unwrap_or_else(|e| panic!("{e}"));

    let resolved = crate::iptables::config_lines(&lines).unwrap();
    let blocks: String = resolved
        .rules
        .iter()
        .map(|(_, keys)| format!("[[rule]]\n{}", keys.to_toml(None)))
        .collect();
    let from_blocks = parse(&with_two(&blocks), "fw.toml").unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(from_lines.rules.len(), from_blocks.rules.len());
    assert!(from_lines.rules.len() > 15);
    let names = ifaces();
    for (a, b) in from_lines.rules.iter().zip(&from_blocks.rules) {
        // Where each rule was written differs; nothing else may.
        let mut b = b.clone();
        (b.line, b.key, b.iface_lines) = (a.line, a.key.clone(), a.iface_lines);
        assert_eq!(*a, b);
        assert_eq!(a.to_match(&names).unwrap(), b.to_match(&names).unwrap());
    }
}
