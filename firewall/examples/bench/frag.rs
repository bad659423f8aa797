//! The bench's fragment figures (issue 12): a later fragment of an established,
//! masqueraded connection's reply — its datagram looked up in `FRAGMENTS`, then
//! at TC ingress its destination rewritten — beside an ordinary established packet
//! of the same connection through the same hooks (`nat_xdp_reply`,
//! `nat_tc_ingress_reply`); and the fragment table's memory bound.

use std::net::SocketAddrV4;

use anyhow::{Context as _, Result};
use etherparse::{IpFragOffset, Ipv4Header};
use firewall_common::{
    frag::{FragEntry, FragKey, MAX_FRAG_DATAGRAMS},
    stats::Counter,
    tcp::TCP_ACK,
};

use super::{Instance, Method, Prog, Report, TC_ACT_UNSPEC, XDP_PASS, skb_ctx, tcp, xdp_ctx};

/// Offset of the IPv4 header in the bench's frames.
const IP: usize = 14;

/// The fragment of the plain Ethernet + IPv4 frame `whole` at byte offset `off`
/// (a multiple of 8) of its payload, `len` bytes long, identification `id`.
fn fragment(whole: &[u8], id: u16, off: usize, len: usize) -> Result<Vec<u8>> {
    let (mut hdr, rest) = Ipv4Header::from_slice(&whole[IP..]).context("IPv4 header")?;
    let data = &rest[off..(off + len).min(rest.len())];
    hdr.identification = id;
    hdr.dont_fragment = false;
    hdr.more_fragments = off + data.len() < rest.len();
    hdr.fragment_offset = IpFragOffset::try_new((off / 8) as u16)?;
    hdr.total_len = (hdr.header_len() + data.len()) as u16;
    hdr.header_checksum = hdr.calc_header_checksum();
    let mut f = whole[..IP].to_vec();
    f.extend_from_slice(&hdr.to_bytes());
    f.extend_from_slice(data);
    Ok(f)
}

/// `nat` holds the masqueraded connection `client` → `server` (seen as `public`),
/// established.
#[allow(clippy::too_many_arguments)]
pub fn later_fragments(
    r: &mut Report,
    nat: &Instance,
    server: SocketAddrV4,
    public: SocketAddrV4,
    group: &str,
    rep: Method,
    single: Method,
    k: usize,
) -> Result<()> {
    // A reply segment of 2,000 bytes in two fragments; its first fragment passes
    // XDP once, which records the datagram for the second.
    let seg = tcp(server, public, TCP_ACK, 7001, 1019, &[0u8; 2000]);
    let first = fragment(&seg, 0x5151, 0, 1480)?;
    let later = fragment(&seg, 0x5151, 1480, 1480)?;
    nat.xdp_once(nat.wan, &first, &[XDP_PASS])?;

    let ctx = xdp_ctx(later.len(), nat.wan);
    let s = nat.measure(
        Prog {
            fd: nat.xdp_fd()?,
            ctx: &ctx,
        },
        &later,
        rep,
        k,
        XDP_PASS,
        Counter::AcceptFragment,
    )?;
    r.add(
        "frag_xdp_later",
        group,
        "later fragment of an established + masqueraded reply: XDP on wan0 (datagram lookup)",
        "ns/pkt",
        &s,
        &rep.describe(),
    );
    let ing = skb_ctx(nat.wan, nat.wan);
    let s = nat.measure(
        Prog {
            fd: nat.tc_fd(firewall::TC_INGRESS_PROGRAM)?,
            ctx: &ing,
        },
        &later,
        single,
        k,
        TC_ACT_UNSPEC,
        Counter::NatDstRewritten,
    )?;
    r.add(
        "frag_tc_ingress_later",
        group,
        "later fragment of an established + masqueraded reply: TC ingress on wan0 (datagram \
         and connection lookups, address rewrite)",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    Ok(())
}

/// The fragment table's bound: its entries and what the kernel charges for it.
pub fn memory(r: &mut Report, inst: &Instance, group: &str) -> Result<()> {
    let ks = std::mem::size_of::<FragKey>() as u64;
    let vs = std::mem::size_of::<FragEntry>() as u64;
    let info = inst.fdinfo(|f| {
        f.get("max_entries") == Some(&u64::from(MAX_FRAG_DATAGRAMS))
            && f.get("key_size") == Some(&ks)
            && f.get("value_size") == Some(&vs)
    })?;
    let memlock = *info.get("memlock").context("no memlock in fdinfo")? as f64;
    r.add(
        "frag_table_memlock",
        group,
        &format!("fragment table: {MAX_FRAG_DATAGRAMS} datagrams, memory charged (memlock)"),
        "bytes",
        &[memlock],
        &format!(
            "LRU hash, key {ks} + value {vs} bytes; {:.0} bytes per datagram",
            memlock / f64::from(MAX_FRAG_DATAGRAMS)
        ),
    );
    Ok(())
}
