//! Helpers the FTP tests share: segments from text, the matches they
//! should give, and the canonical lines NAT writes.

extern crate std;
use std::{format, net::Ipv6Addr, string::String};

use super::*;

pub(super) fn window(s: &[u8]) -> [u8; MAX_CMD_LEN] {
    let mut buf = [0u8; MAX_CMD_LEN];
    let n = s.len().min(MAX_CMD_LEN);
    buf[..n].copy_from_slice(&s[..n]);
    buf
}

pub(super) fn parse(dir: CtDir, s: &[u8]) -> Parse {
    assert!(s.len() <= MAX_CMD_LEN);
    parse_command(dir, &window(s), s.len())
}

pub(super) fn client(s: &str) -> Parse {
    parse(CtDir::Original, s.as_bytes())
}

pub(super) fn server(s: &str) -> Parse {
    parse(CtDir::Reply, s.as_bytes())
}

pub(super) fn m(kind: FtpCmd, addr: FtpAddr, port: u16, start: u16, end: u16) -> Parse {
    Parse::Match {
        kind,
        addr,
        port,
        start,
        end,
    }
}

/// Asserts a match whose range is exactly the first occurrence of
/// `range_text` in `line`.
pub(super) fn check(
    dir: CtDir,
    line: &str,
    kind: FtpCmd,
    addr: FtpAddr,
    port: u16,
    range_text: &str,
) {
    let start = line.find(range_text).expect("range text in line");
    let end = start + range_text.len();
    assert_eq!(
        parse(dir, line.as_bytes()),
        m(kind, addr, port, start as u16, end as u16),
        "{line:?}"
    );
}

pub(super) fn v6(s: &str) -> FtpAddr {
    FtpAddr::V6(s.parse::<Ipv6Addr>().unwrap().octets())
}

pub(super) const O: CtDir = CtDir::Original;
pub(super) const R: CtDir = CtDir::Reply;

pub(super) fn formatted(f: impl FnOnce(&mut [u8; FMT_LEN]) -> usize) -> String {
    let mut out = [0u8; FMT_LEN];
    let n = f(&mut out);
    assert!(n <= FMT_LEN);
    String::from_utf8(out[..n].to_vec()).unwrap()
}

/// The canonical line for a match, as NAT would write it, and the range
/// of the rewritten text in it.
pub(super) fn canonical(kind: FtpCmd, addr: FtpAddr, port: u16) -> (CtDir, String, String) {
    let text = match (kind, addr) {
        (FtpCmd::Port | FtpCmd::Pasv227, FtpAddr::V4(a)) => formatted(|o| format_port(a, port, o)),
        (FtpCmd::Eprt, FtpAddr::V4(a)) => formatted(|o| format_eprt_v4(a, port, o)),
        (FtpCmd::Eprt, FtpAddr::V6(a)) => format!("|2|{}|{port}|", Ipv6Addr::from(a)),
        (FtpCmd::Epsv229, FtpAddr::None) => formatted(|o| format_epsv(port, o)),
        other => panic!("impossible match {other:?}"),
    };
    let (dir, line) = match kind {
        FtpCmd::Port => (O, format!("PORT {text}\r\n")),
        FtpCmd::Eprt => (O, format!("EPRT {text}\r\n")),
        FtpCmd::Pasv227 => (R, format!("227 Entering Passive Mode ({text}).\r\n")),
        FtpCmd::Epsv229 => (
            R,
            format!("229 Entering Extended Passive Mode ({text})\r\n"),
        ),
    };
    (dir, line, text)
}
