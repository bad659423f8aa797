//! The byte-fed parser of `EPRT |2|addr|port|` that IPv6 control
//! connections use in the datapath.

/// A byte-at-a-time parser for the argument of `EPRT |2|addr|port|`, the
/// only parser of IPv6 EPRT: the datapath drives it with `bpf_loop`, whose
/// callback is verified once (a general IPv6 address parser inline is too
/// big for the verifier; see the module docs), and
/// [`parse_argument`](super::parse_argument) reads the address with it.
/// Embedded IPv4 (`::ffff:1.2.3.4`) is not accepted, nor a group of more
/// than four digits: no FTP client sends either for a native IPv6
/// connection, and the smaller parser is what makes IPv6 EPRT possible at
/// all.
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

    /// As [`Self::result`], writing the address in [`CtKey`](crate::CtKey)'s
    /// layout into `out` (in the datapath: map memory, as the stack is
    /// short).
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
mod tests;
