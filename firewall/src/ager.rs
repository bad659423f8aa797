//! Userspace garbage collection of expired conntrack entries.
//!
//! The datapath already treats an expired entry as gone, so the ager only
//! reclaims memory. It removes a connection when both of its entries have
//! expired, always both halves together, and sleeps until the earliest
//! remaining expiry rather than scanning on a fixed beat. The sleep is
//! capped by the shortest configured timeout: a connection created while it
//! sleeps cannot expire sooner than that, so nothing lingers longer than
//! about one timeout past its expiry.

use std::{collections::HashMap, time::Duration};

use firewall_common::{CtEntry, CtKey};

use crate::{AGER_REMOVED, AGER_SCANS, maps::Maps, sys::monotonic_ns};

pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub removed: u64,
    /// When to scan next.
    pub next: Duration,
}

/// Decides which keys to delete and when to look again, from a snapshot.
/// Pure so it can be tested without a kernel.
/// The longest the ager may sleep: the shortest timeout any new entry can
/// get, within [MIN_INTERVAL, MAX_INTERVAL].
pub fn max_sleep(t: &firewall_common::Timeouts) -> Duration {
    let shortest = t.all().into_iter().min().unwrap_or(u32::MAX);
    Duration::from_secs(u64::from(shortest)).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

pub fn plan(entries: &[(CtKey, CtEntry)], now_ns: u64, cap: Duration) -> (Vec<CtKey>, Duration) {
    let by_key: HashMap<&CtKey, &CtEntry> = entries.iter().map(|(k, e)| (k, e)).collect();
    let mut doomed = Vec::new();
    let mut earliest = u64::MAX;
    for (key, e) in entries {
        let peer_expiry = by_key.get(&e.peer).map_or(0, |p| p.expires_ns);
        let conn_expiry = e.expires_ns.max(peer_expiry);
        if conn_expiry < now_ns {
            doomed.push(*key);
        } else {
            earliest = earliest.min(conn_expiry);
        }
    }
    let cap = cap.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let next = if earliest == u64::MAX {
        cap
    } else {
        Duration::from_nanos(earliest - now_ns + 1).clamp(MIN_INTERVAL, cap)
    };
    (doomed, next)
}

pub fn sweep(maps: &mut Maps, cap: Duration) -> Sweep {
    let snapshot = maps.conntrack_snapshot();
    let (doomed, next) = plan(&snapshot, monotonic_ns(), cap);
    let mut removed = 0;
    for k in &doomed {
        if maps.conntrack.remove(k).is_ok() {
            removed += 1;
        }
    }
    let scans = maps.daemon_stat(AGER_SCANS) + 1;
    let total = maps.daemon_stat(AGER_REMOVED) + removed;
    maps.set_daemon_stat(AGER_SCANS, scans);
    maps.set_daemon_stat(AGER_REMOVED, total);
    if removed > 0 {
        log::debug!("ager: removed {removed} expired entries");
    }
    Sweep { removed, next }
}

#[cfg(test)]
mod tests {
    use firewall_common::ct::CtDir;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn pair(port: u16, orig_exp: u64, reply_exp: u64) -> [(CtKey, CtEntry); 2] {
        let k = CtKey {
            sport: port,
            dport: 80,
            proto: 6,
            family: 4,
            ..CtKey::default()
        };
        let r = k.inverted();
        [
            (
                k,
                CtEntry {
                    peer: r,
                    expires_ns: orig_exp,
                    ..CtEntry::default()
                },
            ),
            (
                r,
                CtEntry {
                    peer: k,
                    expires_ns: reply_exp,
                    dir: CtDir::Reply as u8,
                    ..CtEntry::default()
                },
            ),
        ]
    }

    #[test]
    fn removes_both_halves_only_when_both_expired() {
        let mut entries = Vec::new();
        entries.extend(pair(1, 5 * S, 6 * S)); // both expired at t=10
        entries.extend(pair(2, 5 * S, 20 * S)); // reply half still alive
        let (doomed, next) = plan(&entries, 10 * S, MAX_INTERVAL);
        assert_eq!(doomed.len(), 2);
        assert!(doomed.contains(&entries[0].0) && doomed.contains(&entries[1].0));
        // Next scan when connection 2 can expire (10 s from now).
        assert!(next > Duration::from_secs(9) && next <= Duration::from_secs(11));
    }

    #[test]
    fn orphaned_half_is_removed_once_expired() {
        let entries = vec![pair(3, 5 * S, 5 * S)[0]];
        let (doomed, _) = plan(&entries, 10 * S, MAX_INTERVAL);
        assert_eq!(doomed, vec![entries[0].0]);
    }

    #[test]
    fn interval_is_bounded() {
        let (_, idle) = plan(&[], 0, MAX_INTERVAL);
        assert_eq!(idle, MAX_INTERVAL);
        let soon = pair(4, 10 * S + 1, 0);
        let (_, next) = plan(&soon, 10 * S, MAX_INTERVAL);
        assert_eq!(next, MIN_INTERVAL);
    }

    #[test]
    fn sleep_is_capped_by_the_shortest_timeout() {
        // An empty table must not put the ager to sleep for longer than a
        // connection created right after could live.
        let t = firewall_common::Timeouts {
            udp: 2,
            ..firewall_common::Timeouts::NETFILTER
        };
        let cap = max_sleep(&t);
        assert_eq!(cap, Duration::from_secs(2));
        let (_, idle) = plan(&[], 0, cap);
        assert_eq!(idle, Duration::from_secs(2));
        let far = pair(5, 1000 * S, 1000 * S);
        let (_, next) = plan(&far, 0, cap);
        assert_eq!(next, Duration::from_secs(2));
        assert_eq!(
            max_sleep(&firewall_common::Timeouts::NETFILTER),
            Duration::from_secs(10)
        );
    }
}
