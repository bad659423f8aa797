//! Policy for packets that are not ESTABLISHED/RELATED: the ordered rule
//! list, then the LAN allowance, then the chain's default.

use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop};
use firewall_common::{
    Chain, Counter, CtState, MAX_RULES, Role, RuleAction, Settings, rule::RuleInput,
};

use crate::{
    maps::{RULE_STATS, RULES},
    parse::Packet,
};

pub enum PolicyVerdict {
    Accept(Counter),
    Drop(Counter),
}

#[inline(always)]
fn rule_input(p: &Packet, iif: u32, state: CtState) -> RuleInput {
    RuleInput {
        family: p.key.family,
        proto: p.key.proto,
        src: p.key.src,
        dst: p.key.dst,
        sport: if p.key.has_ports() {
            u16::from_be(p.key.sport)
        } else {
            0
        },
        dport: if p.key.has_ports() {
            u16::from_be(p.key.dport)
        } else {
            0
        },
        iif,
        ctstate: state.bit(),
    }
}

/// What applies when no rule matches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// LAN allowance, then the chain policy.
    Policy,
    /// Accept with this counter (a port forward lets its traffic in unless
    /// a rule drops it).
    Accept(Counter),
}

/// `role` is the input interface's role (None for host-originated traffic).
#[inline(always)]
pub fn decide(
    p: &Packet,
    s: &Settings,
    chain: Chain,
    iif: u32,
    role: Option<Role>,
    state: CtState,
    fallback: Fallback,
) -> PolicyVerdict {
    let count = s.rule_count;
    if count > 0 {
        let mut scan = RuleScan {
            input: rule_input(p, iif, state),
            chain: chain as u8,
            count,
            found: NO_MATCH,
        };
        // bpf_loop: the verifier checks the callback once instead of
        // unrolling MAX_RULES iterations of the match.
        unsafe {
            bpf_loop(
                count.min(MAX_RULES),
                scan_rule as *mut c_void,
                &mut scan as *mut RuleScan as *mut c_void,
                0,
            )
        };
        let i = scan.found;
        if i != NO_MATCH {
            if let Some(rule) = RULES.get(i) {
                if let Some(c) = RULE_STATS.get_ptr_mut(i) {
                    // SAFETY: per-CPU slot.
                    unsafe {
                        (*c).packets += 1;
                        (*c).bytes += p.l3_len as u64;
                    }
                }
                return if rule.action == RuleAction::Accept as u8 {
                    PolicyVerdict::Accept(Counter::AcceptRule)
                } else {
                    PolicyVerdict::Drop(Counter::DropRule)
                };
            }
        }
    }
    if let Fallback::Accept(c) = fallback {
        return PolicyVerdict::Accept(c);
    }
    if role == Some(Role::Lan) {
        return PolicyVerdict::Accept(Counter::AcceptNew);
    }
    let policy = s.policy[(chain as usize) & 3];
    if policy == RuleAction::Accept as u8 {
        PolicyVerdict::Accept(Counter::AcceptNew)
    } else {
        PolicyVerdict::Drop(Counter::DropPolicy)
    }
}

const NO_MATCH: u32 = u32::MAX;

#[repr(C)]
struct RuleScan {
    input: RuleInput,
    chain: u8,
    count: u32,
    found: u32,
}

/// `bpf_loop` callback: returns 1 to stop at the first matching rule.
#[inline(never)]
extern "C" fn scan_rule(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the RuleScan on the caller's stack.
    let scan = unsafe { &mut *(ctx as *mut RuleScan) };
    let i = index as u32;
    if i >= scan.count {
        return 1;
    }
    let Some(rule) = RULES.get(i) else { return 1 };
    let chain = if scan.chain == Chain::Input as u8 {
        Chain::Input
    } else if scan.chain == Chain::Forward as u8 {
        Chain::Forward
    } else {
        Chain::Output
    };
    if rule.matches(chain, &scan.input) {
        scan.found = i;
        return 1;
    }
    0
}
