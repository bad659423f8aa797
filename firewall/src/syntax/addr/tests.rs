use super::*;

#[test]
fn host_bits_are_cleared_for_iptables_and_refused_in_the_config() {
    let cleared = |s| Cidr::parse(s, HostBits::Cleared).map(|c| c.to_string());
    let refused = |s| Cidr::parse(s, HostBits::Refused).map(|c| c.to_string());
    assert_eq!(cleared("10.1.2.3/8"), Ok("10.0.0.0/8".into()));
    assert_eq!(
        refused("10.1.2.3/8"),
        Err("10.1.2.3/8 has host bits set (the network is 10.0.0.0/8)".into())
    );
    for s in [
        "10.0.0.0/8",
        "10.0.0.1",
        "2001:db8::/32",
        "::1/128",
        "0.0.0.0/0",
    ] {
        assert_eq!(cleared(s), refused(s), "{s}");
    }
    // Masks are iptables' syntax only.
    assert_eq!(cleared("10.0.0.0/255.255.0.0"), Ok("10.0.0.0/16".into()));
    assert_eq!(
        refused("10.0.0.0/255.255.0.0"),
        Err("\"10.0.0.0/255.255.0.0\": prefix length must be 0-32".into())
    );
}
