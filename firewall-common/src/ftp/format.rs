//! The text NAT writes back into a command (`nf_nat_ftp`'s formats).

use super::FtpCmd;

/// Size of the buffer the `format_*` functions write into. The longest
/// output, `|1|255.255.255.255|65535|`, is 25 bytes.
pub const FMT_LEN: usize = 32;

/// Writes into a fixed buffer; bytes past its end are dropped (the callers'
/// outputs always fit).
struct Writer<'a> {
    out: &'a mut [u8; FMT_LEN],
    pos: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.pos) {
            *slot = b;
            self.pos += 1;
        }
    }

    fn text(&mut self, s: &[u8]) {
        for &b in s {
            self.byte(b);
        }
    }

    /// `%u`.
    fn decimal(&mut self, mut v: u16) {
        let mut digits = [0u8; 5];
        let mut first = digits.len();
        for (i, d) in digits.iter_mut().enumerate().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
            first = i;
            if v == 0 {
                break;
            }
        }
        for &d in digits.get(first..).unwrap_or(&[]) {
            self.byte(d);
        }
    }
}

/// `"%u,%u,%u,%u,%u,%u"`: the argument of PORT and 227 (`nf_nat_ftp_fmt_cmd`).
/// Returns the number of bytes written.
pub fn format_port(addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut w = Writer { out, pos: 0 };
    for b in addr {
        w.decimal(b as u16);
        w.byte(b',');
    }
    w.decimal(port >> 8);
    w.byte(b',');
    w.decimal(port & 0xff);
    w.pos
}

/// `"|1|%pI4|%u|"`: the argument of EPRT for IPv4. Always `|`, whatever
/// delimiter the client used.
pub fn format_eprt_v4(addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut w = Writer { out, pos: 0 };
    w.text(b"|1|");
    for (i, b) in addr.into_iter().enumerate() {
        if i > 0 {
            w.byte(b'.');
        }
        w.decimal(b as u16);
    }
    w.byte(b'|');
    w.decimal(port);
    w.byte(b'|');
    w.pos
}

/// `"|||%u|"`: the part of a 229 reply between the parentheses.
pub fn format_epsv(port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    let mut w = Writer { out, pos: 0 };
    w.text(b"|||");
    w.decimal(port);
    w.byte(b'|');
    w.pos
}

/// The replacement for `payload[start..end]` of a matched command when the
/// control connection is IPv4 NAT: `addr`:`port` is what the peer must now
/// connect to. Returns the length written.
pub fn format_rewrite(kind: FtpCmd, addr: [u8; 4], port: u16, out: &mut [u8; FMT_LEN]) -> usize {
    match kind {
        FtpCmd::Port | FtpCmd::Pasv227 => format_port(addr, port, out),
        FtpCmd::Eprt => format_eprt_v4(addr, port, out),
        FtpCmd::Epsv229 => format_epsv(port, out),
    }
}

#[cfg(test)]
mod tests;
