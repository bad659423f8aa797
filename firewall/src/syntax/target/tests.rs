use super::*;

/// libipt_REJECT's and libip6t_REJECT's names (`iptables -j REJECT -h`),
/// each with its alias.
const V4: &[(&str, &str)] = &[
    ("icmp-net-unreachable", "net-unreach"),
    ("icmp-host-unreachable", "host-unreach"),
    ("icmp-proto-unreachable", "proto-unreach"),
    ("icmp-port-unreachable", "port-unreach"),
    ("icmp-net-prohibited", "net-prohib"),
    ("icmp-host-prohibited", "host-prohib"),
    ("tcp-reset", "tcp-rst"),
    ("icmp-admin-prohibited", "admin-prohib"),
];
const V6: &[(&str, &str)] = &[
    ("icmp6-no-route", "no-route"),
    ("icmp6-adm-prohibited", "adm-prohibited"),
    ("icmp6-addr-unreachable", "addr-unreach"),
    ("icmp6-port-unreachable", "port-unreach"),
    ("tcp-reset", "tcp-rst"),
    ("icmp6-policy-fail", "policy-fail"),
    ("icmp6-reject-route", "reject-route"),
];

#[test]
fn each_family_takes_its_own_reject_names() {
    for (family, names, other) in [(Family::V4, V4, V6), (Family::V6, V6, V4)] {
        for (canonical, alias) in names {
            for name in [canonical, alias] {
                assert_eq!(reject_canonical(name, family), Some(*canonical), "{name}");
            }
        }
        for (canonical, _) in other {
            if !names.iter().any(|(n, _)| n == canonical) {
                assert_eq!(reject_canonical(canonical, family), None, "{canonical}");
            }
        }
    }
    // The config takes every name, an alias meaning IPv4's answer first.
    assert_eq!(reject_name("port-unreach"), Some("icmp-port-unreachable"));
    assert_eq!(reject_name("icmp6-no-route"), Some("icmp6-no-route"));
    assert_eq!(
        REJECT_WITH.len(),
        V4.len() + V6.len() - 1,
        "every name once, tcp-reset shared"
    );
}
