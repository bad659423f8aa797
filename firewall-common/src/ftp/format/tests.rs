extern crate std;

use super::*;
use crate::{
    ftp::{FtpAddr, test_support::*},
    testing::Rng,
};

#[test]
fn format_matches_netfilter_text() {
    assert_eq!(
        formatted(|o| format_port([10, 0, 0, 1], 1025, o)),
        "10,0,0,1,4,1"
    );
    assert_eq!(
        formatted(|o| format_port([255; 4], 65535, o)),
        "255,255,255,255,255,255"
    );
    assert_eq!(formatted(|o| format_port([0; 4], 0, o)), "0,0,0,0,0,0");
    assert_eq!(
        formatted(|o| format_eprt_v4([132, 235, 1, 2], 6275, o)),
        "|1|132.235.1.2|6275|"
    );
    assert_eq!(
        formatted(|o| format_eprt_v4([255; 4], 65535, o)),
        "|1|255.255.255.255|65535|"
    );
    assert_eq!(formatted(|o| format_epsv(6446, o)), "|||6446|");
    assert_eq!(formatted(|o| format_epsv(0, o)), "|||0|");
    assert_eq!(
        formatted(|o| format_rewrite(FtpCmd::Pasv227, [1, 2, 3, 4], 258, o)),
        "1,2,3,4,1,2"
    );
}

#[test]
fn format_round_trips_through_the_parser() {
    let mut rng = Rng::xorshift64_star(0x1234_5678_9abc_def0);
    for i in 0..5000u32 {
        let a = (rng.next_u64() as u32).to_be_bytes();
        let port = match i {
            0 => 1,
            1 => 65535,
            2 => 256,
            3 => 255,
            _ => (rng.next_u64() as u16).max(1),
        };
        let mut v6 = [0u8; 16];
        for b in v6.iter_mut() {
            // Runs of zeroes exercise "::".
            *b = if rng.below(3) == 0 {
                0
            } else {
                rng.next_u64() as u8
            };
        }
        for (kind, addr) in [
            (FtpCmd::Port, FtpAddr::V4(a)),
            (FtpCmd::Pasv227, FtpAddr::V4(a)),
            (FtpCmd::Eprt, FtpAddr::V4(a)),
            (FtpCmd::Eprt, FtpAddr::V6(v6)),
            (FtpCmd::Epsv229, FtpAddr::None),
        ] {
            let (dir, line, text) = canonical(kind, addr, port);
            check(dir, &line, kind, addr, port, &text);
        }
    }
}

/// The verifier-shaped formatter against std's formatting of netfilter's
/// format strings (`"%u,%u,%u,%u,%u,%u"`, `"|1|%pI4|%u|"`, `"|||%u|"`), for
/// every command, on every decimal width of each field and on random
/// values. The buffer starts dirty so that a byte not written shows.
#[test]
fn format_rewrite_is_netfilters_text() {
    use std::{format, net::Ipv4Addr};

    // Every width a field can have, and the carries between them.
    const EDGES: [u16; 12] = [0, 1, 9, 10, 99, 100, 255, 256, 999, 1000, 9999, 65535];
    let mut rng = Rng::xorshift64_star(0x5eed_f0f0_1234_5678);
    let mut cases: std::vec::Vec<([u8; 4], u16)> = std::vec::Vec::new();
    for &p in &EDGES {
        for &b in &EDGES {
            let b = (b & 0xff) as u8;
            cases.push(([b, 255 - b, b / 3, b], p));
        }
    }
    for _ in 0..100_000 {
        let a = (rng.next_u64() as u32).to_be_bytes();
        cases.push((a, rng.next_u64() as u16));
    }
    for (a, port) in cases {
        for kind in [FtpCmd::Port, FtpCmd::Pasv227, FtpCmd::Eprt, FtpCmd::Epsv229] {
            let want = match kind {
                FtpCmd::Port | FtpCmd::Pasv227 => format!(
                    "{},{},{},{},{},{}",
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    port >> 8,
                    port & 0xff
                ),
                FtpCmd::Eprt => format!("|1|{}|{port}|", Ipv4Addr::from(a)),
                FtpCmd::Epsv229 => format!("|||{port}|"),
            };
            let mut out = [b'#'; FMT_LEN];
            let n = format_rewrite(kind, a, port, &mut out);
            assert_eq!(&out[..n], want.as_bytes(), "{kind:?} {a:?} {port}");
            assert!(out[n..].iter().all(|&b| b == b'#'), "{kind:?} {a:?} {port}");
        }
    }
}
