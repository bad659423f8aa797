extern crate std;
use std::{
    format,
    net::Ipv6Addr,
    string::{String, ToString},
};

use super::*;
use crate::testing::Rng;

fn scan(text: &str) -> Option<(Ipv6Addr, u16, u32)> {
    let mut s = Eprt6Scanner::new();
    for b in text.bytes() {
        if s.feed(b) {
            break;
        }
    }
    s.result().map(|(a, p)| (Ipv6Addr::from(a), p, s.pos))
}

#[test]
fn parses_the_forms_clients_send() {
    for (addr, port) in [
        ("fd00:1::2", 50000u16),
        ("::1", 21),
        ("2001:db8:0:0:0:0:0:1", 1),
        ("fe80::", 65535),
        ("1:2:3:4:5:6:7:8", 4242),
        ("1::8", 7),
        ("ABCD:ef01::", 2121),
    ] {
        let text = format!("|2|{addr}|{port}|");
        let want: Ipv6Addr = addr.parse().unwrap();
        assert_eq!(scan(&text), Some((want, port, text.len() as u32)), "{text}");
        let text = format!("!2!{addr}!{port}!");
        assert_eq!(scan(&text).map(|x| x.0), Some(want), "{text}");
    }
}

#[test]
fn rejects_malformed_arguments() {
    for text in [
        "|1|1.2.3.4|21|",
        "|2|1:2:3:4:5:6:7|21|",
        "|2|1:2:3:4:5:6:7:8:9|21|",
        "|2|1::2::3|21|",
        "|2|:1::2|21|",
        "|2|1::2:|21|",
        "|2|12345::|21|",
        "|2|::1|0|",
        "|2|::1|65536|",
        "|2|::ffff:1.2.3.4|21|",
        "a2a::1a21a",
        ":2:::1:21:",
        "|2|::g|21|",
        "|2|::1|21",
    ] {
        assert_eq!(scan(text), None, "{text}");
    }
}

/// Property: on random well-formed addresses the scanner agrees with
/// std's parser, in every spelling std's Display produces.
#[test]
fn agrees_with_std_on_random_addresses() {
    let mut rng = Rng::xorshift64(0x1234_5678_9abc_def0);
    for _ in 0..50_000 {
        let x = rng.next_u64();
        let mut b = x.to_be_bytes().repeat(2);
        // Runs of zero groups, so `::` appears.
        let z = (x >> 3) as usize % 8;
        let len = (x >> 9) as usize % 5;
        for i in z..(z + len).min(8) {
            b[2 * i] = 0;
            b[2 * i + 1] = 0;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&b);
        let addr = Ipv6Addr::from(a);
        if addr.to_ipv4_mapped().is_some() || addr.to_string().contains('.') {
            continue;
        }
        let port = ((x >> 20) as u16).max(1);
        let text: String = format!("|2|{addr}|{port}|");
        assert_eq!(
            scan(&text).map(|t| (t.0, t.1)),
            Some((addr, port)),
            "{text}"
        );
    }
}

/// The two ways an `EPRT |2|` argument is read agree: the datapath's, on an
/// IPv6 control connection (`firewall-ebpf`'s `ftp::eprt6`: every byte of
/// the argument to the scanner, the address and port from it), and stage 2's
/// ([`parse_argument`](crate::ftp::parse_argument), which takes the address
/// from the scanner and reads the port and the line end itself). On random,
/// often corrupted, arguments both give the same address, port and end, or
/// stage 2 refuses and the datapath's reading stopped short of a line end
/// (stage 2 also wants the line to end there; the datapath does not check).
#[test]
fn stage_2_reads_what_the_datapaths_scanner_reads() {
    use std::vec::Vec;

    use crate::{
        FAMILY_V6,
        ftp::{ARG_LEN, FtpAddr, FtpCmd, Parse, parse_argument},
    };

    let mut rng = Rng::xorshift64_star(0x0e9a_76e6_5ca1_1e55);
    let corrupt = b"0123456789abcdefABCDEF:.|!x ";
    let mut outcomes = [0usize; 2];
    for _ in 0..100_000 {
        let mut b = [0u8; 16];
        for x in b.iter_mut() {
            *x = if rng.below(2) == 0 {
                0
            } else {
                rng.next_u64() as u8
            };
        }
        let addr = Ipv6Addr::from(b);
        let mut text = match rng.below(3) {
            0 => format!("{addr}"),
            1 => addr
                .segments()
                .iter()
                .map(|g| format!("{g:x}"))
                .collect::<Vec<_>>()
                .join(":"),
            _ => addr
                .segments()
                .iter()
                .map(|g| format!("{g:04X}"))
                .collect::<Vec<_>>()
                .join(":"),
        }
        .into_bytes();
        for _ in 0..rng.below(3) {
            let i = rng.below(text.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if i < text.len() => {
                    text.remove(i);
                }
                1 => text.insert(i, *rng.pick(corrupt)),
                _ if i < text.len() => text[i] = *rng.pick(corrupt),
                _ => {}
            }
        }
        let d = *rng.pick(&['|', '!', '#', 'x', ':', '1']);
        let port = match rng.below(4) {
            0 => format!("{}", rng.below(70_000)),
            1 => format!("0{}", rng.below(1000)),
            _ => format!("{}", 1 + rng.below(65_535)),
        };
        let text = String::from_utf8(text).unwrap();
        let arg = format!("{d}2{d}{text}{d}{port}{d}\r\n");
        if arg.len() > ARG_LEN {
            continue;
        }
        let mut buf = [0u8; ARG_LEN];
        buf[..arg.len()].copy_from_slice(arg.as_bytes());

        let mut scanner = Eprt6Scanner::new();
        for &b in arg.as_bytes() {
            if scanner.feed(b) {
                break;
            }
        }
        let datapath = scanner.result().map(|(a, p)| (a, p, scanner.pos as u16));
        match parse_argument(FtpCmd::Eprt, FAMILY_V6, &buf, arg.len(), false) {
            Parse::Match {
                addr: FtpAddr::V6(a),
                port,
                start: 0,
                end,
                ..
            } => {
                assert_eq!(datapath, Some((a, port, end)), "{arg:?}");
                outcomes[0] += 1;
            }
            other => {
                assert!(!matches!(other, Parse::Match { .. }), "{arg:?}: {other:?}");
                if let Some((_, _, end)) = datapath {
                    let rest = &arg.as_bytes()[end as usize..];
                    assert!(
                        !rest.starts_with(b"\r\n") && !rest.starts_with(b"\n"),
                        "{arg:?}: stage 2 says {other:?}"
                    );
                }
                outcomes[1] += 1;
            }
        }
    }
    assert!(outcomes.iter().all(|&n| n > 10_000), "{outcomes:?}");
}
