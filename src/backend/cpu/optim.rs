//! In-place optimizer updates on flat buffers.
//!
//! Per-element arithmetic is done in T (as PyTorch does for f32 parameters); the step-dependent
//! scalars (bias corrections, step size) are computed in f64 and rounded to T once.

use super::par::{CHUNK, PAR_MIN};
use super::{CpuTensor, Elem};
use crate::backend::{AdamStep, RmsPropStep};
use rayon::prelude::*;

fn check(op: &str, mutated: &[&CpuTensor<impl Elem>], read: &CpuTensor<impl Elem>) {
    let n = read.numel();
    for (i, t) in mutated.iter().enumerate() {
        assert_eq!(t.numel(), n, "{op}: buffer sizes differ");
        for u in &mutated[i + 1..] {
            assert!(!t.overlaps(u), "{op}: state buffers overlap");
        }
    }
}

/// The read-only operand, copied out if it overlaps a buffer being written.
fn read_copy<T: Elem>(x: &CpuTensor<T>, mutated: &[&CpuTensor<T>]) -> Option<Vec<T>> {
    mutated.iter().any(|t| t.overlaps(x)).then(|| x.to_vec())
}

/// clamp(x, −c, c), NaN passing through as in torch.clamp.
#[inline(always)]
fn clamp1<T: Elem>(x: T, c: T) -> T {
    if x < -c {
        -c
    } else if x > c {
        c
    } else {
        x
    }
}

pub(crate) fn adam<T: Elem>(p: &CpuTensor<T>, g: &CpuTensor<T>, m: &CpuTensor<T>, v: &CpuTensor<T>, s: AdamStep) {
    check("adam_inplace", &[p, m, v], g);
    assert!(s.t >= 1, "adam_inplace: step numbers start at 1");
    let t = s.t.min(i32::MAX as u64) as i32;
    let step = T::from_f64(s.lr / (1.0 - s.beta1.powi(t)));
    let bc2 = T::from_f64((1.0 - s.beta2.powi(t)).sqrt());
    let (b1, c1) = (T::from_f64(s.beta1), T::from_f64(1.0 - s.beta1));
    let (b2, c2) = (T::from_f64(s.beta2), T::from_f64(1.0 - s.beta2));
    let eps = T::from_f64(s.eps);
    let gcopy = read_copy(g, &[p, m, v]);
    // SAFETY: p, m, v are disjoint (checked) and g is copied if it overlaps them.
    let (ps, ms, vs) = unsafe { (p.data_mut(), m.data_mut(), v.data_mut()) };
    let gs = match &gcopy {
        Some(c) => c.as_slice(),
        None => unsafe { g.data() },
    };
    let f = |p: &mut [T], m: &mut [T], v: &mut [T], g: &[T]| {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *m = b1 * *m + c1 * g;
            *v = b2 * *v + c2 * (g * g);
            *p -= step * (*m / (v.sqrt() / bc2 + eps));
        }
    };
    if ps.len() < PAR_MIN {
        f(ps, ms, vs, gs)
    } else {
        ps.par_chunks_mut(CHUNK)
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| f(p, m, v, g));
    }
}

pub(crate) fn rmsprop<T: Elem>(p: &CpuTensor<T>, g: &CpuTensor<T>, v: &CpuTensor<T>, s: RmsPropStep) {
    check("rmsprop_inplace", &[p, v], g);
    let (a, c) = (T::from_f64(s.alpha), T::from_f64(1.0 - s.alpha));
    let (lr, eps) = (T::from_f64(s.lr), T::from_f64(s.eps));
    let clip = s.clip.map(T::from_f64);
    let gcopy = read_copy(g, &[p, v]);
    // SAFETY: p and v are disjoint (checked) and g is copied if it overlaps them.
    let (ps, vs) = unsafe { (p.data_mut(), v.data_mut()) };
    let gs = match &gcopy {
        Some(c) => c.as_slice(),
        None => unsafe { g.data() },
    };
    let f = |p: &mut [T], v: &mut [T], g: &[T]| {
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = a * *v + c * (g * g);
            *p -= lr * (g / (v.sqrt() + eps));
            if let Some(cl) = clip {
                *p = clamp1(*p, cl);
            }
        }
    };
    if ps.len() < PAR_MIN {
        f(ps, vs, gs)
    } else {
        ps.par_chunks_mut(CHUNK)
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|((p, v), g)| f(p, v, g));
    }
}

pub(crate) fn clamp<T: Elem>(p: &CpuTensor<T>, c: f64) {
    let c = T::from_f64(c);
    // SAFETY: the only slice of p alive.
    let ps = unsafe { p.data_mut() };
    let f = |p: &mut [T]| p.iter_mut().for_each(|p| *p = clamp1(*p, c));
    if ps.len() < PAR_MIN {
        f(ps)
    } else {
        ps.par_chunks_mut(CHUNK).for_each(f);
    }
}

/// y ← a·y + b·x
pub(crate) fn axpby<T: Elem>(y: &CpuTensor<T>, a: f64, x: &CpuTensor<T>, b: f64) {
    assert_eq!(y.numel(), x.numel(), "axpby_inplace: sizes differ");
    let (a, b) = (T::from_f64(a), T::from_f64(b));
    let xcopy = read_copy(x, &[y]);
    // SAFETY: x is copied if it overlaps y.
    let ys = unsafe { y.data_mut() };
    let xs = match &xcopy {
        Some(c) => c.as_slice(),
        None => unsafe { x.data() },
    };
    let f = |y: &mut [T], x: &[T]| y.iter_mut().zip(x).for_each(|(y, &x)| *y = a * *y + b * x);
    if ys.len() < PAR_MIN {
        f(ys, xs)
    } else {
        ys.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(y, x)| f(y, x));
    }
}
