//! The kernel's routing table, asked through `bpf_fib_lookup`: which chain
//! a packet is in (INPUT or FORWARD) and where it leaves, whether the stack
//! would route it at all, and whether its source could be answered. The
//! fast path asks the same question with its own parameters (MTU, TOS).

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    macros::map,
    maps::PerCpuArray,
};
use firewall_common::{CtKey, FAMILY_V4, ip::v6_is_link_local};

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// The lookup's parameters live in a per-CPU slot: 64 bytes of stack are
/// more than the main program's frame can spare beside the rule walk.
#[map]
static FIB_PARAMS: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

/// What a lookup said, in the firewall's terms.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No lookup was made (or it could not be).
    Unknown,
    /// Delivered here (a local or broadcast destination), or a lookup error
    /// the helper reports as "not forwarded" (no route at all).
    Local,
    /// Forwarding is off on the interface: the host delivers or drops, and
    /// the helper does not look further.
    Disabled,
    /// Routed out of `Route::oif` (the neighbour may still be unresolved).
    Forward,
    /// Unreachable, blackhole or prohibit: the stack drops it (with an ICMP
    /// error for the first and last).
    Unroutable,
}

/// Where a packet goes, as far as the firewall needs to know.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Route {
    pub outcome: Outcome,
    /// The egress interface when forwarded, else 0.
    pub oif: u32,
}

impl Route {
    pub const UNKNOWN: Route = Route {
        outcome: Outcome::Unknown,
        oif: 0,
    };
}

/// Fills `params` for `key`'s tuple arriving on `ifindex` (`reverse`: the
/// way back, source and destination swapped). `tot_len` stays 0: only the
/// route matters, not the MTU (the fast path sets it).
#[inline(always)]
pub fn fill(params: &mut FibParams, key: &CtKey, ifindex: u32, reverse: bool) {
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    *params = unsafe { core::mem::zeroed() };
    let (src, dst) = if reverse {
        (&key.dst, &key.src)
    } else {
        (&key.src, &key.dst)
    };
    params.l4_protocol = key.proto;
    params.sport = if reverse { key.dport } else { key.sport };
    params.dport = if reverse { key.sport } else { key.dport };
    params.ifindex = ifindex;
    if key.family == FAMILY_V4 {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = src[0];
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.family = AF_INET6;
        // The helper answers "not forwarded" for any link-local source
        // (`rt6_need_strict`), whatever the destination; the question here
        // is where the destination is, so the source is left out.
        if !v6_is_link_local(src) {
            params.__bindgen_anon_3.ipv6_src = *src;
        }
        params.__bindgen_anon_4.ipv6_dst = *dst;
    }
}

/// `bpf_fib_lookup` on filled parameters; its `BPF_FIB_LKUP_RET_*` code.
#[inline(always)]
pub fn lookup<C: EbpfContext>(ctx: &C, params: &mut FibParams) -> u32 {
    // SAFETY: a valid, fully initialised bpf_fib_lookup.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    rc as u32
}

/// Where `key`'s tuple arriving on `ifindex` goes (`reverse`: where its
/// answer would go), in the firewall's terms.
#[inline(always)]
pub fn route<C: EbpfContext>(ctx: &C, key: &CtKey, ifindex: u32, reverse: bool) -> Route {
    let Some(params) = FIB_PARAMS.get_ptr_mut(0) else {
        return Route::UNKNOWN;
    };
    // SAFETY: this CPU's slot.
    let params = unsafe { &mut *params };
    fill(params, key, ifindex, reverse);
    let rc = lookup(ctx, params);
    let outcome = match rc {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            Outcome::Forward
        }
        BPF_FIB_LKUP_RET_NOT_FWDED => Outcome::Local,
        BPF_FIB_LKUP_RET_FWD_DISABLED => Outcome::Disabled,
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Outcome::Unroutable
        }
        // Unsupported lightweight tunnels and anything newer: the stack
        // forwards it some way we cannot see.
        _ => Outcome::Forward,
    };
    Route {
        outcome,
        oif: if outcome == Outcome::Forward {
            params.ifindex
        } else {
            0
        },
    }
}
