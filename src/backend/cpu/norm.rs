//! Group normalisation and the WGAN-GP penalty.
//!
//! Group statistics are accumulated in f64 (two passes: mean, then centred squares); per-element
//! arithmetic is done in T with the statistics rounded to T.

use super::par::Layout;
use super::{CpuTensor, Elem};
use crate::backend::{Group, PenaltyKind};

/// Per-group (mean, 1/sqrt(var_biased + eps)) of `xs`, in T.
fn stats<T: Elem>(l: &Layout, xs: &[T], eps: f64) -> Vec<(T, T)> {
    let cnt = l.group_size();
    let sums = l.reduce([xs], |[x], _| [x.to_f64()]);
    let means: Vec<f64> = sums.iter().map(|s| s[0] / cnt).collect();
    let sq = l.reduce([xs], |[x], g| [(x.to_f64() - means[g]).powi(2)]);
    means.iter().zip(&sq).map(|(&m, s)| (T::from_f64(m), T::from_f64(1.0 / (s[0] / cnt + eps).sqrt()))).collect()
}

pub(crate) fn normalize<T: Elem>(x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
    let l = Layout::new(x.shape(), group);
    // SAFETY: read-only input, fresh output.
    let xs = unsafe { x.data() };
    let st = stats(&l, xs, eps);
    CpuTensor::from_vec(l.build([xs], &st, |[x], (m, r)| (x - m) * r), x.shape())
}

/// (1/σ)(g − mean(g) − x̂·mean(g·x̂)) per group.
pub(crate) fn normalize_backward<T: Elem>(g: &CpuTensor<T>, x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
    assert_eq!(g.shape(), x.shape(), "normalize_backward: shapes differ");
    let l = Layout::new(x.shape(), group);
    // SAFETY: read-only inputs, fresh output.
    let (gs, xs) = unsafe { (g.data(), x.data()) };
    let st = stats(&l, xs, eps);
    let cnt = l.group_size();
    let sums = l.reduce([gs, xs], |[g, x], k| {
        let (m, r) = st[k];
        [g.to_f64(), (g * ((x - m) * r)).to_f64()]
    });
    let coef: Vec<(T, T, T, T)> =
        sums.iter().zip(&st).map(|(s, &(m, r))| (m, r, T::from_f64(s[0] / cnt), T::from_f64(s[1] / cnt))).collect();
    CpuTensor::from_vec(l.build([gs, xs], &coef, |[g, x], (m, r, mg, mgx)| r * (g - mg - (x - m) * r * mgx)), x.shape())
}

/// (P, dP/dg): n_i = sqrt(Σ g_i² + eps), P = mean_i φ(n_i − 1)², dP/dg = (2/N)·φ(n_i − 1)·g/n_i with
/// φ the identity (two-sided) or max(0, ·) (one-sided). The per-sample coefficient is computed in f64;
/// it is exactly 0 where φ(n_i − 1) = 0 (one-sided, n_i ≤ 1). With eps = 0 and g_i = 0 the
/// two-sided gradient is 0·(−1/0) = NaN, as the formula says: eps is what keeps it finite.
pub(crate) fn penalty<T: Elem>(g: &CpuTensor<T>, kind: PenaltyKind, eps: f64) -> (CpuTensor<T>, CpuTensor<T>) {
    let l = Layout::new(g.shape(), Group::Sample);
    // SAFETY: read-only input, fresh outputs.
    let gs = unsafe { g.data() };
    let sq = l.reduce([gs], |[g], _| [g.to_f64().powi(2)]);
    let nsamp = l.groups.max(1) as f64;
    let mut p = 0.0f64;
    let coef: Vec<T> = sq
        .iter()
        .map(|s| {
            let norm = (s[0] + eps).sqrt();
            let d = match kind {
                PenaltyKind::TwoSided => norm - 1.0,
                PenaltyKind::OneSided => (norm - 1.0).max(0.0),
            };
            p += d * d;
            T::from_f64(if d == 0.0 { 0.0 } else { 2.0 / nsamp * d / norm })
        })
        .collect();
    let out = l.build([gs], &coef, |[g], c| c * g);
    (CpuTensor::from_vec(vec![T::from_f64(p / nsamp)], &[1]), CpuTensor::from_vec(out, g.shape()))
}
