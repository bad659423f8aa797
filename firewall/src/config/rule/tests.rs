use firewall_common::{
    Chain, FAMILY_V4, IPPROTO_TCP, IPPROTO_UDP, RuleAction,
    rule::{
        MatchInput,
        model::{Cond, LimitSpec, Prefix, RejectWith},
    },
};

use super::*;
use crate::{
    config::{test_support::*, *},
    syntax::*,
};

#[test]
fn reject_on_output_is_refused() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"output\"\nproto = \"tcp\"\naction = \"reject\"\n"),
        &["fw.toml:7: rule[1].action: reject is not supported on chain output"],
    );
}

#[test]
fn bad_cidr() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nsrc = \"10.0.0.0/33\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].src: ", "prefix length must be 0-32"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\ndst = \"10.0.0\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].dst: ", "not an IP address"],
    );
}

#[test]
fn host_bits_set() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nsrc = \"10.0.0.1/8\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].src: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"],
    );
}

#[test]
fn reversed_range() {
    let rule = "[[rule]]\nchain = \"input\"\nproto = \"tcp\"\naction = \"drop\"\n";
    let text = with_ifaces(&format!("{rule}{rule}dport = \"9000-8000\"\n"));
    assert_err(
        &text,
        &["fw.toml:12: rule[2].dport: port range 9000-8000 is reversed"],
    );
}

#[test]
fn bad_ports() {
    let base = "[[rule]]\nchain = \"input\"\nproto = \"udp\"\naction = \"drop\"\n";
    assert_err(
        &with_ifaces(&format!("{base}sport = 70000\n")),
        &["fw.toml:8: rule[1].sport: port 70000 is out of range"],
    );
    assert_err(
        &with_ifaces(&format!("{base}sport = \"1-2-3\"\n")),
        &["fw.toml:8: rule[1].sport: invalid port range"],
    );
}

#[test]
fn sport_with_icmp() {
    assert_err(
        &with_ifaces(
            "[[rule]]\nchain = \"input\"\nproto = \"icmp\"\nsport = 1\naction = \"drop\"\n",
        ),
        &["fw.toml:7: rule[1].sport: ports need proto tcp or udp, not icmp"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\ndport = 1\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].dport: ports need proto tcp or udp"],
    );
}

#[test]
fn iif_unknown() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\niif = \"eth9\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].iif: \"eth9\" is not a configured [[interface]]"],
    );
}

#[test]
fn iif_on_output_chain() {
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"output\"\niif = \"eth0\"\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].iif: not allowed on chain output"],
    );
}

#[test]
fn family_conflict() {
    assert_err(
        &with_ifaces(
            "[[rule]]\nchain = \"forward\"\nsrc = \"10.0.0.0/8\"\ndst = \"2001:db8::/32\"\n\
                 action = \"drop\"\n",
        ),
        &["fw.toml:7: rule[1].dst: 2001:db8::/32 is ipv6 but src 10.0.0.0/8 is ipv4"],
    );
    assert_err(
        &with_ifaces(
            "[[rule]]\nchain = \"input\"\nfamily = \"ipv6\"\nsrc = \"10.0.0.0/8\"\naction = \"drop\"\n",
        ),
        &["fw.toml:7: rule[1].src: 10.0.0.0/8 is ipv4 but family is ipv6"],
    );
    assert_err(
        &with_ifaces(
            "[[rule]]\nchain = \"input\"\nproto = \"icmp\"\nsrc = \"::1\"\naction = \"drop\"\n",
        ),
        &["fw.toml:6: rule[1].proto: icmp only exists in ipv4"],
    );
}

#[test]
fn too_many_rules() {
    let rule = "[[rule]]\nchain = \"input\"\naction = \"drop\"\n";
    let text = with_ifaces(&rule.repeat(MAX_RULES as usize));
    assert_eq!(
        parse(&text, "fw.toml").unwrap().rules.len(),
        MAX_RULES as usize
    );
    let text = with_ifaces(&rule.repeat(MAX_RULES as usize + 1));
    let line = 4 + 3 * MAX_RULES;
    assert_err(
        &text,
        &[&format!(
            "fw.toml:{line}: rule[{}]: too many rules (at most {MAX_RULES})",
            MAX_RULES + 1
        )],
    );
}

#[test]
fn missing_and_mistyped_rule_fields() {
    assert_err(
        &with_ifaces("\n[[rule]]\nchain = \"input\"\n"),
        &["fw.toml:5: rule[1].action: missing"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = 1\naction = \"drop\"\n"),
        &["fw.toml:5: rule[1].chain: expected a string, found integer"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nproto = 0\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].proto: 0 is out of range (1-255)"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nctstate = []\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].ctstate: empty list"],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nctstate = [\"fresh\"]\naction = \"drop\"\n"),
        &["fw.toml:6: rule[1].ctstate: unknown value \"fresh\""],
    );
    assert_err(
        &with_ifaces("[[rule]]\nchain = \"input\"\nsrc.a = 1\n"),
        &["fw.toml:6: rule[1]: unexpected sub-table or dotted key \"a\""],
    );
    assert_err(
        &with_ifaces("[timeouts.tcp]\nx = 1\n"),
        &["fw.toml:4:11: unknown field `tcp`"],
    );
}

fn v4p(a: [u8; 4], len: u8) -> Prefix {
    Prefix::new(v4b(a), len)
}

#[test]
fn negation_and_lists_of_every_field() {
    let r = rule2(
        "chain = \"forward\"\nproto = [\"tcp\", \"udp\"]\nnot_proto = 6\n\
             src = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\nnot_src = \"10.9.0.0/16\"\n\
             not_dst = [\"10.0.0.1\", \"10.0.0.2\"]\n\
             src_range = \"10.0.0.1-10.0.0.6\"\nnot_dst_range = [\"10.1.0.0-10.1.0.3\"]\n\
             dport = [80, 443, \"8000-8100\"]\nnot_sport = \"0-1023\"\n\
             iif = \"eth+\"\nnot_iif = \"eth1\"\noif = [\"wlan0\", \"veth+\"]\nnot_oif = \"eth0\"\n\
             action = \"drop\"\n",
    );
    assert_eq!(r.family, Some(Family::V4));
    assert_eq!(
        r.summary(),
        "forward tcp,udp !tcp sport !0-1023 dport 80,443,8000-8100 \
             src 10.0.0.0/8,192.168.0.0/16 src !10.9.0.0/16 src-range 10.0.0.1-10.0.0.6 \
             dst !10.0.0.1,10.0.0.2 dst-range !10.1.0.0-10.1.0.3 iif eth+ iif !eth1 \
             oif wlan0,veth+ oif !eth0 -> drop"
    );
    let m = r.to_match(&ifaces()).unwrap();
    assert_eq!(m.family, Some(FAMILY_V4));
    assert_eq!(
        m.proto,
        vec![
            Cond {
                negated: false,
                any_of: vec![IPPROTO_TCP, IPPROTO_UDP]
            },
            Cond::not(IPPROTO_TCP)
        ]
    );
    assert_eq!(
        m.src,
        vec![
            Cond {
                negated: false,
                any_of: vec![v4p([10, 0, 0, 0], 8), v4p([192, 168, 0, 0], 16)]
            },
            Cond::not(v4p([10, 9, 0, 0], 16)),
            Cond {
                negated: false,
                any_of: vec![
                    v4p([10, 0, 0, 1], 32),
                    v4p([10, 0, 0, 2], 31),
                    v4p([10, 0, 0, 4], 31),
                    v4p([10, 0, 0, 6], 32)
                ]
            },
        ]
    );
    assert_eq!(
        m.dst,
        vec![
            Cond {
                negated: true,
                any_of: vec![v4p([10, 0, 0, 1], 32), v4p([10, 0, 0, 2], 32)]
            },
            Cond::not(v4p([10, 1, 0, 0], 30)),
        ]
    );
    assert_eq!(
        m.dport,
        vec![Cond {
            negated: false,
            any_of: vec![(80, 80), (443, 443), (8000, 8100)]
        }]
    );
    assert_eq!(m.sport, vec![Cond::not((0, 1023))]);
    // eth+ is every eth interface of the host, configured or not.
    assert_eq!(
        m.iif,
        vec![
            Cond {
                negated: false,
                any_of: vec![2, 3, 5]
            },
            Cond::not(3)
        ]
    );
    // veth+ names nothing here: it adds no interface.
    assert_eq!(m.oif, vec![Cond::is(4), Cond::not(2)]);
    firewall_common::rule::compile::compile(&[m], [0; 4]).unwrap();
}

#[test]
fn icmp_types_tcp_flags_and_limits() {
    let r = rule2(
        "chain = \"input\"\nproto = \"icmp\"\n\
             icmp_type = [\"echo-request\", \"3/4\", 11, \"host-unreachable\"]\n\
             not_icmp_type = \"ttl-zero-during-reassembly\"\nlimit = \"5/minute\"\n\
             action = \"accept\"\n",
    );
    let m = r.to_match(&ifaces()).unwrap();
    assert_eq!(
        m.icmp,
        vec![
            Cond {
                negated: false,
                any_of: vec![
                    (0x800, 0x8ff),
                    (0x304, 0x304),
                    (0xb00, 0xbff),
                    (0x301, 0x301)
                ]
            },
            Cond::not((0xb01, 0xb01))
        ]
    );
    assert_eq!(
        m.limit,
        Some(LimitSpec {
            interval_ns: 12_000_000_000,
            burst: 5
        })
    );
    assert_eq!(
        r.summary(),
        "input icmp icmp-type 8,3/4,11,3/1 icmp-type !11/1 limit 5/minute burst 5 -> accept"
    );
    // ICMPv6 names are ICMPv6's.
    let r = rule2(
        "chain = \"input\"\nproto = \"icmpv6\"\nicmp_type = \"echo-request\"\nlimit = 100\n\
             limit_burst = 20\naction = \"accept\"\n",
    );
    let m = r.to_match(&ifaces()).unwrap();
    assert_eq!(m.icmp, vec![Cond::is((128 << 8, 128 << 8 | 0xff))]);
    assert_eq!(
        m.limit,
        Some(LimitSpec {
            interval_ns: 10_000_000,
            burst: 20
        })
    );

    let r = rule2("chain = \"input\"\nproto = \"tcp\"\nsyn = true\naction = \"drop\"\n");
    let t = r.to_match(&ifaces()).unwrap().tcp_flags.unwrap();
    assert_eq!((t.mask, t.comp, t.negated), (0x17, 0x02, false));
    assert_eq!(r.summary(), "input tcp syn -> drop");
    let r = rule2("chain = \"input\"\nproto = \"tcp\"\nsyn = false\naction = \"drop\"\n");
    assert!(r.to_match(&ifaces()).unwrap().tcp_flags.unwrap().negated);
    assert_eq!(r.summary(), "input tcp !syn -> drop");
    let r = rule2(
        "chain = \"input\"\nproto = \"tcp\"\n\
             not_tcp_flags = { mask = [\"all\"], set = [] }\naction = \"drop\"\n",
    );
    let t = r.to_match(&ifaces()).unwrap().tcp_flags.unwrap();
    assert_eq!((t.mask, t.comp, t.negated), (0x3f, 0, true));
    assert_eq!(
        r.summary(),
        "input tcp flags !fin,syn,rst,psh,ack,urg/none -> drop"
    );
}

#[test]
fn reject_and_log_actions() {
    let r = rule2("chain = \"input\"\naction = \"reject\"\n");
    assert_eq!(
        r.to_match(&ifaces()).unwrap().reject,
        RejectWith::PORT_UNREACHABLE
    );
    assert_eq!(r.summary(), "input -> reject");
    for (name, v4, v6) in [
        ("icmp-net-unreachable", (3, 0), (1, 0)),
        ("host-unreach", (3, 1), (1, 3)),
        ("icmp-proto-unreachable", (3, 2), (1, 4)),
        ("icmp-net-prohibited", (3, 9), (1, 1)),
        ("icmp-host-prohibited", (3, 10), (1, 1)),
        ("icmp-admin-prohibited", (3, 13), (1, 1)),
        ("icmp6-no-route", (3, 0), (1, 0)),
        ("icmp6-adm-prohibited", (3, 13), (1, 1)),
        ("icmp6-addr-unreachable", (3, 1), (1, 3)),
        ("icmp6-port-unreachable", (3, 3), (1, 4)),
        ("icmp6-policy-fail", (3, 13), (1, 5)),
        ("icmp6-reject-route", (3, 13), (1, 6)),
    ] {
        let r = rule2(&format!(
            "chain = \"input\"\naction = \"reject\"\nreject_with = \"{name}\"\n"
        ));
        assert_eq!(
            r.to_match(&ifaces()).unwrap().reject,
            RejectWith::Icmp { v4, v6 },
            "{name}"
        );
    }
    let r = rule2(
        "chain = \"input\"\nproto = \"tcp\"\naction = \"reject\"\nreject_with = \"tcp-rst\"\n",
    );
    assert_eq!(r.to_match(&ifaces()).unwrap().reject, RejectWith::TcpReset);
    assert_eq!(r.summary(), "input tcp -> reject tcp-reset");

    let r = rule2(
        "chain = \"forward\"\naction = \"log\"\nlog_prefix = \"fwd: \"\nlog_level = \"info\"\n",
    );
    let m = r.to_match(&ifaces()).unwrap();
    assert_eq!(m.action, RuleAction::Log);
    assert_eq!(&m.log_prefix[..6], b"fwd: \0");
    assert_eq!(m.log_level, 6);
    assert_eq!(r.summary(), "forward -> log \"fwd: \" level 6");
    let m = rule2("chain = \"forward\"\naction = \"log\"\n")
        .to_match(&ifaces())
        .unwrap();
    assert_eq!((m.log_prefix, m.log_level), ([0; 32], 4));
    let r = rule2(&format!(
        "chain = \"forward\"\naction = \"log\"\nlog_prefix = \"{}\"\nlog_level = 0\n",
        "x".repeat(29)
    ));
    assert_eq!(r.to_match(&ifaces()).unwrap().log_level, 0);
}

#[test]
fn interface_keys_by_chain_and_existence() {
    // An exact oif need not be configured, but must exist at load.
    let r = rule2("chain = \"output\"\noif = \"wlan0\"\naction = \"drop\"\n");
    assert_eq!(r.to_match(&ifaces()).unwrap().oif, vec![Cond::is(4)]);
    let r =
        rule2("chain = \"forward\"\nfamily = \"ipv4\"\nnot_oif = \"ppp0\"\naction = \"drop\"\n");
    assert_eq!(
        r.to_match(&ifaces()).unwrap_err().to_string(),
        "fw.toml:10: rule[1].not_oif: interface \"ppp0\" does not exist"
    );
    // A wildcard that names nothing never matches (positive) or excludes
    // nothing (negated).
    let r = rule2("chain = \"forward\"\noif = \"ppp+\"\nnot_iif = \"tun+\"\naction = \"drop\"\n");
    let m = r.to_match(&ifaces()).unwrap();
    assert_eq!(
        m.oif,
        vec![Cond {
            negated: false,
            any_of: vec![]
        }]
    );
    assert!(m.iif.is_empty());
    let p = MatchInput {
        chain: Chain::Forward as u8,
        iif: 2,
        oif: 3,
        ..MatchInput::default()
    };
    assert!(!m.matches(&p));
    firewall_common::rule::compile::compile(&[m], [0; 4]).unwrap();
}

#[test]
fn errors_of_the_new_keys_are_one_line_with_file_line_and_key() {
    let rule = |body: &str| with_two(&format!("[[rule]]\nchain = \"input\"\n{body}"));
    for (body, expected) in [
        (
            "src = []\naction = \"drop\"\n",
            "fw.toml:9: rule[1].src: empty list (leave the key out to put no condition on this field)",
        ),
        (
            "not_src = \"10.0.0.0/8\"\ndst = \"::1\"\naction = \"drop\"\n",
            "fw.toml:10: rule[1].dst: ::1 is ipv6 but not_src 10.0.0.0/8 is ipv4",
        ),
        (
            "src_range = \"10.0.0.9-10.0.0.1\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].src_range: \"10.0.0.9-10.0.0.1\": the range is reversed",
        ),
        (
            "not_dst_range = \"10.0.0.1-::2\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].not_dst_range: \"10.0.0.1-::2\": the ends are of different address families",
        ),
        (
            "not_proto = \"gre\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].not_proto: unknown protocol \"gre\"",
        ),
        (
            "family = \"ipv6\"\nnot_proto = \"icmp\"\naction = \"drop\"\n",
            "fw.toml:10: rule[1].not_proto: icmp only exists in ipv4, but the rule is ipv6",
        ),
        (
            "not_dport = 22\naction = \"drop\"\n",
            "fw.toml:9: rule[1].not_dport: ports need proto tcp or udp",
        ),
        (
            "proto = [\"tcp\", \"icmp\"]\ndport = 22\naction = \"drop\"\n",
            "fw.toml:10: rule[1].dport: ports need proto tcp or udp, not icmp",
        ),
        (
            "proto = \"tcp\"\ndport = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, \"15-16\"]\naction = \"drop\"\n",
            "fw.toml:10: rule[1].dport: 16 ports, more than the 15 a list holds",
        ),
        (
            "icmp_type = 8\naction = \"drop\"\n",
            "fw.toml:9: rule[1].icmp_type: needs proto icmp or icmpv6 (alone)",
        ),
        (
            "proto = \"icmp\"\nicmp_type = \"neighbour-solicitation\"\naction = \"drop\"\n",
            "fw.toml:10: rule[1].icmp_type: unknown ICMP type \"neighbour-solicitation\"",
        ),
        (
            "proto = \"icmp\"\nnot_icmp_type = \"any\"\naction = \"drop\"\n",
            "fw.toml:10: rule[1].not_icmp_type: \"any\" would never match",
        ),
        (
            "proto = \"icmp\"\nicmp_type = 256\naction = \"drop\"\n",
            "fw.toml:10: rule[1].icmp_type: 256 is out of range (0-255)",
        ),
        (
            "syn = true\naction = \"drop\"\n",
            "fw.toml:9: rule[1].syn: needs proto tcp",
        ),
        (
            "proto = \"tcp\"\nsyn = true\ntcp_flags = { mask = [\"syn\"], set = [] }\naction = \"drop\"\n",
            "fw.toml:10: rule[1].syn: only one of tcp_flags, not_tcp_flags and syn",
        ),
        (
            "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"], set = [\"ack\"] }\naction = \"drop\"\n",
            "fw.toml:10: rule[1].tcp_flags: set has ack outside the mask, so the test could never hold",
        ),
        (
            "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"] }\naction = \"drop\"\n",
            "fw.toml:10: rule[1].tcp_flags: set is missing (required)",
        ),
        (
            "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\", \"ece\"], set = [] }\naction = \"drop\"\n",
            "fw.toml:10: rule[1].tcp_flags: mask: unknown TCP flag \"ece\"",
        ),
        (
            "proto = \"tcp\"\ntcp_flags = { mask = [\"syn\"], set = [], comp = [] }\naction = \"drop\"\n",
            "fw.toml:10: rule[1].tcp_flags: unknown key \"comp\" (expected mask and set)",
        ),
        (
            "proto = \"tcp\"\ntcp_flags = [\"syn\"]\naction = \"drop\"\n",
            "fw.toml:10: rule[1].tcp_flags: expected { mask = [...], set = [...] }, found array",
        ),
        (
            "limit = \"5/fortnight\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].limit: \"5/fortnight\": unknown unit",
        ),
        (
            "limit = \"20000/s\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].limit: 20000/second is faster than 10000/second",
        ),
        (
            "limit_burst = 3\naction = \"drop\"\n",
            "fw.toml:9: rule[1].limit_burst: only with limit",
        ),
        (
            "limit = 1\nlimit_burst = 0\naction = \"drop\"\n",
            "fw.toml:10: rule[1].limit_burst: 0 is out of range (1-10000)",
        ),
        (
            "action = \"queue\"\n",
            "fw.toml:9: rule[1].action: unknown value \"queue\" (expected accept, drop, reject or log)",
        ),
        (
            "action = \"drop\"\nreject_with = \"tcp-reset\"\n",
            "fw.toml:10: rule[1].reject_with: only with action = \"reject\"",
        ),
        (
            "action = \"reject\"\nreject_with = \"tcp-reset\"\n",
            "fw.toml:10: rule[1].reject_with: tcp-reset needs proto tcp",
        ),
        (
            "action = \"reject\"\nreject_with = \"icmp-bogus\"\n",
            "fw.toml:10: rule[1].reject_with: unknown value \"icmp-bogus\"",
        ),
        (
            "action = \"accept\"\nlog_level = 3\n",
            "fw.toml:10: rule[1].log_level: only with action = \"log\"",
        ),
        (
            "action = \"log\"\nlog_level = 8\n",
            "fw.toml:10: rule[1].log_level: 8 is out of range (0-7)",
        ),
        (
            "action = \"log\"\nlog_level = \"loud\"\n",
            "fw.toml:10: rule[1].log_level: unknown log level \"loud\"",
        ),
        (
            "action = \"log\"\nlog_prefix = \"123456789012345678901234567890\"\n",
            "fw.toml:10: rule[1].log_prefix: 30 bytes, more than the 29 iptables' LOG keeps",
        ),
        (
            "oif = \"eth0\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].oif: not allowed on chain input",
        ),
        (
            "iif = \"+\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].iif: \"+\" alone is every interface (leave the key out)",
        ),
        (
            "not_iif = \"eth9\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].not_iif: \"eth9\" is not a configured [[interface]] (configured: eth0, eth1)",
        ),
        (
            "iif = \"bad/name+\"\naction = \"drop\"\n",
            "fw.toml:9: rule[1].iif: \"bad/name\" is not a valid interface name",
        ),
    ] {
        let msg = err(&rule(body));
        assert!(!msg.contains('\n'), "multi-line error: {msg}");
        assert!(
            msg.starts_with(expected),
            "{body}:\n{msg:?}\ndoes not start with\n{expected:?}"
        );
    }
    assert_err(
        &with_two("[[rule]]\nchain = \"output\"\nnot_iif = \"eth0\"\naction = \"drop\"\n"),
        &["fw.toml:9: rule[1].not_iif: not allowed on chain output"],
    );
    assert_err(
        &with_two("[policy]\ninput = \"reject\"\n"),
        &["fw.toml:8: policy.input: unknown value \"reject\" (expected accept or drop)"],
    );
}
