//! `impl Backend for Cuda`: one line per trait method, forwarding to the `try_*` host code of the
//! op's family (the sibling modules) and recording a failure (see [`Cuda::check`]).

use std::sync::Arc;

use super::gemm::MatEpi;
use super::segments;
use crate::backend::cuda::device::{Cuda, CudaTensor};
use crate::backend::cuda::{DeviceCounts, MemoryUse};
use crate::backend::{numel, AdamStep, Backend, ConvParams, Group, PenaltyKind, Precision, RmsPropStep};

impl Backend for Cuda {
    type Tensor = CudaTensor;
    /// A 4-float counter buffer (see `step.rs`).
    type Counter = CudaTensor;

    fn set_precision(&self, p: Precision) -> bool {
        Cuda::set_precision(self, p);
        true
    }

    fn name(&self) -> String {
        format!("cuda:{} {}", self.inner.ordinal, self.inner.name)
    }
    fn shape<'a>(&self, t: &'a CudaTensor) -> &'a [usize] {
        &t.shape
    }

    fn from_f32(&self, data: &[f32], shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.host_to_device(data, shape))
    }
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> CudaTensor {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.from_f32(&v, shape)
    }
    fn to_f32(&self, t: &CudaTensor) -> Vec<f32> {
        self.read(t)
    }
    fn to_f64(&self, t: &CudaTensor) -> Vec<f64> {
        self.read(t).into_iter().map(|x| x as f64).collect()
    }
    fn fill(&self, shape: &[usize], value: f64) -> CudaTensor {
        self.finish(shape, self.try_fill(shape, value))
    }
    fn view(&self, t: &CudaTensor, offset: usize, shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.try_view(t, offset, shape))
    }
    fn join_rows(&self, parts: &[&CudaTensor]) -> Option<CudaTensor> {
        let storage = parts.first()?.storage.as_ref()?;
        if !parts.iter().all(|p| p.storage.as_ref().is_some_and(|s| Arc::ptr_eq(s, storage))) {
            return None;
        }
        let shape = crate::backend::joined_rows(parts.iter().map(|p| (&p.shape[..], p.offset)))?;
        let offset = parts[0].offset;
        (offset + numel(&shape) <= storage.len()).then(|| CudaTensor { shape, storage: Some(storage.clone()), offset })
    }
    fn copy_into_inplace(&self, dst: &CudaTensor, offset: usize, src: &CudaTensor) {
        self.note(self.try_copy_into(dst, offset, src))
    }
    fn deep_copy(&self, t: &CudaTensor) -> CudaTensor {
        self.finish(&t.shape, self.try_deep_copy(t))
    }
    fn check(&self) -> crate::Result<()> {
        Cuda::check(self)
    }
    fn failed(&self) -> bool {
        self.has_failed()
    }
    fn synchronize(&self) {
        if let Err(e) = self.sync() {
            self.record(e);
        }
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("add_f32", a, b, 0.0))
    }
    fn sub(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("sub_f32", a, b, 0.0))
    }
    fn mul(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("mul_f32", a, b, 0.0))
    }
    fn scale(&self, a: &CudaTensor, c: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("scale_f32", a, c as f32))
    }
    fn add_scalar(&self, a: &CudaTensor, c: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("add_scalar_f32", a, c as f32))
    }
    fn powf(&self, a: &CudaTensor, p: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("powf_f32", a, p as f32))
    }
    fn leaky_relu(&self, x: &CudaTensor, slope: f64) -> CudaTensor {
        self.finish(&x.shape, self.unary("leaky_relu_f32", x, slope as f32))
    }
    fn leaky_relu_backward(&self, g: &CudaTensor, x: &CudaTensor, slope: f64) -> CudaTensor {
        self.finish(&g.shape, self.binary("leaky_relu_backward_f32", g, x, slope as f32))
    }
    fn sigmoid(&self, x: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.try_sigmoid(x))
    }
    fn sigmoid_cross_entropy(&self, x: &CudaTensor, z: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_sigmoid_cross_entropy(x, z))
    }
    fn tanh(&self, x: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.unary("tanh_f32", x, 0.0))
    }
    fn tanh_backward(&self, g: &CudaTensor, y: &CudaTensor) -> CudaTensor {
        self.finish(&g.shape, self.binary("tanh_backward_f32", g, y, 0.0))
    }

    fn group_sum(&self, x: &CudaTensor, group: Group) -> CudaTensor {
        let count = segments("group_sum", &x.shape, group).map(|(s, _)| s.count as usize).unwrap_or(0);
        self.finish(&[count], self.try_group_sum(x, group))
    }
    fn group_broadcast(&self, v: &CudaTensor, group: Group, shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.try_group_elementwise("group_broadcast_f32", None, v, group, shape))
    }
    fn group_mul(&self, x: &CudaTensor, s: &CudaTensor, group: Group) -> CudaTensor {
        self.finish(&x.shape, self.try_group_elementwise("group_mul_f32", Some(x), s, group, &x.shape))
    }
    fn group_add(&self, x: &CudaTensor, b: &CudaTensor, group: Group) -> CudaTensor {
        self.finish(&x.shape, self.try_group_elementwise("group_add_f32", Some(x), b, group, &x.shape))
    }

    fn matmul(&self, a: &CudaTensor, b: &CudaTensor, ta: bool, tb: bool) -> CudaTensor {
        let r = self.try_matmul(a, b, ta, tb, MatEpi::default());
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn linear(&self, x: &CudaTensor, w: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        let r = self.try_matmul(x, w, false, true, MatEpi { bias: Some(b), ..MatEpi::default() });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn linear_act(&self, x: &CudaTensor, w: &CudaTensor, b: &CudaTensor, act: Option<f64>) -> CudaTensor {
        let r = self.try_matmul(x, w, false, true, MatEpi { bias: Some(b), act, gate: None });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn matmul_gated(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        ta: bool,
        tb: bool,
        y: &CudaTensor,
        slope: f64,
    ) -> CudaTensor {
        let r = self.try_matmul(a, b, ta, tb, MatEpi { gate: Some((y, slope)), ..MatEpi::default() });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn conv2d(&self, x: &CudaTensor, w: &CudaTensor, p: ConvParams) -> CudaTensor {
        let r = self.try_conv2d(x, w, p);
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn conv2d_data_grad(&self, gy: &CudaTensor, w: &CudaTensor, p: ConvParams, out_hw: (usize, usize)) -> CudaTensor {
        let shape = [gy.shape.first().copied().unwrap_or(0), w.shape.get(1).copied().unwrap_or(0), out_hw.0, out_hw.1];
        self.finish(&shape, self.try_conv2d_data_grad(gy, w, p, out_hw))
    }
    fn conv2d_weight_grad(&self, x: &CudaTensor, gy: &CudaTensor, p: ConvParams, k: usize) -> CudaTensor {
        let shape = [gy.shape.get(1).copied().unwrap_or(0), x.shape.get(1).copied().unwrap_or(0), k, k];
        self.finish(&shape, self.try_conv2d_weight_grad(x, gy, p, k))
    }

    fn normalize(&self, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize(x, None, group, eps))
    }
    fn normalize_backward(&self, g: &CudaTensor, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize(x, Some(g), group, eps))
    }

    fn normalize_hvp(&self, gg: &CudaTensor, h: &CudaTensor, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize_hvp(gg, h, x, group, eps))
    }
    fn group_affine(
        &self,
        x: &CudaTensor,
        s: &CudaTensor,
        b: &CudaTensor,
        group: Group,
        leaky: Option<f64>,
    ) -> CudaTensor {
        self.finish(&x.shape, self.try_group_affine(x, s, b, group, leaky))
    }
    fn batch_norm_running_update(&self, x: &CudaTensor, rm: &CudaTensor, rv: &CudaTensor, momentum: f64) {
        if let Err(e) = self.try_batch_norm_running_update(x, rm, rv, momentum) {
            self.record(e);
        }
    }
    fn penalty_hvp(&self, g: &CudaTensor, u: &CudaTensor, h: &CudaTensor, kind: PenaltyKind, eps: f64) -> CudaTensor {
        self.finish(&g.shape, self.try_penalty_hvp(g, u, h, kind, eps))
    }

    fn interpolate(&self, x: &CudaTensor, x_tilde: &CudaTensor, eps: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.try_interpolate(x, x_tilde, eps))
    }
    fn critic_input(&self, real: &CudaTensor, fake: &CudaTensor, eps: Option<&CudaTensor>) -> CudaTensor {
        let mut shape = real.shape.clone();
        if let Some(n) = shape.first_mut() {
            *n *= if eps.is_some() { 3 } else { 2 };
        }
        self.finish(&shape, self.try_critic_input(real, fake, eps))
    }
    fn penalty(&self, g: &CudaTensor, kind: PenaltyKind, eps: f64) -> (CudaTensor, CudaTensor) {
        match self.try_penalty(g, kind, eps) {
            Ok(r) => r,
            Err(e) => {
                self.record(e);
                let dead = |s: &[usize]| CudaTensor { shape: s.to_vec(), storage: None, offset: 0 };
                (dead(&[1]), dead(&g.shape))
            }
        }
    }

    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> CudaTensor {
        self.finish(shape, self.try_random(shape, seed, stream, true))
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> CudaTensor {
        self.finish(shape, self.try_random(shape, seed, stream, false))
    }

    fn adam_inplace(&self, p: &CudaTensor, g: &CudaTensor, m: &CudaTensor, v: &CudaTensor, s: AdamStep) {
        self.note(self.try_adam(p, g, m, v, s))
    }
    fn rmsprop_inplace(&self, p: &CudaTensor, g: &CudaTensor, v: &CudaTensor, s: RmsPropStep) {
        self.note(self.try_rmsprop(p, g, v, s))
    }
    fn clamp_inplace(&self, p: &CudaTensor, c: f64) {
        self.note(self.try_clamp(p, c))
    }
    fn axpby_inplace(&self, y: &CudaTensor, a: f64, x: &CudaTensor, b: f64) {
        self.note(self.try_axpby(y, a, x, b))
    }

    fn counter(&self, value: u64) -> CudaTensor {
        self.finish(&[4], self.try_counter(value))
    }
    fn counter_set(&self, c: &CudaTensor, value: u64) {
        self.note(self.try_counter_set(c, value))
    }
    fn counter_get(&self, c: &CudaTensor) -> u64 {
        self.try_counter_get(c).unwrap_or_else(|e| {
            self.record(e);
            0
        })
    }
    fn counter_add(&self, c: &CudaTensor, delta: u64) {
        self.note(self.try_counter_add(c, delta))
    }
    fn randn_at(&self, shape: &[usize], seed: u64, stream: u64, base: &CudaTensor) -> CudaTensor {
        self.finish(shape, self.try_random_at(shape, seed, stream, base, true))
    }
    fn rand_uniform_at(&self, shape: &[usize], seed: u64, stream: u64, base: &CudaTensor) -> CudaTensor {
        self.finish(shape, self.try_random_at(shape, seed, stream, base, false))
    }
    fn adam_at_inplace(
        &self,
        p: &CudaTensor,
        g: &CudaTensor,
        m: &CudaTensor,
        v: &CudaTensor,
        s: AdamStep,
        t: &CudaTensor,
    ) {
        self.note(self.try_adam_at(p, g, m, v, s, t))
    }
    fn write_f32(&self, dst: &CudaTensor, data: &[f32]) {
        self.note(self.try_write(dst, data))
    }
    fn gather_rows_inplace(&self, dst: &CudaTensor, src: &CudaTensor, idx: &CudaTensor, start: usize) {
        self.note(self.try_gather_rows(dst, src, idx, start))
    }
    fn data_memory_budget(&self) -> Option<u64> {
        Some(self.data_budget())
    }
    fn supports_graphs(&self) -> bool {
        true
    }
    fn graph_capture_begin(&self) -> crate::Result<()> {
        self.capture_begin()
    }
    fn graph_capture_end(&self) -> crate::Result<usize> {
        self.capture_end()
    }
    fn graph_launch(&self, id: usize) -> crate::Result<()> {
        Cuda::graph_launch(self, id)
    }
    fn graph_drop(&self, id: usize) -> crate::Result<()> {
        Cuda::graph_drop(self, id)
    }
    fn keep_freed_memory(&self, keep: bool) -> crate::Result<()> {
        Cuda::keep_freed_memory(self, keep)
    }
    fn device_counts(&self) -> Option<DeviceCounts> {
        Some(self.counts())
    }
    fn device_memory(&self) -> Option<MemoryUse> {
        // A failure to read it is recorded like any other (Cuda::check reports it).
        self.memory().unwrap_or_else(|e| {
            self.record(e);
            None
        })
    }
}
