//! Summing packet bytes, for the checksums a packet must carry before it
//! may create a connection (`admit`) or be taken as an ICMP error about one
//! (`related`). The arithmetic itself is `firewall_common::csum`.
//!
//! The bytes are copied in 256-byte chunks into a per-CPU slot and summed
//! with `bpf_csum_diff`, one chunk per `bpf_loop` call: the loop is verified
//! once whatever the length, and the copy works on any frame layout
//! (`bpf_{xdp,skb}_load_bytes` reach fragments that direct access cannot).

use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_csum_diff, bpf_loop},
    macros::map,
    maps::PerCpuArray,
};

use crate::parse::{LoadBytes, opaque};

const CHUNK: usize = 256;
/// Chunks of the longest IP packet.
const MAX_CHUNKS: u32 = (65_536 / CHUNK) as u32;

#[repr(C)]
pub struct SumSlot {
    /// The chunk being summed, plus room to round its length up to whole
    /// 32-bit words (`bpf_csum_diff` sums words) with zeros.
    pub buf: [u8; CHUNK + 4],
    off: u32,
    end: u32,
    sum: u64,
    failed: u32,
    _pad: u32,
}

#[map]
static SUM: PerCpuArray<SumSlot> = PerCpuArray::with_max_entries(1, 0);

/// The 32-bit partial sum of bytes `[off, off + len)` of the packet (odd
/// length padded with a zero byte, as RFC 1071 does), or `None` if they
/// are not all there. After a sum of at most 256 bytes, [`last_chunk`]
/// holds them.
#[inline(always)]
pub fn sum<C: LoadBytes>(ctx: &C, off: usize, len: usize) -> Option<u32> {
    let slot = SUM.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else runs on it during the program.
    unsafe {
        (*slot).off = off as u32;
        (*slot).end = (off + len) as u32;
        (*slot).sum = 0;
        (*slot).failed = 0;
    }
    // SAFETY: the callback and the stack pointer to `ctx` are what
    // bpf_loop expects; `ctx` outlives the loop.
    unsafe {
        bpf_loop(
            MAX_CHUNKS,
            sum_chunk::<C> as *mut c_void,
            ctx as *const C as *mut c_void,
            0,
        )
    };
    // A fresh lookup: LLVM must not reuse values from before the call.
    let slot = SUM.get(0)?;
    if slot.failed != 0 || slot.off < slot.end {
        return None;
    }
    let s = slot.sum;
    let s = (s & 0xffff_ffff) + (s >> 32);
    Some(((s & 0xffff_ffff) + (s >> 32)) as u32)
}

/// The bytes of the last chunk [`sum`] copied.
#[inline(always)]
pub fn last_chunk() -> Option<&'static [u8; CHUNK + 4]> {
    SUM.get(0).map(|s| &s.buf)
}

/// `bpf_loop` callback: copies and sums the next chunk. Returns 1 to stop.
#[inline(never)]
extern "C" fn sum_chunk<C: LoadBytes>(_index: u64, data: *mut c_void) -> i64 {
    // SAFETY: `data` is the `&C` that `sum` passed, alive for the loop.
    let ctx = unsafe { &*(data as *const C) };
    let Some(slot) = SUM.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let slot = unsafe { &mut *slot };
    if slot.off >= slot.end {
        return 1;
    }
    let left = slot.end - slot.off;
    let n = if left > CHUNK as u32 {
        CHUNK as u32
    } else {
        left
    };
    // LLVM knows `n > 0` from `off < end` and drops the test; the verifier
    // does not know it and needs the test for the helper's size argument.
    let n = opaque(n);
    if n == 0 || n > CHUNK as u32 {
        return 1;
    }
    if !ctx.load_raw(slot.off, slot.buf.as_mut_ptr(), n) {
        slot.failed = 1;
        return 1;
    }
    // Zero the bytes that round the chunk up to whole words.
    let n = n as usize;
    for k in 0..3 {
        if let Some(b) = slot.buf.get_mut(n + k) {
            *b = 0;
        }
    }
    let words = ((n + 3) & !3) as u32;
    if words == 0 || words > (CHUNK + 4) as u32 {
        return 1;
    }
    // SAFETY: `buf` holds `words` bytes; no "from" buffer.
    let s = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            slot.buf.as_mut_ptr() as *mut u32,
            words,
            0,
        )
    };
    if s < 0 {
        slot.failed = 1;
        return 1;
    }
    slot.sum += s as u32 as u64;
    slot.off += n as u32;
    0
}
