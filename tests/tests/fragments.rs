//! Fragmented traffic end to end (issue 12): datagrams larger than a link, which IP
//! carries as fragments, of which only the first has the transport header. The router
//! runs with masquerade on `wan0`; every link has an MTU of 1500 unless a test says
//! otherwise, and the senders' stacks fragment what does not fit.
//!
//! - `ping -s 4000` from the LAN host to the WAN host gets every reply, over IPv4
//!   through masquerade and over IPv6;
//! - a DNS query over UDP (dig, EDNS0 buffer 4096, no fallback to TCP) to dnsmasq on the
//!   WAN host gets its whole 3,000-byte TXT answer, IPv4 and IPv6;
//! - an 8,000-byte UDP datagram from the LAN host is echoed intact by the WAN host, IPv4
//!   and IPv6, and over IPv4 also when the LAN link is jumbo (MTU 9000) so that the
//!   router fragments it (TC egress sees the fragments of a datagram XDP saw whole);
//! - a fragmented datagram from the WAN to a LAN port that nothing opened stays out,
//!   whether its first fragment comes first or last: nothing reaches the LAN host, and
//!   the router counts the drops (the firewall: the first fragment by policy, the later
//!   ones as `drop_fragment_follows` after it, `drop_fragment` before it).
//!
//! Each exchange asserts who fragmented (the hosts' and the router's `FragOKs`), that the
//! answer arrived whole, and then, for the firewall, that no fragment was dropped and
//! that every later fragment reaching the router, from either side, was let through
//! after its first (`accept_fragment`, exactly).
//!
//! Every scenario also runs with netfilter guarding the router (module [`netfilter`]):
//! the stateful ruleset and MASQUERADE in iptables. netfilter reassembles before it
//! tracks, so it delivers all of these; those runs show that each expectation is the
//! kernel's own behaviour, in this lab.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, ensure};
use tests::{
    Config, Family, Firewall, Netns, Probe, Stats,
    fragments::{
        ACCEPT_FRAGMENT, BIG_NAME, FRAGMENT_DROP_PREFIX, big_txt, dig_big_txt, dns_server,
        ensure_no_fragment_drops, fragment_counters, fragment_counters_grown, fragment_drops,
        fragmented_datagrams, later_fragments, udp_exchange, udp_sink,
    },
    packets::{Capture, scapy_send},
    poll,
    topology::{self, LAN_HOST, RouterOptions, RouterTopology, WAN_HOST},
    traffic,
};

/// The MTU of every link, unless a test makes the LAN jumbo.
const MTU: u32 = 1500;
/// Time for packets in flight to arrive before a capture is read.
const SETTLE: Duration = Duration::from_millis(500);
/// Bound on the router counting what it has already dropped.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// What guards the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The firewall with the default ruleset and masquerade on `wan0`.
    Firewall,
    /// The reference: netfilter with [`NETFILTER_RULES`] and MASQUERADE on `wan0`.
    Netfilter,
}

/// The classic stateful ruleset: the router and the WAN get only what is ESTABLISHED or
/// RELATED, the LAN gets out. `{icmpv6}` is where ip6tables accepts neighbour discovery,
/// which conntrack does not track (the firewall validates and accepts it itself).
const NETFILTER_RULES: &str = "*filter\n\
    :INPUT DROP [0:0]\n\
    :FORWARD DROP [0:0]\n\
    :OUTPUT ACCEPT [0:0]\n\
    -A INPUT -i lo -j ACCEPT\n\
    -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    -A INPUT -i lan0 -j ACCEPT\n\
    {icmpv6}\
    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    -A FORWARD -i lan0 -o wan0 -j ACCEPT\n\
    COMMIT\n";
const NETFILTER_MASQUERADE: &str = "*nat\n\
    :POSTROUTING ACCEPT [0:0]\n\
    -A POSTROUTING -o wan0 -j MASQUERADE\n\
    COMMIT\n";

/// The guard running on the router during a test.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per test, never moved around: boxing would only add noise"
)]
enum Guarded<'ns> {
    Firewall(Firewall<'ns>),
    Netfilter(&'ns Netns),
}

impl<'ns> Guarded<'ns> {
    fn start(rtr: &'ns Netns, guard: Guard) -> Result<Self> {
        Ok(match guard {
            Guard::Firewall => Self::Firewall(Firewall::start(
                rtr,
                &Config::router().with_masquerade("wan0"),
            )?),
            Guard::Netfilter => {
                let v4 = NETFILTER_RULES.replace("{icmpv6}", "") + NETFILTER_MASQUERADE;
                rtr.exec_with_input(["iptables-restore"], v4.as_bytes())?;
                let v6 = NETFILTER_RULES.replace("{icmpv6}", "-A INPUT -p ipv6-icmp -j ACCEPT\n");
                rtr.exec_with_input(["ip6tables-restore"], v6.as_bytes())?;
                Self::Netfilter(rtr)
            }
        })
    }

    /// The firewall's counters now (`None` for netfilter), to compare with later.
    fn stats(&self) -> Result<Option<Stats>> {
        match self {
            Self::Firewall(fw) => fw.stats().map(Some),
            Self::Netfilter(_) => Ok(None),
        }
    }

    /// What the router counted about fragments, for failure messages.
    fn describe(&self) -> String {
        match self {
            Self::Firewall(fw) => match fw.stats() {
                Ok(stats) => format!("firewall counters {:?}", fragment_counters(&stats)),
                Err(err) => format!("firewall counters unreadable: {err:#}"),
            },
            Self::Netfilter(_) => "netfilter".to_owned(),
        }
    }

    /// Since `before`: no fragment was dropped, and exactly `later` later fragments
    /// were let through after their first fragment: every later fragment that reached
    /// the router, from either side, counted once where it arrived. (Fragments the
    /// router makes itself leave through TC egress and are not counted.) Nothing to
    /// check for netfilter, which reassembles.
    fn ensure_fragments_followed(&self, before: Option<&Stats>, later: u32) -> Result<()> {
        let (Self::Firewall(fw), Some(before)) = (self, before) else {
            return Ok(());
        };
        let after = fw.stats()?;
        eprintln!(
            "fragment counters grew: {:?}",
            fragment_counters_grown(before, &after)
        );
        ensure_no_fragment_drops(before, &after)?;
        let followed = after
            .counter(ACCEPT_FRAGMENT)?
            .saturating_sub(before.counter(ACCEPT_FRAGMENT)?);
        ensure!(
            followed == u64::from(later),
            "{ACCEPT_FRAGMENT} grew by {followed}, not by the {later} later fragments that \
             reached the router: {:?}",
            fragment_counters_grown(before, &after)
        );
        Ok(())
    }
}

/// The router with masquerade as NAT needs it: over IPv4 the WAN host reaches the LAN
/// only through the translation, over IPv6 it routes the LAN prefix to the router.
fn nat_topology() -> Result<RouterTopology> {
    topology::router_with("frag", RouterOptions::nat())
}

/// How much `after` exceeds `before`, for the hosts' counters.
fn grew(before: u64, after: u64) -> u64 {
    after.saturating_sub(before)
}

/// Echo requests per ping test, and their data size.
const PINGS: u32 = 3;
const PING_SIZE: u32 = 4000;
/// ICMP and ICMPv6 echo headers.
const ECHO_HEADER: u32 = 8;

/// `ping -s 4000` from the LAN host to the WAN host: every request leaves the LAN host
/// in fragments, every reply leaves the WAN host in fragments, and every reply arrives.
fn check_ping(family: Family, guard: Guard) -> Result<()> {
    let topo = nat_topology()?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let before = router.stats()?;
    let lan_before = fragmented_datagrams(&topo.lan, family)?;
    let wan_before = fragmented_datagrams(&topo.wan, family)?;
    let replies = traffic::ping_sized(&topo.lan, WAN_HOST.get(family), PING_SIZE, PINGS)?;
    let lan_fragmented = grew(lan_before, fragmented_datagrams(&topo.lan, family)?);
    let wan_fragmented = grew(wan_before, fragmented_datagrams(&topo.wan, family)?);
    ensure!(
        lan_fragmented == u64::from(PINGS),
        "the LAN host fragmented {lan_fragmented} datagrams, not the {PINGS} requests"
    );
    ensure!(
        replies == PINGS,
        "{replies} of {PINGS} {PING_SIZE}-byte echo requests over {family} got their reply; \
         the WAN host fragmented {wan_fragmented} replies; {}",
        router.describe()
    );
    ensure!(
        wan_fragmented == u64::from(PINGS),
        "the WAN host fragmented {wan_fragmented} datagrams, not the {PINGS} replies"
    );
    // Requests from the LAN, replies from the WAN: the same size.
    let later = later_fragments(family, PING_SIZE + ECHO_HEADER, MTU);
    router.ensure_fragments_followed(before.as_ref(), 2 * PINGS * later)
}

#[test]
fn ping_of_4000_bytes_through_masquerade_gets_every_reply() -> Result<()> {
    check_ping(Family::V4, Guard::Firewall)
}

#[test]
fn ping_v6_of_4000_bytes_gets_every_reply() -> Result<()> {
    check_ping(Family::V6, Guard::Firewall)
}

/// The smallest DNS message that carries all of [`big_txt`]: its 3,000 bytes and a
/// length byte per string.
const BIG_ANSWER_MIN: usize = 3000 + 12;
/// UDP header.
const UDP_HEADER: u32 = 8;

/// dig on the LAN host asks dnsmasq on the WAN host for [`BIG_NAME`] TXT over UDP, with
/// an EDNS0 buffer of 4096 bytes and no TCP fallback. The answer leaves the WAN host in
/// fragments and must arrive whole: not truncated, the one record with every string.
fn check_dns(family: Family, guard: Guard) -> Result<()> {
    let topo = nat_topology()?;
    let server_addr = WAN_HOST.get(family);
    let _server = dns_server(&topo.wan, &[server_addr])?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let before = router.stats()?;
    let wan_before = fragmented_datagrams(&topo.wan, family)?;
    let answer = dig_big_txt(&topo.lan, server_addr)?;
    let wan_fragmented = grew(wan_before, fragmented_datagrams(&topo.wan, family)?);
    ensure!(
        wan_fragmented == 1,
        "the DNS server's host fragmented {wan_fragmented} datagrams, not the one answer"
    );
    let answer = answer.with_context(|| {
        format!(
            "dig got no answer over {family} from {server_addr}; {}",
            router.describe()
        )
    })?;
    ensure!(
        !answer.truncated && answer.size >= BIG_ANSWER_MIN,
        "the answer over {family} is {} bytes{}, expected all of at least \
         {BIG_ANSWER_MIN}",
        answer.size,
        if answer.truncated { ", truncated" } else { "" }
    );
    ensure!(
        answer.txt == [big_txt()],
        "the answer over {family} has TXT records {:?}, not {BIG_NAME}'s",
        answer.txt
    );
    // The query fits one packet; the answer does not.
    let size = u32::try_from(answer.size)? + UDP_HEADER;
    router.ensure_fragments_followed(before.as_ref(), later_fragments(family, size, MTU))
}

#[test]
fn dns_answer_of_3000_bytes_over_udp_through_masquerade_arrives_whole() -> Result<()> {
    check_dns(Family::V4, Guard::Firewall)
}

#[test]
fn dns_answer_v6_of_3000_bytes_over_udp_arrives_whole() -> Result<()> {
    check_dns(Family::V6, Guard::Firewall)
}

const ECHO_PORT: u16 = 9000;
/// Bytes of the echoed datagram (socat's echo server reads at most 8192).
const DATAGRAM_SIZE: usize = 8000;
/// The LAN link's MTU when the router is to fragment.
const JUMBO_MTU: u32 = 9000;

/// Who fragments the LAN host's datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmenter {
    /// The LAN host itself: every link has [`MTU`].
    Sender,
    /// The router: the LAN link has [`JUMBO_MTU`], so the datagram crosses it whole
    /// and the router fragments it for `wan0` (IPv4 only: IPv6 routers never fragment).
    Router,
}

/// The LAN host sends one [`DATAGRAM_SIZE`]-byte datagram to a UDP echo server on the
/// WAN host, fragmented by `fragmenter`; the echo leaves the WAN host in fragments and
/// must arrive, byte for byte the datagram sent.
fn check_udp_echo(family: Family, fragmenter: Fragmenter, guard: Guard) -> Result<()> {
    let topo = nat_topology()?;
    if fragmenter == Fragmenter::Router {
        topo.lan.ip(&format!("link set eth0 mtu {JUMBO_MTU}"))?;
        topo.rtr.ip(&format!("link set lan0 mtu {JUMBO_MTU}"))?;
    }
    let _server = traffic::udp_echo_server(&topo.wan, ECHO_PORT)?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let dir = tempfile::Builder::new().prefix("fw-frag-").tempdir()?;
    let (request, answer) = (dir.path().join("request"), dir.path().join("answer"));
    let sent = traffic::pseudo_random_bytes(DATAGRAM_SIZE);
    std::fs::write(&request, &sent)?;
    let before = router.stats()?;
    let fragmented_by = |netns: &Netns| fragmented_datagrams(netns, family);
    let (lan_before, rtr_before, wan_before) = (
        fragmented_by(&topo.lan)?,
        fragmented_by(&topo.rtr)?,
        fragmented_by(&topo.wan)?,
    );
    let answered = udp_exchange(
        &topo.lan,
        WAN_HOST.get(family),
        ECHO_PORT,
        &request,
        &answer,
    )?;
    let lan_fragmented = grew(lan_before, fragmented_by(&topo.lan)?);
    let rtr_fragmented = grew(rtr_before, fragmented_by(&topo.rtr)?);
    let wan_fragmented = grew(wan_before, fragmented_by(&topo.wan)?);
    let fragmented = format!(
        "the LAN host, router and WAN host fragmented {lan_fragmented}, {rtr_fragmented} \
         and {wan_fragmented} datagrams"
    );
    ensure!(
        answered,
        "no echo of the {DATAGRAM_SIZE}-byte datagram over {family} came back; {fragmented}; \
         {}",
        router.describe()
    );
    // netfilter's router fragments again what it reassembled (`ip_fragment` with the
    // largest fragment's size): only the fragmentation this test causes is required.
    let (lan_expected, rtr_least) = match fragmenter {
        Fragmenter::Sender => (1, 0),
        Fragmenter::Router => (0, 1),
    };
    ensure!(
        lan_fragmented == lan_expected && rtr_fragmented >= rtr_least && wan_fragmented == 1,
        "{fragmented}, expected {lan_expected}, at least {rtr_least}, and 1 ({fragmenter:?} \
         fragments the request, the WAN host its echo)"
    );
    let received = std::fs::read(&answer)?;
    ensure!(
        received == sent,
        "the echo over {family} is {} bytes that are not the {DATAGRAM_SIZE} sent",
        received.len()
    );
    // The echo from the WAN, and the request from the LAN if it came in fragments.
    let later = later_fragments(family, u32::try_from(DATAGRAM_SIZE)? + UDP_HEADER, MTU);
    let arriving = match fragmenter {
        Fragmenter::Sender => 2,
        Fragmenter::Router => 1,
    };
    router.ensure_fragments_followed(before.as_ref(), arriving * later)
}

#[test]
fn udp_datagram_of_8000_bytes_through_masquerade_is_echoed_intact() -> Result<()> {
    check_udp_echo(Family::V4, Fragmenter::Sender, Guard::Firewall)
}

#[test]
fn udp_datagram_v6_of_8000_bytes_is_echoed_intact() -> Result<()> {
    check_udp_echo(Family::V6, Fragmenter::Sender, Guard::Firewall)
}

#[test]
fn udp_datagram_of_8000_bytes_fragmented_by_the_router_through_masquerade_is_echoed_intact()
-> Result<()> {
    check_udp_echo(Family::V4, Fragmenter::Router, Guard::Firewall)
}

/// A LAN port nothing opened, where the LAN host nonetheless listens.
const CLOSED_PORT: u16 = 9100;
/// Bytes of data in the forged datagram, and the fragment size the WAN host cuts it
/// into: a first fragment and two later ones.
const FORGED_DATA: usize = 3000;
const FORGED_LATER: u64 = 2;

/// The scapy expression of a UDP datagram of [`FORGED_DATA`] bytes from the WAN host to
/// the LAN host's [`CLOSED_PORT`], as its fragments (IP identification `id`), first
/// fragment last if `reversed`.
fn forged_fragments(family: Family, id: u32, reversed: bool) -> String {
    let (src, dst) = (WAN_HOST.get(family), LAN_HOST.get(family));
    let udp = format!("UDP(sport=40000, dport={CLOSED_PORT})/Raw(b'x' * {FORGED_DATA})");
    let fragments = match family {
        Family::V4 => {
            format!("fragment(IP(src='{src}', dst='{dst}', id={id})/{udp}, fragsize=1400)")
        }
        // fragment6's size counts the IPv6 header: 1232 bytes of data a fragment.
        Family::V6 => format!(
            "fragment6(IPv6(src='{src}', dst='{dst}')/IPv6ExtHdrFragment(id={id})/{udp}, 1280)"
        ),
    };
    if reversed {
        format!("list(reversed({fragments}))")
    } else {
        fragments
    }
}

/// Packets the FORWARD chain's policy dropped, per `iptables -L FORWARD -v -x`:
/// `Chain FORWARD (policy DROP 2 packets, 6056 bytes)`.
fn netfilter_forward_policy_drops(rtr: &Netns, family: Family) -> Result<u64> {
    let tool = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    let listing = rtr.exec([tool, "-w", "-L", "FORWARD", "-v", "-x", "-n"])?;
    let header = listing.lines().next().unwrap_or_default();
    let packets = header
        .split_once("policy DROP ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .with_context(|| format!("no policy counter in {header:?}"))?;
    packets
        .parse()
        .with_context(|| format!("packet count in {header:?}"))
}

/// What the router dropped of forged datagrams: packets its forward policy dropped,
/// and each `drop_fragment*` counter (the firewall's; none for netfilter).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ForgedDrops {
    policy: u64,
    fragments: BTreeMap<String, u64>,
}

impl ForgedDrops {
    fn read(router: &Guarded, family: Family) -> Result<Self> {
        Ok(match router {
            Guarded::Firewall(fw) => {
                let stats = fw.stats()?;
                fragment_drops(&stats)?;
                Self {
                    policy: stats.counter("drop_policy")?,
                    fragments: stats
                        .counters
                        .into_iter()
                        .filter(|(name, _)| name.starts_with(FRAGMENT_DROP_PREFIX))
                        .collect(),
                }
            }
            Guarded::Netfilter(rtr) => Self {
                policy: netfilter_forward_policy_drops(rtr, family)?,
                fragments: BTreeMap::new(),
            },
        })
    }

    /// How much each count grew since `before`.
    fn since(&self, before: &Self) -> Self {
        Self {
            policy: grew(before.policy, self.policy),
            fragments: self
                .fragments
                .iter()
                .map(|(name, count)| {
                    let then = before.fragments.get(name).copied().unwrap_or(0);
                    (name.clone(), grew(then, *count))
                })
                .collect(),
        }
    }
}

/// The forged datagrams: IP identification, whether the first fragment comes last, and
/// the firewall's counter for the later fragments: those that follow a first fragment
/// the policy dropped, or that come with no first fragment on record.
const FORGED: [(u32, bool, &str); 2] = [
    (0x1234, false, "drop_fragment_follows"),
    (0x1235, true, "drop_fragment"),
];

/// The WAN host sends a UDP datagram to a LAN port nothing opened, in fragments, twice:
/// first fragment first, then (another datagram) first fragment last. The LAN host
/// listens on the port and captures its link: no datagram and no fragment may arrive.
/// The router counts each datagram's drops: netfilter reassembles it and its FORWARD
/// policy drops it once; the firewall drops the first fragment by policy and the later
/// ones as fragments, by reason (see [`FORGED`]).
fn check_fragments_to_closed_port(family: Family, guard: Guard) -> Result<()> {
    let topo = topology::router("fragin")?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let (wan, lan) = (WAN_HOST.get(family), LAN_HOST.get(family));
    let sink = udp_sink(&topo.lan, CLOSED_PORT)?;
    let mut arrived = Capture::start(&topo.lan, "eth0", &format!("src host {wan}"))?;
    let mut sent = Capture::start(
        &topo.wan,
        "eth0",
        &format!("src host {wan} and dst host {lan}"),
    )?;

    for (id, reversed, reason) in FORGED {
        let what = if reversed {
            "first fragment last"
        } else {
            "first fragment first"
        };
        let before = ForgedDrops::read(&router, family)?;
        scapy_send(&topo.wan, &forged_fragments(family, id, reversed))?;
        let grown = poll(
            &format!("the router to count the drops of the datagram sent {what}"),
            COUNT_TIMEOUT,
            || {
                let grown = ForgedDrops::read(&router, family)?.since(&before);
                let fragments: u64 = grown.fragments.values().sum();
                let done = grown.policy >= 1
                    && match guard {
                        Guard::Firewall => fragments >= FORGED_LATER,
                        Guard::Netfilter => true,
                    };
                Ok(if done {
                    Probe::Ready(grown)
                } else {
                    Probe::Pending(format!("{grown:?}"))
                })
            },
        )?;
        eprintln!("drops of the datagram sent {what}: {grown:?}");
        let expected = match guard {
            // Other packets from the WAN host (MLD reports) may meet the policy too.
            Guard::Firewall => ForgedDrops {
                policy: grown.policy,
                fragments: grown
                    .fragments
                    .keys()
                    .map(String::as_str)
                    .chain([reason])
                    .map(|name| {
                        let count = if name == reason { FORGED_LATER } else { 0 };
                        (name.to_owned(), count)
                    })
                    .collect(),
            },
            Guard::Netfilter => ForgedDrops {
                policy: 1,
                fragments: BTreeMap::new(),
            },
        };
        ensure!(
            grown == expected,
            "the router's drops of the datagram sent {what} grew by {grown:?}, expected \
             {expected:?}"
        );
    }

    let fragments = u64::try_from(FORGED.len())? * (1 + FORGED_LATER);
    let sent = sent.packets(SETTLE);
    ensure!(
        u64::try_from(sent.len())? == fragments,
        "the WAN host sent {} fragments, not {fragments}: {sent:#?}",
        sent.len()
    );
    let arrived = arrived.packets(Duration::ZERO);
    ensure!(
        arrived.is_empty(),
        "{} packets from the WAN host reached the LAN host: {arrived:#?}",
        arrived.len()
    );
    let received = sink.log();
    ensure!(
        received.is_empty(),
        "the LAN host's socket on port {CLOSED_PORT} received {} bytes",
        received.len()
    );
    Ok(())
}

#[test]
fn fragmented_datagram_from_the_wan_to_a_closed_port_stays_out() -> Result<()> {
    check_fragments_to_closed_port(Family::V4, Guard::Firewall)
}

#[test]
fn fragmented_datagram_v6_from_the_wan_to_a_closed_port_stays_out() -> Result<()> {
    check_fragments_to_closed_port(Family::V6, Guard::Firewall)
}

/// The same scenarios with netfilter guarding the router: the reference the firewall
/// must match.
mod netfilter {
    use super::*;

    #[test]
    fn ping_of_4000_bytes_through_masquerade_gets_every_reply() -> Result<()> {
        check_ping(Family::V4, Guard::Netfilter)
    }

    #[test]
    fn ping_v6_of_4000_bytes_gets_every_reply() -> Result<()> {
        check_ping(Family::V6, Guard::Netfilter)
    }

    #[test]
    fn dns_answer_of_3000_bytes_over_udp_through_masquerade_arrives_whole() -> Result<()> {
        check_dns(Family::V4, Guard::Netfilter)
    }

    #[test]
    fn dns_answer_v6_of_3000_bytes_over_udp_arrives_whole() -> Result<()> {
        check_dns(Family::V6, Guard::Netfilter)
    }

    #[test]
    fn udp_datagram_of_8000_bytes_through_masquerade_is_echoed_intact() -> Result<()> {
        check_udp_echo(Family::V4, Fragmenter::Sender, Guard::Netfilter)
    }

    #[test]
    fn udp_datagram_v6_of_8000_bytes_is_echoed_intact() -> Result<()> {
        check_udp_echo(Family::V6, Fragmenter::Sender, Guard::Netfilter)
    }

    #[test]
    fn udp_datagram_of_8000_bytes_fragmented_by_the_router_through_masquerade_is_echoed_intact()
    -> Result<()> {
        check_udp_echo(Family::V4, Fragmenter::Router, Guard::Netfilter)
    }

    #[test]
    fn fragmented_datagram_from_the_wan_to_a_closed_port_stays_out() -> Result<()> {
        check_fragments_to_closed_port(Family::V4, Guard::Netfilter)
    }

    #[test]
    fn fragmented_datagram_v6_from_the_wan_to_a_closed_port_stays_out() -> Result<()> {
        check_fragments_to_closed_port(Family::V6, Guard::Netfilter)
    }
}
