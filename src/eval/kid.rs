//! Kernel Inception Distance (Bińkowski et al. 2018) in our feature space: the unbiased estimate of
//! the squared MMD with the cubic polynomial kernel k(x, y) = (x·y/d + 1)³, averaged over random
//! subsets as clean-fid and torch-fidelity do, with its spread over the subsets.

use crate::rng::HostRng;

/// Subsets drawn for KID (clean-fid's and torch-fidelity's default count).
pub const KID_SUBSETS: usize = 100;
/// Largest subset (the tools' default); smaller sets use half their size, so subsets differ.
pub const KID_MAX_SUBSET: usize = 1000;

fn kernel(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    (dot / a.len() as f64 + 1.0).powi(3)
}

/// Unbiased MMD² between rows of x (m of them) and y (n), rows of length d:
/// Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(n(n−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ)/(mn).
pub fn mmd2_unbiased(x: &[f64], y: &[f64], d: usize) -> f64 {
    let (m, n) = (x.len() / d, y.len() / d);
    assert!(m >= 2 && n >= 2, "MMD needs at least two rows per set");
    let within = |z: &[f64], k: usize| {
        let mut s = 0.0;
        for i in 0..k {
            for j in i + 1..k {
                s += kernel(&z[i * d..(i + 1) * d], &z[j * d..(j + 1) * d]);
            }
        }
        2.0 * s / (k * (k - 1)) as f64
    };
    let mut cross = 0.0;
    for i in 0..m {
        for j in 0..n {
            cross += kernel(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]);
        }
    }
    within(x, m) + within(y, n) - 2.0 * cross / (m * n) as f64
}

/// The subset size used for sets of m and n rows.
pub fn subset_size(m: usize, n: usize) -> usize {
    (m.min(n) / 2).clamp(2, KID_MAX_SUBSET)
}

/// KID: (mean, standard deviation) of the unbiased MMD² over `KID_SUBSETS` pairs of random subsets
/// (each drawn without replacement, `subset_size` rows from each side), seeded.
pub fn kid(x: &[f64], y: &[f64], d: usize, seed: u64) -> (f64, f64) {
    let (m, n) = (x.len() / d, y.len() / d);
    let s = subset_size(m, n);
    let mut rng = HostRng::new(seed, 0x4b1d);
    let mut draw = |z: &[f64], k: usize| -> Vec<f64> {
        // Partial Fisher–Yates: the first s of a random permutation.
        let mut idx: Vec<usize> = (0..k).collect();
        for i in 0..s {
            let j = i + rng.below((k - i) as u32) as usize;
            idx.swap(i, j);
        }
        idx[..s].iter().flat_map(|&i| z[i * d..(i + 1) * d].iter().copied()).collect()
    };
    let vals: Vec<f64> = (0..KID_SUBSETS)
        .map(|_| {
            let (a, b) = (draw(x, m), draw(y, n));
            mmd2_unbiased(&a, &b, d)
        })
        .collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vals.len() as f64;
    (mean, var.sqrt())
}
