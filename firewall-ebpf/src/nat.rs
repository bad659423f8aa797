//! Applying NAT rewrites to packets at TC.
//!
//! Rewrites use the kernel's `bpf_l3/l4_csum_replace` rather than the
//! software arithmetic in `firewall_common::csum`: a TCP or UDP packet built
//! by a local socket (or one crossing a veth from a container) carries
//! `CHECKSUM_PARTIAL`, where the checksum field holds only the pseudo-header
//! sum and the port is not covered yet. The helpers know which case they are
//! in; software updates from XDP would corrupt such packets.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_get_prandom_u32,
    programs::TcContext,
};
use firewall_common::{
    Chain, Counter, CtEntry, FAMILY_V4, IPPROTO_ICMP, IPPROTO_ICMPV6, IfaceConfig, Role, Settings,
    nat::{IfaceNat, NatRewrite, PORT_TRIES, PortFwdKey, ProtoNat, port_candidate, proto_nat},
    settings_nat,
};

use crate::{
    conntrack::Rewrite,
    early_drop::{self, E2BIG},
    flow::{Hook, Verdict, drop_with, pass_with},
    maps::{CONNTRACK, PORT_FWD, count, iface},
    parse::{L4Kind, Packet},
};

/// Rewrites the source (`src`) or destination address and port (ICMP:
/// identifier) of an IPv4 packet in place.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, p: &Packet, src: bool, addr: u32, port: u16) -> Result<(), ()> {
    if p.key.family != FAMILY_V4 {
        return Err(());
    }
    let l3 = p.l3_off as usize;
    let l4 = p.l4_off as usize;
    // SCTP's CRC32c and the protocols without ports (GRE, ESP, …) cover no
    // address: only the IPv4 header checksum changes, and their "port" (kept
    // or none) never does.
    let (csum_off, mangled, pseudo, ports) = match p.kind {
        L4Kind::Tcp => (l4 + 16, 0, true, true),
        L4Kind::Udp => (l4 + 6, BPF_F_MARK_MANGLED_0 as u64, true, true),
        L4Kind::IcmpQuery => (l4 + 2, 0, false, true),
        // A later fragment holds neither ports nor the transport checksum
        // (the first fragment's incremental update covered the datagram).
        L4Kind::Sctp | L4Kind::Other | L4Kind::Fragment => (0, 0, false, false),
        _ => return Err(()),
    };
    let (old_addr, addr_off) = if src {
        (p.key.src[0], l3 + 12)
    } else {
        (p.key.dst[0], l3 + 16)
    };
    if old_addr != addr {
        ctx.store(addr_off, &addr, 0).map_err(|_| ())?;
        ctx.l3_csum_replace(l3 + 10, old_addr as u64, addr as u64, 4)
            .map_err(|_| ())?;
        if pseudo {
            ctx.l4_csum_replace(
                csum_off,
                old_addr as u64,
                addr as u64,
                BPF_F_PSEUDO_HDR as u64 | mangled | 4,
            )
            .map_err(|_| ())?;
        }
    }
    if p.kind == L4Kind::Fragment {
        return Ok(());
    }
    let (old_port, port_off) = if p.kind == L4Kind::IcmpQuery {
        (p.key.sport, l4 + 4)
    } else if src {
        (p.key.sport, l4)
    } else {
        (p.key.dport, l4 + 2)
    };
    if old_port != port {
        if !ports {
            return Err(());
        }
        ctx.store(port_off, &port, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(csum_off, old_port as u64, port as u64, mangled | 2)
            .map_err(|_| ())?;
    }
    Ok(())
}

/// Applies the rewrite of the packet's own entry if it is of the kind this
/// hook performs (`want`), after checking the binding is still sound: both
/// halves present, and a masquerade address still the interface's. Returns
/// whether it rewrote, or the drop reason when the packet must not go out.
#[inline(always)]
pub fn apply(
    ctx: &TcContext,
    p: &Packet,
    want: u8,
    out_nat: u8,
    out_addr: u32,
    out_ifindex: u32,
) -> Result<bool, Counter> {
    let Some(e) = CONNTRACK.get_ptr(&p.key) else {
        return Ok(false);
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &*e };
    if e.nat != want {
        return Ok(false);
    }
    let rw = Rewrite::of(e);
    if CONNTRACK.get_ptr(&e.peer).is_none() {
        // The other half is gone (the pair is being deleted by another CPU
        // or the ager, which remove the halves one after the other):
        // replies could no longer be translated back. Drop this half too so
        // the next packet starts a fresh, complete pair.
        let _ = CONNTRACK.remove(&p.key);
        return Err(Counter::DropNatPairBroken);
    }
    let src = want == firewall_common::nat::NatRewrite::Src as u8;
    if src
        && rw.ifindex == out_ifindex
        && out_nat == IfaceNat::Masquerade as u8
        && rw.addr != out_addr
    {
        let _ = CONNTRACK.remove(&e.peer);
        let _ = CONNTRACK.remove(&p.key);
        return Err(Counter::DropNatStale);
    }
    if rewrite(ctx, p, src, rw.addr, rw.port).is_err() {
        return Err(Counter::DropNatRewriteFailed);
    }
    count(if src {
        Counter::NatSrcRewritten
    } else {
        Counter::NatDstRewritten
    });
    Ok(true)
}

/// Translates an ICMPv4 error about a translated connection
/// (`nf_nat_icmp_reply_translation`): the outer source (`src`, egress) or
/// destination (ingress) address, and the opposite side of the quoted
/// packet — its destination address and port when the outer source
/// changes, its source when the outer destination changes — together with
/// the quoted IP header's checksum, the quoted transport checksum when the
/// quote includes it, and the ICMP checksum over the whole message.
///
/// Quoted checksums are full checksums (no offload applies to a quote), so
/// the software arithmetic of `firewall_common::csum` is right for them; the
/// ICMP checksum is updated with the helper for every word that changed.
#[inline(always)]
pub fn icmp_error(ctx: &TcContext, p: &Packet, src: bool, addr: u32, port: u16) -> Result<(), ()> {
    use firewall_common::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, csum};

    use crate::parse::LoadBytes;

    if p.key.family != FAMILY_V4 {
        return Err(());
    }
    let l3 = p.l3_off as usize;
    let icmp_csum = p.l4_off as usize + 2;
    let il3 = p.l4_off as usize + 8;
    let il4 = p.inner_l4_off as usize;

    // Outer address.
    let (old_outer, outer_off) = if src {
        (p.key.src[0], l3 + 12)
    } else {
        (p.key.dst[0], l3 + 16)
    };
    if old_outer != addr {
        ctx.store(outer_off, &addr, 0).map_err(|_| ())?;
        ctx.l3_csum_replace(l3 + 10, old_outer as u64, addr as u64, 4)
            .map_err(|_| ())?;
    }

    // Quoted address: the side that faces the translation.
    let (old_inner, inner_off) = if src {
        (p.inner.dst[0], il3 + 16)
    } else {
        (p.inner.src[0], il3 + 12)
    };
    let store16 = |off: usize, old: u16, new: u16| -> Result<(), ()> {
        ctx.store(off, &new, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(icmp_csum, old as u64, new as u64, 2)
            .map_err(|_| ())
    };
    if old_inner != addr {
        ctx.store(inner_off, &addr, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(icmp_csum, old_inner as u64, addr as u64, 4)
            .map_err(|_| ())?;
        let ck = u16::from_ne_bytes(LoadBytes::load::<2>(ctx, il3 + 10).map_err(|_| ())?);
        store16(il3 + 10, ck, csum::replace_u32(ck, old_inner, addr))?;
    }

    // Quoted port (ICMP: identifier) and the quoted transport checksum.
    let proto = p.inner.proto;
    let (old_port, port_off) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            if src {
                (p.inner.dport, il4 + 2)
            } else {
                (p.inner.sport, il4)
            }
        }
        IPPROTO_ICMP => (p.inner.sport, il4 + 4),
        _ => return Ok(()),
    };
    if old_port != port {
        store16(port_off, old_port, port)?;
    }
    let l4_csum_off = match proto {
        IPPROTO_TCP => il4 + 16,
        IPPROTO_UDP => il4 + 6,
        _ => il4 + 2,
    };
    // The quote may stop before a TCP checksum (RFC 792 promises 8 bytes).
    let Ok(raw) = LoadBytes::load::<2>(ctx, l4_csum_off) else {
        return Ok(());
    };
    if l4_csum_off + 2 > p.l3_off as usize + p.l3_len as usize {
        return Ok(());
    }
    let old_ck = u16::from_ne_bytes(raw);
    let new_ck = match proto {
        IPPROTO_UDP => csum::udp_replace_u16(
            csum::udp_replace_u32(old_ck, old_inner, addr),
            old_port,
            port,
        ),
        IPPROTO_TCP => {
            csum::replace_u16(csum::replace_u32(old_ck, old_inner, addr), old_port, port)
        }
        _ => csum::replace_u16(old_ck, old_port, port),
    };
    if new_ck != old_ck {
        store16(l4_csum_off, old_ck, new_ck)?;
    }
    Ok(())
}
/// An ICMP error about a translated connection: the quoted packet and the
/// outer address are translated back, like the connection's own packets
/// (`nf_nat_icmp_reply_translation`). `want` is the rewrite this hook does.
#[inline(always)]
pub fn icmp_error_nat(ctx: &TcContext, p: &Packet, want: NatRewrite) -> i32 {
    // The quoted tuple inverted is the key of the direction the error
    // travels (see conntrack::related).
    let Some(e) = CONNTRACK.get_ptr(&p.inner.inverted()) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: map value pointer, valid for this run.
    let rw = Rewrite::of(unsafe { &*e });
    if rw.kind != want as u8 {
        return TC_ACT_UNSPEC;
    }
    match icmp_error(ctx, p, want == NatRewrite::Src, rw.addr, rw.port) {
        Ok(()) => {
            count(if want == NatRewrite::Src {
                Counter::NatSrcRewritten
            } else {
                Counter::NatDstRewritten
            });
            TC_ACT_UNSPEC
        }
        Err(()) => {
            count(Counter::DropNatRewriteFailed);
            TC_ACT_SHOT as i32
        }
    }
}

/// The source translation of a forwarded packet, and the guard that no
/// packet leaves a NAT interface untranslated.
#[inline(always)]
pub fn egress_forwarded_nat(
    ctx: &TcContext,
    p: &Packet,
    out: &IfaceConfig,
    ifindex: u32,
) -> Verdict {
    if translatable(p.kind) {
        match apply(
            ctx,
            p,
            NatRewrite::Src as u8,
            out.nat,
            out.nat_addr,
            ifindex,
        ) {
            Ok(true) => return Verdict::Pass,
            Ok(false) => {}
            Err(c) => return drop_with(c),
        }
    }
    untranslated_guard(p, out)
}

/// A packet never leaves a NAT interface untranslated.
#[inline(always)]
pub fn untranslated_guard(p: &Packet, out: &IfaceConfig) -> Verdict {
    if out.nat != IfaceNat::None as u8 && p.key.family == FAMILY_V4 && p.key.src[0] != out.nat_addr
    {
        return drop_with(if p.kind == L4Kind::Fragment {
            Counter::DropFragmentUntranslated
        } else {
            Counter::DropNatUntranslated
        });
    }
    pass_with(Counter::SkipForwarded)
}

/// A NEW TCP/UDP packet arriving on a WAN interface for a forwarded port.
#[inline(always)]
pub fn port_forward(p: &Packet, s: &Settings, hook: Hook) -> Option<NatSpec> {
    if s.nat & settings_nat::PORT_FORWARD == 0
        || p.key.family != FAMILY_V4
        || !matches!(p.kind, L4Kind::Tcp | L4Kind::Udp)
        || !matches!(
            hook,
            Hook::Ingress {
                role: Role::Wan,
                ..
            }
        )
    {
        return None;
    }
    let key = PortFwdKey {
        proto: p.key.proto,
        _pad: 0,
        port: p.key.dport,
    };
    // SAFETY: read-only lookup of a plain value.
    let t = unsafe { PORT_FWD.get(&key) }?;
    Some(NatSpec::Dest {
        addr: t.addr,
        port: t.port,
    })
}

/// Packets of the kinds that NAT translates (`firewall_common::nat::
/// proto_nat` says how far): a later fragment, when it took its first
/// fragment's tuple (`frag::parsed`), only in its addresses.
#[inline(always)]
pub fn translatable(kind: L4Kind) -> bool {
    matches!(
        kind,
        L4Kind::Tcp
            | L4Kind::Udp
            | L4Kind::IcmpQuery
            | L4Kind::Sctp
            | L4Kind::Other
            | L4Kind::Fragment
    )
}

/// Masquerade/SNAT for a new IPv4 connection leaving through a NAT
/// interface (forwarded, or originated by the host).
#[inline(always)]
pub fn source_nat(p: &Packet, s: &Settings, chain: Chain, out_ifindex: u32) -> NatSpec {
    if s.nat & settings_nat::SOURCE == 0
        || p.key.family != FAMILY_V4
        || chain == Chain::Input
        || out_ifindex == 0
        || !translatable(p.kind)
    {
        return NatSpec::None;
    }
    let out = iface(out_ifindex).unwrap_or_default();
    if out.nat == IfaceNat::None as u8 {
        return NatSpec::None;
    }
    NatSpec::Source {
        addr: out.nat_addr,
        lo: out.nat_port_lo,
        hi: out.nat_port_hi,
        ifindex: out_ifindex,
    }
}

/// How a new connection is translated.
#[derive(Clone, Copy)]
pub enum NatSpec {
    None,
    /// Source NAT to `addr`, keeping the original port when free, else a
    /// port from `[lo, hi]` (host order). `ifindex` is the egress interface.
    Source {
        addr: u32,
        lo: u16,
        hi: u16,
        ifindex: u32,
    },
    /// Destination NAT to `addr:port` (port network order): a port forward.
    Dest {
        addr: u32,
        port: u16,
    },
}

/// A port forward's binding: the original entry rewrites the destination
/// to the target, the reply entry (inserted here with `BPF_NOEXIST`: the
/// claim of the reply tuple) rewrites the source back. A full table makes
/// room first (`early_drop`).
#[inline(always)]
pub fn bind_dest(
    p: &Packet,
    orig: &mut CtEntry,
    reply: &mut CtEntry,
    addr: u32,
    port: u16,
    now: u64,
) -> Result<(), Counter> {
    // Replies come from the target: the reply key is the inverse of the
    // translated tuple.
    orig.peer.src[0] = addr;
    orig.peer.sport = port;
    orig.nat = NatRewrite::Dst as u8;
    orig.nat_addr[0] = addr;
    orig.nat_port = port;
    reply.nat = NatRewrite::Src as u8;
    reply.nat_addr[0] = p.key.dst[0];
    reply.nat_port = p.key.dport;
    match early_drop::insert(&orig.peer, reply, BPF_NOEXIST as u64, &orig.peer, now) {
        Ok(()) => Ok(()),
        Err(E2BIG) => Err(Counter::DropTableFull),
        Err(_) => Err(Counter::DropNatCollision),
    }
}

/// Source NAT's binding and claim: the original port first (netfilter
/// keeps it when free), then pseudo-random ports of `[lo, hi]`, each tried
/// by inserting the reply entry with `BPF_NOEXIST`, which is atomic across
/// CPUs, so two connections can never hold the same translated tuple.
/// Protocols without ports, and SCTP, which keeps its own, have one tuple
/// to claim. A full table makes room (`early_drop`) and the claim is tried
/// again once; if no room can be made, no other port would fare better.
#[expect(
    clippy::too_many_arguments,
    reason = "the binding's parts, all scalars"
)]
#[inline(always)]
pub fn claim_source(
    p: &Packet,
    orig: &mut CtEntry,
    reply: &mut CtEntry,
    addr: u32,
    lo: u16,
    hi: u16,
    ifindex: u32,
    now: u64,
) -> Result<(), Counter> {
    if addr == 0 {
        return Err(Counter::DropNatNoAddress);
    }
    let how = proto_nat(p.key.proto);
    if how == ProtoNat::Refused {
        return Err(Counter::DropNatUntranslated);
    }
    let tries = if how == ProtoNat::Ports {
        PORT_TRIES
    } else {
        1
    };
    let icmp = p.key.proto == IPPROTO_ICMP || p.key.proto == IPPROTO_ICMPV6;
    let original = u16::from_be(p.key.sport);
    // SAFETY: plain helper call.
    let seed = unsafe { bpf_get_prandom_u32() };
    reply.nat_addr[0] = p.key.src[0];
    reply.nat_port = p.key.sport;
    let mut claimed = false;
    let mut full = false;
    let mut port = 0u16;
    for attempt in 0..PORT_TRIES {
        if attempt >= tries {
            break;
        }
        port = port_candidate(attempt, original, lo, hi, seed).to_be();
        // Host traffic that already carries the address and keeps its
        // port needs no rewrite either way; it is still claimed here so
        // masqueraded flows cannot take its tuple.
        reply.nat = if addr == p.key.src[0] && port == p.key.sport {
            NatRewrite::None as u8
        } else {
            NatRewrite::Dst as u8
        };
        orig.peer.dst[0] = addr;
        if icmp {
            orig.peer.sport = port;
        } else {
            orig.peer.dport = port;
        }
        match CONNTRACK.insert(&orig.peer, &*reply, BPF_NOEXIST as u64) {
            Ok(()) => {
                claimed = true;
                break;
            }
            Err(E2BIG) => {
                full = true;
                break;
            }
            // Taken: the next candidate.
            Err(_) => {}
        }
    }
    // The table is full: make room once and claim the same tuple (free a
    // moment ago: `-E2BIG` comes after the existence check). Outside the
    // loop so the verifier meets the early-drop call once, not once per
    // try.
    if full {
        match early_drop::insert(&orig.peer, reply, BPF_NOEXIST as u64, &orig.peer, now) {
            Ok(()) => claimed = true,
            Err(E2BIG) => return Err(Counter::DropTableFull),
            Err(_) => {}
        }
    }
    if !claimed {
        return Err(if how == ProtoNat::Ports {
            Counter::DropNatExhausted
        } else {
            Counter::DropNatPeerBusy
        });
    }
    if addr != p.key.src[0] || port != p.key.sport {
        orig.nat = NatRewrite::Src as u8;
        orig.nat_addr[0] = addr;
        orig.nat_port = port;
        orig.nat_ifindex = ifindex;
        if port != p.key.sport {
            count(Counter::NatPortRemapped);
        }
    }
    Ok(())
}
