use std::net::IpAddr;

use firewall_common::{CtState, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use super::*;
use crate::{
    iptables::*,
    syntax::{ICMP_TYPES, ICMPV6_TYPES, IcmpType, PortRange, RateUnit},
};

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s, HostBits::Cleared).unwrap()
}

fn pr(lo: u16, hi: u16) -> PortRange {
    PortRange { lo, hi }
}

fn yes(test: Test) -> Cond {
    Cond {
        negated: false,
        test,
    }
}

fn not(test: Test) -> Cond {
    Cond {
        negated: true,
        test,
    }
}

fn iface(name: &str) -> Iface {
    Iface {
        name: name.into(),
        wildcard: false,
    }
}

/// The one rule a line appends.
fn rule_in(line: &str, table: Table) -> Rule {
    match parse_rule(line, table)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .as_slice()
    {
        [Stmt::Append { rule, .. }] => rule.clone(),
        other => panic!("{line}: expected one -A, got {other:?}"),
    }
}

fn rule(line: &str) -> Rule {
    rule_in(line, Table::Filter)
}

fn error_in(line: &str, table: Table) -> String {
    match parse_rule(line, table) {
        Ok(s) => panic!("{line}: expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn tcp() -> Cond {
    yes(Test::Proto(IPPROTO_TCP))
}

fn udp() -> Cond {
    yes(Test::Proto(IPPROTO_UDP))
}

fn icmp() -> Cond {
    yes(Test::Proto(IPPROTO_ICMP))
}

fn icmpv6() -> Cond {
    yes(Test::Proto(IPPROTO_ICMPV6))
}

fn check_conds(cases: &[(&str, Vec<Cond>)]) {
    for (line, want) in cases {
        assert_eq!(&rule(line).conds, want, "{line}");
    }
}

#[test]
fn comments_keep_quotes_and_spaces() {
    // Exactly as iptables-save prints `--comment 'ssh "in"'`.
    let r =
        rule(r#"-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "ssh \"in\"" -j ACCEPT"#);
    assert_eq!(r.comment.as_deref(), Some(r#"ssh "in""#));
    assert_eq!(r.conds, [tcp(), yes(Test::Dport(vec![pr(22, 22)]))]);
    let r = rule("-A INPUT -m comment --comment 'ssh in' -m comment --comment two -j ACCEPT");
    assert_eq!(r.comment.as_deref(), Some("ssh in; two"));
    assert!(r.conds.is_empty());
    let r = rule(r#"-A INPUT -m comment --comment "a\\b" -j ACCEPT"#);
    assert_eq!(r.comment.as_deref(), Some(r"a\b"));
}

#[test]
fn basic_selectors_and_their_negation() {
    check_conds(&[
        ("-A INPUT -p tcp", vec![tcp()]),
        ("-A INPUT ! -p udp", vec![not(Test::Proto(IPPROTO_UDP))]),
        ("-A INPUT --protocol 47", vec![yes(Test::Proto(47))]),
        ("-A INPUT -p gre", vec![yes(Test::Proto(47))]),
        ("-A INPUT -p TCP", vec![tcp()]),
        ("-A INPUT -p all", vec![]),
        ("-A INPUT -p ipv6-icmp", vec![icmpv6()]),
        ("-A INPUT -p icmpv6", vec![icmpv6()]),
        (
            "-A INPUT -s 10.0.0.1",
            vec![yes(Test::Src(cidr("10.0.0.1/32")))],
        ),
        (
            "-A INPUT -s 10.0.0.1/32",
            vec![yes(Test::Src(cidr("10.0.0.1/32")))],
        ),
        (
            "-A INPUT ! -s 10.0.0.0/8",
            vec![not(Test::Src(cidr("10.0.0.0/8")))],
        ),
        // Host bits are cleared, as iptables does.
        (
            "-A INPUT -s 10.1.2.3/8",
            vec![yes(Test::Src(cidr("10.0.0.0/8")))],
        ),
        (
            "-A INPUT --source 10.0.0.0/255.255.0.0",
            vec![yes(Test::Src(cidr("10.0.0.0/16")))],
        ),
        (
            "-A INPUT --src 0.0.0.0/0",
            vec![yes(Test::Src(cidr("0.0.0.0/0")))],
        ),
        (
            "-A INPUT -d 2001:db8::/32",
            vec![yes(Test::Dst(cidr("2001:db8::/32")))],
        ),
        (
            "-A INPUT ! --destination 192.0.2.1/32",
            vec![not(Test::Dst(cidr("192.0.2.1/32")))],
        ),
        (
            "-A INPUT --dst 192.0.2.0/24",
            vec![yes(Test::Dst(cidr("192.0.2.0/24")))],
        ),
        ("-A INPUT -i eth0", vec![yes(Test::InIface(iface("eth0")))]),
        (
            "-A INPUT ! -i eth0",
            vec![not(Test::InIface(iface("eth0")))],
        ),
        (
            "-A INPUT --in-interface eth+",
            vec![yes(Test::InIface(Iface {
                name: "eth".into(),
                wildcard: true,
            }))],
        ),
        // `-i +` is any interface, as iptables-save shows by dropping it.
        ("-A INPUT -i +", vec![]),
        ("-A FORWARD -o wg0", vec![yes(Test::OutIface(iface("wg0")))]),
        (
            "-A FORWARD ! --out-interface ppp+",
            vec![not(Test::OutIface(Iface {
                name: "ppp".into(),
                wildcard: true,
            }))],
        ),
        // Basic selectors come first whatever the order written.
        (
            "-A FORWARD -o eth0 -i eth1 -d 10.0.0.0/8 -s 10.1.0.0/16 -p udp",
            vec![
                udp(),
                yes(Test::Src(cidr("10.1.0.0/16"))),
                yes(Test::Dst(cidr("10.0.0.0/8"))),
                yes(Test::InIface(iface("eth1"))),
                yes(Test::OutIface(iface("eth0"))),
            ],
        ),
    ]);
}

#[test]
fn ports_single_ranges_and_multiport() {
    let d = |l: Vec<PortRange>| yes(Test::Dport(l));
    let s = |l: Vec<PortRange>| yes(Test::Sport(l));
    check_conds(&[
        (
            "-A INPUT -p tcp --dport 22",
            vec![tcp(), d(vec![pr(22, 22)])],
        ),
        (
            "-A INPUT -p tcp -m tcp --dport 22",
            vec![tcp(), d(vec![pr(22, 22)])],
        ),
        (
            "-A INPUT -p tcp -m tcp --sport 1024:65535",
            vec![tcp(), s(vec![pr(1024, 65535)])],
        ),
        (
            "-A INPUT -p udp -m udp ! --dport 53",
            vec![udp(), not(Test::Dport(vec![pr(53, 53)]))],
        ),
        (
            "-A INPUT -p udp --sport 53:54",
            vec![udp(), s(vec![pr(53, 54)])],
        ),
        (
            "-A INPUT -p tcp --dport :1023",
            vec![tcp(), d(vec![pr(0, 1023)])],
        ),
        (
            "-A INPUT -p tcp --dport 8000:",
            vec![tcp(), d(vec![pr(8000, 65535)])],
        ),
        (
            "-A INPUT -p tcp --destination-port 80 --source-port 1000",
            vec![tcp(), d(vec![pr(80, 80)]), s(vec![pr(1000, 1000)])],
        ),
        (
            "-A INPUT -p tcp -m multiport --dports 80,443,8000:8100",
            vec![tcp(), d(vec![pr(80, 80), pr(443, 443), pr(8000, 8100)])],
        ),
        (
            "-A INPUT -p udp -m multiport ! --sports 53,123",
            vec![udp(), not(Test::Sport(vec![pr(53, 53), pr(123, 123)]))],
        ),
        (
            "-A INPUT -p tcp -m multiport --destination-ports 1:2 --source-ports 3",
            vec![tcp(), d(vec![pr(1, 2)]), s(vec![pr(3, 3)])],
        ),
        (
            "-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            vec![tcp(), d((1..=15).map(|p| pr(p, p)).collect())],
        ),
        // A match loaded twice is two conditions.
        (
            "-A INPUT -p tcp -m tcp --dport 22 -m tcp --dport 22:23",
            vec![tcp(), d(vec![pr(22, 22)]), d(vec![pr(22, 23)])],
        ),
    ]);
}

#[test]
fn conntrack_and_state() {
    use CtState::*;
    let ct = |s: Vec<CtState>| yes(Test::CtState(s));
    check_conds(&[
        (
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED",
            vec![ct(vec![Established, Related])],
        ),
        // iptables-save prints kernel order; the order does not matter.
        (
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED",
            vec![ct(vec![Established, Related])],
        ),
        (
            "-A INPUT -m conntrack ! --ctstate NEW",
            vec![not(Test::CtState(vec![New]))],
        ),
        (
            "-A INPUT -m state --state NEW,INVALID,UNTRACKED",
            vec![ct(vec![New, Invalid, Untracked])],
        ),
        (
            "-A INPUT -m state ! --state invalid",
            vec![not(Test::CtState(vec![Invalid]))],
        ),
        ("-A INPUT -m conntrack", vec![]),
    ]);
}

#[test]
fn icmp_types_by_name_number_and_code() {
    let t = |x| yes(Test::Icmp(x));
    let t6 = |x| yes(Test::Icmpv6(x));
    use IcmpType::*;
    check_conds(&[
        (
            "-A INPUT -p icmp --icmp-type echo-request",
            vec![icmp(), t(Type(8))],
        ),
        (
            "-A INPUT -p icmp -m icmp --icmp-type 8",
            vec![icmp(), t(Type(8))],
        ),
        (
            "-A INPUT -p icmp -m icmp --icmp-type 3/4",
            vec![icmp(), t(TypeCode(3, 4))],
        ),
        (
            "-A INPUT -p icmp -m icmp --icmp-type port-unreachable",
            vec![icmp(), t(TypeCode(3, 3))],
        ),
        (
            "-A INPUT -p icmp --icmp-type TOS-host-redirect",
            vec![icmp(), t(TypeCode(5, 3))],
        ),
        (
            "-A INPUT -p icmp -m icmp --icmp-type any",
            vec![icmp(), t(Any)],
        ),
        (
            "-A INPUT -p icmp -m icmp ! --icmp-type 3",
            vec![icmp(), not(Test::Icmp(Type(3)))],
        ),
        ("-A INPUT -p icmp -m icmp", vec![icmp()]),
        (
            "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128",
            vec![icmpv6(), t6(Type(128))],
        ),
        (
            "-A INPUT -p icmpv6 --icmpv6-type neighbor-solicitation",
            vec![icmpv6(), t6(Type(135))],
        ),
        (
            "-A INPUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 1/3",
            vec![icmpv6(), not(Test::Icmpv6(TypeCode(1, 3)))],
        ),
    ]);
    // Every name iptables lists.
    for (name, ty, code) in ICMP_TYPES {
        let want = code.map_or(Type(*ty), |c| TypeCode(*ty, c));
        assert_eq!(parse_icmp_type(name, false), Ok(want), "{name}");
    }
    for (name, ty, code) in ICMPV6_TYPES {
        let want = code.map_or(Type(*ty), |c| TypeCode(*ty, c));
        assert_eq!(parse_icmp_type(name, true), Ok(want), "{name}");
    }
}

#[test]
fn tcp_flags_and_syn() {
    check_conds(&[
        (
            "-A INPUT -p tcp --syn",
            vec![tcp(), yes(Test::TcpFlags(SYN_ONLY))],
        ),
        (
            "-A INPUT -p tcp ! --syn",
            vec![tcp(), not(Test::TcpFlags(SYN_ONLY))],
        ),
        // What iptables-save prints for --syn.
        (
            "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN",
            vec![tcp(), yes(Test::TcpFlags(SYN_ONLY))],
        ),
        (
            "-A INPUT -p tcp --tcp-flags ALL NONE",
            vec![tcp(), yes(Test::TcpFlags(TcpFlags { mask: 0x3f, set: 0 }))],
        ),
        (
            "-A INPUT -p tcp -m tcp ! --tcp-flags SYN,ACK SYN,ACK",
            vec![
                tcp(),
                not(Test::TcpFlags(TcpFlags {
                    mask: 0x12,
                    set: 0x12,
                })),
            ],
        ),
    ]);
}

#[test]
fn address_ranges() {
    let r = |s| parse_addr_range(s).unwrap();
    check_conds(&[
        (
            "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.50",
            vec![yes(Test::SrcRange(r("10.0.0.1-10.0.0.50")))],
        ),
        (
            "-A INPUT -m iprange ! --dst-range 10.1.0.1-10.1.0.9",
            vec![not(Test::DstRange(r("10.1.0.1-10.1.0.9")))],
        ),
        (
            "-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::ff ! --dst-range 2001:db8::1-2001:db8::2",
            vec![
                yes(Test::SrcRange(r("2001:db8::1-2001:db8::ff"))),
                not(Test::DstRange(r("2001:db8::1-2001:db8::2"))),
            ],
        ),
    ]);
}

#[test]
fn limits_with_every_unit_spelling() {
    let l = |count, per, burst| yes(Test::Limit(Limit { count, per, burst }));
    use RateUnit::*;
    check_conds(&[
        ("-A INPUT -m limit", vec![l(3, Hour, 5)]),
        (
            "-A INPUT -m limit --limit 5/min --limit-burst 10",
            vec![l(5, Minute, 10)],
        ),
        ("-A INPUT -m limit --limit 2/second", vec![l(2, Second, 5)]),
        ("-A INPUT -m limit --limit 2/s", vec![l(2, Second, 5)]),
        ("-A INPUT -m limit --limit 100/sec", vec![l(100, Second, 5)]),
        ("-A INPUT -m limit --limit 7", vec![l(7, Second, 5)]),
        ("-A INPUT -m limit --limit 1/d", vec![l(1, Day, 5)]),
        ("-A INPUT -m limit --limit 3/HOUR", vec![l(3, Hour, 5)]),
        ("-A INPUT -m limit --limit-burst 1", vec![l(3, Hour, 1)]),
        // The limit sits where it was loaded.
        (
            "-A INPUT -m limit --limit 1/s -p tcp --dport 22",
            vec![tcp(), l(1, Second, 5), yes(Test::Dport(vec![pr(22, 22)]))],
        ),
    ]);
}

#[test]
fn targets_and_their_options() {
    let target = |line: &str| rule(line).target;
    let nat = |line: &str| rule_in(line, Table::Nat).target;
    assert_eq!(target("-A INPUT -j ACCEPT"), Target::Accept);
    assert_eq!(target("-A INPUT --jump DROP"), Target::Drop);
    assert_eq!(target("-A INPUT -j RETURN"), Target::Return);
    assert_eq!(target("-A INPUT -s 10.0.0.0/8"), Target::Continue);
    assert_eq!(target("-A INPUT -j LAN_IN"), Target::Jump("LAN_IN".into()));
    assert_eq!(target("-A INPUT -j REJECT"), Target::Reject { with: None });
    let reject = |w: &str| Target::Reject {
        with: Some(w.into()),
    };
    assert_eq!(
        target("-A INPUT -j REJECT --reject-with icmp-host-prohibited"),
        reject("icmp-host-prohibited")
    );
    // Aliases become the canonical name once the family is known.
    assert_eq!(
        target("-A INPUT -j REJECT --reject-with host-prohib"),
        reject("icmp-host-prohibited")
    );
    assert_eq!(
        target("-A INPUT -p tcp -j REJECT --reject-with tcp-rst"),
        reject("tcp-reset")
    );
    assert_eq!(
        target("-A INPUT -j REJECT --reject-with icmp6-adm-prohibited"),
        reject("icmp6-adm-prohibited")
    );
    assert_eq!(
        parse_rule_in(
            "-A INPUT -j REJECT --reject-with port-unreach",
            Table::Filter,
            Some(Family::V6)
        )
        .unwrap()[0],
        Stmt::Append {
            chain: "INPUT".into(),
            rule: Rule {
                conds: vec![],
                target: reject("icmp6-port-unreachable"),
                comment: None,
                line: 0,
                text: "-A INPUT -j REJECT --reject-with port-unreach".into(),
            }
        }
    );
    assert_eq!(
        target("-A INPUT -j LOG"),
        Target::Log {
            prefix: None,
            level: None
        }
    );
    assert_eq!(
        target(r#"-A INPUT -j LOG --log-prefix "in: " --log-level info"#),
        Target::Log {
            prefix: Some("in: ".into()),
            level: Some(6)
        }
    );
    assert_eq!(
        target("-A INPUT -j LOG --log-level 7 --log-prefix x"),
        Target::Log {
            prefix: Some("x".into()),
            level: Some(7)
        }
    );
    assert_eq!(
        nat("-A POSTROUTING -o eth0 -j MASQUERADE"),
        Target::Masquerade { ports: None }
    );
    assert_eq!(
        nat("-A POSTROUTING -o eth0 -p tcp -j MASQUERADE --to-ports 1024-2000"),
        Target::Masquerade {
            ports: Some(pr(1024, 2000))
        }
    );
    let to = |s: &str| parse_nat_to(s).unwrap();
    assert_eq!(
        nat("-A POSTROUTING -o eth0 -j SNAT --to-source 203.0.113.5"),
        Target::Snat {
            to: to("203.0.113.5")
        }
    );
    let dnat =
        nat("-A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80");
    assert_eq!(
        dnat,
        Target::Dnat {
            to: to("192.168.1.10:80")
        }
    );
    let Target::Dnat { to: t } = dnat else {
        unreachable!()
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        t,
        NatTo {
            addrs: Some(AddrRange {
                lo: ip("192.168.1.10"),
                hi: ip("192.168.1.10")
            }),
            ports: Some(pr(80, 80))
        }
    );
    assert_eq!(
        to("10.0.0.1-10.0.0.5:8000-8010"),
        NatTo {
            addrs: Some(AddrRange {
                lo: ip("10.0.0.1"),
                hi: ip("10.0.0.5")
            }),
            ports: Some(pr(8000, 8010))
        }
    );
    assert_eq!(
        to("[2001:db8::1]:8080"),
        NatTo {
            addrs: Some(AddrRange {
                lo: ip("2001:db8::1"),
                hi: ip("2001:db8::1")
            }),
            ports: Some(pr(8080, 8080))
        }
    );
    assert_eq!(to("2001:db8::1").ports, None);
    assert_eq!(
        to(":8080"),
        NatTo {
            addrs: None,
            ports: Some(pr(8080, 8080))
        }
    );
    assert_eq!(to("192.168.1.10:80").to_string(), "192.168.1.10:80");
    assert_eq!(to("[2001:db8::1]:80").to_string(), "[2001:db8::1]:80");
}

#[test]
fn commands() {
    let stmts = |line: &str| parse_rule(line, Table::Filter).unwrap();
    assert_eq!(
        stmts("-P INPUT DROP"),
        [Stmt::Policy {
            chain: "INPUT".into(),
            policy: Policy::Drop
        }]
    );
    assert_eq!(
        stmts("--policy FORWARD ACCEPT"),
        [Stmt::Policy {
            chain: "FORWARD".into(),
            policy: Policy::Accept
        }]
    );
    assert_eq!(
        stmts("-N LAN_IN"),
        [Stmt::NewChain {
            chain: "LAN_IN".into()
        }]
    );
    let insert_at = |line: &str| match stmts(line).as_slice() {
        [Stmt::Insert { position, .. }] => *position,
        other => panic!("{other:?}"),
    };
    assert_eq!(insert_at("-I INPUT -j ACCEPT"), 1);
    assert_eq!(insert_at("-I INPUT 3 -j ACCEPT"), 3);
    assert_eq!(insert_at("--insert INPUT 2 -s 10.0.0.1 -j ACCEPT"), 2);
    // A program name, the table, the lock wait and counters are allowed.
    for line in [
        "iptables -t filter -A INPUT -j ACCEPT",
        "ip6tables -w -A INPUT -j ACCEPT",
        "iptables -w 5 --append INPUT -j ACCEPT",
        "-c 10 2000 -A INPUT -j ACCEPT",
    ] {
        assert_eq!(rule(line).target, Target::Accept, "{line}");
    }
    assert_eq!(
        rule_in("-t nat -A POSTROUTING -o eth0 -j MASQUERADE", Table::Nat)
            .conds
            .len(),
        1
    );
}

#[test]
fn address_lists_expand_in_iptables_order() {
    let line = "-A INPUT -s 10.0.0.1,10.0.0.2 -d 10.1.0.1,10.1.0.2 -j DROP";
    let pairs: Vec<(Cidr, Cidr)> = parse_rule(line, Table::Filter)
        .unwrap()
        .into_iter()
        .map(|s| match s {
            Stmt::Append { rule, .. } => match rule.conds.as_slice() {
                [
                    Cond {
                        test: Test::Src(s), ..
                    },
                    Cond {
                        test: Test::Dst(d), ..
                    },
                ] => (*s, *d),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    let c = |s| cidr(s);
    assert_eq!(
        pairs,
        [
            (c("10.0.0.1"), c("10.1.0.1")),
            (c("10.0.0.1"), c("10.1.0.2")),
            (c("10.0.0.2"), c("10.1.0.1")),
            (c("10.0.0.2"), c("10.1.0.2")),
        ]
    );
    // `-I` inserts each at the same position, so they end up reversed,
    // as `iptables -I` leaves them (checked against iptables 1.8.9).
    let mut b = Builder::new(Family::V4);
    for (n, line) in [
        "-A INPUT -j ACCEPT",
        "-I INPUT 1 -s 10.0.0.1,10.0.0.2 -d 10.1.0.1,10.1.0.2 -j DROP",
    ]
    .iter()
    .enumerate()
    {
        for s in parse_rule(line, Table::Filter).unwrap() {
            b.apply(Table::Filter, s, n + 1).unwrap();
        }
    }
    let rs = b.finish().unwrap();
    let order: Vec<String> = rs
        .chain_rules(Table::Filter, Hook::Input)
        .map(|r| {
            r.conds
                .iter()
                .map(|c| c.cond.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        order,
        [
            "-s 10.0.0.2 -d 10.1.0.2",
            "-s 10.0.0.2 -d 10.1.0.1",
            "-s 10.0.0.1 -d 10.1.0.2",
            "-s 10.0.0.1 -d 10.1.0.1",
            "",
        ]
    );
}

#[test]
fn unsupported_and_invalid_rules_are_errors() {
    let filter = Table::Filter;
    let nat = Table::Nat;
    let sixteen = (1..=16)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let too_many = format!("-A INPUT -p tcp -m multiport --dports {sixteen}");
    let cases: &[(&str, Table, &str)] = &[
        // Unsupported matches, options, targets and commands are named.
        (
            "-A INPUT -m mac --mac-source 00:11:22:33:44:55 -j DROP",
            filter,
            "unsupported option --mac-source (match mac)",
        ),
        ("-A INPUT -m mac -j DROP", filter, "unsupported match mac"),
        (
            "-A INPUT -m set --match-set blocked src -j DROP",
            filter,
            "unsupported option --match-set (match set)",
        ),
        (
            "-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
            filter,
            "unsupported target TCPMSS",
        ),
        (
            "-A PREROUTING -p tcp -j REDIRECT --to-ports 3128",
            nat,
            "unsupported target REDIRECT",
        ),
        (
            "-A INPUT -p tcp -m tcp --tcp-option 5 -j DROP",
            filter,
            "unsupported option --tcp-option (match tcp)",
        ),
        (
            "-A INPUT -p tcp -m multiport --ports 80 -j DROP",
            filter,
            "unsupported option --ports (match multiport)",
        ),
        (
            "-A INPUT -m conntrack --ctstatus ASSURED -j ACCEPT",
            filter,
            "unsupported option --ctstatus (match conntrack)",
        ),
        (
            "-A INPUT -m conntrack --ctstate DNAT -j ACCEPT",
            filter,
            "--ctstate DNAT: state DNAT is not supported",
        ),
        (
            "-A INPUT -j LOG --log-uid",
            filter,
            "unsupported option --log-uid (target LOG)",
        ),
        (
            "-A POSTROUTING -o eth0 -j MASQUERADE --random",
            nat,
            "unsupported option --random (target MASQUERADE)",
        ),
        (
            "-A POSTROUTING -o eth0 -j SNAT --to-source 192.0.2.1 --persistent",
            nat,
            "unsupported option --persistent (target SNAT)",
        ),
        ("-A INPUT --foo", filter, "unsupported option --foo"),
        (
            "-A INPUT -j FOO --foo 1",
            filter,
            "unsupported option --foo (after -j FOO)",
        ),
        ("-F INPUT", filter, "unsupported command -F"),
        ("-D INPUT 1", filter, "unsupported command -D"),
        ("-A INPUT -g X", filter, "unsupported option -g (goto)"),
        ("-A INPUT -f -j DROP", filter, "unsupported option -f"),
        (
            "-A INPUT -6 -j DROP",
            filter,
            "unsupported option -6 (import each family's dump on its own)",
        ),
        // What iptables itself refuses.
        (
            "-A INPUT --dport 22 -j ACCEPT",
            filter,
            "unsupported option --dport",
        ),
        (
            "-A INPUT ! -p tcp --dport 22",
            filter,
            "unsupported option --dport",
        ),
        (
            "-A INPUT -m tcp --dport 22 -j ACCEPT",
            filter,
            "-m tcp requires -p tcp",
        ),
        (
            "-A INPUT -p udp -m tcp --dport 22",
            filter,
            "-m tcp requires -p tcp",
        ),
        ("-A INPUT -p tcp -m udp", filter, "-m udp requires -p udp"),
        (
            "-A INPUT -m icmp --icmp-type 8",
            filter,
            "-m icmp requires -p icmp",
        ),
        (
            "-A INPUT -p icmp -m icmp6 --icmpv6-type 128",
            filter,
            "-m icmp6 requires -p ipv6-icmp",
        ),
        (
            "-A INPUT -p icmp -m multiport --dports 1",
            filter,
            "-m multiport requires -p tcp or -p udp",
        ),
        (
            "-A INPUT -p tcp -m multiport",
            filter,
            "-m multiport needs --sports or --dports",
        ),
        (
            "-A INPUT -m state -j ACCEPT",
            filter,
            "-m state needs --state",
        ),
        (
            "-A INPUT -m iprange",
            filter,
            "-m iprange needs --src-range or --dst-range",
        ),
        (
            &too_many,
            filter,
            "--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16: too many ports (multiport \
                 holds 15, a range counts as 2)",
        ),
        (
            "-A INPUT -p tcp --dport ssh -j ACCEPT",
            filter,
            "--dport ssh: port \"ssh\": service names are not resolved; use the number",
        ),
        (
            "-A INPUT -p tcp --dport 22:21",
            filter,
            "--dport 22:21: port range 22:21 is reversed",
        ),
        (
            "-A INPUT -p tcp --dport 70000",
            filter,
            "--dport 70000: port 70000 is out of range (0-65535)",
        ),
        (
            "-A INPUT -s example.com -j DROP",
            filter,
            "-s example.com: \"example.com\" is not an address (host names are not resolved)",
        ),
        (
            "-A INPUT -s 10.0.0.0/33",
            filter,
            "-s 10.0.0.0/33: prefix length 33 is out of range (0-32)",
        ),
        (
            "-A INPUT -s 10.0.0.0/255.0.255.0",
            filter,
            "-s 10.0.0.0/255.0.255.0: mask 255.0.255.0 is not contiguous",
        ),
        ("-A INPUT -p tcp -p udp", filter, "-p given twice"),
        (
            "-A INPUT -s 10.0.0.1 --source 10.0.0.2",
            filter,
            "--source given twice",
        ),
        (
            "-A INPUT -p tcp --dport ! 22 -j ACCEPT",
            filter,
            "\"--dport ! VALUE\" is the old negation syntax; write \"! --dport VALUE\"",
        ),
        (
            "-A INPUT -s ! 10.0.0.1",
            filter,
            "\"-s ! VALUE\" is the old negation syntax; write \"! -s VALUE\"",
        ),
        ("-A INPUT ! -m tcp", filter, "! cannot be used with -m"),
        ("-A INPUT ! -j DROP", filter, "! cannot be used with -j"),
        (
            "-A INPUT -m limit ! --limit 5/s",
            filter,
            "! cannot be used with --limit",
        ),
        (
            "-A INPUT -m comment ! --comment x",
            filter,
            "! cannot be used with --comment",
        ),
        (
            "-A INPUT -j REJECT ! --reject-with tcp-reset",
            filter,
            "! cannot be used with --reject-with",
        ),
        ("-A INPUT ! ! -s 10.0.0.1", filter, "! given twice"),
        ("-A INPUT -s 10.0.0.1 !", filter, "! at the end of the line"),
        ("-A INPUT ! -p all", filter, "! -p all would never match"),
        ("-A INPUT ! -i +", filter, "! -i + would never match"),
        (
            "-A INPUT ! -s 10.0.0.1,10.0.0.2",
            filter,
            "! cannot be used with several source or destination addresses",
        ),
        (
            "-A INPUT -s 10.0.0.1,10.0.0.2 ! -d 10.1.0.1",
            filter,
            "! cannot be used with several source or destination addresses",
        ),
        (
            "-A INPUT -p tcp --syn --tcp-flags SYN SYN",
            filter,
            "only one of --syn and --tcp-flags is allowed",
        ),
        (
            "-A INPUT -p tcp --tcp-flags SYN,BOGUS SYN",
            filter,
            "--tcp-flags SYN,BOGUS: unknown TCP flag \"BOGUS\"",
        ),
        (
            "-A INPUT -p tcp --dport 22 --dport 23",
            filter,
            "--dport given twice in one tcp match",
        ),
        ("-A INPUT -j DROP -j ACCEPT", filter, "-j given twice"),
        ("-A INPUT -j", filter, "-j needs a value"),
        (
            "-A INPUT -j REJECT --reject-with tcp-reset",
            filter,
            "--reject-with tcp-reset requires -p tcp",
        ),
        (
            "-A INPUT -j REJECT --reject-with nonsense",
            filter,
            "--reject-with nonsense: unknown reject type",
        ),
        (
            "-A INPUT -j LOG --log-level 9",
            filter,
            "--log-level 9: unknown log level \"9\" (0-7 or a syslog name)",
        ),
        (
            r#"-A INPUT -j LOG --log-prefix "abcdefghijklmnopqrstuvwxyz1234""#,
            filter,
            "--log-prefix abcdefghijklmnopqrstuvwxyz1234: longer than 29 bytes",
        ),
        (
            "-A INPUT -j MASQUERADE",
            filter,
            "-j MASQUERADE is only valid in the nat table",
        ),
        (
            "-A INPUT -j DNAT --to-destination 10.0.0.1",
            filter,
            "-j DNAT is only valid in the nat table",
        ),
        (
            "-A POSTROUTING -j DROP",
            nat,
            "-j DROP is not allowed in the nat table (it is not for filtering)",
        ),
        (
            "-A POSTROUTING -j REJECT",
            nat,
            "-j REJECT is not allowed in the nat table (it is not for filtering)",
        ),
        (
            "-A PREROUTING -j DNAT",
            nat,
            "-j DNAT needs --to-destination",
        ),
        ("-A POSTROUTING -j SNAT", nat, "-j SNAT needs --to-source"),
        (
            "-A PREROUTING -j DNAT --to-destination 10.0.0.1:80",
            nat,
            "NAT to a port needs -p tcp or -p udp",
        ),
        (
            "-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:80/8080",
            nat,
            "--to-destination 10.0.0.1:80/8080: the /BASEPORT form is not supported",
        ),
        (
            "-A INPUT -s 10.0.0.1 -d 2001:db8::1",
            filter,
            "-s 10.0.0.1 is ipv4 but -d 2001:db8::1 is ipv6",
        ),
        (
            "-A INPUT -s 2001:db8::1 -p icmp",
            filter,
            "-s 2001:db8::1 is ipv6 but -p icmp is ipv4",
        ),
        (
            "-A INPUT -t nat -j ACCEPT",
            filter,
            "-t nat: this line is read for table filter",
        ),
        (
            "-j ACCEPT",
            filter,
            "no command (expected -A, -I, -P or -N)",
        ),
        (
            "-A INPUT -A OUTPUT",
            filter,
            "-A: only one command per line",
        ),
        (
            "-P INPUT RETURN",
            filter,
            "policy RETURN is not supported (ACCEPT or DROP)",
        ),
        (
            "-P INPUT DROP -p tcp",
            filter,
            "-P takes only a chain and a policy",
        ),
        ("-N X -j ACCEPT", filter, "-N takes only a chain name"),
        (
            "-I INPUT 0 -j ACCEPT",
            filter,
            "invalid rule position 0 (counting from 1)",
        ),
        (
            "-A INPUT -m iprange --src-range 10.0.0.9-10.0.0.1",
            filter,
            "--src-range 10.0.0.9-10.0.0.1: the range is reversed",
        ),
        (
            "-A INPUT -m limit --limit 5/week",
            filter,
            "--limit 5/week: unknown unit \"week\" (second, minute, hour or day)",
        ),
        (
            "-A INPUT -m limit --limit-burst 0",
            filter,
            "--limit-burst 0: the burst must be 1-10000",
        ),
        (
            r#"-A INPUT -m comment --comment "open"#,
            filter,
            "unterminated quote (\")",
        ),
        (
            "-A INPUT -i abcdefghijklmnop",
            filter,
            "-i: interface name \"abcdefghijklmnop\" must be 1-15 bytes",
        ),
        ("-A INPUT foo", filter, "unexpected argument \"foo\""),
        (
            "-A INPUT -p icmp --icmp-type bogus",
            filter,
            "--icmp-type bogus: unknown ICMP type \"bogus\"",
        ),
        (
            "-A INPUT -p icmp --icmp-type 300",
            filter,
            "--icmp-type 300: unknown ICMP type \"300\"",
        ),
        (
            "-A INPUT -p 256",
            filter,
            "-p: protocol 256 is out of range (0-255)",
        ),
        (
            "-A INPUT -p bogus",
            filter,
            "-p: unknown protocol \"bogus\" (use its number)",
        ),
    ];
    for (line, table, want) in cases {
        assert_eq!(error_in(line, *table), *want, "{line}");
    }
}
