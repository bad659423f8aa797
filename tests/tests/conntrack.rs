//! The connection table as `conntrack list` shows it: the right tuples and flags for
//! each protocol, filters, and entries leaving when connections close or go idle.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use tests::{
    Config, CtEntry, Family, Firewall, Probe, Timeouts, poll,
    topology::{self, HOST, LAN_HOST, PEER, WAN_HOST},
    traffic,
};

/// Bound on how long an expired entry may linger: its timeout plus the ager's period.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(15);

fn the_only_entry(entries: Vec<CtEntry>, what: &str) -> Result<CtEntry> {
    match <[CtEntry; 1]>::try_from(entries) {
        Ok([entry]) => Ok(entry),
        Err(entries) => bail!(
            "expected one {what} entry, found {}: {entries:#?}",
            entries.len()
        ),
    }
}

fn check_tuples(entry: &CtEntry, client: IpAddr, server: IpAddr, port: u16) -> Result<()> {
    let (orig, reply) = (&entry.orig, &entry.reply);
    let sport = orig.sport.context("orig tuple without sport")?;
    ensure!(
        orig.src == client && orig.dst == server && orig.dport == Some(port),
        "wrong orig tuple: {entry:#?}"
    );
    ensure!(
        reply.src == server
            && reply.dst == client
            && reply.sport == Some(port)
            && reply.dport == Some(sport),
        "reply tuple is not the orig tuple reversed: {entry:#?}"
    );
    Ok(())
}

fn finished_http_exchange_is_listed_as_assured_tcp(family: Family) -> Result<()> {
    let topo = topology::router("ct")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.wan, 8080, www.path())?;
    let (client, server) = (LAN_HOST.get(family), WAN_HOST.get(family));
    traffic::http_get(&topo.lan, &traffic::url(server, 8080, "hello.txt"))?;

    let entry = the_only_entry(fw.conntrack(&["-p", "tcp", "--dport", "8080"])?, "TCP")?;
    ensure!(
        entry.proto == "tcp" && entry.family == family.conntrack_name(),
        "wrong proto or family: {entry:#?}"
    );
    check_tuples(&entry, client, server, 8080)?;
    ensure!(entry.tcp_state.is_some(), "TCP entry without tcp_state");
    ensure!(
        entry.has_flag("ASSURED"),
        "finished exchange not ASSURED: {entry:#?}"
    );
    ensure!(
        !entry.has_flag("UNREPLIED"),
        "answered yet UNREPLIED: {entry:#?}"
    );
    let (packets, bytes) = (entry.packets, entry.bytes);
    ensure!(
        packets.orig >= 3 && packets.reply >= 3,
        "a handshake, request and close are at least 3 packets each way: {entry:#?}"
    );
    ensure!(
        bytes.reply > traffic::HELLO.len() as u64,
        "reply bytes do not cover the body: {entry:#?}"
    );
    Ok(())
}

#[test]
fn finished_http_exchange_is_listed_as_assured_tcp_over_ipv4() -> Result<()> {
    finished_http_exchange_is_listed_as_assured_tcp(Family::V4)
}

#[test]
fn finished_http_exchange_is_listed_as_assured_tcp_over_ipv6() -> Result<()> {
    finished_http_exchange_is_listed_as_assured_tcp(Family::V6)
}

fn answered_udp_request_is_listed_with_its_reply_tuple(family: Family) -> Result<()> {
    let topo = topology::router("ct")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let _echo = traffic::udp_echo_server(&topo.wan, 5353)?;
    let (client, server) = (LAN_HOST.get(family), WAN_HOST.get(family));
    let reply = traffic::udp_request(&topo.lan, server, 5353, "question\n")?;
    ensure!(reply == "question\n", "wrong UDP reply: {reply:?}");

    let entry = the_only_entry(fw.conntrack(&["-p", "udp"])?, "UDP")?;
    ensure!(
        entry.proto == "udp" && entry.family == family.conntrack_name(),
        "wrong proto or family: {entry:#?}"
    );
    check_tuples(&entry, client, server, 5353)?;
    ensure!(entry.tcp_state.is_none(), "UDP entry with a tcp_state");
    ensure!(
        !entry.has_flag("UNREPLIED"),
        "answered yet UNREPLIED: {entry:#?}"
    );
    ensure!(
        entry.packets.orig >= 1 && entry.packets.reply >= 1,
        "packets not counted both ways: {entry:#?}"
    );
    Ok(())
}

#[test]
fn answered_udp_request_is_listed_with_its_reply_tuple_over_ipv4() -> Result<()> {
    answered_udp_request_is_listed_with_its_reply_tuple(Family::V4)
}

#[test]
fn answered_udp_request_is_listed_with_its_reply_tuple_over_ipv6() -> Result<()> {
    answered_udp_request_is_listed_with_its_reply_tuple(Family::V6)
}

fn ping_is_listed_as_echo_request_and_reply_with_one_id(family: Family) -> Result<()> {
    let topo = topology::router("ct")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let (client, server) = (LAN_HOST.get(family), WAN_HOST.get(family));
    ensure!(traffic::ping(&topo.lan, server)?, "no echo reply");

    let entries = fw.conntrack(&["-p", family.icmp_proto()])?;
    // Neighbour discovery may be listed too; the echo is the one to the WAN host.
    let echoes: Vec<_> = entries
        .iter()
        .filter(|entry| entry.orig.dst == server)
        .cloned()
        .collect();
    let entry = the_only_entry(echoes, "echo")?;
    check_echo_entry(&entry, family, client, server)
        .with_context(|| format!("all {} entries: {entries:#?}", family.icmp_proto()))
}

fn check_echo_entry(entry: &CtEntry, family: Family, client: IpAddr, server: IpAddr) -> Result<()> {
    let (request, reply) = family.echo_types();
    ensure!(
        entry.proto == family.icmp_proto() && entry.family == family.conntrack_name(),
        "wrong proto or family: {entry:#?}"
    );
    let (orig, back) = (&entry.orig, &entry.reply);
    ensure!(
        orig.src == client && orig.icmp_type == Some(request),
        "orig is not our echo request: {entry:#?}"
    );
    ensure!(
        back.src == server && back.dst == client && back.icmp_type == Some(reply),
        "reply is not the echo reply: {entry:#?}"
    );
    ensure!(
        orig.id.is_some() && orig.id == back.id,
        "echo id missing or different between directions: {entry:#?}"
    );
    ensure!(
        !entry.has_flag("UNREPLIED"),
        "answered yet UNREPLIED: {entry:#?}"
    );
    Ok(())
}

#[test]
fn ping_is_listed_as_echo_request_and_reply_with_one_id_over_ipv4() -> Result<()> {
    ping_is_listed_as_echo_request_and_reply_with_one_id(Family::V4)
}

#[test]
fn ping_is_listed_as_echo_request_and_reply_with_one_id_over_ipv6() -> Result<()> {
    ping_is_listed_as_echo_request_and_reply_with_one_id(Family::V6)
}

/// Polls `filter` until no entry is left.
fn wait_until_gone(fw: &Firewall, filter: &[&str], what: &str) -> Result<()> {
    poll(
        &format!("the {what} entry to leave the table"),
        EXPIRY_TIMEOUT,
        || {
            let entries = fw.conntrack(filter)?;
            Ok(if entries.is_empty() {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{entries:?}"))
            })
        },
    )
}

fn closed_tcp_connection_leaves_the_table(family: Family) -> Result<()> {
    let topo = topology::router("ct")?;
    let config = Config::router().with_timeouts(Timeouts::short_tcp_close(2));
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.wan, 8080, www.path())?;
    traffic::http_get(
        &topo.lan,
        &traffic::url(WAN_HOST.get(family), 8080, "hello.txt"),
    )?;

    let filter = ["-p", "tcp", "--dport", "8080"];
    // Both sides closed: the last ACK moves the entry to TIME_WAIT (or CLOSE after a RST).
    let state = poll(
        "the closed connection to reach TIME_WAIT or CLOSE",
        Duration::from_secs(2),
        || {
            let entries = fw.conntrack(&filter)?;
            let states: Vec<_> = entries.iter().map(|e| e.tcp_state.clone()).collect();
            Ok(match states.as_slice() {
                [Some(state)] if state == "TIME_WAIT" || state == "CLOSE" => {
                    Probe::Ready(state.clone())
                }
                _ => Probe::Pending(format!("states {states:?}")),
            })
        },
    )?;
    wait_until_gone(&fw, &filter, &format!("{state} TCP"))
}

#[test]
fn closed_tcp_connection_leaves_the_table_over_ipv4() -> Result<()> {
    closed_tcp_connection_leaves_the_table(Family::V4)
}

#[test]
fn closed_tcp_connection_leaves_the_table_over_ipv6() -> Result<()> {
    closed_tcp_connection_leaves_the_table(Family::V6)
}

fn check_expires_within(fw: &Firewall, filter: &[&str], what: &str, limit: u64) -> Result<()> {
    let entry = the_only_entry(fw.conntrack(filter)?, what)?;
    ensure!(
        entry.expires_in <= limit,
        "{what} entry expires in {} s, over the configured {limit} s",
        entry.expires_in
    );
    Ok(())
}

fn idle_udp_and_icmp_entries_expire(family: Family) -> Result<()> {
    let topo = topology::router("ct")?;
    let config = Config::router().with_timeouts(Timeouts {
        udp: Some(3),
        udp_stream: Some(3),
        icmp: Some(3),
        ..Timeouts::default()
    });
    let fw = Firewall::start(&topo.rtr, &config)?;
    let _echo = traffic::udp_echo_server(&topo.wan, 5353)?;
    let server = WAN_HOST.get(family);
    let server_text = server.to_string();

    let udp = ["-p", "udp", "--dst", &server_text];
    let icmp = ["-p", family.icmp_proto(), "--dst", &server_text];
    // Each entry is listed right after its exchange: socat lingers a second after the
    // reply, so a 3 s timeout leaves time to see the entry before it expires.
    traffic::udp_request(&topo.lan, server, 5353, "question\n")?;
    check_expires_within(&fw, &udp, "UDP", 3)?;
    ensure!(traffic::ping(&topo.lan, server)?, "no echo reply");
    check_expires_within(&fw, &icmp, "echo", 3)?;
    wait_until_gone(&fw, &udp, "idle UDP")?;
    wait_until_gone(&fw, &icmp, "idle echo")?;
    let ager = fw.stats()?.ager;
    ensure!(
        ager.removed >= 2,
        "the ager did not count the removals: {ager:?}"
    );
    Ok(())
}

#[test]
fn idle_udp_and_icmp_entries_expire_over_ipv4() -> Result<()> {
    idle_udp_and_icmp_entries_expire(Family::V4)
}

#[test]
fn idle_udp_and_icmp_entries_expire_over_ipv6() -> Result<()> {
    idle_udp_and_icmp_entries_expire(Family::V6)
}

#[test]
fn list_filters_select_by_protocol_address_and_port() -> Result<()> {
    let topo = topology::router("ct")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.wan, 8080, www.path())?;
    let _echo = traffic::udp_echo_server(&topo.wan, 5353)?;
    let server = WAN_HOST.get(Family::V4);
    traffic::http_get(&topo.lan, &traffic::url(server, 8080, "hello.txt"))?;
    traffic::udp_request(&topo.lan, server, 5353, "question\n")?;
    ensure!(traffic::ping(&topo.lan, server)?, "no echo reply");

    let protos = |filter: &[&str]| -> Result<Vec<String>> {
        let mut protos: Vec<_> = fw
            .conntrack(filter)?
            .into_iter()
            .map(|entry| entry.proto)
            .collect();
        protos.sort();
        Ok(protos)
    };
    let (lan, wan) = (LAN_HOST.v4, WAN_HOST.v4);
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--dst", wan], &["icmp", "tcp", "udp"]),
        (&["--src", lan, "--dst", wan], &["icmp", "tcp", "udp"]),
        (&["-p", "udp"], &["udp"]),
        (&["-p", "tcp", "--dport", "8080"], &["tcp"]),
        (&["--dport", "5353"], &["udp"]),
        // Address filters match the original direction, where the WAN is never the source.
        (&["--src", wan], &[]),
    ];
    for (filter, expected) in cases {
        let got = protos(filter)?;
        ensure!(
            got == expected,
            "filter {filter:?} listed {got:?}, expected {expected:?}"
        );
    }
    let sport = fw.conntrack(&["-p", "tcp"])?[0]
        .orig
        .sport
        .context("no sport")?
        .to_string();
    ensure!(
        protos(&["--sport", &sport])? == ["tcp"],
        "--sport {sport} did not select the TCP entry"
    );
    Ok(())
}

#[test]
fn text_list_prints_conntrack_style_lines() -> Result<()> {
    let topo = topology::router("ct")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _http = traffic::http_server(&topo.wan, 8080, www.path())?;
    traffic::http_get(
        &topo.lan,
        &traffic::url(WAN_HOST.get(Family::V4), 8080, "hello.txt"),
    )?;

    let text = fw.cli(["conntrack", "list", "-p", "tcp"])?;
    let line = text
        .lines()
        .find(|line| line.starts_with("tcp"))
        .with_context(|| format!("no line starting with `tcp`:\n{text}"))?;
    // `conntrack -L`: proto, number, timeout, state, orig tuple, reply tuple, flags.
    for part in [
        "src=10.0.1.2 dst=10.0.2.2 sport=",
        " dport=8080 ",
        "src=10.0.2.2 dst=10.0.1.2 sport=8080 dport=",
        "[ASSURED]",
    ] {
        ensure!(line.contains(part), "{part:?} missing from `{line}`");
    }
    let mut words = line.split_whitespace();
    ensure!(
        words.nth(1) == Some("6") && words.next().is_some_and(|t| t.parse::<u64>().is_ok()),
        "`{line}` does not start with `tcp 6 <timeout>`"
    );
    Ok(())
}

#[test]
fn host_originated_connection_is_tracked_in_host_mode() -> Result<()> {
    let topo = topology::host("ct")?;
    let fw = Firewall::start(&topo.host, &Config::host())?;
    let www = traffic::web_root()?;
    let _server = traffic::http_server(&topo.peer, 8080, www.path())?;
    for family in [Family::V4, Family::V6] {
        let (client, server) = (HOST.get(family), PEER.get(family));
        traffic::http_get(&topo.host, &traffic::url(server, 8080, "hello.txt"))?;
        let server_text = server.to_string();
        let entry = the_only_entry(fw.conntrack(&["-p", "tcp", "--dst", &server_text])?, "TCP")?;
        check_tuples(&entry, client, server, 8080)?;
        ensure!(entry.has_flag("ASSURED"), "not ASSURED: {entry:#?}");
    }
    Ok(())
}

/// `conntrack count`, `delete` and `flush` (issue 14, the `conntrack -C/-D/-F` part): a
/// deletion takes the matching connections out whole (neither half is left), leaves the
/// others, prints what it deleted, and deleting nothing is an error; traffic after it
/// makes a fresh connection and still gets its answer; a flush empties the table.
fn count_delete_and_flush(family: Family) -> Result<()> {
    let topo = topology::router("ctdel")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let _echo = traffic::udp_echo_server(&topo.wan, 5353)?;
    let server = WAN_HOST.get(family);
    let reply = traffic::udp_request(&topo.lan, server, 5353, "one\n")?;
    ensure!(reply == "one\n", "wrong UDP reply: {reply:?}");
    ensure!(traffic::ping(&topo.lan, server)?, "no echo reply");

    let count = |filter: &[&str]| -> Result<u64> {
        let args = ["conntrack", "count"].iter().chain(filter);
        let out = fw.cli(args)?;
        out.trim()
            .parse()
            .with_context(|| format!("`conntrack count` printed {out:?}"))
    };
    ensure!(
        count(&["-p", "udp", "--dport", "5353"])? == 1,
        "one UDP flow"
    );
    let all = count(&[])?;
    ensure!(all >= 2, "the UDP flow and the ping: {all}");
    let (this, other) = match family {
        Family::V4 => ("ipv4", "ipv6"),
        Family::V6 => ("ipv6", "ipv4"),
    };
    ensure!(count(&["-f", this])? == all, "-f {this} left some out");
    ensure!(count(&["-f", other])? == 0, "-f {other} matched");
    ensure!(
        count(&["--status", "seen_reply", "-p", "udp"])? == 1,
        "the answered UDP flow is not SEEN_REPLY"
    );
    ensure!(
        count(&["--status", "UNREPLIED", "-p", "udp"])? == 0,
        "the answered UDP flow is UNREPLIED"
    );
    ensure!(
        count(&["--reply-port-src", "5353"])? == 1,
        "the reply tuple's source port"
    );
    ensure!(count(&["--any-nat"])? == 0, "nothing here is translated");

    let deleted = fw.cli(["conntrack", "delete", "-p", "udp", "--dport", "5353"])?;
    ensure!(
        deleted.lines().count() == 1 && deleted.contains("dport=5353"),
        "`conntrack delete` printed {deleted:?}"
    );
    ensure!(
        fw.conntrack(&["-p", "udp"])?.is_empty(),
        "the deleted UDP flow is still listed"
    );
    ensure!(
        count(&[])? == all - 1,
        "the delete took more than its match"
    );

    let again = fw.command(["conntrack", "delete", "-p", "udp", "--dport", "5353"])?;
    ensure!(
        !again.status.success(),
        "deleting nothing succeeded: {again:?}"
    );
    let err = String::from_utf8_lossy(&again.stderr);
    ensure!(
        err.contains("nothing was deleted"),
        "deleting nothing said {err:?}"
    );

    // The flow's next datagram starts a fresh connection and is answered.
    let reply = traffic::udp_request(&topo.lan, server, 5353, "two\n")?;
    ensure!(
        reply == "two\n",
        "wrong UDP reply after the delete: {reply:?}"
    );
    let entry = the_only_entry(fw.conntrack(&["-p", "udp"])?, "UDP")?;
    ensure!(
        !entry.has_flag("UNREPLIED"),
        "the fresh connection is not answered: {entry:#?}"
    );

    fw.cli(["conntrack", "flush"])?;
    ensure!(count(&[])? == 0, "the table is not empty after a flush");
    Ok(())
}

#[test]
fn count_delete_and_flush_over_ipv4() -> Result<()> {
    count_delete_and_flush(Family::V4)
}

#[test]
fn count_delete_and_flush_over_ipv6() -> Result<()> {
    count_delete_and_flush(Family::V6)
}
