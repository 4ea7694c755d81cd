//! Normalisation within groups (layer norm: per sample; batch norm: per channel), with f64
//! statistics: x̂ = (x − mean)/sqrt(var + eps), var biased; and its backward
//! (1/σ)(g − mean(g) − x̂·mean(g·x̂)).

use super::{for_runs, Elem};
use crate::backend::{numel, Group};

/// Per group: (mean, 1/σ).
fn stats<T: Elem>(x: &[T], shape: &[usize], group: Group, eps: f64) -> Vec<(f64, f64)> {
    let count = group.count(shape);
    let per = (numel(shape) / count) as f64;
    let mut sum = vec![0f64; count];
    for_runs(shape, group, |g, r| sum[g] += x[r].iter().map(|v| v.to_f64()).sum::<f64>());
    let mean: Vec<f64> = sum.iter().map(|s| s / per).collect();
    let mut sq = vec![0f64; count];
    for_runs(shape, group, |g, r| sq[g] += x[r].iter().map(|v| (v.to_f64() - mean[g]).powi(2)).sum::<f64>());
    mean.iter().zip(sq).map(|(&m, s)| (m, 1.0 / (s / per + eps).sqrt())).collect()
}

pub fn normalize<T: Elem>(x: &[T], shape: &[usize], group: Group, eps: f64) -> Vec<T> {
    let st = stats(x, shape, group, eps);
    let mut out = vec![T::default(); x.len()];
    for_runs(shape, group, |g, r| {
        let (m, inv) = st[g];
        for i in r {
            out[i] = T::from_f64((x[i].to_f64() - m) * inv);
        }
    });
    out
}

pub fn normalize_backward<T: Elem>(g: &[T], x: &[T], shape: &[usize], group: Group, eps: f64) -> Vec<T> {
    let st = stats(x, shape, group, eps);
    let count = st.len();
    let per = (numel(shape) / count) as f64;
    let (mut mg, mut mgx) = (vec![0f64; count], vec![0f64; count]);
    for_runs(shape, group, |k, r| {
        let (m, inv) = st[k];
        for i in r {
            let gi = g[i].to_f64();
            mg[k] += gi;
            mgx[k] += gi * (x[i].to_f64() - m) * inv;
        }
    });
    let mut out = vec![T::default(); x.len()];
    for_runs(shape, group, |k, r| {
        let (m, inv) = st[k];
        let (a, b) = (mg[k] / per, mgx[k] / per);
        for i in r {
            let xh = (x[i].to_f64() - m) * inv;
            out[i] = T::from_f64(inv * (g[i].to_f64() - a - xh * b));
        }
    });
    out
}
