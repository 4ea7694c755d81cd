//! Fréchet distance between Gaussian fits of two feature sets (the FID of Heusel et al. 2017, here
//! in the feature space of our own MNIST classifier or a user's network, not Inception's):
//! ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½, with unbiased covariances as numpy's `np.cov`.

use super::linalg::{mean_cov, trace_sqrt_product};

/// A Gaussian fit: mean and covariance of n feature rows of length d.
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Vec<f64>,
    pub d: usize,
}

impl Gaussian {
    pub fn fit(x: &[f64], n: usize, d: usize) -> Gaussian {
        let (mean, cov) = mean_cov(x, n, d);
        Gaussian { mean, cov, d }
    }
}

/// The Fréchet distance between two Gaussians of the same dimension.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.d, b.d, "Fréchet distance of Gaussians of different dimensions");
    let d = a.d;
    let dm: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let v = dm + tr(&a.cov) + tr(&b.cov) - 2.0 * trace_sqrt_product(&a.cov, &b.cov, d);
    // Rounding can make the distance of (nearly) identical fits slightly negative.
    v.max(0.0)
}

/// FID of two feature sets (rows of length d).
pub fn fid(x: &[f64], nx: usize, y: &[f64], ny: usize, d: usize) -> f64 {
    frechet_distance(&Gaussian::fit(x, nx, d), &Gaussian::fit(y, ny, d))
}
