//! The text NAT writes back into a command (`nf_nat_ftp`'s formats).
//!
//! Written for the verifier, so that the datapath can call these rather
//! than keep a copy: no digit array on the stack (its partial writes trip
//! "invalid size of register fill" in the FTP program), one division per
//! decimal place, and every index masked into the buffer. The tests compare
//! the output with std's formatting of netfilter's format strings.

use super::FtpCmd;

/// Size of the buffer the `format_*` functions write into. The longest
/// output, `|1|255.255.255.255|65535|`, is 25 bytes.
pub const FMT_LEN: usize = 32;
// Indexes are masked with FMT_LEN - 1.
const _: () = assert!(FMT_LEN.is_power_of_two());

/// Writes `b` at `pos`; returns the next position.
#[inline(always)]
fn put(out: &mut [u8; FMT_LEN], pos: usize, b: u8) -> usize {
    out[pos & (FMT_LEN - 1)] = b;
    pos + 1
}

/// `%u` of `v` at `pos`; returns the next position.
#[inline(always)]
fn put_dec(out: &mut [u8; FMT_LEN], mut pos: usize, v: u16) -> usize {
    let v = v as u32;
    let mut started = false;
    for div in [10_000u32, 1_000, 100, 10, 1] {
        let d = (v / div) % 10;
        if d != 0 || started || div == 1 {
            pos = put(out, pos, b'0' + d as u8);
            started = true;
        }
    }
    pos
}

/// `"%u,%u,%u,%u,%u,%u"`: the argument of PORT and 227 (`nf_nat_ftp_fmt_cmd`).
/// Returns the number of bytes written.
#[inline(always)]
pub fn format_port(addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut pos = 0;
    for b in addr {
        pos = put_dec(out, pos, b as u16);
        pos = put(out, pos, b',');
    }
    pos = put_dec(out, pos, port >> 8);
    pos = put(out, pos, b',');
    put_dec(out, pos, port & 0xff)
}

/// `"|1|%pI4|%u|"`: the argument of EPRT for IPv4. Always `|`, whatever
/// delimiter the client used.
#[inline(always)]
pub fn format_eprt_v4(addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut pos = 0;
    for b in *b"|1|" {
        pos = put(out, pos, b);
    }
    for (i, b) in addr.into_iter().enumerate() {
        pos = put_dec(out, pos, b as u16);
        pos = put(out, pos, if i == 3 { b'|' } else { b'.' });
    }
    pos = put_dec(out, pos, port);
    put(out, pos, b'|')
}

/// `"|||%u|"`: the part of a 229 reply between the parentheses.
#[inline(always)]
pub fn format_epsv(port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut pos = 0;
    for b in *b"|||" {
        pos = put(out, pos, b);
    }
    pos = put_dec(out, pos, port);
    put(out, pos, b'|')
}

/// The replacement for `payload[start..end]` of a matched command when the
/// control connection is IPv4 NAT: `addr`:`port` is what the peer must now
/// connect to. Returns the length written.
#[inline(always)]
pub fn format_rewrite(kind: FtpCmd, addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    match kind {
        FtpCmd::Port | FtpCmd::Pasv227 => format_port(addr, port, out),
        FtpCmd::Eprt => format_eprt_v4(addr, port, out),
        FtpCmd::Epsv229 => format_epsv(port, out),
    }
}

#[cfg(test)]
mod tests;
