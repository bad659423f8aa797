//! The router topology with one more hop: the WAN side is a router of its own, and the
//! far host sits behind it, so ICMP errors can come from a router on the path.
//!
//! ```text
//! [lan] eth0 ──veth── lan0 [rtr] wan0 ──veth── eth0 [wanr] eth1 ──veth── eth0 [far]
//! 10.0.1.2     10.0.1.1          10.0.2.1     10.0.2.2      10.0.4.1     10.0.4.2
//! fd00:1::2    fd00:1::1         fd00:2::1    fd00:2::2     fd00:4::1    fd00:4::2
//! ```
//!
//! `rtr` (where the firewall runs) routes 10.0.4.0/24 and fd00:4::/64 to `wanr`, which
//! forwards. `wanr` has no IPv4 route back to 10.0.1.0/24: the LAN reaches the far side
//! only through masquerade on `wan0`. IPv6 is never translated, so `wanr` routes
//! fd00:1::/64 back to `rtr`. The far host's default routes point at `wanr`.

use anyhow::{Context as _, Result};

use crate::{
    DualAddr, Netns,
    topology::{configure, namespace, wait_until_ready},
    unique_prefix,
};

/// The LAN host.
pub const LAN_HOST: DualAddr = crate::topology::LAN_HOST;
/// The router's `lan0`.
pub const ROUTER_LAN: DualAddr = crate::topology::ROUTER_LAN;
/// The router's `wan0`.
pub const ROUTER_WAN: DualAddr = crate::topology::ROUTER_WAN;
/// The WAN router's `eth0`, facing the router: the address its ICMP errors to the LAN
/// come from.
pub const WAN_ROUTER: DualAddr = crate::topology::WAN_HOST;
/// The WAN router's `eth1`, facing the far host.
pub const WAN_ROUTER_FAR: DualAddr = DualAddr {
    v4: "10.0.4.1",
    v6: "fd00:4::1",
};
/// The far host, two hops beyond the router.
pub const FAR_HOST: DualAddr = DualAddr {
    v4: "10.0.4.2",
    v6: "fd00:4::2",
};

/// LAN host, router (the firewall's), WAN router and far host.
pub struct Wan2Topology {
    pub prefix: String,
    pub lan: Netns,
    pub rtr: Netns,
    /// The WAN router: forwards between `eth0` (towards `rtr`) and `eth1` (towards `far`).
    pub wanr: Netns,
    pub far: Netns,
}

impl Wan2Topology {
    /// Makes the WAN router forward at most `mtu` bytes to the far host, as a smaller
    /// link beyond it would: a host route with an MTU, which forwarding honours
    /// (`ip_dst_mtu_maybe_forward`, `ip6_dst_mtu_maybe_forward`). Packets that do not
    /// fit get "fragmentation needed" / "packet too big" from [`WAN_ROUTER`].
    ///
    /// The far host's own interface keeps 1500 bytes, so it advertises the full TCP
    /// MSS and nothing but path MTU discovery makes a LAN sender's segments fit.
    pub fn limit_far_mtu(&self, mtu: u32) -> Result<()> {
        self.wanr.ip(&format!(
            "route add {}/32 dev eth1 src {} mtu {mtu}",
            FAR_HOST.v4, WAN_ROUTER_FAR.v4
        ))?;
        self.wanr.ip(&format!(
            "-6 route add {}/128 dev eth1 mtu {mtu}",
            FAR_HOST.v6
        ))?;
        Ok(())
    }
}

/// Builds the topology; `tag` names the test file, as for [`unique_prefix`].
pub fn wan2(tag: &str) -> Result<Wan2Topology> {
    let prefix = unique_prefix(tag);
    let topology = Wan2Topology {
        lan: namespace(&format!("{prefix}-lan"))?,
        rtr: namespace(&format!("{prefix}-rtr"))?,
        wanr: namespace(&format!("{prefix}-wanr"))?,
        far: namespace(&format!("{prefix}-far"))?,
        prefix,
    };
    let Wan2Topology {
        prefix,
        lan,
        rtr,
        wanr,
        far,
    } = &topology;
    (|| -> Result<()> {
        lan.ip(&format!(
            "link add eth0 type veth peer name lan0 netns {}",
            rtr.name()
        ))?;
        wanr.ip(&format!(
            "link add eth0 type veth peer name wan0 netns {}",
            rtr.name()
        ))?;
        wanr.ip(&format!(
            "link add eth1 type veth peer name eth0 netns {}",
            far.name()
        ))?;
        configure(lan, "eth0", "10.0.1.2/24", "fd00:1::2/64")?;
        configure(rtr, "lan0", "10.0.1.1/24", "fd00:1::1/64")?;
        configure(rtr, "wan0", "10.0.2.1/24", "fd00:2::1/64")?;
        configure(wanr, "eth0", "10.0.2.2/24", "fd00:2::2/64")?;
        configure(wanr, "eth1", "10.0.4.1/24", "fd00:4::1/64")?;
        configure(far, "eth0", "10.0.4.2/24", "fd00:4::2/64")?;
        for netns in [rtr, wanr] {
            netns.sysctl("net.ipv4.ip_forward", "1")?;
            netns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        for (netns, ifname) in [
            (lan, "eth0"),
            (rtr, "lan0"),
            (rtr, "wan0"),
            (wanr, "eth0"),
            (wanr, "eth1"),
            (far, "eth0"),
        ] {
            wait_until_ready(netns, ifname)?;
        }
        lan.ip("route add default via 10.0.1.1")?;
        lan.ip("-6 route add default via fd00:1::1")?;
        rtr.ip("route add 10.0.4.0/24 via 10.0.2.2")?;
        rtr.ip("-6 route add fd00:4::/64 via fd00:2::2")?;
        wanr.ip("-6 route add fd00:1::/64 via fd00:2::1")?;
        far.ip("route add default via 10.0.4.1")?;
        far.ip("-6 route add default via fd00:4::1")?;
        Ok(())
    })()
    .with_context(|| format!("building the two-hop WAN topology {prefix}"))?;
    Ok(topology)
}
