//! Helpers the config's tests share: small configs around a rule or a
//! block, and the error text they give.

use super::*;

pub(super) const IFACES: &str = "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\n";

/// `IFACES` (lines 1-3) followed by `rest`, which therefore starts on
/// line 4.
pub(super) fn with_ifaces(rest: &str) -> String {
    format!("{IFACES}{rest}")
}

pub(super) fn err(text: &str) -> String {
    parse(text, "fw.toml").unwrap_err().to_string()
}

pub(super) fn assert_err(text: &str, expected: &[&str]) {
    let msg = err(text);
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    for e in expected {
        assert!(msg.contains(e), "{msg:?} does not contain {e:?}");
    }
}

pub(super) fn one_rule(body: &str) -> RuleConfig {
    let text = with_ifaces(&format!("[[rule]]\n{body}"));
    let mut config = parse(&text, "fw.toml").unwrap();
    assert_eq!(config.rules.len(), 1);
    config.rules.pop().unwrap()
}

/// The test host's interfaces: `eth0` and `eth1` are configured in
/// the tests' configs, `wlan0` and `ethx` are not.
pub(super) fn ifaces() -> Vec<(String, u32)> {
    [
        ("lo", 1),
        ("eth0", 2),
        ("eth1", 3),
        ("wlan0", 4),
        ("ethx", 5),
    ]
    .into_iter()
    .map(|(n, i)| (n.to_string(), i))
    .collect()
}

pub(super) fn v4b(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

/// Two interfaces (lines 1-6, eth0 wan and eth1 lan) followed by `rest`,
/// which therefore starts on line 7.
pub(super) fn with_wan_lan(rest: &str) -> String {
    format!("{IFACES}[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{rest}")
}

/// A `[[port_forward]]` block of four lines.
pub(super) fn forward(proto: &str, port: &str, to: &str) -> String {
    format!("[[port_forward]]\nproto = \"{proto}\"\nport = {port}\nto = \"{to}\"\n")
}

/// Two configured interfaces (lines 1-6), then `rest` from line 7.
pub(super) fn with_two(rest: &str) -> String {
    format!(
        "[[interface]]\nname = \"eth0\"\nrole = \"wan\"\n\
             [[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{rest}"
    )
}

pub(super) fn rule2(body: &str) -> RuleConfig {
    let mut c = parse(&with_two(&format!("[[rule]]\n{body}")), "fw.toml")
        .unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(c.rules.len(), 1);
    c.rules.pop().unwrap()
}
