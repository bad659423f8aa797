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
//! * An EPRT `|2|` address is hex groups of one to four digits, with at most
//!   one `::`. `in6_pton` also takes an IPv4 tail (`::ffff:1.2.3.4`, through
//!   `in4_pton`) and zero-padded groups of any length (it bounds the value,
//!   not the digits); neither is something an FTP client sends for a native
//!   IPv6 connection, and leaving them out keeps [`Eprt6Scanner`] small
//!   enough for the datapath.
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
//! * [`parse_argument`] with a constant [`FAMILY_V4`]: 27k. A general IPv6
//!   address parser inline was over the limit on its own (positions ×
//!   groups × where `::` was); hence [`Eprt6Scanner`], a few bytes of state
//!   fed one byte per `bpf_loop` call, whose callback is verified once.
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
//! with the connection's family as a constant. On IPv6 control connections
//! an EPRT's argument goes to [`Eprt6Scanner`] under `bpf_loop` instead;
//! [`parse_argument`] reads an `EPRT |2|` address with the same scanner
//! for [`FAMILY_V6`] and [`ANY_FAMILY`], so there is one IPv6 address
//! parser. [`parse_command`] is the whole composition in plain Rust; the
//! tests drive both.
//!
//! # Where each part lives
//!
//! * `cursor.rs`: the bounds-checked byte reader and the numbers both stages
//!   read.
//! * `locate.rs`: stage 1, the verb and the text before its argument
//!   ([`locate_command`]).
//! * `argument.rs`: stage 2, the argument of each command
//!   ([`parse_argument`]).
//! * `eprt6.rs`: the byte-fed parser of `EPRT |2|` ([`Eprt6Scanner`]), the
//!   one IPv6 address parser: the datapath's and stage 2's.
//! * `format.rs`: the text NAT writes back ([`format_rewrite`]), shaped for
//!   the verifier and checked against std's formatting.
//! * `expect.rs`: expectations, their keys, and the anti-bounce check.
//! * `seqadj.rs`: sequence adjustment after a rewrite ([`SeqAdj`]).
//!
//! Each part's tests sit beside it (`format/tests.rs`, …); `tests.rs` and
//! `tests/fuzz.rs` drive both stages together, with the helpers in
//! `test_support.rs`.

mod argument;
mod cursor;
mod eprt6;
mod expect;
mod format;
mod locate;
mod seqadj;

pub use argument::{ANY_FAMILY, ARG_LEN, parse_argument};
pub use eprt6::Eprt6Scanner;
pub use expect::{
    EXPECT_TIMEOUT_NS, ExpectKey, Expectation, MAX_EXPECTED, bounce_ok, expect_flags,
    nat_announce_addr,
};
pub use format::{FMT_LEN, format_eprt_v4, format_epsv, format_port, format_rewrite};
pub use locate::{Located, locate_command};
pub use seqadj::{SeqAdj, seq_after};

use crate::{CtDir, FAMILY_V4, FAMILY_V6};

/// Bytes of a segment's payload the datapath copies for the helper. The
/// longest line we must understand, an EPRT with an IPv6 address in its
/// longest form, is 62 bytes; a 227 with a typical text, about 55.
pub const MAX_CMD_LEN: usize = 96;

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

    /// The address in [`CtKey`](crate::CtKey)'s layout (raw network order
    /// in memory; IPv4 in word 0).
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

/// An IPv4 address in [`CtKey`](crate::CtKey)'s layout.
#[inline(always)]
pub const fn v4_key_addr(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// The IPv4 address stored in a [`CtKey`](crate::CtKey) address field, in
/// wire order.
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

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
