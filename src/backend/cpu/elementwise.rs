//! Elementwise ops, activations, interpolation and random numbers.
//!
//! Per-element arithmetic is done in the element type T, hyperparameters rounded to T first.

use super::par::{build, Layout};
use super::{CpuTensor, Elem};
use crate::backend::{numel, Group};
use crate::rng;

fn check_same(op: &str, a: &[usize], b: &[usize]) {
    assert_eq!(a, b, "{op}: shapes differ");
}

/// out[i] = f(a[i])
pub(crate) fn map<T: Elem>(a: &CpuTensor<T>, f: impl Fn(T) -> T + Sync) -> CpuTensor<T> {
    // SAFETY: read-only input, fresh output.
    let x = unsafe { a.data() };
    let out = build(x.len(), |s, o| {
        let e = s + o.len();
        for (o, &x) in o.iter_mut().zip(&x[s..e]) {
            o.write(f(x));
        }
    });
    CpuTensor::from_vec(out, a.shape())
}

/// out[i] = f(a[i], b[i]) for equal shapes.
pub(crate) fn zip<T: Elem>(op: &str, a: &CpuTensor<T>, b: &CpuTensor<T>, f: impl Fn(T, T) -> T + Sync) -> CpuTensor<T> {
    check_same(op, a.shape(), b.shape());
    // SAFETY: read-only inputs, fresh output.
    let (x, y) = unsafe { (a.data(), b.data()) };
    let out = build(x.len(), |s, o| {
        let e = s + o.len();
        for ((o, &x), &y) in o.iter_mut().zip(&x[s..e]).zip(&y[s..e]) {
            o.write(f(x, y));
        }
    });
    CpuTensor::from_vec(out, a.shape())
}

pub(crate) fn leaky_relu<T: Elem>(x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
    let s = T::from_f64(slope);
    map(x, move |x| if x > T::ZERO { x } else { s * x })
}

pub(crate) fn leaky_relu_backward<T: Elem>(g: &CpuTensor<T>, x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
    let s = T::from_f64(slope);
    zip("leaky_relu_backward", g, x, move |g, x| if x > T::ZERO { g } else { s * g })
}

pub(crate) fn tanh_backward<T: Elem>(g: &CpuTensor<T>, y: &CpuTensor<T>) -> CpuTensor<T> {
    zip("tanh_backward", g, y, |g, y| g * (T::ONE - y * y))
}

/// σ(x) without overflow: 1/(1 + e^(−x)) for x ≥ 0, e^x/(1 + e^x) for x < 0 (e^(−|x|) ≤ 1 either way).
pub(crate) fn sigmoid<T: Elem>(x: &CpuTensor<T>) -> CpuTensor<T> {
    map(x, |x| {
        let e = (-x.abs()).exp();
        if x >= T::ZERO {
            T::ONE / (T::ONE + e)
        } else {
            e / (T::ONE + e)
        }
    })
}

/// max(x, 0) − z·x + ln(1 + e^(−|x|)): −z·ln σ(x) − (1 − z)·ln(1 − σ(x)) without overflow or
/// cancellation (e^(−|x|) ≤ 1, and ln_1p keeps its small values).
pub(crate) fn sigmoid_cross_entropy<T: Elem>(x: &CpuTensor<T>, z: f64) -> CpuTensor<T> {
    let z = T::from_f64(z);
    map(x, move |x| x.max(T::ZERO) - z * x + (-x.abs()).exp().ln_1p())
}

/// out[i] = f(x[i], v[group(i)])
pub(crate) fn group_map<T: Elem>(
    op: &str,
    x: &CpuTensor<T>,
    v: &CpuTensor<T>,
    group: Group,
    f: impl Fn(T, T) -> T + Sync,
) -> CpuTensor<T> {
    let l = Layout::new(x.shape(), group);
    assert_eq!(v.numel(), l.groups, "{op}: {} values for {} groups of {:?}", v.numel(), l.groups, x.shape());
    // SAFETY: read-only inputs, fresh output.
    let (xs, vs) = unsafe { (x.data(), v.data()) };
    CpuTensor::from_vec(l.build([xs], vs, |[x], c| f(x, c)), x.shape())
}

pub(crate) fn group_broadcast<T: Elem>(v: &CpuTensor<T>, group: Group, shape: &[usize]) -> CpuTensor<T> {
    let l = Layout::new(shape, group);
    assert_eq!(v.numel(), l.groups, "group_broadcast: {} values for {} groups of {:?}", v.numel(), l.groups, shape);
    // SAFETY: read-only input, fresh output.
    let vs = unsafe { v.data() };
    CpuTensor::from_vec(l.build::<T, T, 0>([], vs, |_, c| c), shape)
}

pub(crate) fn group_sum<T: Elem>(x: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
    let l = Layout::new(x.shape(), group);
    // SAFETY: read-only input.
    let xs = unsafe { x.data() };
    let sums = l.reduce([xs], |[x], _| [x.to_f64()]);
    CpuTensor::from_vec(sums.iter().map(|s| T::from_f64(s[0])).collect(), &[l.groups])
}

/// x̂ = ε·x + (1−ε)·x̃ per sample, in T.
pub(crate) fn interpolate<T: Elem>(x: &CpuTensor<T>, xt: &CpuTensor<T>, eps: &CpuTensor<T>) -> CpuTensor<T> {
    check_same("interpolate", x.shape(), xt.shape());
    let l = Layout::new(x.shape(), Group::Sample);
    assert_eq!(eps.numel(), l.groups, "interpolate: eps has {} values for {} samples", eps.numel(), l.groups);
    // SAFETY: read-only inputs, fresh output.
    let (xs, ts, es) = unsafe { (x.data(), xt.data(), eps.data()) };
    let ef: Vec<(T, T)> = es.iter().map(|&e| (e, T::ONE - e)).collect();
    CpuTensor::from_vec(l.build([xs, ts], &ef, |[x, t], (e, f)| e * x + f * t), x.shape())
}

/// [real; fake] or [real; fake; interpolate(real, fake, eps)] along dim 0 (the critic's input).
pub(crate) fn critic_input<T: Elem>(
    real: &CpuTensor<T>,
    fake: &CpuTensor<T>,
    eps: Option<&CpuTensor<T>>,
) -> CpuTensor<T> {
    check_same("critic_input", real.shape(), fake.shape());
    assert!(!real.shape().is_empty(), "critic_input: needs a batch dimension, got a 0-d tensor");
    let mixed = eps.map(|e| interpolate(real, fake, e));
    let mut shape = real.shape().to_vec();
    shape[0] *= if mixed.is_some() { 3 } else { 2 };
    let mut out = Vec::with_capacity(numel(&shape));
    // SAFETY: read-only inputs.
    unsafe {
        out.extend_from_slice(real.data());
        out.extend_from_slice(fake.data());
        if let Some(m) = &mixed {
            out.extend_from_slice(m.data());
        }
    }
    CpuTensor::from_vec(out, &shape)
}

/// Element i from `rng::normal(seed, stream, i)` or `rng::uniform(...)`, rounded to T.
pub(crate) fn random<T: Elem>(shape: &[usize], seed: u64, stream: u64, normal: bool) -> CpuTensor<T> {
    let out = build(numel(shape), |s, o| {
        for (j, o) in o.iter_mut().enumerate() {
            let i = (s + j) as u64;
            o.write(T::from_f64(if normal { rng::normal(seed, stream, i) } else { rng::uniform(seed, stream, i) }));
        }
    });
    CpuTensor::from_vec(out, shape)
}
