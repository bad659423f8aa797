//! TCP options as the tracker reads them (`tcp_options`, `tcp_sack`): the
//! window scale and SACK-permitted of a SYN, and the highest right edge of
//! the SACK blocks of any segment. One option per [`OptionWalk::step`], so
//! the datapath can run the walk as a `bpf_loop` callback over a copy of the
//! option bytes in map memory.

/// The most option bytes a TCP header carries (data offset 15).
pub const MAX_TCP_OPTIONS: usize = 40;
/// No window scale option was seen.
pub const NO_WSCALE: u8 = 0xff;
/// RFC 7323: a larger shift is treated as 14.
pub const MAX_WSCALE: u8 = 14;

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_WINDOW: u8 = 3;
const TCPOPT_SACK_PERM: u8 = 4;
const TCPOPT_SACK: u8 = 5;
const TCPOPT_TIMESTAMP: u8 = 8;

/// What the options say.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// The shift of a window scale option, clamped to 14, or [`NO_WSCALE`].
    pub wscale: u8,
    pub sack_perm: u8,
    pub _pad: [u8; 2],
    /// The highest right edge of a SACK block after `ack` (serial number
    /// arithmetic), or `ack` when there is none.
    pub sack: u32,
}

impl Default for TcpOptions {
    /// No options.
    fn default() -> Self {
        TcpOptions {
            wscale: NO_WSCALE,
            sack_perm: 0,
            _pad: [0; 2],
            sack: 0,
        }
    }
}

/// The options walk between steps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionWalk {
    pub at: u32,
    pub len: u32,
    pub done: u32,
    pub found: TcpOptions,
}

/// `a` is after `b` in sequence space (`after()`).
#[inline(always)]
pub const fn after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

/// `a` is before `b` in sequence space (`before()`).
#[inline(always)]
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl OptionWalk {
    /// A walk of `len` option bytes of a segment acknowledging `ack`.
    pub fn new(len: usize, ack: u32) -> OptionWalk {
        OptionWalk {
            at: 0,
            len: if len > MAX_TCP_OPTIONS {
                MAX_TCP_OPTIONS as u32
            } else {
                len as u32
            },
            done: 0,
            found: TcpOptions {
                wscale: NO_WSCALE,
                sack_perm: 0,
                _pad: [0; 2],
                sack: ack,
            },
        }
    }

    /// Whether the options are exactly NOP, NOP, timestamp: nearly every
    /// segment of a Linux peer, and nothing the tracker needs
    /// (`tcp_sack`'s fast path).
    pub fn timestamps_only(opts: &[u8; MAX_TCP_OPTIONS], len: usize) -> bool {
        len == 12
            && opts[0] == TCPOPT_NOP
            && opts[1] == TCPOPT_NOP
            && opts[2] == TCPOPT_TIMESTAMP
            && opts[3] == 10
    }

    /// Reads one option; `true` once the walk is over. Malformed or partial
    /// options end it, as in the kernel ("don't parse partial options").
    pub fn step(&mut self, opts: &[u8; MAX_TCP_OPTIONS]) -> bool {
        if self.done != 0 {
            return true;
        }
        let byte = |i: u32| opts.get(i as usize).copied().unwrap_or(0);
        let i = self.at;
        if i >= self.len {
            self.done = 1;
            return true;
        }
        let kind = byte(i);
        if kind == TCPOPT_EOL {
            self.done = 1;
            return true;
        }
        if kind == TCPOPT_NOP {
            self.at += 1;
            return false;
        }
        let left = self.len - i;
        let size = byte(i + 1) as u32;
        if left < 2 || size < 2 || size > left {
            self.done = 1;
            return true;
        }
        match kind {
            TCPOPT_SACK_PERM if size == 2 => self.found.sack_perm = 1,
            TCPOPT_WINDOW if size == 3 => {
                let shift = byte(i + 2);
                self.found.wscale = if shift > MAX_WSCALE {
                    MAX_WSCALE
                } else {
                    shift
                };
            }
            TCPOPT_SACK if size >= 10 && (size - 2).is_multiple_of(8) => {
                // Each block is (left, right); the right edges count.
                let mut b = 0;
                while b < 4 {
                    let at = i + 2 + b * 8 + 4;
                    if at + 4 > i + size {
                        break;
                    }
                    let edge =
                        u32::from_be_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)]);
                    if after(edge, self.found.sack) {
                        self.found.sack = edge;
                    }
                    b += 1;
                }
            }
            _ => {}
        }
        self.at += size;
        false
    }

    /// The whole walk (the host's way; the datapath steps it).
    pub fn run(opts: &[u8; MAX_TCP_OPTIONS], len: usize, ack: u32) -> TcpOptions {
        let mut w = OptionWalk::new(len, ack);
        for _ in 0..MAX_TCP_OPTIONS {
            if w.step(opts) {
                break;
            }
        }
        w.found
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;

    fn run(bytes: &[u8], ack: u32) -> TcpOptions {
        let mut o = [0u8; MAX_TCP_OPTIONS];
        o[..bytes.len()].copy_from_slice(bytes);
        OptionWalk::run(&o, bytes.len(), ack)
    }

    #[test]
    fn a_linux_syn() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
        let o = run(
            &[
                2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
            ],
            0,
        );
        assert_eq!(o.wscale, 7);
        assert_eq!(o.sack_perm, 1);
    }

    #[test]
    fn window_scale_is_clamped_and_malformed_options_end_the_walk() {
        assert_eq!(run(&[3, 3, 15, 0], 0).wscale, MAX_WSCALE);
        // A window scale of the wrong size is ignored.
        assert_eq!(run(&[3, 4, 7, 0], 0).wscale, NO_WSCALE);
        // Size 1 ("silly option") ends the walk before the scale.
        assert_eq!(run(&[8, 1, 3, 3, 7, 0, 0, 0], 0).wscale, NO_WSCALE);
        // A partial option at the end is not read.
        assert_eq!(run(&[1, 1, 3, 3], 0).wscale, NO_WSCALE);
        // EOL ends it.
        assert_eq!(run(&[0, 3, 3, 7], 0).wscale, NO_WSCALE);
    }

    #[test]
    fn sack_gives_the_highest_right_edge_after_the_ack() {
        let mut b = vec![1, 1, 5, 18];
        for (l, r) in [(1000u32, 2000u32), (3000, 4000)] {
            b.extend_from_slice(&l.to_be_bytes());
            b.extend_from_slice(&r.to_be_bytes());
        }
        assert_eq!(run(&b, 500).sack, 4000);
        // Edges before the ack do not lower it.
        assert_eq!(run(&b, 5000).sack, 5000);
        // Across the wrap of sequence space.
        let mut w = vec![1, 1, 5, 10];
        w.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
        w.extend_from_slice(&0x10u32.to_be_bytes());
        assert_eq!(run(&w, 0xffff_ff00).sack, 0x10);
        // A SACK option whose size is not 2 + 8k is ignored.
        assert_eq!(run(&[5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0], 7).sack, 7);
    }

    #[test]
    fn timestamps_only_is_recognised() {
        let mut o = [0u8; MAX_TCP_OPTIONS];
        o[..4].copy_from_slice(&[1, 1, 8, 10]);
        assert!(OptionWalk::timestamps_only(&o, 12));
        assert!(!OptionWalk::timestamps_only(&o, 20));
    }

    #[test]
    fn random_options_always_end() {
        let mut rng = crate::testing::Rng::xorshift64(0xabcdef);
        for _ in 0..20_000 {
            let mut o = [0u8; MAX_TCP_OPTIONS];
            for b in o.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            let len = rng.below(41) as usize;
            let mut w = OptionWalk::new(len, 0);
            let mut steps = 0;
            while !w.step(&o) {
                steps += 1;
                assert!(steps <= MAX_TCP_OPTIONS, "the walk advances");
            }
        }
    }

    #[test]
    fn serial_arithmetic() {
        assert!(after(1, 0));
        assert!(after(0, u32::MAX));
        assert!(before(u32::MAX, 0));
        assert!(!after(5, 5));
        assert!(!before(5, 5));
    }
}
