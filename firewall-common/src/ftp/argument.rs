//! Stage 2: the argument of a located command (PORT and 227's
//! `h1,h2,h3,h4,p1,p2`, EPRT, 229's `(|||port|)`).

use super::{
    FtpAddr, FtpCmd, Parse,
    cursor::{Cursor, Step, Stop},
};
use crate::{FAMILY_V4, FAMILY_V6};

/// Longest textual IPv6 address (`ffff:…:ffff:255.255.255.255`).
const MAX_V6_TEXT: usize = 45;

/// A match before it is turned into [`Parse::Match`].
struct Found {
    kind: FtpCmd,
    addr: FtpAddr,
    port: u16,
    start: usize,
    end: usize,
}

impl Cursor<'_> {
    /// `try_rfc959`: `h1,h2,h3,h4,p1,p2`. The byte after `p2` is present
    /// (see [`Cursor::decimal`]) but not consumed.
    #[inline(always)]
    fn rfc959(&mut self) -> Step<([u8; 4], u16)> {
        let addr = self.quad(b',')?;
        self.eat(b',')?;
        let p1 = self.byte_value()? as u16;
        self.eat(b',')?;
        let p2 = self.byte_value()? as u16;
        Ok((addr, (p1 << 8) | p2))
    }

    /// The end of a PORT or EPRT line: `\r\n` or `\n`.
    #[inline(always)]
    fn line_end(&mut self) -> Step<()> {
        match self.cur()? {
            b'\r' => {
                self.bump();
                self.eat(b'\n')
            }
            b'\n' => Ok(()),
            _ => Err(Stop::Invalid),
        }
    }

    /// Stage 2: the argument of `kind`, starting at `pos`.
    #[inline(always)]
    fn argument(&mut self, kind: FtpCmd, family: u8) -> Step<Found> {
        let start = self.pos;
        let (addr, port) = match kind {
            FtpCmd::Port | FtpCmd::Pasv227 => {
                let (a, port) = self.rfc959()?;
                (FtpAddr::V4(a), port)
            }
            FtpCmd::Eprt => self.eprt(family)?,
            FtpCmd::Epsv229 => (FtpAddr::None, self.epsv()?),
        };
        let end = self.pos;
        if port == 0 {
            return Err(Stop::Invalid);
        }
        match kind {
            FtpCmd::Port | FtpCmd::Eprt => self.line_end()?,
            // try_number stops after six numbers; a seventh is malformed.
            FtpCmd::Pasv227 => {
                if self.cur()? == b',' {
                    return Err(Stop::Invalid);
                }
            }
            FtpCmd::Epsv229 => self.eat(b')')?,
        }
        Ok(Found {
            kind,
            addr,
            port,
            start,
            end,
        })
    }

    /// `try_eprt`: `<d>1<d>a.b.c.d<d>port<d>` or `<d>2<d>v6<d>port<d>`, with
    /// any printable delimiter `<d>` that cannot occur in the address.
    #[inline(always)]
    fn eprt(&mut self, family: u8) -> Step<(FtpAddr, u16)> {
        let delim = self.cur()?;
        self.bump();
        let proto = self.cur()?;
        self.bump();
        let ok = match proto {
            b'1' => family != FAMILY_V6 && delimiter_ok(delim) && delim != b'.',
            b'2' => {
                family != FAMILY_V4
                    && delimiter_ok(delim)
                    && !matches!(delim, b':' | b'.')
                    && hex(delim).is_none()
            }
            _ => false,
        };
        if !ok {
            return Err(Stop::Invalid);
        }
        self.eat(delim)?;
        let addr = if proto == b'1' {
            let a = self.quad(b'.')?;
            self.eat(delim)?;
            FtpAddr::V4(a)
        } else {
            FtpAddr::V6(self.ipv6(delim)?)
        };
        let port = self.port_value()?;
        self.eat(delim)?;
        Ok((addr, port))
    }

    /// `in6_pton` up to and including `delim`: groups of hex digits (value
    /// ≤ 0xffff), one `::` standing for one or more zero groups, and an
    /// optional dotted IPv4 address as the last 32 bits.
    ///
    /// Kept cheap for the verifier: no digit counter and no rewind. The
    /// decimal reading of each group is accumulated alongside its hex value,
    /// in case a `.` turns it into the first byte of an IPv4 tail.
    #[inline(always)]
    fn ipv6(&mut self, delim: u8) -> Step<[u8; 16]> {
        let mut words = [0u16; 8];
        let mut n = 0usize;
        let mut gap: Option<usize> = None;
        let mut group = 0u32;
        let mut dec = 0u32;
        let mut digit = false;
        let mut dec_ok = true;
        // A group just ended with ':' (so "x:" at the end is malformed).
        let mut open_colon = false;

        if self.cur()? == b':' {
            // A leading colon must be half of "::".
            self.bump();
            if self.cur()? != b':' {
                return Err(Stop::Invalid);
            }
            self.bump();
            gap = Some(0);
        }
        for _ in 0..=MAX_V6_TEXT {
            let b = self.cur()?;
            if b == delim {
                break;
            }
            self.bump();
            if let Some(x) = hex(b) {
                group = (group << 4) | x as u32;
                if group > 0xffff {
                    return Err(Stop::Invalid);
                }
                if b.is_ascii_digit() {
                    // ≤ group, so no overflow.
                    dec = dec * 10 + (b - b'0') as u32;
                } else {
                    dec_ok = false;
                }
                digit = true;
                open_colon = false;
                continue;
            }
            match b {
                b':' if digit => {
                    match words.get_mut(n) {
                        Some(w) => *w = group as u16,
                        None => return Err(Stop::Invalid),
                    }
                    n += 1;
                    group = 0;
                    dec = 0;
                    dec_ok = true;
                    digit = false;
                    open_colon = true;
                }
                b':' if open_colon && gap.is_none() => {
                    gap = Some(n);
                    open_colon = false;
                }
                b'.' if digit && dec_ok && dec <= 255 && n + 2 <= words.len() => {
                    // The group read so far was the IPv4 tail's first byte.
                    let b2 = self.byte_value()?;
                    self.eat(b'.')?;
                    let b3 = self.byte_value()?;
                    self.eat(b'.')?;
                    let b4 = self.byte_value()?;
                    if let Some(w) = words.get_mut(n) {
                        *w = u16::from_be_bytes([dec as u8, b2]);
                    }
                    if let Some(w) = words.get_mut(n + 1) {
                        *w = u16::from_be_bytes([b3, b4]);
                    }
                    n += 2;
                    digit = false;
                    break;
                }
                _ => return Err(Stop::Invalid),
            }
        }
        // Also catches text longer than any address.
        self.eat(delim)?;
        if digit {
            match words.get_mut(n) {
                Some(w) => *w = group as u16,
                None => return Err(Stop::Invalid),
            }
            n += 1;
        } else if open_colon {
            return Err(Stop::Invalid);
        }
        match gap {
            Some(g) => {
                if n >= words.len() {
                    return Err(Stop::Invalid);
                }
                // Move the groups after "::" to the end, zeroes in between.
                let tail = n - g;
                for k in 0..words.len() {
                    if k >= tail {
                        break;
                    }
                    let from = n - 1 - k;
                    let to = words.len() - 1 - k;
                    let w = words.get(from).copied().unwrap_or(0);
                    if let Some(s) = words.get_mut(from) {
                        *s = 0;
                    }
                    if let Some(d) = words.get_mut(to) {
                        *d = w;
                    }
                }
            }
            None => {
                if n != words.len() {
                    return Err(Stop::Invalid);
                }
            }
        }
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(2).zip(words.iter()) {
            if let [hi, lo] = o {
                [*hi, *lo] = w.to_be_bytes();
            }
        }
        Ok(out)
    }

    /// `try_epsv_response`: `<d><d><d>port<d>`, after the `(`.
    #[inline(always)]
    fn epsv(&mut self) -> Step<u16> {
        let delim = self.cur()?;
        if !delimiter_ok(delim) {
            return Err(Stop::Invalid);
        }
        self.bump();
        self.eat(delim)?;
        self.eat(delim)?;
        let port = self.port_value()?;
        self.eat(delim)?;
        Ok(port)
    }
}

/// RFC 2428: "The delimiter character MUST be one of the ASCII characters in
/// range 33-126 inclusive"; never a digit, which the port is made of.
#[inline(always)]
fn delimiter_ok(b: u8) -> bool {
    (33..=126).contains(&b) && !b.is_ascii_digit()
}

#[inline(always)]
fn hex(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u16),
        b'a'..=b'f' => Some((b - b'a' + 10) as u16),
        b'A'..=b'F' => Some((b - b'A' + 10) as u16),
        _ => None,
    }
}

/// Size of the buffer [`parse_argument`] reads: the longest argument, an
/// EPRT with an IPv6 address in its longest form and the line end, is 57
/// bytes.
pub const ARG_LEN: usize = 64;

/// `parse_argument`'s `family` when an EPRT of either family is accepted.
pub const ANY_FAMILY: u8 = 0;

/// Stage 2 of [`parse_command`](super::parse_command): the argument of
/// `kind`, in the first `len` bytes of `arg`; `more`: the segment has bytes
/// after those, so running out means the argument is too long rather than
/// cut. `start` and `end` of a match are offsets in `arg`.
///
/// `family` is the control connection's ([`FAMILY_V4`], [`FAMILY_V6`]):
/// `try_eprt` refuses an EPRT of the other family. With a constant
/// `FAMILY_V4` the verifier never walks the IPv6 address parser, which on
/// its own exceeds the 1M-instruction budget (see the module docs).
/// [`ANY_FAMILY`] accepts both.
#[inline(always)]
pub fn parse_argument(
    kind: FtpCmd,
    family: u8,
    arg: &[u8; ARG_LEN],
    len: usize,
    more: bool,
) -> Parse {
    let mut c = Cursor::new(arg, len, more);
    match c.argument(kind, family) {
        Ok(Found {
            kind,
            addr,
            port,
            start,
            end,
        }) => Parse::Match {
            kind,
            addr,
            port,
            // ≤ ARG_LEN.
            start: start as u16,
            end: end as u16,
        },
        Err(Stop::Partial) => Parse::Partial,
        Err(Stop::Invalid) => Parse::Invalid,
    }
}
