//! Router mode: the firewall runs on `rtr` between a LAN (`lan0`, role lan) and a WAN
//! (`wan0`, role wan). LAN-originated traffic is allowed and tracked; from the WAN only
//! replies and what a forward rule accepts get through.

use anyhow::{Context as _, Result, ensure};
use tests::{
    Chain, Config, Family, Firewall, Rule,
    topology::{self, LAN_HOST, WAN_HOST},
    traffic::{self, ConnectOutcome},
};

fn outbound_tcp_from_lan_reaches_wan(family: Family) -> Result<()> {
    let topo = topology::router("rt")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.wan, 8080, www.path())?;

    let new_before = fw.counter("accept_new")?;
    let established_before = fw.counter("accept_established")?;
    let url = traffic::url(WAN_HOST.get(family), 8080, "hello.txt");
    let body = traffic::http_get(&topo.lan, &url)?;
    ensure!(body == traffic::HELLO, "wrong body from {url}: {body:?}");

    // The SYN was accepted as a new connection, the replies as part of it.
    let stats = fw.stats()?;
    let new = stats.counter("accept_new")? - new_before;
    let established = stats.counter("accept_established")? - established_before;
    ensure!(new >= 1, "accept_new did not grow: {stats:?}");
    ensure!(
        established >= 1,
        "accept_established did not grow: {stats:?}"
    );
    Ok(())
}

#[test]
fn outbound_tcp_from_lan_reaches_wan_over_ipv4() -> Result<()> {
    outbound_tcp_from_lan_reaches_wan(Family::V4)
}

#[test]
fn outbound_tcp_from_lan_reaches_wan_over_ipv6() -> Result<()> {
    outbound_tcp_from_lan_reaches_wan(Family::V6)
}

fn udp_request_from_lan_gets_its_reply(family: Family) -> Result<()> {
    let topo = topology::router("rt")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let _echo = traffic::udp_echo_server(&topo.wan, 5353)?;

    let (reply, established) = fw.count_during("accept_established", || {
        traffic::udp_request(&topo.lan, WAN_HOST.get(family), 5353, "question\n")
    })?;
    ensure!(reply == "question\n", "wrong UDP reply: {reply:?}");
    ensure!(established >= 1, "the reply was not counted as established");
    Ok(())
}

#[test]
fn udp_request_from_lan_gets_its_reply_over_ipv4() -> Result<()> {
    udp_request_from_lan_gets_its_reply(Family::V4)
}

#[test]
fn udp_request_from_lan_gets_its_reply_over_ipv6() -> Result<()> {
    udp_request_from_lan_gets_its_reply(Family::V6)
}

fn ping_from_lan_gets_its_reply(family: Family) -> Result<()> {
    let topo = topology::router("rt")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;

    let before = fw.stats()?;
    ensure!(
        traffic::ping(&topo.lan, WAN_HOST.get(family))?,
        "no echo reply from the WAN host over {family}"
    );

    // The firewall decided both ways: the echo request was accepted as a
    // new connection from the LAN, the reply as part of it.
    let after = fw.stats()?;
    let new = after.counter("accept_new")? - before.counter("accept_new")?;
    let established =
        after.counter("accept_established")? - before.counter("accept_established")?;
    ensure!(new >= 1, "accept_new did not grow: {after:?}");
    ensure!(
        established >= 1,
        "accept_established did not grow: {after:?}"
    );
    Ok(())
}

#[test]
fn ping_from_lan_gets_its_reply_over_ipv4() -> Result<()> {
    ping_from_lan_gets_its_reply(Family::V4)
}

#[test]
fn ping_from_lan_gets_its_reply_over_ipv6() -> Result<()> {
    ping_from_lan_gets_its_reply(Family::V6)
}

fn unsolicited_traffic_from_wan_to_lan_is_dropped_by_policy(family: Family) -> Result<()> {
    let topo = topology::router("rt")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.lan, 8080, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.lan, 5353)?;
    let lan_host = LAN_HOST.get(family);

    let (outcome, dropped) = fw.count_during("drop_policy", || {
        traffic::try_connect(&topo.wan, lan_host, 8080)
    })?;
    ensure!(
        outcome == ConnectOutcome::TimedOut,
        "TCP from the WAN to the LAN over {family}: {outcome:?}, expected the SYN dropped"
    );
    ensure!(dropped >= 1, "drop_policy did not count the dropped SYN");

    let (reply, dropped) = fw.count_during("drop_policy", || {
        traffic::udp_request(&topo.wan, lan_host, 5353, "unsolicited\n")
    })?;
    ensure!(reply.is_empty(), "UDP from the WAN got a reply: {reply:?}");
    ensure!(dropped >= 1, "drop_policy did not count the UDP datagram");

    let (answered, dropped) =
        fw.count_during("drop_policy", || traffic::ping(&topo.wan, lan_host))?;
    ensure!(!answered, "ping from the WAN to the LAN was answered");
    ensure!(dropped >= 1, "drop_policy did not count the echo request");
    Ok(())
}

#[test]
fn unsolicited_traffic_from_wan_to_lan_is_dropped_by_policy_over_ipv4() -> Result<()> {
    unsolicited_traffic_from_wan_to_lan_is_dropped_by_policy(Family::V4)
}

#[test]
fn unsolicited_traffic_from_wan_to_lan_is_dropped_by_policy_over_ipv6() -> Result<()> {
    unsolicited_traffic_from_wan_to_lan_is_dropped_by_policy(Family::V6)
}

fn forward_rule_opens_one_lan_port_to_wan(family: Family) -> Result<()> {
    let topo = topology::router("rt")?;
    let config = Config::router().with_rule(Rule::accept_tcp_port(Chain::Forward, 8081));
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _open = traffic::http_server(&topo.lan, 8081, www.path())?;
    let _closed = traffic::http_server(&topo.lan, 8080, www.path())?;
    let lan_host = LAN_HOST.get(family);

    let body = traffic::http_get(&topo.wan, &traffic::url(lan_host, 8081, "hello.txt"))
        .context("the port opened by the forward rule is not reachable from the WAN")?;
    ensure!(body == traffic::HELLO, "wrong body: {body:?}");
    let rule = fw.stats()?.rule(1)?.clone();
    ensure!(rule.packets >= 1, "rule 1 matched no packet: {rule:?}");

    // The connection it accepted is tracked like any other.
    let entries = fw.conntrack(&["-p", "tcp", "--dport", "8081"])?;
    ensure!(
        entries
            .iter()
            .any(|entry| entry.orig.src == WAN_HOST.get(family) && entry.orig.dst == lan_host),
        "no WAN → LAN entry for port 8081: {entries:#?}"
    );

    let outcome = traffic::try_connect(&topo.wan, lan_host, 8080)?;
    ensure!(
        outcome == ConnectOutcome::TimedOut,
        "port 8080 has no rule but the WAN got {outcome:?}"
    );
    Ok(())
}

#[test]
fn forward_rule_opens_one_lan_port_to_wan_over_ipv4() -> Result<()> {
    forward_rule_opens_one_lan_port_to_wan(Family::V4)
}

#[test]
fn forward_rule_opens_one_lan_port_to_wan_over_ipv6() -> Result<()> {
    forward_rule_opens_one_lan_port_to_wan(Family::V6)
}
