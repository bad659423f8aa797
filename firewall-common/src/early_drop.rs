//! Early drop: which connections a full table may displace to let a new one
//! in, and in what order. The datapath's `early_drop.rs` runs it; the loader
//! sizes it.
//!
//! `CONNTRACK` is a preallocated hash (never an LRU): the kernel never evicts
//! an entry behind the datapath's back, so an ASSURED connection can never be
//! displaced and the two halves of a connection can never be separated. When
//! it is full, an insert fails with `-E2BIG` and the datapath makes room
//! itself, the way netfilter's `early_drop` does, but choosing better.
//!
//! **The ring.** Every connection the datapath creates has its original key
//! appended to a ring of recently created connections, `CT_EARLY_DROP`: an
//! array split into one region of `2^region_log2` slots per possible CPU.
//! The object is built for the BPF v1/v2 instruction sets, which have no
//! atomic fetch-and-add or compare-and-swap, so no two CPUs may advance the
//! same counter: each CPU appends only to its own region and alone writes
//! that region's `head`. Displacing reads regions
//! from any CPU, oldest key first, through the region's `evict` cursor, which
//! any CPU advances; two CPUs that race on it examine the same slot twice,
//! which costs a lookup and nothing else (the second finds the connection
//! gone).
//!
//! **Displacing.** On `-E2BIG` the datapath takes up to [`MAX_CANDIDATES`]
//! keys oldest-first ([`Search`]), starting in the region where this CPU last
//! found one. A key whose connection is gone is skipped; an ASSURED one is
//! skipped and never displaced ([`judge`]); an expired one is reaped; the
//! first unassured one is deleted, both halves (its NAT binding is its reply
//! half), and the insert is retried once. Skipped keys are consumed: each key
//! is examined once in its life, so a search costs one lookup per displaced
//! connection on average, however many ASSURED connections the ring holds.
//!
//! netfilter's `early_drop` looks at the new tuple's hash bucket and the
//! seven after it: a table full of embryonic entries elsewhere refuses a
//! legitimate connection. Here the oldest unassured connections go first,
//! wherever they hash, so a legitimate connection gets in while a SYN flood
//! fills the table, and the flood's own entries make room for each other.

use crate::ct::{CtKey, flags};

/// Fewest slots a region has, so a small table on many CPUs still remembers
/// enough recent connections.
pub const MIN_REGION_SLOTS: u32 = 64;

/// Most slots a region has (2^24 keys, 640 MiB): far past any table the
/// kernel would preallocate, it only keeps the arithmetic in `u32`.
pub const MAX_REGION_LOG2: u32 = 24;

/// Keys a first packet may examine before it is dropped as `drop_table_full`.
/// netfilter's `early_drop` scans eight buckets; skipped keys are consumed
/// (see the module docs), so a larger budget costs time only once per key,
/// and lets a new connection past a run of ASSURED ones that netfilter's
/// scan would have given up on.
pub const MAX_CANDIDATES: u32 = 16;

/// Where the ring is and how it is cut: the one value of `EARLY_DROP_GEOM`,
/// written by the loader before any program runs (a ring with no regions is
/// off: nothing is remembered or displaced).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingGeometry {
    /// One region per possible CPU (`bpf_get_smp_processor_id` indexes it).
    pub regions: u32,
    /// Each region holds `2^region_log2` keys.
    pub region_log2: u32,
}
const _: () = assert!(core::mem::size_of::<RingGeometry>() == 8);

impl RingGeometry {
    /// The ring for a table of `max_entries` entries (two per connection)
    /// on a machine with `possible_cpus` CPUs: one region per CPU, each a
    /// power of two at least the table's connections divided by the CPUs,
    /// so that together they remember as many connections as the table
    /// holds (between one and two times as many).
    pub fn for_table(max_entries: u32, possible_cpus: u32) -> RingGeometry {
        let regions = possible_cpus.max(1);
        let per_cpu = (max_entries / 2).div_ceil(regions).max(MIN_REGION_SLOTS);
        let mut region_log2 = per_cpu
            .checked_next_power_of_two()
            .map_or(31, u32::trailing_zeros)
            .min(MAX_REGION_LOG2);
        // Slot indexes are u32: shrink regions before their sum overflows.
        while region_log2 > 0 && u64::from(regions) << region_log2 > u64::from(u32::MAX) {
            region_log2 -= 1;
        }
        RingGeometry {
            regions,
            region_log2,
        }
    }

    pub fn is_off(self) -> bool {
        self.regions == 0
    }

    /// Keys one region holds.
    pub fn region_len(self) -> u32 {
        1 << self.region_log2
    }

    /// Slots of the whole ring: `CT_EARLY_DROP`'s `max_entries`.
    pub fn slots(self) -> u32 {
        self.regions << self.region_log2
    }

    /// The `CT_EARLY_DROP` index of position `pos` (a free-running count,
    /// wrapped here) of `region`.
    #[inline(always)]
    pub fn slot(self, region: u32, pos: u32) -> u32 {
        (region << self.region_log2) | (pos & (self.region_len() - 1))
    }
}

/// A region's positions: one `EARLY_DROP_POS` slot per possible CPU. Padded
/// to a cache line, because the owner writes `head` on every new connection
/// and neighbours must not share its line.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingCursor {
    /// Keys this region's CPU has appended (free-running, wraps). Written
    /// only by that CPU.
    pub head: u32,
    /// The next position to examine: positions `[evict, head)` were
    /// appended and not examined yet, unless the owner lapped them (then
    /// only the last region-length ones are still there). Advanced by any
    /// CPU that makes room; concurrent writes may repeat a position, never
    /// skip one that is still held.
    pub evict: u32,
    /// The region this CPU's next search starts in: where its last one
    /// found a connection to displace (a flood keeps its victims on the
    /// CPU it arrives on). Written only by this region's CPU.
    pub start: u32,
    pub _pad: [u32; 13],
}
const _: () = assert!(core::mem::size_of::<RingCursor>() == 64);

impl RingCursor {
    /// Takes the oldest position still held in a region of `len` slots, or
    /// `None` if every appended key was examined. A cursor the head has
    /// lapped (more than `len` keys appended since) jumps to the oldest key
    /// not yet overwritten.
    #[inline(always)]
    pub fn take_oldest(&mut self, len: u32) -> Option<u32> {
        let pending = self.head.wrapping_sub(self.evict);
        if pending == 0 {
            return None;
        }
        let oldest = if pending > len {
            self.head.wrapping_sub(len)
        } else {
            self.evict
        };
        self.evict = oldest.wrapping_add(1);
        Some(oldest)
    }
}

/// One search for a connection to displace, a step per `bpf_loop` call. It
/// stays in a region while it yields keys and moves to the next when it is
/// empty; it ends after [`MAX_CANDIDATES`] keys or once it has moved through
/// every region.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Search {
    pub region: u32,
    pub regions: u32,
    /// Regions left behind empty.
    pub moves: u32,
    /// Keys examined.
    pub candidates: u32,
}
const _: () = assert!(core::mem::size_of::<Search>() == 16);

/// What one step of a [`Search`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The key at this position of the current region, to judge.
    Candidate(u32),
    /// The region was empty; the search moved on.
    Moved,
    /// The budget is spent or every region is empty.
    Done,
}

impl Search {
    pub fn new(start: u32, regions: u32) -> Search {
        Search {
            region: if start < regions { start } else { 0 },
            regions,
            moves: 0,
            candidates: 0,
        }
    }

    /// Iterations a `bpf_loop` needs to finish any search: each examines a
    /// key or leaves a region behind, and the last one says so.
    pub fn max_steps(regions: u32) -> u32 {
        MAX_CANDIDATES + regions + 1
    }

    /// One step, with the current region's cursor (`None` if the region
    /// has none: it counts as empty).
    #[inline(always)]
    pub fn step(&mut self, cursor: Option<&mut RingCursor>, len: u32) -> Step {
        if self.candidates >= MAX_CANDIDATES || self.moves >= self.regions {
            return Step::Done;
        }
        match cursor.and_then(|c| c.take_oldest(len)) {
            Some(pos) => {
                self.candidates += 1;
                Step::Candidate(pos)
            }
            None => {
                self.region += 1;
                if self.region >= self.regions {
                    self.region = 0;
                }
                self.moves += 1;
                Step::Moved
            }
        }
    }
}

/// What to do with a candidate's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// ASSURED: never displaced (netfilter's `early_drop` skips them too).
    Keep,
    /// Unassured: displaced, both halves.
    Displace,
    /// Both halves expired: already dead, removed like the datapath's
    /// in-path expiry would.
    Reap,
}

/// How a candidate connection is treated, from its entry's flags and
/// whether the whole connection (both halves) has expired.
#[inline(always)]
pub fn judge(ct_flags: u8, expired: bool) -> Judgement {
    if expired {
        Judgement::Reap
    } else if ct_flags & flags::ASSURED != 0 {
        Judgement::Keep
    } else {
        Judgement::Displace
    }
}

/// `a == b` word by word: the derived `PartialEq` on a 40-byte key may
/// become a `bcmp` call, a byte loop the verifier walks byte by byte.
#[inline(always)]
pub fn same_key(a: &CtKey, b: &CtKey) -> bool {
    a.src[0] == b.src[0]
        && a.src[1] == b.src[1]
        && a.src[2] == b.src[2]
        && a.src[3] == b.src[3]
        && a.dst[0] == b.dst[0]
        && a.dst[1] == b.dst[1]
        && a.dst[2] == b.dst[2]
        && a.dst[3] == b.dst[3]
        && a.sport == b.sport
        && a.dport == b.dport
        && a.proto == b.proto
        && a.family == b.family
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    #[test]
    fn a_region_per_cpu_holds_the_tables_connections_between_them() {
        // 2048 entries = 1024 connections over 2 CPUs: 512 each.
        let g = RingGeometry::for_table(2048, 2);
        assert_eq!(
            g,
            RingGeometry {
                regions: 2,
                region_log2: 9
            }
        );
        assert_eq!((g.region_len(), g.slots()), (512, 1024));
        // Not a power of two: rounded up, never down.
        let g = RingGeometry::for_table(262_144, 6);
        assert_eq!(g.region_len(), 32_768);
        assert!(u64::from(g.slots()) >= 131_072);
        assert!(u64::from(g.slots()) < 2 * 131_072);
        // The default table on one CPU.
        assert_eq!(RingGeometry::for_table(262_144, 1).region_len(), 131_072);
    }

    #[test]
    fn small_tables_get_the_minimum_region() {
        let g = RingGeometry::for_table(64, 2);
        assert_eq!(g.region_len(), MIN_REGION_SLOTS);
        let g = RingGeometry::for_table(1024, 256);
        assert_eq!((g.regions, g.region_len()), (256, MIN_REGION_SLOTS));
        // No CPUs reported: one region rather than none.
        assert_eq!(RingGeometry::for_table(1024, 0).regions, 1);
    }

    #[test]
    fn huge_tables_keep_slot_indexes_in_u32() {
        for cpus in [1, 2, 64, 4096] {
            let g = RingGeometry::for_table(u32::MAX, cpus);
            assert!(g.region_log2 <= MAX_REGION_LOG2);
            assert!(u64::from(g.regions) << g.region_log2 <= u64::from(u32::MAX));
            assert_eq!(g.slot(g.regions - 1, u32::MAX), g.slots() - 1);
        }
    }

    #[test]
    fn slots_of_a_region_are_contiguous_and_positions_wrap_inside_it() {
        let g = RingGeometry {
            regions: 3,
            region_log2: 2,
        };
        assert_eq!(g.slot(0, 0), 0);
        assert_eq!(g.slot(1, 0), 4);
        assert_eq!(g.slot(1, 3), 7);
        assert_eq!(g.slot(1, 4), 4, "position 4 reuses slot 0 of the region");
        assert_eq!(g.slot(2, u32::MAX), 11);
        assert!(!g.is_off());
        assert!(RingGeometry::default().is_off());
    }

    /// Appends `n` keys to a region, as the datapath does.
    fn append(c: &mut RingCursor, n: u32) {
        c.head = c.head.wrapping_add(n);
    }

    #[test]
    fn oldest_first_and_each_position_once() {
        let mut c = RingCursor::default();
        assert_eq!(c.take_oldest(8), None, "nothing appended");
        append(&mut c, 3);
        assert_eq!(c.take_oldest(8), Some(0));
        assert_eq!(c.take_oldest(8), Some(1));
        append(&mut c, 1);
        assert_eq!(c.take_oldest(8), Some(2));
        assert_eq!(c.take_oldest(8), Some(3));
        assert_eq!(c.take_oldest(8), None);
    }

    #[test]
    fn a_lapped_cursor_jumps_to_the_oldest_key_still_held() {
        let mut c = RingCursor::default();
        // 20 keys into 8 slots: positions 12..20 are still there.
        append(&mut c, 20);
        let taken: Vec<u32> = core::iter::from_fn(|| c.take_oldest(8)).collect();
        assert_eq!(taken, (12..20).collect::<Vec<_>>());
    }

    #[test]
    fn positions_wrap_around_u32() {
        let mut c = RingCursor {
            head: u32::MAX - 1,
            evict: u32::MAX - 1,
            ..RingCursor::default()
        };
        append(&mut c, 4);
        let taken: Vec<u32> = core::iter::from_fn(|| c.take_oldest(8)).collect();
        assert_eq!(taken, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        // Lapped across the wrap.
        append(&mut c, 10);
        assert_eq!(c.take_oldest(8), Some(4));
    }

    #[test]
    fn a_cursor_ahead_of_its_head_is_treated_as_lapped() {
        // Racing evictors never move `evict` past the head they read, but a
        // torn or stale view must not make the search read garbage forever.
        let mut c = RingCursor {
            head: 5,
            evict: 9,
            ..RingCursor::default()
        };
        assert_eq!(c.take_oldest(8), Some(5u32.wrapping_sub(8)));
        assert_eq!(c.evict, 5u32.wrapping_sub(7));
    }

    /// Runs a whole search over `cursors` as the datapath's `bpf_loop`
    /// does, judging each candidate with `victim` (true: displaced, the
    /// search ends). Returns the (region, position) pairs examined and
    /// whether one was displaced.
    fn run(
        cursors: &mut [RingCursor],
        start: u32,
        len: u32,
        mut victim: impl FnMut(u32, u32) -> bool,
    ) -> (Vec<(u32, u32)>, bool) {
        let mut s = Search::new(start, cursors.len() as u32);
        let mut seen = Vec::new();
        for _ in 0..Search::max_steps(cursors.len() as u32) {
            let region = s.region;
            match s.step(cursors.get_mut(region as usize), len) {
                Step::Candidate(pos) => {
                    seen.push((region, pos));
                    if victim(region, pos) {
                        return (seen, true);
                    }
                }
                Step::Moved => {}
                Step::Done => return (seen, false),
            }
        }
        panic!("the search did not finish within max_steps: {seen:?}");
    }

    #[test]
    fn the_search_stays_in_a_region_while_it_holds_keys() {
        let mut cursors = [RingCursor::default(); 3];
        append(&mut cursors[1], 5);
        append(&mut cursors[2], 5);
        // Positions 0 and 1 of region 1 are ASSURED; 2 is not.
        let (seen, found) = run(&mut cursors, 1, 8, |_, pos| pos == 2);
        assert!(found);
        assert_eq!(seen, vec![(1, 0), (1, 1), (1, 2)]);
        // The next search goes on from there.
        let (seen, _) = run(&mut cursors, 1, 8, |_, _| true);
        assert_eq!(seen, vec![(1, 3)]);
    }

    #[test]
    fn the_search_moves_past_empty_regions_and_wraps() {
        let mut cursors = [RingCursor::default(); 4];
        append(&mut cursors[0], 2);
        let (seen, found) = run(&mut cursors, 2, 8, |_, _| false);
        assert!(!found);
        // 2 and 3 empty, then region 0 drained, then 1 empty: every region
        // left behind once.
        assert_eq!(seen, vec![(0, 0), (0, 1)]);
        // Nothing left anywhere: done after one pass, nothing examined.
        let (seen, found) = run(&mut cursors, 0, 8, |_, _| true);
        assert_eq!((seen.len(), found), (0, false));
    }

    #[test]
    fn the_search_gives_up_after_its_budget() {
        let mut cursors = [RingCursor::default(); 2];
        append(&mut cursors[0], 100);
        append(&mut cursors[1], 100);
        let (seen, found) = run(&mut cursors, 0, 128, |_, _| false);
        assert!(!found);
        assert_eq!(seen.len(), MAX_CANDIDATES as usize);
        assert!(seen.iter().all(|&(r, _)| r == 0));
        // The skipped keys are consumed: the next search starts after them.
        let (seen, _) = run(&mut cursors, 0, 128, |_, _| true);
        assert_eq!(seen, vec![(0, MAX_CANDIDATES)]);
    }

    #[test]
    fn a_start_beyond_the_regions_begins_at_the_first() {
        assert_eq!(Search::new(7, 2).region, 0);
        assert_eq!(Search::new(1, 2).region, 1);
    }

    /// A model of the whole mechanism: connections appended to one region
    /// as they are created, some ASSURED; the table full. Every new
    /// connection displaces the oldest unassured one, and is refused only
    /// when none is left within reach.
    #[test]
    fn displaces_the_oldest_unassured_connection_and_never_an_assured_one() {
        const LEN: u32 = 64;
        // 32 connections: every fourth unassured.
        let mut assured: Vec<bool> = (0..32).map(|i| i % 4 != 3).collect();
        let mut alive = vec![true; 32];
        let mut cursors = [RingCursor::default(); 2];
        append(&mut cursors[0], 32);
        let mut displaced = Vec::new();
        loop {
            let mut victim = None;
            let (_, found) = run(&mut cursors, 0, LEN, |region, pos| {
                assert_eq!(region, 0);
                let i = pos as usize;
                if i >= alive.len() || !alive[i] || assured[i] {
                    return false;
                }
                victim = Some(i);
                true
            });
            let Some(i) = victim else {
                assert!(!found);
                break;
            };
            alive[i] = false;
            displaced.push(i);
            // The new connection takes its place and becomes ASSURED.
            alive.push(true);
            assured.push(true);
            append(&mut cursors[0], 1);
        }
        assert_eq!(displaced, vec![3, 7, 11, 15, 19, 23, 27, 31]);
        assert!(
            (0..alive.len()).all(|i| !assured[i] || alive[i]),
            "an ASSURED connection was displaced"
        );
    }

    #[test]
    fn judgement() {
        assert_eq!(
            judge(flags::ASSURED | flags::SEEN_REPLY, false),
            Judgement::Keep
        );
        assert_eq!(judge(flags::SEEN_REPLY, false), Judgement::Displace);
        assert_eq!(judge(0, false), Judgement::Displace);
        assert_eq!(judge(flags::ASSURED, true), Judgement::Reap);
        assert_eq!(judge(0, true), Judgement::Reap);
    }

    #[test]
    fn keys_compare_word_by_word_like_the_derived_eq() {
        let a = CtKey {
            src: [1, 2, 3, 4],
            dst: [5, 6, 7, 8],
            sport: 9,
            dport: 10,
            proto: 6,
            family: 6,
            _pad: [0; 2],
        };
        assert!(same_key(&a, &a));
        let variants = [
            CtKey {
                src: [1, 2, 3, 5],
                ..a
            },
            CtKey {
                dst: [0, 6, 7, 8],
                ..a
            },
            CtKey { sport: 8, ..a },
            CtKey { dport: 11, ..a },
            CtKey { proto: 17, ..a },
            CtKey { family: 4, ..a },
        ];
        for b in variants {
            assert_eq!(same_key(&a, &b), a == b);
            assert!(!same_key(&a, &b), "{b:?}");
        }
    }
}
