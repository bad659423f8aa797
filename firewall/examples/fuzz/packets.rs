//! Valid packets of every kind the parser knows, and the standalone frames
//! the fuzzer sprinkles between conversations: ARP and other non-IP,
//! ICMP and ICMPv6 queries of every type, neighbour discovery and MLD,
//! errors quoting arbitrary packets (fragments included), SCTP chunks,
//! GRE, ESP, DCCP, UDP-Lite, No Next Header.

use std::net::IpAddr;

use crate::{
    mutate::{self, Pkt},
    rng::Rng,
    router::{Origin, Side},
    topology::{self, lan_v4, lan_v6, wan_v4, wan_v6},
    wire::{
        self, Datagram, ETH_P_ARP, Eth, IPPROTO_GRE, IPPROTO_NONE, IPPROTO_UDPLITE, Icmp, Ipv4,
        Ipv6, L4, Net, Sctp, Tcp, Udp,
    },
};

pub fn net(src: IpAddr, dst: IpAddr) -> Net {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Net::V4(Ipv4::new(s.octets(), d.octets())),
        (IpAddr::V6(s), IpAddr::V6(d)) => Net::V6(Ipv6::new(s.octets(), d.octets())),
        // Mixed families: the destination's family wins, from an address
        // that cannot be anyone's.
        (_, IpAddr::V4(d)) => Net::V4(Ipv4::new([192, 0, 2, 99], d.octets())),
        (_, IpAddr::V6(d)) => Net::V6(Ipv6::new(wan_v6(99), d.octets())),
    }
}

pub fn tcp(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> L4 {
    L4::Tcp(Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        win: 64240,
        payload: payload.to_vec(),
        ..Tcp::default()
    })
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4 {
    L4::Udp(Udp {
        sport,
        dport,
        payload: payload.to_vec(),
        ..Udp::default()
    })
}

/// An ICMP or ICMPv6 query: echo (or another query type) request or reply.
pub fn query(v4: bool, ty: u8, id: u16, seq: u16) -> L4 {
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    let body = match (v4, ty) {
        // Timestamps and masks carry fixed-size bodies.
        (true, 13 | 14) => vec![0; 12],
        (true, 17 | 18) => vec![0; 4],
        _ => b"fuzz".to_vec(),
    };
    L4::Icmp(Icmp {
        ty,
        code: 0,
        rest,
        body,
        bad_checksum: false,
    })
}

/// An ICMP error of a random type quoting `quote` (an IP packet, cut as
/// RFC 792 or RFC 4443 allow, or not).
pub fn error(rng: &mut Rng, v4: bool, quote: &[u8]) -> L4 {
    let (ty, code, rest) = if v4 {
        match rng.below(6) {
            0 => (3, rng.below(16) as u8, [0; 4]),
            1 => (3, 4, [0, 0, 0x05, 0xdc]), // fragmentation needed, MTU 1500
            2 => (11, rng.below(2) as u8, [0; 4]),
            3 => (12, 0, [20, 0, 0, 0]),
            4 => (5, rng.below(4) as u8, [10, 0, 1, 254]), // redirect
            _ => (4, 0, [0; 4]),                           // source quench
        }
    } else {
        match rng.below(4) {
            0 => (1, rng.below(8) as u8, [0; 4]),
            1 => (2, 0, 1280u32.to_be_bytes()),
            2 => (3, rng.below(2) as u8, [0; 4]),
            _ => (4, rng.below(3) as u8, [0, 0, 0, 40]),
        }
    };
    let keep = match rng.below(3) {
        0 => quote.len(),
        // RFC 792: the header and 8 bytes.
        1 => header_len(quote) + 8,
        _ => rng.below(quote.len() + 1),
    };
    L4::Icmp(Icmp {
        ty,
        code,
        rest,
        body: quote[..keep.min(quote.len())].to_vec(),
        bad_checksum: false,
    })
}

fn header_len(ip: &[u8]) -> usize {
    match ip.first().map(|b| b >> 4) {
        Some(4) => usize::from(ip[0] & 0x0f) * 4,
        _ => 40,
    }
}

/// An SCTP chunk, padded to 4 bytes.
pub fn sctp_chunk(ty: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut c = vec![ty, flags];
    c.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    c.extend_from_slice(body);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

/// INIT or INIT ACK's fixed part: initiate tag, a_rwnd, streams, TSN.
pub fn sctp_init_body(tag: u32) -> Vec<u8> {
    let mut b = tag.to_be_bytes().to_vec();
    b.extend_from_slice(&65535u32.to_be_bytes());
    b.extend_from_slice(&[0, 10, 0, 10]);
    b.extend_from_slice(&1u32.to_be_bytes());
    b
}

pub fn sctp(sport: u16, dport: u16, vtag: u32, chunks: Vec<u8>) -> L4 {
    L4::Sctp(Sctp {
        sport,
        dport,
        vtag,
        chunks,
    })
}

/// An FTP control line: a command from the client (PORT, EPRT) or a reply
/// from the server (227, 229), about `addr:port`; sometimes malformed
/// (numbers out of range, a missing end of line, another host's address,
/// garbage arguments).
pub fn ftp_line(rng: &mut Rng, from_client: bool, addr: IpAddr, port: u16) -> Vec<u8> {
    let [hi, lo] = port.to_be_bytes();
    let line = match (from_client, addr) {
        (true, IpAddr::V4(a)) if rng.one_in(2) => {
            let o = a.octets();
            format!("PORT {},{},{},{},{hi},{lo}\r\n", o[0], o[1], o[2], o[3])
        }
        (true, a) => {
            let af = if a.is_ipv4() { 1 } else { 2 };
            format!("EPRT |{af}|{a}|{port}|\r\n")
        }
        (false, IpAddr::V4(a)) if rng.one_in(2) => {
            let o = a.octets();
            format!(
                "227 Entering Passive Mode ({},{},{},{},{hi},{lo}).\r\n",
                o[0], o[1], o[2], o[3]
            )
        }
        (false, _) => format!("229 Entering Extended Passive Mode (|||{port}|)\r\n"),
    };
    if !rng.one_in(4) {
        return line.into_bytes();
    }
    let mut bad = line.into_bytes();
    match rng.below(5) {
        0 => {
            bad.truncate(bad.len() - 2);
        }
        1 => {
            bad = b"PORT 10,0,1,5,999,1\r\n".to_vec();
        }
        2 => {
            bad = b"PORT 192,0,2,1,4,1\r\n".to_vec(); // a bounce
        }
        3 => {
            let at = rng.below(bad.len());
            bad[at] = rng.u8();
        }
        _ => {
            bad = format!("EPRT |2|fd00:1::{:x}|{port}|\r\n", rng.u16()).into_bytes();
        }
    }
    bad
}

/// One of the hosts a standalone frame may come from or go to.
fn endpoint(rng: &mut Rng, side: Side, v4: bool) -> IpAddr {
    let n = rng.range(2, 30) as u8;
    match (side, v4, rng.below(10)) {
        (_, true, 0) => IpAddr::from(topology::ROUTER_WAN_V4),
        (_, true, 1) => IpAddr::from(topology::ROUTER_LAN_V4),
        (_, false, 0 | 1) => IpAddr::from(topology::ROUTER_LAN_V6),
        (Side::Lan, true, _) => IpAddr::from(lan_v4(n)),
        (Side::Lan, false, _) => IpAddr::from(lan_v6(n)),
        (Side::Wan, true, 2) => IpAddr::from(topology::unroutable_v4(n)),
        (Side::Wan, true, _) => IpAddr::from(wan_v4(n)),
        (Side::Wan, false, _) => IpAddr::from(wan_v6(n)),
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Lan => Side::Wan,
        Side::Wan => Side::Lan,
    }
}

/// A frame on its own, not part of a conversation: any kind, from
/// anywhere, often mutated.
pub fn standalone(rng: &mut Rng) -> (Origin, Vec<Vec<u8>>) {
    let side = if rng.one_in(2) { Side::Lan } else { Side::Wan };
    let origin = if rng.one_in(5) {
        Origin::Host(side)
    } else {
        Origin::From(side)
    };
    if rng.one_in(12) {
        return (origin.raw(), vec![mutate::random_frame(rng)]);
    }
    if rng.one_in(12) {
        return (origin.raw(), vec![non_ip(rng)]);
    }
    let v4 = rng.percent(65);
    let (src, dst) = match origin {
        Origin::From(s) => (endpoint(rng, s, v4), endpoint(rng, other(s), v4)),
        Origin::Host(s) | Origin::Raw(s) => (
            if v4 {
                IpAddr::from(if rng.one_in(4) {
                    topology::ROUTER_LAN_V4
                } else {
                    topology::ROUTER_WAN_V4
                })
            } else {
                IpAddr::from(topology::ROUTER_LAN_V6)
            },
            endpoint(rng, s, v4),
        ),
    };
    let mut net = net(src, dst);
    let any = [rng_port(rng), rng_port(rng)];
    let sport = *rng.pick(&[any[0], 40000, 20, 21]);
    let dport = *rng.pick(&[22, 23, 25, 53, 80, 9, 21, 8080, 5001, any[1]]);
    let l4 = match rng.below(12) {
        0 | 1 => tcp(
            sport,
            dport,
            rng.u8(),
            rng.u32(),
            rng.u32(),
            &rng.bytes_below(40),
        ),
        2 | 3 => udp(sport, dport, &rng.bytes_below(60)),
        4 => {
            let any = rng.u8();
            let ty = if v4 {
                *rng.pick(&[0, 8, 13, 14, 15, 16, 17, 18, 9, 10, 42, any])
            } else {
                *rng.pick(&[128, 129, 139, 140, 200, any])
            };
            query(v4, ty, rng.u16(), rng.u16())
        }
        5 => {
            // An error about a packet from or to anyone, of any kind,
            // with options or extension headers of its own.
            let mut inner = Datagram {
                net: crate::packets::net(dst, src),
                l4: match rng.below(4) {
                    0 => udp(dport, sport, b"q"),
                    1 => tcp(dport, sport, 0x12, rng.u32(), rng.u32(), b""),
                    2 => query(v4, if v4 { 8 } else { 128 }, rng.u16(), 1),
                    _ => sctp(dport, sport, rng.u32(), sctp_chunk(0, 3, b"data")),
                },
            };
            if rng.one_in(3) {
                mutate::options(rng, &mut inner.net);
            }
            let quote = if rng.one_in(3) {
                // A quoted fragment, first or not.
                let frags = inner.fragments(&[8], rng.u32());
                frags[rng.below(frags.len())].clone()
            } else {
                inner.ip()
            };
            error(rng, v4, &quote)
        }
        6 if !v4 => return (origin, vec![neighbour_discovery(rng, origin)]),
        7 => {
            let tag = rng.u32();
            let chunks = match rng.below(4) {
                0 => sctp_chunk(1, 0, &sctp_init_body(rng.u32())),
                1 => sctp_chunk(6, 0, b""),
                2 => sctp_chunk(0, 3, &rng.bytes(20)),
                _ => rng.bytes_below(40),
            };
            sctp(sport, dport, if rng.one_in(2) { 0 } else { tag }, chunks)
        }
        8 => L4::Raw {
            proto: *rng.pick(&[IPPROTO_GRE, wire::IPPROTO_ESP, 33, IPPROTO_UDPLITE, 4, 41]),
            bytes: rng.bytes_below(40),
        },
        9 if !v4 => L4::Raw {
            proto: IPPROTO_NONE,
            bytes: Vec::new(),
        },
        _ => udp(sport, dport, &rng.bytes_below(30)),
    };
    if rng.one_in(4) {
        mutate::options(rng, &mut net);
    }
    let host = origin.is_host();
    let mut pkt = Pkt::new(Datagram { net, l4 });
    if rng.percent(60) {
        mutate::structured(rng, &mut pkt, host);
    }
    let mut frames = pkt.frames(rng.u32());
    if rng.percent(30) {
        for f in &mut frames {
            mutate::bytes(rng, f);
        }
        return (origin.raw(), frames);
    }
    (origin, frames)
}

fn rng_port(rng: &mut Rng) -> u16 {
    rng.range(1, 65535) as u16
}

fn non_ip(rng: &mut Rng) -> Vec<u8> {
    let mut eth = Eth::plain();
    if rng.one_in(3) {
        eth.tags = vec![(wire::ETH_P_8021Q, 5)];
    }
    let any = rng.u16();
    let ty = *rng.pick(&[ETH_P_ARP, 0x88cc, 0x8863, any]);
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend(rng.bytes(20));
    eth.frame(ty, &body)
}

/// Router and neighbour solicitations and advertisements, redirects and
/// MLD: with the hop limit, code and source RFC 4861/2710 want, or not.
fn neighbour_discovery(rng: &mut Rng, origin: Origin) -> Vec<u8> {
    let ty = *rng.pick(&[133, 134, 135, 136, 137, 130, 131, 132, 143]);
    let mut link_local = [0u8; 16];
    link_local[..2].copy_from_slice(&[0xfe, 0x80]);
    link_local[15] = rng.range(1, 9) as u8;
    let mut all_nodes = [0u8; 16];
    all_nodes[..2].copy_from_slice(&[0xff, 0x02]);
    all_nodes[15] = 1;
    let src = if rng.one_in(4) { lan_v6(5) } else { link_local };
    let dst = match rng.below(3) {
        0 => all_nodes,
        1 => topology::ROUTER_LAN_V6.octets(),
        _ => wan_v6(3),
    };
    let mut h = Ipv6::new(src, dst);
    h.hop = if (133..=137).contains(&ty) {
        *rng.pick(&[255, 255, 64])
    } else {
        *rng.pick(&[1, 1, 255])
    };
    if ty < 133 || ty == 143 {
        // MLD goes with a router alert.
        h.exts = vec![wire::Ext::HopByHop(vec![5, 2, 0, 0])];
    }
    let mut body = Vec::new();
    if ty >= 135 {
        body.extend_from_slice(&topology::ROUTER_LAN_V6.octets());
    }
    if ty == 137 {
        body.extend_from_slice(&lan_v6(9));
    }
    if rng.one_in(2) {
        // A link-layer address option, or one of length zero.
        body.extend_from_slice(&[1, *rng.pick(&[1, 1, 0]), 2, 0, 0, 0, 0, 1]);
    }
    let d = Datagram {
        net: Net::V6(h),
        l4: L4::Icmp(Icmp {
            ty,
            code: if rng.one_in(6) { 1 } else { 0 },
            rest: [0; 4],
            body,
            bad_checksum: false,
        }),
    };
    let mut pkt = Pkt::new(d);
    if rng.one_in(4) {
        mutate::structured(rng, &mut pkt, origin.is_host());
    }
    pkt.frames(0).swap_remove(0)
}
