//! The byte reader both parser stages use, and the numbers they read.

/// Why parsing stopped short of a match.
pub(super) enum Stop {
    Partial,
    Invalid,
}

pub(super) type Step<T> = Result<T, Stop>;

/// Reads a buffer a byte at a time; every access is bounds-checked by
/// `get`, so no index can panic.
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    /// Bytes of the segment present in `buf`.
    avail: usize,
    /// The segment goes on past `avail`.
    truncated: bool,
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    pub(super) fn new(buf: &'a [u8], avail: usize, truncated: bool) -> Self {
        Self {
            buf,
            avail: if avail < buf.len() { avail } else { buf.len() },
            truncated: truncated || avail > buf.len(),
            pos: 0,
        }
    }

    #[inline(always)]
    pub(super) fn at(&self, i: usize) -> Option<u8> {
        if i < self.avail {
            self.buf.get(i).copied()
        } else {
            None
        }
    }

    /// Running out of bytes: the rest is in the next segment, unless this
    /// segment had more bytes than the buffer holds.
    #[inline(always)]
    pub(super) fn out_of_data(&self) -> Stop {
        if self.truncated {
            Stop::Invalid
        } else {
            Stop::Partial
        }
    }

    /// The current byte, without consuming it.
    #[inline(always)]
    pub(super) fn cur(&self) -> Step<u8> {
        match self.at(self.pos) {
            Some(b) => Ok(b),
            None => Err(self.out_of_data()),
        }
    }

    #[inline(always)]
    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `want` or fails.
    #[inline(always)]
    pub(super) fn eat(&mut self, want: u8) -> Step<()> {
        if self.cur()? == want {
            self.bump();
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    /// A decimal number of 1..=`max_digits` digits, at most `max`. Stops at
    /// the first non-digit, which must be present: at the end of the data
    /// more digits could follow.
    #[inline(always)]
    pub(super) fn decimal(&mut self, max_digits: u32, max: u32) -> Step<u32> {
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
    pub(super) fn byte_value(&mut self) -> Step<u8> {
        Ok(self.decimal(3, 255)? as u8)
    }

    #[inline(always)]
    pub(super) fn port_value(&mut self) -> Step<u16> {
        Ok(self.decimal(5, 65535)? as u16)
    }

    /// `a<sep>b<sep>c<sep>d`, each 0..=255.
    #[inline(always)]
    pub(super) fn quad(&mut self, sep: u8) -> Step<[u8; 4]> {
        let mut a = [0u8; 4];
        for (i, slot) in a.iter_mut().enumerate() {
            if i > 0 {
                self.eat(sep)?;
            }
            *slot = self.byte_value()?;
        }
        Ok(a)
    }
}
