//! The FTP helper in the datapath: watching helped control connections,
//! creating expectations, rewriting commands under NAT, and keeping TCP
//! sequence numbers right afterwards. The parsing, formatting and
//! sequence arithmetic are `firewall_common::ftp`, host-tested.
//!
//! Commands are read at TC egress, where a command leaving a NAT interface
//! gets its source translation: the announced address is rewritten to the
//! translated one in the same place (`nf_nat_ftp`). Sequence numbers of the
//! rewritten direction are shifted at egress; the other direction's acks
//! are shifted back at TC ingress, before routing.

use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    cty::c_void,
    helpers::{
        bpf_ktime_get_ns,
        generated::{
            bpf_csum_diff, bpf_loop, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes,
        },
    },
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use firewall_common::{
    Counter, CtEntry, FAMILY_V4,
    ct::{CtDir, flags},
    ftp::{
        ARG_LEN, EXPECT_TIMEOUT_NS, Eprt6Scanner, ExpectKey, Expectation, FMT_LEN, FtpAddr, FtpCmd,
        Located, MAX_CMD_LEN, Parse, bounce_ok, expect_flags, format_rewrite, key_addr_v4,
        locate_command, nat_announce_addr, parse_argument,
    },
    nat::NatRewrite,
};

use crate::{
    flow::{Verdict, drop_with},
    maps::{CONNTRACK, EXPECT, JUMP, SETTINGS, count},
    nat::NatSpec,
    parse::{LoadBytes, Packet, opaque},
};

/// How many data ports NAT tries for one command (`nf_nat_ftp` walks up
/// from the original port until one is free).
const DATA_PORT_TRIES: u16 = 16;
const BUF: usize = 128;

#[repr(C)]
pub struct Scratch {
    /// Twice the window, so a checksum region starting anywhere in the
    /// window and running to its end stays inside for the verifier.
    pub old: [u8; 2 * BUF],
    pub new: [u8; BUF],
    pub arg: [u8; ARG_LEN],
    pub text: [u8; FMT_LEN],
    /// Bytes of payload in `old`.
    pub len: u32,
    /// `old[start..end]` is replaced by `text[..text_len]`.
    pub start: u32,
    pub end: u32,
    pub text_len: u32,
    /// Stage 1's result, handed to stage 2 through map memory (see
    /// `firewall_common::ftp`: the verifier then checks stage 2 once).
    pub kind: u8,
    pub more: u8,
    pub arg_off: u16,
    pub arg_len: u16,
    /// EPRT |2| parser state (IPv6 control connections), and the address
    /// it found in `CtKey` layout.
    pub e6: Eprt6Scanner,
    pub addr6: [u32; 4],
    /// The expectation being created, and its key (kept off the stack).
    pub exp: Expectation,
    pub ek: ExpectKey,
    /// TCP options of the segment being corrected, and where its SACK
    /// option sits in them (`sack_len` 0: none).
    pub opts: [u8; 64],
    pub opts_len: u32,
    pub opt_pos: u32,
    pub sack_at: u32,
    pub sack_len: u32,
}

/// A helper size argument the verifier can see is in `1..=BUF` (callers
/// have excluded 0): `((n - 1) & (BUF - 1)) + 1`.
#[inline(always)]
fn nonzero_len(n: usize) -> u32 {
    // Launder n so LLVM cannot fold the arithmetic back into `n`, whose
    // range the verifier only knows as [0, ..].
    let n = opaque(n);
    ((n.wrapping_sub(1) & (BUF - 1)) + 1) as u32
}

#[inline(always)]
fn tcp_word(ctx: &TcContext, off: usize) -> Option<u32> {
    LoadBytes::load::<4>(ctx, off).ok().map(u32::from_ne_bytes)
}

fn cmd_of(v: u8) -> Option<FtpCmd> {
    match v {
        1 => Some(FtpCmd::Port),
        2 => Some(FtpCmd::Eprt),
        3 => Some(FtpCmd::Pasv227),
        4 => Some(FtpCmd::Epsv229),
        _ => None,
    }
}

/// Looks at a segment of a helped connection leaving through TC egress.
/// `e` is the segment's own entry. Returns the drop reason for segments
/// netfilter's helper drops.
#[inline(always)]
pub fn help(ctx: &TcContext, p: &Packet, e: &mut CtEntry, now: u64) -> Result<(), Counter> {
    let payload_off = p.payload_off as usize;
    let l3_end = p.l3_off as usize + p.l3_len as usize;
    if payload_off >= l3_end {
        return Ok(());
    }
    let payload_len = l3_end - payload_off;
    let reply = e.is_reply();
    {
        // Stage 1: the verb, in the first MAX_CMD_LEN bytes.
        let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
            return Ok(());
        };
        // SAFETY: this CPU's scratch slot.
        let s = unsafe { &mut *s };
        let len = if payload_len > MAX_CMD_LEN {
            MAX_CMD_LEN
        } else {
            payload_len
        };
        // SAFETY: bounded length into map memory of BUF bytes.
        let rc = unsafe {
            bpf_skb_load_bytes(
                ctx.skb.skb as *const c_void,
                payload_off as u32,
                s.old.as_mut_ptr() as *mut c_void,
                nonzero_len(len),
            )
        };
        if rc < 0 {
            return Ok(());
        }
        let window: &[u8; MAX_CMD_LEN] = match s.old.first_chunk::<MAX_CMD_LEN>() {
            Some(w) => w,
            None => return Ok(()),
        };
        let dir = if reply { CtDir::Reply } else { CtDir::Original };
        match locate_command(dir, window, len) {
            Located::NoMatch => return Ok(()),
            Located::Partial => return Err(Counter::DropFtpPartial),
            Located::Invalid => return Err(Counter::DropFtpInvalid),
            Located::Command { kind, arg } => {
                let arg = arg as usize;
                if arg >= payload_len {
                    return Err(Counter::DropFtpPartial);
                }
                let rest = payload_len - arg;
                s.kind = kind as u8;
                s.arg_off = arg as u16;
                s.arg_len = if rest > ARG_LEN { ARG_LEN } else { rest } as u16;
                s.more = (rest > ARG_LEN) as u8;
                s.len = len as u32;
            }
        }
    }
    stage2(ctx, p, e, now)
}

/// `bpf_loop` callback: feeds argument byte `i` to the EPRT |2| scanner.
#[inline(never)]
extern "C" fn feed_eprt6(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot, valid during the loop.
    let s = unsafe { &mut *s };
    let b = s.arg[(i as usize) & (ARG_LEN - 1)];
    i64::from(s.e6.feed(b))
}

/// EPRT on an IPv6 control connection, with the byte-fed scanner (the
/// general parser's IPv6 address code is too big for the verifier). IPv6 is
/// never translated, so this only creates the expectation (after the
/// anti-bounce check), without going through [`Parse`] (whose 16-byte
/// address would not fit the stack here).
///
/// The scanner state is read back through a fresh pointer after the loop:
/// the callback changes it behind the `&mut Scratch` the caller holds, and
/// through that `&mut` LLVM would assume the state is still what was stored
/// before the loop.
#[inline(never)]
fn eprt6(p: &Packet, e: &CtEntry, arg_len: u32, more: u32, now: u64) -> Result<(), Counter> {
    {
        let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
            return Ok(());
        };
        // SAFETY: this CPU's scratch slot.
        unsafe { (*s).e6 = Eprt6Scanner::new() };
    }
    let mut unused = 0u64;
    // SAFETY: callback and stack context as bpf_loop expects.
    unsafe {
        bpf_loop(
            arg_len,
            feed_eprt6 as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        )
    };
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    let Some(port) = s.e6.result_words(&mut s.addr6) else {
        return Err(if s.e6.is_done() || more != 0 {
            Counter::DropFtpInvalid
        } else {
            Counter::DropFtpPartial
        });
    };
    // The line must end right after the argument, as for IPv4 (the host's
    // stage 2 `line_end`).
    let pos = s.e6.pos;
    let at = |i: u32| (i < arg_len).then(|| s.arg[(i as usize) & (ARG_LEN - 1)]);
    match (at(pos), at(pos + 1)) {
        (Some(b'\r'), Some(b'\n')) | (Some(b'\n'), _) => {}
        (Some(b'\r'), None) | (None, _) if more == 0 => return Err(Counter::DropFtpPartial),
        _ => return Err(Counter::DropFtpInvalid),
    }
    if s.addr6 != p.key.src {
        count(Counter::FtpBounceRefused);
        return Ok(());
    }
    let peer = e.peer;
    s.ek = ExpectKey::for_command(&peer, port);
    s.exp = Expectation::for_command(
        FtpCmd::Eprt,
        CtDir::Original,
        &p.key,
        &peer,
        false,
        port,
        now + EXPECT_TIMEOUT_NS,
    );
    let _ = EXPECT.insert(&s.ek, &s.exp, 0);
    count(Counter::FtpExpectCreated);
    Ok(())
}

/// Stage 2, on values read back from map memory.
#[inline(never)]
fn stage2(ctx: &TcContext, p: &Packet, e: &mut CtEntry, now: u64) -> Result<(), Counter> {
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    let Some(kind) = cmd_of(s.kind) else {
        return Ok(());
    };
    let arg_off = s.arg_off as usize & (BUF - 1);
    let arg_len = s.arg_len as usize;
    if arg_len == 0 || arg_len > ARG_LEN {
        return Err(Counter::DropFtpPartial);
    }
    // SAFETY: bounded length into map memory of ARG_LEN bytes.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            p.payload_off as u32 + arg_off as u32,
            s.arg.as_mut_ptr() as *mut c_void,
            ((arg_len - 1) & (ARG_LEN - 1)) as u32 + 1,
        )
    };
    if rc < 0 {
        return Ok(());
    }
    let more = s.more != 0;
    // The general IPv6 address parser is too big for the verifier (see
    // firewall_common::ftp): on IPv6 control connections EPSV (no address)
    // goes through the common parser and EPRT |2| through the byte-fed
    // scanner (`eprt6`); PORT and 227 have no IPv6 form.
    let parsed = if p.key.family == FAMILY_V4 {
        parse_argument(kind, FAMILY_V4, &s.arg, arg_len, more)
    } else if kind == FtpCmd::Epsv229 {
        parse_argument(
            FtpCmd::Epsv229,
            firewall_common::FAMILY_V6,
            &s.arg,
            arg_len,
            more,
        )
    } else if kind == FtpCmd::Eprt && !e.is_reply() {
        return eprt6(p, e, arg_len as u32, more as u32, now);
    } else {
        return Ok(());
    };
    let (addr, port, start, end) = match parsed {
        Parse::NoMatch => return Ok(()),
        Parse::Partial => return Err(Counter::DropFtpPartial),
        Parse::Invalid => return Err(Counter::DropFtpInvalid),
        Parse::Match {
            addr,
            port,
            start,
            end,
            ..
        } => (addr, port, arg_off + start as usize, arg_off + end as usize),
    };
    // Anti-bounce: a PORT/EPRT may only name the client itself.
    if matches!(kind, FtpCmd::Port | FtpCmd::Eprt) {
        let ok = match addr {
            FtpAddr::V4(a) => bounce_ok(a, key_addr_v4(&p.key.src)),
            FtpAddr::V6(_) => addr.key_addr() == Some(p.key.src),
            FtpAddr::None => false,
        };
        if !ok {
            count(Counter::FtpBounceRefused);
            return Ok(());
        }
    }
    let expires = now + EXPECT_TIMEOUT_NS;
    let peer = e.peer;
    let reply = e.is_reply();
    let dir = if reply { CtDir::Reply } else { CtDir::Original };
    if e.nat != NatRewrite::Src as u8 {
        // No translation on the way out: expect the data connection as
        // announced.
        s.ek = ExpectKey::for_command(&peer, port);
        s.exp = Expectation::for_command(kind, dir, &p.key, &peer, false, port, expires);
        let _ = EXPECT.insert(&s.ek, &s.exp, 0);
        count(Counter::FtpExpectCreated);
        return Ok(());
    }

    // NAT: the peer must connect to our translated address; claim a data
    // port there (the announced one first), then rewrite the command.
    let newaddr = key_addr_v4(&nat_announce_addr(&peer));
    s.exp = Expectation::for_command(kind, dir, &p.key, &peer, true, port, expires);
    let mut new_port = 0u16;
    for i in 0..DATA_PORT_TRIES {
        let candidate = port.wrapping_add(i);
        if candidate == 0 {
            continue;
        }
        s.ek = ExpectKey::for_command(&peer, candidate);
        if EXPECT.insert(&s.ek, &s.exp, BPF_NOEXIST as u64).is_ok() {
            new_port = candidate;
            break;
        }
        // Taken. By this control connection itself (a retransmitted
        // command)? Then replace it and announce the same port again, as
        // nf_ct_expect_related does: a retransmission must carry the same
        // bytes.
        // SAFETY: read-only lookup of a plain value.
        let own = unsafe { EXPECT.get(&s.ek) }.is_some_and(|x| x.master == s.exp.master);
        if own {
            let _ = EXPECT.insert(&s.ek, &s.exp, 0);
            new_port = candidate;
            break;
        }
    }
    if new_port == 0 {
        return Err(Counter::DropFtpUnmangleable);
    }
    count(Counter::FtpExpectCreated);
    let len = s.len as usize;
    let l3_end = p.l3_off as usize + p.l3_len as usize;
    let payload_len = l3_end - p.payload_off as usize;
    if payload_len > len || end > len || start > end {
        // The command line must fit the window to be rewritten in place.
        s.ek = ExpectKey::for_command(&peer, new_port);
        let _ = EXPECT.remove(&s.ek);
        return Err(Counter::DropFtpUnmangleable);
    }
    s.text_len = format_rewrite(kind, newaddr, new_port, &mut s.text) as u32;
    s.start = start as u32;
    s.end = end as u32;
    mangle(ctx, p, e, s)
}

/// `bpf_loop` callback for [`mangle`]: byte `i` of the new region. The
/// region starts at the even offset `s.start & !1` of the payload (checksum
/// words must keep their alignment): an odd start carries one byte of the
/// old head, then comes the replacement text, then the old tail.
#[inline(never)]
extern "C" fn build_byte(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot, valid during the loop.
    let s = unsafe { &mut *s };
    let i = i as usize & (BUF - 1);
    let head = (s.start & 1) as usize;
    let tl = s.text_len as usize;
    let b = if i < head {
        s.old[(s.start as usize - 1) & (BUF - 1)]
    } else if i < head + tl {
        s.text[(i - head) & (FMT_LEN - 1)]
    } else {
        s.old[(i - head - tl + s.end as usize) & (BUF - 1)]
    };
    s.new[i] = b;
    0
}

/// Replaces `old[start..end]` by `text[..text_len]` in the segment, resizing
/// it, and fixes lengths, checksums and the sequence correction. The
/// replacement is described by `s.start`, `s.end`, `s.len`, `s.text` and
/// `s.text_len` (BPF functions take at most five arguments). Byte copies
/// run under `bpf_loop`: an unrolled copy with a data-dependent bound would
/// make the verifier explore every length.
#[inline(never)]
fn mangle(ctx: &TcContext, p: &Packet, e: &mut CtEntry, s: &mut Scratch) -> Result<(), Counter> {
    let start = s.start as usize & (BUF - 1);
    let end = s.end as usize & (BUF - 1);
    let len = s.len as usize & (BUF - 1);
    let text_len = s.text_len as usize & (FMT_LEN - 1);
    if end > len || start > end {
        return Err(Counter::DropFtpUnmangleable);
    }
    let region = start & !1;
    let old_region = len - region;
    let new_region = (start - region) + text_len + (len - end);
    if new_region > BUF - 4 || old_region > BUF - 4 {
        return Err(Counter::DropFtpUnmangleable);
    }
    let mut unused = 0u64;
    // SAFETY: callback and stack context as bpf_loop expects.
    unsafe {
        bpf_loop(
            new_region as u32,
            build_byte as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        )
    };
    // Zero padding to a multiple of four, for bpf_csum_diff.
    for k in 0..3 {
        s.new[(new_region + k) & (BUF - 1)] = 0;
        s.old[(len + k) & (BUF - 1)] = 0;
    }
    let delta = new_region as i32 - old_region as i32;
    let region_off = p.payload_off as u32 + region as u32;
    let skb = ctx.skb.skb;
    let old_skb_len = ctx.len();
    // SAFETY: helper calls on our skb with bounded lengths into map memory.
    unsafe {
        if delta > 0 && bpf_skb_change_tail(skb, (old_skb_len as i32 + delta) as u32, 0) < 0 {
            return Err(Counter::DropFtpUnmangleable);
        }
        if new_region > 0
            && bpf_skb_store_bytes(
                skb,
                region_off,
                s.new.as_ptr() as *const c_void,
                nonzero_len(new_region),
                0,
            ) < 0
        {
            return Err(Counter::DropFtpUnmangleable);
        }
        if delta < 0 && bpf_skb_change_tail(skb, (old_skb_len as i32 + delta) as u32, 0) < 0 {
            return Err(Counter::DropFtpUnmangleable);
        }
    }
    let l3 = p.l3_off as usize;
    let l4 = p.l4_off as usize;
    let csum_off = l4 + 16;
    if delta != 0 {
        // IPv4 total length / IPv6 payload length, and the TCP length in
        // the pseudo-header.
        let old_tot = p.l3_len as u16;
        let new_tot = (p.l3_len as i32 + delta) as u16;
        if p.key.family == firewall_common::FAMILY_V4 {
            ctx.store(l3 + 2, &new_tot.to_be(), 0)
                .map_err(|_| Counter::DropFtpUnmangleable)?;
            ctx.l3_csum_replace(l3 + 10, old_tot.to_be() as u64, new_tot.to_be() as u64, 2)
                .map_err(|_| Counter::DropFtpUnmangleable)?;
        } else {
            let new_pl = new_tot.wrapping_sub(40);
            ctx.store(l3 + 4, &new_pl.to_be(), 0)
                .map_err(|_| Counter::DropFtpUnmangleable)?;
        }
        let old_tcp = (p.l3_off as u32 + p.l3_len - l4 as u32) as u16;
        let new_tcp = (old_tcp as i32 + delta) as u16;
        ctx.l4_csum_replace(
            csum_off,
            old_tcp.to_be() as u64,
            new_tcp.to_be() as u64,
            BPF_F_PSEUDO_HDR as u64 | 2,
        )
        .map_err(|_| Counter::DropFtpUnmangleable)?;
    }
    // The payload's contribution: old words out, new words in. (Packets
    // still carrying CHECKSUM_PARTIAL ignore this, correctly: their payload
    // is summed when they leave.)
    let old_words = ((old_region + 3) & !3) as u32;
    let new_words = ((new_region + 3) & !3) as u32;
    // SAFETY: map memory; the old region starts below BUF and is shorter
    // than BUF, inside `old`'s 2 * BUF bytes.
    let diff = unsafe {
        bpf_csum_diff(
            s.old.as_mut_ptr().add(region & (BUF - 1)) as *mut u32,
            old_words & (BUF as u32 - 4),
            s.new.as_mut_ptr() as *mut u32,
            new_words & (BUF as u32 - 4),
            0,
        )
    };
    if diff < 0 {
        return Err(Counter::DropFtpUnmangleable);
    }
    ctx.l4_csum_replace(csum_off, 0, diff as u64, 0)
        .map_err(|_| Counter::DropFtpUnmangleable)?;
    if let Some(seq) = tcp_word(ctx, l4 + 4) {
        e.seqadj.record(u32::from_be(seq), delta);
    }
    count(Counter::FtpRewritten);
    Ok(())
}

/// Shifts a segment's sequence number (`seq`, at egress, own entry `e`) or
/// acknowledgement (`ack`, at ingress, `other` being the other direction's
/// entry) by the recorded correction.
#[inline(always)]
pub fn adjust(ctx: &TcContext, p: &Packet, e: &CtEntry, ack: bool) -> Result<(), Counter> {
    let l4 = p.l4_off as usize;
    let off = if ack { l4 + 8 } else { l4 + 4 };
    let Some(raw) = tcp_word(ctx, off) else {
        return Ok(());
    };
    let old = u32::from_be(raw);
    let new = if ack {
        e.seqadj.adjust_ack(old)
    } else {
        e.seqadj.adjust_seq(old)
    };
    if new == old {
        return Ok(());
    }
    ctx.store(off, &new.to_be(), 0)
        .map_err(|_| Counter::DropFtpUnmangleable)?;
    ctx.l4_csum_replace(l4 + 16, raw as u64, new.to_be() as u64, 4)
        .map_err(|_| Counter::DropFtpUnmangleable)?;
    Ok(())
}

/// `bpf_loop` callback over the TCP options copied to scratch: finds the
/// SACK option (kind 5). EOL ends the list, NOP is one byte, everything
/// else carries its length.
#[inline(never)]
extern "C" fn scan_option(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot, valid during the loop.
    let s = unsafe { &mut *s };
    let pos = s.opt_pos as usize;
    if pos >= s.opts_len as usize || pos >= 40 {
        return 1;
    }
    let kind = s.opts[pos & 63];
    match kind {
        0 => return 1,
        1 => {
            s.opt_pos += 1;
            return 0;
        }
        _ => {}
    }
    let len = s.opts[(pos + 1) & 63] as u32;
    if len < 2 {
        return 1;
    }
    if kind == 5 {
        s.sack_at = pos as u32;
        s.sack_len = len;
        return 1;
    }
    s.opt_pos += len;
    0
}

/// `nf_ct_sack_adjust`: SACK blocks in a segment acknowledge the other
/// direction's (adjusted) sequence numbers, so each edge goes back by the
/// other direction's correction, like the ack.
#[inline(never)]
pub fn adjust_sack(ctx: &TcContext, p: &Packet, other: &CtEntry) -> Result<(), Counter> {
    let l4 = p.l4_off as usize;
    let opts_start = l4 + 20;
    let opts_end = p.payload_off as usize;
    if opts_end <= opts_start {
        return Ok(());
    }
    let n = opts_end - opts_start;
    if n > 40 {
        return Ok(());
    }
    let Some(s) = FTP_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    // SAFETY: bounded length (1..=40) into 64 bytes of map memory.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            opts_start as u32,
            s.opts.as_mut_ptr() as *mut c_void,
            ((n - 1) & 63) as u32 + 1,
        )
    };
    if rc < 0 {
        return Ok(());
    }
    s.opts_len = n as u32;
    s.opt_pos = 0;
    s.sack_len = 0;
    let mut unused = 0u64;
    // SAFETY: callback and stack context as bpf_loop expects.
    unsafe {
        bpf_loop(
            20,
            scan_option as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        )
    };
    let blocks = (s.sack_len.saturating_sub(2) / 8) as usize;
    let at = opts_start + (s.sack_at as usize & 63) + 2;
    for b in 0..4 {
        if b >= blocks {
            break;
        }
        for edge in 0..2 {
            let off = at + b * 8 + edge * 4;
            let Some(raw) = tcp_word(ctx, off) else {
                return Ok(());
            };
            let new = other.seqadj.adjust_sack_edge(u32::from_be(raw)).to_be();
            if new != raw {
                ctx.store(off, &new, 0)
                    .map_err(|_| Counter::DropFtpUnmangleable)?;
                ctx.l4_csum_replace(l4 + 16, raw as u64, new as u64, 4)
                    .map_err(|_| Counter::DropFtpUnmangleable)?;
            }
        }
    }
    Ok(())
}
/// Acks of a helped connection whose other direction had a command
/// rewritten go back to what that direction's sender counts.
#[inline(always)]
pub fn ftp_ingress(ctx: &TcContext, p: &Packet) -> Result<(), Counter> {
    let Some(e) = CONNTRACK.get_ptr(&p.key) else {
        return Ok(());
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &*e };
    if e.flags & flags::HELPER_FTP == 0 {
        return Ok(());
    }
    let Some(other) = CONNTRACK.get_ptr(&e.peer) else {
        return Ok(());
    };
    // SAFETY: as above.
    let other = unsafe { &*other };
    if other.seqadj.is_identity() {
        return Ok(());
    }
    adjust(ctx, p, other, true)?;
    adjust_sack(ctx, p, other)
}

/// A segment of a helped connection on its way out: the helper reads it
/// (and may rewrite it), then its sequence number gets the correction.
#[inline(always)]
pub fn ftp_egress(ctx: &TcContext, p: &Packet) -> Result<(), Counter> {
    let Some(e) = ftp_entry(p) else {
        return Ok(());
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &mut *e };
    if e.flags & flags::HELPER_FTP == 0 {
        return Ok(());
    }
    if p.flags & crate::parse::pkt_flags::FIRST_FRAGMENT != 0 {
        return Err(Counter::DropFragmentHelper);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    help(ctx, p, e, now)?;
    if e.seqadj.is_identity() {
        return Ok(());
    }
    adjust(ctx, p, e, false)
}

/// Whether the packet belongs to a connection the FTP helper watches.
#[inline(always)]
pub fn helped(p: &Packet) -> bool {
    if !SETTINGS.get(0).is_some_and(|s| s.helpers != 0) {
        return false;
    }
    // SAFETY: map value pointers, valid for this run.
    ftp_entry(p).is_some_and(|e| unsafe { (*e).flags } & flags::HELPER_FTP != 0)
}

/// The entry of the direction a TCP segment travels. Usually keyed by the
/// segment's own tuple; a reply whose destination tc ingress already
/// translated back (a masqueraded connection's reply leaving towards the
/// LAN) no longer carries its entry's key, but its inverse is the original
/// entry, whose peer is the one we want.
#[inline(always)]
pub fn ftp_entry(p: &Packet) -> Option<*mut firewall_common::CtEntry> {
    if let Some(e) = CONNTRACK.get_ptr_mut(&p.key) {
        return Some(e);
    }
    let orig = CONNTRACK.get_ptr(&p.key.inverted())?;
    // SAFETY: map value pointer, valid for this run.
    let peer = unsafe { (*orig).peer };
    CONNTRACK.get_ptr_mut(&peer)
}

/// Continues in `firewall_tc_ftp` (a tail call: a program of its own, so
/// the helper's parser has its own verifier budget and stack). Returns only
/// if the jump fails, and then drops: a command must not leave unhandled.
#[inline(always)]
pub fn to_ftp_program(ctx: &TcContext) -> Verdict {
    // SAFETY: the slot holds firewall_tc_ftp, installed by the loader.
    unsafe { JUMP.tail_call(ctx, firewall_common::abi::tc_jump::FTP) };
    drop_with(Counter::DropFtpUnmangleable)
}

/// The first packet of a data connection a helper announced: consumes the
/// expectation and says how to translate the connection (like its master,
/// `nf_nat_follow_master`).
#[inline(always)]
pub fn expected(p: &Packet, now: u64) -> Option<NatSpec> {
    let ek = ExpectKey::of_packet(&p.key);
    // SAFETY: read-only copy of a plain value.
    let exp = unsafe { EXPECT.get(&ek) }.copied()?;
    let _ = EXPECT.remove(&ek);
    if exp.expires_ns < now {
        return None;
    }
    Some(
        if exp.flags & expect_flags::NAT != 0 && exp.nat_dst != p.key.dst {
            NatSpec::Dest {
                addr: exp.nat_dst[0],
                port: exp.nat_dport,
            }
        } else {
            NatSpec::None
        },
    )
}

/// Per-CPU buffers for the FTP helper (too big for the stack).
#[map]
pub static FTP_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
