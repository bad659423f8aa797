//! Stage 1: the verb at the start of a segment, and the text before its
//! argument.

use super::{
    FtpCmd, MAX_CMD_LEN,
    cursor::{Cursor, Step, Stop},
};
use crate::CtDir;

/// How a fixed verb compares with the start of the segment.
enum Verb {
    Full,
    Prefix,
    No,
}

impl Cursor<'_> {
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
}

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

/// Stage 1 of [`parse_command`](super::parse_command): the verb, and the
/// text before the argument (spaces after PORT/EPRT, the text of a 227 up to
/// the first digit, of a 229 up to and including `(`).
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
