//! Stage 2: the argument of a located command (PORT and 227's
//! `h1,h2,h3,h4,p1,p2`, EPRT, 229's `(|||port|)`).

use super::{
    FtpAddr, FtpCmd, Parse,
    cursor::{Cursor, Step, Stop},
    eprt6::Eprt6Scanner,
};
use crate::{FAMILY_V4, FAMILY_V6};

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
    ///
    /// Mind the shape: the datapath's stage 2 (IPv4) is at the verifier's
    /// 512-byte combined stack limit, and a rewrite of this function that
    /// LLVM compiled with two more spill slots no longer loaded. Compare the
    /// eBPF object's stack use before and after changing it.
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

    /// The address of `<d>2<d>v6<d>port<d>`, after its first delimiter, up
    /// to and including `delim`. Read by [`Eprt6Scanner`], the parser the
    /// datapath feeds with `bpf_loop`, so that the host and the datapath
    /// accept the same addresses; the port is read by the caller, as for
    /// IPv4, with the same bounds the scanner applies.
    #[inline(always)]
    fn ipv6(&mut self, delim: u8) -> Step<[u8; 16]> {
        let mut scanner = Eprt6Scanner::new();
        for b in [delim, b'2', delim] {
            scanner.feed(b);
        }
        // Up to the closing delimiter, which no address contains (RFC 2428
        // §2; `eprt` has checked the delimiter).
        for _ in 0..ARG_LEN {
            let b = self.cur()?;
            self.bump();
            if scanner.feed(b) {
                return Err(Stop::Invalid);
            }
            if b == delim {
                break;
            }
        }
        // The scanner wants a port before it gives the address; any valid
        // one will do, the caller reads the real one.
        scanner.feed(b'1');
        scanner.feed(delim);
        match scanner.result() {
            Some((addr, _)) => Ok(addr),
            None => Err(Stop::Invalid),
        }
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
/// EPRT with an IPv6 address in its longest form and the line end, is 51
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
/// `FAMILY_V4` the verifier never walks the IPv6 path, where an `EPRT |2|`
/// address goes through [`Eprt6Scanner`] in a plain loop (the datapath
/// drives that scanner with `bpf_loop` instead; see the module docs).
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
