//! Filter rules as the datapath stores and matches them.
//!
//! The datapath only consults rules for packets that are not
//! ESTABLISHED/RELATED; the first matching rule decides.

use crate::ct::CtState;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chain {
    /// Arriving, addressed to the firewall host.
    Input = 0,
    /// Arriving, routed through the firewall.
    Forward = 1,
    /// Originated by the firewall host.
    Output = 2,
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Accept = 1,
    Drop = 2,
}

/// `Rule::match_flags` bits.
pub mod match_flags {
    pub const SRC: u8 = 1 << 0;
    pub const DST: u8 = 1 << 1;
    pub const SPORT: u8 = 1 << 2;
    pub const DPORT: u8 = 1 << 3;
    pub const IIF: u8 = 1 << 4;
    pub const CTSTATE: u8 = 1 << 5;
}

/// One entry of the `RULES` array. Unused selectors are switched off in
/// `match_flags` rather than encoded as wildcard values, so a rule that
/// matches "port 0" stays expressible.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rule {
    /// Network-order address words, pre-masked.
    pub src: [u32; 4],
    pub src_mask: [u32; 4],
    pub dst: [u32; 4],
    pub dst_mask: [u32; 4],
    /// Inclusive port ranges in host order.
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    /// Input interface index (when `IIF` is set).
    pub iif: u32,
    /// A [`Chain`] as u8.
    pub chain: u8,
    /// IP protocol number, 0 = any.
    pub proto: u8,
    /// `FAMILY_V4`/`FAMILY_V6`, 0 = any.
    pub family: u8,
    /// A [`RuleAction`] as u8.
    pub action: u8,
    /// [`CtState::bit`]s (when `CTSTATE` is set).
    pub ctstate: u8,
    pub match_flags: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<Rule>() == 88);

/// Per-rule counters (`RULE_STATS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<RuleCounter>() == 16);

/// The fields of a packet that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleInput {
    pub family: u8,
    pub proto: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Host order; 0 for protocols without ports.
    pub sport: u16,
    pub dport: u16,
    pub iif: u32,
    pub ctstate: u8,
}

#[inline(always)]
fn addr_matches(addr: &[u32; 4], want: &[u32; 4], mask: &[u32; 4]) -> bool {
    (addr[0] & mask[0]) == want[0]
        && (addr[1] & mask[1]) == want[1]
        && (addr[2] & mask[2]) == want[2]
        && (addr[3] & mask[3]) == want[3]
}

impl Rule {
    /// Whether this rule selects the packet in `chain`.
    #[inline(always)]
    pub fn matches(&self, chain: Chain, p: &RuleInput) -> bool {
        use match_flags::*;
        let f = self.match_flags;
        self.chain == chain as u8
            && (self.family == 0 || self.family == p.family)
            && (self.proto == 0 || self.proto == p.proto)
            && (f & SRC == 0 || addr_matches(&p.src, &self.src, &self.src_mask))
            && (f & DST == 0 || addr_matches(&p.dst, &self.dst, &self.dst_mask))
            && (f & SPORT == 0 || (p.sport >= self.sport_lo && p.sport <= self.sport_hi))
            && (f & DPORT == 0 || (p.dport >= self.dport_lo && p.dport <= self.dport_hi))
            && (f & IIF == 0 || self.iif == p.iif)
            && (f & CTSTATE == 0 || self.ctstate & p.ctstate != 0)
    }
}

/// Ordered-list evaluation: the index of the first rule that matches.
/// The host uses this as the reference; the datapath runs the same
/// `Rule::matches` over its map.
pub fn first_match(rules: &[Rule], chain: Chain, p: &RuleInput) -> Option<usize> {
    rules.iter().position(|r| r.matches(chain, p))
}

/// Bit for a packet's state, for `RuleInput::ctstate`.
pub const fn ctstate_bit(s: CtState) -> u8 {
    s.bit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FAMILY_V4, IPPROTO_TCP, IPPROTO_UDP};

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    fn packet() -> RuleInput {
        RuleInput {
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src: v4([10, 0, 0, 5]),
            dst: v4([192, 168, 1, 1]),
            sport: 40000,
            dport: 22,
            iif: 3,
            ctstate: CtState::New.bit(),
        }
    }

    fn ssh_rule() -> Rule {
        Rule {
            chain: Chain::Input as u8,
            proto: IPPROTO_TCP,
            dport_lo: 22,
            dport_hi: 22,
            action: RuleAction::Accept as u8,
            match_flags: match_flags::DPORT,
            ..Rule::default()
        }
    }

    #[test]
    fn port_rule_matches_only_its_chain_port_and_proto() {
        let r = ssh_rule();
        let p = packet();
        assert!(r.matches(Chain::Input, &p));
        assert!(!r.matches(Chain::Forward, &p));
        assert!(!r.matches(Chain::Input, &RuleInput { dport: 23, ..p }));
        assert!(!r.matches(
            Chain::Input,
            &RuleInput {
                proto: IPPROTO_UDP,
                ..p
            }
        ));
    }

    #[test]
    fn cidr_and_iif_selectors() {
        let r = Rule {
            src: v4([10, 0, 0, 0]),
            src_mask: v4([255, 255, 255, 0]),
            iif: 3,
            match_flags: match_flags::SRC | match_flags::IIF,
            ..ssh_rule()
        };
        let p = packet();
        assert!(r.matches(Chain::Input, &p));
        assert!(!r.matches(
            Chain::Input,
            &RuleInput {
                src: v4([10, 0, 1, 5]),
                ..p
            }
        ));
        assert!(!r.matches(Chain::Input, &RuleInput { iif: 4, ..p }));
    }

    #[test]
    fn first_match_wins() {
        let drop_all = Rule {
            chain: Chain::Input as u8,
            action: RuleAction::Drop as u8,
            ..Rule::default()
        };
        let rules = [ssh_rule(), drop_all];
        assert_eq!(first_match(&rules, Chain::Input, &packet()), Some(0));
        let p = RuleInput {
            dport: 80,
            ..packet()
        };
        assert_eq!(first_match(&rules, Chain::Input, &p), Some(1));
        assert_eq!(first_match(&rules, Chain::Output, &p), None);
    }
}
