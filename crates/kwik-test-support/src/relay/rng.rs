//! The relay's deterministic random numbers: SplitMix64, small, fast and good enough to decide
//! packet fates (not for cryptography).

/// SplitMix64 (Steele, Lea and Flood), the generator Java's `SplittableRandom` and rand's seeding
/// use: one add and three xor-shift-multiplies per number.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The golden-ratio increment of SplitMix64.
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for one stream of a seed, so that every link of a relay draws from its own
    /// well-separated sequence.
    pub(crate) fn for_stream(seed: u64, stream: u64) -> Self {
        let mut mixer = Self::new(seed ^ stream.wrapping_mul(Self::GAMMA));
        Self::new(mixer.next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 bits of precision.
    pub(crate) fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// True with probability `p` (`p` within `0.0..=1.0`). Always draws one number, so the
    /// sequence of later decisions does not depend on `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniform number in `0..=max` (modulo bias is below 2^-40 for the nanosecond ranges the
    /// relay draws).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        let draw = self.next_u64();
        match max.checked_add(1) {
            Some(bound) => draw % bound,
            None => draw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let mut a = SplitMix64::for_stream(7, 0);
        let mut b = SplitMix64::for_stream(7, 0);
        let mut c = SplitMix64::for_stream(7, 1);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn chance_matches_probability() {
        let mut rng = SplitMix64::new(42);
        let hits = (0..100_000).filter(|_| rng.chance(0.25)).count();
        // 25% of 100k with a standard deviation of ~137: a 1,000-wide band is > 7 sigma.
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
    }

    #[test]
    fn up_to_stays_in_range() {
        let mut rng = SplitMix64::new(1);
        assert!((0..1000).all(|_| rng.up_to(10) <= 10));
        assert!((0..1000).all(|_| rng.up_to(0) == 0));
        rng.up_to(u64::MAX);
    }
}
