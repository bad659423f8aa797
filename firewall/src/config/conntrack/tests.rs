use crate::config::test_support::*;

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
