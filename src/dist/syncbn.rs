//! Synchronised batch norm: batch norm's training-mode normalisation with the statistics of the
//! global batch, every rank's rows together, so that N ranks normalise exactly as one process
//! with the whole batch does.
//!
//! Per channel, each rank adds up its rows in f64, the sums are added over ranks (`Comm::sum_f64`),
//! and everything after that is the CPU backend's `normalize` / `normalize_backward` /
//! `batch_norm_running_update` (src/backend/cpu/norm.rs, fused.rs) step by step: the mean, then
//! the centred squares, in f64; mean and 1/σ rounded to the element type once; per element
//! (x − m)·r, and (1/σ)(g − mean g − x̂·mean(g·x̂)) in the element type, in the same order. So the
//! values equal the single process's up to the order of f64 sums. The per-element work is backend
//! ops (`group_add`, `group_mul`, `sub`); the sums are taken on the host (one read of the
//! activations per layer and pass: a synchronisation point on a GPU).

use super::Comm;
use crate::backend::{Backend, Group};

/// Per channel of x [N, C, ...]: Σ f(x) over the rank's elements.
fn channel_sums(xs: &[f64], n: usize, c: usize, inner: usize, f: impl Fn(usize, f64) -> f64) -> Vec<f64> {
    let mut s = vec![0f64; c];
    for i in 0..n {
        for (ch, acc) in s.iter_mut().enumerate() {
            let base = (i * c + ch) * inner;
            *acc += xs[base..base + inner].iter().map(|&x| f(ch, x)).sum::<f64>();
        }
    }
    s
}

fn dims<B: Backend>(be: &B, x: &B::Tensor) -> (usize, usize, usize) {
    let s = be.shape(x);
    let (n, c) = (s[0], s[1]);
    (n, c, s[2..].iter().product())
}

/// Running statistics to update: (running_mean, running_var, momentum).
pub type Running<'a, B> = (&'a <B as Backend>::Tensor, &'a <B as Backend>::Tensor, f64);

/// x̂ = (x − mean)/sqrt(var + eps) with mean and biased variance over every rank's rows; updates
/// the running statistics (with the unbiased global variance) when given. Returns x̂ and the
/// statistics the backward needs: [mean (C), 1/σ (C)] in the element type.
pub fn forward<B: Backend>(
    be: &B,
    comm: &Comm,
    x: &B::Tensor,
    eps: f64,
    running: Option<Running<'_, B>>,
) -> (B::Tensor, B::Tensor) {
    let (n, c, inner) = dims(be, x);
    let xs = be.to_f64(x);
    let mut s = channel_sums(&xs, n, c, inner, |_, x| x);
    s.push((n * inner) as f64);
    comm.sum_f64(&mut s);
    let cnt = s[c];
    let mean: Vec<f64> = s[..c].iter().map(|v| v / cnt).collect();
    let mut sq = channel_sums(&xs, n, c, inner, |ch, x| (x - mean[ch]).powi(2));
    comm.sum_f64(&mut sq);
    let r: Vec<f64> = sq.iter().map(|v| 1.0 / (v / cnt + eps).sqrt()).collect();
    // x − m as x + (−m): the same rounding.
    let neg_m = be.from_f64(&mean.iter().map(|m| -m).collect::<Vec<_>>(), &[c]);
    let rt = be.from_f64(&r, &[c]);
    let xh = be.group_mul(&be.group_add(x, &neg_m, Group::Channel), &rt, Group::Channel);
    if let Some((rm, rv, momentum)) = running {
        let var: Vec<f64> = sq.iter().map(|v| v / (cnt - 1.0).max(1.0)).collect();
        be.axpby_inplace(rm, 1.0 - momentum, &be.from_f64(&mean, &[c]), momentum);
        be.axpby_inplace(rv, 1.0 - momentum, &be.from_f64(&var, &[c]), momentum);
    }
    let stats = be.from_f64(&[mean, r].concat(), &[2 * c]);
    (xh, stats)
}

/// The backward of `forward` for upstream g: (1/σ)(g − mean(g) − x̂·mean(g·x̂)) with the means over
/// every rank's rows; `stats` is what `forward` returned.
pub fn backward<B: Backend>(be: &B, comm: &Comm, g: &B::Tensor, x: &B::Tensor, stats: &B::Tensor) -> B::Tensor {
    let (n, c, inner) = dims(be, x);
    let st = be.to_f64(stats);
    let neg_m = be.from_f64(&st[..c].iter().map(|m| -m).collect::<Vec<_>>(), &[c]);
    let r = be.from_f64(&st[c..], &[c]);
    let xh = be.group_mul(&be.group_add(x, &neg_m, Group::Channel), &r, Group::Channel);
    let (gs, xhs) = (be.to_f64(g), be.to_f64(&xh));
    let mut s = channel_sums(&gs, n, c, inner, |_, g| g);
    let gx: Vec<f64> = gs.iter().zip(&xhs).map(|(g, x)| g * x).collect();
    s.extend(channel_sums(&gx, n, c, inner, |_, v| v));
    s.push((n * inner) as f64);
    comm.sum_f64(&mut s);
    let cnt = s[2 * c];
    let neg_mg = be.from_f64(&s[..c].iter().map(|v| -v / cnt).collect::<Vec<_>>(), &[c]);
    let mgx = be.from_f64(&s[c..2 * c].iter().map(|v| v / cnt).collect::<Vec<_>>(), &[c]);
    let a = be.group_add(g, &neg_mg, Group::Channel);
    let b = be.group_mul(&xh, &mgx, Group::Channel);
    be.group_mul(&be.sub(&a, &b), &r, Group::Channel)
}
