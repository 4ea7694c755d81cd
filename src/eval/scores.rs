//! Scores on class posteriors p(y|x) (rows of k probabilities): the Inception Score (Salimans et
//! al. 2016), the Mode Score (Che et al. 2017) and class coverage.

/// The class marginal p(y): the mean of the posterior rows.
pub fn marginal(p: &[f64], k: usize) -> Vec<f64> {
    let n = p.len() / k;
    let mut m = vec![0.0; k];
    for row in p.chunks_exact(k) {
        for (a, b) in m.iter_mut().zip(row) {
            *a += b;
        }
    }
    m.iter_mut().for_each(|a| *a /= n as f64);
    m
}

/// KL(p ‖ q) in nats, with 0·log 0 = 0; q = 0 where p > 0 gives infinity.
pub fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, b)| if *b > 0.0 { a * (a / b).ln() } else { f64::INFINITY })
        .sum()
}

/// Inception Score: exp(E_x KL(p(y|x) ‖ p(y))) over the whole set (one split). It lies in [1, k]:
/// k when every posterior is one-hot and the classes are used equally.
pub fn inception_score(p: &[f64], k: usize) -> f64 {
    let n = p.len() / k;
    let m = marginal(p, k);
    let mean_kl = p.chunks_exact(k).map(|row| kl(row, &m)).sum::<f64>() / n as f64;
    mean_kl.exp()
}

/// Mode Score: exp(E_x KL(p(y|x) ‖ p(y)) − KL(p(y) ‖ p*(y))) with p* the real data's class
/// marginal: the Inception Score, penalised when the class frequencies differ from the data's.
pub fn mode_score(p: &[f64], real_marginal: &[f64], k: usize) -> f64 {
    let n = p.len() / k;
    let m = marginal(p, k);
    let mean_kl = p.chunks_exact(k).map(|row| kl(row, &m)).sum::<f64>() / n as f64;
    (mean_kl - kl(&m, real_marginal)).exp()
}

/// Minimum share of the samples a class needs to count as covered.
pub const COVERAGE_MIN_SHARE: f64 = 0.02;

/// The histogram of predicted classes (argmax of each posterior row), as frequencies.
pub fn class_histogram(p: &[f64], k: usize) -> Vec<f64> {
    let n = p.len() / k;
    let mut h = vec![0.0; k];
    for row in p.chunks_exact(k) {
        let mut best = 0;
        for (j, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = j;
            }
        }
        h[best] += 1.0;
    }
    h.iter_mut().for_each(|a| *a /= n as f64);
    h
}

/// Class coverage: (classes holding at least 2 % of the samples, KL(sample histogram ‖ real
/// histogram)). The real histogram has every class, so the KL is finite.
pub fn coverage(hist: &[f64], real_hist: &[f64]) -> (usize, f64) {
    let covered = hist.iter().filter(|&&h| h >= COVERAGE_MIN_SHARE).count();
    (covered, kl(hist, real_hist))
}
