//! BPF_PROG_TEST_RUN tests of the compiled rule tables: verdicts of large
//! generated rulesets against the ordered-list reference, REJECT's answers
//! byte by byte, LOG events, `-m limit`, and counters across a reload.
//!
//! Rules are installed with `firewall::ruleset::install`, the path the
//! daemon and `firewall reload` use.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use firewall_common::{
    Chain, CtState, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    RuleAction,
    csum::{checksum, sum},
    rule::{
        MatchInput,
        model::{Cond, LimitSpec, MatchRule, Prefix, RejectWith, TcpFlagsSpec, reference},
    },
    stats::Counter::*,
    tcp::{TCP_ACK, TCP_RST, TCP_SYN},
    testing::Rng,
};

const ACCEPT: u8 = RuleAction::Accept as u8;
const DROP: u8 = RuleAction::Drop as u8;
/// INPUT and FORWARD drop, OUTPUT accepts.
const POLICY: [u8; 4] = [DROP, DROP, ACCEPT, DROP];

fn bytes16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut o = [0; 16];
            o[..4].copy_from_slice(&v.octets());
            o
        }
        IpAddr::V6(v) => v.octets(),
    }
}

fn reject_tcp(port: u16) -> MatchRule {
    let mut r = MatchRule::new(Chain::Input, RuleAction::Reject);
    r.proto.push(Cond::is(IPPROTO_TCP));
    r.dport.push(Cond::is((port, port)));
    r.reject = RejectWith::TcpReset;
    r
}

fn reject_udp(port: u16) -> MatchRule {
    let mut r = MatchRule::new(Chain::Input, RuleAction::Reject);
    r.proto.push(Cond::is(IPPROTO_UDP));
    r.dport.push(Cond::is((port, port)));
    r
}

/// Pseudo-header sum for a transport checksum.
fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut acc = sum(src, 0);
    acc = sum(dst, acc);
    sum(&[0, proto, (len >> 8) as u8, len as u8], acc)
}

/// The L3 offset and the answer's addresses, after checking the Ethernet
/// header was turned around and the IP header is valid.
fn check_ip(out: &[u8], sent: &[u8], client: IpAddr, server: IpAddr, proto: u8) -> usize {
    assert_eq!(&out[0..6], &sent[6..12], "dst MAC = the sender's");
    assert_eq!(
        &out[6..12],
        &sent[0..6],
        "src MAC = the address it was sent to"
    );
    let l3 = 14;
    match (client, server) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            assert_eq!(out[l3] >> 4, 4);
            assert_eq!(out[l3 + 9], proto);
            assert_eq!(
                &out[l3 + 12..l3 + 16],
                &s.octets(),
                "from the refused destination"
            );
            assert_eq!(&out[l3 + 16..l3 + 20], &c.octets(), "to the sender");
            let tot = u16::from_be_bytes([out[l3 + 2], out[l3 + 3]]) as usize;
            assert_eq!(tot, out.len() - l3, "total length covers the frame");
            assert_eq!(checksum(&out[l3..l3 + 20], 0), 0, "IPv4 header checksum");
            l3 + 20
        }
        (IpAddr::V6(c), IpAddr::V6(s)) => {
            assert_eq!(out[l3] >> 4, 6);
            assert_eq!(out[l3 + 6], proto);
            assert_eq!(&out[l3 + 8..l3 + 24], &s.octets());
            assert_eq!(&out[l3 + 24..l3 + 40], &c.octets());
            let plen = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) as usize;
            assert_eq!(plen, out.len() - l3 - 40);
            l3 + 40
        }
        _ => unreachable!(),
    }
}

#[test]
fn reject_answers_tcp_with_a_reset_and_udp_with_port_unreachable() {
    for (client, server) in [
        ("198.51.100.20:51000", "192.0.2.2:23"),
        ("[2001:db8:1::20]:51000", "[2001:db8:2::2]:23"),
    ] {
        let mut h = Harness::new("");
        h.install(&[reject_tcp(23), reject_udp(53)], POLICY);

        let mut conv = TcpConv::new(client, server);
        let syn = conv.client_sends(TCP_SYN, &[]);
        let (v, out) = h.xdp_frame(h.wan, &syn);
        assert_eq!(v, Verdict::Tx, "a RST goes back out for {server}");
        let (c, s): (SocketAddr, SocketAddr) = (client.parse().unwrap(), server.parse().unwrap());
        let l4 = check_ip(&out, &syn, c.ip(), s.ip(), IPPROTO_TCP);
        assert_eq!(out.len(), l4 + 20, "a bare TCP header");
        let t = &out[l4..];
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 23);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 51000);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 0, "seq 0");
        // The SYN's sequence number (TcpConv starts clients at 1000) + 1.
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 1001);
        assert_eq!(t[13], TCP_RST | TCP_ACK);
        let (sb, cb) = (bytes16(s.ip()), bytes16(c.ip()));
        let n = if s.is_ipv4() { 4 } else { 16 };
        assert_eq!(
            checksum(t, pseudo(&sb[..n], &cb[..n], IPPROTO_TCP, 20)),
            0,
            "TCP checksum"
        );
        h.assert_no_conn(&conv.key());

        // UDP to port 53: ICMP port unreachable quoting the datagram.
        let c53: SocketAddr = SocketAddr::new(c.ip(), 5353);
        let s53: SocketAddr = SocketAddr::new(s.ip(), 53);
        let dgram = udp(c53, s53, b"query");
        let (v, out) = h.xdp_frame(h.wan, &dgram);
        assert_eq!(v, Verdict::Tx);
        let icmp_proto = if s.is_ipv4() {
            IPPROTO_ICMP
        } else {
            IPPROTO_ICMPV6
        };
        let l4 = check_ip(&out, &dgram, c.ip(), s.ip(), icmp_proto);
        let icmp = &out[l4..];
        let quoted = &icmp[8..];
        if s.is_ipv4() {
            assert_eq!((icmp[0], icmp[1]), (3, 3), "port unreachable");
            // The datagram's IP header and 8 bytes of UDP header.
            assert_eq!(quoted, &dgram[14..14 + 28]);
            assert_eq!(checksum(icmp, 0), 0, "ICMP checksum");
        } else {
            assert_eq!((icmp[0], icmp[1]), (1, 4), "port unreachable");
            let n = (dgram.len() - 14) & !3;
            assert_eq!(quoted, &dgram[14..14 + n]);
            assert_eq!(
                checksum(icmp, pseudo(&sb, &cb, IPPROTO_ICMPV6, icmp.len())),
                0,
                "ICMPv6 checksum"
            );
        }
        h.assert_counters(&[(DropReject, 2)]);
        assert_eq!(h.rule_counter(0).packets, 1);
        assert_eq!(h.rule_counter(1).packets, 1);
    }
}

#[test]
fn reject_never_answers_a_reset_or_multicast() {
    let mut h = Harness::new("");
    let mut all = MatchRule::new(Chain::Input, RuleAction::Reject);
    all.proto.push(Cond::is(IPPROTO_UDP));
    h.install(&[all], POLICY);
    let dgram = udp(sa("198.51.100.20:5000"), sa("239.1.2.3:5000"), b"x");
    assert_eq!(h.ingress_wan(&dgram), Verdict::Drop);
    h.assert_counters(&[(DropRejectNoReply, 1)]);
}

/// Input as the datapath builds it, for the reference.
fn input_of(src: SocketAddr, dst: SocketAddr, proto: u8, iif: u32, tcp_flags: u8) -> MatchInput {
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (src.port(), dst.port()),
        // Echo request, code 0.
        _ => ((if src.is_ipv4() { 8u16 } else { 128 }) << 8, 0),
    };
    MatchInput {
        chain: Chain::Input as u8,
        v6: src.is_ipv6(),
        state: CtState::New as u8,
        proto,
        src: bytes16(src.ip()),
        dst: bytes16(dst.ip()),
        iif,
        oif: 0,
        sport,
        dport,
        tcp_flags,
    }
}

const V4_SOURCES: [&str; 4] = ["198.51.100.1", "198.51.100.77", "203.0.113.5", "10.9.8.7"];
const V6_SOURCES: [&str; 3] = ["2001:db8:1::1", "2001:db8:1::99", "fd00::5"];
const PORTS: [u16; 8] = [22, 23, 53, 80, 443, 1024, 8080, 9999];

fn random_rule(rng: &mut Rng, wan: u32, lan: u32) -> MatchRule {
    let action = [
        RuleAction::Accept,
        RuleAction::Drop,
        RuleAction::Accept,
        RuleAction::Log,
    ][rng.below(4) as usize];
    // Mostly INPUT (what the test packets traverse), some other chains.
    let chain = if rng.chance(85) {
        Chain::Input
    } else {
        Chain::Forward
    };
    let mut r = MatchRule::new(chain, action);
    let v6 = rng.chance(40);
    if rng.chance(60) {
        r.family = Some(if v6 { FAMILY_V6 } else { FAMILY_V4 });
        if rng.chance(60) {
            let pool: Vec<IpAddr> = if v6 {
                V6_SOURCES.iter().map(|s| s.parse().unwrap()).collect()
            } else {
                V4_SOURCES.iter().map(|s| s.parse().unwrap()).collect()
            };
            let a = pool[rng.below(pool.len() as u64) as usize];
            let len = if v6 {
                [0u8, 32, 64, 127, 128][rng.below(5) as usize]
            } else {
                [0u8, 8, 16, 24, 31, 32][rng.below(6) as usize]
            };
            r.src.push(Cond {
                negated: rng.chance(25),
                any_of: vec![Prefix::new(bytes16(a), len)],
            });
        }
    }
    match rng.below(4) {
        0 => {}
        1 | 2 => {
            let p = if rng.chance(50) {
                IPPROTO_TCP
            } else {
                IPPROTO_UDP
            };
            r.proto.push(Cond::is(p));
            if rng.chance(70) {
                let n = 1 + rng.below(3) as usize;
                r.dport.push(Cond {
                    negated: rng.chance(20),
                    any_of: (0..n)
                        .map(|_| {
                            let lo = PORTS[rng.below(8) as usize];
                            (lo, if rng.chance(25) { lo + 100 } else { lo })
                        })
                        .collect(),
                });
            }
            if p == IPPROTO_TCP && rng.chance(20) {
                r.tcp_flags = Some(TcpFlagsSpec {
                    mask: TCP_SYN | TCP_ACK,
                    comp: TCP_SYN,
                    negated: rng.chance(50),
                });
            }
        }
        _ => {
            if r.family.is_some() {
                let p = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
                r.proto.push(Cond::is(p));
                if rng.chance(50) {
                    let ty: u16 = if v6 { 128 } else { 8 };
                    let ty = if rng.chance(70) { ty } else { ty + 1 };
                    r.icmp.push(Cond {
                        negated: rng.chance(30),
                        any_of: vec![(ty << 8, ty << 8 | 0xff)],
                    });
                }
            } else {
                r.proto.push(Cond::not(IPPROTO_TCP));
            }
        }
    }
    if rng.chance(20) {
        r.iif.push(Cond {
            negated: rng.chance(40),
            any_of: vec![if rng.chance(50) { wan } else { lan }],
        });
    }
    r
}

/// Large random rulesets through the loaded XDP program agree with the
/// ordered list, rule counters included: every packet is NEW (unique
/// source port), arrives on the WAN (no LAN allowance), and the harness
/// routes nothing, so it traverses INPUT.
#[test]
fn generated_rulesets_give_the_reference_verdicts_through_the_datapath() {
    let mut rng = Rng::xorshift64(0x2545_f491_4f6c_dd1d);
    let mut h = Harness::new("");
    let (wan, lan) = (h.wan, h.lan);
    let mut next_port = 20_000u16;
    let mut decided_by_rule = 0;
    for (round, n) in [50usize, 1000, 3000].into_iter().enumerate() {
        let rules: Vec<MatchRule> = (0..n).map(|_| random_rule(&mut rng, wan, lan)).collect();
        let installed = h.install(&rules, POLICY);
        assert_eq!(installed.rules as usize, n);
        let counts = |h: &Harness| -> Vec<u64> {
            let (_, live) = firewall::ruleset::live(&h.maps).expect("live ruleset");
            live.iter().map(|r| r.packets).collect()
        };
        let before = counts(&h);
        let mut expected_hits = vec![0u64; n];
        for _ in 0..250 {
            let v6 = rng.chance(40);
            let src_ip: IpAddr = if v6 {
                V6_SOURCES[rng.below(3) as usize].parse().unwrap()
            } else {
                V4_SOURCES[rng.below(4) as usize].parse().unwrap()
            };
            let dst_ip: IpAddr = if v6 {
                "2001:db8:2::2".parse().unwrap()
            } else {
                "192.0.2.2".parse().unwrap()
            };
            next_port += 1;
            let src = SocketAddr::new(src_ip, next_port);
            let dst = SocketAddr::new(dst_ip, PORTS[rng.below(8) as usize]);
            let (proto, frame) = match rng.below(3) {
                0 => {
                    let mut c = TcpConv::new(&src.to_string(), &dst.to_string());
                    (IPPROTO_TCP, c.client_sends(TCP_SYN, &[]))
                }
                1 => (IPPROTO_UDP, udp(src, dst, b"probe")),
                _ => (
                    if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP },
                    echo(src_ip, dst_ip, true, next_port, 1),
                ),
            };
            let input = input_of(
                src,
                dst,
                proto,
                wan,
                if proto == IPPROTO_TCP { TCP_SYN } else { 0 },
            );
            let want = reference(&rules, &input);
            for &i in &want.logged {
                expected_hits[i] += 1;
            }
            let expect = match want.decided_by {
                Some(i) => {
                    expected_hits[i] += 1;
                    decided_by_rule += 1;
                    if rules[i].action == RuleAction::Accept {
                        Verdict::Pass
                    } else {
                        Verdict::Drop
                    }
                }
                None => Verdict::Drop,
            };
            let got = h.ingress_wan(&frame);
            assert_eq!(
                got, expect,
                "round {round}: {input:?} (reference: {want:?})"
            );
            assert_eq!(
                h.log_events().len(),
                want.logged.len(),
                "LOG events for {input:?}"
            );
        }
        let after = counts(&h);
        for i in 0..n {
            assert_eq!(
                after[i] - before[i],
                expected_hits[i],
                "round {round}: rule {i} counter"
            );
        }
    }
    assert!(
        decided_by_rule > 200,
        "only {decided_by_rule} packets met a rule"
    );
}

#[test]
fn log_events_carry_the_packet_and_the_walk_goes_on() {
    let mut h = Harness::new("");
    let mut log = MatchRule::new(Chain::Input, RuleAction::Log);
    log.proto.push(Cond::is(IPPROTO_TCP));
    log.log_prefix[..7].copy_from_slice(b"ssh in ");
    log.log_level = 6;
    let mut ssh = MatchRule::new(Chain::Input, RuleAction::Accept);
    ssh.proto.push(Cond::is(IPPROTO_TCP));
    ssh.dport.push(Cond::is((22, 22)));
    h.install(&[log, ssh], POLICY);
    let mut conv = TcpConv::new("198.51.100.20:40000", "192.0.2.2:22");
    let syn = conv.client_sends(TCP_SYN, &[]);
    assert_eq!(
        h.ingress_wan(&syn),
        Verdict::Pass,
        "LOG does not end the walk"
    );
    let events = h.log_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        &firewall_common::rule::prefix_bytes(&e.prefix)[..8],
        b"ssh in \0"
    );
    assert_eq!((e.log_level, e.iif, e.proto), (6, h.wan, IPPROTO_TCP));
    assert_eq!((e.sport, e.dport, e.tcp_flags), (40000, 22, TCP_SYN));
    assert_eq!(e.src[0].to_ne_bytes(), [198, 51, 100, 20]);
    assert_eq!(e.l3_len as u64, l3_len(&syn));
    assert_eq!(e.rule & 0x7fff_ffff, 0);
    h.assert_counters(&[(LogEmitted, 1), (AcceptRule, 1), (CtCreated, 1)]);
}

#[test]
fn limit_admits_the_burst_then_falls_through() {
    let mut h = Harness::new("");
    let mut limited = MatchRule::new(Chain::Input, RuleAction::Accept);
    limited.proto.push(Cond::is(IPPROTO_UDP));
    // One per hour, bursts of two: the third datagram is over the rate.
    limited.limit = Some(LimitSpec {
        interval_ns: 3_600_000_000_000,
        burst: 2,
    });
    h.install(&[limited], POLICY);
    for (i, want) in [Verdict::Pass, Verdict::Pass, Verdict::Drop]
        .into_iter()
        .enumerate()
    {
        let d = udp(
            sa(&format!("198.51.100.20:{}", 7000 + i)),
            sa("192.0.2.2:9"),
            b"x",
        );
        assert_eq!(h.ingress_wan(&d), want, "datagram {i}");
    }
    assert_eq!(h.rule_counter(0).packets, 2);
    h.assert_counters(&[
        (AcceptRule, 2),
        (CtCreated, 2),
        (RuleLimited, 1),
        (DropPolicy, 1),
    ]);
}

#[test]
fn reload_swaps_banks_and_keeps_counters_of_unchanged_rules() {
    let mut h = Harness::new("");
    let mut ssh = MatchRule::new(Chain::Input, RuleAction::Accept);
    ssh.proto.push(Cond::is(IPPROTO_TCP));
    ssh.dport.push(Cond::is((22, 22)));
    let mut web = MatchRule::new(Chain::Input, RuleAction::Accept);
    web.proto.push(Cond::is(IPPROTO_TCP));
    web.dport.push(Cond::is((80, 80)));
    let first = h.install(&[ssh.clone(), web.clone()], POLICY);
    for (i, port) in [22u16, 80].into_iter().enumerate() {
        let mut c = TcpConv::new(
            &format!("198.51.100.20:{}", 41000 + i),
            &format!("192.0.2.2:{port}"),
        );
        assert_eq!(h.ingress_wan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    }
    // New ruleset: ssh unchanged (now second), web replaced by 8080.
    let mut alt = web.clone();
    alt.dport = vec![Cond::is((8080, 8080))];
    let second = h.install(&[alt, ssh], POLICY);
    assert_ne!(first.bank, second.bank, "the other bank went live");
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(h.rule_counter(0).packets, 0, "a new rule starts at zero");
    assert_eq!(h.rule_counter(1).packets, 1, "ssh kept its count");
    // Port 80 is no longer open; 8080 is.
    let mut c80 = TcpConv::new("198.51.100.20:42000", "192.0.2.2:80");
    assert_eq!(
        h.ingress_wan(&c80.client_sends(TCP_SYN, &[])),
        Verdict::Drop
    );
    let mut c8080 = TcpConv::new("198.51.100.20:42001", "192.0.2.2:8080");
    assert_eq!(
        h.ingress_wan(&c8080.client_sends(TCP_SYN, &[])),
        Verdict::Pass
    );
    assert_eq!(h.rule_counter(0).packets, 1);
    // A third install reuses the first bank.
    let third = h.install(&[], POLICY);
    assert_eq!(third.bank, first.bank);
    let mut c22 = TcpConv::new("198.51.100.20:42002", "192.0.2.2:22");
    assert_eq!(
        h.ingress_wan(&c22.client_sends(TCP_SYN, &[])),
        Verdict::Drop
    );
    // Nothing is live now, so the next rule takes the lowest slot, which
    // holds the ssh rule's count: it must start at zero all the same.
    h.install(&[web], POLICY);
    assert_eq!(h.rule_counter(0).packets, 0, "a reused slot is zeroed");
}

#[test]
fn a_rule_set_that_does_not_fit_changes_nothing() {
    let mut h = Harness::new("");
    let mut ssh = MatchRule::new(Chain::Input, RuleAction::Accept);
    ssh.proto.push(Cond::is(IPPROTO_TCP));
    ssh.dport.push(Cond::is((22, 22)));
    let before = h.install(&[ssh], POLICY);
    // An address condition without a family cannot be compiled.
    let mut bad = MatchRule::new(Chain::Input, RuleAction::Accept);
    bad.src.push(Cond::is(Prefix::new(
        [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
    )));
    let sources = vec![firewall::ruleset::RuleSource {
        rule: bad,
        text: "bad".into(),
        line: 1,
    }];
    assert!(firewall::ruleset::install(&mut h.maps, &sources, POLICY).is_err());
    let (hdr, live) = firewall::ruleset::live(&h.maps).unwrap();
    assert_eq!((hdr.generation, live.len()), (before.generation, 1));
    let mut c = TcpConv::new("198.51.100.20:43000", "192.0.2.2:22");
    assert_eq!(h.ingress_wan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
}
