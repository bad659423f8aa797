//! The namespaces and veth links the tests run in.
//!
//! ```text
//! router:  [lan] eth0 ──veth── lan0 [rtr] wan0 ──veth── eth0 [wan]
//!          10.0.1.2     10.0.1.1    │   10.0.2.1     10.0.2.2
//!          fd00:1::2    fd00:1::1   │   fd00:2::1    fd00:2::2
//!                                   │
//!   (option) [lan2] eth0 ──veth── lan1
//!          10.0.3.2     10.0.3.1
//!          fd00:3::2    fd00:3::1
//!
//! host:    [host] eth0 ──veth── eth0 [peer]
//!          10.0.3.1             10.0.3.2
//!          fd00:3::1            fd00:3::2
//! ```
//!
//! Interface names are fixed inside each namespace; namespace names are unique, so every
//! test can build the same topology in parallel.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::{DualAddr, Netns, Probe, poll, unique_prefix};

/// The LAN host of the router topology.
pub const LAN_HOST: DualAddr = DualAddr {
    v4: "10.0.1.2",
    v6: "fd00:1::2",
};
/// The router's `lan0`.
pub const ROUTER_LAN: DualAddr = DualAddr {
    v4: "10.0.1.1",
    v6: "fd00:1::1",
};
/// The router's `wan0`.
pub const ROUTER_WAN: DualAddr = DualAddr {
    v4: "10.0.2.1",
    v6: "fd00:2::1",
};
/// The second LAN host of the router topology ([`RouterOptions::second_lan_host`]).
pub const LAN2_HOST: DualAddr = DualAddr {
    v4: "10.0.3.2",
    v6: "fd00:3::2",
};
/// The router's `lan1`, facing [`LAN2_HOST`].
pub const ROUTER_LAN1: DualAddr = DualAddr {
    v4: "10.0.3.1",
    v6: "fd00:3::1",
};
/// The WAN host of the router topology.
pub const WAN_HOST: DualAddr = DualAddr {
    v4: "10.0.2.2",
    v6: "fd00:2::2",
};
/// The firewalled host of the host topology.
pub const HOST: DualAddr = DualAddr {
    v4: "10.0.3.1",
    v6: "fd00:3::1",
};
/// The host topology's other end.
pub const PEER: DualAddr = DualAddr {
    v4: "10.0.3.2",
    v6: "fd00:3::2",
};

/// A LAN host, a router (where the firewall runs) and a WAN host; optionally a second
/// LAN host on its own router interface.
pub struct RouterTopology {
    pub prefix: String,
    pub lan: Netns,
    /// The second LAN host, behind the router's `lan1`; only with
    /// [`RouterOptions::second_lan_host`].
    pub lan2: Option<Netns>,
    pub rtr: Netns,
    pub wan: Netns,
}

/// Options of [`router_with`].
#[derive(Debug, Clone, Copy)]
pub struct RouterOptions {
    /// Give the WAN host routes back to the LAN subnets, IPv4 and IPv6. Without them
    /// the LAN is reachable from the WAN only through NAT.
    pub wan_return_routes: bool,
    /// Give the WAN host the IPv6 routes back to the LAN subnets even without
    /// `wan_return_routes`. IPv6 is never translated, so a masquerading router carries
    /// IPv6 only if the WAN side routes the LAN prefixes to it, as a real upstream
    /// routes a delegated prefix.
    pub wan_v6_return_routes: bool,
    /// Add `lan2` ([`LAN2_HOST`]) behind a second router interface `lan1`
    /// ([`ROUTER_LAN1`]), so that two LAN hosts can use the same source port.
    pub second_lan_host: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            wan_return_routes: true,
            wan_v6_return_routes: false,
            second_lan_host: false,
        }
    }
}

impl RouterOptions {
    /// The router as NAT needs it: over IPv4 the WAN host reaches the LAN only through
    /// the router's translation, over IPv6 directly.
    pub fn nat() -> Self {
        Self {
            wan_return_routes: false,
            wan_v6_return_routes: true,
            second_lan_host: false,
        }
    }
}

/// The router topology, with return routes on the WAN host.
pub fn router(tag: &str) -> Result<RouterTopology> {
    router_with(tag, RouterOptions::default())
}

pub fn router_with(tag: &str, options: RouterOptions) -> Result<RouterTopology> {
    let RouterOptions {
        wan_return_routes,
        wan_v6_return_routes,
        second_lan_host,
    } = options;
    let prefix = unique_prefix(tag);
    let topology = RouterTopology {
        lan: namespace(&format!("{prefix}-lan"))?,
        lan2: if second_lan_host {
            Some(namespace(&format!("{prefix}-lan2"))?)
        } else {
            None
        },
        rtr: namespace(&format!("{prefix}-rtr"))?,
        wan: namespace(&format!("{prefix}-wan"))?,
        prefix,
    };
    let RouterTopology {
        prefix,
        lan,
        lan2,
        rtr,
        wan,
    } = &topology;
    (|| -> Result<()> {
        lan.ip(&format!(
            "link add eth0 type veth peer name lan0 netns {}",
            rtr.name()
        ))?;
        wan.ip(&format!(
            "link add eth0 type veth peer name wan0 netns {}",
            rtr.name()
        ))?;
        configure(lan, "eth0", "10.0.1.2/24", "fd00:1::2/64")?;
        configure(rtr, "lan0", "10.0.1.1/24", "fd00:1::1/64")?;
        configure(rtr, "wan0", "10.0.2.1/24", "fd00:2::1/64")?;
        configure(wan, "eth0", "10.0.2.2/24", "fd00:2::2/64")?;
        let mut links = vec![(lan, "eth0"), (rtr, "lan0"), (rtr, "wan0"), (wan, "eth0")];
        if let Some(lan2) = lan2 {
            lan2.ip(&format!(
                "link add eth0 type veth peer name lan1 netns {}",
                rtr.name()
            ))?;
            configure(lan2, "eth0", "10.0.3.2/24", "fd00:3::2/64")?;
            configure(rtr, "lan1", "10.0.3.1/24", "fd00:3::1/64")?;
            links.extend([(lan2, "eth0"), (rtr, "lan1")]);
        }
        rtr.sysctl("net.ipv4.ip_forward", "1")?;
        rtr.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for (netns, ifname) in links {
            wait_until_ready(netns, ifname)?;
        }
        lan.ip("route add default via 10.0.1.1")?;
        lan.ip("-6 route add default via fd00:1::1")?;
        if let Some(lan2) = lan2 {
            lan2.ip("route add default via 10.0.3.1")?;
            lan2.ip("-6 route add default via fd00:3::1")?;
        }
        let mut lan_subnets = vec![("10.0.1.0/24", "fd00:1::/64")];
        if second_lan_host {
            lan_subnets.push(("10.0.3.0/24", "fd00:3::/64"));
        }
        for (v4, v6) in lan_subnets {
            if wan_return_routes {
                wan.ip(&format!("route add {v4} via 10.0.2.1"))?;
            }
            if wan_return_routes || wan_v6_return_routes {
                wan.ip(&format!("-6 route add {v6} via fd00:2::1"))?;
            }
        }
        Ok(())
    })()
    .with_context(|| format!("building the router topology {prefix}"))?;
    Ok(topology)
}

/// A host running the firewall (its `eth0` is wan) and one peer.
pub struct HostTopology {
    pub prefix: String,
    pub host: Netns,
    pub peer: Netns,
}

pub fn host(tag: &str) -> Result<HostTopology> {
    let prefix = unique_prefix(tag);
    let topology = HostTopology {
        host: namespace(&format!("{prefix}-host"))?,
        peer: namespace(&format!("{prefix}-peer"))?,
        prefix,
    };
    let HostTopology { prefix, host, peer } = &topology;
    (|| -> Result<()> {
        host.ip(&format!(
            "link add eth0 type veth peer name eth0 netns {}",
            peer.name()
        ))?;
        configure(host, "eth0", "10.0.3.1/24", "fd00:3::1/64")?;
        configure(peer, "eth0", "10.0.3.2/24", "fd00:3::2/64")?;
        wait_until_ready(host, "eth0")?;
        wait_until_ready(peer, "eth0")?;
        Ok(())
    })()
    .with_context(|| format!("building the host topology {prefix}"))?;
    Ok(topology)
}

/// A namespace whose interfaces skip IPv6 duplicate address detection, so addresses
/// (link-local ones too) are usable at once. `addrconf_dad_begin` skips DAD only when
/// both `all` and the device's own `accept_dad` are 0; devices take `default`'s value.
pub(crate) fn namespace(name: &str) -> Result<Netns> {
    let netns = Netns::create(name)?;
    netns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    netns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(netns)
}

pub(crate) fn configure(netns: &Netns, ifname: &str, v4: &str, v6: &str) -> Result<()> {
    netns.ip(&format!("addr add {v4} dev {ifname}"))?;
    netns.ip(&format!("addr add {v6} dev {ifname} nodad"))?;
    netns.ip(&format!("link set {ifname} up"))?;
    Ok(())
}

/// Waits until `ifname` is up with every IPv6 address usable.
///
/// IPv6 marks a device ready only when linkwatch reports its carrier, which the kernel
/// rate-limits to about one event per second. Until then even `nodad` addresses stay
/// tentative: the device ignores neighbour solicitations for them, and the first
/// packets to it are lost. A non-tentative link-local address shows readiness.
pub(crate) fn wait_until_ready(netns: &Netns, ifname: &str) -> Result<()> {
    let what = format!("{ifname} in {} to be ready for IPv6", netns.name());
    poll(&what, Duration::from_secs(5), || {
        let json = netns.ip(&format!("-j addr show dev {ifname}"))?;
        let links: Vec<serde_json::Value> =
            serde_json::from_str(&json).context("parsing `ip -j addr show`")?;
        let link = links.first().context("no such link")?;
        let addrs = link["addr_info"].as_array().cloned().unwrap_or_default();
        let is_true = |addr: &serde_json::Value, key: &str| addr[key].as_bool() == Some(true);
        let up = link["operstate"].as_str() == Some("UP");
        let tentative = addrs.iter().any(|addr| is_true(addr, "tentative"));
        let link_local = addrs.iter().any(|addr| {
            addr["family"].as_str() == Some("inet6") && addr["scope"].as_str() == Some("link")
        });
        Ok(if up && !tentative && link_local {
            Probe::Ready(())
        } else {
            Probe::Pending(json)
        })
    })
}
