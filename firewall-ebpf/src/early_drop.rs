//! Early drop: making room in a full connection table
//! (`firewall_common::early_drop` has the design and the pure logic).
//!
//! `create` inserts through [`insert`]: an insert that finds the table full
//! (`-E2BIG`) displaces the oldest unassured connection the ring of recent
//! creations names, both halves, and is retried once. Every connection made
//! is then [`remember`]ed in the creating CPU's region of the ring.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_smp_processor_id, generated::bpf_loop},
    macros::map,
    maps::{Array, PerCpuArray},
};
use firewall_common::{
    Counter, CtEntry, CtKey,
    early_drop::{Judgement, RingCursor, RingGeometry, Search, Step, judge, same_key},
};

use crate::maps::{CONNTRACK, count};

/// `-E2BIG`: a preallocated hash has no free element (the table is full).
pub const E2BIG: i32 = -7;

/// The ring of recently created connections' original keys, one region per
/// possible CPU. The loader sizes it (`RingGeometry::slots`).
#[map]
static CT_EARLY_DROP: Array<CtKey> = Array::with_max_entries(1, 0);

/// Each region's positions (`RingCursor`), indexed by CPU. The loader sizes
/// it (`RingGeometry::regions`).
#[map]
static EARLY_DROP_POS: Array<RingCursor> = Array::with_max_entries(1, 0);

/// The ring's geometry, written by the loader: its own one-element map
/// rather than a field of `SETTINGS`, because it is fixed for the life of
/// the pinned ring while the settings change on every reload.
#[map]
static EARLY_DROP_GEOM: Array<RingGeometry> = Array::with_max_entries(1, 0);

/// A search's state between `bpf_loop` calls, and the keys it works on: in
/// map memory, so the callback is verified once per call site and the
/// callers' stack is spared 100 bytes.
#[repr(C)]
struct Walk {
    search: Search,
    geometry: RingGeometry,
    now: u64,
    /// Non-zero once a connection was removed.
    found: u32,
    _pad: u32,
    /// The half of the connection being created that is already in the
    /// table: never taken for a victim.
    protect: CtKey,
    /// The candidate's key, copied out of the ring: the owner CPU may
    /// overwrite the slot meanwhile, and the key judged must be the key
    /// deleted.
    candidate: CtKey,
}

#[map]
static EARLY_DROP_WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn geometry() -> RingGeometry {
    EARLY_DROP_GEOM.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_smp_processor_id() }
}

/// Inserts a conntrack entry; when the table is full, makes room once and
/// retries. `protect` is the key of the new connection's half that is
/// already in the table (or `key` itself for the first half). Returns the
/// kernel's error: [`E2BIG`] means nothing could be displaced.
#[inline(always)]
pub fn insert(
    key: &CtKey,
    entry: &CtEntry,
    flags: u64,
    protect: &CtKey,
    now: u64,
) -> Result<(), i32> {
    match CONNTRACK.insert(key, entry, flags) {
        Err(E2BIG) if make_room(protect, now) => CONNTRACK.insert(key, entry, flags),
        r => r,
    }
}

/// Hands the search its inputs and runs it. Returns whether a connection
/// was removed.
#[inline(always)]
fn make_room(protect: &CtKey, now: u64) -> bool {
    let Some(w) = EARLY_DROP_WALK.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        (*w).now = now;
        (*w).protect = *protect;
    }
    early_drop_make_room() != 0
}

/// Appends a new connection's original key to this CPU's region.
#[inline(always)]
pub fn remember(key: &CtKey) {
    let g = geometry();
    if g.is_off() {
        return;
    }
    let cpu = this_cpu();
    let Some(c) = EARLY_DROP_POS.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: map value; only this CPU writes its region's head.
    let head = unsafe { (*c).head };
    if let Some(slot) = CT_EARLY_DROP.get_ptr_mut(g.slot(cpu, head)) {
        // SAFETY: map value pointer, valid for this run.
        unsafe { *slot = *key };
    }
    // SAFETY: as above.
    unsafe { (*c).head = head.wrapping_add(1) };
}

/// Removes one connection to make room: the oldest unassured one within
/// the search's reach (or a dead one found on the way), with the inputs
/// [`make_room`] left in `EARLY_DROP_WALK`. Returns 1 if a connection was
/// removed.
///
/// A global function (`no_mangle`, BTF linkage global), so the verifier
/// checks it once, on its own, rather than at each of `create`'s insert
/// sites on every path that reaches them: inlined, the search multiplied
/// the TC egress program's paths past the million-instruction budget.
/// Hence no arguments: a global function may only take scalars and
/// context, and its inputs are in map memory anyway.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn early_drop_make_room() -> i64 {
    let g = geometry();
    if g.is_off() {
        return 0;
    }
    let cpu = this_cpu();
    let start = EARLY_DROP_POS.get(cpu).map_or(0, |c| c.start);
    let Some(w) = EARLY_DROP_WALK.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        (*w).search = Search::new(start, g.regions);
        (*w).geometry = g;
        (*w).found = 0;
    }
    // SAFETY: the callback is what bpf_loop expects; it takes its state
    // from the per-CPU slot.
    unsafe {
        bpf_loop(
            Search::max_steps(g.regions),
            visit as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // A fresh lookup: LLVM must not reuse values from before the call.
    let Some(w) = EARLY_DROP_WALK.get(0) else {
        return 0;
    };
    if let Some(c) = EARLY_DROP_POS.get_ptr_mut(cpu) {
        // SAFETY: map value; only this CPU writes its `start`.
        unsafe { (*c).start = w.search.region };
    }
    i64::from(w.found != 0)
}

/// `bpf_loop` callback: one step of the search. Returns 1 to stop.
#[inline(never)]
extern "C" fn visit(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = EARLY_DROP_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let w = unsafe { &mut *w };
    let region = w.search.region;
    // SAFETY: map value; racing CPUs may repeat a position (see
    // `RingCursor::evict`).
    let cursor = EARLY_DROP_POS
        .get_ptr_mut(region)
        .map(|c| unsafe { &mut *c });
    let pos = match w.search.step(cursor, w.geometry.region_len()) {
        Step::Candidate(pos) => pos,
        Step::Moved => return 0,
        Step::Done => return 1,
    };
    let Some(slot) = CT_EARLY_DROP.get(w.geometry.slot(region, pos)) else {
        return 0;
    };
    w.candidate = *slot;
    if same_key(&w.candidate, &w.protect) {
        return 0;
    }
    let Some(e) = CONNTRACK.get_ptr(&w.candidate) else {
        // Gone already: closed, expired, or displaced by another CPU.
        return 0;
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &*e };
    let expired = e.expires_ns < w.now
        && CONNTRACK
            .get_ptr(&e.peer)
            // SAFETY: as above.
            .is_none_or(|p| unsafe { (*p).expires_ns } < w.now);
    let verdict = judge(e.flags, expired);
    if verdict == Judgement::Keep {
        return 0;
    }
    // Both halves: the peer first, while `e` (which names it) is still
    // there. A NAT binding is the reply half and goes with its pair.
    let _ = CONNTRACK.remove(&e.peer);
    let _ = CONNTRACK.remove(&w.candidate);
    count(if verdict == Judgement::Reap {
        Counter::CtExpiredInPath
    } else {
        Counter::CtEarlyDrop
    });
    w.found = 1;
    1
}
