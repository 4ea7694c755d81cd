//! Philox4x32-10, the counter-based generator used on every backend (Salmon et al. 2011).
//!
//! Element `i` of stream `stream` under `seed` is the Philox block of key = (seed lo, seed hi) and
//! counter = (i lo, i hi, stream lo, stream hi). Its first word gives a uniform number and its first
//! two words a normal one (Box–Muller, computed in f64 on every backend), so the CPU and the GPU draw
//! the same numbers and a step needs no host-to-device copy for its noise. `kernels/rng.cu` is the
//! device copy of this file.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The 10-round Philox4x32 block function.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// The Philox block for element `i` of `stream` under `seed`.
#[inline]
pub fn block(seed: u64, stream: u64, i: u64) -> [u32; 4] {
    philox4x32_10(
        [i as u32, (i >> 32) as u32, stream as u32, (stream >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// Maps a word to (0, 1): ((w >> 8) + 0.5) · 2⁻²⁴, exact in f32.
#[inline]
pub fn word_to_open_unit(w: u32) -> f64 {
    ((w >> 8) as f64 + 0.5) * (1.0 / 16_777_216.0)
}

/// Uniform number in (0, 1) for element `i`.
#[inline]
pub fn uniform(seed: u64, stream: u64, i: u64) -> f64 {
    word_to_open_unit(block(seed, stream, i)[0])
}

/// Standard normal number for element `i`: sqrt(−2 ln u₁) · cos(2π u₂).
#[inline]
pub fn normal(seed: u64, stream: u64, i: u64) -> f64 {
    let b = block(seed, stream, i);
    let (u1, u2) = (word_to_open_unit(b[0]), word_to_open_unit(b[1]));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A small host-side generator on the same function, for data order and initialisation:
/// each call takes the next counter of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRng {
    pub seed: u64,
    pub stream: u64,
    pub counter: u64,
}

impl HostRng {
    pub fn new(seed: u64, stream: u64) -> Self {
        HostRng { seed, stream, counter: 0 }
    }
    pub fn next_u32(&mut self) -> u32 {
        let w = block(self.seed, self.stream, self.counter)[0];
        self.counter += 1;
        w
    }
    pub fn uniform(&mut self) -> f64 {
        let u = uniform(self.seed, self.stream, self.counter);
        self.counter += 1;
        u
    }
    pub fn normal(&mut self) -> f64 {
        let z = normal(self.seed, self.stream, self.counter);
        self.counter += 1;
        z
    }
    /// Uniform integer in [0, n) (n > 0), by rejection so it is unbiased.
    pub fn below(&mut self, n: u32) -> u32 {
        let zone = u32::MAX - (u32::MAX % n);
        loop {
            let w = self.next_u32();
            if w < zone {
                return w % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answer() {
        // Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10).
        assert_eq!(philox4x32_10([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([0xffffffff; 4], [0xffffffff; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normal_moments() {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|i| normal(7, 3, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }
}
