//! Loading the object, filling the maps from a config, and attaching the
//! programs through pinned links.
//!
//! Links are pinned, so the firewall keeps enforcing when the daemon exits or
//! dies. A second `run` against the same pin directory reuses the pinned maps
//! (tracked connections survive) and swaps the new programs into the existing
//! links with `BPF_LINK_UPDATE`, so there is no moment without a program.

use std::{collections::HashSet, path::Path};

use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::MapType,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::{XdpLink, XdpMode as AyaXdpMode},
    },
};
use firewall_common::{
    CtKey, IfaceConfig, Settings,
    early_drop::{RingCursor, RingGeometry},
    iface_xdp,
    nat::{IfaceNat, PortFwdKey, PortFwdTarget},
    nd::iface_flags,
    settings_nat, settings_tcp,
};
use log::{info, warn};
use thiserror::Error;

use crate::{
    EARLY_DROP_GEOM, EARLY_DROP_MAPS, EARLY_DROP_POS, EARLY_DROP_RING, MAP_NAMES,
    TC_CREATE_PROGRAM, TC_FTP_PROGRAM, TC_INGRESS_PROGRAM, TC_PROGRAM, XDP_ADMIT_PROGRAM,
    XDP_FASTPATH_PROGRAM, XDP_PROGRAM, XDP_REJECT_PROGRAM,
    config::{Config, ConfigError, Nat, XdpMode},
    maps::{Maps, MapsError},
    pins::{LinkKind, PinDir},
    ruleset::RuleSource,
    sys::{self, SysError},
};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("loading the eBPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the kernel rejected program {program}: {reason}")]
    Verifier {
        program: &'static str,
        reason: String,
    },
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("the eBPF object and this binary disagree: {0}")]
    MapNames(String),
    #[error("attaching {what} to {iface}: {source}")]
    Attach {
        what: &'static str,
        iface: String,
        source: ProgramError,
    },
    #[error("pinning {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error("writing map {map}: {source}")]
    MapWrite {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "pinned map {map} at {dir} was made by an incompatible version ({what} {have}, \
         this version needs {want}); its state cannot be adopted: run \
         `firewall --pin-dir {dir} down` first"
    )]
    Incompatible {
        map: &'static str,
        dir: String,
        what: &'static str,
        have: u32,
        want: u32,
    },
    #[error(
        "pinned map {map} at {dir} is {have} (left by an older version); this version's \
         connection table is a preallocated hash, which no flood can empty: run \
         `firewall --pin-dir {dir} down` first (tracked connections are lost)"
    )]
    IncompatibleType {
        map: &'static str,
        dir: String,
        have: String,
    },
    #[error("{0}")]
    Other(String),
}

/// A resolved interface the firewall will manage.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub role: firewall_common::Role,
    pub mode: AyaXdpMode,
    /// A NIC with a driver behind it (not veth, bridge, …).
    pub physical: bool,
    pub nat: Option<Nat>,
    pub nat_ports: (u16, u16),
}

impl Iface {
    /// The datapath's view: role, NAT mode and the address to translate to,
    /// and the IPv6 settings it follows. For masquerade that is the
    /// interface's current IPv4 address (none yet: 0, and the datapath
    /// refuses to translate rather than guess).
    pub fn datapath_config(&self) -> IfaceConfig {
        let (nat, addr) = match self.nat {
            None => (IfaceNat::None, None),
            Some(Nat::Masquerade) => (IfaceNat::Masquerade, sys::ipv4_address(&self.name)),
            Some(Nat::Snat(a)) => (IfaceNat::Snat, Some(a)),
        };
        // Where the fast path may redirect (see `iface_xdp`).
        let xdp = match self.mode {
            AyaXdpMode::Skb => iface_xdp::GENERIC,
            AyaXdpMode::Driver if self.physical => iface_xdp::FRAME_TARGET,
            _ => 0,
        };
        // A virtual device may carry local senders' packets with their
        // checksum still to be filled in (see `admit`).
        let virtual_dev = if self.physical {
            0
        } else {
            iface_flags::VIRTUAL
        };
        IfaceConfig {
            role: self.role as u8,
            nat: nat as u8,
            xdp,
            flags: sys::ipv6_nd_flags(&self.name) | virtual_dev,
            nat_addr: addr.map_or(0, |a| u32::from_ne_bytes(a.octets())),
            nat_port_lo: self.nat_ports.0,
            nat_port_hi: self.nat_ports.1,
        }
    }
}

pub fn resolve_interfaces(cfg: &Config) -> Result<Vec<Iface>, LoadError> {
    cfg.interfaces
        .iter()
        .map(|i| {
            let ifindex = sys::require_interface(&i.name)?;
            let physical = sys::is_physical(&i.name);
            let mode = match cfg.xdp_mode {
                XdpMode::Native => AyaXdpMode::Driver,
                XdpMode::Generic => AyaXdpMode::Skb,
                // Native XDP on a virtual device such as veth converts every
                // skb into an XDP frame (a copy), which is slower than
                // generic mode; physical NICs run it in the driver.
                XdpMode::Auto if physical => AyaXdpMode::Driver,
                XdpMode::Auto => AyaXdpMode::Skb,
            };
            Ok(Iface {
                name: i.name.clone(),
                ifindex,
                role: i.role,
                mode,
                physical,
                nat: i.nat,
                nat_ports: (i.nat_ports.lo, i.nat_ports.hi),
            })
        })
        .collect()
}

fn mode_name(m: AyaXdpMode) -> &'static str {
    match m {
        AyaXdpMode::Driver => "native",
        AyaXdpMode::Skb => "generic",
        AyaXdpMode::Hardware => "offload",
        AyaXdpMode::Default => "default",
    }
}

/// The config's rules as the installer takes them, with interface names
/// resolved against every interface of the network namespace: `oif` may
/// name interfaces the firewall does not manage, and a `+` wildcard stands
/// for all those it prefixes.
pub fn rule_sources(cfg: &Config, ifaces: &[Iface]) -> Result<Vec<RuleSource>, LoadError> {
    let mut all = crate::sys::interfaces();
    for i in ifaces {
        if !all.iter().any(|(n, _)| *n == i.name) {
            all.push((i.name.clone(), i.ifindex));
        }
    }
    cfg.rules
        .iter()
        .map(|r| {
            Ok(RuleSource {
                rule: r.to_match(&all)?,
                text: r.summary(),
                line: r.line as u32,
            })
        })
        .collect()
}

/// Per-chain default verdicts as the ruleset header stores them.
pub fn policy_bytes(cfg: &Config) -> [u8; 4] {
    let mut policy = [firewall_common::RuleAction::Drop as u8; 4];
    for (i, a) in cfg.policy.iter().enumerate() {
        policy[i] = *a as u8;
    }
    policy
}

/// Key and value sizes of every pinned map, as this version lays them out.
fn expected_layout(name: &str) -> Option<(u32, u32)> {
    use std::mem::size_of;

    use firewall_common::{
        CtEntry, CtKey,
        frag::{FragEntry, FragKey},
        ftp::{ExpectKey, Expectation},
        rule::{
            AddrClassData, ClassBits, IfaceClassKey, RuleCounter, RuleInfo, RuleText, RulesetHeader,
        },
    };
    let u32s = size_of::<u32>() as u32;
    let sz = |n: usize| n as u32;
    Some(match name {
        "CONNTRACK" => (sz(size_of::<CtKey>()), sz(size_of::<CtEntry>())),
        "FRAGMENTS" => (sz(size_of::<FragKey>()), sz(size_of::<FragEntry>())),
        "SETTINGS" => (u32s, sz(size_of::<Settings>())),
        "IFACES" => (u32s, sz(size_of::<IfaceConfig>())),
        "PORT_FWD" => (sz(size_of::<PortFwdKey>()), sz(size_of::<PortFwdTarget>())),
        "HELPERS" => (sz(size_of::<PortFwdKey>()), 1),
        "EXPECT" => (sz(size_of::<ExpectKey>()), sz(size_of::<Expectation>())),
        "RULESETS" => (u32s, sz(size_of::<RulesetHeader>())),
        "META_CLASS" | "PORT_CLASS" => (u32s, u32s),
        "IFACE_CLASS" => (sz(size_of::<IfaceClassKey>()), u32s),
        "ADDR_CLASS" => (sz(4 + size_of::<AddrClassData>()), u32s),
        "CLASSES" => (u32s, sz(size_of::<ClassBits>())),
        "RULE_WORDS" => (u32s, 8),
        "RULE_INFO" => (u32s, sz(size_of::<RuleInfo>())),
        "RULE_TEXT" => (u32s, sz(size_of::<RuleText>())),
        "RULE_STATS" => (u32s, sz(size_of::<RuleCounter>())),
        "RULE_LIMITS" => (u32s, 8),
        "STATS" | "DAEMON_STATE" => (u32s, 8),
        _ => return None,
    })
}

/// Refuses to adopt pinned maps whose layout differs from this version's:
/// the programs would read them with the wrong offsets. The connection
/// table must also be of this version's type: an older version's LRU would
/// load, and silently bring back the eviction of ASSURED connections. (The
/// early-drop ring is checked by [`ring_for`], which replaces it instead.)
fn check_pinned_layout(pins: &PinDir, max_entries: u32) -> Result<(), LoadError> {
    for name in MAP_NAMES {
        let path = pins.map(name);
        if !path.exists() {
            continue;
        }
        let Some((key, value)) = expected_layout(name) else {
            continue;
        };
        let info = aya::maps::MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map_err(|e| LoadError::Pin {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let dir = pins.root().display().to_string();
        if name == "CONNTRACK" && !matches!(info.map_type(), Ok(MapType::Hash)) {
            return Err(LoadError::IncompatibleType {
                map: name,
                dir,
                have: match info.map_type() {
                    Ok(MapType::LruHash) => "an LRU hash".to_owned(),
                    Ok(t) => format!("a map of type {t:?}"),
                    Err(_) => "a map of an unknown type".to_owned(),
                },
            });
        }
        let capacity = expected_capacity(name).unwrap_or(info.max_entries());
        for (what, have, want) in [
            ("key size", info.key_size(), key),
            ("value size", info.value_size(), value),
            ("entries", info.max_entries(), capacity),
        ] {
            if have != want {
                return Err(LoadError::Incompatible {
                    map: name,
                    dir,
                    what,
                    have,
                    want,
                });
            }
        }
        if name == "CONNTRACK" && info.max_entries() != max_entries {
            warn!(
                "the pinned connection table holds {} entries, the config asks for {}; \
                 keeping {} (tracked connections survive) until `firewall down`",
                info.max_entries(),
                max_entries,
                info.max_entries()
            );
        }
    }
    Ok(())
}

/// Capacity of the maps whose size is part of the layout (slot arithmetic
/// in the datapath depends on it); the connection table's may differ.
fn expected_capacity(name: &str) -> Option<u32> {
    use firewall_common::{
        MAX_RULES,
        rule::{COUNTER_SLOTS, MAX_BITMAP_WORDS, MAX_CLASSES, META_SLOTS, PORT_SLOTS, RULE_BANKS},
    };
    Some(match name {
        "RULESETS" => RULE_BANKS,
        "META_CLASS" => RULE_BANKS * META_SLOTS,
        "PORT_CLASS" => RULE_BANKS * 2 * PORT_SLOTS,
        "CLASSES" => RULE_BANKS * MAX_CLASSES,
        "RULE_WORDS" => RULE_BANKS * MAX_BITMAP_WORDS,
        "RULE_INFO" | "RULE_TEXT" => RULE_BANKS * MAX_RULES,
        "RULE_STATS" | "RULE_LIMITS" => COUNTER_SLOTS,
        // A smaller one from an older version would silently lose the
        // counters past its end.
        "STATS" => firewall_common::stats::STATS_SLOTS,
        _ => return None,
    })
}

/// The early-drop ring for the table this load will use: the pinned one's
/// size when a table is adopted (it keeps its size), else `max_entries`;
/// one region per possible CPU. A pinned ring of another shape (another
/// version, or a table size it was not made for) is unpinned so that a
/// fresh one is made: it only names connections to displace first, and a
/// fresh ring costs nothing but the chance to displace the connections made
/// before this load, which expire by themselves.
fn ring_for(pins: Option<&PinDir>, max_entries: u32) -> Result<RingGeometry, LoadError> {
    let possible = aya::util::nr_cpus().map_err(|(path, e)| LoadError::Pin {
        path: path.to_owned(),
        reason: format!("counting the possible CPUs: {e}"),
    })?;
    let Some(pins) = pins else {
        return Ok(RingGeometry::for_table(max_entries, possible as u32));
    };
    let info = |name: &str| aya::maps::MapData::from_pin(pins.map(name)).and_then(|m| m.info());
    let table = match info("CONNTRACK") {
        Ok(i) => i.max_entries(),
        Err(_) => max_entries,
    };
    let ring = RingGeometry::for_table(table, possible as u32);
    let want = |name: &str| -> (u32, u32, u32) {
        use std::mem::size_of;
        let u32s = size_of::<u32>() as u32;
        match name {
            EARLY_DROP_RING => (u32s, size_of::<CtKey>() as u32, ring.slots()),
            EARLY_DROP_POS => (u32s, size_of::<RingCursor>() as u32, ring.regions),
            _ => (u32s, size_of::<RingGeometry>() as u32, 1),
        }
    };
    let stale = EARLY_DROP_MAPS.iter().any(|name| match info(name) {
        Ok(i) => (i.key_size(), i.value_size(), i.max_entries()) != want(name),
        Err(_) => pins.map(name).exists(),
    });
    if stale {
        info!(
            "the pinned early-drop ring does not fit this table ({} regions of {} keys); \
             making a new one",
            ring.regions,
            ring.region_len()
        );
        for name in EARLY_DROP_MAPS {
            let path = pins.map(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| pin_err(&path, e))?;
            }
        }
    }
    Ok(ring)
}

/// Tells the datapath the ring's shape (the same value again when a pinned
/// ring is adopted).
fn write_ring_geometry(ebpf: &mut Ebpf, ring: RingGeometry) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(EARLY_DROP_GEOM)
        .ok_or_else(|| LoadError::MapNames(format!("map {EARLY_DROP_GEOM} missing")))?;
    let mut geom = aya::maps::Array::<_, RingGeometry>::try_from(map).map_err(|source| {
        LoadError::MapWrite {
            map: EARLY_DROP_GEOM,
            source,
        }
    })?;
    geom.set(0, ring, 0).map_err(|source| LoadError::MapWrite {
        map: EARLY_DROP_GEOM,
        source,
    })?;
    log::debug!(
        "early-drop ring: {} regions of {} keys",
        ring.regions,
        ring.region_len()
    );
    Ok(())
}

/// Loads the object. With `pins`, every map is pinned under (or adopted
/// from) the instance's directory; without, the maps are private to this
/// process (BPF_PROG_TEST_RUN tests).
pub fn load_object(pins: Option<&PinDir>, max_entries: u32) -> Result<Ebpf, LoadError> {
    if let Some(p) = pins {
        check_pinned_layout(p, max_entries)?;
    }
    let ring = ring_for(pins, max_entries)?;
    let mut loader = EbpfLoader::new();
    loader.map_max_entries("CONNTRACK", max_entries);
    loader.map_max_entries(EARLY_DROP_RING, ring.slots());
    loader.map_max_entries(EARLY_DROP_POS, ring.regions);
    let paths: Vec<(&str, std::path::PathBuf)> = match pins {
        Some(p) => MAP_NAMES.iter().map(|n| (*n, p.map(n))).collect(),
        None => Vec::new(),
    };
    if let Some(p) = pins {
        std::fs::create_dir_all(p.maps_dir()).map_err(|e| LoadError::Pin {
            path: p.maps_dir().display().to_string(),
            reason: e.to_string(),
        })?;
    }
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        // FIREWALL_VERIFIER_LOG=verbose: the full instruction trace in the
        // debug log (for verifier-complexity work; very large).
        .verifier_log_level(
            if std::env::var_os("FIREWALL_VERIFIER_LOG").is_some_and(|v| v == "verbose") {
                VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS
            } else {
                VerifierLogLevel::default()
            },
        )
        .load(crate::ebpf_object())
        .map_err(LoadError::Object)?;
    check_map_names(&ebpf)?;
    write_ring_geometry(&mut ebpf, ring)?;
    if let Some(p) = pins {
        pin_program_arrays(&ebpf, p)?;
    }
    for program in [
        XDP_PROGRAM,
        TC_PROGRAM,
        TC_INGRESS_PROGRAM,
        TC_FTP_PROGRAM,
        TC_CREATE_PROGRAM,
        XDP_REJECT_PROGRAM,
        XDP_FASTPATH_PROGRAM,
        XDP_ADMIT_PROGRAM,
    ] {
        load_program(&mut ebpf, program)?;
    }
    install_tail_calls(&mut ebpf)?;
    Ok(ebpf)
}

/// The program arrays of this load, pinned under a generation of its own
/// (see [`PinDir::program_array`]); [`retire_program_arrays`] removes the
/// older generations once this load's programs are attached.
fn pin_program_arrays(ebpf: &Ebpf, pins: &PinDir) -> Result<(), LoadError> {
    let generation = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    for name in crate::PROGRAM_ARRAYS {
        let path = pins.program_array(name, &generation);
        let map = ebpf
            .map(name)
            .ok_or_else(|| LoadError::MapNames(format!("program array {name} missing")))?;
        map.pin(&path).map_err(|e| pin_err(&path, e))?;
    }
    Ok(())
}

/// Which pinned program arrays [`retire_program_arrays`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retire {
    /// All but the newest load's: its programs are the attached ones now.
    Older,
    /// Only the newest load's: its setup failed, and the programs still
    /// attached use an older load's arrays.
    Newest,
    /// Every load's (`down`).
    All,
}

/// Removes pinned program arrays by load (see [`Retire`]).
pub fn retire_program_arrays(pins: &PinDir, which: Retire) {
    let arrays = pins.program_arrays();
    let newest = arrays
        .iter()
        .filter_map(|(_, g)| {
            let (_, nanos) = g.split_once('-')?;
            nanos.parse::<u128>().ok().map(|n| (n, g.clone()))
        })
        .max()
        .map(|(_, g)| g);
    for (path, generation) in arrays {
        let is_newest = Some(&generation) == newest.as_ref();
        let remove = match which {
            Retire::Older => !is_newest,
            Retire::Newest => is_newest,
            Retire::All => true,
        };
        if remove {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Every map of the object is either pinned ([`MAP_NAMES`]) or private
/// ([`crate::PRIVATE_MAPS`]), and every pinned name exists: the names both
/// sides must agree on are checked on every load.
fn check_map_names(ebpf: &Ebpf) -> Result<(), LoadError> {
    let names: Vec<&str> = ebpf.maps().map(|(name, _)| name).collect();
    for name in &names {
        if !MAP_NAMES.contains(name) && !crate::PRIVATE_MAPS.contains(name) {
            return Err(LoadError::MapNames(format!(
                "map {name} is neither in MAP_NAMES nor in PRIVATE_MAPS"
            )));
        }
    }
    for name in MAP_NAMES {
        if !names.contains(&name) {
            return Err(LoadError::MapNames(format!(
                "MAP_NAMES lists {name}, which the object does not define"
            )));
        }
    }
    Ok(())
}

/// Fills the program arrays (`firewall_common::abi` names the slots).
fn install_tail_calls(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    use firewall_common::abi::{tc_jump, xdp_jump};
    install_tail_call(ebpf, "JUMP", tc_jump::FTP, TC_FTP_PROGRAM)?;
    install_tail_call(ebpf, "JUMP", tc_jump::CREATE, TC_CREATE_PROGRAM)?;
    install_tail_call(ebpf, "JUMP_XDP", xdp_jump::REJECT, XDP_REJECT_PROGRAM)?;
    install_tail_call(ebpf, "JUMP_XDP", xdp_jump::FASTPATH, XDP_FASTPATH_PROGRAM)?;
    install_tail_call(ebpf, "JUMP_XDP", xdp_jump::ADMIT, XDP_ADMIT_PROGRAM)
}

fn install_tail_call(
    ebpf: &mut Ebpf,
    map_name: &'static str,
    index: u32,
    program: &'static str,
) -> Result<(), LoadError> {
    let fd = {
        let prog = ebpf
            .program(program)
            .ok_or(LoadError::MissingProgram(program))?;
        let fd = match prog {
            aya::programs::Program::Xdp(p) => p.fd(),
            aya::programs::Program::SchedClassifier(p) => p.fd(),
            _ => return Err(LoadError::MissingProgram(program)),
        };
        fd.and_then(|fd| fd.try_clone().map_err(ProgramError::from))
            .map_err(|e| LoadError::Other(format!("program {program}: {e}")))?
    };
    let map = ebpf
        .map_mut(map_name)
        .ok_or_else(|| LoadError::Other(format!("map {map_name} missing from the object")))?;
    let mut jump =
        aya::maps::ProgramArray::try_from(map).map_err(|source| LoadError::MapWrite {
            map: map_name,
            source,
        })?;
    jump.set(index, &fd, 0)
        .map_err(|source| LoadError::MapWrite {
            map: map_name,
            source,
        })
}

fn verifier_reason(e: ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // The reason is the last log line before the verifier's
            // closing statistics; RUST_LOG=debug prints the whole log.
            let log = verifier_log.to_string();
            log::debug!("verifier log:\n{log}");
            if let Some(path) = std::env::var_os("FIREWALL_VERIFIER_LOG_FILE") {
                let _ = std::fs::write(path, &log);
            }
            if std::env::var_os("FIREWALL_VERIFIER_LOG").is_some() {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines.len().saturating_sub(300);
                eprintln!("verifier log tail:\n{}", lines[tail..].join("\n"));
            }
            let is_stat = |l: &str| {
                [
                    "verification time",
                    "stack depth",
                    "processed ",
                    "max_states_per_insn",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            };
            let reason = log
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty() && !is_stat(l))
                .unwrap_or("no verifier output");
            format!("{io_error}: {reason}")
        }
        other => other.to_string(),
    }
}

/// Attempts at loading one program. The verifier stops with EAGAIN when a
/// signal is pending on the loading thread, however far it got; libbpf
/// retries that (`PROG_LOAD_ATTEMPTS`), and so do we. The bigger the
/// program, the longer the window: it showed up in the parallel test runs.
const LOAD_ATTEMPTS: u32 = 5;

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoadError> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?;
    let mut attempt = 1;
    loop {
        let res = match &mut *prog {
            aya::programs::Program::Xdp(p) => p.load(),
            aya::programs::Program::SchedClassifier(p) => p.load(),
            _ => return Err(LoadError::MissingProgram(name)),
        };
        match res {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                warn!("loading {name} was interrupted (EAGAIN), attempt {attempt}; retrying");
                attempt += 1;
            }
            res => {
                res.map_err(|e| LoadError::Verifier {
                    program: name,
                    reason: verifier_reason(e),
                })?;
                if let Some(n) = verified_instructions(ebpf, name) {
                    log::debug!("{name}: verified in {n} instructions (budget 1,000,000)");
                }
                return Ok(());
            }
        }
    }
}

/// How many instructions the verifier processed to accept program `name`
/// (`bpf_prog_info.verified_insns`): the headroom left under its budget of
/// a million, which the tests watch.
pub fn verified_instructions(ebpf: &Ebpf, name: &str) -> Option<u32> {
    let info = match ebpf.program(name)? {
        aya::programs::Program::Xdp(p) => p.info().ok()?,
        aya::programs::Program::SchedClassifier(p) => p.info().ok()?,
        _ => return None,
    };
    info.verified_instruction_count()
}

/// Writes settings, interfaces, NAT and helper tables, then installs the
/// ruleset atomically (see [`crate::ruleset`]). Everything that can be
/// refused (an unknown interface, a ruleset that does not fit the tables)
/// is checked before the first map write.
pub fn configure(
    maps: &mut Maps,
    cfg: &Config,
    ifaces: &[Iface],
) -> Result<crate::ruleset::Installed, LoadError> {
    let sources = rule_sources(cfg, ifaces)?;
    let policy = policy_bytes(cfg);
    // Compile up front so a ruleset the tables cannot hold is refused
    // before any map changes.
    let compiled = crate::ruleset::compile_sources(&sources, policy)
        .map_err(|e| LoadError::Other(e.to_string()))?;
    let old_settings = maps.settings.get(&0, 0).ok();
    let mut settings = Settings {
        timeouts: cfg.timeouts,
        rule_bank: old_settings.map_or(0, |s| s.rule_bank),
        ..Settings::default()
    };
    if ifaces.iter().any(|i| i.nat.is_some()) {
        settings.nat |= settings_nat::SOURCE;
    }
    if !cfg.port_forwards.is_empty() {
        settings.nat |= settings_nat::PORT_FORWARD;
    }
    settings.helpers = u8::from(!cfg.helpers.is_empty());
    settings.tcp = 0;
    if cfg.tcp.be_liberal {
        settings.tcp |= settings_tcp::BE_LIBERAL;
    }
    if cfg.tcp.loose {
        settings.tcp |= settings_tcp::LOOSE;
    }
    settings.tcp_max_retrans = cfg.tcp.max_retrans;
    // With one managed interface nothing can be forwarded between managed
    // interfaces, so the fast path could only fall back: skip its FIB
    // lookup altogether.
    settings.fast_path = u8::from(cfg.fast_path && ifaces.len() >= 2);

    // Interfaces first: an attached program that meets an unknown ifindex
    // fails closed.
    let wanted: HashSet<u32> = ifaces.iter().map(|i| i.ifindex).collect();
    let stale: Vec<u32> = maps
        .ifaces
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted.contains(k))
        .collect();
    for i in ifaces {
        let v = i.datapath_config();
        if i.nat == Some(Nat::Masquerade) && v.nat_addr == 0 {
            warn!(
                "{}: masquerade, but the interface has no IPv4 address yet; \
                 new connections through it are refused until it has one",
                i.name
            );
        }
        maps.ifaces
            .insert(i.ifindex, v, 0)
            .map_err(|source| LoadError::MapWrite {
                map: "IFACES",
                source,
            })?;
    }
    for k in stale {
        let _ = maps.ifaces.remove(&k);
    }

    // Port forwards: add or update every mapping, then remove the ones no
    // longer configured. A forward present in both configs never blinks.
    let mut wanted_fwd = HashSet::new();
    for f in &cfg.port_forwards {
        for (port, to_port) in f.mappings() {
            let key = PortFwdKey {
                proto: f.proto,
                _pad: 0,
                port: port.to_be(),
            };
            let target = PortFwdTarget {
                addr: u32::from_ne_bytes(f.to_addr.octets()),
                port: to_port.to_be(),
                _pad: 0,
            };
            maps.port_fwd
                .insert(key, target, 0)
                .map_err(|source| LoadError::MapWrite {
                    map: "PORT_FWD",
                    source,
                })?;
            wanted_fwd.insert(key);
        }
    }
    // Helper assignments, likewise.
    let mut wanted_helpers = HashSet::new();
    for h in &cfg.helpers {
        let key = PortFwdKey {
            proto: h.proto,
            _pad: 0,
            port: h.port.to_be(),
        };
        maps.helpers
            .insert(key, 1, 0)
            .map_err(|source| LoadError::MapWrite {
                map: "HELPERS",
                source,
            })?;
        wanted_helpers.insert(key);
    }
    let stale_helpers: Vec<PortFwdKey> = maps
        .helpers
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted_helpers.contains(k))
        .collect();
    for k in stale_helpers {
        let _ = maps.helpers.remove(&k);
    }

    let stale_fwd: Vec<PortFwdKey> = maps
        .port_fwd
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted_fwd.contains(k))
        .collect();
    for k in stale_fwd {
        let _ = maps.port_fwd.remove(&k);
    }

    maps.settings
        .set(0, settings, 0)
        .map_err(|source| LoadError::MapWrite {
            map: "SETTINGS",
            source,
        })?;
    crate::ruleset::install_compiled(maps, &sources, &compiled)
        .map_err(|e| LoadError::Other(format!("installing the ruleset: {e}")))
}

/// What `attach` did, so a failure can be rolled back.
#[derive(Default)]
pub struct Attached {
    /// Links this call created (and pinned).
    pub created: Vec<std::path::PathBuf>,
    /// Interfaces whose existing links now run the new programs.
    pub replaced: Vec<String>,
}

/// Attaches (or re-points) XDP and tcx egress on every interface, pinning
/// new links. On error, the links created so far are removed again; links
/// that were only re-pointed stay, running whichever program they had.
pub fn attach(ebpf: &mut Ebpf, pins: &PinDir, ifaces: &[Iface]) -> Result<Attached, LoadError> {
    let mut done = Attached::default();
    match attach_inner(ebpf, pins, ifaces, &mut done) {
        Ok(()) => Ok(done),
        Err(e) => {
            for path in &done.created {
                if let Ok(link) = PinnedLink::from_pin(path) {
                    let _ = link.unpin();
                }
            }
            Err(e)
        }
    }
}

fn pin_err(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::Pin {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn attach_inner(
    ebpf: &mut Ebpf,
    pins: &PinDir,
    ifaces: &[Iface],
    done: &mut Attached,
) -> Result<(), LoadError> {
    std::fs::create_dir_all(pins.links_dir()).map_err(|e| pin_err(&pins.links_dir(), e))?;
    for i in ifaces {
        attach_xdp(ebpf, pins, i, done)?;
        attach_tcx(ebpf, pins, i, LinkKind::Tc, done)?;
        attach_tcx(ebpf, pins, i, LinkKind::TcIngress, done)?;
    }
    // Interfaces dropped from the config lose their links.
    let wanted: HashSet<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    for kind in LinkKind::ALL {
        for name in pins.linked_interfaces(kind) {
            if !wanted.contains(name.as_str()) {
                detach_link(&pins.link(kind, &name));
                info!(
                    "{name}: {} detached (no longer configured)",
                    kind.describe()
                );
            }
        }
    }
    Ok(())
}

/// Re-points an existing pinned link at the new program. Returns false when
/// the pin is stale (its interface went away, e.g. with its namespace): the
/// pin is then removed so the caller attaches afresh.
fn try_replace<L, F>(path: &Path, iface: &str, kind: LinkKind, update: F) -> Result<bool, LoadError>
where
    L: TryFrom<FdLink>,
    <L as TryFrom<FdLink>>::Error: std::fmt::Display,
    F: FnOnce(L) -> Result<(), ProgramError>,
{
    if !path.exists() {
        return Ok(false);
    }
    let pinned = PinnedLink::from_pin(path).map_err(|e| pin_err(path, e))?;
    let link = L::try_from(FdLink::from(pinned)).map_err(|e| pin_err(path, e))?;
    match update(link) {
        Ok(()) => {
            info!("{iface}: replaced {} program in place", kind.describe());
            Ok(true)
        }
        Err(e) => {
            warn!(
                "{iface}: pinned {} link is unusable ({e}); attaching afresh",
                kind.describe()
            );
            detach_link(path);
            Ok(false)
        }
    }
}

fn attach_xdp(
    ebpf: &mut Ebpf,
    pins: &PinDir,
    i: &Iface,
    done: &mut Attached,
) -> Result<(), LoadError> {
    let path = pins.link(LinkKind::Xdp, &i.name);
    let xdp: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or(LoadError::MissingProgram(XDP_PROGRAM))?
        .try_into()
        .map_err(|_| LoadError::MissingProgram(XDP_PROGRAM))?;
    let attach_err = |source| LoadError::Attach {
        what: "XDP",
        iface: i.name.clone(),
        source,
    };
    let replaced = try_replace(&path, &i.name, LinkKind::Xdp, |link: XdpLink| {
        // The pin keeps the link alive; dropping our fd does not detach.
        xdp.attach_to_link(link).map(|id| drop(xdp.take_link(id)))
    })?;
    if replaced {
        done.replaced.push(i.name.clone());
        return Ok(());
    }
    let id = xdp.attach(&i.name, i.mode).map_err(attach_err)?;
    let link = xdp.take_link(id).map_err(attach_err)?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| pin_err(&path, e))?;
    fd.pin(&path).map_err(|e| pin_err(&path, e))?;
    done.created.push(path);
    info!("{}: XDP attached in {} mode", i.name, mode_name(i.mode));
    Ok(())
}

fn attach_tcx(
    ebpf: &mut Ebpf,
    pins: &PinDir,
    i: &Iface,
    kind: LinkKind,
    done: &mut Attached,
) -> Result<(), LoadError> {
    let (program, attach_type) = match kind {
        LinkKind::TcIngress => (TC_INGRESS_PROGRAM, TcAttachType::Ingress),
        _ => (TC_PROGRAM, TcAttachType::Egress),
    };
    let path = pins.link(kind, &i.name);
    let tc: &mut SchedClassifier = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|_| LoadError::MissingProgram(program))?;
    let attach_err = |source| LoadError::Attach {
        what: kind.describe(),
        iface: i.name.clone(),
        source,
    };
    let replaced = try_replace(&path, &i.name, kind, |link: SchedClassifierLink| {
        tc.attach_to_link(link).map(|id| drop(tc.take_link(id)))
    })?;
    if replaced {
        return Ok(());
    }
    let id = tc
        .attach_with_options(
            &i.name,
            attach_type,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(attach_err)?;
    let link = tc.take_link(id).map_err(attach_err)?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| pin_err(&path, e))?;
    fd.pin(&path).map_err(|e| pin_err(&path, e))?;
    done.created.push(path);
    info!("{}: {} attached", i.name, kind.describe());
    Ok(())
}

fn detach_link(path: &Path) {
    match PinnedLink::from_pin(path) {
        Ok(link) => {
            // Unpinning drops the last reference and the kernel detaches.
            if let Err(e) = link.unpin() {
                warn!("removing {}: {e}", path.display());
            }
        }
        Err(e) => {
            warn!("opening {}: {e}; removing the pin", path.display());
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes everything an instance attached and pinned. Idempotent.
pub fn down(pins: &PinDir) -> Result<Vec<String>, LoadError> {
    let mut removed = Vec::new();
    for kind in LinkKind::ALL {
        for name in pins.linked_interfaces(kind) {
            detach_link(&pins.link(kind, &name));
            removed.push(format!("{} on {name}", kind.describe()));
        }
    }
    for name in MAP_NAMES {
        let p = pins.map(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| pin_err(&p, e))?;
        }
    }
    retire_program_arrays(pins, Retire::All);
    for dir in [pins.maps_dir(), pins.links_dir(), pins.root().to_path_buf()] {
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(removed)
}

/// Keeps each masquerading interface's translation address equal to its
/// current IPv4 address. Returns the interfaces whose address changed.
/// Connections bound to the old address are then refused by the datapath
/// (`drop_nat_stale`) and deleted, rather than sent out with a stale
/// translation; their next packet creates a fresh binding.
pub fn refresh_masquerade(maps: &mut Maps, ifaces: &[Iface]) -> Vec<String> {
    let mut changed = Vec::new();
    for i in ifaces.iter().filter(|i| i.nat == Some(Nat::Masquerade)) {
        let want = i.datapath_config();
        let have = maps.ifaces.get(&i.ifindex, 0).ok();
        if have.map(|h| h.nat_addr) != Some(want.nat_addr)
            && maps.ifaces.insert(i.ifindex, want, 0).is_ok()
        {
            changed.push(i.name.clone());
        }
    }
    changed
}

/// What the daemon does every second besides masquerade: brings each
/// interface's IPv6 settings in `IFACES` (whether router advertisements
/// and redirects are acted on) up to date with its sysctls. Returns the
/// interfaces whose settings changed.
pub fn refresh_ipv6_settings(maps: &mut Maps, ifaces: &[Iface]) -> Vec<String> {
    let mut changed = Vec::new();
    for i in ifaces {
        let Ok(mut have) = maps.ifaces.get(&i.ifindex, 0) else {
            continue;
        };
        let want = i.datapath_config().flags;
        if have.flags != want {
            have.flags = want;
            if maps.ifaces.insert(i.ifindex, have, 0).is_ok() {
                changed.push(i.name.clone());
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pin directory under the system's temp dir, removed on drop.
    struct TempPins(PinDir);

    impl TempPins {
        fn new(tag: &str) -> Self {
            let root = std::env::temp_dir().join(format!("fw-pins-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(root.join("maps")).unwrap();
            TempPins(PinDir::new(root))
        }

        fn touch(&self, name: &str) {
            std::fs::write(self.0.maps_dir().join(name), b"").unwrap();
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.0.maps_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TempPins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.root());
        }
    }

    fn two_loads(tag: &str) -> TempPins {
        let t = TempPins::new(tag);
        for name in [
            "CONNTRACK",
            "JUMP@7-100",
            "JUMP_XDP@7-100",
            "JUMP@8-250",
            "JUMP_XDP@8-250",
        ] {
            t.touch(name);
        }
        t
    }

    #[test]
    fn retiring_program_arrays_goes_by_load() {
        let t = two_loads("older");
        retire_program_arrays(&t.0, Retire::Older);
        assert_eq!(t.names(), ["CONNTRACK", "JUMP@8-250", "JUMP_XDP@8-250"]);

        let t = two_loads("newest");
        retire_program_arrays(&t.0, Retire::Newest);
        assert_eq!(t.names(), ["CONNTRACK", "JUMP@7-100", "JUMP_XDP@7-100"]);

        let t = two_loads("all");
        retire_program_arrays(&t.0, Retire::All);
        assert_eq!(t.names(), ["CONNTRACK"]);
    }
}
