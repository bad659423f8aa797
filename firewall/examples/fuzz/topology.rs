//! The router the fuzzer drives: the harness's namespace (`lan0`
//! 10.0.1.1/24 and fd00:1::1/64, `wan0` 10.0.2.1/24, default routes out of
//! `wan0`, forwarding on), the hosts on either side, and the configs of the
//! phases a run is split into.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One part of a run: a fresh firewall instance with its own config.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub name: &'static str,
    /// Share of the run's packets, in percent.
    pub share: u64,
    pub interfaces: &'static str,
    pub config: &'static str,
    /// Connection table capacity (entries, two per connection).
    pub table: u32,
    /// `wan0` masquerades: the untranslated-source check applies to it.
    pub masquerade: bool,
}

const NAT_INTERFACES: &str = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\
    masquerade = true\nnat_ports = \"20000-20127\"\n\n\
    [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";

/// Four ports to masquerade to: a port taken twice is soon exhausted
/// (`drop_nat_exhausted`).
const FEW_PORTS_INTERFACES: &str = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\
    masquerade = true\nnat_ports = \"20000-20003\"\n\n\
    [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";

const PLAIN_INTERFACES: &str = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\n\
    [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";

/// Port forwards, the FTP helper and a ruleset that touches every action
/// (ACCEPT, DROP, REJECT both ways, LOG, a rate limit) on ports the
/// generator uses.
const NAT_CONFIG: &str = r#"
[[port_forward]]
proto = "tcp"
port = 8080
to = "10.0.1.10:80"

[[port_forward]]
proto = "udp"
port = "5000-5003"
to = "10.0.1.11"

[[helper]]
proto = "tcp"
port = 21
kind = "ftp"

[[rule]]
chain = "input"
proto = "tcp"
dport = 22
action = "accept"

[[rule]]
chain = "forward"
proto = "tcp"
dport = 23
action = "reject"
reject_with = "tcp-reset"

[[rule]]
chain = "input"
proto = "udp"
dport = 53
action = "reject"

[[rule]]
chain = "forward"
proto = "icmp"
action = "log"
log_prefix = "fuzz "

[[rule]]
chain = "forward"
proto = "udp"
dport = 9
action = "drop"

[[rule]]
chain = "input"
proto = "tcp"
dport = 25
limit = "5/second"
action = "accept"
"#;

/// No NAT, no rules: the default policies, with window tracking waived
/// and no mid-stream pickup, the two `[conntrack]` switches.
const PLAIN_CONFIG: &str = "[conntrack]\ntcp_be_liberal = true\ntcp_loose = false\n";

pub const PHASES: [Phase; 3] = [
    Phase {
        name: "nat",
        share: 65,
        interfaces: NAT_INTERFACES,
        config: NAT_CONFIG,
        table: 1024,
        masquerade: true,
    },
    Phase {
        name: "plain",
        share: 25,
        interfaces: PLAIN_INTERFACES,
        config: PLAIN_CONFIG,
        table: 1024,
        masquerade: false,
    },
    // A table small enough to fill (early drop, table-full drops) and few
    // ports to masquerade to.
    Phase {
        name: "small-table",
        share: 10,
        interfaces: FEW_PORTS_INTERFACES,
        config: NAT_CONFIG,
        table: 96,
        masquerade: true,
    },
];

/// `ip` commands after the harness's veth pair exists: the router's
/// addresses and routes, the gateway's and some LAN hosts' neighbours (so
/// the fast path finds them).
pub const ROUTER_IP: &[&str] = &[
    "addr add 10.0.1.1/24 dev lan0",
    "addr add 10.0.2.1/24 dev wan0",
    "addr add fd00:1::1/64 dev lan0 nodad",
    "link set lan0 up",
    "link set wan0 up",
    "route add default via 10.0.2.254 dev wan0",
    "-6 route add default dev wan0",
    "neigh add 10.0.2.254 lladdr 02:00:00:00:00:fe dev wan0",
    "neigh add 10.0.1.5 lladdr 02:00:00:00:01:05 dev lan0",
    "neigh add 10.0.1.10 lladdr 02:00:00:00:01:0a dev lan0",
    "neigh add fd00:1::5 lladdr 02:00:00:00:01:05 dev lan0",
    // Destinations the stack will not forward to: `pass_unroutable`, the
    // fast path's `no_route`.
    "route add unreachable 198.51.100.0/25",
    "route add blackhole 198.51.100.128/25",
];

pub const SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.forwarding", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
];

pub const ROUTER_LAN_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const ROUTER_WAN_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
pub const ROUTER_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);

/// Whether `a` is on the LAN side (the `lan0` subnets).
pub fn is_lan(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.octets()[..3] == [10, 0, 1],
        IpAddr::V6(v6) => v6.segments()[..4] == [0xfd00, 1, 0, 0],
    }
}

/// Whether `a` is one of the router's own addresses.
pub fn is_router(a: IpAddr) -> bool {
    a == IpAddr::V4(ROUTER_LAN_V4)
        || a == IpAddr::V4(ROUTER_WAN_V4)
        || a == IpAddr::V6(ROUTER_LAN_V6)
}

/// Whether the stack would refuse to forward to `a` (the unreachable and
/// blackhole routes above).
pub fn is_unroutable(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100])
}

/// A host beyond the unreachable and blackhole routes.
pub fn unroutable_v4(n: u8) -> [u8; 4] {
    [198, 51, 100, n]
}

/// A LAN host: mostly the few the flows reuse, sometimes any.
pub fn lan_v4(n: u8) -> [u8; 4] {
    [10, 0, 1, n]
}

pub fn wan_v4(n: u8) -> [u8; 4] {
    [203, 0, 113, n]
}

pub fn lan_v6(n: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xfd, 0x00]);
    a[3] = 1;
    a[15] = n;
    a
}

pub fn wan_v6(n: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[15] = n;
    a
}
