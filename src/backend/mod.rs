//! The backend trait: every numeric operation that training needs, on one kind of device.
//!
//! The CPU backend (`cpu`) is the specification: each op's doc comment here says what it computes,
//! the CPU code computes exactly that, and the CUDA backend (`cuda`) is tested against it.
//!
//! Conventions shared by every op:
//! - Tensors are dense, contiguous, row-major; images are NCHW, matrices are [rows, cols].
//! - Every op returns a new tensor (the allocator behind it caches memory); the only ops that write
//!   into an existing tensor are marked `_inplace` and work on flat parameter/state buffers.
//! - "Sample" axis = dim 0; "channel" axis = dim 1 (for a 2-D tensor [N, F] the channel is F);
//!   the "inner" extent of a 4-D tensor is H·W (1 for a 2-D tensor).
//! - Scalars that are hyperparameters are passed as `f64` and rounded to the tensor's element type.
//! - Ops never broadcast implicitly: binary elementwise ops need equal shapes, and broadcasting over
//!   a group is spelled out with the `group_*` ops.

pub mod cpu;
pub mod cuda;
pub mod precision;
pub use precision::Precision;

use std::fmt::Debug;

/// Which elements a group reduction gathers together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// All elements: the reduction has shape [1].
    All,
    /// One group per sample (dim 0): shape [N]. Layer norm over (C,H,W) uses this.
    Sample,
    /// One group per channel (dim 1): shape [C]. Bias add and batch norm use this.
    Channel,
}

impl Group {
    /// Number of groups of a tensor of `shape`.
    pub fn count(self, shape: &[usize]) -> usize {
        match self {
            Group::All => 1,
            Group::Sample => shape[0],
            Group::Channel => shape[1],
        }
    }
    /// The group of flat element `i` of a tensor of `shape`.
    #[inline]
    pub fn index(self, shape: &[usize], i: usize) -> usize {
        match self {
            Group::All => 0,
            Group::Sample => i / (numel(shape) / shape[0]),
            Group::Channel => (i / inner(shape)) % shape[1],
        }
    }
}

/// Geometry of a square-kernel 2-D convolution; the kernel size comes from the weight's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvParams {
    pub stride: usize,
    pub pad: usize,
}

impl ConvParams {
    pub fn new(stride: usize, pad: usize) -> Self {
        ConvParams { stride, pad }
    }
    /// Output extent of a convolution over an input extent `n` with kernel size `k`.
    pub fn out_size(&self, n: usize, k: usize) -> usize {
        (n + 2 * self.pad - k) / self.stride + 1
    }
    /// Output extent of the transposed convolution (the data gradient) of an input extent `n`.
    pub fn transposed_out_size(&self, n: usize, k: usize) -> usize {
        (n - 1) * self.stride + k - 2 * self.pad
    }
}

/// Gradient-penalty form. Per sample i with g_i = ∇ₓD(x̂)_i and n_i = sqrt(Σ g_i² + eps):
/// two-sided (n_i − 1)², one-sided max(0, n_i − 1)².
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PenaltyKind {
    TwoSided,
    OneSided,
}

/// Adam hyperparameters for one step, PyTorch semantics: `t` is the 1-based step number,
/// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − (lr/(1−β₁ᵗ)) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + eps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub t: u64,
}

/// RMSProp hyperparameters, PyTorch semantics (no momentum, not centred):
/// v ← αv + (1−α)g², p ← p − lr · g / (sqrt(v) + eps), then, if `clip` is set, p ← clamp(p, −c, c).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropStep {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub clip: Option<f64>,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The extent after the channel axis: H·W for NCHW, 1 for [N, F].
pub fn inner(shape: &[usize]) -> usize {
    shape[2.min(shape.len())..].iter().product()
}

/// The shape of the rows of `parts` (each a shape and a flat offset in one storage) joined along
/// dim 0, when each part starts where the one before it ends and all have the same dims after
/// dim 0 (the rule of `Backend::join_rows`); None otherwise.
pub fn joined_rows<'a>(mut parts: impl Iterator<Item = (&'a [usize], usize)>) -> Option<Vec<usize>> {
    let (first, start) = parts.next()?;
    if first.is_empty() {
        return None;
    }
    let mut shape = first.to_vec();
    let mut end = start + numel(first);
    for (s, offset) in parts {
        if s.is_empty() || s[1..] != shape[1..] || offset != end {
            return None;
        }
        shape[0] += s[0];
        end += numel(s);
    }
    Some(shape)
}

/// A compute device. Cloning is cheap (a handle).
pub trait Backend: Clone + Send + Sync + 'static {
    /// A dense tensor on this device: shape plus storage. Cloning shares the storage.
    type Tensor: Clone + Debug;
    /// A u64 that lives on the device (a step counter): kernels read it at run time, so a step
    /// replayed from a CUDA graph, whose launch arguments are frozen at capture, still sees the
    /// current value. See the "device-resident step counters" ops below.
    type Counter: Clone + Debug + Send + Sync;

    /// Short device description, e.g. "cpu (2 threads)" or "cuda:0 NVIDIA H100".
    /// Sets the precision of matrix products and convolutions (see [`Precision`]); returns false
    /// when the backend has no such choice (the CPU computes in its own element type).
    fn set_precision(&self, p: Precision) -> bool {
        let _ = p;
        false
    }

    fn name(&self) -> String;
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a [usize];

    // ---- host transfer and creation ----
    fn from_f32(&self, data: &[f32], shape: &[usize]) -> Self::Tensor;
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> Self::Tensor;
    fn to_f32(&self, t: &Self::Tensor) -> Vec<f32>;
    fn to_f64(&self, t: &Self::Tensor) -> Vec<f64>;
    /// A tensor of `shape` filled with `value`.
    fn fill(&self, shape: &[usize], value: f64) -> Self::Tensor;
    /// A view of `numel(shape)` elements of `t`'s storage starting at flat `offset` (shares storage).
    fn view(&self, t: &Self::Tensor, offset: usize, shape: &[usize]) -> Self::Tensor;
    /// When the tensors are adjacent row blocks of one storage (each starting where the one before
    /// it ends, all with the same dims after dim 0), a view of all their rows as one tensor;
    /// otherwise None. No device work. This is how the tape evaluates a per-sample op once over
    /// parts of a batch that it records separately (`Tape::per_sample_parts`).
    fn join_rows(&self, parts: &[&Self::Tensor]) -> Option<Self::Tensor>;
    /// Copies `src` into `dst`'s storage at flat `offset` (dst[offset..offset+numel(src)] = src).
    fn copy_into_inplace(&self, dst: &Self::Tensor, offset: usize, src: &Self::Tensor);
    /// A fresh copy that shares no storage with `t`.
    fn deep_copy(&self, t: &Self::Tensor) -> Self::Tensor;
    /// Blocks until all queued work is done (no-op on the CPU). Only for timing and logging.
    fn synchronize(&self) {}
    /// Waits for queued work and reports the first failure since the device was opened. Ops cannot
    /// return errors (a failed launch on a GPU yields an empty tensor), so the training loop calls
    /// this once per step. Always Ok on the CPU.
    fn check(&self) -> crate::Result<()> {
        Ok(())
    }
    /// True once a failure has been recorded (what `check` would report), without waiting for the
    /// device: lets a step stop issuing work after a failed launch instead of running on tensors
    /// that a failed op left empty. Always false on the CPU.
    fn failed(&self) -> bool {
        false
    }

    // ---- elementwise ----
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// c · a
    fn scale(&self, a: &Self::Tensor, c: f64) -> Self::Tensor;
    /// a + c
    fn add_scalar(&self, a: &Self::Tensor, c: f64) -> Self::Tensor;
    /// aᵖ, elementwise (used with a > 0 only, e.g. p = −0.5 for 1/sqrt).
    fn powf(&self, a: &Self::Tensor, p: f64) -> Self::Tensor;
    /// x if x > 0 else slope·x (slope 0 is ReLU).
    fn leaky_relu(&self, x: &Self::Tensor, slope: f64) -> Self::Tensor;
    /// g if x > 0 else slope·g: the backward of leaky_relu, linear in g.
    fn leaky_relu_backward(&self, g: &Self::Tensor, x: &Self::Tensor, slope: f64) -> Self::Tensor;
    fn tanh(&self, x: &Self::Tensor) -> Self::Tensor;
    /// g · (1 − y²) where y = tanh(x): the backward of tanh from its output.
    fn tanh_backward(&self, g: &Self::Tensor, y: &Self::Tensor) -> Self::Tensor;

    // ---- logistic (the standard GAN's losses) ----
    /// σ(x) = 1/(1 + e^(−x)), computed without overflow: 1/(1 + e^(−x)) for x ≥ 0 and
    /// e^x/(1 + e^x) for x < 0.
    fn sigmoid(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Sigmoid cross-entropy of logits x against the label z ∈ [0, 1] (1 = real, 0 = fake),
    /// elementwise: −z·ln σ(x) − (1 − z)·ln(1 − σ(x)), computed as the stable
    /// max(x, 0) − z·x + ln(1 + e^(−|x|)) (PyTorch's BCEWithLogitsLoss, TensorFlow's
    /// sigmoid_cross_entropy_with_logits), finite for every finite x. Its derivative is σ(x) − z
    /// (the tape builds it from `sigmoid`).
    fn sigmoid_cross_entropy(&self, x: &Self::Tensor, z: f64) -> Self::Tensor;

    // ---- groups (reductions and broadcasts) ----
    /// Sum of `x` within each group: shape [group.count(x.shape)].
    fn group_sum(&self, x: &Self::Tensor, group: Group) -> Self::Tensor;
    /// out[i] = v[group.index(shape, i)]: the transpose of group_sum.
    fn group_broadcast(&self, v: &Self::Tensor, group: Group, shape: &[usize]) -> Self::Tensor;
    /// out[i] = x[i] · s[group.index(i)]
    fn group_mul(&self, x: &Self::Tensor, s: &Self::Tensor, group: Group) -> Self::Tensor;
    /// out[i] = x[i] + b[group.index(i)] (bias add with Group::Channel)
    fn group_add(&self, x: &Self::Tensor, b: &Self::Tensor, group: Group) -> Self::Tensor;

    /// out[i] = x[i]·s[group.index(i)] + b[group.index(i)]: `group_mul` then `group_add` in one
    /// pass (layer norm's and batch norm's per-channel scale and offset), each step rounded as
    /// those two ops round (a GPU may contract it into one fused multiply-add); with
    /// `leaky = Some(slope)` (slope ≥ 0) followed by `leaky_relu(·, slope)` in the same pass.
    fn group_affine(
        &self,
        x: &Self::Tensor,
        s: &Self::Tensor,
        b: &Self::Tensor,
        group: Group,
        leaky: Option<f64>,
    ) -> Self::Tensor;

    // ---- dense layers ----
    /// C = op(A)·op(B) for 2-D A, B where op transposes when the flag is set.
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor, ta: bool, tb: bool) -> Self::Tensor;
    /// A Linear layer's forward, y = x·wᵀ + b broadcast over rows: x [N, In], w [Out, In], b [Out]
    /// → [N, Out]. Defined as `group_add(matmul(x, w, false, true), b, Group::Channel)`, which is
    /// what the CPU computes; the CUDA backend fuses the bias into the GEMM's epilogue.
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        self.group_add(&self.matmul(x, w, false, true), b, Group::Channel)
    }
    /// A Linear layer and its activation, y = act(x·wᵀ + b): `act = Some(slope)` (slope ≥ 0; 0 is
    /// ReLU) is `leaky_relu(linear(x, w, b), slope)`, `None` is `linear(x, w, b)`. Defined as that
    /// composite, which is what the CPU computes; the CUDA backend applies bias and activation in
    /// the GEMM's epilogue (kernels/epilogue.cuh), with the same roundings.
    fn linear_act(&self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor, act: Option<f64>) -> Self::Tensor {
        let z = self.linear(x, w, b);
        match act {
            Some(slope) => self.leaky_relu(&z, slope),
            None => z,
        }
    }
    /// act'(y) ⊙ (op(a)·op(b)) = `leaky_relu_backward(matmul(a, b, ta, tb), y, slope)`, y of the
    /// product's shape: a matrix product whose result goes straight through the backward of the
    /// leaky ReLU that made y (slope ≥ 0, so y > 0 exactly where its input was). Defined as that
    /// composite (the CPU's); the CUDA backend applies the gate in the GEMM's epilogue.
    fn matmul_gated(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        ta: bool,
        tb: bool,
        y: &Self::Tensor,
        slope: f64,
    ) -> Self::Tensor {
        self.leaky_relu_backward(&self.matmul(a, b, ta, tb), y, slope)
    }
    /// Cross-correlation as in PyTorch's conv2d: x [N,Ci,H,W], w [Co,Ci,K,K] → [N,Co,Ho,Wo].
    fn conv2d(&self, x: &Self::Tensor, w: &Self::Tensor, p: ConvParams) -> Self::Tensor;
    /// The data gradient of conv2d (= transposed convolution): gy [N,Co,Ho,Wo], w [Co,Ci,K,K]
    /// → [N,Ci,H,W] with (H,W) = `out_hw`.
    fn conv2d_data_grad(
        &self,
        gy: &Self::Tensor,
        w: &Self::Tensor,
        p: ConvParams,
        out_hw: (usize, usize),
    ) -> Self::Tensor;
    /// The weight gradient of conv2d: x [N,Ci,H,W], gy [N,Co,Ho,Wo] → [Co,Ci,K,K], K = `k`.
    fn conv2d_weight_grad(&self, x: &Self::Tensor, gy: &Self::Tensor, p: ConvParams, k: usize) -> Self::Tensor;

    // ---- normalisation ----
    /// x̂ = (x − mean)/sqrt(var + eps) with mean and biased variance taken within each group
    /// (Group::Sample: layer norm over (C,H,W); Group::Channel: batch norm over (N,H,W)).
    fn normalize(&self, x: &Self::Tensor, group: Group, eps: f64) -> Self::Tensor;
    /// The backward of `normalize` for upstream g: (1/σ)(g − mean(g) − x̂·mean(g·x̂)) per group.
    fn normalize_backward(&self, g: &Self::Tensor, x: &Self::Tensor, group: Group, eps: f64) -> Self::Tensor;

    /// The Hessian–vector product of `normalize`: ∂/∂x ⟨h, normalize_backward(gg, x)⟩, per group of
    /// m elements with x̂ = normalize(x), σ² = var + eps, a = mean(gg·x̂), b = mean(h·x̂),
    /// c = mean(h·gg) − mean(h)·mean(gg):
    ///   −(1/σ²)·[ x̂·(c − 3ab) + a·(h − mean h) + b·(gg − mean gg) ].
    /// Statistics in f64 (rounded to the element type once per group), per element in the element
    /// type. One fused op for what the double backward of layer norm needs (the tape's
    /// `NormalizeHvp`); its composite of elementwise and group ops is the tape's reference.
    fn normalize_hvp(
        &self,
        gg: &Self::Tensor,
        h: &Self::Tensor,
        x: &Self::Tensor,
        group: Group,
        eps: f64,
    ) -> Self::Tensor;
    /// Batch norm's running statistics, in place: per channel of x [N, C, ...] (Group::Channel),
    /// with the mean and the unbiased variance Σ(x − mean)²/max(m − 1, 1) over the channel's m
    /// elements taken in f64 and rounded to the element type,
    /// running_mean ← (1 − momentum)·running_mean + momentum·mean, and the same for running_var
    /// with the variance (as `axpby_inplace` with a = 1 − momentum, b = momentum). No gradient.
    fn batch_norm_running_update(
        &self,
        x: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
        momentum: f64,
    );

    // ---- WGAN-GP ----
    /// x̂ = ε·x + (1−ε)·x̃ with one ε per sample: `eps` has shape [N].
    fn interpolate(&self, x: &Self::Tensor, x_tilde: &Self::Tensor, eps: &Self::Tensor) -> Self::Tensor;
    /// The critic's input batch in one pass: `real`'s rows, then `fake`'s, then, with `eps`, the rows
    /// of x̂ = `interpolate(real, fake, eps)` (rounded as `interpolate` rounds them). `real` and
    /// `fake` have equal shapes [N, ...]; the result is [2N, ...] or [3N, ...]. Each element of
    /// `real` and `fake` is read once (a GPU: one launch, where concatenating and interpolating
    /// took a fill, two copies and a launch).
    fn critic_input(&self, real: &Self::Tensor, fake: &Self::Tensor, eps: Option<&Self::Tensor>) -> Self::Tensor;
    /// One pass over g = ∇ₓD(x̂) [N, ...]: returns (P, dP/dg) where P = mean over samples of the
    /// per-sample penalty (shape [1]) with n_i = sqrt(Σ g_i² + eps) taken over all of the sample.
    fn penalty(&self, g: &Self::Tensor, kind: PenaltyKind, eps: f64) -> (Self::Tensor, Self::Tensor);

    /// The Hessian–vector product of the penalty: ∂/∂g ⟨h, u·dP/dg⟩ for a [1]-shaped u, per sample
    /// i with S_i = Σ g_i² + eps, n_i = sqrt(S_i), ⟨g, h⟩_i = Σ g_i·h_i (f64):
    ///   (u/N)·[ c(n_i)·h + (c'(n_i)/n_i)·⟨g, h⟩_i·g ]
    /// with c = 2 − 2/n, c'/n = 2/n³ (two-sided) or c = 2·max(0, n − 1)/n, c'/n = 2/n³ where
    /// n > 1 and 0 elsewhere (one-sided). The per-sample coefficients c and (c'/n)·⟨g, h⟩ are
    /// computed in f64 and rounded once; per element ((c·h + d·g)·u)·(1/N) in the element type.
    fn penalty_hvp(
        &self,
        g: &Self::Tensor,
        u: &Self::Tensor,
        h: &Self::Tensor,
        kind: PenaltyKind,
        eps: f64,
    ) -> Self::Tensor;

    // ---- random numbers (Philox4x32-10, see `crate::rng`) ----
    /// Standard normal numbers; element i comes from counter i of stream `stream` under `seed`.
    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> Self::Tensor;
    /// Uniform numbers in (0, 1); same counter layout as `randn`.
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> Self::Tensor;

    // ---- optimizers: one pass over flat buffers, in place ----
    fn adam_inplace(&self, p: &Self::Tensor, g: &Self::Tensor, m: &Self::Tensor, v: &Self::Tensor, s: AdamStep);
    fn rmsprop_inplace(&self, p: &Self::Tensor, g: &Self::Tensor, v: &Self::Tensor, s: RmsPropStep);
    /// p ← clamp(p, −c, c)
    fn clamp_inplace(&self, p: &Self::Tensor, c: f64);
    /// y ← a·y + b·x (running statistics of batch norm)
    fn axpby_inplace(&self, y: &Self::Tensor, a: f64, x: &Self::Tensor, b: f64);

    // ---- device-resident step counters (the per-step values of a captured step) ----
    /// A new counter holding `value`.
    fn counter(&self, value: u64) -> Self::Counter;
    /// Sets a counter from the host (not inside a graph capture).
    fn counter_set(&self, c: &Self::Counter, value: u64);
    /// Reads a counter to the host (waits for queued work; not inside a graph capture).
    fn counter_get(&self, c: &Self::Counter) -> u64;
    /// c ← c + delta, as device work (captured into a graph like any op).
    fn counter_add(&self, c: &Self::Counter, delta: u64);
    /// `randn(shape, seed, stream + base)` with `base` read on the device when the op runs.
    fn randn_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> Self::Tensor;
    /// `rand_uniform(shape, seed, stream + base)`, `base` read when the op runs.
    fn rand_uniform_at(&self, shape: &[usize], seed: u64, stream: u64, base: &Self::Counter) -> Self::Tensor;
    /// t ← t + 1, then `adam_inplace` with step number t (`s.t` is ignored): Adam whose step count
    /// and bias corrections live on the device.
    fn adam_at_inplace(
        &self,
        p: &Self::Tensor,
        g: &Self::Tensor,
        m: &Self::Tensor,
        v: &Self::Tensor,
        s: AdamStep,
        t: &Self::Counter,
    );
    /// Writes host values into elements [0, data.len()) of an existing tensor (no allocation).
    fn write_f32(&self, dst: &Self::Tensor, data: &[f32]);
    /// Row r of `dst` (rows = dst's dim 0, all rows of equal length) ← row `idx[start + r]` of
    /// `src`. `idx` holds row indices as exact integers (< 2²⁴). Gathers a batch from a data set
    /// kept on the device.
    fn gather_rows_inplace(&self, dst: &Self::Tensor, src: &Self::Tensor, idx: &Self::Tensor, start: usize);
    /// Bytes of training data this device should hold (None: keep the data on the host and
    /// upload each batch, as on the CPU, where there is no upload).
    fn data_memory_budget(&self) -> Option<u64> {
        None
    }

    // ---- graphs: capture the device work of a code region once, replay it ----
    /// True when `graph_capture_begin` can work (the CUDA backend, GPU or emulator).
    fn supports_graphs(&self) -> bool {
        false
    }
    /// Starts recording device work instead of running it (see `cuda::graph`).
    fn graph_capture_begin(&self) -> crate::Result<()> {
        Err(crate::Error(format!("{}: no graph capture on this device", self.name())))
    }
    /// Ends the recording; returns the graph's id. Nothing recorded has run yet.
    fn graph_capture_end(&self) -> crate::Result<usize> {
        Err(crate::Error(format!("{}: no graph capture on this device", self.name())))
    }
    /// Runs graph `id`'s recorded work again.
    fn graph_launch(&self, id: usize) -> crate::Result<()> {
        Err(crate::Error(format!("{}: no graph {id} on this device", self.name())))
    }
    /// Destroys graph `id` and returns its memory (when a run gives its graphs up).
    fn graph_drop(&self, id: usize) -> crate::Result<()> {
        let _ = id;
        Ok(())
    }
    /// Whether freed device memory is kept for later allocations (true: eager steps reuse it) or
    /// returned at synchronisation (false: for a steady state that allocates nothing, as graphs
    /// do); false also trims what is held now. See `cuda::memory`.
    fn keep_freed_memory(&self, keep: bool) -> crate::Result<()> {
        let _ = keep;
        Ok(())
    }
    /// Launches, allocations and copies issued so far, where the device counts them.
    fn device_counts(&self) -> Option<cuda::DeviceCounts> {
        None
    }
    /// The device memory held now (pool and graphs), where the device reports it.
    fn device_memory(&self) -> Option<cuda::MemoryUse> {
        None
    }
}
