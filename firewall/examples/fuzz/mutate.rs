//! Mutations: structured ones that keep a frame plausible enough to reach
//! deep into the datapath (VLAN tags, IPv4 options, IPv6 extension chains,
//! fragmentation, TCP flags, sequence numbers and options, length fields
//! that lie), and byte-level ones that do not (truncation, bit flips,
//! random bytes).

use crate::{
    rng::Rng,
    wire::{
        ETH_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_QINQ1, Ext, IPPROTO_DSTOPTS, IPPROTO_TCP, L4,
        Net, tcp_opt,
    },
};

/// A packet before it becomes bytes: framing, datagram, and how it is cut
/// into fragments.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub eth: crate::wire::Eth,
    pub dgram: crate::wire::Datagram,
    /// Fragment cuts (offsets into the transport bytes); empty: whole.
    pub cuts: Vec<usize>,
    /// Of the fragments, send these, in this order; empty: all, in order.
    pub only: Vec<usize>,
}

impl Pkt {
    pub fn new(dgram: crate::wire::Datagram) -> Pkt {
        Pkt {
            eth: crate::wire::Eth::plain(),
            dgram,
            cuts: Vec::new(),
            only: Vec::new(),
        }
    }

    /// The frames this packet is sent as: one, or one per fragment.
    pub fn frames(&self, frag_id: u32) -> Vec<Vec<u8>> {
        let ethertype = self.dgram.net.ethertype();
        if self.cuts.is_empty() {
            return vec![self.eth.frame(ethertype, &self.dgram.ip())];
        }
        let pieces = self.dgram.fragments(&self.cuts, frag_id);
        let order: Vec<usize> = if self.only.is_empty() {
            (0..pieces.len()).collect()
        } else {
            self.only.clone()
        };
        let mut frames: Vec<Vec<u8>> = order
            .iter()
            .filter_map(|i| pieces.get(*i))
            .map(|ip| self.eth.frame(ethertype, ip))
            .collect();
        if frames.is_empty() {
            // Fewer pieces than `only` named: send what there is.
            frames = pieces
                .iter()
                .map(|ip| self.eth.frame(ethertype, ip))
                .collect();
        }
        frames
    }
}

/// One to three structured mutations. `host`: the router itself sends the
/// packet, from its own address, which is kept (the kernel picks the
/// source of what it sends).
pub fn structured(rng: &mut Rng, p: &mut Pkt, host: bool) {
    for _ in 0..rng.range(1, 3) {
        match rng.below(9) {
            0 => vlan(rng, p),
            1 => options(rng, &mut p.dgram.net),
            2 => fragment(rng, p),
            3 => lie(rng, p),
            4 => ttl(rng, &mut p.dgram.net),
            5 | 6 => transport(rng, &mut p.dgram.l4),
            7 => checksum(rng, p),
            _ => addresses(rng, &mut p.dgram.net, host),
        }
    }
}

fn vlan(rng: &mut Rng, p: &mut Pkt) {
    let tpids = [ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1];
    let n = *rng.pick(&[1, 1, 2, 2, 3]);
    p.eth.tags = (0..n)
        .map(|i| {
            let tpid = if rng.one_in(6) {
                *rng.pick(&tpids)
            } else if i == 0 && n > 1 {
                ETH_P_8021AD
            } else {
                ETH_P_8021Q
            };
            (tpid, rng.u16() & 0x0fff)
        })
        .collect();
}

/// IPv4 options (RFC 791 and the ones `ip_options_compile` knows) or an
/// IPv6 extension chain.
pub fn options(rng: &mut Rng, net: &mut Net) {
    match net {
        Net::V4(h) => {
            let mut o = Vec::new();
            for _ in 0..rng.range(1, 3) {
                match rng.below(8) {
                    0 => o.push(1),                            // NOP
                    1 => o.extend_from_slice(&[148, 4, 0, 0]), // router alert
                    2 => {
                        // record route, pointer at the first slot
                        o.extend_from_slice(&[7, 11, 4]);
                        o.extend_from_slice(&[0; 8]);
                    }
                    3 => {
                        // timestamp, timestamps only
                        o.extend_from_slice(&[68, 12, 5, 0]);
                        o.extend_from_slice(&[0; 8]);
                    }
                    4 => {
                        // loose or strict source route, one hop
                        o.push(*rng.pick(&[131, 137]));
                        o.extend_from_slice(&[7, 4, 198, 51, 100, 1]);
                    }
                    5 => o.extend_from_slice(&[0, 0, 0, 0]), // EOL
                    6 => {
                        // a length that lies
                        o.push(rng.u8());
                        o.push(*rng.pick(&[0, 1, 2, 40, 255]));
                    }
                    _ => o.extend(rng.bytes_range(1, 12)),
                }
            }
            o.truncate(40);
            h.options = o;
        }
        Net::V6(h) => {
            let mut exts = Vec::new();
            let n = if rng.one_in(8) {
                rng.range(6, 9)
            } else {
                rng.range(1, 3)
            };
            for _ in 0..n {
                exts.push(match rng.below(7) {
                    0 => Ext::HopByHop(if rng.one_in(2) {
                        vec![5, 2, 0, 0] // router alert
                    } else {
                        rng.bytes_below(12)
                    }),
                    1 | 2 => Ext::DestOpts(rng.bytes_below(12)),
                    3 => {
                        let kind = *rng.pick(&[0, 2, 4, 3]);
                        let left = *rng.pick(&[0, 0, 1, 2]);
                        Ext::Routing {
                            kind,
                            left,
                            data: {
                                let n = 4 + 16 * rng.below(3);
                                rng.bytes(n)
                            },
                        }
                    }
                    4 => Ext::Ah {
                        spi: rng.u32(),
                        icv: rng.bytes(12),
                    },
                    5 => Ext::Fragment {
                        offset: 0,
                        more: false,
                        id: rng.u32(),
                    },
                    _ => Ext::Raw {
                        proto: IPPROTO_DSTOPTS,
                        bytes: {
                            let n = 8 * rng.range(1, 3) as usize;
                            rng.bytes(n)
                        },
                    },
                });
            }
            // Hop-by-hop anywhere but first is itself an error to find.
            h.exts = exts;
        }
    }
}

fn fragment(rng: &mut Rng, p: &mut Pkt) {
    let (_, l4) = p.dgram.l4.bytes(&p.dgram.net);
    let len = l4.len();
    // A datagram of 8 bytes or less cannot be cut: it goes as a lone
    // fragment (an IPv6 atomic fragment).
    let max_k = (len.saturating_sub(1) / 8).max(1) as u32;
    let first = 8 * rng.range(1, max_k) as usize;
    p.cuts = vec![first];
    let rest = len.saturating_sub(first + 1) / 8;
    if rest >= 1 && rng.one_in(3) {
        p.cuts.push(first + 8 * rng.range(1, rest as u32) as usize);
    }
    p.only = match rng.below(4) {
        0 => vec![0],
        1 => vec![1],
        2 => vec![1, 0],
        _ => vec![],
    };
}

fn lie(rng: &mut Rng, p: &mut Pkt) {
    let delta = |rng: &mut Rng| *rng.pick(&[-40i32, -8, -1, 1, 8, 40, 1000]);
    let (_, l4) = p.dgram.l4.bytes(&p.dgram.net);
    match (&mut p.dgram.net, rng.below(4)) {
        (Net::V4(h), 0) => {
            let total = 20 + h.options.len().div_ceil(4) * 4 + l4.len();
            h.lies.total_len = Some((total as i32 + delta(rng)).clamp(0, 0xffff) as u16);
        }
        (Net::V4(h), 1) => h.lies.ihl = Some(rng.below(16) as u8),
        (Net::V4(h), 2) => h.lies.version = Some(*rng.pick(&[0, 5, 6, 15])),
        (Net::V6(h), 0 | 1) => h.lie_payload_len = Some(rng.u16() % 2000),
        _ => match &mut p.dgram.l4 {
            L4::Tcp(t) => t.lie_doff = Some(rng.below(16) as u8),
            L4::Udp(u) => {
                let len = 8 + u.payload.len() as i32;
                u.lie_len = Some((len + delta(rng)).clamp(0, 0xffff) as u16);
            }
            L4::Icmp(i) if i.body.len() > 4 => {
                // A quoted IPv4 header whose total length lies.
                let at = rng.below(i.body.len() - 2);
                i.body[at] = rng.u8();
            }
            _ => {}
        },
    }
}

fn ttl(rng: &mut Rng, net: &mut Net) {
    let v = *rng.pick(&[0, 1, 2, 255]);
    match net {
        Net::V4(h) => h.ttl = v,
        Net::V6(h) => h.hop = v,
    }
}

fn checksum(rng: &mut Rng, p: &mut Pkt) {
    match (&mut p.dgram.l4, &mut p.dgram.net) {
        (_, Net::V4(h)) if rng.one_in(3) => h.lies.bad_checksum = true,
        (L4::Tcp(t), _) => t.bad_checksum = true,
        (L4::Udp(u), _) => {
            if rng.one_in(2) {
                u.no_checksum = true;
            } else {
                u.bad_checksum = true;
            }
        }
        (L4::Icmp(i), _) => i.bad_checksum = true,
        _ => {}
    }
}

fn addresses(rng: &mut Rng, net: &mut Net, keep_source: bool) {
    match net {
        Net::V4(h) => {
            let a = *rng.pick(&[
                [127, 0, 0, 1],
                [224, 0, 0, 1],
                [255, 255, 255, 255],
                [0, 0, 0, 0],
                [10, 0, 2, 1],
                [10, 0, 1, 1],
                [10, 0, 1, 255],
                [169, 254, 1, 1],
            ]);
            if rng.one_in(2) && !keep_source {
                h.src = a;
            } else {
                h.dst = a;
            }
        }
        Net::V6(h) => {
            let mut a = [0u8; 16];
            match rng.below(4) {
                0 => a[15] = 1, // ::1
                1 => {
                    a[0] = 0xff;
                    a[1] = 0x02;
                    a[15] = 1;
                }
                2 => {
                    a[0] = 0xfe;
                    a[1] = 0x80;
                    a[15] = 1;
                }
                _ => {
                    a[10] = 0xff;
                    a[11] = 0xff;
                    a[12..].copy_from_slice(&[10, 0, 1, 5]);
                }
            }
            if rng.one_in(2) && !keep_source {
                h.src = a;
            } else {
                h.dst = a;
            }
        }
    }
}

/// Transport fields a valid conversation would never produce.
pub fn transport(rng: &mut Rng, l4: &mut L4) {
    match l4 {
        L4::Tcp(t) => match rng.below(7) {
            0 => t.flags = rng.u8(),
            1 => {
                t.seq = t
                    .seq
                    .wrapping_add(*rng.pick(&[1, 65535, 1 << 20, 1 << 31, u32::MAX]))
            }
            2 => {
                t.ack = t
                    .ack
                    .wrapping_add(*rng.pick(&[1, 65535, 1 << 20, 1 << 31, u32::MAX]))
            }
            3 => t.win = *rng.pick(&[0, 1, 65535]),
            4 => t.options = tcp_options(rng, true),
            5 => {
                let n = *rng.pick(&[0, 1, 100, 1400]);
                t.payload = rng.bytes(n);
            }
            _ => t.urg = rng.u16(),
        },
        L4::Udp(u) => match rng.below(2) {
            0 => {
                let n = *rng.pick(&[0, 1, 1400]);
                u.payload = rng.bytes(n);
            }
            _ => u.dport = rng.u16(),
        },
        L4::Icmp(i) => match rng.below(3) {
            0 => i.ty = rng.u8(),
            1 => i.code = rng.u8(),
            _ => i.body.truncate(rng.below(i.body.len() + 1)),
        },
        L4::Sctp(s) => {
            if rng.one_in(2) {
                s.vtag = rng.u32();
            } else if !s.chunks.is_empty() {
                let at = rng.below(s.chunks.len());
                s.chunks[at] = rng.u8();
            }
        }
        L4::Raw { bytes, .. } => *bytes = rng.bytes_below(64),
    }
}

/// TCP options: the usual SYN set, the timestamps-only layout, SACK blocks,
/// or (`wild`) any bytes, lengths that lie included.
pub fn tcp_options(rng: &mut Rng, wild: bool) -> Vec<u8> {
    let mut o = Vec::new();
    match rng.below(if wild { 6 } else { 4 }) {
        0 => {}
        1 => {
            o.extend(tcp_opt::mss(1460));
            o.extend(tcp_opt::sack_permitted());
            o.extend(tcp_opt::timestamps(rng.u32(), 0));
            o.extend(tcp_opt::wscale(rng.below(16) as u8));
        }
        2 => o.extend(tcp_opt::timestamps(rng.u32(), rng.u32())),
        3 => {
            let base = rng.u32();
            let blocks: Vec<(u32, u32)> = (0..rng.range(1, 4))
                .map(|i| {
                    (
                        base.wrapping_add(i * 1000),
                        base.wrapping_add(i * 1000 + 500),
                    )
                })
                .collect();
            o.extend(tcp_opt::sack(&blocks));
        }
        4 => {
            o.push(rng.u8());
            o.push(*rng.pick(&[0, 1, 2, 3, 39, 40, 255]));
            o.extend(rng.bytes_below(10));
        }
        _ => o.extend(rng.bytes_below(41)),
    }
    o
}

/// One to three byte-level mutations.
pub fn bytes(rng: &mut Rng, frame: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 3) {
        let len = frame.len();
        match rng.below(6) {
            0 => {
                // Truncation, kept at a whole Ethernet header: the kernel
                // refuses test runs of less.
                if len > ETH_LEN {
                    frame.truncate(ETH_LEN + rng.below(len - ETH_LEN));
                }
            }
            1 | 2 => {
                // Bit flips, mostly in the headers.
                let span = len.min(if rng.one_in(4) { len } else { 80 });
                for _ in 0..rng.range(1, 8) {
                    let at = rng.below(span);
                    frame[at] ^= 1 << rng.below(8);
                }
            }
            3 => {
                let at = rng.below(len);
                let n = rng.range(1, 16) as usize;
                for b in frame.iter_mut().skip(at).take(n) {
                    *b = rng.u8();
                }
            }
            4 => {
                let n = rng.range(1, 64) as usize;
                frame.extend(rng.bytes(n));
            }
            _ => {
                let at = rng.below(len);
                frame[at] = *rng.pick(&[0, 0xff, 0x80, 0x7f]);
            }
        }
    }
    if frame.len() < ETH_LEN {
        frame.resize(ETH_LEN, 0);
    }
}

/// A frame of random bytes, sometimes behind a plausible Ethernet and IP
/// version nibble.
pub fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = ETH_LEN + rng.below(200);
    let mut f = rng.bytes(len);
    if rng.one_in(2) {
        let (ty, version) = *rng.pick(&[(0x0800u16, 0x45u8), (0x86dd, 0x60)]);
        f[12..14].copy_from_slice(&ty.to_be_bytes());
        if len > ETH_LEN {
            f[ETH_LEN] = version | (f[ETH_LEN] & if version == 0x45 { 0 } else { 0x0f });
        }
        if len > ETH_LEN + 9 && version == 0x45 && rng.one_in(2) {
            f[ETH_LEN + 9] = IPPROTO_TCP;
        }
    }
    f
}
