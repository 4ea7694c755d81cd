//! The CPU reference backend: the specification every other backend is tested against, and the
//! fallback where there is no GPU. Straightforward loops where they are fast enough; convolutions
//! as im2col + one multi-threaded GEMM (the `gemm` crate) over the whole batch; elementwise work
//! split over threads (rayon) above a size threshold. Every reduction runs in a fixed order with
//! f64 accumulators, so results are deterministic (a resumed run is bitwise identical).

mod conv;
mod elem;
mod norm;

pub use elem::Elem;

use super::{numel, AdamStep, Backend, ConvParams, Group, PenaltyKind, RmsPropStep};
use rayon::prelude::*;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

/// Below this many elements, elementwise ops stay on one thread.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// The CPU backend computing in `T` (f32 for training, f64 for gradient checks).
pub struct Cpu<T = f32>(PhantomData<T>);

impl<T> Clone for Cpu<T> {
    fn clone(&self) -> Self {
        Cpu(PhantomData)
    }
}

impl<T: Elem> Default for Cpu<T> {
    fn default() -> Self {
        Cpu(PhantomData)
    }
}

impl<T: Elem> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
    /// A tensor holding `data` (row-major) with `shape`.
    pub fn tensor(&self, data: Vec<T>, shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::new(data, shape)
    }
}

/// A tensor: a shape and a window (`offset`, numel) of shared storage. Views share storage; the
/// `_inplace` ops write through it.
#[derive(Clone)]
pub struct CpuTensor<T> {
    shape: Vec<usize>,
    storage: Arc<RwLock<Vec<T>>>,
    offset: usize,
}

impl<T: Elem> std::fmt::Debug for CpuTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor{:?}", self.shape)
    }
}

impl<T: Elem> CpuTensor<T> {
    pub fn new(data: Vec<T>, shape: &[usize]) -> Self {
        assert_eq!(data.len(), numel(shape), "data length {} does not fit shape {:?}", data.len(), shape);
        CpuTensor { shape: shape.to_vec(), storage: Arc::new(RwLock::new(data)), offset: 0 }
    }
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Self {
        Self::new(data, shape)
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        self.len()
    }
    /// Where this view starts in its storage.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Whether the two tensors are views of the same storage.
    pub fn shares_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs `f` on the elements.
    pub fn with<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        let g = self.storage.read().expect("tensor storage lock");
        f(&g[self.offset..self.offset + self.len()])
    }
    fn with_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut g = self.storage.write().expect("tensor storage lock");
        let n = self.len();
        f(&mut g[self.offset..self.offset + n])
    }
    pub fn to_vec(&self) -> Vec<T> {
        self.with(|s| s.to_vec())
    }
}

fn map1<T: Elem>(a: &CpuTensor<T>, f: impl Fn(T) -> T + Sync) -> CpuTensor<T> {
    let out = a.with(|x| {
        if x.len() >= PAR_MIN {
            x.par_iter().map(|&v| f(v)).collect()
        } else {
            x.iter().map(|&v| f(v)).collect()
        }
    });
    CpuTensor::new(out, &a.shape)
}

fn map2<T: Elem>(a: &CpuTensor<T>, b: &CpuTensor<T>, what: &str, f: impl Fn(T, T) -> T + Sync) -> CpuTensor<T> {
    assert_eq!(a.shape, b.shape, "{what}: shapes differ");
    let out = a.with(|x| {
        b.with(|y| {
            if x.len() >= PAR_MIN {
                x.par_iter().zip(y.par_iter()).map(|(&u, &v)| f(u, v)).collect()
            } else {
                x.iter().zip(y).map(|(&u, &v)| f(u, v)).collect()
            }
        })
    });
    CpuTensor::new(out, &a.shape)
}

/// Calls `f(group, slice)` for each contiguous run of elements that share a group, in order.
pub(crate) fn for_runs(shape: &[usize], group: Group, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
    let n = numel(shape);
    match group {
        Group::All => f(0, 0..n),
        Group::Sample => {
            let per = n / shape[0];
            for s in 0..shape[0] {
                f(s, s * per..(s + 1) * per);
            }
        }
        Group::Channel => {
            let (c, inner) = (shape[1], super::inner(shape));
            for i in 0..n / inner {
                f(i % c, i * inner..(i + 1) * inner);
            }
        }
    }
}

impl<T: Elem> Cpu<T> {
    fn group_map(&self, x: &CpuTensor<T>, v: &CpuTensor<T>, group: Group, what: &str, f: impl Fn(T, T) -> T) -> CpuTensor<T> {
        assert_eq!(v.len(), group.count(&x.shape), "{what}: {:?} group values for shape {:?}", v.len(), x.shape);
        let mut out = vec![T::default(); x.len()];
        x.with(|xs| {
            v.with(|vs| {
                for_runs(&x.shape, group, |g, r| {
                    let s = vs[g];
                    for i in r {
                        out[i] = f(xs[i], s);
                    }
                })
            })
        });
        CpuTensor::new(out, &x.shape)
    }
}

impl<T: Elem> Backend for Cpu<T> {
    type Tensor = CpuTensor<T>;

    fn name(&self) -> String {
        format!("cpu ({} threads, {})", rayon::current_num_threads(), std::any::type_name::<T>())
    }
    fn shape<'a>(&self, t: &'a CpuTensor<T>) -> &'a [usize] {
        &t.shape
    }

    fn from_f32(&self, data: &[f32], shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::new(data.iter().map(|&v| T::from_f32(v)).collect(), shape)
    }
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::new(data.iter().map(|&v| T::from_f64(v)).collect(), shape)
    }
    fn to_f32(&self, t: &CpuTensor<T>) -> Vec<f32> {
        t.with(|s| s.iter().map(|v| v.to_f32()).collect())
    }
    fn to_f64(&self, t: &CpuTensor<T>) -> Vec<f64> {
        t.with(|s| s.iter().map(|v| v.to_f64()).collect())
    }
    fn fill(&self, shape: &[usize], value: f64) -> CpuTensor<T> {
        CpuTensor::new(vec![T::from_f64(value); numel(shape)], shape)
    }
    fn view(&self, t: &CpuTensor<T>, offset: usize, shape: &[usize]) -> CpuTensor<T> {
        assert!(offset + numel(shape) <= t.len(), "view {offset}+{:?} outside a tensor of {:?}", shape, t.shape);
        CpuTensor { shape: shape.to_vec(), storage: t.storage.clone(), offset: t.offset + offset }
    }
    fn copy_into_inplace(&self, dst: &CpuTensor<T>, offset: usize, src: &CpuTensor<T>) {
        let v = src.to_vec();
        assert!(offset + v.len() <= dst.len(), "copy of {} values at {offset} outside {:?}", v.len(), dst.shape);
        dst.with_mut(|d| d[offset..offset + v.len()].copy_from_slice(&v));
    }
    fn deep_copy(&self, t: &CpuTensor<T>) -> CpuTensor<T> {
        CpuTensor::new(t.to_vec(), &t.shape)
    }

    fn add(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        map2(a, b, "add", |x, y| x.add(y))
    }
    fn sub(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        map2(a, b, "sub", |x, y| x.sub(y))
    }
    fn mul(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        map2(a, b, "mul", |x, y| x.mul(y))
    }
    fn scale(&self, a: &CpuTensor<T>, c: f64) -> CpuTensor<T> {
        let c = T::from_f64(c);
        map1(a, |x| x.mul(c))
    }
    fn add_scalar(&self, a: &CpuTensor<T>, c: f64) -> CpuTensor<T> {
        let c = T::from_f64(c);
        map1(a, |x| x.add(c))
    }
    fn powf(&self, a: &CpuTensor<T>, p: f64) -> CpuTensor<T> {
        let p = T::from_f64(p);
        map1(a, |x| x.powf(p))
    }
    fn leaky_relu(&self, x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
        let s = T::from_f64(slope);
        map1(x, |v| if v > T::default() { v } else { v.mul(s) })
    }
    fn leaky_relu_backward(&self, g: &CpuTensor<T>, x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
        let s = T::from_f64(slope);
        map2(g, x, "leaky_relu_backward", |gv, xv| if xv > T::default() { gv } else { gv.mul(s) })
    }
    fn tanh(&self, x: &CpuTensor<T>) -> CpuTensor<T> {
        map1(x, |v| v.tanh())
    }
    fn tanh_backward(&self, g: &CpuTensor<T>, y: &CpuTensor<T>) -> CpuTensor<T> {
        let one = T::from_f64(1.0);
        map2(g, y, "tanh_backward", |gv, yv| gv.mul(one.sub(yv.mul(yv))))
    }

    fn group_sum(&self, x: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        let count = group.count(&x.shape);
        let mut acc = vec![0f64; count];
        x.with(|xs| {
            for_runs(&x.shape, group, |g, r| {
                acc[g] += xs[r].iter().map(|v| v.to_f64()).sum::<f64>();
            })
        });
        CpuTensor::new(acc.into_iter().map(T::from_f64).collect(), &[count])
    }
    fn group_broadcast(&self, v: &CpuTensor<T>, group: Group, shape: &[usize]) -> CpuTensor<T> {
        assert_eq!(v.len(), group.count(shape), "group_broadcast: {} values for shape {:?}", v.len(), shape);
        let mut out = vec![T::default(); numel(shape)];
        v.with(|vs| for_runs(shape, group, |g, r| out[r].fill(vs[g])));
        CpuTensor::new(out, shape)
    }
    fn group_mul(&self, x: &CpuTensor<T>, s: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        self.group_map(x, s, group, "group_mul", |a, b| a.mul(b))
    }
    fn group_add(&self, x: &CpuTensor<T>, b: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        self.group_map(x, b, group, "group_add", |a, c| a.add(c))
    }

    fn matmul(&self, a: &CpuTensor<T>, b: &CpuTensor<T>, ta: bool, tb: bool) -> CpuTensor<T> {
        assert!(a.shape.len() == 2 && b.shape.len() == 2, "matmul needs 2-D tensors, got {:?} and {:?}", a.shape, b.shape);
        let (m, k) = if ta { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
        let (k2, n) = if tb { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
        assert_eq!(k, k2, "matmul: inner sizes differ ({:?} ta={ta}, {:?} tb={tb})", a.shape, b.shape);
        let mut out = vec![T::default(); m * n];
        a.with(|av| b.with(|bv| gemm(m, k, n, av, ta, bv, tb, &mut out, false)));
        CpuTensor::new(out, &[m, n])
    }
    fn conv2d(&self, x: &CpuTensor<T>, w: &CpuTensor<T>, p: ConvParams) -> CpuTensor<T> {
        x.with(|xs| w.with(|ws| conv::forward(xs, &x.shape, ws, &w.shape, p)))
    }
    fn conv2d_data_grad(&self, gy: &CpuTensor<T>, w: &CpuTensor<T>, p: ConvParams, out_hw: (usize, usize)) -> CpuTensor<T> {
        gy.with(|g| w.with(|ws| conv::data_grad(g, &gy.shape, ws, &w.shape, p, out_hw)))
    }
    fn conv2d_weight_grad(&self, x: &CpuTensor<T>, gy: &CpuTensor<T>, p: ConvParams, k: usize) -> CpuTensor<T> {
        x.with(|xs| gy.with(|g| conv::weight_grad(xs, &x.shape, g, &gy.shape, p, k)))
    }

    fn normalize(&self, x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
        x.with(|xs| CpuTensor::new(norm::normalize(xs, &x.shape, group, eps), &x.shape))
    }
    fn normalize_backward(&self, g: &CpuTensor<T>, x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
        assert_eq!(g.shape, x.shape, "normalize_backward: shapes differ");
        x.with(|xs| g.with(|gs| CpuTensor::new(norm::normalize_backward(gs, xs, &x.shape, group, eps), &x.shape)))
    }

    fn interpolate(&self, x: &CpuTensor<T>, xt: &CpuTensor<T>, eps: &CpuTensor<T>) -> CpuTensor<T> {
        assert_eq!(x.shape, xt.shape, "interpolate: shapes differ");
        assert_eq!(eps.len(), x.shape[0], "interpolate: one ε per sample");
        let per = x.len() / x.shape[0];
        let out = x.with(|a| {
            xt.with(|b| {
                eps.with(|e| {
                    (0..a.len())
                        .map(|i| {
                            let t = e[i / per].to_f64();
                            T::from_f64(t * a[i].to_f64() + (1.0 - t) * b[i].to_f64())
                        })
                        .collect()
                })
            })
        });
        CpuTensor::new(out, &x.shape)
    }
    fn penalty(&self, g: &CpuTensor<T>, kind: PenaltyKind, eps: f64) -> (CpuTensor<T>, CpuTensor<T>) {
        let n = g.shape[0];
        let per = g.len() / n;
        let mut total = 0.0;
        let mut dp = vec![T::default(); g.len()];
        g.with(|gs| {
            for s in 0..n {
                let r = s * per..(s + 1) * per;
                let norm = (gs[r.clone()].iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() + eps).sqrt();
                let d = match kind {
                    PenaltyKind::TwoSided => norm - 1.0,
                    PenaltyKind::OneSided => (norm - 1.0).max(0.0),
                };
                total += d * d;
                // d/dg (d²)/N = (2d/N) · g/‖g‖
                let c = if norm > 0.0 { 2.0 * d / (n as f64 * norm) } else { 0.0 };
                for i in r {
                    dp[i] = T::from_f64(c * gs[i].to_f64());
                }
            }
        });
        (CpuTensor::new(vec![T::from_f64(total / n as f64)], &[1]), CpuTensor::new(dp, &g.shape))
    }

    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> CpuTensor<T> {
        let n = numel(shape);
        let v = (0..n as u64).into_par_iter().map(|i| T::from_f64(crate::rng::normal(seed, stream, i))).collect();
        CpuTensor::new(v, shape)
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> CpuTensor<T> {
        let n = numel(shape);
        let v = (0..n as u64).into_par_iter().map(|i| T::from_f64(crate::rng::uniform(seed, stream, i))).collect();
        CpuTensor::new(v, shape)
    }

    fn adam_inplace(&self, p: &CpuTensor<T>, g: &CpuTensor<T>, m: &CpuTensor<T>, v: &CpuTensor<T>, s: AdamStep) {
        assert_disjoint("adam", &[p, m, v]);
        let (gs, mut ps, mut ms, mut vs) = (g.to_vec(), p.to_vec(), m.to_vec(), v.to_vec());
        assert!(gs.len() == ps.len() && ms.len() == ps.len() && vs.len() == ps.len(), "adam: buffer lengths differ");
        let bc1 = 1.0 - s.beta1.powi(s.t as i32);
        let bc2_sqrt = (1.0 - s.beta2.powi(s.t as i32)).sqrt();
        let step = s.lr / bc1;
        for i in 0..ps.len() {
            let gi = gs[i].to_f64();
            let mi = s.beta1 * ms[i].to_f64() + (1.0 - s.beta1) * gi;
            let vi = s.beta2 * vs[i].to_f64() + (1.0 - s.beta2) * gi * gi;
            ms[i] = T::from_f64(mi);
            vs[i] = T::from_f64(vi);
            let denom = vi.sqrt() / bc2_sqrt + s.eps;
            ps[i] = T::from_f64(ps[i].to_f64() - step * mi / denom);
        }
        write_back(p, &ps);
        write_back(m, &ms);
        write_back(v, &vs);
    }
    fn rmsprop_inplace(&self, p: &CpuTensor<T>, g: &CpuTensor<T>, v: &CpuTensor<T>, s: RmsPropStep) {
        assert_disjoint("rmsprop", &[p, v]);
        let (gs, mut ps, mut vs) = (g.to_vec(), p.to_vec(), v.to_vec());
        assert!(gs.len() == ps.len() && vs.len() == ps.len(), "rmsprop: buffer lengths differ");
        for i in 0..ps.len() {
            let gi = gs[i].to_f64();
            let vi = s.alpha * vs[i].to_f64() + (1.0 - s.alpha) * gi * gi;
            vs[i] = T::from_f64(vi);
            let mut pi = ps[i].to_f64() - s.lr * gi / (vi.sqrt() + s.eps);
            if let Some(c) = s.clip {
                pi = pi.clamp(-c, c);
            }
            ps[i] = T::from_f64(pi);
        }
        write_back(p, &ps);
        write_back(v, &vs);
    }
    fn clamp_inplace(&self, p: &CpuTensor<T>, c: f64) {
        p.with_mut(|ps| ps.iter_mut().for_each(|x| *x = T::from_f64(x.to_f64().clamp(-c, c))));
    }
    fn axpby_inplace(&self, y: &CpuTensor<T>, a: f64, x: &CpuTensor<T>, b: f64) {
        let xs = x.to_vec();
        assert_eq!(xs.len(), y.len(), "axpby: lengths differ");
        y.with_mut(|ys| {
            for (yi, xi) in ys.iter_mut().zip(xs) {
                *yi = T::from_f64(a * yi.to_f64() + b * xi.to_f64());
            }
        });
    }
}

/// Panics if two of the buffers an in-place op updates overlap in one storage.
fn assert_disjoint<T: Elem>(what: &str, ts: &[&CpuTensor<T>]) {
    for (i, a) in ts.iter().enumerate() {
        for b in &ts[i + 1..] {
            let overlap = a.offset < b.offset + b.len() && b.offset < a.offset + a.len();
            assert!(!(a.shares_storage(b) && overlap), "{what}: state buffers overlap in one storage");
        }
    }
}

fn write_back<T: Elem>(t: &CpuTensor<T>, v: &[T]) {
    t.with_mut(|d| d.copy_from_slice(v));
}

/// out[m×n] = op(A)·op(B) (+ out when `accumulate`), A and B row-major in their stored layout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Elem>(m: usize, k: usize, n: usize, a: &[T], ta: bool, b: &[T], tb: bool, out: &mut [T], accumulate: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let beta = T::from_f64(if accumulate { 1.0 } else { 0.0 });
    // SAFETY: the slices hold at least the extents asserted above, and the strides stay in them.
    unsafe {
        T::gemm(m, k, n, T::from_f64(1.0), a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, out.as_mut_ptr(), n as isize, 1);
    }
}
