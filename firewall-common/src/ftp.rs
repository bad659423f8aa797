//! The FTP connection-tracking helper, minus the kernel: command parsing,
//! the text NAT writes back, the expectation a command creates, and TCP
//! sequence adjustment after a rewrite changed a segment's length.
//!
//! Mirrors `nf_conntrack_ftp.c`, `nf_nat_ftp.c` and `nf_conntrack_seqadj.c`.
//! Everything here runs in eBPF programs: no allocation, no recursion, no
//! reachable panics, every loop bounded by a small constant, and the input is
//! the fixed window the datapath copies out of a segment: at most
//! [`MAX_CMD_LEN`] bytes of payload.
//!
//! # What the datapath does with a [`Parse`]
//!
//! The helper looks at a segment only when netfilter's `help()` would: an
//! established control connection, a segment with data, starting right after
//! a newline (`seq_aft_nl`). Then:
//!
//! * [`Parse::Match`]: check the address ([`bounce_ok`]; the address family
//!   must be the connection's, see [`FtpAddr::family`]), create the
//!   expectation ([`ExpectKey::for_command`], [`Expectation::for_command`]),
//!   and if the connection is NATed rewrite `payload[start..end]` with
//!   [`format_rewrite`] and record the length change with
//!   [`SeqAdj::record`].
//! * [`Parse::NoMatch`]: accept; nothing to do.
//! * [`Parse::Partial`] and [`Parse::Invalid`]: netfilter answers both with
//!   `NF_DROP` ("partial matching of ..."). A command split across segments
//!   must not be parsed from its first half, and the sender retransmits.
//!
//! # Where we are stricter than netfilter
//!
//! netfilter's parsers are lenient in ways that only matter to malformed or
//! hostile input; each of these is an `Invalid` (dropped) here, or a
//! `NoMatch` where noted:
//!
//! * Numbers are bounded: an address byte is 1–3 digits and ≤ 255, a port
//!   1–5 digits and ≤ 65535. `try_number` and `get_port` accumulate without
//!   a bound and silently wrap.
//! * Port 0 is refused for every command (netfilter refuses it only in
//!   `get_port`, i.e. for EPRT and EPSV).
//! * PORT and EPRT must end the line (`\r\n`, or a bare `\n`) right after
//!   the argument; netfilter checks `\r` for PORT and nothing for EPRT. 229
//!   must close with `)`, which `try_epsv_response` does not check.
//! * The verb must be followed by a space (more spaces are skipped); netfilter
//!   scans from the verb to the first space anywhere, so `PORTX 1,2,...`
//!   matches there. Here that is `NoMatch`.
//! * The scans to the first digit (227) and to `(` (229) stop at the end of
//!   the line.
//! * An EPRT delimiter may not be a character of the address it delimits
//!   (RFC 2428 §2): not `.` for IPv4, not a hex digit, `:` or `.` for IPv6.
//! * A segment longer than the window whose command line does not end inside
//!   the window is `Invalid`, not `Partial`: retransmitting it cannot help.
//!
//! # Verifier cost, and how the datapath should call this
//!
//! The verifier walks every path and keeps apart states whose exactly-known
//! values differ. Every byte access makes its offset exactly known, so a
//! parser that reads an argument wherever it starts in the segment is
//! verified once per possible start (and, through the end-of-data checks,
//! once per possible segment length). Measured on kernel 6.18 with scratch
//! XDP programs that call these functions:
//!
//! * [`parse_command`] in one program: over the 1M-instruction limit.
//! * [`locate_command`] alone: 15k instructions.
//! * [`parse_argument`] with a constant [`FAMILY_V4`]: 27k. The IPv6
//!   address parser, reachable with [`FAMILY_V6`] or [`ANY_FAMILY`], is
//!   over the limit on its own (positions × groups × where `::` was).
//! * Locate, then `parse_argument(kind, FAMILY_V4, ..)` on the argument
//!   loaded with `bpf_xdp_load_bytes` at its offset, then
//!   [`format_rewrite`], [`SeqAdj`] and an expectation insert: 103k, and
//!   the results agree with the host's for every test line. This works only
//!   if stage 1's outputs (`kind`, `arg`, the argument's length and whether
//!   the segment goes on) reach stage 2 through map memory (a per-CPU
//!   scratch value written and read back), or across a tail call: the
//!   verifier does not track map memory, so stage 2 is verified once.
//!   Passed in registers, the same pipeline exceeds the limit.
//!
//! So the datapath should: copy the first [`MAX_CMD_LEN`] payload bytes and
//! call [`locate_command`]; store its result in per-CPU scratch; load
//! [`ARG_LEN`] bytes at the payload offset plus `arg` with
//! `bpf_skb_load_bytes`; read the result back and call [`parse_argument`]
//! with the connection's family as a constant (IPv6 control connections in
//! a program of their own, e.g. a tail call). [`parse_command`] is the same
//! composition in plain Rust; the tests drive both.

use crate::{CtDir, CtKey, FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

/// Bytes of a segment's payload the datapath copies for the helper. The
/// longest line we must understand, an EPRT with an IPv6 address in its
/// longest form, is 62 bytes; a 227 with a typical text, about 55.
pub const MAX_CMD_LEN: usize = 96;

/// Size of the buffer the `format_*` functions write into. The longest
/// output, `|1|255.255.255.255|65535|`, is 25 bytes.
pub const FMT_LEN: usize = 32;

/// Longest textual IPv6 address (`ffff:…:ffff:255.255.255.255`).
const MAX_V6_TEXT: usize = 45;

/// `nf_ct_ftp_policy.timeout`: an expectation lives five minutes.
pub const EXPECT_TIMEOUT_NS: u64 = 5 * 60 * 1_000_000_000;

/// `nf_ct_ftp_policy.max_expected`: a new command replaces the connection's
/// pending expectation rather than adding one.
pub const MAX_EXPECTED: u32 = 1;

/// Well-known FTP control port (`ports[0]` of the module).
pub const FTP_PORT: u16 = 21;

/// The commands the helper understands (`enum nf_ct_ftp_type`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpCmd {
    /// Client: `PORT h1,h2,h3,h4,p1,p2` (RFC 959), active mode.
    Port = 1,
    /// Client: `EPRT |1|a.b.c.d|port|` or `|2|v6|port|` (RFC 2428).
    Eprt = 2,
    /// Server: `227 ... h1,h2,h3,h4,p1,p2`, the reply to PASV.
    Pasv227 = 3,
    /// Server: `229 ... (|||port|)`, the reply to EPSV.
    Epsv229 = 4,
}

/// The address a command carries. Bytes in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpAddr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// EPSV carries only a port: the data connection goes to the address
    /// the control connection already uses.
    None,
}

impl FtpAddr {
    /// [`FAMILY_V4`] or [`FAMILY_V6`]; `None` for EPSV. netfilter's
    /// `try_eprt` refuses an EPRT whose family differs from the control
    /// connection's, so the datapath treats a mismatch as `Invalid`.
    pub const fn family(&self) -> Option<u8> {
        match self {
            FtpAddr::V4(_) => Some(FAMILY_V4),
            FtpAddr::V6(_) => Some(FAMILY_V6),
            FtpAddr::None => None,
        }
    }

    /// The address in [`CtKey`]'s layout (raw network order in memory; IPv4
    /// in word 0).
    pub fn key_addr(&self) -> Option<[u32; 4]> {
        match self {
            FtpAddr::V4(a) => Some(v4_key_addr(*a)),
            FtpAddr::V6(a) => {
                let mut w = [0u32; 4];
                for (word, b) in w.iter_mut().zip(a.chunks_exact(4)) {
                    if let [b0, b1, b2, b3] = *b {
                        *word = u32::from_ne_bytes([b0, b1, b2, b3]);
                    }
                }
                Some(w)
            }
            FtpAddr::None => None,
        }
    }
}

/// An IPv4 address in [`CtKey`]'s layout.
#[inline(always)]
pub const fn v4_key_addr(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// The IPv4 address stored in a [`CtKey`] address field, in wire order.
#[inline(always)]
pub const fn key_addr_v4(addr: &[u32; 4]) -> [u8; 4] {
    addr[0].to_ne_bytes()
}

/// What [`parse_command`] found at the start of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A complete command. `port` is host order. `payload[start..end]` is
    /// the text NAT replaces (netfilter's `matchoff`/`matchlen`): the
    /// `h1,...,p2` digits for PORT and 227; `|1|...|port|` with both outer
    /// delimiters for EPRT; `|||port|` for EPSV.
    Match {
        kind: FtpCmd,
        addr: FtpAddr,
        port: u16,
        start: u16,
        end: u16,
    },
    /// Not a command the helper cares about.
    NoMatch,
    /// The segment ends before the command does; everything so far is a
    /// valid beginning.
    Partial,
    /// The command is there but its argument is malformed.
    Invalid,
}

/// Why parsing stopped short of a match.
enum Stop {
    Partial,
    Invalid,
}

type Step<T> = Result<T, Stop>;

/// How a fixed verb compares with the start of the segment.
enum Verb {
    Full,
    Prefix,
    No,
}

/// A match before it is turned into [`Parse::Match`].
struct Found {
    kind: FtpCmd,
    addr: FtpAddr,
    port: u16,
    start: usize,
    end: usize,
}

/// Reads a buffer a byte at a time; every access is bounds-checked by
/// `get`, so no index can panic.
struct Cursor<'a> {
    buf: &'a [u8],
    /// Bytes of the segment present in `buf`.
    avail: usize,
    /// The segment goes on past `avail`.
    truncated: bool,
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn new(buf: &'a [u8], avail: usize, truncated: bool) -> Self {
        Self {
            buf,
            avail: if avail < buf.len() { avail } else { buf.len() },
            truncated: truncated || avail > buf.len(),
            pos: 0,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize) -> Option<u8> {
        if i < self.avail {
            self.buf.get(i).copied()
        } else {
            None
        }
    }

    /// Running out of bytes: the rest is in the next segment, unless this
    /// segment had more bytes than the buffer holds.
    #[inline(always)]
    fn out_of_data(&self) -> Stop {
        if self.truncated {
            Stop::Invalid
        } else {
            Stop::Partial
        }
    }

    /// The current byte, without consuming it.
    #[inline(always)]
    fn cur(&self) -> Step<u8> {
        match self.at(self.pos) {
            Some(b) => Ok(b),
            None => Err(self.out_of_data()),
        }
    }

    #[inline(always)]
    fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `want` or fails.
    #[inline(always)]
    fn eat(&mut self, want: u8) -> Step<()> {
        if self.cur()? == want {
            self.bump();
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    /// Compares the start of the segment with a verb, ignoring ASCII case
    /// (`strncasecmp` in `find_pattern`).
    #[inline(always)]
    fn verb(&self, pat: &[u8; 4]) -> Verb {
        for (i, &p) in pat.iter().enumerate() {
            match self.at(i) {
                None => return Verb::Prefix,
                Some(b) if b.to_ascii_uppercase() == p => {}
                Some(_) => return Verb::No,
            }
        }
        Verb::Full
    }

    /// A decimal number of 1..=`max_digits` digits, at most `max`. Stops at
    /// the first non-digit, which must be present: at the end of the data
    /// more digits could follow.
    #[inline(always)]
    fn decimal(&mut self, max_digits: u32, max: u32) -> Step<u32> {
        let mut value = 0u32;
        let mut digits = 0u32;
        // One pass per digit plus one to see the byte after the last.
        for _ in 0..6 {
            let b = self.cur()?;
            if !b.is_ascii_digit() {
                break;
            }
            if digits == max_digits {
                return Err(Stop::Invalid);
            }
            value = value * 10 + (b - b'0') as u32;
            if value > max {
                return Err(Stop::Invalid);
            }
            digits += 1;
            self.bump();
        }
        if digits == 0 {
            return Err(Stop::Invalid);
        }
        Ok(value)
    }

    #[inline(always)]
    fn byte_value(&mut self) -> Step<u8> {
        Ok(self.decimal(3, 255)? as u8)
    }

    #[inline(always)]
    fn port_value(&mut self) -> Step<u16> {
        Ok(self.decimal(5, 65535)? as u16)
    }

    /// `a<sep>b<sep>c<sep>d`, each 0..=255.
    #[inline(always)]
    fn quad(&mut self, sep: u8) -> Step<[u8; 4]> {
        let mut a = [0u8; 4];
        for (i, slot) in a.iter_mut().enumerate() {
            if i > 0 {
                self.eat(sep)?;
            }
            *slot = self.byte_value()?;
        }
        Ok(a)
    }

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

    /// After a client verb: a space, then any further spaces. `Ok(false)`
    /// when the verb is only the start of a longer word.
    #[inline(always)]
    fn arguments(&mut self) -> Step<bool> {
        match self.cur()? {
            b' ' => {}
            b'\r' | b'\n' => return Err(Stop::Invalid),
            _ => return Ok(false),
        }
        for _ in 0..MAX_CMD_LEN {
            if self.cur()? != b' ' {
                break;
            }
            self.bump();
        }
        Ok(true)
    }

    /// Moves to the first byte satisfying `stop`, failing at the end of the
    /// line.
    #[inline(always)]
    fn scan_to(&mut self, stop: impl Fn(u8) -> bool) -> Step<()> {
        for _ in 0..MAX_CMD_LEN {
            let b = self.cur()?;
            if stop(b) {
                return Ok(());
            }
            if b == b'\n' {
                return Err(Stop::Invalid);
            }
            self.bump();
        }
        Err(self.out_of_data())
    }

    /// Stage 1: the verb, and what precedes the argument. Leaves `pos` at
    /// the argument.
    #[inline(always)]
    fn locate(&mut self, dir: CtDir) -> Step<Option<FtpCmd>> {
        let verbs: (&[u8; 4], &[u8; 4]) = match dir {
            CtDir::Original => (b"PORT", b"EPRT"),
            CtDir::Reply => (b"227 ", b"229 "),
        };
        let first = match (self.verb(verbs.0), self.verb(verbs.1)) {
            (Verb::Full, _) => true,
            (_, Verb::Full) => false,
            (Verb::Prefix, _) | (_, Verb::Prefix) => return Err(self.out_of_data()),
            (Verb::No, Verb::No) => return Ok(None),
        };
        self.pos = 4;
        let kind = match (dir, first) {
            (CtDir::Original, true) => FtpCmd::Port,
            (CtDir::Original, false) => FtpCmd::Eprt,
            (CtDir::Reply, true) => FtpCmd::Pasv227,
            (CtDir::Reply, false) => FtpCmd::Epsv229,
        };
        match kind {
            FtpCmd::Port | FtpCmd::Eprt => {
                if !self.arguments()? {
                    return Ok(None);
                }
            }
            // try_rfc1123: "an FTP client cannot assume that the
            // parentheses shown on page 40 of RFC-959 will be present ...
            // must scan the reply for the first digit".
            FtpCmd::Pasv227 => self.scan_to(|b| b.is_ascii_digit())?,
            FtpCmd::Epsv229 => {
                self.scan_to(|b| b == b'(')?;
                self.bump();
            }
        }
        Ok(Some(kind))
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

/// What [`locate_command`] found at the start of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Located {
    /// `kind`'s argument starts at payload offset `arg`.
    Command {
        kind: FtpCmd,
        arg: u16,
    },
    NoMatch,
    Partial,
    Invalid,
}

/// Stage 1 of [`parse_command`]: the verb, and the text before the argument
/// (spaces after PORT/EPRT, the text of a 227 up to the first digit, of a
/// 229 up to and including `(`).
#[inline(always)]
pub fn locate_command(dir: CtDir, payload: &[u8; MAX_CMD_LEN], len: usize) -> Located {
    if len == 0 {
        return Located::NoMatch;
    }
    let mut c = Cursor::new(payload, len, false);
    match c.locate(dir) {
        // ≤ MAX_CMD_LEN.
        Ok(Some(kind)) => Located::Command {
            kind,
            arg: c.pos as u16,
        },
        Ok(None) => Located::NoMatch,
        Err(Stop::Partial) => Located::Partial,
        Err(Stop::Invalid) => Located::Invalid,
    }
}

/// `parse_argument`'s `family` when an EPRT of either family is accepted.
pub const ANY_FAMILY: u8 = 0;

/// Stage 2 of [`parse_command`]: the argument of `kind`, in the first
/// `len` bytes of `arg`; `more`: the segment has bytes after those, so
/// running out means the argument is too long rather than cut. `start`
/// and `end` of a match are offsets in `arg`.
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

/// Parses the FTP command or reply at the start of a segment (netfilter's
/// `find_pattern` with `search[dir]`).
///
/// `dir` is the segment's direction on the control connection: client
/// commands (PORT, EPRT) travel [`CtDir::Original`], server replies (227,
/// 229) [`CtDir::Reply`]. `payload` holds the first `min(len, MAX_CMD_LEN)`
/// bytes of the segment's data and `len` is the segment's whole payload
/// length. An empty segment is `NoMatch` (`help()` returns before looking).
///
/// Two stages: [`locate_command`] finds the argument, it is copied to the
/// start of a buffer of its own, and [`parse_argument`] reads it there
/// (accepting an EPRT of either family). The datapath runs the stages
/// itself, as the module docs describe, so that the verifier checks the
/// argument parser once rather than once per offset.
pub fn parse_command(dir: CtDir, payload: &[u8; MAX_CMD_LEN], len: usize) -> Parse {
    let (kind, at) = match locate_command(dir, payload, len) {
        Located::Command { kind, arg } => (kind, arg as usize),
        Located::NoMatch => return Parse::NoMatch,
        Located::Partial => return Parse::Partial,
        Located::Invalid => return Parse::Invalid,
    };
    // Copy the whole buffer's worth whatever `len` says, and derive the
    // argument's length from `len` arithmetically: a length the copy loop
    // counted would be exactly known to the verifier, and the argument would
    // be verified once per length.
    let mut arg = [0u8; ARG_LEN];
    for (j, slot) in arg.iter_mut().enumerate() {
        if let Some(&b) = payload.get(at + j) {
            *slot = b;
        }
    }
    let avail = if len < MAX_CMD_LEN { len } else { MAX_CMD_LEN };
    let rest = avail.saturating_sub(at);
    let n = if rest < ARG_LEN { rest } else { ARG_LEN };
    match parse_argument(kind, ANY_FAMILY, &arg, n, len > at + n) {
        Parse::Match {
            kind,
            addr,
            port,
            start,
            end,
        } => Parse::Match {
            kind,
            addr,
            port,
            start: start + at as u16,
            end: end + at as u16,
        },
        other => other,
    }
}

/// Anti-bounce (RFC 2577; `help()` with `loose=0`): the address in a
/// command must be its sender's own, `ct->tuplehash[dir].tuple.src`: the
/// client's for PORT/EPRT, the server's for 227. Otherwise the helper
/// creates no expectation (and the segment passes unchanged), so nobody can
/// open a hole towards a third host.
#[inline(always)]
pub fn bounce_ok(cmd_addr: [u8; 4], sender_addr: [u8; 4]) -> bool {
    cmd_addr == sender_addr
}

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

/// Key of an expectation: the tuple of the data connection a command
/// announces, as its first packet will arrive.
///
/// For a command seen in direction `dir` of the control connection, `help()`
/// calls `nf_ct_expect_init(exp, DEFAULT, l3num, &ct->tuplehash[!dir].src,
/// &ct->tuplehash[!dir].dst, IPPROTO_TCP, NULL, &port)`:
///
/// * `src` = `tuplehash[!dir].src`: the peer that receives the command
///   connects, from its real address. Compared exactly.
/// * source port: `NULL`, a wildcard (`mask.src.u.all = 0`). It is not part
///   of this key, so a lookup with the new packet's tuple minus its source
///   port finds the expectation with one hash lookup.
/// * `dst` = `tuplehash[!dir].dst`: the sender as the receiver sees it, i.e.
///   after NAT (the address NAT writes into the command).
/// * `dport`: the port in the command, or the one NAT chose instead.
/// * protocol TCP, and the connection's family.
///
/// So PORT expects server:any → client-as-the-server-sees-it:port, and 227
/// expects client:any → server's public (pre-DNAT) address:port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ExpectKey {
    /// Same layout as [`CtKey::src`].
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Network order.
    pub dport: u16,
    /// Always [`IPPROTO_TCP`] for FTP; kept so other helpers can share the
    /// table.
    pub proto: u8,
    pub family: u8,
}
// 16 + 16 + 2 + 1 + 1: no padding bytes, so hashing the key never reads
// uninitialised memory.
const _: () = assert!(core::mem::size_of::<ExpectKey>() == 36);

impl ExpectKey {
    /// The expectation announced by a command seen in direction `dir`, where
    /// `peer` is the control connection's tuple of the other direction
    /// (`tuplehash[!dir]`; our entry's `peer` key) and `port` (host order)
    /// the port the command announces after any NAT rewrite.
    #[inline(always)]
    pub fn for_command(peer: &CtKey, port: u16) -> Self {
        Self {
            src: peer.src,
            dst: peer.dst,
            dport: port.to_be(),
            proto: IPPROTO_TCP,
            family: peer.family,
        }
    }

    /// The key a NEW packet looks up (`find_expectation`): its own tuple
    /// with the source port left out.
    #[inline(always)]
    pub fn of_packet(key: &CtKey) -> Self {
        let CtKey {
            src,
            dst,
            sport: _,
            dport,
            proto,
            family,
            _pad,
        } = *key;
        Self {
            src,
            dst,
            dport,
            proto,
            family,
        }
    }
}

/// `Expectation::flags` bits.
pub mod expect_flags {
    /// The control connection is NATed (`ct->status & IPS_NAT_MASK`): give
    /// the data connection `nf_nat_follow_master`'s two rewrites, source
    /// address to `nat_src`, destination to `nat_dst`:`nat_dport`.
    pub const NAT: u8 = 1 << 0;
}

/// Value of an expectation. The data connection that matches it is
/// RELATED, gets `master` as its master, and consumes the expectation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Expectation {
    /// `bpf_ktime_get_ns()` after which the expectation is void.
    pub expires_ns: u64,
    /// The control connection's original-direction key.
    pub master: CtKey,
    /// With [`expect_flags::NAT`]: the data connection's new source
    /// address, `master->tuplehash[!exp->dir].dst`.
    pub nat_src: [u32; 4],
    /// With [`expect_flags::NAT`]: its new destination address,
    /// `master->tuplehash[!exp->dir].src`: the host that sent the command,
    /// at its real address.
    pub nat_dst: [u32; 4],
    /// With [`expect_flags::NAT`]: its new destination port, network order:
    /// the port in the original command (`exp->saved_proto`).
    pub nat_dport: u16,
    /// The [`FtpCmd`] that created it, as u8 (for listings).
    pub cmd: u8,
    /// [`expect_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Expectation>() == 88);

impl Expectation {
    /// `help()` and `nf_nat_ftp()` for a command seen in direction `dir`:
    /// `this` is the control connection's tuple in that direction, `peer`
    /// the other; `nat` whether the connection is NATed; `cmd_port` (host
    /// order) the port the command carried before any rewrite.
    ///
    /// `nf_nat_ftp` sets `exp->dir = !dir`, so `nf_nat_follow_master`'s
    /// `tuplehash[!exp->dir]` is `this`: the data connection's source
    /// becomes `this.dst` and its destination `this.src`:`cmd_port`.
    pub fn for_command(
        cmd: FtpCmd,
        dir: CtDir,
        this: &CtKey,
        peer: &CtKey,
        nat: bool,
        cmd_port: u16,
        expires_ns: u64,
    ) -> Self {
        let master = match dir {
            CtDir::Original => *this,
            CtDir::Reply => *peer,
        };
        let (nat_src, nat_dst, nat_dport, flags) = if nat {
            (this.dst, this.src, cmd_port.to_be(), expect_flags::NAT)
        } else {
            ([0; 4], [0; 4], 0, 0)
        };
        Self {
            expires_ns,
            master,
            nat_src,
            nat_dst,
            nat_dport,
            cmd: cmd as u8,
            flags,
            _pad: [0; 4],
        }
    }
}

/// The address NAT writes into a command seen in direction `dir`:
/// `newaddr = ct->tuplehash[!dir].dst`, the sender as the receiver sees
/// it. `peer` is `tuplehash[!dir]`.
#[inline(always)]
pub fn nat_announce_addr(peer: &CtKey) -> [u32; 4] {
    peer.dst
}

/// TCP sequence number order (`after()` in `include/net/tcp.h`): `a` comes
/// after `b`, modulo 2^32.
#[inline(always)]
pub const fn seq_after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

/// One direction's sequence correction (`struct nf_ct_seqadj`). Once NAT has
/// changed a segment's length, every later sequence number in that
/// direction, and every acknowledgement in the other, is off by the
/// accumulated difference.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SeqAdj {
    /// Sequence number (sender's, unadjusted) of the last segment whose
    /// length changed.
    pub correction_pos: u32,
    /// Offset for segments at or before `correction_pos`.
    pub offset_before: i32,
    /// Offset for segments after it.
    pub offset_after: i32,
}
const _: () = assert!(core::mem::size_of::<SeqAdj>() == 12);

impl SeqAdj {
    /// No correction recorded: nothing to adjust (`IPS_SEQ_ADJUST` clear).
    pub const fn is_identity(&self) -> bool {
        self.offset_before == 0 && self.offset_after == 0
    }

    /// `nf_ct_seqadj_set`: the segment at `seq` (unadjusted) grew by `delta`
    /// bytes. Recorded only when no correction is pending or the last one is
    /// before `seq`, so rewriting a retransmission again changes nothing.
    /// netfilter keeps one level of history, and so do we: a retransmission
    /// from before the previous correction gets `offset_before` of the
    /// latest one.
    pub fn record(&mut self, seq: u32, delta: i32) {
        if delta == 0 {
            return;
        }
        let Self {
            correction_pos,
            offset_before,
            offset_after,
        } = self;
        if *offset_before == *offset_after || seq_after(seq, *correction_pos) {
            *correction_pos = seq;
            *offset_before = *offset_after;
            *offset_after = offset_after.wrapping_add(delta);
        }
    }

    /// `nf_ct_seq_offset`: the offset for a segment of this direction
    /// starting at `seq` (unadjusted).
    #[inline(always)]
    pub fn offset(&self, seq: u32) -> i32 {
        if seq_after(seq, self.correction_pos) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// `nf_ct_seq_adjust`, the seq half: this direction's sequence number
    /// as the receiver must see it.
    #[inline(always)]
    pub fn adjust_seq(&self, seq: u32) -> u32 {
        seq.wrapping_add(self.offset(seq) as u32)
    }

    /// `nf_ct_seq_adjust`, the ack half. `self` is the OTHER direction's
    /// correction: the ack acknowledges adjusted sequence numbers and must
    /// go back to what their sender counts.
    #[inline(always)]
    pub fn adjust_ack(&self, ack: u32) -> u32 {
        let back = if seq_after(
            ack.wrapping_sub(self.offset_before as u32),
            self.correction_pos,
        ) {
            self.offset_after
        } else {
            self.offset_before
        };
        ack.wrapping_sub(back as u32)
    }

    /// `nf_ct_sack_block_adjust`: a SACK block's start or end edge, adjusted
    /// like an ack. `self` is the OTHER direction's correction.
    #[inline(always)]
    pub fn adjust_sack_edge(&self, edge: u32) -> u32 {
        self.adjust_ack(edge)
    }
}

/// A byte-at-a-time parser for the argument of `EPRT |2|addr|port|` on IPv6
/// control connections. [`parse_argument`]'s IPv6 address parser is too
/// big for the verifier (see the module docs); this one keeps a few bytes of
/// state so the datapath can drive it with `bpf_loop`, whose callback is
/// verified once. Embedded IPv4 (`::ffff:1.2.3.4`) is not accepted: no FTP
/// client sends it for a native IPv6 connection, and the smaller parser is
/// what makes IPv6 EPRT possible at all.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eprt6Scanner {
    groups: [u16; 8],
    /// Groups seen so far.
    n: u8,
    /// Group index where `::` stood, or [`NO_GAP`].
    gap: u8,
    /// Hex digits (or port digits) of the current field.
    digits: u8,
    /// 0 delimiter, 1 protocol `2`, 2 delimiter, 3 address, 4 port,
    /// 5 matched, 6 invalid.
    phase: u8,
    delim: u8,
    /// The previous byte was `:`.
    colon: u8,
    _pad: [u8; 2],
    cur: u32,
    /// Bytes consumed.
    pub pos: u32,
}

const NO_GAP: u8 = 0xff;
const E6_MATCHED: u8 = 5;
const E6_INVALID: u8 = 6;

impl Default for Eprt6Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Eprt6Scanner {
    pub const fn new() -> Self {
        Self {
            groups: [0; 8],
            n: 0,
            gap: NO_GAP,
            digits: 0,
            phase: 0,
            delim: 0,
            colon: 0,
            _pad: [0; 2],
            cur: 0,
            pos: 0,
        }
    }

    pub const fn is_done(&self) -> bool {
        self.phase >= E6_MATCHED
    }

    #[inline(always)]
    fn fail(&mut self) -> bool {
        self.phase = E6_INVALID;
        true
    }

    #[inline(always)]
    fn push_group(&mut self) -> bool {
        if self.n >= 8 {
            return false;
        }
        if let Some(g) = self.groups.get_mut(self.n as usize) {
            *g = self.cur as u16;
        }
        self.n += 1;
        self.cur = 0;
        self.digits = 0;
        true
    }

    /// Consumes one byte; returns whether the scanner has decided.
    #[inline(always)]
    pub fn feed(&mut self, b: u8) -> bool {
        if self.is_done() {
            return true;
        }
        self.pos += 1;
        match self.phase {
            0 => {
                // RFC 2428: any printable delimiter that is not part of the
                // address syntax.
                if !(33..=126).contains(&b) || b.is_ascii_hexdigit() || b == b':' || b == b'.' {
                    return self.fail();
                }
                self.delim = b;
                self.phase = 1;
            }
            1 => {
                if b != b'2' {
                    return self.fail();
                }
                self.phase = 2;
            }
            2 => {
                if b != self.delim {
                    return self.fail();
                }
                self.phase = 3;
            }
            3 => {
                if b == self.delim {
                    if self.digits > 0 {
                        if !self.push_group() {
                            return self.fail();
                        }
                    } else if self.colon == 0 || self.gap != self.n {
                        // Ends in a single ':' (or is empty).
                        return self.fail();
                    }
                    let complete = if self.gap == NO_GAP {
                        self.n == 8
                    } else {
                        self.n <= 7
                    };
                    if !complete {
                        return self.fail();
                    }
                    self.phase = 4;
                    self.cur = 0;
                    self.digits = 0;
                    return false;
                }
                if b == b':' {
                    if self.colon != 0 {
                        // `::`
                        if self.gap != NO_GAP {
                            return self.fail();
                        }
                        self.gap = self.n;
                    } else if self.digits > 0 {
                        if !self.push_group() {
                            return self.fail();
                        }
                    } else if self.pos != 4 {
                        // A lone ':' may only start a leading `::`.
                        return self.fail();
                    }
                    self.colon = 1;
                    return false;
                }
                let v = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    b'A'..=b'F' => b - b'A' + 10,
                    _ => return self.fail(),
                };
                if self.colon != 0 && self.pos == 5 && self.gap == NO_GAP {
                    // ":x" at the start: only "::" may lead.
                    return self.fail();
                }
                self.colon = 0;
                if self.digits >= 4 {
                    return self.fail();
                }
                self.cur = (self.cur << 4) | v as u32;
                self.digits += 1;
            }
            4 => {
                if b == self.delim {
                    if self.digits == 0 || self.cur == 0 {
                        return self.fail();
                    }
                    self.phase = E6_MATCHED;
                    return true;
                }
                if !b.is_ascii_digit() || self.digits >= 5 {
                    return self.fail();
                }
                self.cur = self.cur * 10 + (b - b'0') as u32;
                self.digits += 1;
                if self.cur > 65535 {
                    return self.fail();
                }
            }
            _ => return true,
        }
        false
    }

    /// The address and port once matched. `end` is [`Self::pos`].
    pub fn result(&self) -> Option<([u8; 16], u16)> {
        let mut words = [0u32; 4];
        let port = self.result_words(&mut words)?;
        let mut out = [0u8; 16];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        Some((out, port))
    }

    /// As [`Self::result`], writing the address in [`CtKey`]'s layout into
    /// `out` (in the datapath: map memory, as the stack is short).
    #[inline(always)]
    pub fn result_words(&self, out: &mut [u32; 4]) -> Option<u16> {
        if self.phase != E6_MATCHED {
            return None;
        }
        let n = if self.n > 8 { 8 } else { self.n as u32 };
        let gap = self.gap as u32;
        let fill = 8 - n;
        for w in 0..4u32 {
            let mut pair = [0u16; 2];
            for half in 0..2u32 {
                let i = 2 * w + half;
                // Group i of the full address comes from parsed group
                // `src`, or is one of the zeros `::` stands for.
                let src = if self.gap == NO_GAP || i < gap {
                    i
                } else if i < gap + fill {
                    continue;
                } else {
                    i - fill
                };
                // Laundered so LLVM cannot fold the mask into the address
                // arithmetic: the verifier must see an index bounded by 7.
                // SAFETY: reading a live local.
                let idx = unsafe { core::ptr::read_volatile(&(src & 7)) } as usize;
                pair[half as usize] = self.groups[idx & 7];
            }
            let [a, b] = pair[0].to_be_bytes();
            let [c, d] = pair[1].to_be_bytes();
            out[w as usize] = u32::from_ne_bytes([a, b, c, d]);
        }
        Some(self.cur as u16)
    }
}

#[cfg(test)]
mod eprt6_tests {
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
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{
        format,
        net::{Ipv4Addr, Ipv6Addr},
        string::String,
        vec::Vec,
    };

    use super::*;

    fn window(s: &[u8]) -> [u8; MAX_CMD_LEN] {
        let mut buf = [0u8; MAX_CMD_LEN];
        let n = s.len().min(MAX_CMD_LEN);
        buf[..n].copy_from_slice(&s[..n]);
        buf
    }

    fn parse(dir: CtDir, s: &[u8]) -> Parse {
        assert!(s.len() <= MAX_CMD_LEN);
        parse_command(dir, &window(s), s.len())
    }

    fn client(s: &str) -> Parse {
        parse(CtDir::Original, s.as_bytes())
    }

    fn server(s: &str) -> Parse {
        parse(CtDir::Reply, s.as_bytes())
    }

    fn m(kind: FtpCmd, addr: FtpAddr, port: u16, start: u16, end: u16) -> Parse {
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
    fn check(dir: CtDir, line: &str, kind: FtpCmd, addr: FtpAddr, port: u16, range_text: &str) {
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

    const O: CtDir = CtDir::Original;
    const R: CtDir = CtDir::Reply;

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
            ("::ffff:192.168.1.2", "::ffff:192.168.1.2"),
            ("::192.168.1.2", "::c0a8:102"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            ("64:ff9b::10.0.0.1", "64:ff9b::a00:1"),
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
            (O, "EPRT |2|::ffff:192.168.1.2|5282|\r\n"),
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
        let want6 = m(FtpCmd::Eprt, super::tests::v6("::1"), 2000, 0, 12);
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

    fn formatted(f: impl FnOnce(&mut [u8; FMT_LEN]) -> usize) -> String {
        let mut out = [0u8; FMT_LEN];
        let n = f(&mut out);
        assert!(n <= FMT_LEN);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

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

    /// The canonical line for a match, as NAT would write it, and the range
    /// of the rewritten text in it.
    fn canonical(kind: FtpCmd, addr: FtpAddr, port: u16) -> (CtDir, String, String) {
        let text = match (kind, addr) {
            (FtpCmd::Port | FtpCmd::Pasv227, FtpAddr::V4(a)) => {
                formatted(|o| format_port(a, port, o))
            }
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

    #[test]
    fn bounce_check_compares_with_the_sender() {
        assert!(bounce_ok([10, 0, 0, 2], [10, 0, 0, 2]));
        assert!(!bounce_ok([10, 0, 0, 3], [10, 0, 0, 2]));
        assert!(!bounce_ok([127, 0, 0, 1], [10, 0, 0, 2]));
        let key = v4_key_addr([10, 0, 0, 2]);
        assert!(bounce_ok([10, 0, 0, 2], key_addr_v4(&key)));
        assert_eq!(FtpAddr::V4([10, 0, 0, 2]).key_addr(), Some(key));
        assert_eq!(FtpAddr::V4([1, 2, 3, 4]).family(), Some(FAMILY_V4));
        assert_eq!(v6("::1").family(), Some(FAMILY_V6));
        assert_eq!(FtpAddr::None.family(), None);
        assert_eq!(FtpAddr::None.key_addr(), None);
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

    fn v4key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> CtKey {
        CtKey {
            src: v4_key_addr(src),
            dst: v4_key_addr(dst),
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto: IPPROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        }
    }

    const CLIENT: [u8; 4] = [192, 168, 1, 10];
    const WAN: [u8; 4] = [203, 0, 113, 1];
    const SERVER: [u8; 4] = [198, 51, 100, 7];

    /// Active FTP from a masqueraded client: PORT carries the client's
    /// private address; NAT announces the WAN address; the server's data
    /// connection from port 20 is expected at WAN:port and goes back to the
    /// client's real address and original port.
    #[test]
    fn port_through_masquerade_expects_server_to_wan() {
        let orig = v4key(CLIENT, 40000, SERVER, 21);
        let reply = v4key(SERVER, 21, WAN, 61000);
        let cmd_port = 50000;
        let new_port = 50001; // say 50000 was taken on the WAN address
        assert_eq!(key_addr_v4(&nat_announce_addr(&reply)), WAN);
        let key = ExpectKey::for_command(&reply, new_port);
        assert_eq!(key.src, v4_key_addr(SERVER));
        assert_eq!(key.dst, v4_key_addr(WAN));
        assert_eq!(u16::from_be(key.dport), new_port);
        assert_eq!((key.proto, key.family), (IPPROTO_TCP, FAMILY_V4));
        // The server's first data packet, from any source port, finds it.
        let data = v4key(SERVER, 20, WAN, new_port);
        assert_eq!(ExpectKey::of_packet(&data), key);
        assert_eq!(
            ExpectKey::of_packet(&v4key(SERVER, 33333, WAN, new_port)),
            key
        );
        assert_ne!(ExpectKey::of_packet(&v4key(CLIENT, 20, WAN, new_port)), key);

        let exp = Expectation::for_command(FtpCmd::Port, O, &orig, &reply, true, cmd_port, 7);
        assert_eq!(exp.master, orig);
        assert_eq!(exp.flags, expect_flags::NAT);
        assert_eq!(exp.cmd, FtpCmd::Port as u8);
        assert_eq!(exp.expires_ns, 7);
        // nf_nat_follow_master: source stays the server, destination is the
        // client's real address and the port it listens on.
        assert_eq!(exp.nat_src, v4_key_addr(SERVER));
        assert_eq!(exp.nat_dst, v4_key_addr(CLIENT));
        assert_eq!(u16::from_be(exp.nat_dport), cmd_port);
    }

    /// Passive FTP to a port-forwarded server: the server's 227 carries its
    /// private address; NAT announces the public one; the client's data
    /// connection is expected at the public address and DNATed to the
    /// server.
    #[test]
    fn pasv_through_port_forward_expects_client_to_public_address() {
        let server_lan = [10, 0, 0, 5];
        let client = [198, 51, 100, 99];
        let orig = v4key(client, 50123, WAN, 21);
        let reply = v4key(server_lan, 21, client, 50123);
        // The 227 travels in the reply direction: `this` is the reply tuple.
        assert!(bounce_ok(server_lan, key_addr_v4(&reply.src)));
        assert_eq!(key_addr_v4(&nat_announce_addr(&orig)), WAN);
        let key = ExpectKey::for_command(&orig, 30000);
        assert_eq!(ExpectKey::of_packet(&v4key(client, 50124, WAN, 30000)), key);
        let exp = Expectation::for_command(FtpCmd::Pasv227, R, &reply, &orig, true, 30000, 0);
        assert_eq!(exp.master, orig);
        assert_eq!(exp.nat_src, v4_key_addr(client));
        assert_eq!(exp.nat_dst, v4_key_addr(server_lan));
        assert_eq!(u16::from_be(exp.nat_dport), 30000);
    }

    #[test]
    fn no_nat_means_no_rewrites() {
        let orig = v4key(CLIENT, 40000, SERVER, 21);
        let reply = orig.inverted();
        let key = ExpectKey::for_command(&reply, 50000);
        assert_eq!((key.src, key.dst), (orig.dst, orig.src));
        let exp = Expectation::for_command(FtpCmd::Eprt, O, &orig, &reply, false, 50000, 1);
        assert_eq!(exp.flags, 0);
        assert_eq!(
            (exp.nat_src, exp.nat_dst, exp.nat_dport),
            ([0; 4], [0; 4], 0)
        );
    }

    // ---- sequence adjustment ----

    #[test]
    fn seq_after_wraps() {
        assert!(seq_after(1, 0));
        assert!(!seq_after(0, 1));
        assert!(!seq_after(5, 5));
        assert!(seq_after(0, u32::MAX));
        assert!(seq_after(10, u32::MAX - 10));
        assert!(!seq_after(u32::MAX - 10, 10));
    }

    /// The netfilter scenario: the client's PORT segment at seq S (length
    /// L) grows by 3 bytes when NAT rewrites it.
    fn scenario(s: u32) {
        const L: u32 = 22;
        let mut client = SeqAdj::default(); // client → server
        let server = SeqAdj::default(); // server → client
        assert!(client.is_identity());
        client.record(s, 3);
        assert!(!client.is_identity());
        assert_eq!(
            client,
            SeqAdj {
                correction_pos: s,
                offset_before: 0,
                offset_after: 3
            }
        );
        // The rewritten segment itself and anything before keep their seq.
        assert_eq!(client.adjust_seq(s), s);
        assert_eq!(client.adjust_seq(s.wrapping_sub(100)), s.wrapping_sub(100));
        // Later client data moves up by 3.
        assert_eq!(client.adjust_seq(s.wrapping_add(L)), s.wrapping_add(L + 3));
        assert_eq!(client.adjust_seq(s.wrapping_add(1)), s.wrapping_add(4));
        // The server acknowledges the grown stream; its acks move back by 3.
        assert_eq!(client.adjust_ack(s.wrapping_add(L + 3)), s.wrapping_add(L));
        assert_eq!(client.adjust_ack(s), s);
        assert_eq!(
            client.adjust_sack_edge(s.wrapping_add(L + 3)),
            s.wrapping_add(L)
        );
        assert_eq!(
            SeqAdj::adjust_sack_edge(&client, s.wrapping_add(L + 103)),
            s.wrapping_add(L + 100)
        );
        // The server's own numbers are untouched.
        assert_eq!(server.adjust_seq(12345), 12345);
        assert_eq!(server.adjust_ack(s.wrapping_add(L)), s.wrapping_add(L));

        // Retransmission of the rewritten segment: rewritten again, but the
        // correction is not recorded twice, and it keeps its seq.
        client.record(s, 3);
        assert_eq!(client.offset_after, 3);
        assert_eq!(client.adjust_seq(s), s);
        // An older segment cannot record either.
        client.record(s.wrapping_sub(50), 3);
        assert_eq!(client.correction_pos, s);

        // A second rewrite later in the stream, +2: offsets accumulate.
        let s2 = s.wrapping_add(L + 40);
        client.record(s2, 2);
        assert_eq!(
            client,
            SeqAdj {
                correction_pos: s2,
                offset_before: 3,
                offset_after: 5
            }
        );
        assert_eq!(client.adjust_seq(s2), s2.wrapping_add(3));
        assert_eq!(client.adjust_seq(s.wrapping_add(L)), s.wrapping_add(L + 3));
        assert_eq!(client.adjust_seq(s2.wrapping_add(30)), s2.wrapping_add(35));
        assert_eq!(client.adjust_ack(s2.wrapping_add(3)), s2);
        assert_eq!(client.adjust_ack(s2.wrapping_add(35)), s2.wrapping_add(30));
        // One level of history, as in netfilter: a retransmission from
        // before the previous correction gets this one's offset_before.
        assert_eq!(client.adjust_seq(s), s.wrapping_add(3));

        // A rewrite that shrinks.
        let s3 = s2.wrapping_add(100);
        client.record(s3, -4);
        assert_eq!((client.offset_before, client.offset_after), (5, 1));
        assert_eq!(client.adjust_seq(s3.wrapping_add(10)), s3.wrapping_add(11));
        assert_eq!(client.adjust_ack(s3.wrapping_add(11)), s3.wrapping_add(10));
        assert_eq!(client.offset(s3), 5);
        assert_eq!(client.offset(s3.wrapping_add(1)), 1);

        // No length change records nothing.
        let before = client;
        client.record(s3.wrapping_add(1000), 0);
        assert_eq!(client, before);
    }

    #[test]
    fn seqadj_netfilter_scenario() {
        scenario(1_000_000);
    }

    #[test]
    fn seqadj_across_wraparound() {
        for s in [u32::MAX - 21, u32::MAX - 5, u32::MAX, 0, 3] {
            scenario(s);
        }
        // Directly: pos just below 2^32, data after the wrap.
        let mut a = SeqAdj::default();
        a.record(u32::MAX - 1, 7);
        assert_eq!(a.adjust_seq(5), 12);
        assert_eq!(a.adjust_seq(u32::MAX - 1), u32::MAX - 1);
        assert_eq!(a.adjust_seq(u32::MAX), 6);
        assert_eq!(a.adjust_ack(12), 5);
        assert_eq!(a.adjust_ack(6), u32::MAX);
        a.record(3, 1);
        assert_eq!(
            (a.correction_pos, a.offset_before, a.offset_after),
            (3, 7, 8)
        );
    }

    // ---- randomised ----

    /// xorshift64*: deterministic, no dependencies.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len() as u64) as usize]
        }
    }

    const PIECES: &[&str] = &[
        "PORT ",
        "port ",
        "EPRT ",
        "eprt ",
        "EPRT |1|",
        "EPRT |2|",
        "227 ",
        "227 Entering Passive Mode (",
        "229 ",
        "229 (",
        "229 Entering Extended Passive Mode (|||",
        "|",
        "||",
        "|||",
        "!",
        ",",
        ",",
        ",",
        ".",
        ".",
        ":",
        "::",
        "::ffff:",
        "(",
        ")",
        " ",
        "  ",
        "\r\n",
        "\n",
        "\r",
        "a",
        "F",
        "0",
        "255",
        "256",
        "65535",
        "65536",
        "USER ",
    ];

    fn random_number(rng: &mut Rng) -> String {
        match rng.below(8) {
            0 => format!("{}", rng.below(65537)),
            1 => format!("{:x}", rng.below(0x10000)),
            2 => format!("0{}", rng.below(100)),
            _ => format!("{}", rng.below(260)),
        }
    }

    /// A valid command line with random values, sometimes mutated.
    fn template(rng: &mut Rng) -> (CtDir, Vec<u8>) {
        let a: [u8; 4] = (rng.next() as u32).to_be_bytes();
        let port = rng.next() as u16;
        let (dir, line) = match rng.below(5) {
            0 => (
                O,
                format!(
                    "{}{},{},{},{},{},{}\r\n",
                    rng.pick(&["PORT ", "port ", "Port   "]),
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    port >> 8,
                    port & 0xff
                ),
            ),
            1 => {
                let d = *rng.pick(&['|', '!', '#', 'x', ':']);
                (
                    O,
                    format!("EPRT {d}1{d}{}{d}{port}{d}\r\n", Ipv4Addr::from(a)),
                )
            }
            2 => {
                let mut b = [0u8; 16];
                for x in b.iter_mut() {
                    *x = if rng.below(2) == 0 {
                        0
                    } else {
                        rng.next() as u8
                    };
                }
                let d = *rng.pick(&['|', '!', '#', 'x']);
                (
                    O,
                    format!("EPRT {d}2{d}{}{d}{port}{d}\r\n", Ipv6Addr::from(b)),
                )
            }
            3 => (
                R,
                format!(
                    "227 {}{},{},{},{},{},{}{}",
                    rng.pick(&["Entering Passive Mode (", "=", "", "ok "]),
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    port >> 8,
                    port & 0xff,
                    rng.pick(&[").\r\n", ")", "\r\n", "."])
                ),
            ),
            _ => {
                let d = *rng.pick(&['|', '!', '#', 'x', '(']);
                (
                    R,
                    format!("229 Entering Extended Passive Mode ({d}{d}{d}{port}{d})\r\n"),
                )
            }
        };
        let mut bytes = line.as_bytes().to_vec();
        for _ in 0..rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let i = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => {
                    bytes.remove(i);
                }
                1 => bytes.insert(i, *rng.pick(b"0123456789,.|:()\r\n xa")),
                _ => bytes[i] = *rng.pick(b"0123456789,.|:()\r\n xa"),
            }
        }
        (dir, bytes)
    }

    fn random_payload(rng: &mut Rng) -> (CtDir, Vec<u8>) {
        if rng.below(3) == 0 {
            let (dir, mut p) = template(rng);
            p.truncate(MAX_CMD_LEN);
            return (dir, p);
        }
        let target = rng.below(MAX_CMD_LEN as u64 + 1) as usize;
        let mut p = Vec::new();
        while p.len() < target {
            match rng.below(10) {
                0..=3 => p.extend_from_slice(random_number(rng).as_bytes()),
                4..=7 => p.extend_from_slice(rng.pick(PIECES).as_bytes()),
                _ => p.push(rng.next() as u8),
            }
        }
        p.truncate(target);
        let dir = if rng.below(2) == 0 { O } else { R };
        (dir, p)
    }

    /// Parses `a.b.c.d` the strict way std does (no leading zeros).
    fn std_v4(s: &[u8]) -> Option<[u8; 4]> {
        std::str::from_utf8(s)
            .ok()?
            .parse::<Ipv4Addr>()
            .ok()
            .map(|a| a.octets())
    }

    /// A hex group of more than four digits: refused by std, accepted here
    /// when its value fits (leading zeros).
    fn has_long_group(s: &[u8]) -> bool {
        s.split(|&b| b == b':')
            .any(|part| part.len() > 4 && !part.contains(&b'.'))
    }

    fn has_leading_zero_octet(s: &[u8]) -> bool {
        s.split(|&b| b == b'.' || b == b':')
            .any(|part| part.len() > 1 && part[0] == b'0' && part.iter().all(u8::is_ascii_digit))
    }

    /// Independent checks of a match against the text it came from.
    fn check_match(
        dir: CtDir,
        p: &[u8],
        kind: FtpCmd,
        addr: FtpAddr,
        port: u16,
        start: usize,
        end: usize,
    ) {
        assert!(
            start < end && end <= p.len(),
            "{start}..{end} of {}",
            p.len()
        );
        assert_ne!(port, 0);
        let text = &p[start..end];
        match kind {
            FtpCmd::Port | FtpCmd::Eprt => assert_eq!(dir, O),
            FtpCmd::Pasv227 | FtpCmd::Epsv229 => assert_eq!(dir, R),
        }
        match (kind, addr) {
            (FtpCmd::Port | FtpCmd::Pasv227, FtpAddr::V4(a)) => {
                let n: Vec<u32> = text
                    .split(|&b| b == b',')
                    .map(|d| std::str::from_utf8(d).unwrap().parse().unwrap())
                    .collect();
                assert_eq!(n.len(), 6);
                assert_eq!(n[..4], a.map(u32::from));
                assert_eq!(n[4] * 256 + n[5], port as u32);
            }
            (FtpCmd::Eprt, _) => {
                let d = text[0];
                let parts: Vec<&[u8]> = text.split(|&b| b == d).collect();
                assert_eq!(parts.len(), 5, "{:?}", String::from_utf8_lossy(text));
                assert_eq!(
                    std::str::from_utf8(parts[3])
                        .unwrap()
                        .parse::<u16>()
                        .unwrap(),
                    port
                );
                match addr {
                    FtpAddr::V4(a) => {
                        assert_eq!(parts[1], b"1");
                        if !has_leading_zero_octet(parts[2]) {
                            assert_eq!(std_v4(parts[2]), Some(a));
                        }
                    }
                    FtpAddr::V6(a) => {
                        assert_eq!(parts[1], b"2");
                        if !has_leading_zero_octet(parts[2]) && !has_long_group(parts[2]) {
                            let s = std::str::from_utf8(parts[2]).unwrap();
                            assert_eq!(s.parse::<Ipv6Addr>().unwrap().octets(), a, "{s}");
                        }
                    }
                    FtpAddr::None => panic!("EPRT without address"),
                }
            }
            (FtpCmd::Epsv229, FtpAddr::None) => {
                let d = text[0];
                assert_eq!(&text[1..3], &[d, d]);
                assert_eq!(text[text.len() - 1], d);
                let digits = std::str::from_utf8(&text[3..text.len() - 1]).unwrap();
                assert_eq!(digits.parse::<u16>().unwrap(), port);
            }
            other => panic!("impossible match {other:?}"),
        }
    }

    #[test]
    fn fuzz_random_payloads() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = [0usize; 8]; // 4 kinds, NoMatch, Partial, Invalid, v6
        for _ in 0..200_000 {
            let (dir, p) = random_payload(&mut rng);
            let got = parse(dir, &p);
            match got {
                Parse::Match {
                    kind,
                    addr,
                    port,
                    start,
                    end,
                } => {
                    seen[kind as usize - 1] += 1;
                    if matches!(addr, FtpAddr::V6(_)) {
                        seen[7] += 1;
                    }
                    let (start, end) = (start as usize, end as usize);
                    check_match(dir, &p, kind, addr, port, start, end);

                    // NAT's canonical form parses back to the same values.
                    let (cdir, line, text) = canonical(kind, addr, port);
                    assert_eq!(cdir, dir);
                    check(dir, &line, kind, addr, port, &text);

                    // And so does the segment with its range rewritten.
                    let mut spliced = p[..start].to_vec();
                    spliced.extend_from_slice(text.as_bytes());
                    spliced.extend_from_slice(&p[end..]);
                    if spliced.len() <= MAX_CMD_LEN {
                        let new_end = (start + text.len()) as u16;
                        assert_eq!(
                            parse(dir, &spliced),
                            m(kind, addr, port, start as u16, new_end),
                            "{:?} -> {:?}",
                            String::from_utf8_lossy(&p),
                            String::from_utf8_lossy(&spliced)
                        );
                    }
                }
                Parse::NoMatch => seen[4] += 1,
                Parse::Partial => seen[5] += 1,
                Parse::Invalid => seen[6] += 1,
            }
            // The datapath's way: locate, load the argument from the
            // segment at its offset, parse it for the connection's family.
            if let Located::Command { kind, arg } = locate_command(dir, &window(&p), p.len()) {
                let at = arg as usize;
                let n = (p.len() - at).min(ARG_LEN);
                let mut a = [0u8; ARG_LEN];
                a[..n].copy_from_slice(&p[at..at + n]);
                for fam in [FAMILY_V4, FAMILY_V6] {
                    let split = match parse_argument(kind, fam, &a, n, p.len() > at + n) {
                        Parse::Match {
                            kind,
                            addr,
                            port,
                            start,
                            end,
                        } => m(kind, addr, port, start + arg, end + arg),
                        other => other,
                    };
                    let want = match got {
                        Parse::Match {
                            addr: FtpAddr::V4(_),
                            kind: FtpCmd::Eprt,
                            ..
                        } if fam == FAMILY_V6 => Parse::Invalid,
                        Parse::Match {
                            addr: FtpAddr::V6(_),
                            ..
                        } if fam == FAMILY_V4 => Parse::Invalid,
                        other => other,
                    };
                    // An EPRT of the wrong family is refused at its protocol
                    // digit, so where the family-blind parse still waits for
                    // more (Partial), this one may already have refused.
                    if kind == FtpCmd::Eprt && matches!(want, Parse::Partial | Parse::Invalid) {
                        assert!(
                            matches!(split, Parse::Partial | Parse::Invalid),
                            "{split:?}"
                        );
                    } else {
                        assert_eq!(split, want, "{:?} fam {fam}", String::from_utf8_lossy(&p));
                    }
                }
            } else {
                assert!(!matches!(got, Parse::Match { .. }));
            }

            // The same bytes as the window of a longer segment: only a cut
            // line changes, from Partial to Invalid.
            if p.len() == MAX_CMD_LEN {
                let longer = parse_command(dir, &window(&p), MAX_CMD_LEN + 1);
                match got {
                    Parse::Partial => assert_eq!(longer, Parse::Invalid),
                    _ => assert_eq!(longer, got),
                }
            }
        }
        std::println!(
            "PORT {} EPRT {} 227 {} 229 {} (v6 {}), NoMatch {} Partial {} Invalid {}",
            seen[0],
            seen[1],
            seen[2],
            seen[3],
            seen[7],
            seen[4],
            seen[5],
            seen[6]
        );
        for (i, &n) in seen.iter().enumerate() {
            assert!(n > 1000, "outcome {i} seen only {n} times: {seen:?}");
        }
    }

    /// The IPv6 parser agrees with std's on addresses in every textual form
    /// and on random corruptions of them, except where std is stricter about
    /// leading zeros (dotted octets; groups of five or more digits).
    #[test]
    fn ipv6_parser_agrees_with_std() {
        let mut rng = Rng(42);
        let alphabet = b"0123456789abcdefABCDEF:.:::";
        let mut agreed = [0usize; 2];
        for _ in 0..100_000 {
            let mut b = [0u8; 16];
            for x in b.iter_mut() {
                *x = if rng.below(2) == 0 {
                    0
                } else {
                    rng.next() as u8
                };
            }
            let addr = Ipv6Addr::from(b);
            let w = addr.segments();
            let mut text = match rng.below(4) {
                0 => format!("{addr}"),
                1 => w
                    .iter()
                    .map(|g| format!("{g:04x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                2 => w
                    .iter()
                    .map(|g| format!("{g:X}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                _ => format!(
                    "{}:{}",
                    w[..6]
                        .iter()
                        .map(|g| format!("{g:x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    Ipv4Addr::from([b[12], b[13], b[14], b[15]])
                ),
            }
            .into_bytes();
            for _ in 0..rng.below(3) {
                let i = rng.below(text.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if i < text.len() => {
                        text.remove(i);
                    }
                    1 => text.insert(i, *rng.pick(alphabet)),
                    _ if i < text.len() => text[i] = *rng.pick(alphabet),
                    _ => {}
                }
            }
            if text.len() > 70 || has_leading_zero_octet(&text) || has_long_group(&text) {
                continue;
            }
            let s = String::from_utf8(text).unwrap();
            let line = format!("EPRT |2|{s}|21|\r\n");
            let ours = client(&line);
            let theirs = s.parse::<Ipv6Addr>().ok();
            match theirs {
                Some(a) => {
                    let range = format!("|2|{s}|21|");
                    check(O, &line, FtpCmd::Eprt, FtpAddr::V6(a.octets()), 21, &range);
                    agreed[0] += 1;
                }
                None => {
                    assert_eq!(ours, Parse::Invalid, "{s:?}");
                    agreed[1] += 1;
                }
            }
        }
        assert!(agreed[0] > 10_000 && agreed[1] > 10_000, "{agreed:?}");
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
}
