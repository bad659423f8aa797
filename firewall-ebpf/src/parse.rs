//! Header parsing shared by the XDP and TC programs.
//!
//! Every read goes through [`ptr_at`], which bounds the offset before adding
//! it to the packet pointer: the verifier rejects packet arithmetic with an
//! unbounded scalar, so the explicit `MAX_OFF` check is what keeps variable
//! IPv4 option and IPv6 extension-header lengths verifiable.

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_md,
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use firewall_common::{
    CtKey, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP,
    ct::{IcmpClass, classify_icmp},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

/// No header we read starts beyond this offset.
const MAX_OFF: usize = 512;
/// IPv6 extension headers followed before giving up (as malformed).
const MAX_EXT_HEADERS: usize = 6;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// The pre-standard QinQ TPID some switches still use.
const ETH_P_QINQ1: u16 = 0x9100;
/// VLAN tags followed (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;

/// Reads bytes through the `bpf_{xdp,skb}_load_bytes` helpers. Used where
/// the offset comes out of a loop (IPv6 extension headers) or sits deep in
/// the packet (the header an ICMP error quotes): LLVM tends to rewrite a
/// direct bounds check there into arithmetic on `data_end`, which the
/// verifier forbids, and the helper checks bounds at run time instead.
pub trait LoadBytes {
    fn load<const N: usize>(&self, off: usize) -> Result<[u8; N], ParseError>;
    /// Whether the frame holds at least `len` bytes. XDP compares
    /// pointers; TC uses `skb->len`, because the payload of a locally built
    /// skb sits in paged data beyond `data_end`.
    fn holds(&self, start: usize, end: usize, len: usize) -> bool;
    /// Copies `len` bytes at `off` to `buf`; false if they are not there.
    fn load_raw(&self, off: u32, buf: *mut u8, len: u32) -> bool;
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4/IPv6: ARP and friends, passed untouched.
    NotIp,
    /// Truncated or inconsistent headers.
    Malformed,
    /// Still a VLAN TPID after the tags the parser follows. The kernel
    /// strips any number of priority tags and routes what is inside, so
    /// such a frame cannot be passed as "not IP".
    VlanStack,
    /// A first fragment too short to hold its transport header (RFC 1858's
    /// tiny fragment; RFC 7112 for IPv6).
    TinyFragment,
}

/// `Packet::flags` bits.
pub mod pkt_flags {
    /// An IPv6 routing header with segments left: the packet asks to be
    /// source-routed.
    pub const SOURCE_ROUTE: u8 = 1 << 0;
    /// An ICMP error quoting a non-first fragment, whose bytes after the IP
    /// header are payload, not a transport header.
    pub const QUOTES_FRAGMENT: u8 = 1 << 1;
    /// The first fragment of a fragmented datagram: its transport header is
    /// here, but its checksum and length cover fragments still to come.
    pub const FIRST_FRAGMENT: u8 = 1 << 2;
    /// An IPv6 atomic fragment (offset 0, no more fragments): a whole
    /// packet (RFC 6946), noted for its counter.
    pub const ATOMIC_FRAGMENT: u8 = 1 << 3;
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    Tcp,
    Udp,
    /// ICMP/ICMPv6 query (echo etc.), tracked by identifier.
    IcmpQuery,
    /// ICMP/ICMPv6 error; `Packet::inner` holds the quoted packet's tuple.
    IcmpError,
    IcmpUntracked,
    IcmpInvalid,
    /// Any other IP protocol: tracked by addresses only.
    Other,
    /// SCTP: ports in the tuple, the verification tag in `Packet::vtag`.
    Sctp,
    /// A non-first fragment: no transport header to read.
    Fragment,
}

pub struct Packet {
    /// The packet's own tuple, direction as seen on the wire.
    pub key: CtKey,
    /// For ICMP errors: the tuple of the quoted packet.
    pub inner: CtKey,
    pub kind: L4Kind,
    pub tcp_flags: u8,
    /// ICMP queries: the code (the type is in the tuple).
    pub icmp_code: u8,
    /// TTL or hop limit, for LOG.
    pub ttl: u8,
    /// Layer-3 length (what counters count).
    pub l3_len: u32,
    /// Offsets of the IP and transport headers from the frame start, for
    /// NAT rewrites.
    pub l3_off: u16,
    pub l4_off: u16,
    /// For ICMP errors: offset of the quoted packet's transport header (its
    /// IP header starts at `l4_off + 8`).
    pub inner_l4_off: u16,
    /// For TCP: offset of the payload.
    pub payload_off: u16,
    /// [`pkt_flags`] bits.
    pub flags: u8,
    /// SCTP: the common header's verification tag, as read.
    pub vtag: u32,
    /// TCP: sequence and acknowledgement numbers and the raw window, host
    /// order.
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub tcp_win: u16,
    /// Fragments (first and later): the datagram's identification (IPv4's
    /// 16 bits or IPv6's 32, as read), the fragment's offset in bytes into
    /// the fragmentable part, the bytes it carries of it, where in the frame
    /// that part starts, and the protocol it is of (IPv4's protocol, the
    /// IPv6 fragment header's next header).
    pub frag_id: u32,
    pub frag_off: u16,
    pub frag_len: u16,
    pub frag_start: u16,
    pub frag_proto: u8,
    /// What `frag::parsed` settled for a fragment (`frag::fate`).
    pub frag_fate: u8,
}

/// Hides `x` from LLVM's range analysis (libbpf's `barrier_var`). Without
/// it LLVM proves a bounds check redundant from earlier ones (e.g. L4 header
/// within the IP total length, IP total length within the frame) and drops
/// it, while the verifier, which does not track those relations, needs
/// exactly that check before the read.
#[inline(always)]
pub fn opaque<T: Copy>(x: T) -> T {
    // A volatile reload: LLVM must assume any value, while the verifier
    // tracks the spilled scalar exactly. (An empty `asm!` barrier breaks the
    // BTF line info the kernel checks.)
    // SAFETY: reading a live local.
    unsafe { core::ptr::read_volatile(&x) }
}

#[inline(always)]
fn ptr_at<T>(start: usize, end: usize, off: usize) -> Result<*const T, ParseError> {
    let off = opaque(off);
    if off > MAX_OFF {
        return Err(ParseError::Malformed);
    }
    if start + off + size_of::<T>() > end {
        return Err(ParseError::Malformed);
    }
    Ok((start + off) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn v6_words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Parses into `p` (a per-CPU scratch slot: a `Packet` on the stack plus
/// the copies made when returning it would not fit the 512-byte BPF stack).
pub fn parse<L: LoadBytes>(
    l: &L,
    start: usize,
    end: usize,
    p: &mut Packet,
) -> Result<(), ParseError> {
    // The slot still holds the previous packet. A frame that is not IP
    // (ARP) returns before anything is written, and callers that look at
    // the slot afterwards must not mistake it for that packet.
    p.kind = L4Kind::Other;
    p.key.family = 0;
    let eth: *const EthHdr = ptr_at(start, end, 0)?;
    // SAFETY: bounds-checked by ptr_at.
    let mut proto = be16(unsafe { (*eth).ether_type.to_ne_bytes() });
    let mut off = EthHdr::LEN;
    // Only the TPIDs the kernel strips are followed (`eth_type_vlan`); a
    // 0x9100 tag, or one more tag than we follow, is refused below.
    for _ in 0..MAX_VLAN_TAGS {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let tag: *const [u8; 4] = ptr_at(start, end, off)?;
            proto = be16(unsafe { [(*tag)[2], (*tag)[3]] });
            off += 4;
        }
    }
    match proto {
        ETH_P_IP => parse_v4(l, start, end, off, p),
        ETH_P_IPV6 => parse_v6(l, start, end, off, p),
        _ if is_vlan_tpid(proto) => Err(ParseError::VlanStack),
        _ => Err(ParseError::NotIp),
    }
}

#[inline(always)]
fn is_vlan_tpid(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD || proto == ETH_P_QINQ1
}

#[inline(always)]
fn reset(p: &mut Packet, family: u8, proto: u8, l3_len: u32) {
    p.key = CtKey {
        family,
        proto,
        ..CtKey::default()
    };
    p.kind = L4Kind::Other;
    p.tcp_flags = 0;
    p.icmp_code = 0;
    p.ttl = 0;
    p.l3_len = l3_len;
    p.l3_off = 0;
    p.l4_off = 0;
    p.inner_l4_off = 0;
    p.payload_off = 0;
    p.flags = 0;
    p.vtag = 0;
    p.tcp_seq = 0;
    p.tcp_ack = 0;
    p.tcp_win = 0;
    p.frag_id = 0;
    p.frag_off = 0;
    p.frag_len = 0;
    p.frag_start = 0;
    p.frag_proto = 0;
}

fn parse_v4<L: LoadBytes>(
    l: &L,
    start: usize,
    end: usize,
    l3: usize,
    p: &mut Packet,
) -> Result<(), ParseError> {
    let ip: *const Ipv4Hdr = ptr_at(start, end, l3)?;
    let ip = unsafe { &*ip };
    let vihl = ip.vihl;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(ParseError::Malformed);
    }
    let tot_len = be16(ip.tot_len) as usize;
    if tot_len < ihl || !l.holds(start, end, l3 + tot_len) {
        return Err(ParseError::Malformed);
    }
    reset(p, FAMILY_V4, ip.proto, tot_len as u32);
    p.l3_off = l3 as u16;
    p.l4_off = (l3 + ihl) as u16;
    p.ttl = ip.ttl;
    p.key.src[0] = u32::from_ne_bytes(ip.src_addr);
    p.key.dst[0] = u32::from_ne_bytes(ip.dst_addr);
    let frags = be16(ip.frags);
    if frags & 0x3fff != 0 {
        p.frag_id = be16(ip.id) as u32;
        p.frag_off = (frags & 0x1fff) << 3;
        p.frag_len = (tot_len - ihl) as u16;
        p.frag_start = (l3 + ihl) as u16;
        p.frag_proto = ip.proto;
    }
    if frags & 0x1fff != 0 {
        p.kind = L4Kind::Fragment;
        return Ok(());
    }
    if frags & 0x2000 != 0 {
        p.flags |= pkt_flags::FIRST_FRAGMENT;
    }
    parse_l4(l, start, end, l3 + tot_len, l3 + ihl, p)
}

fn parse_v6<L: LoadBytes>(
    l: &L,
    start: usize,
    end: usize,
    l3: usize,
    p: &mut Packet,
) -> Result<(), ParseError> {
    let ip: *const Ipv6Hdr = ptr_at(start, end, l3)?;
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    let payload = be16(ip.payload_len) as usize;
    let l3_end = l3 + Ipv6Hdr::LEN + payload;
    if !l.holds(start, end, l3_end) {
        return Err(ParseError::Malformed);
    }
    reset(p, FAMILY_V6, 0, (Ipv6Hdr::LEN + payload) as u32);
    p.l3_off = l3 as u16;
    p.ttl = ip.hop_limit;
    p.key.src = v6_words(&ip.src_addr);
    p.key.dst = v6_words(&ip.dst_addr);
    let chain = walk_ext_headers(l, ip.next_hdr, l3 + Ipv6Hdr::LEN)?;
    p.key.proto = chain.next;
    p.l4_off = chain.off as u16;
    if chain.source_route {
        p.flags |= pkt_flags::SOURCE_ROUTE;
    }
    if chain.atomic_fragment {
        p.flags |= pkt_flags::ATOMIC_FRAGMENT;
    }
    if chain.later_fragment || chain.first_fragment {
        if chain.frag_end > l3_end {
            return Err(ParseError::Malformed);
        }
        p.frag_id = chain.frag_id;
        p.frag_off = chain.frag_off;
        p.frag_len = (l3_end - chain.frag_end) as u16;
        p.frag_start = chain.frag_end as u16;
        p.frag_proto = chain.frag_proto;
    }
    if chain.later_fragment {
        p.kind = L4Kind::Fragment;
        return Ok(());
    }
    if chain.first_fragment {
        p.flags |= pkt_flags::FIRST_FRAGMENT;
    }
    let off = chain.off;
    parse_l4(l, start, end, l3_end, off, p)
}

/// Where an IPv6 extension-header chain leads.
struct ExtChain {
    /// The first header that is not an extension header.
    next: u8,
    /// Its offset.
    off: usize,
    /// A fragment header with a non-zero offset: no transport header here.
    later_fragment: bool,
    /// A routing header with segments left.
    source_route: bool,
    /// A fragment header with offset 0 and more fragments to come.
    first_fragment: bool,
    /// A fragment header with offset 0 and no more fragments.
    atomic_fragment: bool,
    /// The fragment header's identification, offset (bytes), next header,
    /// and where the fragmentable part after it starts.
    frag_id: u32,
    frag_off: u16,
    frag_proto: u8,
    frag_end: usize,
}

/// The extension-header walk between `bpf_loop` calls.
#[repr(C)]
pub struct ExtWalk {
    nh: u32,
    off: u32,
    /// `EXT_*` bits.
    flags: u32,
    /// The fragment header's identification, its offset-and-flags word,
    /// its next header, and the offset just past it.
    frag_id: u32,
    frag_word: u32,
    frag_nh: u32,
    frag_end: u32,
}

const EXT_LATER_FRAGMENT: u32 = 1;
const EXT_FIRST_FRAGMENT: u32 = 2;
const EXT_SOURCE_ROUTE: u32 = 4;
/// A header could not be read, or the chain runs past `MAX_OFF`.
const EXT_BAD: u32 = 8;
const EXT_ATOMIC_FRAGMENT: u32 = 16;
/// A fragment header was seen (a second one is malformed).
const EXT_FRAGMENT: u32 = 32;

#[map]
static EXT_WALK: PerCpuArray<ExtWalk> = PerCpuArray::with_max_entries(1, 0);

/// Follows up to [`MAX_EXT_HEADERS`] extension headers from `nh` at `off`,
/// for the packet itself and for the packet an ICMPv6 error quotes alike,
/// one header per `bpf_loop` call: unrolled, every header's branches (and
/// what they note) multiplied the paths of every program that parses.
#[inline(always)]
fn walk_ext_headers<L: LoadBytes>(l: &L, nh: u8, off: usize) -> Result<ExtChain, ParseError> {
    let Some(w) = EXT_WALK.get_ptr_mut(0) else {
        return Err(ParseError::Malformed);
    };
    // SAFETY: this CPU's slot.
    unsafe {
        *w = ExtWalk {
            nh: nh as u32,
            off: off as u32,
            flags: 0,
            frag_id: 0,
            frag_word: 0,
            frag_nh: 0,
            frag_end: 0,
        };
    }
    // SAFETY: the callback and the stack pointer to `l` as bpf_loop
    // expects; `l` outlives the loop.
    unsafe {
        bpf_loop(
            MAX_EXT_HEADERS as u32,
            ext_step::<L> as *mut c_void,
            l as *const L as *mut c_void,
            0,
        )
    };
    // A fresh lookup: LLVM must not reuse what it wrote before the call.
    let w = EXT_WALK.get(0).ok_or(ParseError::Malformed)?;
    let next = w.nh as u8;
    let later_fragment = w.flags & EXT_LATER_FRAGMENT != 0;
    // A later fragment's walk stops at its fragment header: what follows is
    // payload, whatever its next-header field names.
    if w.flags & EXT_BAD != 0
        || (is_ext_header(next) && !later_fragment)
        || w.off as usize > MAX_OFF
    {
        // Unreadable, or a chain longer than we follow.
        return Err(ParseError::Malformed);
    }
    Ok(ExtChain {
        next,
        off: w.off as usize,
        later_fragment,
        source_route: w.flags & EXT_SOURCE_ROUTE != 0,
        first_fragment: w.flags & EXT_FIRST_FRAGMENT != 0,
        atomic_fragment: w.flags & EXT_ATOMIC_FRAGMENT != 0,
        frag_id: w.frag_id,
        frag_off: (w.frag_word & 0xfff8) as u16,
        frag_proto: w.frag_nh as u8,
        frag_end: w.frag_end as usize,
    })
}

#[inline(always)]
fn is_ext_header(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60)
}

/// `bpf_loop` callback: one extension header. Returns 1 at the first
/// header that is not one.
#[inline(never)]
extern "C" fn ext_step<L: LoadBytes>(_index: u64, data: *mut c_void) -> i64 {
    // SAFETY: `data` is the `&L` `walk_ext_headers` passed, alive for the
    // loop.
    let l = unsafe { &*(data as *const L) };
    let Some(w) = EXT_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let w = unsafe { &mut *w };
    let nh = w.nh as u8;
    if !is_ext_header(nh) {
        return 1;
    }
    let Ok(h) = l.load::<4>(w.off as usize) else {
        w.flags |= EXT_BAD;
        return 1;
    };
    let len = match nh {
        // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
        // A routing header's fourth byte is Segments Left.
        0 | 43 | 60 => {
            if nh == 43 && h[3] != 0 {
                w.flags |= EXT_SOURCE_ROUTE;
            }
            (h[1] as u32 + 1) * 8
        }
        // Fragment header: fixed 8 bytes. A second one is malformed
        // (RFC 8200 allows one per packet).
        44 => {
            let Ok(id) = l.load::<4>(w.off as usize + 4) else {
                w.flags |= EXT_BAD;
                return 1;
            };
            if w.flags & EXT_FRAGMENT != 0 {
                w.flags |= EXT_BAD;
                return 1;
            }
            let frag = be16([h[2], h[3]]);
            w.flags |= EXT_FRAGMENT;
            w.frag_id = u32::from_ne_bytes(id);
            w.frag_word = frag as u32;
            w.frag_nh = h[0] as u32;
            w.frag_end = w.off + 8;
            if frag & 0xfff8 != 0 {
                w.flags |= EXT_LATER_FRAGMENT;
                w.nh = h[0] as u32;
                w.off += 8;
                return 1;
            } else if frag & 1 != 0 {
                w.flags |= EXT_FIRST_FRAGMENT;
            } else {
                w.flags |= EXT_ATOMIC_FRAGMENT;
            }
            8
        }
        // Authentication header: (len + 2) * 4 bytes.
        _ => (h[1] as u32 + 2) * 4,
    };
    w.nh = h[0] as u32;
    w.off += len;
    if w.off as usize > MAX_OFF {
        w.flags |= EXT_BAD;
        return 1;
    }
    0
}

/// Reads the transport header at `l4`. `l3_end` is the offset where the IP
/// packet ends (trailing Ethernet padding excluded); reads are checked
/// against both it (semantics) and `end` (what the verifier needs).
#[inline(always)]
fn parse_l4<L: LoadBytes>(
    l: &L,
    start: usize,
    end: usize,
    l3_end: usize,
    l4: usize,
    p: &mut Packet,
) -> Result<(), ParseError> {
    match p.key.proto {
        IPPROTO_TCP => {
            if l4 + 20 > l3_end {
                return Err(short(p));
            }
            let h: *const [u8; 20] = ptr_at(start, end, l4)?;
            let h = unsafe { &*h };
            let doff = ((h[12] >> 4) as usize) * 4;
            // tcp_error(): a data offset below 20 or beyond the segment.
            if doff < 20 {
                return Err(ParseError::Malformed);
            }
            if l4 + doff > l3_end {
                return Err(short(p));
            }
            p.key.sport = u16::from_ne_bytes([h[0], h[1]]);
            p.key.dport = u16::from_ne_bytes([h[2], h[3]]);
            p.tcp_flags = h[13];
            p.tcp_seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            p.tcp_ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            p.tcp_win = be16([h[14], h[15]]);
            p.payload_off = (l4 + doff) as u16;
            p.kind = L4Kind::Tcp;
        }
        IPPROTO_UDP => {
            if l4 + 8 > l3_end {
                return Err(short(p));
            }
            let h: *const [u8; 8] = ptr_at(start, end, l4)?;
            let h = unsafe { &*h };
            // udp_error(): a length below the header or beyond the packet
            // (in a first fragment it covers the fragments still to come).
            let ulen = be16([h[4], h[5]]) as usize;
            let whole = p.flags & pkt_flags::FIRST_FRAGMENT == 0;
            if ulen < 8 || (whole && l4 + ulen > l3_end) {
                return Err(ParseError::Malformed);
            }
            p.key.sport = u16::from_ne_bytes([h[0], h[1]]);
            p.key.dport = u16::from_ne_bytes([h[2], h[3]]);
            p.kind = L4Kind::Udp;
        }
        IPPROTO_SCTP => {
            // Common header: ports, verification tag, CRC32c.
            if l4 + 12 > l3_end {
                return Err(short(p));
            }
            let h: [u8; 8] = l.load(l4)?;
            p.key.sport = u16::from_ne_bytes([h[0], h[1]]);
            p.key.dport = u16::from_ne_bytes([h[2], h[3]]);
            p.vtag = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            p.kind = L4Kind::Sctp;
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if l4 + 8 > l3_end {
                return Err(short(p));
            }
            let h: *const [u8; 8] = ptr_at(start, end, l4)?;
            let h = unsafe { &*h };
            let ty = h[0];
            match classify_icmp(p.key.proto, ty) {
                IcmpClass::Query => {
                    p.key.sport = u16::from_ne_bytes([h[4], h[5]]);
                    p.key.dport = ty as u16;
                    p.icmp_code = h[1];
                    p.kind = L4Kind::IcmpQuery;
                }
                IcmpClass::Untracked => {
                    // Not a tuple: the type and code are what the link
                    // checks and the rules look at.
                    p.key.dport = ty as u16;
                    p.icmp_code = h[1];
                    p.kind = L4Kind::IcmpUntracked;
                }
                IcmpClass::Invalid => p.kind = L4Kind::IcmpInvalid,
                IcmpClass::Error => {
                    let (inner_l4, fragment) =
                        parse_inner(l, l3_end, l4 + 8, p.key.family, &mut p.inner)?;
                    p.inner_l4_off = inner_l4;
                    if fragment {
                        p.flags |= pkt_flags::QUOTES_FRAGMENT;
                    }
                    // The key is never looked up; it carries the type.
                    p.key.dport = ty as u16;
                    p.icmp_code = h[1];
                    p.kind = L4Kind::IcmpError;
                }
            }
        }
        _ => p.kind = L4Kind::Other,
    }
    Ok(())
}

/// A transport header cut short: in a first fragment, the tiny fragment
/// attack (the header's rest would come in a later fragment, after the
/// verdict); in a whole packet, malformed.
#[inline(always)]
fn short(p: &Packet) -> ParseError {
    if p.flags & pkt_flags::FIRST_FRAGMENT != 0 {
        ParseError::TinyFragment
    } else {
        ParseError::Malformed
    }
}

/// The tuple of the packet an ICMP error quotes: its IP header (IPv6: and
/// its extension headers, as the outer parser walks them) and the first 8
/// bytes of its transport header (all RFC 792 guarantees). Returns the
/// quoted transport header's offset, and whether the quote is a non-first
/// fragment, which has none (its tuple is left without ports).
#[inline(always)]
fn parse_inner<L: LoadBytes>(
    l: &L,
    l3_end: usize,
    off: usize,
    family: u8,
    k: &mut CtKey,
) -> Result<(u16, bool), ParseError> {
    *k = CtKey {
        family,
        ..CtKey::default()
    };
    let l4;
    let later_fragment;
    if family == FAMILY_V4 {
        let ip: [u8; 20] = l.load(off)?;
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ihl < Ipv4Hdr::LEN {
            return Err(ParseError::Malformed);
        }
        k.proto = ip[9];
        k.src[0] = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        k.dst[0] = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        l4 = off + ihl;
        later_fragment = be16([ip[6], ip[7]]) & 0x1fff != 0;
    } else {
        let nh: [u8; 1] = l.load(off + 6)?;
        let src: [u8; 16] = l.load(off + 8)?;
        k.src = v6_words(&src);
        let dst: [u8; 16] = l.load(off + 24)?;
        k.dst = v6_words(&dst);
        let chain = walk_ext_headers(l, nh[0], off + Ipv6Hdr::LEN)?;
        k.proto = chain.next;
        l4 = chain.off;
        later_fragment = chain.later_fragment;
    }
    if later_fragment {
        return Ok((l4 as u16, true));
    }
    if l4 + 8 > l3_end {
        return Err(ParseError::Malformed);
    }
    let h: [u8; 8] = l.load(l4)?;
    match k.proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            k.sport = u16::from_ne_bytes([h[0], h[1]]);
            k.dport = u16::from_ne_bytes([h[2], h[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            k.sport = u16::from_ne_bytes([h[4], h[5]]);
            k.dport = h[0] as u16;
        }
        _ => {}
    }
    Ok((l4 as u16, false))
}
/// Bytes made linear at TC before direct header reads: Ethernet, two VLAN
/// tags, IPv4 with maximal options or IPv6 with ordinary extension headers,
/// and a TCP header with options.
pub const HEADER_PULL: u32 = 256;

/// Headers may sit in paged data for locally built skbs; make the first
/// bytes linear so direct packet access can see them.
#[inline(always)]
pub fn pull_headers(ctx: &TcContext) {
    let want = core::cmp::min(ctx.len(), HEADER_PULL);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
}

impl LoadBytes for XdpContext {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Result<[u8; N], ParseError> {
        let mut buf = [0u8; N];
        // SAFETY: the helper bounds-checks against the frame.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.ctx as *mut xdp_md,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        if rc < 0 {
            Err(ParseError::Malformed)
        } else {
            Ok(buf)
        }
    }

    #[inline(always)]
    fn holds(&self, start: usize, end: usize, len: usize) -> bool {
        start + len <= end
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, buf: *mut u8, len: u32) -> bool {
        // SAFETY: the helper bounds-checks against the frame; the caller
        // owns `len` bytes at `buf`.
        unsafe { bpf_xdp_load_bytes(self.ctx as *mut xdp_md, off, buf as *mut c_void, len) >= 0 }
    }
}

impl LoadBytes for TcContext {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Result<[u8; N], ParseError> {
        let mut buf = [0u8; N];
        // SAFETY: the helper bounds-checks against the skb.
        let rc = unsafe {
            bpf_skb_load_bytes(
                self.skb.skb as *const c_void,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        if rc < 0 {
            Err(ParseError::Malformed)
        } else {
            Ok(buf)
        }
    }

    #[inline(always)]
    fn holds(&self, _start: usize, _end: usize, len: usize) -> bool {
        len <= self.len() as usize
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, buf: *mut u8, len: u32) -> bool {
        // SAFETY: the helper bounds-checks against the skb; the caller
        // owns `len` bytes at `buf`.
        unsafe {
            bpf_skb_load_bytes(self.skb.skb as *const c_void, off, buf as *mut c_void, len) >= 0
        }
    }
}

#[inline(always)]
pub fn scratch() -> Option<&'static mut Packet> {
    // SAFETY: this CPU's scratch slot; programs run to completion on one
    // CPU, so nothing else uses it during the run.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Parses into the per-CPU scratch slot.
#[inline(always)]
pub fn parsed<C: LoadBytes>(
    ctx: &C,
    start: usize,
    end: usize,
) -> Result<&'static Packet, ParseError> {
    let p = scratch().ok_or(ParseError::Malformed)?;
    parse(ctx, start, end, p)?;
    Ok(p)
}

/// Per-CPU slot for the parsed packet (see [`parse`]).
#[map]
pub static SCRATCH: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);
