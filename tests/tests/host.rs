//! Host mode: the firewall protects the host it runs on; its only interface `eth0` has
//! role wan. Host-originated traffic is allowed and tracked; inbound only replies and
//! what an input rule accepts.

use anyhow::{Context as _, Result, ensure};
use tests::{
    Chain, Config, Family, Firewall, Rule,
    topology::{self, HOST, PEER},
    traffic::{self, ConnectOutcome},
};

fn outbound_tcp_from_host_reaches_peer(family: Family) -> Result<()> {
    let topo = topology::host("host")?;
    let fw = Firewall::start(&topo.host, &Config::host())?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.peer, 8080, www.path())?;

    let url = traffic::url(PEER.get(family), 8080, "hello.txt");
    let (body, established) =
        fw.count_during("accept_established", || traffic::http_get(&topo.host, &url))?;
    ensure!(body == traffic::HELLO, "wrong body from {url}: {body:?}");
    ensure!(
        established >= 1,
        "the replies were not counted as established"
    );
    Ok(())
}

#[test]
fn outbound_tcp_from_host_reaches_peer_over_ipv4() -> Result<()> {
    outbound_tcp_from_host_reaches_peer(Family::V4)
}

#[test]
fn outbound_tcp_from_host_reaches_peer_over_ipv6() -> Result<()> {
    outbound_tcp_from_host_reaches_peer(Family::V6)
}

fn udp_request_from_host_gets_its_reply(family: Family) -> Result<()> {
    let topo = topology::host("host")?;
    let _fw = Firewall::start(&topo.host, &Config::host())?;
    let _echo = traffic::udp_echo_server(&topo.peer, 5353)?;
    let reply = traffic::udp_request(&topo.host, PEER.get(family), 5353, "question\n")?;
    ensure!(reply == "question\n", "wrong UDP reply: {reply:?}");
    Ok(())
}

#[test]
fn udp_request_from_host_gets_its_reply_over_ipv4() -> Result<()> {
    udp_request_from_host_gets_its_reply(Family::V4)
}

#[test]
fn udp_request_from_host_gets_its_reply_over_ipv6() -> Result<()> {
    udp_request_from_host_gets_its_reply(Family::V6)
}

fn ping_from_host_gets_its_reply(family: Family) -> Result<()> {
    let topo = topology::host("host")?;
    let _fw = Firewall::start(&topo.host, &Config::host())?;
    ensure!(
        traffic::ping(&topo.host, PEER.get(family))?,
        "no echo reply from the peer over {family}"
    );
    Ok(())
}

#[test]
fn ping_from_host_gets_its_reply_over_ipv4() -> Result<()> {
    ping_from_host_gets_its_reply(Family::V4)
}

#[test]
fn ping_from_host_gets_its_reply_over_ipv6() -> Result<()> {
    ping_from_host_gets_its_reply(Family::V6)
}

fn unsolicited_traffic_to_host_is_dropped_by_policy(family: Family) -> Result<()> {
    let topo = topology::host("host")?;
    let fw = Firewall::start(&topo.host, &Config::host())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.host, 8080, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.host, 5353)?;
    let host = HOST.get(family);

    let (outcome, dropped) = fw.count_during("drop_policy", || {
        traffic::try_connect(&topo.peer, host, 8080)
    })?;
    ensure!(
        outcome == ConnectOutcome::TimedOut,
        "TCP from the peer to the host over {family}: {outcome:?}, expected the SYN dropped"
    );
    ensure!(dropped >= 1, "drop_policy did not count the dropped SYN");

    let (reply, dropped) = fw.count_during("drop_policy", || {
        traffic::udp_request(&topo.peer, host, 5353, "unsolicited\n")
    })?;
    ensure!(reply.is_empty(), "UDP from the peer got a reply: {reply:?}");
    ensure!(dropped >= 1, "drop_policy did not count the UDP datagram");

    let (answered, dropped) = fw.count_during("drop_policy", || traffic::ping(&topo.peer, host))?;
    ensure!(!answered, "ping from the peer to the host was answered");
    ensure!(dropped >= 1, "drop_policy did not count the echo request");
    Ok(())
}

#[test]
fn unsolicited_traffic_to_host_is_dropped_by_policy_over_ipv4() -> Result<()> {
    unsolicited_traffic_to_host_is_dropped_by_policy(Family::V4)
}

#[test]
fn unsolicited_traffic_to_host_is_dropped_by_policy_over_ipv6() -> Result<()> {
    unsolicited_traffic_to_host_is_dropped_by_policy(Family::V6)
}

fn input_rule_opens_one_host_port(family: Family) -> Result<()> {
    let topo = topology::host("host")?;
    let config = Config::host().with_rule(Rule::accept_tcp_port(Chain::Input, 8081));
    let fw = Firewall::start(&topo.host, &config)?;
    let www = traffic::web_root()?;
    let _open = traffic::http_server(&topo.host, 8081, www.path())?;
    let _closed = traffic::http_server(&topo.host, 8080, www.path())?;
    let host = HOST.get(family);

    let body = traffic::http_get(&topo.peer, &traffic::url(host, 8081, "hello.txt"))
        .context("the port opened by the input rule is not reachable")?;
    ensure!(body == traffic::HELLO, "wrong body: {body:?}");
    let rule = fw.stats()?.rule(1)?.clone();
    ensure!(rule.packets >= 1, "rule 1 matched no packet: {rule:?}");

    // `rules list` shows the same rule, under INPUT, with its counters.
    let listed: serde_json::Value = serde_json::from_str(&fw.cli(["rules", "list", "--json"])?)?;
    let input = &listed[0];
    ensure!(
        input["chain"] == "INPUT" && input["policy"] == "DROP",
        "rules list: {listed}"
    );
    let first = &input["rules"][0];
    ensure!(
        first["num"] == 1
            && first["action"] == "ACCEPT"
            && first["packets"].as_u64() == Some(rule.packets)
            && first["rule"]
                .as_str()
                .is_some_and(|r| r.contains("dport 8081")),
        "rules list entry: {first}"
    );
    let text = fw.cli(["rules", "list"])?;
    ensure!(
        text.contains("Chain INPUT (policy DROP)") && text.contains("dport 8081"),
        "rules list text: {text}"
    );

    let outcome = traffic::try_connect(&topo.peer, host, 8080)?;
    ensure!(
        outcome == ConnectOutcome::TimedOut,
        "port 8080 has no rule but the peer got {outcome:?}"
    );
    Ok(())
}

#[test]
fn input_rule_opens_one_host_port_over_ipv4() -> Result<()> {
    input_rule_opens_one_host_port(Family::V4)
}

#[test]
fn input_rule_opens_one_host_port_over_ipv6() -> Result<()> {
    input_rule_opens_one_host_port(Family::V6)
}
