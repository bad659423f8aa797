use firewall_common::IPPROTO_TCP;

use super::*;
use crate::config::{test_support::*, *};

/// A `[[helper]]` block of four lines.
fn helper(proto: &str, port: &str, kind: &str) -> String {
    format!("[[helper]]\nproto = {proto}\nport = {port}\nkind = {kind}\n")
}

/// One ftp helper with `proto`, `port` and `kind` given as TOML values;
/// the header is on line 4, proto on 5, port on 6 and kind on 7.
fn one_helper(proto: &str, port: &str, kind: &str) -> String {
    with_ifaces(&helper(proto, port, kind))
}

#[test]
fn helpers_parse() {
    let text = with_ifaces(&format!(
        "{}\n[[helper]]\nkind = \"ftp\"\nport = 2121\nproto = \"tcp\"\n",
        helper("\"tcp\"", "21", "\"ftp\"")
    ));
    let c = parse(&text, "fw.toml").unwrap();
    assert_eq!(
        c.helpers,
        vec![
            Helper {
                proto: IPPROTO_TCP,
                port: 21,
                kind: HelperKind::Ftp,
                line: 4,
                index: 1,
            },
            Helper {
                proto: IPPROTO_TCP,
                port: 2121,
                kind: HelperKind::Ftp,
                line: 9,
                index: 2,
            },
        ]
    );
    assert_eq!(HelperKind::Ftp.to_string(), "ftp");
    assert_eq!(HelperKind::Ftp.proto(), IPPROTO_TCP);
    assert_eq!(c.helpers[0].summary(), "tcp 21 -> ftp helper");

    // Both ends of the port space.
    for port in [1, 65535] {
        let c = parse(
            &one_helper("\"tcp\"", &port.to_string(), "\"ftp\""),
            "fw.toml",
        );
        assert_eq!(c.unwrap().helpers[0].port, port);
    }

    // Helpers need no wan interface and sit beside the other sections.
    let text = format!(
        "[[interface]]\nname = \"eth1\"\nrole = \"lan\"\n{}[[rule]]\nchain = \"input\"\n\
             action = \"drop\"\n",
        helper("\"tcp\"", "21", "\"ftp\"")
    );
    let c = parse(&text, "fw.toml").unwrap();
    assert_eq!((c.helpers.len(), c.rules.len()), (1, 1));
}

#[test]
fn helper_unknown_kind() {
    assert_err(
        &one_helper("\"tcp\"", "21", "\"sip\""),
        &["fw.toml:7: helper[1].kind: unknown helper \"sip\" (supported: ftp)"],
    );
    assert_err(
        &one_helper("\"tcp\"", "21", "\"FTP\""),
        &["fw.toml:7: helper[1].kind: unknown helper \"FTP\" (supported: ftp)"],
    );
    assert_err(
        &one_helper("\"tcp\"", "21", "1"),
        &["fw.toml:7: helper[1].kind: expected a string, found integer"],
    );
}

#[test]
fn helper_bad_port() {
    let bad = |port: &str, expected: &str| {
        assert_err(&one_helper("\"tcp\"", port, "\"ftp\""), &[expected]);
    };
    bad(
        "0",
        "fw.toml:6: helper[1].port: 0 is out of range (1-65535)",
    );
    bad(
        "65536",
        "fw.toml:6: helper[1].port: 65536 is out of range (1-65535)",
    );
    bad(
        "-21",
        "fw.toml:6: helper[1].port: -21 is out of range (1-65535)",
    );
    bad(
        "\"21-22\"",
        "fw.toml:6: helper[1].port: \"21-22\" is a range; a helper is assigned to a single \
             port",
    );
    bad(
        "\"21\"",
        "fw.toml:6: helper[1].port: expected a port number 1-65535, found string",
    );
    bad(
        "21.0",
        "fw.toml:6: helper[1].port: expected a port number 1-65535, found float",
    );
    // The second of two blocks is numbered and located as such.
    let text = with_ifaces(&format!(
        "{}{}",
        helper("\"tcp\"", "21", "\"ftp\""),
        helper("\"tcp\"", "\"2121-2122\"", "\"ftp\"")
    ));
    assert_err(
        &text,
        &["fw.toml:10: helper[2].port: \"2121-2122\" is a range"],
    );
}

#[test]
fn helper_duplicate_port() {
    let text = with_ifaces(&format!(
        "{}{}{}",
        helper("\"tcp\"", "21", "\"ftp\""),
        helper("\"tcp\"", "2121", "\"ftp\""),
        helper("\"tcp\"", "21", "\"ftp\"")
    ));
    assert_err(
        &text,
        &[
            "fw.toml:14: helper[3].port: tcp port 21 is assigned twice: helper[1] (line 4) \
                 already gives it the ftp helper, and a port takes one helper",
        ],
    );
}

#[test]
fn helper_wrong_proto() {
    assert_err(
        &one_helper("\"udp\"", "21", "\"ftp\""),
        &["fw.toml:5: helper[1].proto: the ftp helper works on tcp, not udp"],
    );
    assert_err(
        &one_helper("\"icmp\"", "21", "\"ftp\""),
        &["fw.toml:5: helper[1].proto: unknown value \"icmp\" (expected tcp or udp)"],
    );
    assert_err(
        &one_helper("6", "21", "\"ftp\""),
        &["fw.toml:5: helper[1].proto: expected a string, found integer"],
    );
}

#[test]
fn helper_missing_keys() {
    // Reported on the [[helper]] header (line 5 here, after a blank line).
    for (body, k) in [
        ("port = 21\nkind = \"ftp\"\n", "proto"),
        ("proto = \"tcp\"\nkind = \"ftp\"\n", "port"),
        ("proto = \"tcp\"\nport = 21\n", "kind"),
    ] {
        assert_err(
            &with_ifaces(&format!("\n[[helper]]\n{body}")),
            &[&format!("fw.toml:5: helper[1].{k}: missing (required)")],
        );
    }
    assert_err(
        &with_ifaces("[[helper]]\n"),
        &["fw.toml:4: helper[1].proto: missing (required)"],
    );
}

#[test]
fn helper_unknown_key() {
    assert_err(
        &with_ifaces(&format!(
            "{}comment = \"ftp\"\n",
            helper("\"tcp\"", "21", "\"ftp\"")
        )),
        &[
            "fw.toml:8: helper[1].comment: unknown key (expected one of `proto`, `port`, \
                 `kind`)",
        ],
    );
    assert_err(
        &with_ifaces(&format!(
            "{}{}iif = \"eth0\"\n",
            helper("\"tcp\"", "21", "\"ftp\""),
            helper("\"tcp\"", "2121", "\"ftp\"")
        )),
        &["fw.toml:12: helper[2].iif: unknown key"],
    );
}
