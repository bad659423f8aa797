//! Harness for the end-to-end tests and `cargo xtask lab`.
//!
//! Every test builds its own namespaces ([`topology`]), writes a [`Config`], starts the
//! daemon ([`Firewall`]), sends real traffic ([`traffic`]) and reads the firewall's own
//! view (`conntrack list --json`, `stats --json`) to prove which path a packet took.
//!
//! Everything that touches the system is an RAII guard ([`Netns`], [`Process`],
//! [`Firewall`]) so a panicking test still cleans up. Names carry the process id and a
//! per-process counter ([`unique_prefix`]), so tests run in parallel, and leftovers of a
//! test process that died without unwinding are removed by the next run.

mod bpf;
mod cmd;
mod config;
mod firewall;
pub mod flood;
pub mod fragments;
mod netns;
pub mod packets;
mod poll;
pub mod topology;
pub mod traffic;
pub mod wan2;
pub mod window;

use std::{
    fmt,
    net::IpAddr,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

pub use crate::{
    bpf::{attached_tcx_programs, attachments, has_xdp_program},
    cmd::{Process, exec, run, spawn},
    config::{
        Action, Chain, Config, Helper, Interface, Policy, PortForward, Role, Rule, Timeouts,
        Verdict,
    },
    firewall::{
        AgerStats, ConntrackSummary, CtCounters, CtEntry, CtTuple, Firewall, RuleStats, Stats,
        firewall_bin, mount_test_bpffs,
    },
    netns::Netns,
    poll::{Probe, poll},
};

/// Address family of a test case; most behaviours are tested once per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The `family` value of `conntrack list --json`.
    pub fn conntrack_name(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }

    /// The `proto` value of an echo request's conntrack entry.
    pub fn icmp_proto(self) -> &'static str {
        match self {
            Self::V4 => "icmp",
            Self::V6 => "icmpv6",
        }
    }

    /// Echo request and echo reply types (RFC 792, RFC 4443).
    pub fn echo_types(self) -> (u8, u8) {
        match self {
            Self::V4 => (8, 0),
            Self::V6 => (128, 129),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.conntrack_name())
    }
}

/// One IPv4 and one IPv6 address of the same endpoint.
#[derive(Debug, Clone, Copy)]
pub struct DualAddr {
    pub v4: &'static str,
    pub v6: &'static str,
}

impl DualAddr {
    pub fn get(&self, family: Family) -> IpAddr {
        let text = match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        };
        text.parse().expect("topology addresses are valid literals")
    }
}

/// Root of the bpffs that test daemons pin into. Unlike /sys/fs/bpf it is not remounted by
/// `ip netns exec`, so the daemon and the CLI calls see the same pins.
pub const TEST_BPFFS: &str = "/run/firewall-tests";

/// A name prefix unique to this process and call: `fw<tag>-<pid>-<n>`.
///
/// `tag` is a short lowercase word naming the test file or tool (`rt`, `host`, `lab`).
/// The first call also removes namespaces and pin dirs that dead test processes left.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static REAP: Once = Once::new();
    assert!(
        !tag.is_empty() && tag.len() <= 6 && tag.bytes().all(|b| b.is_ascii_alphanumeric()),
        "tag {tag:?} must be 1-6 ASCII letters or digits"
    );
    REAP.call_once(reap_stale);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("fw{tag}-{}-{n}", std::process::id())
}

/// Whether `name` was made by [`unique_prefix`] in a process that no longer exists.
fn is_stale(name: &str) -> bool {
    let mut parts = name.split('-');
    let (Some(head), Some(pid), Some(_counter)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    head.starts_with("fw")
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn reap_stale() {
    for name in netns::list().unwrap_or_default() {
        if is_stale(&name) {
            eprintln!("removing namespace {name} left by a dead test process");
            netns::remove(&name);
        }
    }
    let Ok(dirs) = std::fs::read_dir(TEST_BPFFS) else {
        return;
    };
    for dir in dirs.flatten() {
        if is_stale(&dir.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_fit_interface_names() {
        let a = unique_prefix("rt");
        let b = unique_prefix("rt");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("fwrt-{}-", std::process::id())));
        assert!(!is_stale(&a), "our own names are never stale");
    }

    #[test]
    fn names_of_dead_processes_are_stale() {
        // pid_max is at most 2^22, so this pid cannot exist.
        assert!(is_stale("fwrt-99999999-0-lan"));
        assert!(!is_stale("firewall"));
        assert!(!is_stale("other-1-2"));
    }
}
