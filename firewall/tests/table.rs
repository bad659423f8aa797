//! A full connection table under BPF_PROG_TEST_RUN: a table of 64 entries
//! (32 connections), filled through the real programs, then new connections
//! that must make room. They displace the oldest unassured connection, both
//! halves and its NAT binding, and nothing ASSURED, ever; with nothing
//! unassured left, the first packet is dropped (`drop_table_full`). The
//! three ways `create` inserts are all exercised: a port forward (the reply
//! half claimed first), masquerade (the port claim), and no translation.
//!
//! The test thread is pinned to one CPU, so every connection lands in one
//! region of the early-drop ring and "oldest" is creation order; the search
//! across regions is tested on the host (`firewall_common::early_drop`).
//!
//! Needs root (BPF and namespaces): `cargo test -p firewall --test table`.

mod common;

use std::net::SocketAddr;

use common::*;
use firewall_common::{
    Counter::*,
    CtKey, TcpState,
    tcp::{TCP_ACK, TCP_SYN},
};

/// Entries of the table under test: 32 connections.
const ENTRIES: u32 = 64;
const CONNS: u16 = ENTRIES as u16 / 2;

/// After [`ROUTER_IP`]: the gateway resolved, as the NAT tests have it.
const ROUTER_MORE: &[&str] = &[GATEWAY_NEIGH];
const MASQUERADE: &str = "masquerade = true";
const TCP_FORWARD: &str = "[[port_forward]]\nproto = \"tcp\"\nport = 8080\nto = \"10.0.1.10:80\"\n";
/// `wan0`'s address: the port forward's and masquerade's public address.
const WAN_ADDR: &str = "10.0.2.1";
const SERVER: &str = "203.0.113.7:80";

/// A router with a table of [`ENTRIES`], `wan_keys` on `wan0`, and the test
/// thread pinned to CPU 0.
fn router(wan_keys: &str, config_toml: &str) -> Harness {
    router_with_table(wan_keys, config_toml, ENTRIES)
}

fn router_with_table(wan_keys: &str, config_toml: &str, entries: u32) -> Harness {
    pin_to_cpu0();
    Harness::with_table(
        &Setup {
            interfaces: &interfaces_with(wan_keys),
            ip: &router_ip(ROUTER_MORE),
            sysctls: FORWARDING,
        },
        config_toml,
        entries,
    )
}

/// Every test run of this thread then happens on CPU 0, and every new
/// connection goes to its region of the ring.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; pid 0 is the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The `i`-th spoofed client of a SYN flood.
fn flooder(i: u16) -> SocketAddr {
    at(&format!("198.51.100.{}", 1 + i / 1000), 10_000 + i)
}

/// A spoofed SYN to the forwarded port: a connection whose reply half is
/// its NAT binding. Returns (original key, reply key).
fn flood_syn(h: &Harness, i: u16) -> (Verdict, CtKey, CtKey) {
    let client = flooder(i);
    let public = at(WAN_ADDR, 8080);
    let target = sa("10.0.1.10:80");
    let v = h.ingress_wan(&tcp(client, public, TCP_SYN, 100, 0, &[]));
    (v, tcp_key(client, public), tcp_key(target, client))
}

/// A LAN host's port `i` (the same port after masquerade: it is free).
fn lan_client(i: u16) -> SocketAddr {
    at("10.0.1.5", 40_000 + i)
}

/// The keys of LAN client `i`'s connection to [`SERVER`]: (original,
/// reply). With masquerade the reply comes to the router's address.
fn lan_keys(i: u16, masquerade: bool) -> (CtKey, CtKey) {
    let client = lan_client(i);
    let back = if masquerade {
        at(WAN_ADDR, client.port())
    } else {
        client
    };
    (tcp_key(client, sa(SERVER)), tcp_key(sa(SERVER), back))
}

/// The SYN of LAN client `i` to [`SERVER`], through XDP on `lan0`.
fn lan_syn(h: &Harness, i: u16) -> Verdict {
    h.ingress_lan(&tcp(lan_client(i), sa(SERVER), TCP_SYN, 1000, 0, &[]))
}

/// The rest of LAN client `i`'s handshake (after [`lan_syn`]), through XDP,
/// which is where the state moves: the connection is then ASSURED.
fn finish_handshake(h: &Harness, i: u16, masquerade: bool) {
    let (orig, reply) = lan_keys(i, masquerade);
    let back = if masquerade {
        at(WAN_ADDR, lan_client(i).port())
    } else {
        lan_client(i)
    };
    let syn_ack = tcp(sa(SERVER), back, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass, "SYN-ACK of {i}");
    let ack = tcp(lan_client(i), sa(SERVER), TCP_ACK, 1001, 7001, &[]);
    // Untranslated, the fast path forwards it.
    let v = h.ingress_lan(&ack);
    assert!(
        matches!(v, Verdict::Pass | Verdict::Redirect),
        "ACK of {i}: {v:?}"
    );
    h.assert_pair(&orig, &reply, TcpState::Established, SEEN_REPLY | ASSURED);
}

#[track_caller]
fn assert_gone(h: &Harness, orig: &CtKey, reply: &CtKey, what: &str) {
    assert_eq!(h.entry(orig), None, "original half of {what}");
    assert_eq!(h.entry(reply), None, "reply half (binding) of {what}");
}

#[test]
fn a_new_connection_displaces_the_oldest_unassured_pair_and_its_nat_binding() {
    let h = router(MASQUERADE, TCP_FORWARD);
    let flood: Vec<(CtKey, CtKey)> = (0..CONNS)
        .map(|i| {
            let (v, o, r) = flood_syn(&h, i);
            assert_eq!(v, Verdict::Pass, "flood SYN {i} while there is room");
            (o, r)
        })
        .collect();
    assert_eq!(h.conntrack_len(), ENTRIES as usize, "the table is full");
    h.assert_counters(&[(AcceptPortForward, 32), (CtCreated, 32)]);

    // The flood goes on: its next SYN (a port forward, whose binding is
    // claimed first) displaces its oldest connection, both halves.
    let (v, o, r) = flood_syn(&h, CONNS);
    assert_eq!(v, Verdict::Pass);
    assert_gone(&h, &flood[0].0, &flood[0].1, "the oldest flood connection");
    h.assert_pair(&o, &r, TcpState::SynSent, UNREPLIED);

    // A LAN host's connection through masquerade (a port claim) gets in,
    // in place of the next oldest.
    assert_eq!(lan_syn(&h, 0), Verdict::Pass);
    assert_gone(&h, &flood[1].0, &flood[1].1, "the second flood connection");
    let (lo, lr) = lan_keys(0, true);
    h.assert_pair(&lo, &lr, TcpState::SynSent, UNREPLIED);

    // And one to the router itself, untranslated.
    let ssh = sa("10.0.1.1:22");
    let syn = tcp(lan_client(1), ssh, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    assert_gone(&h, &flood[2].0, &flood[2].1, "the third flood connection");
    h.assert_conn(&tcp_key(lan_client(1), ssh), TcpState::SynSent, UNREPLIED);

    // Everything else is untouched, and nothing was refused.
    for (o, r) in flood.iter().skip(3) {
        h.assert_pair(o, r, TcpState::SynSent, UNREPLIED);
    }
    assert_eq!(h.conntrack_len(), ENTRIES as usize);
    h.assert_counters(&[
        (AcceptPortForward, 33),
        (AcceptNew, 2),
        (CtCreated, 35),
        (CtEarlyDrop, 3),
    ]);
}

#[test]
fn a_table_full_of_assured_connections_refuses_new_ones_and_keeps_every_one() {
    let h = router(MASQUERADE, TCP_FORWARD);
    for i in 0..CONNS {
        assert_eq!(lan_syn(&h, i), Verdict::Pass, "SYN {i} while there is room");
        finish_handshake(&h, i, true);
    }
    assert_eq!(h.conntrack_len(), ENTRIES as usize, "the table is full");

    // Nothing may be displaced: the first packets of new connections are
    // dropped, from the LAN (a port claim) and from the WAN (a port
    // forward), again and again (each search consumes keys it skipped;
    // the later ones find the ring empty).
    for n in 0..3 {
        assert_eq!(lan_syn(&h, CONNS + n), Verdict::Drop, "LAN SYN, try {n}");
        let (v, o, r) = flood_syn(&h, n);
        assert_eq!(v, Verdict::Drop, "flood SYN, try {n}");
        assert_gone(&h, &o, &r, "a refused connection");
    }
    for i in 0..CONNS {
        let (o, r) = lan_keys(i, true);
        h.assert_pair(&o, &r, TcpState::Established, SEEN_REPLY | ASSURED);
    }
    assert_eq!(h.conntrack_len(), ENTRIES as usize);
    h.assert_counters(&[
        (AcceptNew, 32),
        (CtCreated, 32),
        (AcceptEstablished, 64),
        (FastPathNat, 64),
        (DropTableFull, 6),
    ]);
}

#[test]
fn unassured_connections_make_room_and_assured_ones_never_do() {
    // No translation: the original half goes in first.
    let h = router("", "");
    // Every fourth connection stays unassured (a SYN nobody answers).
    let unassured: Vec<u16> = (0..CONNS).filter(|i| i % 4 == 3).collect();
    for i in 0..CONNS {
        assert_eq!(lan_syn(&h, i), Verdict::Pass, "SYN {i} while there is room");
        if !unassured.contains(&i) {
            finish_handshake(&h, i, false);
        }
    }
    assert_eq!(h.conntrack_len(), ENTRIES as usize, "the table is full");

    // Each new connection takes the place of the oldest unassured one,
    // skipping the ASSURED ones before it, and becomes ASSURED itself.
    for (n, &victim) in unassured.iter().enumerate() {
        let i = CONNS + n as u16;
        assert_eq!(lan_syn(&h, i), Verdict::Pass, "new connection {i}");
        let (vo, vr) = lan_keys(victim, false);
        assert_gone(&h, &vo, &vr, &format!("unassured connection {victim}"));
        finish_handshake(&h, i, false);
        assert_eq!(h.conntrack_len(), ENTRIES as usize);
    }
    // Now everything is ASSURED: the next one is refused.
    assert_eq!(lan_syn(&h, 2 * CONNS), Verdict::Drop);
    for i in (0..CONNS + unassured.len() as u16).filter(|i| !unassured.contains(i)) {
        let (o, r) = lan_keys(i, false);
        h.assert_pair(&o, &r, TcpState::Established, SEEN_REPLY | ASSURED);
    }
    assert_eq!(h.conntrack_len(), ENTRIES as usize);
    assert_eq!(h.counter(CtEarlyDrop), unassured.len() as u64);
    assert_eq!(h.counter(DropTableFull), 1);
    assert_eq!(
        h.counter(CtCreated),
        u64::from(CONNS) + unassured.len() as u64
    );
}

#[test]
fn a_dead_connection_in_the_way_is_reaped_rather_than_a_live_one_displaced() {
    let mut h = router("", "");
    for i in 0..CONNS {
        assert_eq!(lan_syn(&h, i), Verdict::Pass);
        finish_handshake(&h, i, false);
    }
    // Connection 5 is ASSURED but timed out in both directions; the ager
    // has not removed it yet.
    let (o, r) = lan_keys(5, false);
    h.expire(&o);
    h.expire(&r);
    assert_eq!(lan_syn(&h, CONNS), Verdict::Pass);
    assert_gone(&h, &o, &r, "the expired connection");
    assert_eq!(h.counter(CtExpiredInPath), 1);
    assert_eq!(h.counter(CtEarlyDrop), 0);
    assert_eq!(h.counter(DropTableFull), 0);
    assert_eq!(h.conntrack_len(), ENTRIES as usize);
}

#[test]
fn a_second_half_that_finds_no_room_takes_its_first_half_with_it() {
    // 63 entries: 31 connections and one free entry, which the first half
    // of a new connection takes; its second half finds the table full.
    let mut h = router_with_table("", "", 63);
    for i in 0..31 {
        assert_eq!(lan_syn(&h, i), Verdict::Pass);
        finish_handshake(&h, i, false);
    }
    assert_eq!(h.conntrack_len(), 62);
    // Nothing unassured to displace: refused, and no half left behind.
    assert_eq!(lan_syn(&h, 31), Verdict::Drop);
    let (o, r) = lan_keys(31, false);
    assert_gone(&h, &o, &r, "the refused connection");
    assert_eq!(h.conntrack_len(), 62);
    assert_eq!(h.counter(DropTableFull), 1);

    // An unassured connection (one the refused search has not passed
    // yet: it consumed the 16 oldest keys): the second half makes room for
    // itself by displacing it.
    let (vo, vr) = lan_keys(20, false);
    for key in [vo, vr] {
        let mut half = h.entry(&key).expect("a half of connection 20");
        half.flags &= !ASSURED;
        h.maps
            .conntrack
            .insert(key, half, 0)
            .expect("writing CONNTRACK");
    }
    assert_eq!(lan_syn(&h, 32), Verdict::Pass);
    assert_gone(&h, &vo, &vr, "the unassured connection");
    let (no, nr) = lan_keys(32, false);
    h.assert_pair(&no, &nr, TcpState::SynSent, UNREPLIED);
    assert_eq!(h.conntrack_len(), 62);
    assert_eq!(h.counter(CtEarlyDrop), 1);
}
