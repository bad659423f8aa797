//! Typed handles on the datapath's maps, opened either from a freshly
//! loaded object (the daemon) or from an instance's pins (every query
//! command, from another process).

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
};
use firewall_common::{
    CtEntry, CtKey, IfaceConfig, Rule, Settings,
    ftp::{ExpectKey, Expectation},
    nat::{PortFwdKey, PortFwdTarget},
    rule::RuleCounter,
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
    pub settings: Array<MapData, Settings>,
    pub ifaces: HashMap<MapData, u32, IfaceConfig>,
    pub port_fwd: HashMap<MapData, PortFwdKey, PortFwdTarget>,
    /// (proto, port) → helper kind (1 = FTP).
    pub helpers: HashMap<MapData, PortFwdKey, u8>,
    pub expect: HashMap<MapData, ExpectKey, Expectation>,
    pub rules: Array<MapData, Rule>,
    pub rule_stats: PerCpuArray<MapData, RuleCounter>,
    pub stats: PerCpuArray<MapData, u64>,
    /// `DAEMON_STATE`.
    pub daemon: Array<MapData, u64>,
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
        Ok(Self {
            conntrack: typed!("CONNTRACK"),
            settings: typed!("SETTINGS"),
            ifaces: typed!("IFACES"),
            port_fwd: typed!("PORT_FWD"),
            helpers: typed!("HELPERS"),
            expect: typed!("EXPECT"),
            rules: typed!("RULES"),
            rule_stats: typed!("RULE_STATS"),
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
