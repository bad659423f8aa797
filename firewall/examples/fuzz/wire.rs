//! Frames built byte by byte: Ethernet with up to two VLAN tags (or more, to
//! be refused), IPv4 with options, IPv6 with extension chains, fragments of
//! either, and TCP, UDP, ICMP, ICMPv6, SCTP or any other protocol above.
//!
//! Written by hand rather than with etherparse because the fuzzer must be
//! able to lie: every length field can be overridden after the rest of the
//! header, and checksums are computed over whatever the lie produced (a
//! wrong checksum would stop most lies at the first check). Checksums are
//! RFC 1071 sums computed here, independent of the datapath's arithmetic.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ: the datapath refuses it (`drop_vlan_stack`).
pub const ETH_P_QINQ1: u16 = 0x9100;
pub const ETH_LEN: usize = 14;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// The one's-complement sum of `data` (RFC 1071), not yet folded.
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds a sum and complements it: the checksum field's value.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// What a length field says instead of the truth.
#[derive(Clone, Debug, Default)]
pub struct Ipv4Lies {
    pub total_len: Option<u16>,
    pub ihl: Option<u8>,
    pub version: Option<u8>,
    /// The header checksum is left wrong (by one).
    pub bad_checksum: bool,
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    /// Option bytes, padded with EOL to a multiple of 4 when written.
    pub options: Vec<u8>,
    pub lies: Ipv4Lies,
}

impl Ipv4 {
    pub fn new(src: [u8; 4], dst: [u8; 4]) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            ttl: 64,
            tos: 0,
            id: 0x1234,
            df: false,
            mf: false,
            frag_off: 0,
            options: Vec::new(),
            lies: Ipv4Lies::default(),
        }
    }

    fn header(&self, proto: u8, payload_len: usize) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.truncate(40);
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let ihl = 5 + opts.len() / 4;
        let total = 4 * ihl + payload_len;
        let mut h = Vec::with_capacity(4 * ihl);
        let version = self.lies.version.unwrap_or(4);
        h.push(version << 4 | self.lies.ihl.unwrap_or(ihl as u8) & 0x0f);
        h.push(self.tos);
        h.extend_from_slice(&self.lies.total_len.unwrap_or(total as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        let frag = u16::from(self.df) << 14 | u16::from(self.mf) << 13 | (self.frag_off & 0x1fff);
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(self.ttl);
        h.push(proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&opts);
        let mut c = checksum(&h);
        if self.lies.bad_checksum {
            c = c.wrapping_add(1);
        }
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }
}

/// An IPv6 extension header.
#[derive(Clone, Debug)]
pub enum Ext {
    /// Hop-by-hop options (the option bytes; padded with PadN).
    HopByHop(Vec<u8>),
    DestOpts(Vec<u8>),
    /// Routing header of type `kind` with `left` segments left.
    Routing {
        kind: u8,
        left: u8,
        data: Vec<u8>,
    },
    Fragment {
        offset: u16,
        more: bool,
        id: u32,
    },
    /// Authentication header with `icv` bytes of integrity check value.
    Ah {
        spi: u32,
        icv: Vec<u8>,
    },
    /// Any bytes, announced as protocol `proto`, with a length byte that
    /// may lie: the header is taken as is.
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

impl Ext {
    fn proto(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => IPPROTO_HOPOPTS,
            Ext::DestOpts(_) => IPPROTO_DSTOPTS,
            Ext::Routing { .. } => IPPROTO_ROUTING,
            Ext::Fragment { .. } => IPPROTO_FRAGMENT,
            Ext::Ah { .. } => IPPROTO_AH,
            Ext::Raw { proto, .. } => *proto,
        }
    }

    fn write(&self, next: u8, out: &mut Vec<u8>) {
        match self {
            Ext::HopByHop(opts) | Ext::DestOpts(opts) => {
                let mut body = opts.clone();
                // Pad to a multiple of 8 with the 2 header bytes: Pad1 for
                // one byte, PadN for more.
                let pad = (8 - (body.len() + 2) % 8) % 8;
                match pad {
                    0 => {}
                    1 => body.push(0),
                    n => {
                        body.push(1);
                        body.push((n - 2) as u8);
                        body.extend(std::iter::repeat_n(0, n - 2));
                    }
                }
                out.push(next);
                out.push(((body.len() + 2) / 8 - 1) as u8);
                out.extend_from_slice(&body);
            }
            Ext::Routing { kind, left, data } => {
                let mut body = data.clone();
                while !(body.len() + 4).is_multiple_of(8) {
                    body.push(0);
                }
                out.push(next);
                out.push(((body.len() + 4) / 8 - 1) as u8);
                out.push(*kind);
                out.push(*left);
                out.extend_from_slice(&body);
            }
            Ext::Fragment { offset, more, id } => {
                out.push(next);
                out.push(0);
                out.extend_from_slice(&((offset << 3) | u16::from(*more)).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
            Ext::Ah { spi, icv } => {
                let mut icv = icv.clone();
                while !(icv.len() + 12).is_multiple_of(8) {
                    icv.push(0);
                }
                out.push(next);
                out.push(((icv.len() + 12) / 4 - 2) as u8);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&spi.to_be_bytes());
                out.extend_from_slice(&1u32.to_be_bytes());
                out.extend_from_slice(&icv);
            }
            Ext::Raw { bytes, .. } => {
                out.push(next);
                out.extend_from_slice(bytes.get(1..).unwrap_or(&[]));
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop: u8,
    pub tclass: u8,
    pub flow: u32,
    pub exts: Vec<Ext>,
    pub lie_payload_len: Option<u16>,
}

impl Ipv6 {
    pub fn new(src: [u8; 16], dst: [u8; 16]) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            hop: 64,
            tclass: 0,
            flow: 0,
            exts: Vec::new(),
            lie_payload_len: None,
        }
    }

    /// The fixed header and the extension chain, ending in `proto`.
    fn header(&self, proto: u8, payload_len: usize) -> Vec<u8> {
        let mut chain = Vec::new();
        for (i, e) in self.exts.iter().enumerate() {
            let next = self.exts.get(i + 1).map_or(proto, Ext::proto);
            e.write(next, &mut chain);
        }
        let first = self.exts.first().map_or(proto, Ext::proto);
        let plen = self
            .lie_payload_len
            .unwrap_or((chain.len() + payload_len) as u16);
        let mut h = Vec::with_capacity(40 + chain.len());
        let word = 6u32 << 28 | u32::from(self.tclass) << 20 | (self.flow & 0xfffff);
        h.extend_from_slice(&word.to_be_bytes());
        h.extend_from_slice(&plen.to_be_bytes());
        h.push(first);
        h.push(self.hop);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&chain);
        h
    }
}

#[derive(Clone, Debug)]
pub enum Net {
    V4(Ipv4),
    V6(Ipv6),
}

impl Net {
    /// The sum of the transport pseudo-header (RFC 793, RFC 8200 §8.1).
    fn pseudo(&self, proto: u8, len: usize) -> u32 {
        match self {
            Net::V4(h) => {
                let acc = sum(&h.src, 0);
                let acc = sum(&h.dst, acc);
                acc + u32::from(proto) + len as u32
            }
            Net::V6(h) => {
                let acc = sum(&h.src, 0);
                let acc = sum(&h.dst, acc);
                acc + (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(proto)
            }
        }
    }

    pub fn header(&self, proto: u8, payload_len: usize) -> Vec<u8> {
        match self {
            Net::V4(h) => h.header(proto, payload_len),
            Net::V6(h) => h.header(proto, payload_len),
        }
    }

    pub fn ethertype(&self) -> u16 {
        match self {
            Net::V4(_) => ETH_P_IP,
            Net::V6(_) => ETH_P_IPV6,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    pub urg: u16,
    /// Option bytes, padded with EOL to a multiple of 4.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// A data offset (in words) other than the truth.
    pub lie_doff: Option<u8>,
    pub bad_checksum: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Udp {
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    pub lie_len: Option<u16>,
    /// Checksum 0: "none" for IPv4 (RFC 768), invalid for IPv6.
    pub no_checksum: bool,
    pub bad_checksum: bool,
}

/// ICMP or ICMPv6 (by the network header it travels in).
#[derive(Clone, Debug, Default)]
pub struct Icmp {
    pub ty: u8,
    pub code: u8,
    /// The second word: identifier and sequence of a query, unused or MTU
    /// or pointer of an error.
    pub rest: [u8; 4],
    /// An error's quoted packet, a query's data.
    pub body: Vec<u8>,
    pub bad_checksum: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Sctp {
    pub sport: u16,
    pub dport: u16,
    pub vtag: u32,
    /// Chunks, each already padded.
    pub chunks: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp(Tcp),
    Udp(Udp),
    Icmp(Icmp),
    Sctp(Sctp),
    Raw { proto: u8, bytes: Vec<u8> },
}

impl L4 {
    /// The protocol number and the transport bytes, checksummed for `net`.
    pub fn bytes(&self, net: &Net) -> (u8, Vec<u8>) {
        match self {
            L4::Tcp(t) => {
                let mut opts = t.options.clone();
                opts.truncate(40);
                while !opts.len().is_multiple_of(4) {
                    opts.push(0);
                }
                let doff = t.lie_doff.unwrap_or((5 + opts.len() / 4) as u8);
                let mut b = Vec::with_capacity(20 + opts.len() + t.payload.len());
                b.extend_from_slice(&t.sport.to_be_bytes());
                b.extend_from_slice(&t.dport.to_be_bytes());
                b.extend_from_slice(&t.seq.to_be_bytes());
                b.extend_from_slice(&t.ack.to_be_bytes());
                b.push(doff << 4);
                b.push(t.flags);
                b.extend_from_slice(&t.win.to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&t.urg.to_be_bytes());
                b.extend_from_slice(&opts);
                b.extend_from_slice(&t.payload);
                let mut c = finish(sum(&b, net.pseudo(IPPROTO_TCP, b.len())));
                if t.bad_checksum {
                    c = c.wrapping_add(1);
                }
                b[16..18].copy_from_slice(&c.to_be_bytes());
                (IPPROTO_TCP, b)
            }
            L4::Udp(u) => {
                let len = 8 + u.payload.len();
                let mut b = Vec::with_capacity(len);
                b.extend_from_slice(&u.sport.to_be_bytes());
                b.extend_from_slice(&u.dport.to_be_bytes());
                b.extend_from_slice(&u.lie_len.unwrap_or(len as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&u.payload);
                if !u.no_checksum {
                    let mut c = finish(sum(&b, net.pseudo(IPPROTO_UDP, len)));
                    if c == 0 {
                        c = 0xffff;
                    }
                    if u.bad_checksum {
                        c = c.wrapping_add(1);
                    }
                    b[6..8].copy_from_slice(&c.to_be_bytes());
                }
                (IPPROTO_UDP, b)
            }
            L4::Icmp(i) => {
                let mut b = vec![i.ty, i.code, 0, 0];
                b.extend_from_slice(&i.rest);
                b.extend_from_slice(&i.body);
                let (proto, acc) = match net {
                    Net::V4(_) => (IPPROTO_ICMP, 0),
                    Net::V6(_) => (IPPROTO_ICMPV6, net.pseudo(IPPROTO_ICMPV6, b.len())),
                };
                let mut c = finish(sum(&b, acc));
                if i.bad_checksum {
                    c = c.wrapping_add(1);
                }
                b[2..4].copy_from_slice(&c.to_be_bytes());
                (proto, b)
            }
            L4::Sctp(s) => {
                let mut b = Vec::with_capacity(12 + s.chunks.len());
                b.extend_from_slice(&s.sport.to_be_bytes());
                b.extend_from_slice(&s.dport.to_be_bytes());
                b.extend_from_slice(&s.vtag.to_be_bytes());
                // CRC32c: not verified by the datapath (see ARCHITECTURE,
                // differences from netfilter); left 0.
                b.extend_from_slice(&[0; 4]);
                b.extend_from_slice(&s.chunks);
                (IPPROTO_SCTP, b)
            }
            L4::Raw { proto, bytes } => (*proto, bytes.clone()),
        }
    }
}

/// A network header and what it carries.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub net: Net,
    pub l4: L4,
}

impl Datagram {
    /// The IP packet, unfragmented.
    pub fn ip(&self) -> Vec<u8> {
        let (proto, l4) = self.l4.bytes(&self.net);
        let mut out = self.net.header(proto, l4.len());
        out.extend_from_slice(&l4);
        out
    }

    /// The datagram cut into fragments at `cuts` (offsets into the
    /// transport bytes, multiples of 8, ascending): the first carries the
    /// transport header (checksummed over the whole datagram), later ones
    /// carry an offset. IPv6 fragments get a fragment header after the
    /// datagram's own extension headers.
    pub fn fragments(&self, cuts: &[usize], id: u32) -> Vec<Vec<u8>> {
        let (proto, l4) = self.l4.bytes(&self.net);
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < l4.len()));
        bounds.push(l4.len());
        bounds.dedup();
        let mut out = Vec::new();
        for w in bounds.windows(2) {
            let (from, to) = (w[0], w[1]);
            let more = to < l4.len();
            let piece = &l4[from..to];
            let mut pkt = match &self.net {
                Net::V4(h) => {
                    let mut h = h.clone();
                    h.mf = more;
                    h.frag_off = (from / 8) as u16;
                    h.id = id as u16;
                    h.header(proto, piece.len())
                }
                Net::V6(h) => {
                    let mut h = h.clone();
                    h.exts.push(Ext::Fragment {
                        offset: (from / 8) as u16,
                        more,
                        id,
                    });
                    h.header(proto, piece.len())
                }
            };
            pkt.extend_from_slice(piece);
            out.push(pkt);
        }
        out
    }
}

/// The Ethernet header: addresses and VLAN tags.
#[derive(Clone, Debug)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// (TPID, TCI) pairs, outermost first.
    pub tags: Vec<(u16, u16)>,
}

impl Eth {
    pub fn plain() -> Eth {
        Eth {
            dst: [0x02, 0, 0, 0, 0, 0x0a],
            src: [0x02, 0, 0, 0, 0, 0x0b],
            tags: Vec::new(),
        }
    }

    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ETH_LEN + 4 * self.tags.len() + payload.len());
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        for (tpid, tci) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// TCP option bytes.
pub mod tcp_opt {
    pub fn mss(v: u16) -> Vec<u8> {
        let [a, b] = v.to_be_bytes();
        vec![2, 4, a, b]
    }
    pub fn wscale(shift: u8) -> Vec<u8> {
        vec![1, 3, 3, shift]
    }
    pub fn sack_permitted() -> Vec<u8> {
        vec![1, 1, 4, 2]
    }
    pub fn timestamps(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    }
    pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![1, 1, 5, 2 + 8 * blocks.len() as u8];
        for (l, r) in blocks {
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
        }
        o
    }
}
