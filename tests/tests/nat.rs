//! NAT in router mode: masquerade on `wan0` and port forwards. The WAN host has no IPv4
//! route back to the LAN ([`RouterOptions::nat`]), so every IPv4 exchange that succeeds
//! went through the translation; IPv6 is routed and never translated. The firewall's
//! own view shows what happened: `conntrack list --json` the translated reply tuples,
//! `stats --json` the rewrites, remapped ports and drops.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Barrier,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use tests::{
    Config, CtEntry, CtTuple, DualAddr, Family, Firewall, Netns, PortForward, Probe, Role, Stats,
    Timeouts, poll,
    topology::{self, LAN_HOST, LAN2_HOST, ROUTER_WAN, RouterOptions, RouterTopology, WAN_HOST},
    traffic::{self, ConnectOutcome, Transport},
};

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
/// The source port both LAN hosts use at once. It lies outside [`NAT_PORTS`], so the
/// connection that keeps it and the one moved into the range are told apart.
const SHARED_PORT: u16 = 40000;
/// `nat_ports` of `wan0` where the tests set it.
const NAT_PORTS: (u16, u16) = (20000, 29999);
/// Bound on how long an expired entry may linger: its timeout plus the ager's period.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the daemon noticing a new interface address (it looks every second).
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(10);

fn v4(addr: DualAddr) -> IpAddr {
    addr.get(Family::V4)
}

/// LAN host, router and WAN host; the WAN host reaches the LAN over IPv6 only.
fn nat_topology() -> Result<RouterTopology> {
    topology::router_with("nat", RouterOptions::nat())
}

/// [`nat_topology`] with the second LAN host behind `lan1`.
fn two_lan_hosts_topology() -> Result<RouterTopology> {
    topology::router_with(
        "nat",
        RouterOptions {
            second_lan_host: true,
            ..RouterOptions::nat()
        },
    )
}

/// The router with `masquerade = true` on `wan0`.
fn masquerade() -> Config {
    Config::router().with_masquerade("wan0")
}

fn the_only_entry(entries: Vec<CtEntry>, what: &str) -> Result<CtEntry> {
    match <[CtEntry; 1]>::try_from(entries) {
        Ok([entry]) => Ok(entry),
        Err(entries) => bail!(
            "expected one {what} entry, found {}: {entries:#?}",
            entries.len()
        ),
    }
}

/// How much counter `name` grew from `before` to `after`.
fn grew(before: &Stats, after: &Stats, name: &str) -> Result<u64> {
    Ok(after.counter(name)?.saturating_sub(before.counter(name)?))
}

/// No `drop_nat_*` counter has counted anything: the translation lost no packet.
fn ensure_no_nat_drops(stats: &Stats) -> Result<()> {
    let drops: Vec<_> = stats
        .counters
        .iter()
        .filter(|(name, count)| name.starts_with("drop_nat_") && **count > 0)
        .collect();
    ensure!(drops.is_empty(), "NAT dropped packets: {drops:?}");
    Ok(())
}

/// Runs `exchange` on both LAN hosts at the same instant (a barrier releases them
/// together) and returns both results, `lan`'s first.
fn on_both_lan_hosts<T: Send>(
    topo: &RouterTopology,
    exchange: impl Fn(&Netns, IpAddr) -> Result<T> + Sync,
) -> Result<[T; 2]> {
    let lan2 = topo.lan2.as_ref().context("the topology has no lan2")?;
    let barrier = Barrier::new(2);
    let [first, second] = std::thread::scope(|scope| {
        let threads = [(&topo.lan, LAN_HOST), (lan2, LAN2_HOST)].map(|(netns, host)| {
            let (barrier, exchange) = (&barrier, &exchange);
            scope.spawn(move || {
                barrier.wait();
                exchange(netns, v4(host)).with_context(|| format!("from {}", netns.name()))
            })
        });
        threads.map(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    });
    Ok([first?, second?])
}

/// The two LAN hosts' connections to the WAN host's `server_port`, both from
/// [`SHARED_PORT`]: each is translated to the router's WAN address, on a port of its
/// own. The first to claim it keeps [`SHARED_PORT`], the other gets one of [`NAT_PORTS`].
fn check_shared_port_entries(fw: &Firewall, proto: &str, server_port: u16) -> Result<()> {
    let port_text = server_port.to_string();
    let entries = fw.conntrack(&["-p", proto, "--dport", &port_text])?;
    ensure!(
        entries.len() == 2,
        "expected two {proto} entries: {entries:#?}"
    );
    let mut nat_ports = Vec::new();
    for host in [v4(LAN_HOST), v4(LAN2_HOST)] {
        let entry = entries
            .iter()
            .find(|entry| entry.orig.src == host)
            .with_context(|| format!("no {proto} entry from {host}: {entries:#?}"))?;
        let orig = CtTuple::ports(host, v4(WAN_HOST), SHARED_PORT, server_port);
        ensure!(entry.orig == orig, "wrong orig tuple: {entry:#?}");
        let nat_port = entry.reply.dport.context("reply tuple without dport")?;
        let reply = CtTuple::ports(v4(WAN_HOST), v4(ROUTER_WAN), server_port, nat_port);
        ensure!(
            entry.reply == reply,
            "reply tuple is not translated to the router's WAN address: {entry:#?}"
        );
        nat_ports.push(nat_port);
    }
    nat_ports.sort_unstable();
    let (lo, hi) = NAT_PORTS;
    ensure!(
        matches!(nat_ports.as_slice(), [remapped, SHARED_PORT] if (lo..=hi).contains(remapped)),
        "translated ports {nat_ports:?}: expected {SHARED_PORT} and one of {lo}-{hi}; \
         entries: {entries:#?}"
    );
    Ok(())
}

fn sharing_config() -> Config {
    masquerade()
        .with_interface("lan1", Role::Lan)
        .with_nat_ports("wan0", NAT_PORTS.0, NAT_PORTS.1)
}

#[test]
fn lan_hosts_sharing_a_tcp_source_port_each_get_their_own_download() -> Result<()> {
    let topo = two_lan_hosts_topology()?;
    let fw = Firewall::start(&topo.rtr, &sharing_config())?;
    let www = traffic::web_root()?;
    // A file per host, large enough that the downloads overlap.
    let content = |host: IpAddr| format!("for {host} only\n").repeat(1 << 16).into_bytes();
    for host in [v4(LAN_HOST), v4(LAN2_HOST)] {
        std::fs::write(www.path().join(host.to_string()), content(host))?;
    }
    let _server = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;

    let before = fw.stats()?;
    let bodies = on_both_lan_hosts(&topo, |netns, host| {
        let url = traffic::url(v4(WAN_HOST), HTTP_PORT, &host.to_string());
        traffic::http_get_from_port(netns, &url, SHARED_PORT)
    })?;
    for (body, host) in bodies.iter().zip([v4(LAN_HOST), v4(LAN2_HOST)]) {
        ensure!(
            *body == content(host),
            "{host} got {} bytes that are not its file (starting {:?})",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let after = fw.stats()?;
    check_shared_port_entries(&fw, "tcp", HTTP_PORT)?;
    ensure!(
        grew(&before, &after, "nat_port_remapped")? >= 1,
        "nat_port_remapped did not count the second connection: {after:?}"
    );
    ensure_no_nat_drops(&after)
}

#[test]
fn lan_hosts_sharing_a_udp_source_port_each_get_their_own_replies() -> Result<()> {
    let topo = two_lan_hosts_topology()?;
    let fw = Firewall::start(&topo.rtr, &sharing_config())?;
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;

    let before = fw.stats()?;
    let payload = |host: IpAddr| format!("datagram from {host}\n");
    let replies = on_both_lan_hosts(&topo, |netns, host| {
        traffic::udp_request_from_port(netns, v4(WAN_HOST), UDP_PORT, SHARED_PORT, &payload(host))
    })?;
    for (reply, host) in replies.iter().zip([v4(LAN_HOST), v4(LAN2_HOST)]) {
        ensure!(
            *reply == payload(host),
            "{host} got {reply:?}, expected exactly its own datagram back"
        );
    }
    let after = fw.stats()?;
    check_shared_port_entries(&fw, "udp", UDP_PORT)?;
    ensure!(
        grew(&before, &after, "nat_port_remapped")? >= 1,
        "nat_port_remapped did not count the second flow: {after:?}"
    );
    ensure_no_nat_drops(&after)
}

#[test]
fn lan_hosts_sharing_an_echo_id_each_get_their_own_replies() -> Result<()> {
    const PINGS: u32 = 3;
    let topo = two_lan_hosts_topology()?;
    let fw = Firewall::start(&topo.rtr, &sharing_config())?;

    let before = fw.stats()?;
    // SHARED_PORT serves as the echo identifier: NAT treats ids as it treats ports.
    let received = on_both_lan_hosts(&topo, |netns, _| {
        traffic::ping_with_id(netns, v4(WAN_HOST), SHARED_PORT, PINGS)
    })?;
    ensure!(
        received == [PINGS; 2],
        "echo replies received by lan and lan2: {received:?}, expected {PINGS} each"
    );
    let after = fw.stats()?;
    ensure!(
        grew(&before, &after, "nat_port_remapped")? >= 1,
        "nat_port_remapped did not count the second echo id: {after:?}"
    );
    ensure_no_nat_drops(&after)?;

    let entries = fw.conntrack(&["-p", "icmp"])?;
    ensure!(
        entries.len() == 2,
        "expected two echo entries: {entries:#?}"
    );
    let mut nat_ids = Vec::new();
    for host in [v4(LAN_HOST), v4(LAN2_HOST)] {
        let entry = entries
            .iter()
            .find(|entry| entry.orig.src == host)
            .with_context(|| format!("no echo entry from {host}: {entries:#?}"))?;
        let nat_id = entry.reply.id.context("echo reply tuple without id")?;
        ensure!(
            entry.orig == CtTuple::icmp(host, v4(WAN_HOST), SHARED_PORT, 8)
                && entry.reply == CtTuple::icmp(v4(WAN_HOST), v4(ROUTER_WAN), nat_id, 0),
            "wrong echo entry: {entry:#?}"
        );
        nat_ids.push(nat_id);
    }
    nat_ids.sort_unstable();
    let (lo, hi) = NAT_PORTS;
    ensure!(
        matches!(nat_ids.as_slice(), [remapped, SHARED_PORT] if (lo..=hi).contains(remapped)),
        "translated echo ids {nat_ids:?}: expected {SHARED_PORT} and one of {lo}-{hi}"
    );
    Ok(())
}

#[test]
fn refusals_from_the_wan_reach_the_masqueraded_client() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let wan = v4(WAN_HOST);

    // Nothing listens on the WAN host: the RST answering the SYN is translated back.
    let outcome = traffic::try_connect(&topo.lan, wan, 8081)?;
    ensure!(
        outcome == ConnectOutcome::Refused,
        "TCP to a closed WAN port through masquerade: {outcome:?}, expected the RST"
    );
    // The port unreachable quotes the translated datagram; RELATED, it is translated
    // back, quote included, so the client's socket sees the refusal.
    let (result, related) = fw.count_during("accept_related", || {
        Ok(traffic::udp_request(&topo.lan, wan, 5354, "anyone?\n"))
    })?;
    match result {
        Ok(reply) => bail!("UDP to a closed WAN port got {reply:?}, expected a refusal"),
        Err(err) => ensure!(
            format!("{err:#}").contains("Connection refused"),
            "UDP to a closed WAN port failed otherwise than refused: {err:#}"
        ),
    }
    ensure!(
        related >= 1,
        "accept_related did not count the port unreachable"
    );
    ensure_no_nat_drops(&fw.stats()?)
}

#[test]
fn tcp_port_forward_serves_a_wan_client_from_the_forwarded_address() -> Result<()> {
    let topo = nat_topology()?;
    let config = masquerade().with_port_forward(PortForward::tcp(8080, "10.0.1.2:80"));
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.lan, 80, www.path())?;

    let before = fw.stats()?;
    let url = traffic::url(v4(ROUTER_WAN), 8080, "hello.txt");
    let (body, peer) = traffic::http_get_with_peer(&topo.wan, &url)?;
    ensure!(body == traffic::HELLO, "wrong body from {url}: {body:?}");
    let forwarded = SocketAddr::new(v4(ROUTER_WAN), 8080);
    ensure!(
        peer == forwarded,
        "curl's connection ended at {peer}, not {forwarded}"
    );
    let after = fw.stats()?;
    for counter in [
        "accept_port_forward",
        "nat_dst_rewritten",
        "nat_src_rewritten",
    ] {
        ensure!(
            grew(&before, &after, counter)? >= 1,
            "{counter} did not grow: {after:?}"
        );
    }
    ensure_no_nat_drops(&after)?;

    // Like conntrack -L under DNAT: the reply comes from the target, to the client.
    let entry = the_only_entry(fw.conntrack(&["-p", "tcp", "--dport", "8080"])?, "TCP")?;
    let client_port = entry.orig.sport.context("orig tuple without sport")?;
    let orig = CtTuple::ports(v4(WAN_HOST), v4(ROUTER_WAN), client_port, 8080);
    let reply = CtTuple::ports(v4(LAN_HOST), v4(WAN_HOST), 80, client_port);
    ensure!(
        entry.orig == orig && entry.reply == reply,
        "expected orig {orig:?} and reply {reply:?}: {entry:#?}"
    );
    Ok(())
}

#[test]
fn udp_port_forward_keeps_the_port_and_the_client_address() -> Result<()> {
    let topo = nat_topology()?;
    // Without `:PORT` the port is kept.
    let config = masquerade().with_port_forward(PortForward::udp(6000, "10.0.1.2"));
    let fw = Firewall::start(&topo.rtr, &config)?;
    let _server = traffic::peer_address_server(&topo.lan, Transport::Udp, 6000)?;

    let (reply, forwarded) = fw.count_during("accept_port_forward", || {
        traffic::udp_request(&topo.wan, v4(ROUTER_WAN), 6000, "who am I?\n")
    })?;
    // socat's UDP client is connected to 10.0.2.1:6000: it takes replies only from there.
    ensure!(
        !reply.is_empty(),
        "no reply through the UDP port forward (forwarded {forwarded})"
    );
    let seen = traffic::parse_peer(&reply)?;
    ensure!(
        seen.ip() == v4(WAN_HOST),
        "the LAN server saw {seen}: a port forward must not hide the client's address"
    );
    ensure!(forwarded >= 1, "accept_port_forward did not grow");

    let entry = the_only_entry(fw.conntrack(&["-p", "udp", "--dport", "6000"])?, "UDP")?;
    let orig = CtTuple::ports(v4(WAN_HOST), v4(ROUTER_WAN), seen.port(), 6000);
    let back = CtTuple::ports(v4(LAN_HOST), v4(WAN_HOST), 6000, seen.port());
    ensure!(
        entry.orig == orig && entry.reply == back,
        "expected orig {orig:?} and reply {back:?}: {entry:#?}"
    );
    ensure_no_nat_drops(&fw.stats()?)
}

#[test]
fn ports_without_a_forward_stay_closed_to_the_wan() -> Result<()> {
    let topo = nat_topology()?;
    let config = masquerade().with_port_forward(PortForward::tcp(8080, "10.0.1.2:80"));
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.lan, 80, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.lan, UDP_PORT)?;
    let router = v4(ROUTER_WAN);

    // The forward's target port is not forwarded itself, nor is any other.
    for port in [80, 8081] {
        let (outcome, dropped) = fw.count_during("drop_policy", || {
            traffic::try_connect(&topo.wan, router, port)
        })?;
        ensure!(
            outcome == ConnectOutcome::TimedOut,
            "TCP {router}:{port} from the WAN: {outcome:?}, expected the SYN dropped"
        );
        ensure!(
            dropped >= 1,
            "drop_policy did not count the SYN to port {port}"
        );
    }
    let (reply, dropped) = fw.count_during("drop_policy", || {
        traffic::udp_request(&topo.wan, router, UDP_PORT, "unsolicited\n")
    })?;
    ensure!(reply.is_empty(), "UDP from the WAN got a reply: {reply:?}");
    ensure!(dropped >= 1, "drop_policy did not count the UDP datagram");
    let forwarded = fw.counter("accept_port_forward")?;
    ensure!(forwarded == 0, "accept_port_forward counted {forwarded}");
    Ok(())
}

#[test]
fn ping_through_masquerade_is_answered_and_tracked_at_the_wan_address() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;

    let before = fw.stats()?;
    ensure!(
        traffic::ping(&topo.lan, v4(WAN_HOST))?,
        "no echo reply through masquerade"
    );
    let after = fw.stats()?;
    for counter in ["nat_src_rewritten", "nat_dst_rewritten"] {
        ensure!(
            grew(&before, &after, counter)? >= 1,
            "{counter} did not grow: {after:?}"
        );
    }
    ensure_no_nat_drops(&after)?;

    let entry = the_only_entry(fw.conntrack(&["-p", "icmp"])?, "echo")?;
    ensure!(
        entry.reply.src == v4(WAN_HOST) && entry.reply.dst == v4(ROUTER_WAN),
        "the echo reply is not tracked to the router's WAN address: {entry:#?}"
    );
    Ok(())
}

#[test]
fn hundred_megabytes_through_masquerade_arrive_intact() -> Result<()> {
    const SIZE: usize = 100 << 20;
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let www = traffic::web_root()?;
    let source = www.path().join("big.bin");
    std::fs::write(&source, traffic::pseudo_random_bytes(SIZE))?;
    let _server = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let out = tempfile::tempdir()?;
    let target = out.path().join("big.bin");

    let url = traffic::url(v4(WAN_HOST), HTTP_PORT, "big.bin");
    let (_, rewritten) = fw.count_during("nat_dst_rewritten", || {
        traffic::http_download(&topo.lan, &url, &target)
    })?;
    let received = std::fs::metadata(&target)?.len();
    ensure!(
        received == SIZE as u64,
        "received {received} bytes of {SIZE}"
    );
    ensure!(
        traffic::sha256_file(&target)? == traffic::sha256_file(&source)?,
        "the file arrived with the right size but different content"
    );
    // Every reply segment went through the reverse translation.
    ensure!(
        rewritten >= (SIZE / 65536) as u64,
        "only {rewritten} replies were translated back"
    );
    ensure_no_nat_drops(&fw.stats()?)
}

#[test]
fn conntrack_list_shows_translated_reply_tuples() -> Result<()> {
    const TCP_SPORT: u16 = 41000;
    const UDP_SPORT: u16 = 41001;
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;
    let (lan, wan, router) = (v4(LAN_HOST), v4(WAN_HOST), v4(ROUTER_WAN));

    let url = traffic::url(wan, HTTP_PORT, "hello.txt");
    traffic::http_get_from_port(&topo.lan, &url, TCP_SPORT)?;
    let reply = traffic::udp_request_from_port(&topo.lan, wan, UDP_PORT, UDP_SPORT, "q\n")?;
    ensure!(reply == "q\n", "wrong UDP reply: {reply:?}");
    ensure!(traffic::ping(&topo.lan, wan)?, "no echo reply");

    // Free ports and ids are kept, as netfilter keeps them; only the address changes.
    let tcp = the_only_entry(fw.conntrack(&["-p", "tcp"])?, "TCP")?;
    ensure!(
        (tcp.proto.as_str(), tcp.family.as_str()) == ("tcp", "ipv4")
            && tcp.orig == CtTuple::ports(lan, wan, TCP_SPORT, HTTP_PORT)
            && tcp.reply == CtTuple::ports(wan, router, HTTP_PORT, TCP_SPORT)
            && tcp.has_flag("ASSURED"),
        "wrong TCP entry: {tcp:#?}"
    );
    let udp = the_only_entry(fw.conntrack(&["-p", "udp"])?, "UDP")?;
    ensure!(
        (udp.proto.as_str(), udp.family.as_str()) == ("udp", "ipv4")
            && udp.orig == CtTuple::ports(lan, wan, UDP_SPORT, UDP_PORT)
            && udp.reply == CtTuple::ports(wan, router, UDP_PORT, UDP_SPORT)
            && !udp.has_flag("UNREPLIED"),
        "wrong UDP entry: {udp:#?}"
    );
    let icmp = the_only_entry(fw.conntrack(&["-p", "icmp"])?, "echo")?;
    let id = icmp.orig.id.context("echo entry without id")?;
    ensure!(
        (icmp.proto.as_str(), icmp.family.as_str()) == ("icmp", "ipv4")
            && icmp.orig == CtTuple::icmp(lan, wan, id, 8)
            && icmp.reply == CtTuple::icmp(wan, router, id, 0)
            && !icmp.has_flag("UNREPLIED"),
        "wrong echo entry: {icmp:#?}"
    );

    // The text form carries the same tuples, as `conntrack -L` prints them: the
    // original, its counters, then the reply.
    let text = fw.cli(["conntrack", "list"])?;
    for (proto, orig, reply) in [
        (
            "tcp",
            format!("src={lan} dst={wan} sport={TCP_SPORT} dport={HTTP_PORT} "),
            format!("src={wan} dst={router} sport={HTTP_PORT} dport={TCP_SPORT} "),
        ),
        (
            "udp",
            format!("src={lan} dst={wan} sport={UDP_SPORT} dport={UDP_PORT} "),
            format!("src={wan} dst={router} sport={UDP_PORT} dport={UDP_SPORT} "),
        ),
        (
            "icmp",
            format!("src={lan} dst={wan} type=8 code=0 id={id} "),
            format!("src={wan} dst={router} type=0 code=0 id={id} "),
        ),
    ] {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{proto} ")))
            .with_context(|| format!("no {proto} line in:\n{text}"))?;
        let in_order = line
            .find(&orig)
            .zip(line.find(&reply))
            .is_some_and(|(orig_at, reply_at)| orig_at < reply_at);
        ensure!(
            in_order,
            "`{line}` does not show {orig:?} followed by {reply:?}"
        );
    }
    Ok(())
}

#[test]
fn closed_and_idle_translated_connections_leave_the_table_with_both_halves() -> Result<()> {
    let topo = nat_topology()?;
    let config = masquerade().with_timeouts(Timeouts {
        udp: Some(2),
        icmp: Some(2),
        ..Timeouts::short_tcp_close(2)
    });
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;
    let wan = v4(WAN_HOST);
    // As on a router that has been up a while: the ager has already swept an empty
    // table when the connections arrive. Otherwise whether its first sweep came before
    // or after them would decide what this test sees.
    poll("the ager's first sweep", Duration::from_secs(5), || {
        let ager = fw.stats()?.ager;
        Ok(if ager.scans >= 1 {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("{ager:?}"))
        })
    })?;

    traffic::http_get(&topo.lan, &traffic::url(wan, HTTP_PORT, "hello.txt"))?;
    let reply = traffic::udp_request(&topo.lan, wan, UDP_PORT, "q\n")?;
    ensure!(reply == "q\n", "wrong UDP reply: {reply:?}");
    ensure!(traffic::ping(&topo.lan, wan)?, "no echo reply");

    // Each connection is two table entries. socat lingers a second after the reply, so
    // with 2 s timeouts a connection may already be unlisted (expired) while the ager
    // has yet to remove its entries: at least two per listed connection.
    let listed = fw.conntrack(&[])?;
    let entries = fw.stats()?.conntrack.entries;
    ensure!(
        !listed.is_empty() && entries >= 2 * listed.len() as u64,
        "{entries} table entries for {} listed connections: {listed:#?}",
        listed.len()
    );

    poll(
        "every connection and both its halves to leave the table",
        EXPIRY_TIMEOUT,
        || {
            let listed = fw.conntrack(&[])?;
            let entries = fw.stats()?.conntrack.entries;
            Ok(if listed.is_empty() && entries == 0 {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{entries} table entries; listed {listed:?}"))
            })
        },
    )?;
    ensure_no_nat_drops(&fw.stats()?)
}

#[test]
fn masquerade_follows_a_new_wan_address_without_restart() -> Result<()> {
    const NEW_ADDR: &str = "10.0.2.100";
    const STICKY_SPORT: u16 = 42000;
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let _udp = traffic::peer_address_server(&topo.wan, Transport::Udp, 7000)?;
    let _tcp = traffic::peer_address_server(&topo.wan, Transport::Tcp, 7001)?;
    let (wan, new_addr): (IpAddr, IpAddr) = (v4(WAN_HOST), NEW_ADDR.parse()?);
    let seen_from = |reply: &str| -> Result<Option<IpAddr>> {
        Ok(match reply.trim() {
            "" => None,
            text => Some(traffic::parse_peer(text)?.ip()),
        })
    };

    let reply = traffic::udp_request_from_port(&topo.lan, wan, 7000, STICKY_SPORT, "who?\n")?;
    ensure!(
        seen_from(&reply)? == Some(v4(ROUTER_WAN)),
        "before the change the server saw {reply:?}"
    );

    // The WAN host reaches the new address on the same subnet.
    topo.rtr.ip("addr del 10.0.2.1/24 dev wan0")?;
    topo.rtr.ip(&format!("addr add {NEW_ADDR}/24 dev wan0"))?;
    poll(
        "a new UDP flow to arrive from the new address",
        ADDRESS_TIMEOUT,
        || {
            let reply = traffic::udp_request(&topo.lan, wan, 7000, "who?\n")?;
            Ok(match seen_from(&reply)? {
                Some(addr) if addr == new_addr => Probe::Ready(()),
                seen => Probe::Pending(format!("server saw {seen:?}")),
            })
        },
    )?;

    let reply = traffic::tcp_request(&topo.lan, wan, 7001, "")?;
    ensure!(
        seen_from(&reply)? == Some(new_addr),
        "a new TCP connection arrived from {reply:?}, not {NEW_ADDR}"
    );
    let entry = the_only_entry(fw.conntrack(&["-p", "tcp", "--dport", "7001"])?, "TCP")?;
    ensure!(
        entry.reply.dst == new_addr,
        "the reply tuple is not at the new address: {entry:#?}"
    );

    // The flow bound to the old address never leaves with it. The datapath drops its
    // next datagram and deletes the binding (drop_nat_stale), so at most that one is
    // lost; after it the flow arrives from the new address.
    let (reply, stale) = fw.count_during("drop_nat_stale", || {
        traffic::udp_request_from_port(&topo.lan, wan, 7000, STICKY_SPORT, "who?\n")
    })?;
    match seen_from(&reply)? {
        None => ensure!(
            stale == 1,
            "the flow bound to the old address got no reply, and drop_nat_stale grew by \
             {stale}, not 1"
        ),
        Some(addr) => ensure!(
            addr == new_addr,
            "the flow bound to the old address arrived from {addr}"
        ),
    }
    let reply = traffic::udp_request_from_port(&topo.lan, wan, 7000, STICKY_SPORT, "who?\n")?;
    ensure!(
        seen_from(&reply)? == Some(new_addr),
        "after its stale binding the flow arrived from {reply:?}, not {NEW_ADDR}"
    );
    Ok(())
}

#[test]
fn ipv6_through_a_masquerading_interface_is_tracked_untranslated() -> Result<()> {
    const TCP_SPORT: u16 = 43000;
    const UDP_SPORT: u16 = 43001;
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;
    let (lan, wan) = (LAN_HOST.get(Family::V6), WAN_HOST.get(Family::V6));

    let before = fw.stats()?;
    let url = traffic::url(wan, HTTP_PORT, "hello.txt");
    let body = traffic::http_get_from_port(&topo.lan, &url, TCP_SPORT)?;
    ensure!(body == traffic::HELLO, "wrong body from {url}: {body:?}");
    let reply = traffic::udp_request_from_port(&topo.lan, wan, UDP_PORT, UDP_SPORT, "q\n")?;
    ensure!(reply == "q\n", "wrong UDP reply: {reply:?}");
    ensure!(traffic::ping(&topo.lan, wan)?, "no IPv6 echo reply");
    let after = fw.stats()?;
    for counter in [
        "nat_src_rewritten",
        "nat_dst_rewritten",
        "nat_port_remapped",
    ] {
        let grown = grew(&before, &after, counter)?;
        ensure!(grown == 0, "{counter} grew by {grown} for IPv6 traffic");
    }
    ensure_no_nat_drops(&after)?;

    // Stateful all the same: each exchange is tracked, its reply tuple the plain inverse.
    let tcp = the_only_entry(fw.conntrack(&["-p", "tcp"])?, "TCP")?;
    ensure!(
        tcp.family == "ipv6"
            && tcp.orig == CtTuple::ports(lan, wan, TCP_SPORT, HTTP_PORT)
            && tcp.reply == CtTuple::ports(wan, lan, HTTP_PORT, TCP_SPORT),
        "wrong TCP entry: {tcp:#?}"
    );
    let udp = the_only_entry(fw.conntrack(&["-p", "udp"])?, "UDP")?;
    ensure!(
        udp.family == "ipv6"
            && udp.orig == CtTuple::ports(lan, wan, UDP_SPORT, UDP_PORT)
            && udp.reply == CtTuple::ports(wan, lan, UDP_PORT, UDP_SPORT),
        "wrong UDP entry: {udp:#?}"
    );
    let wan_text = wan.to_string();
    let echo = the_only_entry(fw.conntrack(&["-p", "icmpv6", "--dst", &wan_text])?, "echo")?;
    let id = echo.orig.id.context("echo entry without id")?;
    ensure!(
        echo.orig == CtTuple::icmp(lan, wan, id, 128)
            && echo.reply == CtTuple::icmp(wan, lan, id, 129),
        "wrong echo entry: {echo:#?}"
    );
    Ok(())
}
