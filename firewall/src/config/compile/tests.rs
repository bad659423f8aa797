use std::net::{Ipv4Addr, Ipv6Addr};

use firewall_common::{
    Chain, CtState, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    RuleAction,
    rule::{
        MatchInput,
        model::{Cond, MatchRule, Prefix},
    },
    testing::Rng,
};

use crate::{
    config::{test_support::*, *},
    syntax::*,
};

#[test]
fn to_match_v4_cidr() {
    let r = one_rule("chain = \"forward\"\nsrc = \"10.1.0.0/16\"\naction = \"drop\"\n");
    let rule = r.to_match(&ifaces()).unwrap();
    assert_eq!(rule.family, Some(FAMILY_V4));
    assert_eq!(rule.chain, Chain::Forward);
    assert_eq!(rule.action, RuleAction::Drop);
    assert!(rule.proto.is_empty());
    assert_eq!(
        rule.src,
        vec![Cond::is(Prefix::new(v4b([10, 1, 0, 0]), 16))]
    );
    let p = MatchInput {
        chain: Chain::Forward as u8,
        src: v4b([10, 1, 200, 3]),
        ..MatchInput::default()
    };
    assert!(rule.matches(&p));
    assert!(!rule.matches(&MatchInput {
        src: v4b([10, 2, 0, 1]),
        ..p
    }));
    assert_eq!(r.summary(), "forward src 10.1.0.0/16 -> drop");
}

#[test]
fn to_match_v6_cidr() {
    let r = one_rule("chain = \"input\"\ndst = \"2001:db8:ab00::/40\"\naction = \"accept\"\n");
    let rule = r.to_match(&ifaces()).unwrap();
    assert_eq!(rule.family, Some(FAMILY_V6));
    let inside: Ipv6Addr = "2001:db8:abff::1".parse().unwrap();
    let outside: Ipv6Addr = "2001:db8:ac00::1".parse().unwrap();
    let p = MatchInput {
        chain: Chain::Input as u8,
        v6: true,
        dst: inside.octets(),
        ..MatchInput::default()
    };
    assert!(rule.matches(&p));
    assert!(!rule.matches(&MatchInput {
        dst: outside.octets(),
        ..p
    }));
    // An IPv4 packet must not match by accident of its zero bytes.
    assert!(!rule.matches(&MatchInput { v6: false, ..p }));
}

#[test]
fn to_match_port_range() {
    let r = one_rule(
        "chain = \"input\"\nproto = \"udp\"\ndport = \"5000-5010\"\nsport = 53\naction = \"accept\"\n",
    );
    let rule = r.to_match(&ifaces()).unwrap();
    assert_eq!(rule.proto, vec![Cond::is(IPPROTO_UDP)]);
    assert_eq!(rule.family, None);
    assert_eq!(rule.dport, vec![Cond::is((5000, 5010))]);
    assert_eq!(rule.sport, vec![Cond::is((53, 53))]);
    assert_eq!(r.summary(), "input udp sport 53 dport 5000-5010 -> accept");
}

#[test]
fn to_match_ctstate() {
    let r = one_rule(
        "chain = \"forward\"\nctstate = [\"new\", \"invalid\", \"untracked\"]\naction = \"drop\"\n",
    );
    let rule = r.to_match(&ifaces()).unwrap();
    assert_eq!(
        rule.ctstate,
        CtState::New.bit() | CtState::Invalid.bit() | CtState::Untracked.bit()
    );
    assert_eq!(r.summary(), "forward ctstate new,invalid,untracked -> drop");
}

#[test]
fn to_match_iif() {
    let r = one_rule("chain = \"input\"\nfamily = \"ipv6\"\niif = \"eth0\"\naction = \"accept\"\n");
    let rule = r.to_match(&ifaces()).unwrap();
    assert_eq!(rule.iif, vec![Cond::is(2)]);
    assert_eq!(rule.family, Some(FAMILY_V6));
    assert_eq!(r.summary(), "input ipv6 iif eth0 -> accept");

    let e = r.to_match(&[]).unwrap_err().to_string();
    assert_eq!(
        e,
        "fw.toml:7: rule[1].iif: interface \"eth0\" does not exist"
    );
}

#[test]
fn numeric_proto() {
    let r = one_rule("chain = \"input\"\nproto = 47\naction = \"drop\"\n");
    assert_eq!(r.to_match(&ifaces()).unwrap().proto, vec![Cond::is(47)]);
    assert_eq!(r.summary(), "input 47 -> drop");
    let r = one_rule("chain = \"input\"\nproto = 6\ndport = 0\naction = \"drop\"\n");
    assert_eq!(r.dport, Match::is(PortRange { lo: 0, hi: 0 }));
}

/// A value or a list of 1-3 of `pool`.
fn one_or_list(rng: &mut Rng, pool: &[&str]) -> String {
    if rng.chance(50) {
        return rng.pick(pool).to_string();
    }
    let n = 1 + rng.below(3);
    let items: Vec<&str> = (0..n).map(|_| *rng.pick(pool)).collect();
    format!("[{}]", items.join(", "))
}

fn random_rule(rng: &mut Rng) -> String {
    let mut out = String::from("[[rule]]\n");
    let chain = *rng.pick(&["input", "forward", "output"]);
    out += &format!("chain = \"{chain}\"\n");
    let v6 = rng.chance(30);
    let proto = *rng.pick(&["", "tcp", "udp", "icmp", "tcp_udp", "47"]);
    let proto = if v6 && proto == "icmp" {
        "icmpv6"
    } else {
        proto
    };
    match proto {
        "" => {}
        "tcp_udp" => out += "proto = [\"tcp\", \"udp\"]\n",
        "47" => out += "proto = 47\n",
        p => out += &format!("proto = \"{p}\"\n"),
    }
    if rng.chance(15) {
        out += &format!(
            "not_proto = {}\n",
            one_or_list(rng, &["\"udp\"", "47", "\"tcp\""])
        );
    }
    let addrs: &[&str] = if v6 {
        &[
            "\"2001:db8::/32\"",
            "\"2001:db8::1\"",
            "\"2001:db8:1::/48\"",
            "\"::/0\"",
        ]
    } else {
        &[
            "\"10.0.0.0/8\"",
            "\"10.0.0.1\"",
            "\"10.0.1.0/24\"",
            "\"192.168.1.0/24\"",
            "\"0.0.0.0/0\"",
        ]
    };
    let ranges: &[&str] = if v6 {
        &[
            "\"2001:db8::1-2001:db8::9\"",
            "\"2001:db8::-2001:db8:1::5\"",
        ]
    } else {
        &[
            "\"10.0.0.1-10.0.0.9\"",
            "\"10.0.0.200-10.0.1.7\"",
            "\"192.168.1.5-192.168.1.5\"",
        ]
    };
    for key in ["src", "dst", "not_src", "not_dst"] {
        if rng.chance(20) {
            out += &format!("{key} = {}\n", one_or_list(rng, addrs));
        }
    }
    for key in ["src_range", "dst_range", "not_src_range", "not_dst_range"] {
        if rng.chance(10) {
            out += &format!("{key} = {}\n", one_or_list(rng, ranges));
        }
    }
    if matches!(proto, "tcp" | "udp" | "tcp_udp") {
        let ports = [
            "22",
            "53",
            "80",
            "\"1000-2000\"",
            "\"1-1023\"",
            "65535",
            "0",
        ];
        for key in ["sport", "dport", "not_sport", "not_dport"] {
            if rng.chance(25) {
                out += &format!("{key} = {}\n", one_or_list(rng, &ports));
            }
        }
    }
    if matches!(proto, "icmp" | "icmpv6") {
        let types: &[&str] = if v6 {
            &[
                "\"echo-request\"",
                "1",
                "\"1/4\"",
                "\"packet-too-big\"",
                "\"port-unreachable\"",
            ]
        } else {
            &[
                "\"echo-request\"",
                "3",
                "\"3/4\"",
                "\"port-unreachable\"",
                "0",
                "\"any\"",
            ]
        };
        if rng.chance(40) {
            out += &format!("icmp_type = {}\n", one_or_list(rng, types));
        }
        if rng.chance(20) {
            let types: Vec<&str> = types.iter().copied().filter(|t| *t != "\"any\"").collect();
            out += &format!("not_icmp_type = {}\n", one_or_list(rng, &types));
        }
    }
    if proto == "tcp" {
        match rng.below(5) {
            0 => out += "syn = true\n",
            1 => out += "syn = false\n",
            2 => out += "tcp_flags = { mask = [\"syn\", \"ack\"], set = [\"ack\"] }\n",
            3 => out += "not_tcp_flags = { mask = [\"rst\"], set = [\"rst\"] }\n",
            _ => {}
        }
    }
    if chain != "output" {
        for key in ["iif", "not_iif"] {
            if rng.chance(15) {
                out += &format!(
                    "{key} = {}\n",
                    one_or_list(rng, &["\"eth0\"", "\"eth1\"", "\"eth+\"", "\"wl+\""])
                );
            }
        }
    }
    if chain != "input" {
        for key in ["oif", "not_oif"] {
            if rng.chance(15) {
                out += &format!(
                    "{key} = {}\n",
                    one_or_list(rng, &["\"eth0\"", "\"wlan0\"", "\"eth+\"", "\"ppp+\""])
                );
            }
        }
    }
    if rng.chance(15) {
        out += &format!(
            "ctstate = {}\n",
            *rng.pick(&[
                "[\"new\"]",
                "[\"invalid\", \"untracked\"]",
                "[\"new\", \"untracked\"]"
            ])
        );
    }
    if !out.contains("src") && !out.contains("dst") && rng.chance(20) {
        out += &format!("family = \"{}\"\n", if v6 { "ipv6" } else { "ipv4" });
    }
    if rng.chance(10) {
        out += "limit = \"10/second\"\n";
    }
    match rng.below(6) {
        0 | 1 => out += "action = \"accept\"\n",
        // REJECT is refused on output.
        2 | 3 | 5 if chain == "output" => out += "action = \"drop\"\n",
        2 => out += "action = \"drop\"\n",
        3 if proto == "tcp" => out += "action = \"reject\"\nreject_with = \"tcp-reset\"\n",
        3 => out += "action = \"reject\"\nreject_with = \"icmp-host-prohibited\"\n",
        4 => out += "action = \"log\"\nlog_prefix = \"x\"\n",
        _ => out += "action = \"reject\"\n",
    }
    out
}

fn random_packet(rng: &mut Rng) -> MatchInput {
    let v6 = rng.chance(30);
    let chain = rng.below(3) as u8;
    let addr = |rng: &mut Rng| -> [u8; 16] {
        if v6 {
            let a: Ipv6Addr = rng
                .pick(&[
                    "2001:db8::1",
                    "2001:db8::5",
                    "2001:db8:1::3",
                    "2001:db8:2::1",
                    "fe80::1",
                ])
                .parse()
                .unwrap();
            a.octets()
        } else {
            let a: Ipv4Addr = rng
                .pick(&[
                    "10.0.0.1",
                    "10.0.0.5",
                    "10.0.0.255",
                    "10.0.1.3",
                    "192.168.1.5",
                    "8.8.8.8",
                ])
                .parse()
                .unwrap();
            v4b(a.octets())
        }
    };
    let icmp = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    let proto = *rng.pick(&[IPPROTO_TCP, IPPROTO_UDP, icmp, 47]);
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = [22u16, 53, 80, 1500, 0, 65535, 40000];
            (*rng.pick(&ports), *rng.pick(&ports))
        }
        47 => (0, 0),
        _ => {
            let types: &[u16] = if v6 {
                &[128 << 8, 1 << 8 | 4, 1 << 8, 2 << 8, 129 << 8]
            } else {
                &[8 << 8, 3 << 8 | 4, 3 << 8 | 3, 0, 11 << 8]
            };
            (*rng.pick(types), 0)
        }
    };
    let ifaces = [0u32, 2, 3, 4, 5];
    MatchInput {
        chain,
        v6,
        state: *rng.pick(&[
            CtState::New as u8,
            CtState::Invalid as u8,
            CtState::Untracked as u8,
        ]),
        proto,
        src: addr(rng),
        dst: addr(rng),
        iif: if chain == Chain::Output as u8 {
            0
        } else {
            *rng.pick(&ifaces[1..])
        },
        oif: if chain == Chain::Input as u8 {
            0
        } else {
            *rng.pick(&ifaces[1..])
        },
        sport,
        dport,
        tcp_flags: *rng.pick(&[0x02u8, 0x12, 0x10, 0x04, 0x11, 0]),
    }
}

#[test]
fn random_configs_compile_and_agree_with_the_ordered_list() {
    use firewall_common::rule::{compile::compile, model::reference};
    let mut rng = Rng::xorshift64(0x9e37_79b9_7f4a_7c15);
    let mut rules_seen = 0;
    for round in 0..60 {
        let n = 1 + rng.below(40);
        let text = with_two(&(0..n).map(|_| random_rule(&mut rng)).collect::<String>());
        let config = parse(&text, "random.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let rules: Vec<MatchRule> = config
            .rules
            .iter()
            .map(|r| {
                r.to_match(&ifaces())
                    .unwrap_or_else(|e| panic!("{e}\n{text}"))
            })
            .collect();
        rules_seen += rules.len();
        let compiled =
            compile(&rules, [0; 4]).unwrap_or_else(|e| panic!("round {round}: {e}\n{text}"));
        for _ in 0..400 {
            let p = random_packet(&mut rng);
            assert_eq!(
                compiled.evaluate(&p),
                reference(&rules, &p),
                "round {round}: {p:?}\n{text}"
            );
        }
    }
    assert!(rules_seen > 500);
}
