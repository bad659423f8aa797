use std::net::Ipv4Addr;

use firewall_common::{IPPROTO_TCP, IPPROTO_UDP};

use super::*;
use crate::{
    config::{test_support::*, *},
    syntax::*,
};

#[test]
fn bad_role() {
    assert_err(
        "[[interface]]\nname = \"eth0\"\nrole = \"dmz\"\n",
        &["fw.toml:3: interface[1].role: unknown value \"dmz\" (expected lan or wan)"],
    );
}

#[test]
fn duplicate_interface() {
    assert_err(
        &with_ifaces("[[interface]]\nname = \"eth0\"\nrole = \"lan\"\n"),
        &["fw.toml:5: interface[2].name: duplicate interface \"eth0\" (first at line 2)"],
    );
}

#[test]
fn interface_name_rules() {
    assert_err(
        "[[interface]]\nname = \"abcdefghijklmnop\"\nrole = \"lan\"\n",
        &["fw.toml:2: interface[1].name: ", "must be 1-15 bytes"],
    );
    assert_err(
        "[[interface]]\nname = \"\"\nrole = \"lan\"\n",
        &["fw.toml:2: interface[1].name: "],
    );
    assert_err(
        "[[interface]]\nrole = \"lan\"\n",
        &["fw.toml:1: interface[1].name: missing"],
    );
    assert_err(
        "xdp_mode = \"auto\"\n",
        &["fw.toml:1: interface: at least one"],
    );
}

const NAT_SAMPLE: &str = r#"[[interface]]
name = "eth1"
role = "lan"

[[interface]]
name = "eth0"
role = "wan"
masquerade = true
nat_ports = "20000-29999"

[[interface]]
name = "eth2"
role = "wan"
snat = "203.0.113.5"
masquerade = false

[[interface]]
name = "ppp0"
role = "wan"
masquerade = true

[[port_forward]]
proto = "tcp"
port = 8080
to = "192.168.1.10:80"
comment = "web"

[[port_forward]]
proto = "udp"
port = "5000-5100"
to = "10.0.0.5"

[[port_forward]]
proto = "udp"
port = "6000-6002"
to = "10.0.0.5:7000"

[[port_forward]]
proto = "tcp"
port = "22"
to = "192.168.1.11"

[[port_forward]]
proto = "tcp"
port = 8081
to = "192.168.1.10:65535"
"#;

#[test]
fn nat_sample_parses() {
    let c = parse(NAT_SAMPLE, "fw.toml").unwrap();
    let nat: Vec<_> = c
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.nat, i.nat_ports))
        .collect();
    assert_eq!(
        nat,
        vec![
            ("eth1", None, DEFAULT_NAT_PORTS),
            (
                "eth0",
                Some(Nat::Masquerade),
                PortRange {
                    lo: 20000,
                    hi: 29999
                }
            ),
            (
                "eth2",
                Some(Nat::Snat(Ipv4Addr::new(203, 0, 113, 5))),
                DEFAULT_NAT_PORTS
            ),
            ("ppp0", Some(Nat::Masquerade), DEFAULT_NAT_PORTS),
        ]
    );
    assert_eq!(
        DEFAULT_NAT_PORTS,
        PortRange {
            lo: 1024,
            hi: 65535
        }
    );
    assert_eq!(Nat::Masquerade.to_string(), "masquerade");
    assert_eq!(
        Nat::Snat(Ipv4Addr::new(203, 0, 113, 5)).to_string(),
        "snat 203.0.113.5"
    );

    let f = &c.port_forwards;
    assert_eq!(f.len(), 5);
    assert_eq!(
        f[0],
        PortForward {
            proto: IPPROTO_TCP,
            ports: PortRange { lo: 8080, hi: 8080 },
            to_addr: Ipv4Addr::new(192, 168, 1, 10),
            to_port: Some(80),
            comment: Some("web".into()),
            line: 22,
            index: 1,
        }
    );
    assert_eq!(f[0].mappings().collect::<Vec<_>>(), vec![(8080, 80)]);
    assert_eq!(f[0].summary(), "tcp 8080 -> 192.168.1.10:80 /* web */");

    // A range without a target port keeps every port.
    assert_eq!(f[1].proto, IPPROTO_UDP);
    assert_eq!(f[1].ports, PortRange { lo: 5000, hi: 5100 });
    assert_eq!(f[1].to_addr, Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(f[1].to_port, None);
    assert_eq!(f[1].comment, None);
    assert_eq!((f[1].line, f[1].index), (28, 2));
    let m: Vec<_> = f[1].mappings().collect();
    assert_eq!(m.len(), 101);
    assert_eq!(m[0], (5000, 5000));
    assert_eq!(m[100], (5100, 5100));
    assert!(m.iter().all(|(a, b)| a == b));
    assert_eq!(f[1].summary(), "udp 5000-5100 -> 10.0.0.5 (ports kept)");

    // A range with a target port maps onto consecutive ports.
    assert_eq!(f[2].to_port, Some(7000));
    assert_eq!(
        f[2].mappings().collect::<Vec<_>>(),
        vec![(6000, 7000), (6001, 7001), (6002, 7002)]
    );
    assert_eq!(f[2].summary(), "udp 6000-6002 -> 10.0.0.5:7000-7002");

    // A single port given as a string, kept.
    assert_eq!(f[3].ports, PortRange { lo: 22, hi: 22 });
    assert_eq!(f[3].mappings().collect::<Vec<_>>(), vec![(22, 22)]);
    assert_eq!(f[3].summary(), "tcp 22 -> 192.168.1.11 (ports kept)");

    // The last target port may be 65535.
    assert_eq!(f[4].mappings().collect::<Vec<_>>(), vec![(8081, 65535)]);
    assert_eq!(f[4].index, 5);
}

#[test]
fn nat_on_lan_interface() {
    assert_err(
        "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\nmasquerade = true\n",
        &[
            "fw.toml:4: interface[1].masquerade: NAT is only done on wan interfaces, \
               and \"eth1\" has role lan",
        ],
    );
    assert_err(
        &with_ifaces("[[interface]]\nname = \"eth1\"\nsnat = \"10.0.0.1\"\nrole = \"lan\"\n"),
        &["fw.toml:6: interface[2].snat: NAT is only done on wan interfaces"],
    );
}

#[test]
fn masquerade_and_snat() {
    assert_err(
        &format!("{IFACES}masquerade = true\nsnat = \"203.0.113.5\"\n"),
        &["fw.toml:5: interface[1].snat: cannot be combined with masquerade = true (line 4)"],
    );
    assert_err(
        &format!("{IFACES}masquerade = \"yes\"\n"),
        &["fw.toml:4: interface[1].masquerade: expected true or false, found string"],
    );
}

#[test]
fn snat_not_ipv4() {
    assert_err(
        &format!("{IFACES}snat = \"2001:db8::1\"\n"),
        &[
            "fw.toml:4: interface[1].snat: 2001:db8::1: IPv6 NAT is not supported; \
               IPv6 stays stateful but untranslated",
        ],
    );
    assert_err(
        &format!("{IFACES}snat = \"203.0.113.0/24\"\n"),
        &["fw.toml:4: interface[1].snat: \"203.0.113.0/24\" is not an IPv4 address"],
    );
    assert_err(
        &format!("{IFACES}snat = \"0.0.0.0\"\n"),
        &["fw.toml:4: interface[1].snat: 0.0.0.0 is the unspecified address"],
    );
    assert_err(
        &format!("{IFACES}snat = 3405803781\n"),
        &["fw.toml:4: interface[1].snat: expected a string, found integer"],
    );
}

#[test]
fn bad_nat_ports() {
    assert_err(
        &format!("{IFACES}masquerade = true\nnat_ports = \"60000-50000\"\n"),
        &["fw.toml:5: interface[1].nat_ports: port range 60000-50000 is reversed"],
    );
    assert_err(
        &format!("{IFACES}masquerade = true\nnat_ports = \"0-1000\"\n"),
        &["fw.toml:5: interface[1].nat_ports: 0-1000 includes port 0"],
    );
    assert_err(
        &format!("{IFACES}masquerade = true\nnat_ports = 0\n"),
        &["fw.toml:5: interface[1].nat_ports: 0 includes port 0"],
    );
    assert_err(
        &format!("{IFACES}masquerade = true\nnat_ports = \"1024-70000\"\n"),
        &["fw.toml:5: interface[1].nat_ports: port 70000 is out of range"],
    );
    // A single port is a (small) range.
    let c = parse(
        &format!("{IFACES}masquerade = true\nnat_ports = 4000\n"),
        "fw.toml",
    )
    .unwrap();
    assert_eq!(c.interfaces[0].nat_ports, PortRange { lo: 4000, hi: 4000 });
}
