//! SCTP in the datapath: the chunk headers of a packet read into a per-CPU
//! slot, then `firewall_common::sctp` applied one chunk per `bpf_loop`
//! call, so the tracker's branches are verified once, not per chunk.

use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop, macros::map, maps::PerCpuArray};
use firewall_common::sctp::{
    CHUNK_INIT, CHUNK_INIT_ACK, CHUNK_SHUTDOWN_COMPLETE, Chunk, MAX_CHUNKS, SctpConn, basic_check,
    type_bit,
};

use crate::parse::{LoadBytes, Packet};

/// A packet's chunks and the association being worked on.
#[repr(C)]
pub struct Scratch {
    chunks: [Chunk; MAX_CHUNKS],
    /// The association before (copied in) and after the packet.
    pub conn: SctpConn,
    /// Offset of the next chunk header, and where the packet ends.
    off: u32,
    end: u32,
    /// Chunk headers read, and the set of their types.
    n: u32,
    types: u32,
    /// An INIT, INIT ACK or SHUTDOWN COMPLETE was read (it must be alone).
    alone: u32,
    /// Set when the packet is invalid.
    bad: u32,
    /// Don't refresh the timeout (`ignore` in netfilter).
    pub quiet: u32,
    reply: u32,
    vtag: u32,
    /// The next chunk to apply.
    i: u32,
}

#[map]
static SCTP: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Reads the chunk headers of `p` (after its 12-byte common header) into
/// the slot. `false`: malformed (`do_basic_checks`) or unreadable.
#[inline(always)]
pub fn read_chunks<C: LoadBytes>(ctx: &C, p: &Packet) -> bool {
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        (*s).off = p.l4_off as u32 + 12;
        (*s).end = p.l3_off as u32 + p.l3_len;
        (*s).n = 0;
        (*s).types = 0;
        (*s).alone = 0;
        (*s).bad = 0;
        (*s).vtag = p.vtag;
    }
    // SAFETY: the callback and the stack pointer to `ctx` as bpf_loop
    // expects; `ctx` outlives the loop.
    unsafe {
        bpf_loop(
            MAX_CHUNKS as u32,
            read_chunk::<C> as *mut c_void,
            ctx as *const C as *mut c_void,
            0,
        )
    };
    SCTP.get(0).is_some_and(|s| s.bad == 0 && s.n > 0)
}

/// `bpf_loop` callback: one chunk header. Returns 1 to stop.
#[inline(never)]
extern "C" fn read_chunk<C: LoadBytes>(index: u64, data: *mut c_void) -> i64 {
    // SAFETY: `data` is the `&C` `read_chunks` passed, alive for the loop.
    let ctx = unsafe { &*(data as *const C) };
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    // Like netfilter's walk, stop where no whole chunk header is left.
    if s.off + 4 > s.end {
        return 1;
    }
    let Ok(h) = ctx.load::<4>(s.off as usize) else {
        s.bad = 1;
        return 1;
    };
    let (ty, len) = (h[0], u16::from_be_bytes([h[2], h[3]]));
    if !basic_check(index as usize, ty, len, s.alone != 0) {
        s.bad = 1;
        return 1;
    }
    let mut c = Chunk {
        ty,
        flags: h[1],
        ..Chunk::default()
    };
    if ty == CHUNK_INIT || ty == CHUNK_INIT_ACK {
        let Ok(tag) = ctx.load::<4>(s.off as usize + 4) else {
            s.bad = 1;
            return 1;
        };
        c.init_tag = u32::from_ne_bytes(tag);
    }
    if matches!(ty, CHUNK_INIT | CHUNK_INIT_ACK | CHUNK_SHUTDOWN_COMPLETE) {
        s.alone = 1;
    }
    let Some(slot) = s.chunks.get_mut(index as usize) else {
        return 1;
    };
    *slot = c;
    s.types |= type_bit(ty);
    s.n += 1;
    s.off += (len as u32 + 3) & !3;
    0
}

/// The outcome of a packet for the association in the slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `quiet`: without refreshing the timeout.
    Accept {
        quiet: bool,
    },
    Invalid,
}

/// Runs the packet whose chunks `read_chunks` read through the
/// association `conn` (direction `reply`); with `first`, `conn` is a new
/// one that the packet must be able to start (`sctp_new`). The result is
/// in the slot (`conn()`).
#[inline(always)]
pub fn track(conn: SctpConn, reply: bool, first: bool) -> Outcome {
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return Outcome::Invalid;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    s.conn = conn;
    s.quiet = 0;
    s.reply = reply as u32;
    s.bad = 0;
    if first {
        if !SctpConn::may_begin(s.types, s.n as usize) {
            return Outcome::Invalid;
        }
        s.i = 0;
        // SAFETY: callback as bpf_loop expects; it uses the slot only.
        unsafe {
            bpf_loop(
                MAX_CHUNKS as u32,
                begin_chunk as *mut c_void,
                core::ptr::null_mut(),
                0,
            )
        };
    }
    // Fresh lookups after each call: LLVM must not reuse what it wrote.
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return Outcome::Invalid;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    if s.bad != 0 || !s.conn.tags_ok(reply, s.vtag, s.types) {
        return Outcome::Invalid;
    }
    s.i = 0;
    // SAFETY: as above.
    unsafe {
        bpf_loop(
            MAX_CHUNKS as u32,
            apply_chunk as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    match SCTP.get(0) {
        Some(s) if s.bad == 0 => Outcome::Accept {
            quiet: s.quiet != 0,
        },
        _ => Outcome::Invalid,
    }
}

/// The association in the slot after [`track`].
#[inline(always)]
pub fn conn() -> SctpConn {
    SCTP.get(0).map_or(SctpConn::default(), |s| s.conn)
}

/// `bpf_loop` callback: `sctp_new` for chunk `i`.
#[inline(never)]
extern "C" fn begin_chunk(_index: u64, _data: *mut c_void) -> i64 {
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    if s.i >= s.n {
        return 1;
    }
    let Some(c) = s.chunks.get(s.i as usize).copied() else {
        return 1;
    };
    if !s.conn.begin_chunk(s.vtag, &c) {
        s.bad = 1;
        return 1;
    }
    s.i += 1;
    0
}

/// `bpf_loop` callback: the tracker for chunk `i`.
#[inline(never)]
extern "C" fn apply_chunk(_index: u64, _data: *mut c_void) -> i64 {
    let Some(s) = SCTP.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    if s.i >= s.n {
        return 1;
    }
    let Some(c) = s.chunks.get(s.i as usize).copied() else {
        return 1;
    };
    let mut quiet = s.quiet != 0;
    if s.conn
        .chunk(s.reply != 0, s.vtag, s.types, &c, &mut quiet)
        .is_none()
    {
        s.bad = 1;
        return 1;
    }
    s.quiet = quiet as u32;
    s.i += 1;
    0
}
