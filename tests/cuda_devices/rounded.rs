//! A CPU reference at TF32 or BF16: `Rounded<B>` is backend `B` (the CPU reference) with the
//! operands of every matrix product and convolution rounded exactly as the tensor-core kernels
//! round them as they enter `mma.sync` (TF32: `cvt.rna`, nearest, ties away from zero; BF16:
//! `cvt.rn`, nearest, ties to even), the products then accumulated by `B` as usual (f32). Every
//! other op is `B`'s own. The CUDA backend at a precision and this reference at the same precision
//! then differ only by f32 accumulation order, as at f32, so they can be compared with f32
//! tolerances however much a computation (a double backward) amplifies the operand rounding.

#![allow(dead_code)]

use wgan::backend::{AdamStep, Backend, ConvParams, Group, PenaltyKind, Precision, RmsPropStep};

/// cvt.rna.tf32.f32: nearest with 10 mantissa bits, ties away from zero (on the value, in f64).
pub fn tf32_ref(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let e = ((x.to_bits() >> 23) & 0xFF) as i32;
    let ulp = 2f64.powi(if e == 0 { -126 } else { e - 127 } - 10);
    let q = (x.abs() as f64) / ulp;
    let r = (q + 0.5).floor() * ulp;
    (r.copysign(x as f64)) as f32
}

/// cvt.rn.bf16.f32: nearest with 7 mantissa bits, ties to even.
pub fn bf16_ref(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let e = ((x.to_bits() >> 23) & 0xFF) as i32;
    let ulp = 2f64.powi(if e == 0 { -126 } else { e - 127 } - 7);
    let r = ((x.abs() as f64) / ulp).round_ties_even() * ulp;
    let r = if r > f32::MAX as f64 { f64::INFINITY } else { r };
    (r.copysign(x as f64)) as f32
}

/// One operand rounded as the kernels of precision `p` round it.
pub fn round_ref(p: Precision, x: f32) -> f32 {
    match p {
        Precision::F32 => x,
        Precision::Tf32 => tf32_ref(x),
        Precision::Bf16 => bf16_ref(x),
    }
}

/// Backend `B` with GEMM and convolution operands rounded to `p` (see the module doc).
#[derive(Clone)]
pub struct Rounded<B: Backend> {
    pub inner: B,
    pub p: Precision,
}

impl<B: Backend> Rounded<B> {
    pub fn new(inner: B, p: Precision) -> Self {
        Rounded { inner, p }
    }
    fn r(&self, t: &B::Tensor) -> B::Tensor {
        if self.p == Precision::F32 {
            return t.clone();
        }
        let v: Vec<f32> = self.inner.to_f32(t).into_iter().map(|x| round_ref(self.p, x)).collect();
        self.inner.from_f32(&v, self.inner.shape(t))
    }
}

impl<B: Backend> Backend for Rounded<B> {
    type Tensor = B::Tensor;
    type Counter = B::Counter;

    fn name(&self) -> String {
        format!("{} with {} GEMM operands", self.inner.name(), self.p)
    }
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a [usize] {
        self.inner.shape(t)
    }
    fn from_f32(&self, data: &[f32], shape: &[usize]) -> Self::Tensor {
        self.inner.from_f32(data, shape)
    }
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> Self::Tensor {
        self.inner.from_f64(data, shape)
    }
    fn to_f32(&self, t: &Self::Tensor) -> Vec<f32> {
        self.inner.to_f32(t)
    }
    fn to_f64(&self, t: &Self::Tensor) -> Vec<f64> {
        self.inner.to_f64(t)
    }
    fn fill(&self, shape: &[usize], value: f64) -> Self::Tensor {
        self.inner.fill(shape, value)
    }
    fn view(&self, t: &Self::Tensor, offset: usize, shape: &[usize]) -> Self::Tensor {
        self.inner.view(t, offset, shape)
    }
    fn copy_into_inplace(&self, dst: &Self::Tensor, offset: usize, src: &Self::Tensor) {
        self.inner.copy_into_inplace(dst, offset, src)
    }
    fn deep_copy(&self, t: &Self::Tensor) -> Self::Tensor {
        self.inner.deep_copy(t)
    }
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        self.inner.add(a, b)
    }
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        self.inner.sub(a, b)
    }
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        self.inner.mul(a, b)
    }
    fn scale(&self, a: &Self::Tensor, c: f64) -> Self::Tensor {
        self.inner.scale(a, c)
    }
    fn add_scalar(&self, a: &Self::Tensor, c: f64) -> Self::Tensor {
        self.inner.add_scalar(a, c)
    }
    fn powf(&self, a: &Self::Tensor, p: f64) -> Self::Tensor {
        self.inner.powf(a, p)
    }
    fn leaky_relu(&self, x: &Self::Tensor, slope: f64) -> Self::Tensor {
        self.inner.leaky_relu(x, slope)
    }
    fn leaky_relu_backward(&self, g: &Self::Tensor, x: &Self::Tensor, slope: f64) -> Self::Tensor {
        self.inner.leaky_relu_backward(g, x, slope)
    }
    fn tanh(&self, x: &Self::Tensor) -> Self::Tensor {
        self.inner.tanh(x)
    }
    fn tanh_backward(&self, g: &Self::Tensor, y: &Self::Tensor) -> Self::Tensor {
        self.inner.tanh_backward(g, y)
    }
    fn sigmoid(&self, x: &Self::Tensor) -> Self::Tensor {
        self.inner.sigmoid(x)
    }
    fn sigmoid_cross_entropy(&self, x: &Self::Tensor, z: f64) -> Self::Tensor {
        self.inner.sigmoid_cross_entropy(x, z)
    }
    fn group_sum(&self, x: &Self::Tensor, group: Group) -> Self::Tensor {
        self.inner.group_sum(x, group)
    }
    fn group_affine(
        &self,
        x: &Self::Tensor,
        s: &Self::Tensor,
        b: &Self::Tensor,
        group: Group,
        leaky: Option<f64>,
    ) -> Self::Tensor {
        self.inner.group_affine(x, s, b, group, leaky)
    }
    fn normalize_hvp(
        &self,
        gg: &Self::Tensor,
        h: &Self::Tensor,
        x: &Self::Tensor,
        group: Group,
        eps: f64,
    ) -> Self::Tensor {
        self.inner.normalize_hvp(gg, h, x, group, eps)
    }
    fn batch_norm_running_update(
        &self,
        x: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
        momentum: f64,
    ) {
        self.inner.batch_norm_running_update(x, running_mean, running_var, momentum)
    }
    fn penalty_hvp(
        &self,
        g: &Self::Tensor,
        u: &Self::Tensor,
        h: &Self::Tensor,
        kind: PenaltyKind,
        eps: f64,
    ) -> Self::Tensor {
        self.inner.penalty_hvp(g, u, h, kind, eps)
    }
    fn group_broadcast(&self, v: &Self::Tensor, group: Group, shape: &[usize]) -> Self::Tensor {
        self.inner.group_broadcast(v, group, shape)
    }
    fn group_mul(&self, x: &Self::Tensor, s: &Self::Tensor, group: Group) -> Self::Tensor {
        self.inner.group_mul(x, s, group)
    }
    fn group_add(&self, x: &Self::Tensor, b: &Self::Tensor, group: Group) -> Self::Tensor {
        self.inner.group_add(x, b, group)
    }
    // ---- the rounded ones ----
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor, ta: bool, tb: bool) -> Self::Tensor {
        self.inner.matmul(&self.r(a), &self.r(b), ta, tb)
    }
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        // The bias is added in f32, after the product (the CUDA epilogue).
        self.inner.group_add(&self.matmul(x, w, false, true), b, Group::Channel)
    }
    fn linear_act(&self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor, act: Option<f64>) -> Self::Tensor {
        // Bias then activation in f32 after the rounded-operand product (the CUDA epilogue).
        let z = self.linear(x, w, b);
        match act {
            Some(slope) => self.inner.leaky_relu(&z, slope),
            None => z,
        }
    }
    fn matmul_gated(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        ta: bool,
        tb: bool,
        y: &Self::Tensor,
        slope: f64,
    ) -> Self::Tensor {
        // The gate in f32 after the rounded-operand product (the CUDA epilogue).
        self.inner.leaky_relu_backward(&self.matmul(a, b, ta, tb), y, slope)
    }
    fn conv2d(&self, x: &Self::Tensor, w: &Self::Tensor, p: ConvParams) -> Self::Tensor {
        self.inner.conv2d(&self.r(x), &self.r(w), p)
    }
    fn conv2d_data_grad(&self, gy: &Self::Tensor, w: &Self::Tensor, p: ConvParams, hw: (usize, usize)) -> Self::Tensor {
        self.inner.conv2d_data_grad(&self.r(gy), &self.r(w), p, hw)
    }
    fn conv2d_weight_grad(&self, x: &Self::Tensor, gy: &Self::Tensor, p: ConvParams, k: usize) -> Self::Tensor {
        self.inner.conv2d_weight_grad(&self.r(x), &self.r(gy), p, k)
    }
    // ----
    fn normalize(&self, x: &Self::Tensor, group: Group, eps: f64) -> Self::Tensor {
        self.inner.normalize(x, group, eps)
    }
    fn normalize_backward(&self, g: &Self::Tensor, x: &Self::Tensor, group: Group, eps: f64) -> Self::Tensor {
        self.inner.normalize_backward(g, x, group, eps)
    }
    fn interpolate(&self, x: &Self::Tensor, x_tilde: &Self::Tensor, eps: &Self::Tensor) -> Self::Tensor {
        self.inner.interpolate(x, x_tilde, eps)
    }
    fn critic_input(&self, real: &Self::Tensor, fake: &Self::Tensor, eps: Option<&Self::Tensor>) -> Self::Tensor {
        self.inner.critic_input(real, fake, eps)
    }
    fn join_rows(&self, parts: &[&Self::Tensor]) -> Option<Self::Tensor> {
        self.inner.join_rows(parts)
    }
    fn penalty(&self, g: &Self::Tensor, kind: PenaltyKind, eps: f64) -> (Self::Tensor, Self::Tensor) {
        self.inner.penalty(g, kind, eps)
    }
    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> Self::Tensor {
        self.inner.randn(shape, seed, stream)
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> Self::Tensor {
        self.inner.rand_uniform(shape, seed, stream)
    }
    fn adam_inplace(&self, p: &Self::Tensor, g: &Self::Tensor, m: &Self::Tensor, v: &Self::Tensor, s: AdamStep) {
        self.inner.adam_inplace(p, g, m, v, s)
    }
    fn rmsprop_inplace(&self, p: &Self::Tensor, g: &Self::Tensor, v: &Self::Tensor, s: RmsPropStep) {
        self.inner.rmsprop_inplace(p, g, v, s)
    }
    fn clamp_inplace(&self, p: &Self::Tensor, c: f64) {
        self.inner.clamp_inplace(p, c)
    }
    fn axpby_inplace(&self, y: &Self::Tensor, a: f64, x: &Self::Tensor, b: f64) {
        self.inner.axpby_inplace(y, a, x, b)
    }
    fn counter(&self, value: u64) -> Self::Counter {
        self.inner.counter(value)
    }
    fn counter_set(&self, c: &Self::Counter, value: u64) {
        self.inner.counter_set(c, value)
    }
    fn counter_get(&self, c: &Self::Counter) -> u64 {
        self.inner.counter_get(c)
    }
    fn counter_add(&self, c: &Self::Counter, delta: u64) {
        self.inner.counter_add(c, delta)
    }
    fn randn_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> Self::Tensor {
        self.inner.randn_at(shape, seed, stream, base)
    }
    fn rand_uniform_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> Self::Tensor {
        self.inner.rand_uniform_at(shape, seed, stream, base)
    }
    fn adam_at_inplace(
        &self,
        p: &Self::Tensor,
        g: &Self::Tensor,
        m: &Self::Tensor,
        v: &Self::Tensor,
        s: AdamStep,
        t: &Self::Counter,
    ) {
        self.inner.adam_at_inplace(p, g, m, v, s, t)
    }
    fn write_f32(&self, dst: &Self::Tensor, data: &[f32]) {
        self.inner.write_f32(dst, data)
    }
    fn gather_rows_inplace(&self, dst: &Self::Tensor, src: &Self::Tensor, idx: &Self::Tensor, start: usize) {
        self.inner.gather_rows_inplace(dst, src, idx, start)
    }
}
