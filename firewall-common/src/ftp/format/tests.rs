extern crate std;

use super::*;
use crate::ftp::{FtpAddr, test_support::*};

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
    let mut rng = Rng(0x1234_5678_9abc_def0);
    for i in 0..5000u32 {
        let a = (rng.next() as u32).to_be_bytes();
        let port = match i {
            0 => 1,
            1 => 65535,
            2 => 256,
            3 => 255,
            _ => (rng.next() as u16).max(1),
        };
        let mut v6 = [0u8; 16];
        for b in v6.iter_mut() {
            // Runs of zeroes exercise "::".
            *b = if rng.below(3) == 0 {
                0
            } else {
                rng.next() as u8
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
