//! The datapath's state as the invariants read it after every program
//! run: every verdict counter and the whole connection table, each in one
//! `BPF_MAP_LOOKUP_BATCH` call. Read slot by slot (aya's iterators) the
//! table and the 128 counters cost hundreds of syscalls a run; in batches
//! the fuzzer can afford to look at everything after every packet.

use std::{collections::HashMap, os::fd::AsFd as _};

use aya::maps::IterableMap as _;
use firewall::{batch, maps::Maps};
use firewall_common::{
    CtEntry, CtKey,
    stats::{Counter, STATS_SLOTS},
};

/// Totals of every `STATS` counter over all CPUs, indexed by slot.
pub fn counters(maps: &Maps, cpus: usize) -> Vec<u64> {
    let fd = maps.stats.map().fd().as_fd();
    let slots = STATS_SLOTS as usize;
    let mut keys = vec![0u8; 4 * slots];
    let mut values = vec![0u8; 8 * cpus * slots];
    let n =
        batch::lookup_all(fd, (4, 8 * cpus), &mut keys, &mut values).expect("batch read of STATS");
    let mut out = vec![0u64; Counter::COUNT as usize];
    for i in 0..n {
        let slot = u32::from_ne_bytes(keys[4 * i..4 * i + 4].try_into().unwrap()) as usize;
        if slot >= out.len() {
            continue;
        }
        let per_cpu = &values[i * 8 * cpus..(i + 1) * 8 * cpus];
        out[slot] = per_cpu
            .chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
            .sum();
    }
    out
}

/// The connection table, keyed as the datapath keys it.
pub type Table = HashMap<CtKey, CtEntry>;

const KEY: usize = size_of::<CtKey>();
const VALUE: usize = size_of::<CtEntry>();

/// The connection table as one batch read it: raw keys and values, in the
/// kernel's bucket order. Reading and comparing these costs a syscall and
/// a `memcmp`; decoding into a [`Table`] is left to when a check needs it
/// (a dropped packet that changed something, the table-wide checks).
pub struct RawTable {
    keys: Vec<u8>,
    values: Vec<u8>,
    len: usize,
}

impl RawTable {
    pub fn new(maps: &Maps) -> RawTable {
        let max = maps.conntrack_capacity as usize;
        let mut t = RawTable {
            keys: vec![0; KEY * max],
            values: vec![0; VALUE * max],
            len: 0,
        };
        t.read(maps);
        t
    }

    /// Reads the table again into the same buffers.
    pub fn read(&mut self, maps: &Maps) {
        let fd = maps.conntrack.map().fd().as_fd();
        self.len = batch::lookup_all(fd, (KEY, VALUE), &mut self.keys, &mut self.values)
            .expect("batch read of CONNTRACK");
    }

    /// Byte for byte the same table (an unchanged hash table is read in the
    /// same order).
    pub fn same(&self, other: &RawTable) -> bool {
        self.len == other.len
            && self.keys[..KEY * self.len] == other.keys[..KEY * other.len]
            && self.values[..VALUE * self.len] == other.values[..VALUE * other.len]
    }

    pub fn decode(&self) -> Table {
        (0..self.len)
            .map(|i| {
                // SAFETY: the kernel wrote whole keys and values of these
                // `#[repr(C)]` plain-data types; read unaligned.
                unsafe {
                    (
                        std::ptr::read_unaligned(self.keys[i * KEY..].as_ptr() as *const CtKey),
                        std::ptr::read_unaligned(
                            self.values[i * VALUE..].as_ptr() as *const CtEntry
                        ),
                    )
                }
            })
            .collect()
    }
}

/// The whole connection table, decoded.
pub fn table(maps: &Maps) -> Table {
    RawTable::new(maps).decode()
}

/// Possible CPUs: the number of values a per-CPU map holds per key.
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().expect("possible CPUs")
}
