//! Both parser stages and their composition, [`parse_command`]: every form
//! of each command, prefixes, malformed arguments, other commands.

extern crate std;
use std::{format, string::String};

use super::{test_support::*, *};

mod fuzz;

#[test]
fn port_forms() {
    let a = FtpAddr::V4([192, 168, 1, 2]);
    for line in [
        "PORT 192,168,1,2,4,1\r\n",
        "port 192,168,1,2,4,1\r\n",
        "PoRt 192,168,1,2,4,1\r\n",
        "PORT    192,168,1,2,4,1\r\n",
        "PORT 192,168,1,2,4,1\n",
        "PORT 192,168,001,2,4,01\r\n",
    ] {
        let text = line.trim_start_matches(|c: char| !c.is_ascii_digit());
        let text = text.trim_end();
        check(O, line, FtpCmd::Port, a, 1025, text);
    }
    check(
        O,
        "PORT 255,255,255,255,255,255\r\nNOOP\r\n",
        FtpCmd::Port,
        FtpAddr::V4([255; 4]),
        65535,
        "255,255,255,255,255,255",
    );
    check(
        O,
        "PORT 0,0,0,0,0,1\r\n",
        FtpCmd::Port,
        FtpAddr::V4([0; 4]),
        1,
        "0,0,0,0,0,1",
    );
}

#[test]
fn eprt_v4_forms() {
    let a = FtpAddr::V4([132, 235, 1, 2]);
    check(
        O,
        "EPRT |1|132.235.1.2|6275|\r\n",
        FtpCmd::Eprt,
        a,
        6275,
        "|1|132.235.1.2|6275|",
    );
    check(
        O,
        "eprt |1|132.235.1.2|6275|\n",
        FtpCmd::Eprt,
        a,
        6275,
        "|1|132.235.1.2|6275|",
    );
    check(
        O,
        "EPRT  !1!132.235.1.2!6275!\r\n",
        FtpCmd::Eprt,
        a,
        6275,
        "!1!132.235.1.2!6275!",
    );
    check(
        O,
        "EPRT a1a132.235.1.2a6275a\r\n",
        FtpCmd::Eprt,
        a,
        6275,
        "a1a132.235.1.2a6275a",
    );
    check(
        O,
        "EPRT :1:132.235.1.2:65535:\r\n",
        FtpCmd::Eprt,
        a,
        65535,
        ":1:132.235.1.2:65535:",
    );
}

#[test]
fn eprt_v6_forms() {
    for (text, addr) in [
        ("1080::8:800:200C:417A", "1080::8:800:200c:417a"),
        ("1080:0:0:0:8:800:200C:417A", "1080::8:800:200c:417a"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
        ("0000:0000:0000:0000:0000:0000:0000:0001", "::1"),
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::", "2001:db8::"),
        ("fe80::1:2", "fe80::1:2"),
        ("1::8", "1::8"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
        ("::ffff:c0a8:102", "::ffff:192.168.1.2"),
    ] {
        let range = format!("|2|{text}|2121|");
        check(
            O,
            &format!("EPRT {range}\r\n"),
            FtpCmd::Eprt,
            v6(addr),
            2121,
            &range,
        );
    }
    // in6_pton takes these; the datapath's scanner does not (see the module
    // docs), and the host parses EPRT |2| with the same scanner.
    for text in [
        "::ffff:192.168.1.2",
        "::192.168.1.2",
        "1:2:3:4:5:6:1.2.3.4",
        "64:ff9b::10.0.0.1",
        "00001::",
    ] {
        let line = format!("EPRT |2|{text}|2121|\r\n");
        assert_eq!(client(&line), Parse::Invalid, "{line:?}");
    }
    let range = "#2#2001:db8::7#40000#";
    check(
        O,
        &format!("EPRT {range}\r\n"),
        FtpCmd::Eprt,
        v6("2001:db8::7"),
        40000,
        range,
    );
}

#[test]
fn pasv_227_forms() {
    let a = FtpAddr::V4([192, 168, 1, 2]);
    for line in [
        "227 Entering Passive Mode (192,168,1,2,4,1).\r\n",
        "227 Entering Passive Mode (192,168,1,2,4,1)\r\n",
        "227 Entering Passive Mode 192,168,1,2,4,1\r\n",
        "227 =192,168,1,2,4,1\r\n",
        "227 192,168,1,2,4,1.",
        "227 ok (192,168,1,2,4,1) now\r\n",
    ] {
        check(R, line, FtpCmd::Pasv227, a, 1025, "192,168,1,2,4,1");
    }
}

#[test]
fn epsv_229_forms() {
    for (line, range) in [
        (
            "229 Entering Extended Passive Mode (|||6446|)\r\n",
            "|||6446|",
        ),
        (
            "229 Entering Extended Passive Mode (!!!6446!).\r\n",
            "!!!6446!",
        ),
        ("229 (###6446#)\r\n", "###6446#"),
        ("229 Extended (aaa6446a)", "aaa6446a"),
        ("229 x (|||6446|)", "|||6446|"),
    ] {
        check(R, line, FtpCmd::Epsv229, FtpAddr::None, 6446, range);
    }
}

/// Every proper prefix of a valid line that stops before the command's
/// terminator is `Partial`; the ones that reach it give the full match.
#[test]
fn prefixes_are_partial_never_wrong() {
    let lines: &[(CtDir, &str)] = &[
        (O, "PORT 192,168,1,2,4,1\r\n"),
        (O, "port   10,0,0,1,0,21\n"),
        (O, "PORT 1,2,3,4,0,10\r\n"),
        (O, "EPRT |1|132.235.1.2|6275|\r\n"),
        (O, "EPRT |2|1080::8:800:200C:417A|5282|\r\n"),
        (O, "EPRT |2|::|5282|\r\n"),
        (O, "EPRT |2|::ffff:c0a8:102|5282|\r\n"),
        (O, "EPRT |2|1:2:3:4:5:6:7:8|1|\r\n"),
        (R, "227 Entering Passive Mode (192,168,1,2,4,1).\r\n"),
        (R, "227 =10,0,0,5,39,16\r\n"),
        (R, "229 Entering Extended Passive Mode (|||6446|)\r\n"),
        (R, "229 (!!!1!)\r\n"),
    ];
    let mut partials = 0;
    for &(dir, line) in lines {
        let full = parse(dir, line.as_bytes());
        let Parse::Match { kind, end, .. } = full else {
            panic!("{line:?}: {full:?}");
        };
        // Bytes the parser must see: the whole line for client commands;
        // the byte after the last digit for 227; the ')' for 229.
        let needed = match kind {
            FtpCmd::Port | FtpCmd::Eprt => line.len(),
            FtpCmd::Pasv227 | FtpCmd::Epsv229 => end as usize + 1,
        };
        for k in 1..line.len() {
            let got = parse(dir, &line.as_bytes()[..k]);
            if k < needed {
                assert_eq!(got, Parse::Partial, "{:?}", &line[..k]);
                partials += 1;
            } else {
                assert_eq!(got, full, "{:?}", &line[..k]);
            }
            // The same prefix as the window of a longer segment: the
            // line does not fit, retransmitting cannot help.
            let longer = parse_command(dir, &window(&line.as_bytes()[..k]), k + 100);
            if k == MAX_CMD_LEN && k < needed {
                assert_eq!(longer, Parse::Invalid);
            }
        }
    }
    assert!(partials > 300, "{partials}");
}

fn arg_buf(s: &str) -> [u8; ARG_LEN] {
    let mut a = [0u8; ARG_LEN];
    a[..s.len()].copy_from_slice(s.as_bytes());
    a
}

#[test]
fn eprt_family_must_be_the_connections() {
    let v4 = "|1|10.0.0.1|2000|\r\n";
    let v6 = "|2|::1|2000|\r\n";
    let parse = |fam, s: &str| parse_argument(FtpCmd::Eprt, fam, &arg_buf(s), s.len(), false);
    let want4 = m(FtpCmd::Eprt, FtpAddr::V4([10, 0, 0, 1]), 2000, 0, 17);
    let want6 = m(FtpCmd::Eprt, super::test_support::v6("::1"), 2000, 0, 12);
    assert_eq!(parse(FAMILY_V4, v4), want4);
    assert_eq!(parse(ANY_FAMILY, v4), want4);
    assert_eq!(parse(FAMILY_V6, v4), Parse::Invalid);
    assert_eq!(parse(FAMILY_V6, v6), want6);
    assert_eq!(parse(ANY_FAMILY, v6), want6);
    assert_eq!(parse(FAMILY_V4, v6), Parse::Invalid);
    // Other commands do not depend on it.
    let port = "1,2,3,4,5,6\r\n";
    for fam in [FAMILY_V4, FAMILY_V6, ANY_FAMILY] {
        assert_eq!(
            parse_argument(FtpCmd::Port, fam, &arg_buf(port), port.len(), false),
            m(FtpCmd::Port, FtpAddr::V4([1, 2, 3, 4]), 1286, 0, 11)
        );
    }
}

#[test]
fn locate_finds_the_argument() {
    for (dir, line, kind, arg) in [
        (O, "PORT 1,2,3,4,5,6\r\n", FtpCmd::Port, 5),
        (O, "eprt    |1|1.2.3.4|5|\r\n", FtpCmd::Eprt, 8),
        (
            R,
            "227 Entering Passive Mode (1,2,3,4,5,6)\r\n",
            FtpCmd::Pasv227,
            27,
        ),
        (R, "229 Extended (|||5|)\r\n", FtpCmd::Epsv229, 14),
    ] {
        let w = window(line.as_bytes());
        assert_eq!(
            locate_command(dir, &w, line.len()),
            Located::Command { kind, arg },
            "{line:?}"
        );
    }
    assert_eq!(locate_command(O, &window(b"PORT   "), 7), Located::Partial);
    assert_eq!(locate_command(O, &window(b"PORT\r\n"), 6), Located::Invalid);
    assert_eq!(locate_command(O, &window(b"NOOP\r\n"), 6), Located::NoMatch);
    assert_eq!(
        locate_command(R, &window(b"227 no digits\r\n"), 15),
        Located::Invalid
    );
}

#[test]
fn line_longer_than_window_is_invalid_not_partial() {
    let mut line = String::from("227 Entering Passive Mode");
    line.push_str(&" ".repeat(MAX_CMD_LEN));
    let w = window(line.as_bytes());
    assert_eq!(parse_command(R, &w, MAX_CMD_LEN), Parse::Partial);
    assert_eq!(parse_command(R, &w, MAX_CMD_LEN + 1), Parse::Invalid);
    assert_eq!(parse_command(R, &w, 1500), Parse::Invalid);
    // A command inside the window of a longer segment is found.
    let mut seg = b"PORT 1,2,3,4,5,6\r\n".to_vec();
    seg.resize(1400, b'x');
    assert_eq!(
        parse_command(O, &window(&seg), seg.len()),
        m(FtpCmd::Port, FtpAddr::V4([1, 2, 3, 4]), 1286, 5, 16)
    );
}

#[test]
fn malformed_arguments_are_invalid() {
    for line in [
        "PORT 256,1,1,1,1,1\r\n",
        "PORT 1,2,3,4,256,1\r\n",
        "PORT 1,2,3,4,1,256\r\n",
        "PORT 1,2,3,4,5\r\n",
        "PORT 1,2,3,4,5,\r\n",
        "PORT 1,,3,4,5,6\r\n",
        "PORT ,1,2,3,4,5,6\r\n",
        "PORT 1,2,3,4,0,0\r\n",
        "PORT 1,2,3,4,5,6,7\r\n",
        "PORT 1,2,3,4,5,6 \r\n",
        "PORT 1,2,3,4,5,6\rX",
        "PORT 1,2,3,4,5,6;\r\n",
        "PORT 1 ,2,3,4,5,6\r\n",
        "PORT 0001,2,3,4,5,6\r\n",
        "PORT 99999999999999999999,2,3,4,5,6\r\n",
        "PORT a,b,c,d,e,f\r\n",
        "PORT\r\n",
        "PORT \r\n",
        "PORT\n",
        "EPRT |3|1.2.3.4|5|\r\n",
        "EPRT |1|1.2.3|5|\r\n",
        "EPRT |1|1.2.3.4.5|5|\r\n",
        "EPRT |1|1.2.3.256|5|\r\n",
        "EPRT |1|1.2.3.4|0|\r\n",
        "EPRT |1|1.2.3.4|65536|\r\n",
        "EPRT |1|1.2.3.4|123456|\r\n",
        "EPRT |1|1.2.3.4||\r\n",
        "EPRT |1|1.2.3.4|5\r\n",
        "EPRT |1|1.2.3.4|5|x\r\n",
        "EPRT |1!1.2.3.4|5|\r\n",
        "EPRT 111121314151\r\n",
        "EPRT .1.1.2.3.4.5.\r\n",
        "EPRT \x7f1\x7f1.2.3.4\x7f5\x7f\r\n",
        "EPRT  1 1.2.3.4 5 \r\n",
        "EPRT |2|1:2:3|5|\r\n",
        "EPRT |2|1::2::3|5|\r\n",
        "EPRT |2|1:::2|5|\r\n",
        "EPRT |2|:1::|5|\r\n",
        "EPRT |2|1:|5|\r\n",
        "EPRT |2|:|5|\r\n",
        "EPRT |2||5|\r\n",
        "EPRT |2|1:2:3:4:5:6:7:8:9|5|\r\n",
        "EPRT |2|1:2:3:4:5:6:7:8::|5|\r\n",
        "EPRT |2|1:2:3:4::5:6:7:8|5|\r\n",
        "EPRT |2|12345::|5|\r\n",
        "EPRT |2|fffff::|5|\r\n",
        "EPRT |2|::1.2|5|\r\n",
        "EPRT |2|::1.2.3.4.|5|\r\n",
        "EPRT |2|g::|5|\r\n",
        "EPRT |2|::1.2.3|5|\r\n",
        "EPRT |2|::1.2.3.4.5|5|\r\n",
        "EPRT |2|::1.2.3.256|5|\r\n",
        "EPRT |2|::ffff:1a.2.3.4|5|\r\n",
        "EPRT |2|1:2:3:4:5:6:7:1.2.3.4|5|\r\n",
        "EPRT |2|1.2.3.4|5|\r\n",
        "EPRT |2|::1.2.3.4:5|5|\r\n",
        "EPRT :2:::1:5:\r\n",
        "EPRT a2a::1a5a\r\n",
        "EPRT |2|0000:0000:0000:0000:0000:0000:0000:0000:0000|5|\r\n",
        "EPRT |2|::1|0|\r\n",
        "EPRT\r\n",
    ] {
        assert_eq!(client(line), Parse::Invalid, "{line:?}");
    }
    for line in [
        "227 Entering Passive Mode (1,2,3,4,5).\r\n",
        "227 Entering Passive Mode (300,1,1,1,1,1)\r\n",
        "227 Entering Passive Mode (1,2,3,4,0,0)\r\n",
        "227 Entering Passive Mode (1,2,3,4,5,6,7)\r\n",
        "227 Entering Passive Mode (1,2,3,4,5,256)\r\n",
        "227 Entering Passive Mode 2 (1,2,3,4,5,6)\r\n",
        "227 no numbers at all\r\n",
        "227 \n1,2,3,4,5,6)\r\n",
        "229 Entering Extended Passive Mode (|||0|)\r\n",
        "229 Entering Extended Passive Mode (||6446|)\r\n",
        "229 Entering Extended Passive Mode (|||6446)\r\n",
        "229 Entering Extended Passive Mode (|||6446|x\r\n",
        "229 Entering Extended Passive Mode (1116446|)\r\n",
        "229 Entering Extended Passive Mode (|||99999|)\r\n",
        "229 Entering Extended Passive Mode (|||65536|)\r\n",
        "229 Entering Extended Passive Mode (   6446 )\r\n",
        "229 Entering Extended Passive Mode (|!|6446|)\r\n",
        "229 Entering Extended Passive Mode (||||)\r\n",
        "229 no parenthesis\r\n",
    ] {
        assert_eq!(server(line), Parse::Invalid, "{line:?}");
    }
}

#[test]
fn other_commands_do_not_match() {
    for line in [
        "USER anonymous\r\n",
        "PASS x\r\n",
        "RETR file.txt\r\n",
        "STOR PORT 1,2,3,4,5,6\r\n",
        "PASV\r\n",
        "EPSV\r\n",
        "PORTS 1,2,3,4,5,6\r\n",
        "PORT\t1,2,3,4,5,6\r\n",
        "EPRTX |1|1.2.3.4|5|\r\n",
        " PORT 1,2,3,4,5,6\r\n",
        "Q",
        "227 Entering Passive Mode (1,2,3,4,5,6)\r\n",
        "229 Entering Extended Passive Mode (|||6446|)\r\n",
    ] {
        assert_eq!(client(line), Parse::NoMatch, "{line:?}");
    }
    for line in [
        "226 Transfer complete\r\n",
        "230 Login successful\r\n",
        "220 (vsFTPd 3.0.3)\r\n",
        "228 Entering Long Passive Mode (4,16,1,2,3,4,2,4,1)\r\n",
        "2270 (1,2,3,4,5,6)\r\n",
        "227-Multiline (1,2,3,4,5,6)\r\n",
        "229-x (|||1|)\r\n",
        "150 Here comes the directory listing.\r\n",
        "3",
        "PORT 1,2,3,4,5,6\r\n",
    ] {
        assert_eq!(server(line), Parse::NoMatch, "{line:?}");
    }
    assert_eq!(parse_command(O, &[0; MAX_CMD_LEN], 0), Parse::NoMatch);
    assert_eq!(parse_command(R, &[0; MAX_CMD_LEN], 0), Parse::NoMatch);
}

#[test]
fn v6_key_addr_has_ct_key_layout() {
    let FtpAddr::V6(bytes) = v6("2001:db8::1") else {
        unreachable!()
    };
    let w = FtpAddr::V6(bytes).key_addr().unwrap();
    let mut back = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        back[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    assert_eq!(back, bytes);
}

#[test]
fn layouts() {
    use core::mem::{align_of, offset_of};
    assert_eq!(offset_of!(ExpectKey, dport), 32);
    assert_eq!(offset_of!(Expectation, master), 8);
    assert_eq!(offset_of!(Expectation, nat_dport), 80);
    assert_eq!(offset_of!(Expectation, _pad), 84);
    assert_eq!(align_of::<Expectation>(), 8);
    assert_eq!(offset_of!(SeqAdj, offset_after), 8);
}
