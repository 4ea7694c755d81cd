//! Fused ops: one pass (plus its group statistics) for what the tape would otherwise build from
//! many elementwise and group ops. The math of each is specified on the `Backend` trait; the
//! composites they replace stay on the tape as the reference (`tests/fused_ops.rs`).
//!
//! Group statistics are accumulated in f64 over the same fixed chunking as every other reduction
//! (`par::Layout::reduce`) and rounded to T once per group; per-element arithmetic is in T.

use super::par::Layout;
use super::{CpuTensor, Elem};
use crate::backend::{Group, PenaltyKind};

/// Per group (mean, rstd = 1/sqrt(var + eps), var + eps) in f64, two passes.
fn stats64<T: Elem>(l: &Layout, xs: &[T], eps: f64) -> Vec<(f64, f64, f64)> {
    let cnt = l.group_size();
    let sums = l.reduce([xs], |[x], _| [x.to_f64()]);
    let means: Vec<f64> = sums.iter().map(|s| s[0] / cnt).collect();
    let sq = l.reduce([xs], |[x], g| [(x.to_f64() - means[g]).powi(2)]);
    means
        .iter()
        .zip(&sq)
        .map(|(&m, s)| {
            let var = s[0] / cnt + eps;
            (m, 1.0 / var.sqrt(), var)
        })
        .collect()
}

/// See `Backend::normalize_hvp`.
pub(crate) fn normalize_hvp<T: Elem>(
    gg: &CpuTensor<T>,
    h: &CpuTensor<T>,
    x: &CpuTensor<T>,
    group: Group,
    eps: f64,
) -> CpuTensor<T> {
    assert!(gg.shape() == x.shape() && h.shape() == x.shape(), "normalize_hvp: shapes differ");
    let l = Layout::new(x.shape(), group);
    // SAFETY: read-only inputs, fresh output.
    let (gs, hs, xs) = unsafe { (gg.data(), h.data(), x.data()) };
    let st = stats64(&l, xs, eps);
    let cnt = l.group_size();
    let sums = l.reduce([gs, hs, xs], |[g, h, x], k| {
        let (m, r, _) = st[k];
        let (g, h) = (g.to_f64(), h.to_f64());
        let xh = (x.to_f64() - m) * r;
        [g, h, g * xh, h * xh, h * g]
    });
    // (mean, rstd, 1/σ², c − 3ab, a, b, mean h, mean gg), rounded to T
    let coef: Vec<[T; 8]> = (sums.iter().zip(&st))
        .map(|(s, &(m, r, var))| {
            let [mg, mh, a, b, mhg] = s.map(|v| v / cnt);
            let c = mhg - mh * mg;
            [m, r, 1.0 / var, c - 3.0 * a * b, a, b, mh, mg].map(T::from_f64)
        })
        .collect();
    let out = l.build([gs, hs, xs], &coef, |[g, h, x], [m, r, iv, cf, a, b, mh, mg]| {
        let xh = (x - m) * r;
        -(iv * (xh * cf + a * (h - mh) + b * (g - mg)))
    });
    CpuTensor::from_vec(out, x.shape())
}

/// See `Backend::batch_norm_running_update`.
pub(crate) fn batch_norm_running_update<T: Elem>(
    x: &CpuTensor<T>,
    rm: &CpuTensor<T>,
    rv: &CpuTensor<T>,
    momentum: f64,
) {
    let l = Layout::new(x.shape(), Group::Channel);
    assert!(
        rm.numel() == l.groups && rv.numel() == l.groups,
        "batch_norm_running_update: {} channels, running statistics of {} and {}",
        l.groups,
        rm.numel(),
        rv.numel()
    );
    assert!(!rm.overlaps(rv) && !rm.overlaps(x) && !rv.overlaps(x), "batch_norm_running_update: buffers overlap");
    // SAFETY: read-only input.
    let xs = unsafe { x.data() };
    let cnt = l.group_size();
    let sums = l.reduce([xs], |[x], _| [x.to_f64()]);
    let means: Vec<f64> = sums.iter().map(|s| s[0] / cnt).collect();
    let sq = l.reduce([xs], |[x], g| [(x.to_f64() - means[g]).powi(2)]);
    let (a, b) = (T::from_f64(1.0 - momentum), T::from_f64(momentum));
    // SAFETY: the running buffers overlap neither each other nor x (checked above).
    let (ms, vs) = unsafe { (rm.data_mut(), rv.data_mut()) };
    for g in 0..l.groups {
        let var = sq[g][0] / (cnt - 1.0).max(1.0);
        ms[g] = a * ms[g] + b * T::from_f64(means[g]);
        vs[g] = a * vs[g] + b * T::from_f64(var);
    }
}

/// See `Backend::penalty_hvp`.
pub(crate) fn penalty_hvp<T: Elem>(
    g: &CpuTensor<T>,
    u: &CpuTensor<T>,
    h: &CpuTensor<T>,
    kind: PenaltyKind,
    eps: f64,
) -> CpuTensor<T> {
    assert_eq!(g.shape(), h.shape(), "penalty_hvp: shapes differ");
    assert_eq!(u.numel(), 1, "penalty_hvp: u must hold one value");
    let l = Layout::new(g.shape(), Group::Sample);
    // SAFETY: read-only inputs, fresh output.
    let (gs, hs, us) = unsafe { (g.data(), h.data(), u.data()) };
    let sums = l.reduce([gs, hs], |[g, h], _| [g.to_f64() * g.to_f64(), g.to_f64() * h.to_f64()]);
    let coef: Vec<(T, T)> = sums
        .iter()
        .map(|&[ss, gh]| {
            let n = (ss + eps).sqrt();
            let dc = 2.0 / (n * n * n);
            let (c, dc) = match kind {
                PenaltyKind::TwoSided => (2.0 - 2.0 / n, dc),
                PenaltyKind::OneSided if n > 1.0 => (2.0 * (n - 1.0) / n, dc),
                PenaltyKind::OneSided => (0.0, 0.0),
            };
            (T::from_f64(c), T::from_f64(dc * gh))
        })
        .collect();
    let (uu, inv_n) = (us[0], T::from_f64(1.0 / l.groups.max(1) as f64));
    let out = l.build([gs, hs], &coef, |[g, h], (c, d)| (c * h + d * g) * uu * inv_n);
    CpuTensor::from_vec(out, g.shape())
}

/// See `Backend::group_affine`.
pub(crate) fn group_affine<T: Elem>(
    x: &CpuTensor<T>,
    s: &CpuTensor<T>,
    b: &CpuTensor<T>,
    group: Group,
    leaky: Option<f64>,
) -> CpuTensor<T> {
    let l = Layout::new(x.shape(), group);
    assert!(
        s.numel() == l.groups && b.numel() == l.groups,
        "group_affine: {} groups of {:?}, scale of {} and offset of {} values",
        l.groups,
        x.shape(),
        s.numel(),
        b.numel()
    );
    // SAFETY: read-only inputs, fresh output.
    let (xs, ss, bs) = unsafe { (x.data(), s.data(), b.data()) };
    let sb: Vec<(T, T)> = ss.iter().zip(bs).map(|(&s, &b)| (s, b)).collect();
    let out = match leaky {
        None => l.build([xs], &sb, |[x], (s, b)| x * s + b),
        Some(slope) => {
            let k = T::from_f64(slope);
            l.build([xs], &sb, move |[x], (s, b)| {
                let z = x * s + b;
                if z > T::ZERO {
                    z
                } else {
                    k * z
                }
            })
        }
    };
    CpuTensor::from_vec(out, x.shape())
}
