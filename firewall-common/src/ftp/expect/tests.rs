use super::*;
use crate::{
    FAMILY_V4, FAMILY_V6,
    ftp::{FtpAddr, key_addr_v4, test_support::*, v4_key_addr},
};

#[test]
fn bounce_check_compares_with_the_sender() {
    assert!(bounce_ok([10, 0, 0, 2], [10, 0, 0, 2]));
    assert!(!bounce_ok([10, 0, 0, 3], [10, 0, 0, 2]));
    assert!(!bounce_ok([127, 0, 0, 1], [10, 0, 0, 2]));
    let key = v4_key_addr([10, 0, 0, 2]);
    assert!(bounce_ok([10, 0, 0, 2], key_addr_v4(&key)));
    assert_eq!(FtpAddr::V4([10, 0, 0, 2]).key_addr(), Some(key));
    assert_eq!(FtpAddr::V4([1, 2, 3, 4]).family(), Some(FAMILY_V4));
    assert_eq!(v6("::1").family(), Some(FAMILY_V6));
    assert_eq!(FtpAddr::None.family(), None);
    assert_eq!(FtpAddr::None.key_addr(), None);
}

fn v4key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> CtKey {
    CtKey {
        src: v4_key_addr(src),
        dst: v4_key_addr(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IPPROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const WAN: [u8; 4] = [203, 0, 113, 1];
const SERVER: [u8; 4] = [198, 51, 100, 7];

/// Active FTP from a masqueraded client: PORT carries the client's
/// private address; NAT announces the WAN address; the server's data
/// connection from port 20 is expected at WAN:port and goes back to the
/// client's real address and original port.
#[test]
fn port_through_masquerade_expects_server_to_wan() {
    let orig = v4key(CLIENT, 40000, SERVER, 21);
    let reply = v4key(SERVER, 21, WAN, 61000);
    let cmd_port = 50000;
    let new_port = 50001; // say 50000 was taken on the WAN address
    assert_eq!(key_addr_v4(&nat_announce_addr(&reply)), WAN);
    let key = ExpectKey::for_command(&reply, new_port);
    assert_eq!(key.src, v4_key_addr(SERVER));
    assert_eq!(key.dst, v4_key_addr(WAN));
    assert_eq!(u16::from_be(key.dport), new_port);
    assert_eq!((key.proto, key.family), (IPPROTO_TCP, FAMILY_V4));
    // The server's first data packet, from any source port, finds it.
    let data = v4key(SERVER, 20, WAN, new_port);
    assert_eq!(ExpectKey::of_packet(&data), key);
    assert_eq!(
        ExpectKey::of_packet(&v4key(SERVER, 33333, WAN, new_port)),
        key
    );
    assert_ne!(ExpectKey::of_packet(&v4key(CLIENT, 20, WAN, new_port)), key);

    let exp = Expectation::for_command(FtpCmd::Port, O, &orig, &reply, true, cmd_port, 7);
    assert_eq!(exp.master, orig);
    assert_eq!(exp.flags, expect_flags::NAT);
    assert_eq!(exp.cmd, FtpCmd::Port as u8);
    assert_eq!(exp.expires_ns, 7);
    // nf_nat_follow_master: source stays the server, destination is the
    // client's real address and the port it listens on.
    assert_eq!(exp.nat_src, v4_key_addr(SERVER));
    assert_eq!(exp.nat_dst, v4_key_addr(CLIENT));
    assert_eq!(u16::from_be(exp.nat_dport), cmd_port);
}

/// Passive FTP to a port-forwarded server: the server's 227 carries its
/// private address; NAT announces the public one; the client's data
/// connection is expected at the public address and DNATed to the
/// server.
#[test]
fn pasv_through_port_forward_expects_client_to_public_address() {
    let server_lan = [10, 0, 0, 5];
    let client = [198, 51, 100, 99];
    let orig = v4key(client, 50123, WAN, 21);
    let reply = v4key(server_lan, 21, client, 50123);
    // The 227 travels in the reply direction: `this` is the reply tuple.
    assert!(bounce_ok(server_lan, key_addr_v4(&reply.src)));
    assert_eq!(key_addr_v4(&nat_announce_addr(&orig)), WAN);
    let key = ExpectKey::for_command(&orig, 30000);
    assert_eq!(ExpectKey::of_packet(&v4key(client, 50124, WAN, 30000)), key);
    let exp = Expectation::for_command(FtpCmd::Pasv227, R, &reply, &orig, true, 30000, 0);
    assert_eq!(exp.master, orig);
    assert_eq!(exp.nat_src, v4_key_addr(client));
    assert_eq!(exp.nat_dst, v4_key_addr(server_lan));
    assert_eq!(u16::from_be(exp.nat_dport), 30000);
}

#[test]
fn no_nat_means_no_rewrites() {
    let orig = v4key(CLIENT, 40000, SERVER, 21);
    let reply = orig.inverted();
    let key = ExpectKey::for_command(&reply, 50000);
    assert_eq!((key.src, key.dst), (orig.dst, orig.src));
    let exp = Expectation::for_command(FtpCmd::Eprt, O, &orig, &reply, false, 50000, 1);
    assert_eq!(exp.flags, 0);
    assert_eq!(
        (exp.nat_src, exp.nat_dst, exp.nat_dport),
        ([0; 4], [0; 4], 0)
    );
}
