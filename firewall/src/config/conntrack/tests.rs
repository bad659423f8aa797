use firewall_common::Timeouts;

use crate::config::{parse, test_support::*};

#[test]
fn zero_timeout() {
    assert_err(
        &with_ifaces("[timeouts]\ntcp_close = 0\n"),
        &["fw.toml:5: timeouts.tcp_close: 0 is out of range (1-4294967295)"],
    );
    assert_err(
        &with_ifaces("[timeouts]\nudp = \"30\"\n"),
        &["fw.toml:5: timeouts.udp: expected an integer, found string"],
    );
}

#[test]
fn small_conntrack() {
    assert_err(
        &with_ifaces("[conntrack]\nmax_entries = 100\n"),
        &["fw.toml:5: conntrack.max_entries: 100 is out of range (1024-"],
    );
}

/// Every timeout is a `[timeouts]` key under its own name, and lands in its
/// own field.
#[test]
fn every_timeout_is_a_key() {
    let keys: String = Timeouts::NAMES
        .iter()
        .zip(1..)
        .map(|(name, secs)| format!("{name} = {secs}\n"))
        .collect();
    let config = parse(&with_ifaces(&format!("[timeouts]\n{keys}")), "fw.toml").unwrap();
    let want: [u32; Timeouts::COUNT] = std::array::from_fn(|i| i as u32 + 1);
    assert_eq!(config.timeouts.all(), want);
}
