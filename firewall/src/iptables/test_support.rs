//! Helpers the iptables tests share: dumps built from rule lines, their
//! resolution and translation, and a walk of iptables' chains and of the
//! config's rules over probe packets, to show both mean the same.

use std::net::{IpAddr, Ipv4Addr};

use firewall_common::{
    CtState, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, rule::MatchInput,
};

use super::*;
use crate::syntax::{Cidr, Family, IcmpType, Iface, PortRange};

pub(super) const HEAD: &str =
    "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";

/// A filter table with policies DROP, DROP, ACCEPT; `body` starts on
/// line 5.
pub(super) fn filter(body: &str) -> String {
    format!("{HEAD}{body}COMMIT\n")
}

pub(super) fn save(text: &str) -> Ruleset {
    parse_save(text, Family::V4).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

pub(super) fn save_error(text: &str) -> String {
    match parse_save(text, Family::V4) {
        Ok(_) => panic!("expected an error:\n{text}"),
        Err(e) => e.in_file("rules.v4"),
    }
}

/// `(line, conditions, action)` of a chain's resolved rules.
pub(super) fn flat(rs: &Ruleset, table: Table, hook: Hook) -> Vec<(usize, String, String)> {
    rs.chain_rules(table, hook)
        .map(|r| {
            let conds: Vec<String> = r
                .conds
                .iter()
                .map(|c| format!("{}@{}", c.cond, c.line))
                .collect();
            (r.line, conds.join(" "), r.action.to_string())
        })
        .collect()
}

pub(super) fn f(line: usize, conds: &str, action: &str) -> (usize, String, String) {
    (line, conds.into(), action.into())
}
pub(super) fn toml(text: &str) -> (String, crate::config::Config) {
    let rs = save(text);
    let out = to_toml(&rs).unwrap_or_else(|e| panic!("{e}\n{}", e.draft));
    let config = crate::config::parse(&out, "imported").unwrap();
    (out, config)
}

pub(super) fn refused(text: &str) -> ToTomlError {
    match to_toml(&save(text)) {
        Ok(out) => panic!("expected a refusal:\n{out}"),
        Err(e) => e,
    }
}

pub(super) fn items(e: &ToTomlError) -> Vec<String> {
    e.items.iter().map(ToString::to_string).collect()
}

pub(super) fn summaries(c: &crate::config::Config) -> Vec<String> {
    c.rules.iter().map(|r| r.summary()).collect()
}
// -----------------------------------------------------------------------
// Round trips: the config means what the iptables rules meant.

/// What a packet meets at the end of a chain walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Drop,
    Reject(firewall_common::rule::model::RejectWith),
}

/// iptables' meaning of a condition for an IPv4 probe, written from the
/// man page rather than through the config.
fn iptables_holds(c: &Cond, p: &MatchInput, names: &[(String, u32)]) -> bool {
    let name = |ix: u32| {
        names
            .iter()
            .find(|(_, i)| *i == ix)
            .map(|(n, _)| n.as_str())
    };
    let iface = |i: &Iface, ix: u32| {
        name(ix).is_some_and(|n| {
            if i.wildcard {
                n.starts_with(&i.name)
            } else {
                n == i.name
            }
        })
    };
    let addr = |b: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    let host = |b: &[u8; 16]| Cidr {
        addr: addr(b),
        prefix: 32,
    };
    let in_list = |l: &[PortRange], v: u16| l.iter().any(|r| r.lo <= v && v <= r.hi);
    let icmp = |t: &IcmpType, proto: u8| {
        p.proto == proto
            && match *t {
                IcmpType::Any => true,
                IcmpType::Type(x) => p.sport >> 8 == u16::from(x),
                IcmpType::TypeCode(x, code) => p.sport == u16::from(x) << 8 | u16::from(code),
            }
    };
    let hit = match &c.test {
        Test::Proto(x) => p.proto == *x,
        Test::Src(cidr) => cidr.contains(&host(&p.src)),
        Test::Dst(cidr) => cidr.contains(&host(&p.dst)),
        Test::InIface(i) => iface(i, p.iif),
        Test::OutIface(i) => iface(i, p.oif),
        Test::SrcRange(r) => r.lo <= addr(&p.src) && addr(&p.src) <= r.hi,
        Test::DstRange(r) => r.lo <= addr(&p.dst) && addr(&p.dst) <= r.hi,
        Test::Sport(l) => in_list(l, p.sport),
        Test::Dport(l) => in_list(l, p.dport),
        Test::CtState(s) => s.iter().any(|s| *s as u8 == p.state),
        Test::Icmp(t) => icmp(t, IPPROTO_ICMP),
        Test::Icmpv6(t) => icmp(t, IPPROTO_ICMPV6),
        Test::TcpFlags(f) => p.proto == IPPROTO_TCP && p.tcp_flags & f.mask == f.set,
        // The reference counts rates as holding; so does this.
        Test::Limit(_) => true,
    };
    hit != c.negated
}

fn reject_of(with: &Option<String>) -> firewall_common::rule::model::RejectWith {
    match with {
        None => firewall_common::rule::model::RejectWith::PORT_UNREACHABLE,
        Some(w) => crate::syntax::REJECT_WITH
            .iter()
            .find(|(n, _, _)| n == w)
            .map(|&(_, _, r)| r)
            .unwrap_or_else(|| panic!("reject type {w}")),
    }
}

/// iptables' walk of a built-in chain: the verdict and the LOG rules met.
fn iptables_walk(rs: &Ruleset, p: &MatchInput, names: &[(String, u32)]) -> (Verdict, usize) {
    let hook = [Hook::Input, Hook::Forward, Hook::Output][p.chain as usize];
    let mut logged = 0;
    for r in rs.chain_rules(Table::Filter, hook) {
        if !r.conds.iter().all(|c| iptables_holds(&c.cond, p, names)) {
            continue;
        }
        match &r.action {
            Target::Accept => return (Verdict::Accept, logged),
            Target::Drop => return (Verdict::Drop, logged),
            Target::Reject { with } => return (Verdict::Reject(reject_of(with)), logged),
            Target::Log { .. } => logged += 1,
            Target::Continue => {}
            other => panic!("{other} after resolution"),
        }
    }
    match rs.policy(Table::Filter, hook).0 {
        Policy::Accept => (Verdict::Accept, logged),
        Policy::Drop => (Verdict::Drop, logged),
    }
}

/// The firewall's walk over a config's rules (NEW, INVALID and
/// UNTRACKED packets): the first terminal rule, else a lan's default
/// accept, else the policy.
fn config_walk(
    c: &crate::config::Config,
    rules: &[firewall_common::rule::model::MatchRule],
    p: &MatchInput,
    names: &[(String, u32)],
) -> (Verdict, usize) {
    let out = firewall_common::rule::model::reference(rules, p);
    let verdict = match out.decided_by.map(|i| &rules[i]) {
        Some(r) => match r.action {
            firewall_common::RuleAction::Accept => Verdict::Accept,
            firewall_common::RuleAction::Drop => Verdict::Drop,
            firewall_common::RuleAction::Reject => Verdict::Reject(r.reject),
            firewall_common::RuleAction::Log => unreachable!("LOG does not decide"),
        },
        None => {
            let from_lan = c.interfaces.iter().any(|i| {
                i.role == firewall_common::Role::Lan
                    && names.iter().any(|(n, ix)| *n == i.name && *ix == p.iif)
            });
            match c.policy[p.chain as usize] {
                _ if from_lan => Verdict::Accept,
                firewall_common::RuleAction::Accept => Verdict::Accept,
                _ => Verdict::Drop,
            }
        }
    };
    (verdict, out.logged.len())
}

/// Random IPv4 probes in the states rules see, arriving on a configured
/// interface (the firewall sees no other).
fn probes(configured: &[u32], all: &[u32], n: usize) -> Vec<MatchInput> {
    let mut rng = firewall_common::testing::Rng::xorshift64(0x2545_f491_4f6c_dd1d);
    let mut next = move |k: usize| rng.below(k as u64) as usize;
    let addrs: [[u8; 4]; 7] = [
        [10, 0, 0, 1],
        [10, 0, 0, 5],
        [10, 0, 0, 10],
        [10, 1, 2, 3],
        [192, 168, 1, 5],
        [192, 168, 1, 200],
        [203, 0, 113, 7],
    ];
    let v4 = |a: [u8; 4]| {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&a);
        out
    };
    (0..n)
        .map(|_| {
            let chain = next(3) as u8;
            let proto = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][next(4)];
            let ports = [22u16, 23, 53, 80, 123, 443, 8050, 9999];
            let icmp = [8u16 << 8, 3 << 8 | 4, 3 << 8 | 3, 0, 11 << 8];
            let (sport, dport) = match proto {
                IPPROTO_TCP | IPPROTO_UDP => (ports[next(8)], ports[next(8)]),
                IPPROTO_ICMP => (icmp[next(5)], 0),
                _ => (0, 0),
            };
            MatchInput {
                chain,
                v6: false,
                state: [CtState::New, CtState::Invalid, CtState::Untracked][next(3)] as u8,
                proto,
                src: v4(addrs[next(7)]),
                dst: v4(addrs[next(7)]),
                iif: if chain == 2 {
                    0
                } else {
                    configured[next(configured.len())]
                },
                oif: if chain == 0 { 0 } else { all[next(all.len())] },
                sport,
                dport,
                tcp_flags: [0x02u8, 0x12, 0x10, 0x04, 0x01][next(5)],
            }
        })
        .collect()
}

pub(super) const ROUND_TRIP: &str = "*filter\n\
        :INPUT DROP [0:0]\n\
        :FORWARD DROP [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        :LOGDROP - [0:0]\n\
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A INPUT -m conntrack --ctstate INVALID -j DROP\n\
        -A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n\
        -A INPUT ! -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j LOGDROP\n\
        -A INPUT -p tcp -m multiport --dports 22,80,443,8000:8100 -j ACCEPT\n\
        -A INPUT -p icmp -m icmp --icmp-type 8 -m limit --limit 5/sec -j ACCEPT\n\
        -A INPUT -p icmp -m icmp ! --icmp-type 3/4 -j DROP\n\
        -A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j DROP\n\
        -A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT\n\
        -A INPUT -p udp -m udp ! --sport 53 -m iprange ! --dst-range 192.168.1.0-192.168.1.9 -j REJECT --reject-with icmp-admin-prohibited\n\
        -A INPUT -i eth+ -p udp -j LOG --log-prefix \"udp: \"\n\
        -A INPUT ! -p udp -j REJECT\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -i eth1 -o eth0 -j ACCEPT\n\
        -A FORWARD -i eth0 ! -o eth0 -p tcp --syn -j LOGDROP\n\
        -A FORWARD ! -p tcp -o wlan+ -j ACCEPT\n\
        -A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A OUTPUT -o eth0 -p udp -m multiport ! --dports 53,123 -j DROP\n\
        -A OUTPUT -d 203.0.113.0/24 -j DROP\n\
        -A LOGDROP -j LOG --log-prefix \"dropped: \" --log-level 4\n\
        -A LOGDROP -j DROP\n\
        COMMIT\n";

fn host_interfaces() -> Vec<(String, u32)> {
    [
        ("lo", 1),
        ("eth0", 2),
        ("eth1", 3),
        ("eth2", 4),
        ("wlan0", 5),
    ]
    .into_iter()
    .map(|(n, i)| (n.to_string(), i))
    .collect()
}

pub(super) fn assert_same_meaning(rs: &Ruleset, config: &crate::config::Config, text: &str) {
    let names = host_interfaces();
    let rules: Vec<_> = config
        .rules
        .iter()
        .map(|r| r.to_match(&names).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect();
    let configured: Vec<u32> = config
        .interfaces
        .iter()
        .map(|i| {
            names
                .iter()
                .find(|(n, _)| *n == i.name)
                .expect("a host interface")
                .1
        })
        .collect();
    let all: Vec<u32> = names.iter().map(|(_, i)| *i).filter(|&i| i != 1).collect();
    let mut decided = [0usize; 3];
    for p in probes(&configured, &all, 20_000) {
        let want = iptables_walk(rs, &p, &names);
        assert_eq!(
            config_walk(config, &rules, &p, &names),
            want,
            "{p:?}\n{text}"
        );
        decided[match want.0 {
            Verdict::Accept => 0,
            Verdict::Drop => 1,
            Verdict::Reject(_) => 2,
        }] += 1;
    }
    // The probes reach every kind of verdict.
    assert!(decided.iter().all(|&n| n > 500), "{decided:?}");
}
