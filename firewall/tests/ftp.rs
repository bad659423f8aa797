//! The FTP helper under BPF_PROG_TEST_RUN: control connections to a helped
//! port go through the real XDP, TC ingress and TC egress programs (TC
//! egress tail-calls into `firewall_tc_ftp` inside the kernel), and the
//! tests check the expectations commands create, the RELATED data
//! connections they let in, and, under NAT, the rewritten command text,
//! lengths, checksums and sequence correction. Every checksum is recomputed
//! with etherparse, never with the code under test.
//!
//! Topology as in `nat.rs`: `lan0` 10.0.1.1/24 (lan), `wan0` 10.0.2.1/24
//! (wan), forwarding on, default route out of `wan0`.
//!
//! Needs root (BPF and namespaces): `cargo test -p firewall --test ftp`.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use firewall_common::{
    Counter::{self, *},
    FAMILY_V4, IPPROTO_TCP, TcpState,
    ct::flags,
    ftp::{ExpectKey, Expectation, FtpCmd, expect_flags},
    nat::NatRewrite,
    tcp::{TCP_ACK, TCP_PSH, TCP_SYN},
};

/// After [`ROUTER_IP`]: the gateway resolved. IPv4 only.
const ROUTER_MORE: &[&str] = &[GATEWAY_NEIGH];
const IPV4_FORWARDING: &[(&str, &str)] = &[("net.ipv4.conf.all.forwarding", "1")];

const HELPER: &str = "[[helper]]\nproto = \"tcp\"\nport = 21\nkind = \"ftp\"\n";

const CLIENT: &str = "10.0.1.5:40000";
const SERVER: &str = "203.0.113.7:21";
/// The SNAT address of the NAT tests: longer than the client's address in
/// text, so the rewrite changes the segment's length.
const SNAT_ADDR: &str = "192.168.200.100";
const SNAT: &str = "snat = \"192.168.200.100\"";

/// The client's and the server's next sequence numbers after
/// [`handshake`].
const CLIENT_SEQ: u32 = 1001;
const SERVER_SEQ: u32 = 7001;

/// A router with the FTP helper on port 21 and `wan_keys` (NAT settings)
/// on `wan0`.
fn router(wan_keys: &str) -> Harness {
    router_harness(ROUTER_MORE, IPV4_FORWARDING, wan_keys, HELPER)
}

fn raw(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            core::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// The expectation key for a data connection from `src` (any port) to
/// `dst`, built by hand rather than with `ExpectKey`'s constructors.
fn expect_key(src: IpAddr, dst: SocketAddr) -> ExpectKey {
    ExpectKey {
        src: raw(src),
        dst: raw(dst.ip()),
        dport: dst.port().to_be(),
        proto: IPPROTO_TCP,
        family: if src.is_ipv4() {
            FAMILY_V4
        } else {
            firewall_common::FAMILY_V6
        },
    }
}

fn expectation(h: &Harness, k: &ExpectKey) -> Option<Expectation> {
    h.maps.expect.get(k, 0).ok()
}

fn expect_count(h: &Harness) -> usize {
    h.maps.expect.keys().count()
}

/// What a TCP/IPv4 frame carries, after asserting with etherparse that its
/// IPv4 header checksum, total length and TCP checksum are right.
#[derive(Debug)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    total_len: u16,
    payload: Vec<u8>,
}

#[track_caller]
fn seg(frame: &[u8]) -> Seg {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("frame parses");
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("not IPv4: {:?}", h.net);
    };
    let Some(TransportHeader::Tcp(t)) = &h.transport else {
        panic!("not TCP: {:?}", h.transport);
    };
    let payload = h.payload.slice();
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 header checksum"
    );
    assert_eq!(
        usize::from(ip.total_len),
        frame.len() - ETH_LEN,
        "IPv4 total length against the frame"
    );
    assert_eq!(
        t.checksum,
        t.calc_checksum_ipv4(ip, payload).expect("TCP checksum"),
        "TCP checksum"
    );
    Seg {
        src: SocketAddr::new(IpAddr::from(ip.source), t.source_port),
        dst: SocketAddr::new(IpAddr::from(ip.destination), t.destination_port),
        seq: t.sequence_number,
        ack: t.acknowledgment_number,
        total_len: ip.total_len,
        payload: payload.to_vec(),
    }
}

/// Asserts `out` is exactly `expected` (built by etherparse), after
/// checking its checksums.
#[track_caller]
fn assert_frame(out: &[u8], expected: &[u8]) {
    let got = seg(out);
    let want = seg(expected);
    assert_eq!(
        String::from_utf8_lossy(&got.payload),
        String::from_utf8_lossy(&want.payload),
        "payload text"
    );
    assert_eq!(
        (got.src, got.dst, got.seq, got.ack, got.total_len),
        (want.src, want.dst, want.seq, want.ack, want.total_len),
        "addresses, seq, ack, IP total length"
    );
    assert_eq!(out, expected, "frame, byte for byte");
}

/// A handshake of `client` with `server` through every hook of the
/// router (`public`: the client as the server sees it). The client's next
/// sequence number is [`CLIENT_SEQ`], the server's [`SERVER_SEQ`].
fn handshake(h: &Harness, client: SocketAddr, server: SocketAddr, public: SocketAddr) {
    let syn = tcp(client, server, TCP_SYN, CLIENT_SEQ - 1, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass, "SYN at lan0");
    let (v, out) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass, "SYN at wan0 egress");
    assert_frame(&out, &tcp(public, server, TCP_SYN, CLIENT_SEQ - 1, 0, &[]));
    let syn_ack = tcp(
        server,
        public,
        TCP_SYN | TCP_ACK,
        SERVER_SEQ - 1,
        CLIENT_SEQ,
        &[],
    );
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass, "SYN-ACK at wan0");
    let (v, _) = h.tc_ingress(h.wan, &syn_ack);
    assert_eq!(v, Verdict::Pass, "SYN-ACK at wan0 TC ingress");
    let ack = tcp(client, server, TCP_ACK, CLIENT_SEQ, SERVER_SEQ, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass, "ACK at lan0");
    let (v, _) = h.forward_to_wan(&ack);
    assert_eq!(v, Verdict::Pass, "ACK at wan0 egress");
    h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::Established,
        SEEN_REPLY | ASSURED | flags::HELPER_FTP,
    );
}

/// A client segment with `payload` at `seq` through lan0's XDP and wan0's
/// TC egress. Returns the egress verdict and frame.
fn client_command(
    h: &Harness,
    client: SocketAddr,
    server: SocketAddr,
    seq: u32,
    payload: &[u8],
) -> (Verdict, Vec<u8>) {
    let f = tcp(client, server, TCP_PSH | TCP_ACK, seq, SERVER_SEQ, payload);
    assert_eq!(h.ingress_lan(&f), Verdict::Pass, "command at lan0 XDP");
    h.forward_to_wan(&f)
}

/// Counters after [`handshake`] without NAT, plus `more`.
fn plain_counters(more: &[(Counter, u64)]) -> Vec<(Counter, u64)> {
    let mut c = vec![
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        // Helped: the control connection never takes the fast path.
        (FastPathNat, 2),
        (SkipForwarded, 2),
    ];
    for &(k, n) in more {
        match c.iter_mut().find(|(e, _)| *e == k) {
            Some(slot) => slot.1 += n,
            None => c.push((k, n)),
        }
    }
    c
}

// ---------------------------------------------------------------------------
// Without NAT.

#[test]
fn port_creates_an_expectation_and_the_servers_data_syn_is_related_once() {
    let h = router("");
    let (client, server) = (sa(CLIENT), sa(SERVER));
    handshake(&h, client, server, client);
    let port_cmd = b"PORT 10,0,1,5,195,80\r\n";
    let (v, out) = client_command(&h, client, server, CLIENT_SEQ, port_cmd);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(
            client,
            server,
            TCP_PSH | TCP_ACK,
            CLIENT_SEQ,
            SERVER_SEQ,
            port_cmd,
        ),
    );
    // 195 * 256 + 80 = 50000: the server connects to the client there.
    let ek = expect_key(server.ip(), at("10.0.1.5", 50000));
    let exp = expectation(&h, &ek).expect("expectation server -> 10.0.1.5:50000");
    assert_eq!(exp.master, tcp_key(client, server), "expectation's master");
    assert_eq!(exp.cmd, FtpCmd::Port as u8, "expectation's command");
    assert_eq!(exp.flags & expect_flags::NAT, 0, "no NAT flag");
    assert_eq!(expect_count(&h), 1);
    h.assert_counters(&plain_counters(&[
        (AcceptEstablished, 1),
        (FastPathNat, 1),
        (SkipForwarded, 1),
        (FtpExpectCreated, 1),
    ]));

    // Active mode: the server's SYN from port 20 arrives on the WAN, where
    // the input/forward policy is drop. The expectation lets it in.
    let data_server = at("203.0.113.7", 20);
    let data_client = at("10.0.1.5", 50000);
    let syn = tcp(data_server, data_client, TCP_SYN, 90_000, 0, &[]);
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "data SYN at wan0");
    h.assert_conn(
        &tcp_key(data_server, data_client),
        TcpState::SynSent,
        flags::EXPECTED,
    );
    assert_eq!(expectation(&h, &ek), None, "the expectation is consumed");
    assert_eq!(expect_count(&h), 0);

    // A second SYN to the same port (another source port: a new
    // connection) finds no expectation and meets the policy.
    let other = at("203.0.113.7", 2020);
    let syn2 = tcp(other, data_client, TCP_SYN, 91_000, 0, &[]);
    assert_eq!(h.ingress_wan(&syn2), Verdict::Drop, "second data SYN");
    h.assert_no_conn(&tcp_key(other, data_client));
    h.assert_counters(&plain_counters(&[
        (AcceptEstablished, 1),
        (FastPathNat, 1),
        (SkipForwarded, 1),
        (FtpExpectCreated, 1),
        (AcceptExpected, 1),
        (CtCreated, 1),
        (DropPolicy, 1),
    ]));
}

/// The firewall host is the FTP server (on its LAN address); a LAN client
/// has connected to it. Returns the harness, client and server.
fn host_server() -> (Harness, SocketAddr, SocketAddr) {
    let h = router("");
    let client = sa(CLIENT);
    let server = sa("10.0.1.1:21");
    let syn = tcp(client, server, TCP_SYN, CLIENT_SEQ - 1, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass, "SYN at lan0");
    let syn_ack = tcp(
        server,
        client,
        TCP_SYN | TCP_ACK,
        SERVER_SEQ - 1,
        CLIENT_SEQ,
        &[],
    );
    let (v, _) = h.tc_egress_on(HOST_ORIGINATED, h.lan, &syn_ack);
    assert_eq!(v, Verdict::Pass, "host's SYN-ACK at lan0 egress");
    let ack = tcp(client, server, TCP_ACK, CLIENT_SEQ, SERVER_SEQ, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass, "ACK at lan0");
    h.assert_conn(
        &tcp_key(client, server),
        TcpState::Established,
        SEEN_REPLY | ASSURED | flags::HELPER_FTP,
    );
    (h, client, server)
}

/// The host's reply `text` leaving lan0; asserts it passes unchanged.
fn host_reply(h: &Harness, client: SocketAddr, server: SocketAddr, seq: u32, text: &[u8]) {
    let f = tcp(server, client, TCP_PSH | TCP_ACK, seq, CLIENT_SEQ, text);
    let (v, out) = h.tc_egress_on(HOST_ORIGINATED, h.lan, &f);
    assert_eq!(v, Verdict::Pass, "reply at lan0 egress");
    assert_frame(&out, &f);
}

#[test]
fn replies_227_and_229_create_expectations_for_the_client_to_the_server() {
    let (h, client, server) = host_server();
    let pasv = b"227 Entering Passive Mode (10,0,1,1,195,81).\r\n";
    host_reply(&h, client, server, SERVER_SEQ, pasv);
    let ek227 = expect_key(client.ip(), at("10.0.1.1", 50001));
    let exp = expectation(&h, &ek227).expect("expectation for 227");
    assert_eq!(exp.cmd, FtpCmd::Pasv227 as u8);
    assert_eq!(exp.master, tcp_key(client, server), "master");
    assert_eq!(h.counter(FtpExpectCreated), 1);

    let epsv = b"229 Entering Extended Passive Mode (|||50002|)\r\n";
    host_reply(&h, client, server, SERVER_SEQ + pasv.len() as u32, epsv);
    let ek229 = expect_key(client.ip(), at("10.0.1.1", 50002));
    let exp = expectation(&h, &ek229).expect("expectation for 229");
    assert_eq!(exp.cmd, FtpCmd::Epsv229 as u8);
    assert_eq!(h.counter(FtpExpectCreated), 2);

    // Passive mode: the client connects (from any port) and is RELATED.
    for (port, ek) in [(50001, ek227), (50002, ek229)] {
        let data_client = at("10.0.1.5", 41000 + (port - 50000));
        let data_server = at("10.0.1.1", port);
        let syn = tcp(data_client, data_server, TCP_SYN, 1, 0, &[]);
        assert_eq!(h.ingress_lan(&syn), Verdict::Pass, "data SYN to {port}");
        h.assert_conn(
            &tcp_key(data_client, data_server),
            TcpState::SynSent,
            flags::EXPECTED,
        );
        assert_eq!(expectation(&h, &ek), None, "expectation {port} consumed");
    }
    assert_eq!(h.counter(AcceptExpected), 2);
}

#[test]
fn eprt_creates_an_expectation_like_port() {
    let h = router("");
    let (client, server) = (sa(CLIENT), sa(SERVER));
    handshake(&h, client, server, client);
    let (v, _) = client_command(
        &h,
        client,
        server,
        CLIENT_SEQ,
        b"EPRT |1|10.0.1.5|50003|\r\n",
    );
    assert_eq!(v, Verdict::Pass);
    let ek = expect_key(server.ip(), at("10.0.1.5", 50003));
    let exp = expectation(&h, &ek).expect("expectation for EPRT");
    assert_eq!(exp.cmd, FtpCmd::Eprt as u8);
    assert_eq!(expect_count(&h), 1);
    assert_eq!(h.counter(FtpExpectCreated), 1);
}

#[test]
fn command_split_across_segments_is_dropped_and_its_retransmission_creates_the_expectation() {
    let h = router("");
    let (client, server) = (sa(CLIENT), sa(SERVER));
    handshake(&h, client, server, client);
    let (v, _) = client_command(&h, client, server, CLIENT_SEQ, b"PO");
    assert_eq!(v, Verdict::Drop, "first half of a split command");
    assert_eq!(h.counter(DropFtpPartial), 1);
    assert_eq!(expect_count(&h), 0);
    // A cut argument is partial too.
    let (v, _) = client_command(&h, client, server, CLIENT_SEQ, b"PORT 10,0,1,5,19");
    assert_eq!(v, Verdict::Drop, "command cut in its argument");
    assert_eq!(h.counter(DropFtpPartial), 2);
    assert_eq!(expect_count(&h), 0);

    let (v, _) = client_command(&h, client, server, CLIENT_SEQ, b"PORT 10,0,1,5,195,80\r\n");
    assert_eq!(v, Verdict::Pass, "whole retransmission");
    assert!(expectation(&h, &expect_key(server.ip(), at("10.0.1.5", 50000))).is_some());
    assert_eq!(h.counter(FtpExpectCreated), 1);
}

#[test]
fn port_naming_another_host_creates_no_expectation() {
    let h = router("");
    let (client, server) = (sa(CLIENT), sa(SERVER));
    handshake(&h, client, server, client);
    let cmd = b"PORT 10,0,1,99,195,80\r\n";
    let (v, out) = client_command(&h, client, server, CLIENT_SEQ, cmd);
    assert_eq!(v, Verdict::Pass, "the command itself passes");
    assert_frame(
        &out,
        &tcp(
            client,
            server,
            TCP_PSH | TCP_ACK,
            CLIENT_SEQ,
            SERVER_SEQ,
            cmd,
        ),
    );
    assert_eq!(expect_count(&h), 0);
    h.assert_counters(&plain_counters(&[
        (AcceptEstablished, 1),
        (FastPathNat, 1),
        (SkipForwarded, 1),
        (FtpBounceRefused, 1),
    ]));
}

#[test]
fn malformed_port_arguments_are_dropped() {
    let h = router("");
    let (client, server) = (sa(CLIENT), sa(SERVER));
    handshake(&h, client, server, client);
    let bad: [&[u8]; 3] = [
        b"PORT 10,0,1,300,195,80\r\n",
        b"PORT 10,0,1,5,195,300\r\n",
        b"PORT 10,0,1,5,195,0x\r\n",
    ];
    for (i, cmd) in bad.iter().enumerate() {
        let (v, _) = client_command(&h, client, server, CLIENT_SEQ, cmd);
        assert_eq!(
            v,
            Verdict::Drop,
            "{:?} is dropped",
            String::from_utf8_lossy(cmd)
        );
        assert_eq!(h.counter(DropFtpInvalid), i as u64 + 1);
    }
    assert_eq!(expect_count(&h), 0);
    assert_eq!(h.counter(FtpExpectCreated), 0);
}

// ---------------------------------------------------------------------------
// Under NAT.

#[test]
fn port_under_snat_is_rewritten_and_sequence_numbers_are_corrected_both_ways() {
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);

    let cmd = b"PORT 10,0,1,5,195,80\r\n";
    let (v, out) = client_command(&h, client, server, CLIENT_SEQ, cmd);
    assert_eq!(v, Verdict::Pass);
    // The announced port is free on the SNAT address, so it is kept.
    let new_cmd = b"PORT 192,168,200,100,195,80\r\n";
    let delta = new_cmd.len() as u32 - cmd.len() as u32;
    assert_eq!(delta, 7);
    let s = seg(&out);
    assert_eq!(
        String::from_utf8_lossy(&s.payload),
        String::from_utf8_lossy(new_cmd),
        "rewritten command"
    );
    assert_eq!(
        usize::from(s.total_len),
        20 + 20 + new_cmd.len(),
        "IP total length"
    );
    assert_frame(
        &out,
        &tcp(
            public,
            server,
            TCP_PSH | TCP_ACK,
            CLIENT_SEQ,
            SERVER_SEQ,
            new_cmd,
        ),
    );
    let (o, _) = h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::Established,
        SEEN_REPLY | ASSURED | flags::HELPER_FTP,
    );
    assert_eq!(o.seqadj.correction_pos, CLIENT_SEQ, "seqadj position");
    assert_eq!((o.seqadj.offset_before, o.seqadj.offset_after), (0, 7));
    assert_eq!(h.counter(FtpRewritten), 1);
    assert_eq!(h.counter(FtpExpectCreated), 1);
    let ek = expect_key(server.ip(), at(SNAT_ADDR, 50000));
    let exp = expectation(&h, &ek).expect("expectation on the SNAT address");
    assert_eq!(exp.flags & expect_flags::NAT, expect_flags::NAT);
    assert_eq!(
        exp.nat_dst,
        raw(client.ip()),
        "data connection goes to the client"
    );
    assert_eq!(u16::from_be(exp.nat_dport), 50000);

    // The client's next segment counts from its own sequence numbers; the
    // server must see them shifted by the growth.
    let next_seq = CLIENT_SEQ + cmd.len() as u32;
    let list = b"LIST\r\n";
    let (v, out) = client_command(&h, client, server, next_seq, list);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(
            public,
            server,
            TCP_PSH | TCP_ACK,
            next_seq + delta,
            SERVER_SEQ,
            list,
        ),
    );

    // The server acknowledges what it received; the client must see its
    // own numbering again.
    let server_ack = next_seq + delta + list.len() as u32;
    let reply = b"200 PORT command successful\r\n";
    let f = tcp(
        server,
        public,
        TCP_PSH | TCP_ACK,
        SERVER_SEQ,
        server_ack,
        reply,
    );
    assert_eq!(h.ingress_wan(&f), Verdict::Pass, "server reply at wan0");
    let (v, out) = h.tc_ingress(h.wan, &f);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(
            server,
            client,
            TCP_PSH | TCP_ACK,
            SERVER_SEQ,
            server_ack - delta,
            reply,
        ),
    );
    // An ack of the PORT segment alone.
    let f = tcp(
        server,
        public,
        TCP_ACK,
        SERVER_SEQ,
        CLIENT_SEQ + new_cmd.len() as u32,
        &[],
    );
    assert_eq!(h.ingress_wan(&f), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &f);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(server, client, TCP_ACK, SERVER_SEQ, next_seq, &[]),
    );
}

#[test]
fn active_data_connection_under_snat_reaches_the_client_on_its_own_port() {
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);
    let (v, _) = client_command(&h, client, server, CLIENT_SEQ, b"PORT 10,0,1,5,195,80\r\n");
    assert_eq!(v, Verdict::Pass);

    let data_server = at("203.0.113.7", 20);
    let data_public = at(SNAT_ADDR, 50000);
    let data_client = at("10.0.1.5", 50000);
    let syn = tcp(data_server, data_public, TCP_SYN, 90_000, 0, &[]);
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "data SYN at wan0");
    assert_eq!(h.counter(AcceptExpected), 1);
    assert_eq!(expect_count(&h), 0, "expectation consumed");
    let (o, r) = h.assert_pair(
        &tcp_key(data_server, data_public),
        &tcp_key(data_client, data_server),
        TcpState::SynSent,
        flags::EXPECTED,
    );
    assert_eq!(o.nat, NatRewrite::Dst as u8);
    assert_eq!(r.nat, NatRewrite::Src as u8);
    let (v, out) = h.tc_ingress(h.wan, &syn);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(data_server, data_client, TCP_SYN, 90_000, 0, &[]),
    );

    // The client's SYN-ACK leaves from the SNAT address and port.
    let syn_ack = tcp(data_client, data_server, TCP_SYN | TCP_ACK, 5, 90_001, &[]);
    assert_eq!(h.ingress_lan(&syn_ack), Verdict::Pass, "SYN-ACK at lan0");
    let (v, out) = h.forward_to_wan(&syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(data_public, data_server, TCP_SYN | TCP_ACK, 5, 90_001, &[]),
    );
}

#[test]
fn port_under_snat_whose_argument_starts_past_byte_64_gets_a_valid_checksum() {
    // Spaces after the verb are allowed; with 62 of them the argument
    // starts at payload byte 66, where the checksum difference must still
    // read the bytes that were replaced. (A 227 reply with a long text
    // before its numbers is the realistic case.)
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);
    let pad = " ".repeat(62);
    let cmd = format!("PORT{pad}10,0,1,5,195,80\r\n");
    let (v, out) = client_command(&h, client, server, CLIENT_SEQ, cmd.as_bytes());
    assert_eq!(v, Verdict::Pass);
    let new_cmd = format!("PORT{pad}192,168,200,100,195,80\r\n");
    // The text itself is right (read without etherparse, which would stop
    // at the checksum); the TCP checksum is what goes wrong.
    assert_eq!(
        String::from_utf8_lossy(&out[ETH_LEN + 40..]),
        new_cmd,
        "rewritten command"
    );
    assert_frame(
        &out,
        &tcp(
            public,
            server,
            TCP_PSH | TCP_ACK,
            CLIENT_SEQ,
            SERVER_SEQ,
            new_cmd.as_bytes(),
        ),
    );
}

#[test]
fn retransmitted_port_under_snat_is_rewritten_to_the_same_text() {
    // A retransmission must carry the bytes the first transmission carried
    // (the server keeps whichever copy it got first), and must not claim a
    // second data port: netfilter's expectation for the same tuple and
    // master replaces the old one, so nf_nat_ftp gets the same port again.
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);
    let cmd = b"PORT 10,0,1,5,195,80\r\n";
    let (v, first) = client_command(&h, client, server, CLIENT_SEQ, cmd);
    assert_eq!(v, Verdict::Pass);
    let (v, again) = client_command(&h, client, server, CLIENT_SEQ, cmd);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(
        String::from_utf8_lossy(&seg(&again).payload),
        String::from_utf8_lossy(&seg(&first).payload),
        "retransmission rewritten like the original"
    );
    assert_eq!(expect_count(&h), 1, "one expectation for the command");
    let (o, _) = h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::Established,
        SEEN_REPLY | ASSURED | flags::HELPER_FTP,
    );
    assert_eq!((o.seqadj.offset_before, o.seqadj.offset_after), (0, 7));
}

/// A bare ACK carrying one SACK block, built with etherparse.
fn sack_ack(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, block: (u32, u32)) -> Vec<u8> {
    use etherparse::TcpOptionElement;
    let mut h = etherparse::TcpHeader::new(src.port(), dst.port(), seq, 64240);
    h.ack = true;
    h.acknowledgment_number = ack;
    h.set_options(&[
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::SelectiveAcknowledgement(block, [None, None, None]),
    ])
    .expect("SACK option fits");
    let step = plain(src.ip(), dst.ip()).tcp_header(h);
    let mut out = Vec::with_capacity(step.size(0));
    step.write(&mut out, &[]).expect("building TCP segment");
    out
}

#[test]
fn sack_blocks_are_corrected_back_like_the_ack_after_a_rewrite() {
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);
    let cmd = b"PORT 10,0,1,5,195,80\r\n";
    let (v, _) = client_command(&h, client, server, CLIENT_SEQ, cmd);
    assert_eq!(v, Verdict::Pass);
    let delta = b"PORT 192,168,200,100,195,80\r\n".len() as u32 - cmd.len() as u32;

    // The server lost the PORT segment but got a later one: it acks the
    // start and SACKs the later block, in the numbering it saw (shifted by
    // the rewrite). Both must go back to the client's numbering.
    let later = CLIENT_SEQ + cmd.len() as u32;
    let block = (later + delta, later + delta + 6);
    let f = sack_ack(server, public, SERVER_SEQ, CLIENT_SEQ, block);
    assert_eq!(h.ingress_wan(&f), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &f);
    assert_eq!(v, Verdict::Pass);
    // Expected: destination translated back, ack unchanged (before the
    // correction point), the SACK edges shifted back by the delta, every
    // checksum valid (assert_frame recomputes them with etherparse).
    assert_frame(
        &out,
        &sack_ack(server, client, SERVER_SEQ, CLIENT_SEQ, (later, later + 6)),
    );
}

#[test]
fn arp_after_a_helped_segment_leaves_untouched() {
    // The parsed-packet slot still described the helped TCP segment when
    // the next frame, an ARP request, came through egress: it was taken
    // for that segment, sent to the FTP program and dropped, so the router
    // could not resolve its next hop. A non-IP frame must pass as such.
    let (h, client, server) = host_server();
    host_reply(&h, client, server, SERVER_SEQ, b"220 ready\r\n");
    let arp = arp_request([10, 0, 1, 1], [10, 0, 1, 5]);
    let (v, out) = h.tc_egress_on(HOST_ORIGINATED, h.lan, &arp);
    assert_eq!(v, Verdict::Pass, "ARP at lan0 egress");
    assert_eq!(out, arp, "ARP unchanged");
    assert_eq!(h.counter(Counter::DropMalformed), 0);
    assert!(h.counter(Counter::AcceptNonIp) >= 1);
}

#[test]
fn eprt_over_ipv6_creates_an_expectation() {
    let h = router("");
    let client = sa("[fd00:1::5]:40000");
    let server = sa("[2001:db8::7]:21");
    // The handshake, by hand: the IPv4 helpers compare IPv4 frames.
    let syn = tcp(client, server, TCP_SYN, CLIENT_SEQ - 1, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&syn).0, Verdict::Pass);
    let syn_ack = tcp(
        server,
        client,
        TCP_SYN | TCP_ACK,
        SERVER_SEQ - 1,
        CLIENT_SEQ,
        &[],
    );
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    assert_eq!(h.tc_ingress(h.wan, &syn_ack).0, Verdict::Pass);
    let ack = tcp(client, server, TCP_ACK, CLIENT_SEQ, SERVER_SEQ, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&ack).0, Verdict::Pass);
    let (v, _) = client_command(
        &h,
        client,
        server,
        CLIENT_SEQ,
        b"EPRT |2|fd00:1::5|50004|\r\n",
    );
    let nz: Vec<_> = Counter::ALL
        .iter()
        .map(|c| (c.name(), h.counter(*c)))
        .filter(|x| x.1 != 0)
        .collect();
    assert_eq!(v, Verdict::Pass, "{nz:?}");
    let ek = expect_key(server.ip(), sa("[fd00:1::5]:50004"));
    let exp = expectation(&h, &ek).expect("expectation for EPRT |2|");
    assert_eq!(exp.cmd, FtpCmd::Eprt as u8);
    assert_eq!(h.counter(FtpExpectCreated), 1);

    // Anti-bounce holds for IPv6 too.
    let (v, _) = client_command(
        &h,
        client,
        server,
        CLIENT_SEQ + 27,
        b"EPRT |2|fd00:1::6|50005|\r\n",
    );
    assert_eq!(v, Verdict::Pass);
    assert_eq!(h.counter(FtpBounceRefused), 1);

    // Anything after the argument but the line end is malformed, as over
    // IPv4: no expectation.
    let (v, _) = client_command(
        &h,
        client,
        server,
        CLIENT_SEQ + 54,
        b"EPRT |2|fd00:1::5|50006|junk\r\n",
    );
    assert_eq!(v, Verdict::Drop);
    assert_eq!(h.counter(DropFtpInvalid), 1);
    let ek = expect_key(server.ip(), sa("[fd00:1::5]:50006"));
    assert!(expectation(&h, &ek).is_none(), "no expectation for junk");
}

#[test]
fn pasv_reply_of_a_port_forwarded_server_announces_the_wan_address() {
    // The FTP server sits behind a port forward; its 227 names its LAN
    // address, which the WAN client cannot reach: it must leave naming the
    // router's WAN address, with the data connection forwarded back.
    let interfaces = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\n\
                      [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";
    let config =
        format!("{HELPER}\n[[port_forward]]\nproto = \"tcp\"\nport = 21\nto = \"10.0.1.10:21\"\n");
    let h = Harness::with_setup(
        &Setup {
            interfaces,
            ip: &router_ip(ROUTER_MORE),
            sysctls: IPV4_FORWARDING,
        },
        &config,
    );
    let client = sa("198.51.100.20:51000");
    let public = at("10.0.2.1", 21);
    let server = sa("10.0.1.10:21");

    let syn = tcp(client, public, TCP_SYN, CLIENT_SEQ - 1, 0, &[]);
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "SYN to the forward");
    let (v, out) = h.tc_ingress(h.wan, &syn);
    assert_eq!(v, Verdict::Pass);
    assert_frame(&out, &tcp(client, server, TCP_SYN, CLIENT_SEQ - 1, 0, &[]));
    let syn_ack = tcp(
        server,
        client,
        TCP_SYN | TCP_ACK,
        SERVER_SEQ - 1,
        CLIENT_SEQ,
        &[],
    );
    assert_eq!(h.ingress_lan(&syn_ack), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(
            public,
            client,
            TCP_SYN | TCP_ACK,
            SERVER_SEQ - 1,
            CLIENT_SEQ,
            &[],
        ),
    );

    let reply = b"227 Entering Passive Mode (10,0,1,10,117,48).\r\n";
    let f = tcp(
        server,
        client,
        TCP_PSH | TCP_ACK,
        SERVER_SEQ,
        CLIENT_SEQ,
        reply,
    );
    assert_eq!(h.ingress_lan(&f), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&f);
    assert_eq!(v, Verdict::Pass, "227 leaves wan0");
    let new_reply = b"227 Entering Passive Mode (10,0,2,1,117,48).\r\n";
    assert_frame(
        &out,
        &tcp(
            public,
            client,
            TCP_PSH | TCP_ACK,
            SERVER_SEQ,
            CLIENT_SEQ,
            new_reply,
        ),
    );
    assert_eq!(h.counter(FtpRewritten), 1);

    // The client's data connection to the announced WAN port is expected
    // and forwarded to the server's own port.
    let data_syn = tcp(
        sa("198.51.100.20:52000"),
        at("10.0.2.1", 30000),
        TCP_SYN,
        500,
        0,
        &[],
    );
    assert_eq!(h.ingress_wan(&data_syn), Verdict::Pass, "data SYN at wan0");
    assert_eq!(h.counter(AcceptExpected), 1);
    let (v, out) = h.tc_ingress(h.wan, &data_syn);
    assert_eq!(v, Verdict::Pass);
    assert_frame(
        &out,
        &tcp(
            sa("198.51.100.20:52000"),
            sa("10.0.1.10:30000"),
            TCP_SYN,
            500,
            0,
            &[],
        ),
    );
}

#[test]
fn several_port_rewrites_keep_every_segment_inside_the_tracked_windows() {
    // Each PORT grows by 7 bytes under SNAT; the window checks must use the
    // corrected numbers on each side, or the server's ACKs of the grown
    // stream look like ACKs of data the client never sent.
    let h = router(SNAT);
    let (client, server) = (sa(CLIENT), sa(SERVER));
    let public = at(SNAT_ADDR, 40000);
    handshake(&h, client, server, public);
    let mut seq = CLIENT_SEQ;
    let mut grown = 0u32;
    for (i, port) in [(195u16, 80u16), (195, 81), (195, 82)]
        .into_iter()
        .enumerate()
    {
        let cmd = format!("PORT 10,0,1,5,{},{}\r\n", port.0, port.1);
        let (v, out) = client_command(&h, client, server, seq, cmd.as_bytes());
        assert_eq!(v, Verdict::Pass, "PORT {i} at egress");
        let s = seg(&out);
        assert_eq!(s.payload.len(), cmd.len() + 7, "PORT {i} rewritten");
        assert_eq!(
            s.seq,
            seq + grown,
            "PORT {i} sent at the corrected sequence"
        );
        seq += cmd.len() as u32;
        grown += 7;
        // The server acknowledges everything it received so far.
        let reply = format!("200 PORT {i} ok\r\n");
        let server_seq = SERVER_SEQ + (i as u32) * reply.len() as u32;
        let f = tcp(
            server,
            public,
            TCP_PSH | TCP_ACK,
            server_seq,
            seq + grown,
            reply.as_bytes(),
        );
        assert_eq!(
            h.ingress_wan(&f),
            Verdict::Pass,
            "server reply {i} at wan0 XDP"
        );
        let (v, out) = h.tc_ingress(h.wan, &f);
        assert_eq!(v, Verdict::Pass);
        assert_eq!(
            seg(&out).ack,
            seq,
            "reply {i}'s ack in the client's numbering"
        );
    }
    for c in [
        DropTcpWindowSeqAbove,
        DropTcpWindowAckAbove,
        DropTcpWindowRst,
    ] {
        assert_eq!(h.counter(c), 0, "{c:?}");
    }
    assert_eq!(h.counter(FtpRewritten), 3);
}
