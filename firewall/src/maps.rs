//! Typed handles on the datapath's maps, opened either from a freshly
//! loaded object (the daemon) or from an instance's pins (every query
//! command, from another process).

use std::os::fd::{AsFd, OwnedFd};

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray},
};
use firewall_common::{
    CtEntry, CtKey, IfaceConfig, Settings,
    ftp::{ExpectKey, Expectation},
    nat::{PortFwdKey, PortFwdTarget},
    rule::{
        AddrClassData, ClassBits, IfaceClassKey, RuleCounter, RuleInfo, RuleText, RulesetHeader,
    },
};
use thiserror::Error;

use crate::pins::PinDir;

#[derive(Debug, Error)]
pub enum MapsError {
    #[error("no firewall is loaded at {0} (no pinned maps); start one with `firewall run`")]
    NotLoaded(String),
    #[error("opening pinned map {path}: {source}")]
    Open { path: String, source: MapError },
    #[error("map {name} missing from the loaded object")]
    Missing { name: &'static str },
    #[error("map {name} has an unexpected type or layout: {source}")]
    Type {
        name: &'static str,
        source: MapError,
    },
}

pub struct Maps {
    pub conntrack: HashMap<MapData, CtKey, CtEntry>,
    /// `CONNTRACK`'s `max_entries`: the configured one, or a pinned
    /// table's, which an adopting daemon keeps.
    pub conntrack_capacity: u32,
    pub settings: Array<MapData, Settings>,
    pub ifaces: HashMap<MapData, u32, IfaceConfig>,
    pub port_fwd: HashMap<MapData, PortFwdKey, PortFwdTarget>,
    /// (proto, port) → helper kind (1 = FTP).
    pub helpers: HashMap<MapData, PortFwdKey, u8>,
    pub expect: HashMap<MapData, ExpectKey, Expectation>,
    /// The compiled ruleset's tables (`firewall_common::rule`).
    pub rulesets: Array<MapData, RulesetHeader>,
    pub meta_class: Array<MapData, u32>,
    pub port_class: Array<MapData, u32>,
    pub iface_class: HashMap<MapData, IfaceClassKey, u32>,
    pub addr_class: LpmTrie<MapData, AddrClassData, u32>,
    pub classes: Array<MapData, ClassBits>,
    pub rule_words: Array<MapData, u64>,
    pub rule_info: Array<MapData, RuleInfo>,
    pub rule_text: Array<MapData, RuleText>,
    pub rule_stats: PerCpuArray<MapData, RuleCounter>,
    pub rule_limits: Array<MapData, u64>,
    /// Duplicated descriptors of the arrays the ruleset writes in batches
    /// (aya has no batch update): META_CLASS, PORT_CLASS, CLASSES,
    /// RULE_WORDS, RULE_INFO, RULE_TEXT, RULE_STATS, RULE_LIMITS.
    pub batch_fds: BatchFds,
    pub stats: PerCpuArray<MapData, u64>,
    /// `DAEMON_STATE`.
    pub daemon: Array<MapData, u64>,
}

pub struct BatchFds {
    pub meta_class: OwnedFd,
    pub port_class: OwnedFd,
    pub classes: OwnedFd,
    pub rule_words: OwnedFd,
    pub rule_info: OwnedFd,
    pub rule_text: OwnedFd,
    pub rule_stats: OwnedFd,
    pub rule_limits: OwnedFd,
}

fn dup_fd(map: &Map) -> Option<OwnedFd> {
    let data = match map {
        Map::Array(d) | Map::PerCpuArray(d) | Map::HashMap(d) | Map::LpmTrie(d) => d,
        _ => return None,
    };
    data.fd().as_fd().try_clone_to_owned().ok()
}

impl Maps {
    pub fn from_pins(pins: &PinDir) -> Result<Self, MapsError> {
        if !pins.has_maps() {
            return Err(MapsError::NotLoaded(pins.root().display().to_string()));
        }
        let open = |name: &'static str| -> Result<Map, MapsError> {
            let path = pins.map(name);
            let data = MapData::from_pin(&path).map_err(|source| MapsError::Open {
                path: path.display().to_string(),
                source,
            })?;
            Map::from_map_data(data).map_err(|source| MapsError::Type { name, source })
        };
        Self::build(open)
    }

    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        Self::build(|name| ebpf.take_map(name).ok_or(MapsError::Missing { name }))
    }

    fn build(
        mut open: impl FnMut(&'static str) -> Result<Map, MapsError>,
    ) -> Result<Self, MapsError> {
        macro_rules! typed {
            ($name:literal) => {
                open($name)?.try_into().map_err(|source| MapsError::Type {
                    name: $name,
                    source,
                })?
            };
        }
        macro_rules! with_fd {
            ($name:literal) => {{
                let map = open($name)?;
                let fd = dup_fd(&map).ok_or(MapsError::Missing { name: $name })?;
                let typed = map.try_into().map_err(|source| MapsError::Type {
                    name: $name,
                    source,
                })?;
                (typed, fd)
            }};
        }
        let (meta_class, meta_fd) = with_fd!("META_CLASS");
        let (port_class, port_fd) = with_fd!("PORT_CLASS");
        let (classes, classes_fd) = with_fd!("CLASSES");
        let (rule_words, words_fd) = with_fd!("RULE_WORDS");
        let (rule_info, info_fd) = with_fd!("RULE_INFO");
        let (rule_text, text_fd) = with_fd!("RULE_TEXT");
        let (rule_stats, stats_fd) = with_fd!("RULE_STATS");
        let (rule_limits, limits_fd) = with_fd!("RULE_LIMITS");
        let conntrack = open("CONNTRACK")?;
        let conntrack_capacity = match &conntrack {
            Map::HashMap(d) | Map::LruHashMap(d) => d.info().map(|i| i.max_entries()),
            _ => Ok(0),
        }
        .map_err(|source| MapsError::Type {
            name: "CONNTRACK",
            source,
        })?;
        Ok(Self {
            conntrack: conntrack.try_into().map_err(|source| MapsError::Type {
                name: "CONNTRACK",
                source,
            })?,
            conntrack_capacity,
            settings: typed!("SETTINGS"),
            ifaces: typed!("IFACES"),
            port_fwd: typed!("PORT_FWD"),
            helpers: typed!("HELPERS"),
            expect: typed!("EXPECT"),
            rulesets: typed!("RULESETS"),
            meta_class,
            port_class,
            iface_class: typed!("IFACE_CLASS"),
            addr_class: typed!("ADDR_CLASS"),
            classes,
            rule_words,
            rule_info,
            rule_text,
            rule_stats,
            rule_limits,
            batch_fds: BatchFds {
                meta_class: meta_fd,
                port_class: port_fd,
                classes: classes_fd,
                rule_words: words_fd,
                rule_info: info_fd,
                rule_text: text_fd,
                rule_stats: stats_fd,
                rule_limits: limits_fd,
            },
            stats: typed!("STATS"),
            daemon: typed!("DAEMON_STATE"),
        })
    }

    /// Sum of a per-CPU counter slot.
    pub fn counter(&self, slot: u32) -> u64 {
        self.stats
            .get(&slot, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    pub fn rule_counter(&self, idx: u32) -> RuleCounter {
        self.rule_stats
            .get(&idx, 0)
            .map(|v| {
                v.iter().fold(RuleCounter::default(), |acc, c| RuleCounter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                })
            })
            .unwrap_or_default()
    }

    pub fn daemon_stat(&self, slot: u32) -> u64 {
        self.daemon.get(&slot, 0).unwrap_or(0)
    }

    pub fn set_daemon_stat(&mut self, slot: u32, v: u64) {
        let _ = self.daemon.set(slot, v, 0);
    }

    /// A consistent-enough snapshot of the table (entries may change while
    /// we walk it; a vanished key is skipped).
    pub fn conntrack_snapshot(&self) -> Vec<(CtKey, CtEntry)> {
        self.conntrack.iter().filter_map(Result::ok).collect()
    }
}
