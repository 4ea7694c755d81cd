//! The 2-D toy distributions of the WGAN-GP paper (Gulrajani et al. 2017, `gan_toy.py`).
//!
//! * `8gaussians`: eight centres on the circle of radius 2 — (±1, 0), (0, ±1), (±1/√2, ±1/√2), all
//!   scaled by 2 — each point is a centre chosen uniformly plus 0.02·N(0, 1) per coordinate, and the
//!   whole set is divided by 1.414.
//! * `25gaussians`: centres (x, y) for x, y ∈ {−4, −2, 0, 2, 4}, noise 0.05·N(0, 1), divided by 2.828.
//! * `swissroll`: scikit-learn's `make_swiss_roll(n, noise=0.25)` — t = 1.5π(1 + 2u₁), x = t cos t,
//!   y = 21u₂, z = t sin t, plus 0.25·N(0, 1) on each of x, y, z — keeping columns x and z, divided by 7.5.
//!
//! All randomness comes from [`HostRng`], so a seed gives the same points on every machine.

use crate::error::{Error, Result};
use crate::rng::HostRng;
use std::fmt;
use std::str::FromStr;

/// One of the three toy data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToyDataset {
    EightGaussians,
    TwentyFiveGaussians,
    SwissRoll,
}

const EIGHT_SCALE: f64 = 1.414;
const EIGHT_NOISE: f64 = 0.02;
const TWENTY_FIVE_SCALE: f64 = 2.828;
const TWENTY_FIVE_NOISE: f64 = 0.05;
const SWISS_NOISE: f64 = 0.25;
const SWISS_SCALE: f64 = 7.5;

impl ToyDataset {
    /// Every data set, in the order of the paper's figure.
    pub const ALL: [ToyDataset; 3] =
        [ToyDataset::EightGaussians, ToyDataset::TwentyFiveGaussians, ToyDataset::SwissRoll];

    /// The name used on the command line and in file names.
    pub fn name(&self) -> &'static str {
        match self {
            ToyDataset::EightGaussians => "8gaussians",
            ToyDataset::TwentyFiveGaussians => "25gaussians",
            ToyDataset::SwissRoll => "swissroll",
        }
    }

    /// The mode centres before the final division (the paper's `centers`).
    fn raw_centres(&self) -> Vec<[f64; 2]> {
        match self {
            ToyDataset::EightGaussians => {
                let s = 1.0 / 2f64.sqrt();
                [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (s, s), (s, -s), (-s, s), (-s, -s)]
                    .iter()
                    .map(|&(x, y)| [2.0 * x, 2.0 * y])
                    .collect()
            }
            ToyDataset::TwentyFiveGaussians => {
                let mut c = Vec::with_capacity(25);
                for x in -2..=2 {
                    for y in -2..=2 {
                        c.push([2.0 * x as f64, 2.0 * y as f64]);
                    }
                }
                c
            }
            ToyDataset::SwissRoll => Vec::new(),
        }
    }

    /// `n` points, row-major n×2. Each point takes a fixed number of draws from `rng`, in order, so
    /// the first k points of a call with n ≥ k are the same as a call with n = k.
    pub fn sample(&self, rng: &mut HostRng, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(2 * n);
        match self {
            ToyDataset::EightGaussians | ToyDataset::TwentyFiveGaussians => {
                let centres = self.raw_centres();
                let (noise, scale) = match self {
                    ToyDataset::EightGaussians => (EIGHT_NOISE, EIGHT_SCALE),
                    _ => (TWENTY_FIVE_NOISE, TWENTY_FIVE_SCALE),
                };
                for _ in 0..n {
                    let c = centres[rng.below(centres.len() as u32) as usize];
                    let x = c[0] + noise * rng.normal();
                    let y = c[1] + noise * rng.normal();
                    out.push((x / scale) as f32);
                    out.push((y / scale) as f32);
                }
            }
            ToyDataset::SwissRoll => {
                for _ in 0..n {
                    let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * rng.uniform());
                    let _height = 21.0 * rng.uniform(); // the dropped y column, drawn for fidelity
                    let x = t * t.cos() + SWISS_NOISE * rng.normal();
                    let _y_noise = rng.normal();
                    let z = t * t.sin() + SWISS_NOISE * rng.normal();
                    out.push((x / SWISS_SCALE) as f32);
                    out.push((z / SWISS_SCALE) as f32);
                }
            }
        }
        out
    }

    /// The mode centres and the per-coordinate standard deviation, both after the final division;
    /// `None` for the swiss roll, which has no modes.
    pub fn modes(&self) -> Option<(Vec<[f64; 2]>, f64)> {
        let (noise, scale) = match self {
            ToyDataset::EightGaussians => (EIGHT_NOISE, EIGHT_SCALE),
            ToyDataset::TwentyFiveGaussians => (TWENTY_FIVE_NOISE, TWENTY_FIVE_SCALE),
            ToyDataset::SwissRoll => return None,
        };
        let centres = self.raw_centres().into_iter().map(|[x, y]| [x / scale, y / scale]).collect();
        Some((centres, noise / scale))
    }
}

impl fmt::Display for ToyDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ToyDataset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ToyDataset::ALL.iter().copied().find(|d| d.name() == s).ok_or_else(|| {
            Error::msg(format!("unknown toy data set '{s}': expected one of 8gaussians, 25gaussians, swissroll"))
        })
    }
}
