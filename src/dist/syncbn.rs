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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::dist::comm::Solo;

    /// In one rank, the synchronised forward, backward and running update are the CPU backend's
    /// `normalize`, `normalize_backward` and `batch_norm_running_update`, bit for bit: the same
    /// statistics rounded once and the same per-element operations in the same order. (Across
    /// ranks only the order of the f64 sums changes: tests/mpi_train.rs.)
    #[test]
    fn one_rank_is_the_cpu_backend_bit_for_bit() {
        let be = Cpu::<f32>::new();
        let comm = Comm::new(Box::new(Solo), true);
        for shape in [vec![6, 3, 4, 4], vec![5, 7]] {
            let n: usize = shape.iter().product();
            let c = shape[1];
            let x = be.randn(&shape, 3, 1);
            let x = be.add_scalar(&be.scale(&x, 1.7), 0.3);
            let g = be.randn(&shape, 3, 2);
            let (rm, rv) = (be.fill(&[c], 0.1), be.fill(&[c], 0.9));
            let (rm2, rv2) = (be.fill(&[c], 0.1), be.fill(&[c], 0.9));
            let (xh, stats) = forward(&be, &comm, &x, 1e-5, Some((&rm, &rv, 0.1)));
            be.batch_norm_running_update(&x, &rm2, &rv2, 0.1);
            let bits = |t: &<Cpu<f32> as Backend>::Tensor| be.to_f32(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&xh), bits(&be.normalize(&x, Group::Channel, 1e-5)), "forward {shape:?}");
            assert_eq!(bits(&rm), bits(&rm2), "running mean {shape:?}");
            assert_eq!(bits(&rv), bits(&rv2), "running variance {shape:?}");
            let back = backward(&be, &comm, &g, &x, &stats);
            let want = be.normalize_backward(&g, &x, Group::Channel, 1e-5);
            let (a, b) = (be.to_f32(&back), be.to_f32(&want));
            // The backward's sums of g·x̂ are taken in f64 of exact products (the CPU rounds each
            // product to f32 first): equal up to the last bit of their mean.
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst <= 4.0 * f32::EPSILON * scale, "backward {shape:?}: {worst} of {scale} ({n} values)");
        }
    }
}
