extern crate std;
use std::{
    format,
    net::Ipv6Addr,
    string::{String, ToString},
};

use super::*;

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
    let mut x: u64 = 0x1234_5678_9abc_def0;
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
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
