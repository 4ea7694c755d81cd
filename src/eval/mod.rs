//! Sample quality for images, as the seed notes measure it, without downloads: Inception Score,
//! Mode Score, FID, KID, the 1-NN two-sample test and class coverage, computed in the feature space
//! of a small MNIST classifier trained by this project (embedded in the binary) or of a network
//! the user supplies, always beside the same metric between two disjoint real sets (the floor).
//!
//! - `features`: feature networks (layout, loading, forward) · `mnist`: the embedded classifier
//! - `scores`: IS, Mode Score, coverage · `fid`, `kid`, `nn1`: the distances · `linalg`: Jacobi
//! - `command`: `wgan eval` · `probe`: the scores logged during training · `export`: `wgan sample`
//!   to a folder of PNGs or a .npy file

pub mod command;
pub mod export;
pub mod features;
pub mod fid;
pub mod kid;
pub mod linalg;
pub mod mnist;
pub mod nn1;
pub mod probe;
pub mod scores;

pub use features::{Embedding, FeatureNet};

/// Every metric of one set of samples against a real reference set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub inception_score: f64,
    pub mode_score: f64,
    pub fid: f64,
    pub kid: f64,
    /// Standard deviation of the MMD² over the KID subsets.
    pub kid_std: f64,
    pub one_nn_accuracy: f64,
    /// Classes holding at least 2 % of the samples.
    pub classes_covered: usize,
    pub classes: usize,
    /// KL(sample class histogram ‖ real class histogram), nats.
    pub class_kl: f64,
}

/// All metrics of `samples` against `real` (same network). `seed` draws the KID subsets.
pub fn compare(samples: &Embedding, real: &Embedding, seed: u64) -> Metrics {
    let (d, k) = (real.d, real.k);
    let real_marginal = scores::marginal(&real.probs, k);
    let (covered, class_kl) =
        scores::coverage(&scores::class_histogram(&samples.probs, k), &scores::class_histogram(&real.probs, k));
    let (kid, kid_std) = kid::kid(&samples.feats, &real.feats, d, seed);
    Metrics {
        inception_score: scores::inception_score(&samples.probs, k),
        mode_score: scores::mode_score(&samples.probs, &real_marginal, k),
        fid: fid::fid(&samples.feats, samples.n, &real.feats, real.n, d),
        kid,
        kid_std,
        one_nn_accuracy: nn1::one_nn_accuracy(&samples.feats, &real.feats, d),
        classes_covered: covered,
        classes: k,
        class_kl,
    }
}

/// Resizes NCHW images to `size`×`size` (bilinear, per plane).
pub fn resize_images(images: &[f32], n: usize, c: usize, from: usize, size: usize) -> Vec<f32> {
    if from == size {
        return images.to_vec();
    }
    let plane = from * from;
    let mut out = Vec::with_capacity(n * c * size * size);
    for p in images.chunks_exact(plane) {
        out.extend(crate::data::resize_plane(p, from, from, size, size));
    }
    out
}
