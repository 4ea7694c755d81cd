//! The CPU reference backend: the specification every other backend is tested against.
//!
//! `Cpu<f32>` trains; `Cpu<f64>` checks gradients by finite differences. Tensors are
//! [`CpuTensor`]s: a shape, a flat offset and a shared buffer, so views and clones alias.
//!
//! Numerics: elementwise arithmetic runs in the element type T with hyperparameters rounded to T;
//! every reduction (group sums, normalisation statistics, the penalty's norms) accumulates in f64
//! over a fixed chunking, so results are deterministic and independent of the thread count.
//! Optimizers update per element in T too (as PyTorch does for f32 parameters), with the
//! step-dependent scalars (bias corrections, step size) computed in f64 and rounded once.
//! Convolutions are im2col (col2im for the data gradient) around one `gemm`-crate product per task
//! of a few samples (im2col block at most 128K elements, scratch kept per thread between calls);
//! the task split depends only on the shapes, so results do not depend on the thread count.
//! Parallelism: rayon above 32k elements for elementwise ops and reductions, rayon tasks of samples
//! for convolutions; plain matrix products use the `gemm` crate's own threads.
//!
//! Storage is not locked (like device memory): `_inplace` ops write through any clone or view, so a
//! buffer must not be written on one thread while another reads it.

mod alloc;
mod conv;
mod convk;
mod elem;
mod elementwise;
mod fused;
mod norm;
mod optim;
mod par;
pub mod profile;
mod storage;
mod taps;

pub use convk::{avx2_conv_available, conv_path, set_avx2_conv_passes, use_avx2_conv};
pub use elem::Elem;
pub use storage::CpuTensor;

use super::{AdamStep, Backend, ConvParams, Group, PenaltyKind, RmsPropStep};
use elementwise as ew;
use std::marker::PhantomData;

/// Records an elementwise op under its operand shapes when profiling is on (see [`profile`]).
macro_rules! op {
    ($name:literal, [$($t:expr),*], $body:expr) => {
        profile::timed($name, || (shapes(&[$($t.shape()),*]), 0.0), || $body)
    };
}

fn shapes(s: &[&[usize]]) -> String {
    s.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join("·")
}

/// A convolution's profile key: input shape, weight shape, stride/pad, and its FLOPs
/// (2 per multiply-add of the forward convolution; its data and weight gradients have the same).
fn conv_key(x: &[usize], w: &[usize], p: ConvParams) -> (String, f64) {
    let (ho, wo) = (p.out_size(x[2], w[2]), p.out_size(x[3], w[3]));
    let flops = 2.0 * (x[0] * w[0] * w[1] * w[2] * w[3] * ho * wo) as f64;
    (format!("{x:?}*{w:?} s{}p{}", p.stride, p.pad), flops)
}

/// The CPU backend over element type `T` (`f32` or `f64`). A zero-sized handle.
pub struct Cpu<T = f32> {
    _t: PhantomData<fn() -> T>,
}

impl<T: Elem> Cpu<T> {
    pub fn new() -> Self {
        alloc::keep_freed_memory();
        Cpu { _t: PhantomData }
    }
    /// A tensor that owns `data` (length `numel(shape)`).
    pub fn tensor(&self, data: Vec<T>, shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::from_vec(data, shape)
    }
}

impl<T: Elem> Default for Cpu<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Cpu<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Cpu<T> {}

impl<T: Elem> std::fmt::Debug for Cpu<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cpu<{}>", T::NAME)
    }
}

impl<T: Elem> Backend for Cpu<T> {
    type Tensor = CpuTensor<T>;
    type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;

    fn name(&self) -> String {
        format!("cpu ({} threads, {})", rayon::current_num_threads(), T::NAME)
    }
    fn shape<'a>(&self, t: &'a CpuTensor<T>) -> &'a [usize] {
        t.shape()
    }

    fn from_f32(&self, data: &[f32], shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::from_vec(data.iter().map(|&v| T::from_f32(v)).collect(), shape)
    }
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> CpuTensor<T> {
        CpuTensor::from_vec(data.iter().map(|&v| T::from_f64(v)).collect(), shape)
    }
    fn to_f32(&self, t: &CpuTensor<T>) -> Vec<f32> {
        // SAFETY: read-only.
        unsafe { t.data().iter().map(|v| v.to_f32()).collect() }
    }
    fn to_f64(&self, t: &CpuTensor<T>) -> Vec<f64> {
        // SAFETY: read-only.
        unsafe { t.data().iter().map(|v| v.to_f64()).collect() }
    }
    fn fill(&self, shape: &[usize], value: f64) -> CpuTensor<T> {
        profile::timed(
            "fill",
            || (format!("{shape:?}"), 0.0),
            || CpuTensor::from_vec(vec![T::from_f64(value); super::numel(shape)], shape),
        )
    }
    fn view(&self, t: &CpuTensor<T>, offset: usize, shape: &[usize]) -> CpuTensor<T> {
        t.view(offset, shape)
    }
    fn join_rows(&self, parts: &[&CpuTensor<T>]) -> Option<CpuTensor<T>> {
        let first = parts.first()?;
        if !parts.iter().all(|p| p.shares_storage(first)) {
            return None;
        }
        let shape = super::joined_rows(parts.iter().map(|p| (p.shape(), p.offset())))?;
        Some(first.widened(&shape))
    }
    fn copy_into_inplace(&self, dst: &CpuTensor<T>, offset: usize, src: &CpuTensor<T>) {
        let n = src.numel();
        assert!(
            offset + n <= dst.numel(),
            "copy_into_inplace: {n} elements at offset {offset} into a tensor of shape {:?}",
            dst.shape()
        );
        // SAFETY: both ranges are inside their buffers; ptr::copy allows overlap.
        unsafe { std::ptr::copy(src.ptr(), dst.ptr().add(offset), n) }
    }
    fn deep_copy(&self, t: &CpuTensor<T>) -> CpuTensor<T> {
        op!("deep_copy", [t], CpuTensor::from_vec(t.to_vec(), t.shape()))
    }

    fn add(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        op!("add", [a, b], ew::zip("add", a, b, |x, y| x + y))
    }
    fn sub(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        op!("sub", [a, b], ew::zip("sub", a, b, |x, y| x - y))
    }
    fn mul(&self, a: &CpuTensor<T>, b: &CpuTensor<T>) -> CpuTensor<T> {
        op!("mul", [a, b], ew::zip("mul", a, b, |x, y| x * y))
    }
    fn scale(&self, a: &CpuTensor<T>, c: f64) -> CpuTensor<T> {
        let c = T::from_f64(c);
        op!("scale", [a], ew::map(a, move |x| c * x))
    }
    fn add_scalar(&self, a: &CpuTensor<T>, c: f64) -> CpuTensor<T> {
        let c = T::from_f64(c);
        op!("add_scalar", [a], ew::map(a, move |x| x + c))
    }
    fn powf(&self, a: &CpuTensor<T>, p: f64) -> CpuTensor<T> {
        let p = T::from_f64(p);
        op!("powf", [a], ew::map(a, move |x| x.powf(p)))
    }
    fn leaky_relu(&self, x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
        op!("leaky_relu", [x], ew::leaky_relu(x, slope))
    }
    fn leaky_relu_backward(&self, g: &CpuTensor<T>, x: &CpuTensor<T>, slope: f64) -> CpuTensor<T> {
        op!("leaky_relu_backward", [g, x], ew::leaky_relu_backward(g, x, slope))
    }
    fn sigmoid(&self, x: &CpuTensor<T>) -> CpuTensor<T> {
        ew::sigmoid(x)
    }
    fn sigmoid_cross_entropy(&self, x: &CpuTensor<T>, z: f64) -> CpuTensor<T> {
        ew::sigmoid_cross_entropy(x, z)
    }
    fn tanh(&self, x: &CpuTensor<T>) -> CpuTensor<T> {
        op!("tanh", [x], ew::map(x, |x| x.tanh()))
    }
    fn tanh_backward(&self, g: &CpuTensor<T>, y: &CpuTensor<T>) -> CpuTensor<T> {
        op!("tanh_backward", [g, y], ew::tanh_backward(g, y))
    }

    fn group_sum(&self, x: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        op!("group_sum", [x], ew::group_sum(x, group))
    }
    fn group_broadcast(&self, v: &CpuTensor<T>, group: Group, shape: &[usize]) -> CpuTensor<T> {
        op!("group_broadcast", [v], ew::group_broadcast(v, group, shape))
    }
    fn group_mul(&self, x: &CpuTensor<T>, s: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        op!("group_mul", [x, s], ew::group_map("group_mul", x, s, group, |x, s| x * s))
    }
    fn group_add(&self, x: &CpuTensor<T>, b: &CpuTensor<T>, group: Group) -> CpuTensor<T> {
        op!("group_add", [x, b], ew::group_map("group_add", x, b, group, |x, b| x + b))
    }

    fn matmul(&self, a: &CpuTensor<T>, b: &CpuTensor<T>, ta: bool, tb: bool) -> CpuTensor<T> {
        profile::timed(
            "matmul",
            || {
                (
                    shapes(&[a.shape(), b.shape()]) + &format!(" ta={ta} tb={tb}"),
                    2.0 * (a.numel() * b.numel()) as f64 / if ta { a.shape()[0] } else { a.shape()[1] } as f64,
                )
            },
            || conv::matmul(a, b, ta, tb),
        )
    }
    fn conv2d(&self, x: &CpuTensor<T>, w: &CpuTensor<T>, p: ConvParams) -> CpuTensor<T> {
        profile::timed("conv2d", || conv_key(x.shape(), w.shape(), p), || conv::conv2d(x, w, p))
    }
    fn conv2d_data_grad(
        &self,
        gy: &CpuTensor<T>,
        w: &CpuTensor<T>,
        p: ConvParams,
        out_hw: (usize, usize),
    ) -> CpuTensor<T> {
        profile::timed(
            "conv2d_data_grad",
            || conv_key(&[gy.shape()[0], w.shape()[1], out_hw.0, out_hw.1], w.shape(), p),
            || conv::conv2d_data_grad(gy, w, p, out_hw),
        )
    }
    fn conv2d_weight_grad(&self, x: &CpuTensor<T>, gy: &CpuTensor<T>, p: ConvParams, k: usize) -> CpuTensor<T> {
        profile::timed(
            "conv2d_weight_grad",
            || conv_key(x.shape(), &[gy.shape()[1], x.shape()[1], k, k], p),
            || conv::conv2d_weight_grad(x, gy, p, k),
        )
    }

    fn normalize(&self, x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
        op!("normalize", [x], norm::normalize(x, group, eps))
    }
    fn normalize_backward(&self, g: &CpuTensor<T>, x: &CpuTensor<T>, group: Group, eps: f64) -> CpuTensor<T> {
        op!("normalize_backward", [g, x], norm::normalize_backward(g, x, group, eps))
    }

    fn normalize_hvp(
        &self,
        gg: &CpuTensor<T>,
        h: &CpuTensor<T>,
        x: &CpuTensor<T>,
        group: Group,
        eps: f64,
    ) -> CpuTensor<T> {
        op!("normalize_hvp", [gg, h, x], fused::normalize_hvp(gg, h, x, group, eps))
    }
    fn group_affine(
        &self,
        x: &CpuTensor<T>,
        s: &CpuTensor<T>,
        b: &CpuTensor<T>,
        group: Group,
        leaky: Option<f64>,
    ) -> CpuTensor<T> {
        op!("group_affine", [x], fused::group_affine(x, s, b, group, leaky))
    }
    fn batch_norm_running_update(&self, x: &CpuTensor<T>, rm: &CpuTensor<T>, rv: &CpuTensor<T>, momentum: f64) {
        op!("batch_norm_running_update", [x], fused::batch_norm_running_update(x, rm, rv, momentum))
    }
    fn penalty_hvp(
        &self,
        g: &CpuTensor<T>,
        u: &CpuTensor<T>,
        h: &CpuTensor<T>,
        kind: PenaltyKind,
        eps: f64,
    ) -> CpuTensor<T> {
        op!("penalty_hvp", [g, h], fused::penalty_hvp(g, u, h, kind, eps))
    }

    fn interpolate(&self, x: &CpuTensor<T>, x_tilde: &CpuTensor<T>, eps: &CpuTensor<T>) -> CpuTensor<T> {
        op!("interpolate", [x], ew::interpolate(x, x_tilde, eps))
    }
    fn critic_input(&self, real: &CpuTensor<T>, fake: &CpuTensor<T>, eps: Option<&CpuTensor<T>>) -> CpuTensor<T> {
        op!("critic_input", [real], ew::critic_input(real, fake, eps))
    }
    fn penalty(&self, g: &CpuTensor<T>, kind: PenaltyKind, eps: f64) -> (CpuTensor<T>, CpuTensor<T>) {
        op!("penalty", [g], norm::penalty(g, kind, eps))
    }

    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> CpuTensor<T> {
        profile::timed("randn", || (format!("{shape:?}"), 0.0), || ew::random(shape, seed, stream, true))
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> CpuTensor<T> {
        profile::timed("rand_uniform", || (format!("{shape:?}"), 0.0), || ew::random(shape, seed, stream, false))
    }

    fn adam_inplace(&self, p: &CpuTensor<T>, g: &CpuTensor<T>, m: &CpuTensor<T>, v: &CpuTensor<T>, s: AdamStep) {
        op!("adam", [p], optim::adam(p, g, m, v, s))
    }
    fn rmsprop_inplace(&self, p: &CpuTensor<T>, g: &CpuTensor<T>, v: &CpuTensor<T>, s: RmsPropStep) {
        op!("rmsprop", [p], optim::rmsprop(p, g, v, s))
    }
    fn clamp_inplace(&self, p: &CpuTensor<T>, c: f64) {
        op!("clamp", [p], optim::clamp(p, c))
    }
    fn axpby_inplace(&self, y: &CpuTensor<T>, a: f64, x: &CpuTensor<T>, b: f64) {
        op!("axpby", [y], optim::axpby(y, a, x, b))
    }

    fn counter(&self, value: u64) -> Self::Counter {
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(value))
    }
    fn counter_set(&self, c: &Self::Counter, value: u64) {
        c.store(value, std::sync::atomic::Ordering::Relaxed)
    }
    fn counter_get(&self, c: &Self::Counter) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn counter_add(&self, c: &Self::Counter, delta: u64) {
        c.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }
    fn randn_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> CpuTensor<T> {
        self.randn(shape, seed, stream.wrapping_add(self.counter_get(base)))
    }
    fn rand_uniform_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> CpuTensor<T> {
        self.rand_uniform(shape, seed, stream.wrapping_add(self.counter_get(base)))
    }
    fn adam_at_inplace(
        &self,
        p: &CpuTensor<T>,
        g: &CpuTensor<T>,
        m: &CpuTensor<T>,
        v: &CpuTensor<T>,
        s: AdamStep,
        t: &Self::Counter,
    ) {
        let t = t.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.adam_inplace(p, g, m, v, AdamStep { t, ..s })
    }
    fn gather_rows_inplace(&self, dst: &CpuTensor<T>, src: &CpuTensor<T>, idx: &CpuTensor<T>, start: usize) {
        let rows = dst.shape().first().copied().unwrap_or(0);
        if rows == 0 || dst.numel() == 0 {
            return;
        }
        let len = dst.numel() / rows;
        // SAFETY: windows of their own tensors; dst must not overlap src (the caller's contract).
        let (d, s, ix) = unsafe {
            (
                std::slice::from_raw_parts_mut(dst.ptr(), dst.numel()),
                std::slice::from_raw_parts(src.ptr() as *const T, src.numel()),
                std::slice::from_raw_parts(idx.ptr() as *const T, idx.numel()),
            )
        };
        for r in 0..rows {
            let i = ix[start + r].to_f64() as usize;
            d[r * len..(r + 1) * len].copy_from_slice(&s[i * len..(i + 1) * len]);
        }
    }
    fn write_f32(&self, dst: &CpuTensor<T>, data: &[f32]) {
        assert!(data.len() <= dst.numel(), "write_f32: {} values into a tensor of shape {:?}", data.len(), dst.shape());
        // SAFETY: data.len() elements inside dst's window.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.ptr(), data.len()) };
        for (o, &x) in out.iter_mut().zip(data) {
            *o = T::from_f32(x);
        }
    }
}
