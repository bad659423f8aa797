//! A packet's way through the firewall: parse, track, decide, admit,
//! create (`process`, shared by XDP and tc egress), and what tc egress
//! does after it (host traffic, and forwarded traffic's source NAT).

use aya_ebpf::{
    EbpfContext, bindings::TC_ACT_UNSPEC, helpers::bpf_ktime_get_ns, macros::map,
    maps::PerCpuArray, programs::TcContext,
};
use firewall_common::{
    Chain, Counter, CtState, FAMILY_V4, Role, Settings,
    ct::flags,
    nat::{IfaceNat, NatRewrite, PortFwdKey},
    settings_nat,
};

use crate::{
    admit::{self, Admission},
    conntrack::{self, NO_REWRITE, Tracked},
    fib,
    frag::{self, fate},
    ftp::{expected, helped, to_ftp_program},
    maps::{CONNTRACK, HELPERS, SETTINGS, count, iface},
    nat::{
        self, NatSpec, egress_forwarded_nat, icmp_error_nat, port_forward, source_nat,
        untranslated_guard,
    },
    nd::{self, NdVerdict},
    parse::{L4Kind, LoadBytes, Packet, ParseError, pkt_flags, scratch},
    related,
    rules::{self, Fallback, PolicyVerdict},
    sctp, tcp,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Drop and answer (a REJECT rule).
    Reject(rules::Reject),
    /// Accepted as ESTABLISHED. `fast`: neither translated nor helped, so
    /// at XDP the fast path may forward it.
    Established {
        fast: bool,
    },
    /// A first packet from outside that policy accepted: admission and
    /// creation continue in `firewall_xdp_admit` (`NEW_CONNECTION`).
    Admit,
}

/// Where the packet was seen.
#[derive(Clone, Copy)]
pub enum Hook {
    /// XDP on a managed interface; `flags` are its `nd::iface_flags`.
    Ingress { ifindex: u32, role: Role, flags: u8 },
    /// TC egress on `ifindex`, for traffic the host originates (or that
    /// arrived on an interface the firewall does not manage).
    Egress { ifindex: u32 },
}

/// Host-originated traffic: track and decide, then source-translate.
#[inline(always)]
pub fn egress_local(ctx: &TcContext, ifindex: u32) -> Verdict {
    let (verdict, nat_kind) = process(ctx, ctx.data(), ctx.data_end(), Hook::Egress { ifindex });
    if matches!(verdict, Verdict::Drop | Verdict::Reject(_) | Verdict::Admit) {
        return verdict;
    }
    egress_local_finish(ctx, ifindex, verdict, nat_kind)
}

/// The connection of a first packet the host sends, which `process` left
/// in `NEW_CONNECTION` for `firewall_tc_create`; then the rest of
/// [`egress_local`].
#[inline(always)]
pub fn egress_create(ctx: &TcContext, ifindex: u32) -> Verdict {
    let (Some(p), Some(args), Some(s)) = (scratch(), NEW_CONNECTION.get(0), SETTINGS.get(0)) else {
        return drop_with(Counter::DropMalformed);
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let (verdict, nat_kind) = create(p, s, args, now);
    frag::record(p, verdict == Verdict::Pass);
    if matches!(verdict, Verdict::Drop | Verdict::Reject(_) | Verdict::Admit) {
        return verdict;
    }
    egress_local_finish(ctx, ifindex, verdict, nat_kind)
}

/// What follows tracking for the host's own packets: the FTP helper's
/// program for helped segments, else the source translation.
#[inline(always)]
fn egress_local_finish(ctx: &TcContext, ifindex: u32, verdict: Verdict, nat_kind: u8) -> Verdict {
    let Some(p) = scratch() else {
        return drop_with(Counter::DropMalformed);
    };
    if p.kind == L4Kind::Tcp && helped(p) {
        return to_ftp_program(ctx);
    }
    if nat_kind != NatRewrite::Src as u8 {
        return verdict;
    }
    let out = iface(ifindex).unwrap_or_default();
    match nat::apply(
        ctx,
        p,
        NatRewrite::Src as u8,
        out.nat,
        out.nat_addr,
        ifindex,
    ) {
        Ok(_) => Verdict::Pass,
        Err(c) => drop_with(c),
    }
}

/// Transit traffic leaving through `ifindex`: XDP tracked and judged it on
/// the way in; here only its source translation remains. A packet never
/// leaves a NAT interface untranslated.
#[inline(always)]
pub fn egress_forwarded(ctx: &TcContext, ifindex: u32) -> Verdict {
    let Ok(p) = frag::parsed(ctx, ctx.data(), ctx.data_end()) else {
        return drop_with(Counter::DropMalformed);
    };
    // The stack fragments what it forwards to a smaller MTU: XDP saw the
    // datagram whole, so its first fragment is recorded here, for the rest
    // to take its translation.
    frag::record(p, true);
    let out = iface(ifindex).unwrap_or_default();
    if p.kind == L4Kind::IcmpError {
        let Some(e) = CONNTRACK.get_ptr(&p.inner.inverted()) else {
            return untranslated_guard(p, &out);
        };
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*e).nat } == NatRewrite::Src as u8 {
            return if icmp_error_nat(ctx, p, NatRewrite::Src) == TC_ACT_UNSPEC {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
        }
        return untranslated_guard(p, &out);
    }
    if p.kind == L4Kind::Tcp && helped(p) {
        return to_ftp_program(ctx);
    }
    egress_forwarded_nat(ctx, p, &out, ifindex)
}

#[inline(always)]
pub fn reject_with(r: rules::Reject) -> Verdict {
    Verdict::Reject(r)
}

#[inline(always)]
pub fn drop_with(c: Counter) -> Verdict {
    count(c);
    Verdict::Drop
}

#[inline(always)]
pub fn pass_with(c: Counter) -> Verdict {
    count(c);
    Verdict::Pass
}

/// Parse, track, decide. Returns the verdict and, for a packet of a
/// translated connection, the rewrite its entry carries. A first fragment's
/// verdict is recorded for the rest of its datagram, except a first packet
/// left to `firewall_xdp_admit` or `firewall_tc_create`, which record it.
#[inline(always)]
pub fn process<C: EbpfContext + LoadBytes>(
    ctx: &C,
    start: usize,
    end: usize,
    hook: Hook,
) -> (Verdict, u8) {
    let now = unsafe { bpf_ktime_get_ns() };
    let (verdict, nat) = decide(ctx, start, end, hook, now);
    if !matches!(verdict, Verdict::Admit)
        && let Some(p) = scratch()
    {
        frag::record(p, !matches!(verdict, Verdict::Drop | Verdict::Reject(_)));
    }
    (verdict, nat)
}

#[inline(always)]
fn decide<C: EbpfContext + LoadBytes>(
    ctx: &C,
    start: usize,
    end: usize,
    hook: Hook,
    now: u64,
) -> (Verdict, u8) {
    let none = NO_REWRITE;
    let p = match frag::parsed(ctx, start, end) {
        Ok(p) => p,
        Err(ParseError::NotIp) => return (pass_with(Counter::AcceptNonIp), none),
        Err(ParseError::Malformed) => return (drop_with(Counter::DropMalformed), none),
        Err(ParseError::VlanStack) => return (drop_with(Counter::DropVlanStack), none),
        Err(ParseError::TinyFragment) => return (drop_with(Counter::DropFragmentTiny), none),
    };
    let Some(settings) = SETTINGS.get(0) else {
        return (drop_with(Counter::DropPolicy), none);
    };
    if let Some(c) = frag::refused(p) {
        return (drop_with(c), none);
    }
    if p.flags & pkt_flags::ATOMIC_FRAGMENT != 0 {
        count(Counter::FragmentAtomic);
    }
    if p.kind == L4Kind::Tcp {
        // One place for every path that tracks the segment.
        tcp::segment(ctx, p);
    }
    let mut state = CtState::New;
    let pending = match p.kind {
        L4Kind::IcmpInvalid => return (drop_with(Counter::DropInvalidIcmp), none),
        L4Kind::Fragment => {
            // Its first fragment was accepted: so is it, and at egress it
            // is translated like its connection (`nat::apply` checks the
            // entry's own rewrite).
            if p.frag_fate == fate::FOLLOW {
                return (pass_with(Counter::AcceptFragment), NatRewrite::Src as u8);
            }
            // No first fragment on record: nothing to judge it by. From
            // outside it stays out; from inside (or from the host) it
            // passes, and a NAT interface still refuses it untranslated.
            let v = match hook {
                Hook::Ingress {
                    role: Role::Wan, ..
                } => drop_with(Counter::DropFragment),
                Hook::Ingress { .. } => pass_with(Counter::AcceptFragmentOrphan),
                // The host's own: nothing to translate it by, so not out
                // of a NAT interface from another address.
                Hook::Egress { ifindex } => {
                    let out = iface(ifindex).unwrap_or_default();
                    if out.nat != IfaceNat::None as u8
                        && p.key.family == FAMILY_V4
                        && p.key.src[0] != out.nat_addr
                    {
                        drop_with(Counter::DropFragmentUntranslated)
                    } else {
                        pass_with(Counter::AcceptFragmentOrphan)
                    }
                }
            };
            return (v, none);
        }
        L4Kind::IcmpError => {
            let r = match hook {
                Hook::Ingress { .. } => related::arriving(ctx, p, now),
                Hook::Egress { .. } => related::leaving(p, now),
            };
            return match r {
                Ok((c, nat)) => (pass_with(c), nat),
                Err(c) => (drop_with(c), none),
            };
        }
        L4Kind::IcmpUntracked => match hook {
            // The host's own neighbour discovery.
            Hook::Egress { .. } => return (pass_with(Counter::AcceptUntracked), none),
            Hook::Ingress {
                ifindex,
                role,
                flags,
            } => match nd::arriving(ctx, p, ifindex, flags, role == Role::Lan) {
                NdVerdict::Accept => return (pass_with(Counter::AcceptUntracked), none),
                NdVerdict::Drop(c) => return (drop_with(c), none),
                NdVerdict::Rules => {
                    state = CtState::Untracked;
                    Pending::decided(none)
                }
            },
        },
        // The tracker reads every chunk header; a packet whose chunks
        // fail netfilter's basic checks is INVALID.
        L4Kind::Sctp if !sctp::read_chunks(ctx, p) => {
            return (drop_with(Counter::DropInvalidSctp), none);
        }
        _ => match conntrack::track(p, settings, now) {
            Tracked::Invalid(reason) => return (drop_with(reason), none),
            Tracked::Hit {
                state: CtState::Established,
                nat,
                helped,
            } => {
                count(Counter::AcceptEstablished);
                let fast = nat == NO_REWRITE && !helped;
                return (Verdict::Established { fast }, nat);
            }
            // A data connection a helper announced stays RELATED until
            // its reply (netfilter's IPS_EXPECTED): as its first packet,
            // the policy does not judge its retransmissions.
            Tracked::Hit {
                state: CtState::Related,
                nat,
                ..
            } => Pending {
                related: true,
                ..Pending::decided(nat)
            },
            // An original-direction packet of a connection that has not
            // been answered yet is still NEW: policy decides again, with
            // the port forward's acceptance for a port-forwarded one (its
            // original entry rewrites the destination), as for its first
            // packet: a retransmitted SYN must not meet the WAN's policy.
            Tracked::Hit { state: st, nat, .. } => {
                state = st;
                Pending {
                    port_forward: nat == NatRewrite::Dst as u8
                        && matches!(
                            hook,
                            Hook::Ingress {
                                role: Role::Wan,
                                ..
                            }
                        ),
                    ..Pending::decided(nat)
                }
            }
            Tracked::Miss => match first_packet(p, settings, hook, now) {
                Ok(pending) => pending,
                Err(done) => return done,
            },
        },
    };
    let routed = if pending.dnat {
        // The output interface is not known before translation: `oif`
        // conditions do not match port-forwarded packets.
        Routed {
            chain: Chain::Forward,
            route: fib::Route::UNKNOWN,
        }
    } else if state == CtState::Untracked {
        // Link-scope messages for the host (`nd` dropped the others).
        Routed {
            chain: Chain::Input,
            route: fib::Route::UNKNOWN,
        }
    } else {
        route(ctx, p, settings, hook)
    };
    // One call site of the policy: every inlined copy of the rule walk
    // costs the verifier a full exploration of it.
    let verdict = if pending.related {
        // An announced data connection: RELATED, policy does not apply.
        PolicyVerdict::Accept(Counter::AcceptExpected)
    } else {
        let fallback = if pending.port_forward {
            Fallback::Accept(Counter::AcceptPortForward)
        } else {
            Fallback::Policy
        };
        policy(p, settings, hook, &routed, state, fallback)
    };
    match verdict {
        PolicyVerdict::Drop(c) => (drop_with(c), none),
        PolicyVerdict::Reject(r) => (reject_with(r), none),
        PolicyVerdict::Accept(c) if !pending.create => (pass_with(c), pending.nat),
        PolicyVerdict::Accept(c) => {
            let (ifindex, flags) = match hook {
                Hook::Ingress { ifindex, flags, .. } => (ifindex, flags),
                Hook::Egress { ifindex } => (ifindex, 0),
            };
            let args = NewConnection {
                counter: c as u32,
                ifindex,
                route: routed.route,
                chain: routed.chain as u8,
                flags,
                dnat: pending.dnat as u8,
                tcp_state: pending.tcp_state,
                ct_flags: pending.ct_flags,
                _pad: [0; 3],
                dnat_addr: pending.dnat_addr,
                dnat_port: pending.dnat_port,
                _pad2: 0,
            };
            match hook {
                // Admission and creation run in `firewall_xdp_admit`, by
                // tail call: verified apart, they do not multiply with
                // every path of this program (inline, the XDP program
                // neared the verifier's budget).
                Hook::Ingress { .. } => match NEW_CONNECTION.get_ptr_mut(0) {
                    Some(slot) => {
                        // SAFETY: this CPU's slot.
                        unsafe { *slot = args };
                        (Verdict::Admit, none)
                    }
                    None => (drop_with(Counter::DropMalformed), none),
                },
                // What the host itself sends is not admitted, only created,
                // in `firewall_tc_create` by tail call: inline, creation
                // (early drop's retried inserts above all) took most of
                // the TC program's verification budget.
                Hook::Egress { .. } => match NEW_CONNECTION.get_ptr_mut(0) {
                    Some(slot) => {
                        // SAFETY: this CPU's slot.
                        unsafe { *slot = args };
                        (Verdict::Admit, none)
                    }
                    None => (drop_with(Counter::DropMalformed), none),
                },
            }
        }
    }
}

/// What an accepted first packet's connection needs besides the packet,
/// handed from `process` to `firewall_xdp_admit`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NewConnection {
    /// The `Counter` of the acceptance (`accept_new`, `accept_rule`, …).
    pub counter: u32,
    pub ifindex: u32,
    pub route: fib::Route,
    /// A `Chain` as u8.
    pub chain: u8,
    /// The arrival interface's `nd::iface_flags`.
    pub flags: u8,
    pub dnat: u8,
    pub tcp_state: u8,
    pub ct_flags: u8,
    pub _pad: [u8; 3],
    pub dnat_addr: u32,
    pub dnat_port: u16,
    pub _pad2: u16,
}

#[map]
pub static NEW_CONNECTION: PerCpuArray<NewConnection> = PerCpuArray::with_max_entries(1, 0);

/// The admission of a first packet from outside (see `admit`), then its
/// connection: the rest of `process` for it, in `firewall_xdp_admit`.
#[inline(always)]
pub fn admit_and_create<C: EbpfContext + LoadBytes>(
    ctx: &C,
    p: &Packet,
    s: &Settings,
    args: &NewConnection,
) -> Verdict {
    let at = admit::Arrival {
        ifindex: args.ifindex,
        flags: args.flags,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let verdict = match admit::first_packet(ctx, p, at, args.route, args.dnat != 0) {
        Admission::Create => create(p, s, args, now).0,
        Admission::Drop(reason) => drop_with(reason),
        Admission::PassUntracked(reason) => pass_with(reason),
    };
    frag::record(p, verdict == Verdict::Pass);
    verdict
}

/// Creates an accepted first packet's connection, with the translation
/// its route or port forward gives it.
#[inline(always)]
fn create(p: &Packet, s: &Settings, args: &NewConnection, now: u64) -> (Verdict, u8) {
    let spec = if args.dnat != 0 {
        NatSpec::Dest {
            addr: args.dnat_addr,
            port: args.dnat_port,
        }
    } else {
        let chain = if args.chain == Chain::Input as u8 {
            Chain::Input
        } else if args.chain == Chain::Output as u8 {
            Chain::Output
        } else {
            Chain::Forward
        };
        source_nat(p, s, chain, args.route.oif)
    };
    match conntrack::create(p, args.tcp_state, s, now, spec, args.ct_flags) {
        Ok(rw) => (pass_with(counter_of(args.counter)), rw),
        Err(reason) => (drop_with(reason), NO_REWRITE),
    }
}

/// The counter in slot `n` (written from a `Counter`).
#[inline(always)]
fn counter_of(n: u32) -> Counter {
    Counter::ALL
        .get(n as usize)
        .copied()
        .unwrap_or(Counter::AcceptNew)
}

/// A packet the policy decides on, and what follows its acceptance. A
/// plain struct with every field set on every path: an enum left some
/// bytes undefined, and LLVM spilled the undefined register, which the
/// verifier rejects (`!read_ok`).
#[derive(Clone, Copy)]
pub struct Pending {
    /// A first packet, whose connection is created on acceptance; else a
    /// packet of a connection tracked already (whose rewrite is `nat`), or
    /// one never tracked.
    create: bool,
    /// The first packet of a data connection a helper announced: RELATED,
    /// no policy.
    related: bool,
    /// A port forward lets it in unless a rule drops it.
    port_forward: bool,
    nat: u8,
    tcp_state: u8,
    ct_flags: u8,
    /// Translated to `dnat_addr:dnat_port` (a port forward, or a data
    /// connection following its master); else the source NAT of its route
    /// applies.
    dnat: bool,
    dnat_addr: u32,
    dnat_port: u16,
}

impl Pending {
    /// A packet whose connection (if any) exists: policy only.
    #[inline(always)]
    fn decided(nat: u8) -> Pending {
        Pending {
            create: false,
            related: false,
            port_forward: false,
            nat,
            tcp_state: 0,
            ct_flags: 0,
            dnat: false,
            dnat_addr: 0,
            dnat_port: 0,
        }
    }
}

/// The first packet of a flow up to the policy: its validity, whether a
/// helper announced it (RELATED), the helper to attach, and a port forward.
#[inline(always)]
pub fn first_packet(
    p: &Packet,
    s: &Settings,
    hook: Hook,
    now: u64,
) -> Result<Pending, (Verdict, u8)> {
    let tcp_state = match conntrack::new_flow_state(p, s) {
        Ok(st) => st,
        Err(reason) => return Err((drop_with(reason), NO_REWRITE)),
    };
    let mut pending = Pending {
        create: true,
        tcp_state,
        ..Pending::decided(NO_REWRITE)
    };
    if s.helpers != 0 && p.kind == L4Kind::Tcp {
        if let Some(spec) = expected(p, now) {
            // Without a translation of its own (a passive data connection
            // from inside), it still gets the source NAT of the interface
            // it leaves through, like any connection.
            if let NatSpec::Dest { addr, port } = spec {
                pending.dnat = true;
                pending.dnat_addr = addr;
                pending.dnat_port = port;
            }
            pending.related = true;
            pending.ct_flags = flags::EXPECTED;
            return Ok(pending);
        }
        let key = PortFwdKey {
            proto: p.key.proto,
            _pad: 0,
            port: p.key.dport,
        };
        // SAFETY: read-only lookup of a plain value.
        if unsafe { HELPERS.get(&key) }.is_some() {
            pending.ct_flags |= flags::HELPER_FTP;
        }
    }
    if let Some(NatSpec::Dest { addr, port }) = port_forward(p, s, hook) {
        pending.port_forward = true;
        pending.dnat = true;
        pending.dnat_addr = addr;
        pending.dnat_port = port;
    }
    Ok(pending)
}

#[inline(always)]
pub fn policy(
    p: &Packet,
    s: &Settings,
    hook: Hook,
    routed: &Routed,
    state: CtState,
    fallback: Fallback,
) -> PolicyVerdict {
    let chain = routed.chain;
    let oif = routed.route.oif;
    let at = match hook {
        Hook::Egress { .. } => rules::Position {
            chain,
            iif: 0,
            oif,
            role: None,
            state,
        },
        Hook::Ingress { ifindex, role, .. } => rules::Position {
            chain,
            iif: ifindex,
            oif: if chain == Chain::Forward { oif } else { 0 },
            role: Some(role),
            state,
        },
    };
    rules::decide(p, s, &at, fallback)
}

/// The chain, and where the routing table sends the packet.
#[derive(Clone, Copy)]
pub struct Routed {
    chain: Chain,
    /// At egress, the interface itself; at ingress, the FIB's answer, or
    /// `Outcome::Unknown` when nothing needed one.
    route: fib::Route,
}

/// At egress it is OUTPUT through the interface itself; at ingress a FIB
/// lookup decides, done only when rules, differing policies or source NAT
/// need it (admission makes its own when it must).
#[inline(always)]
pub fn route<C: EbpfContext>(ctx: &C, p: &Packet, s: &Settings, hook: Hook) -> Routed {
    let ifindex = match hook {
        Hook::Egress { ifindex } => {
            return Routed {
                chain: Chain::Output,
                route: fib::Route {
                    outcome: fib::Outcome::Forward,
                    oif: ifindex,
                },
            };
        }
        Hook::Ingress { ifindex, .. } => ifindex,
    };
    let needs_nat = s.nat & settings_nat::SOURCE != 0 && p.key.family == FAMILY_V4;
    let no_rules = rules::ruleset(s).is_none_or(|h| h.count == 0 && h.policy[0] == h.policy[1]);
    if no_rules && !needs_nat {
        return Routed {
            chain: Chain::Input,
            route: fib::Route::UNKNOWN,
        };
    }
    let route = fib::route(ctx, &p.key, ifindex, false);
    let chain = match route.outcome {
        fib::Outcome::Local | fib::Outcome::Disabled => Chain::Input,
        _ => Chain::Forward,
    };
    Routed { chain, route }
}
