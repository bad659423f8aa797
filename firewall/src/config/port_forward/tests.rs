use crate::config::{test_support::*, *};

#[test]
fn forward_range_mapping_arithmetic() {
    let text = with_ifaces(&forward("tcp", "\"5000-5100\"", "10.0.0.5:6000"));
    let c = parse(&text, "fw.toml").unwrap();
    let pf = &c.port_forwards[0];
    let m: Vec<_> = pf.mappings().collect();
    assert_eq!(m.len(), 101);
    assert_eq!(m.first(), Some(&(5000, 6000)));
    assert_eq!(m[50], (5050, 6050));
    assert_eq!(m.last(), Some(&(5100, 6100)));
    assert!(m.iter().all(|&(w, t)| t - w == 1000));
    assert_eq!(pf.summary(), "tcp 5000-5100 -> 10.0.0.5:6000-6100");

    // Right up to the top of the port space.
    let text = with_ifaces(&forward("tcp", "\"5000-5100\"", "10.0.0.5:65435"));
    let c = parse(&text, "fw.toml").unwrap();
    assert_eq!(c.port_forwards[0].mappings().last(), Some((5100, u16::MAX)));

    // Exactly the limit of forwarded ports is fine.
    let text = with_ifaces(&format!(
        "{}{}",
        forward("tcp", "\"1-8192\"", "10.0.0.5"),
        forward("udp", "\"1-8192\"", "10.0.0.5")
    ));
    assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);

    // The same ports on the other protocol do not overlap.
    let text = with_ifaces(&format!(
        "{}{}",
        forward("tcp", "80", "10.0.0.5"),
        forward("udp", "80", "10.0.0.6")
    ));
    assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);
}

#[test]
fn forward_to_not_ipv4() {
    let ipv6 = "IPv6 NAT is not supported; IPv6 stays stateful but untranslated";
    for to in ["2001:db8::5", "[2001:db8::5]:80"] {
        assert_err(
            &with_wan_lan(&forward("tcp", "80", to)),
            &[&format!("fw.toml:10: port_forward[1].to: {to}: {ipv6}")],
        );
    }
    for to in ["web.lan:80", "10.0.0.5:", "10.0.0.5:http", "10.0.0.0/24"] {
        assert_err(
            &with_wan_lan(&forward("tcp", "80", to)),
            &[&format!(
                "fw.toml:10: port_forward[1].to: {to:?} is not an IPv4 address with an \
                     optional :PORT"
            )],
        );
    }
    assert_err(
        &with_wan_lan(&forward("tcp", "80", "10.0.0.5:0")),
        &["fw.toml:10: port_forward[1].to: port 0 is out of range (1-65535)"],
    );
    assert_err(
        &with_wan_lan(&forward("tcp", "80", "10.0.0.5:65536")),
        &["fw.toml:10: port_forward[1].to: port 65536 is out of range (1-65535)"],
    );
    assert_err(
        &with_wan_lan(&forward("tcp", "80", "127.0.0.1:80")),
        &["fw.toml:10: port_forward[1].to: 127.0.0.1 is a loopback address"],
    );
    assert_err(
        &with_wan_lan(&forward("tcp", "80", "255.255.255.255")),
        &["fw.toml:10: port_forward[1].to: 255.255.255.255 is the broadcast address"],
    );
    assert_err(
        &with_wan_lan(&forward("tcp", "80", "224.0.0.1")),
        &["fw.toml:10: port_forward[1].to: 224.0.0.1 is a multicast address"],
    );
}

#[test]
fn forward_target_range_overflows() {
    assert_err(
        &with_wan_lan(&forward("udp", "\"5000-5100\"", "10.0.0.5:65500")),
        &[
            "fw.toml:10: port_forward[1].to: port range 5000-5100 mapped from 65500 \
               would end at 65600, past 65535",
        ],
    );
}

#[test]
fn bad_forward_port() {
    let pf = |port: &str| with_wan_lan(&forward("tcp", port, "10.0.0.5"));
    assert_err(
        &pf("\"9000-8000\""),
        &["fw.toml:9: port_forward[1].port: port range 9000-8000 is reversed"],
    );
    assert_err(
        &pf("0"),
        &["fw.toml:9: port_forward[1].port: port 0 cannot be forwarded"],
    );
    assert_err(
        &pf("\"0-10\""),
        &["fw.toml:9: port_forward[1].port: port 0 cannot be forwarded"],
    );
    assert_err(
        &pf("65536"),
        &["fw.toml:9: port_forward[1].port: port 65536 is out of range"],
    );
    assert_err(
        &pf("\"80,443\""),
        &["fw.toml:9: port_forward[1].port: invalid port range \"80,443\""],
    );
    assert_err(
        &pf("[80]"),
        &["fw.toml:9: port_forward[1].port: expected a port number or \"LO-HI\" string"],
    );
}

#[test]
fn bad_forward_fields() {
    assert_err(
        &with_wan_lan(&forward("icmp", "80", "10.0.0.5")),
        &["fw.toml:8: port_forward[1].proto: unknown value \"icmp\" (expected tcp or udp)"],
    );
    assert_err(
        &with_wan_lan("[[port_forward]]\nport = 80\nto = \"10.0.0.5\"\n"),
        &["fw.toml:7: port_forward[1].proto: missing (required)"],
    );
    assert_err(
        &with_wan_lan("[[port_forward]]\nproto = \"tcp\"\nto = \"10.0.0.5\"\n"),
        &["fw.toml:7: port_forward[1].port: missing (required)"],
    );
    assert_err(
        &with_wan_lan("[[port_forward]]\nproto = \"tcp\"\nport = 80\n"),
        &["fw.toml:7: port_forward[1].to: missing (required)"],
    );
    assert_err(
        &with_wan_lan(&format!(
            "{}comment = 5\n",
            forward("tcp", "80", "10.0.0.5")
        )),
        &["fw.toml:11: port_forward[1].comment: expected a string, found integer"],
    );
    assert_err(
        &with_wan_lan(&format!(
            "{}iif = \"eth0\"\n",
            forward("tcp", "80", "10.0.0.5")
        )),
        &["fw.toml:11: port_forward[1].iif: unknown key"],
    );
}

#[test]
fn overlapping_forwards() {
    let text = with_wan_lan(&format!(
        "{}{}{}",
        forward("tcp", "8080", "10.0.0.5"),
        forward("udp", "\"8000-8100\"", "10.0.0.6"),
        forward("tcp", "\"8000-8100\"", "10.0.0.7")
    ));
    assert_err(
        &text,
        &[
            "fw.toml:17: port_forward[3].port: tcp 8000-8100 overlaps port_forward[1] \
               (tcp 8080, line 7)",
        ],
    );
    // Touching ranges do not overlap; one port more does.
    let text = with_wan_lan(&format!(
        "{}{}",
        forward("udp", "\"5000-5100\"", "10.0.0.5"),
        forward("udp", "\"4000-4999\"", "10.0.0.6")
    ));
    assert_eq!(parse(&text, "fw.toml").unwrap().port_forwards.len(), 2);
    let text = with_wan_lan(&format!(
        "{}{}{}",
        forward("udp", "\"5000-5100\"", "10.0.0.5"),
        forward("udp", "\"6000-6100\"", "10.0.0.5"),
        forward("udp", "\"5100-5999\"", "10.0.0.6")
    ));
    assert_err(
        &text,
        &[
            "fw.toml:17: port_forward[3].port: udp 5100-5999 overlaps port_forward[1] \
               (udp 5000-5100, line 7)",
        ],
    );
    // A range that swallows an earlier one entirely.
    let text = with_wan_lan(&format!(
        "{}{}",
        forward("tcp", "443", "10.0.0.5"),
        forward("tcp", "\"1-1000\"", "10.0.0.6")
    ));
    assert_err(
        &text,
        &[
            "fw.toml:13: port_forward[2].port: tcp 1-1000 overlaps port_forward[1] \
               (tcp 443, line 7)",
        ],
    );
}

#[test]
fn too_many_forwarded_ports() {
    let text = with_wan_lan(&format!(
        "{}{}",
        forward("tcp", "\"1-10000\"", "10.0.0.5"),
        forward("udp", "\"20000-26384\"", "10.0.0.5")
    ));
    assert_err(
        &text,
        &[
            "fw.toml:13: port_forward[2].port: too many forwarded ports: 16385 across \
               port_forward[1-2] (at most 16384)",
        ],
    );
    assert_err(
        &with_wan_lan(&forward("udp", "\"1-65535\"", "10.0.0.5")),
        &["fw.toml:9: port_forward[1].port: too many forwarded ports: 65535"],
    );
}

#[test]
fn forward_without_wan() {
    let text = format!(
        "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n\n{}",
        forward("tcp", "80", "10.0.0.5")
    );
    assert_err(
        &text,
        &["fw.toml:5: port_forward[1]: port forwarding needs an [[interface]] with role wan"],
    );
}
