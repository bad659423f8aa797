//! Support for the workspace's tests: compiled for this crate's own tests,
//! and for other crates' tests through the `testing` feature (a
//! dev-dependency feature, so it never reaches a program).

use alloc::vec::Vec;

/// A deterministic pseudo-random generator for property tests: no
/// dependency, and a fixed seed replays the same cases on every run, so a
/// failure can be reproduced and a test's case count means the same thing
/// each time.
///
/// Two generators of the xorshift family, because the tests' seeds were
/// chosen with them and their cases must stay the same:
/// [`Rng::xorshift64`] and [`Rng::xorshift64_star`].
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    star: bool,
}

impl Rng {
    /// Marsaglia's xorshift64 (shifts 13, 7, 17); the state is the output.
    /// `seed` must not be 0.
    pub const fn xorshift64(seed: u64) -> Self {
        Self {
            state: seed,
            star: false,
        }
    }

    /// Vigna's xorshift64* (shifts 12, 25, 27, the output multiplied by
    /// 0x2545F4914F6CDD1D). `seed` must not be 0.
    pub const fn xorshift64_star(seed: u64) -> Self {
        Self {
            state: seed,
            star: true,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let Self { state, star } = self;
        if *star {
            *state ^= *state >> 12;
            *state ^= *state << 25;
            *state ^= *state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        } else {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        }
    }

    /// A value in `0..n` (`next_u64() % n`; the bias is irrelevant to tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index into something `len` long.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of both generators, as the copies this type
    /// replaced computed them: the tests' fixed seeds keep their cases.
    #[test]
    fn sequences_are_the_ones_the_tests_were_written_with() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rng = Rng::xorshift64(x);
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(rng.next_u64(), x);
        }
        let mut x = 42u64;
        let mut rng = Rng::xorshift64_star(x);
        for _ in 0..1000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            assert_eq!(rng.next_u64(), x.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
    }
}
