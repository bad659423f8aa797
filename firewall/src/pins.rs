//! Layout of an instance's pin directory. Everything the firewall leaves in
//! the kernel hangs off these pins, so `down` and a restarted daemon can find
//! it without any other state:
//!
//! ```text
//! <pin-dir>/maps/<MAP>          every map (CONNTRACK, SETTINGS, …)
//! <pin-dir>/links/xdp@<iface>   the XDP link on each interface
//! <pin-dir>/links/tc@<iface>    the tcx egress link on each interface
//! <pin-dir>/links/tcin@<iface>  the tcx ingress (destination NAT) link
//! ```

use std::path::{Path, PathBuf};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/firewall";

#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Xdp,
    Tc,
    TcIngress,
}

impl LinkKind {
    pub const ALL: [LinkKind; 3] = [LinkKind::Xdp, LinkKind::Tc, LinkKind::TcIngress];

    pub fn describe(self) -> &'static str {
        match self {
            LinkKind::Xdp => "XDP",
            LinkKind::Tc => "tc egress",
            LinkKind::TcIngress => "tc ingress",
        }
    }
}

impl LinkKind {
    fn prefix(self) -> &'static str {
        match self {
            LinkKind::Xdp => "xdp@",
            LinkKind::Tc => "tc@",
            LinkKind::TcIngress => "tcin@",
        }
    }
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn link(&self, kind: LinkKind, iface: &str) -> PathBuf {
        self.links_dir().join(format!("{}{iface}", kind.prefix()))
    }

    /// Interfaces that have a pinned link of `kind`, sorted.
    pub fn linked_interfaces(&self, kind: LinkKind) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.links_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(kind.prefix()))
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    }

    pub fn has_maps(&self) -> bool {
        self.map("CONNTRACK").exists()
    }

    /// Where one load pins its program array `name` (`JUMP`, `JUMP_XDP`):
    /// `maps/NAME@GENERATION`. A program array is emptied when its last
    /// user reference goes, so without a pin the tail calls would stop
    /// when the daemon exits; and each load pins its own, because its
    /// programs hand data over through scratch maps of their own load.
    pub fn program_array(&self, name: &str, generation: &str) -> PathBuf {
        self.maps_dir().join(format!("{name}@{generation}"))
    }

    /// The pinned program arrays of every load, as (path, generation).
    pub fn program_arrays(&self) -> Vec<(PathBuf, String)> {
        std::fs::read_dir(self.maps_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let (_, generation) = name.split_once('@')?;
                Some((e.path(), generation.to_owned()))
            })
            .collect()
    }
}
