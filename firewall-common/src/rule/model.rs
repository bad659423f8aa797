//! The rule as users mean it: an ordered list of conjunctions. This is the
//! compiler's input and the reference its output is tested against, so it
//! is written for obviousness, not speed.

use alloc::vec::Vec;

use super::{Chain, LOG_PREFIX_LEN, MatchInput, RuleAction};
use crate::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP};

/// One condition on a field: the value is one of `any_of`, or with
/// `negated`, none of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cond<T> {
    pub negated: bool,
    pub any_of: Vec<T>,
}

impl<T> Cond<T> {
    pub fn is(v: T) -> Self {
        Cond {
            negated: false,
            any_of: alloc::vec![v],
        }
    }

    pub fn not(v: T) -> Self {
        Cond {
            negated: true,
            any_of: alloc::vec![v],
        }
    }

    fn holds(&self, hit: impl Fn(&T) -> bool) -> bool {
        self.any_of.iter().any(hit) != self.negated
    }
}

/// An address prefix; IPv4 in the first four bytes, `len` ≤ 32 for IPv4.
/// Bytes beyond `len` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    /// Masks `addr` to `len` bits.
    pub fn new(addr: [u8; 16], len: u8) -> Prefix {
        Prefix {
            addr: mask(addr, len),
            len,
        }
    }

    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        mask(*addr, self.len) == self.addr
    }

    /// Splits an inclusive range of addresses (`bits` wide: 32 or 128) into
    /// the fewest prefixes that cover exactly it.
    pub fn cover(lo: [u8; 16], hi: [u8; 16], bits: u8) -> Vec<Prefix> {
        let shift = 128 - bits as u32;
        let mut lo = u128::from_be_bytes(lo) >> shift;
        let hi = u128::from_be_bytes(hi) >> shift;
        let mut out = Vec::new();
        if lo > hi {
            return out;
        }
        let max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        loop {
            // Largest aligned block starting at lo that stays within hi.
            let mut size_log = if lo == 0 {
                bits as u32
            } else {
                lo.trailing_zeros().min(bits as u32)
            };
            // The block's last address, or None when it is the whole space.
            let last = |size_log: u32| lo.checked_add(1u128.checked_shl(size_log)?.wrapping_sub(1));
            while size_log > 0 && last(size_log).is_none_or(|l| l > hi) {
                if size_log == bits as u32 && lo == 0 && hi == max {
                    break;
                }
                size_log -= 1;
            }
            if size_log == bits as u32 {
                out.push(Prefix {
                    addr: [0; 16],
                    len: 0,
                });
                return out;
            }
            let addr = (lo << shift).to_be_bytes();
            out.push(Prefix {
                addr,
                len: bits - size_log as u8,
            });
            let end = lo + ((1u128 << size_log) - 1);
            if end >= hi {
                return out;
            }
            lo = end + 1;
        }
    }
}

pub fn mask(mut addr: [u8; 16], len: u8) -> [u8; 16] {
    for (i, b) in addr.iter_mut().enumerate() {
        let bit = i as u32 * 8;
        let len = len as u32;
        if bit >= len {
            *b = 0;
        } else if bit + 8 > len {
            *b &= 0xffu8 << (8 - (len - bit));
        }
    }
    addr
}

/// `-m limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    /// Time per packet at the average rate.
    pub interval_ns: u64,
    pub burst: u32,
}

/// `--tcp-flags MASK COMP`, possibly negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlagsSpec {
    pub mask: u8,
    pub comp: u8,
    pub negated: bool,
}

/// REJECT's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    TcpReset,
    /// ICMP type and code for IPv4 and for IPv6 packets.
    Icmp {
        v4: (u8, u8),
        v6: (u8, u8),
    },
}

impl RejectWith {
    /// iptables' default (`icmp-port-unreachable`, `icmp6-port-unreachable`).
    pub const PORT_UNREACHABLE: RejectWith = RejectWith::Icmp {
        v4: (3, 3),
        v6: (1, 4),
    };
}

/// One rule. Every `Vec<Cond>` is a conjunction (empty: any value), which
/// is what inlining iptables user chains produces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatchRule {
    pub chain: Chain,
    /// `FAMILY_V4`/`FAMILY_V6`; `None` matches both. Required to be set when
    /// an address condition is present.
    pub family: Option<u8>,
    pub proto: Vec<Cond<u8>>,
    pub src: Vec<Cond<Prefix>>,
    pub dst: Vec<Cond<Prefix>>,
    /// Interface indexes (names are resolved before compiling).
    pub iif: Vec<Cond<u32>>,
    pub oif: Vec<Cond<u32>>,
    /// Inclusive ranges.
    pub sport: Vec<Cond<(u16, u16)>>,
    pub dport: Vec<Cond<(u16, u16)>>,
    /// Inclusive ranges of `type << 8 | code`; needs an ICMP protocol.
    pub icmp: Vec<Cond<(u16, u16)>>,
    /// [`crate::CtState::bit`]s; 0 matches every state.
    pub ctstate: u8,
    pub tcp_flags: Option<TcpFlagsSpec>,
    pub limit: Option<LimitSpec>,
    pub action: RuleAction,
    pub reject: RejectWith,
    pub log_prefix: [u8; LOG_PREFIX_LEN],
    pub log_level: u8,
}

impl MatchRule {
    pub fn new(chain: Chain, action: RuleAction) -> MatchRule {
        MatchRule {
            chain,
            family: None,
            proto: Vec::new(),
            src: Vec::new(),
            dst: Vec::new(),
            iif: Vec::new(),
            oif: Vec::new(),
            sport: Vec::new(),
            dport: Vec::new(),
            icmp: Vec::new(),
            ctstate: 0,
            tcp_flags: None,
            limit: None,
            action,
            reject: RejectWith::PORT_UNREACHABLE,
            log_prefix: [0; LOG_PREFIX_LEN],
            log_level: 4,
        }
    }

    /// Whether the rule's conditions hold for `p`, rate limits aside (they
    /// have state; the datapath checks them after this). The reference.
    pub fn matches(&self, p: &MatchInput) -> bool {
        let family = if p.v6 {
            crate::FAMILY_V6
        } else {
            crate::FAMILY_V4
        };
        let is_icmp = p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6;
        self.chain as u8 == p.chain
            && self.family.is_none_or(|f| f == family)
            && (self.ctstate == 0 || self.ctstate & (1 << p.state) != 0)
            && self.proto.iter().all(|c| c.holds(|&v| v == p.proto))
            && self.src.iter().all(|c| c.holds(|q| q.contains(&p.src)))
            && self.dst.iter().all(|c| c.holds(|q| q.contains(&p.dst)))
            && self.iif.iter().all(|c| c.holds(|&i| i == p.iif))
            && self.oif.iter().all(|c| c.holds(|&i| i == p.oif))
            && self
                .sport
                .iter()
                .all(|c| c.holds(|&(lo, hi)| (lo..=hi).contains(&p.sport)))
            && self
                .dport
                .iter()
                .all(|c| c.holds(|&(lo, hi)| (lo..=hi).contains(&p.dport)))
            && self
                .icmp
                .iter()
                .all(|c| is_icmp && c.holds(|&(lo, hi)| (lo..=hi).contains(&p.sport)))
            && self.tcp_flags.is_none_or(|t| {
                p.proto == IPPROTO_TCP && ((p.tcp_flags & t.mask == t.comp) != t.negated)
            })
    }
}

/// What an ordered walk decides: the LOG rules met on the way, and the
/// terminal rule that ended it (`None`: the chain's policy applies).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    pub logged: Vec<usize>,
    pub decided_by: Option<usize>,
}

/// The ordered-list semantics, rule by rule. Rate limits count as holding.
pub fn reference(rules: &[MatchRule], p: &MatchInput) -> Outcome {
    let mut out = Outcome::default();
    for (i, r) in rules.iter().enumerate() {
        if r.matches(p) {
            if r.action.terminal() {
                out.decided_by = Some(i);
                return out;
            }
            out.logged.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn cover_splits_ranges_into_exact_prefixes() {
        let p = Prefix::cover(v4([10, 0, 0, 1]), v4([10, 0, 0, 6]), 32);
        let got: Vec<(u8, u8)> = p.iter().map(|p| (p.addr[3], p.len)).collect();
        assert_eq!(got, vec![(1, 32), (2, 31), (4, 31), (6, 32)]);
        let all = Prefix::cover(v4([0; 4]), v4([255; 4]), 32);
        assert_eq!(
            all,
            vec![Prefix {
                addr: [0; 16],
                len: 0
            }]
        );
        let all6 = Prefix::cover([0; 16], [0xff; 16], 128);
        assert_eq!(
            all6,
            vec![Prefix {
                addr: [0; 16],
                len: 0
            }]
        );
        assert!(Prefix::cover(v4([2, 0, 0, 0]), v4([1, 0, 0, 0]), 32).is_empty());
    }

    #[test]
    fn cover_is_exact_on_random_ranges() {
        let mut rng = crate::testing::Rng::xorshift64(0x1234_5678_9abc_def0);
        let mut next = move || rng.next_u64();
        for _ in 0..200 {
            let a = (next() % 4096) as u32 + 0x0a00_0000;
            let b = a + (next() % 600) as u32;
            let ps = Prefix::cover(v4(a.to_be_bytes()), v4(b.to_be_bytes()), 32);
            for x in a.saturating_sub(10)..=b + 10 {
                let inside = ps
                    .iter()
                    .filter(|p| p.contains(&v4(x.to_be_bytes())))
                    .count();
                assert_eq!(inside, usize::from((a..=b).contains(&x)), "{a} {b} {x}");
            }
        }
    }

    #[test]
    fn mask_clears_bits_beyond_the_prefix() {
        assert_eq!(mask(v4([10, 1, 255, 7]), 17), v4([10, 1, 128, 0]));
        assert_eq!(mask([0xff; 16], 0), [0; 16]);
        assert_eq!(mask([0xff; 16], 128), [0xff; 16]);
    }
}
