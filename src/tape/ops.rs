//! The ops a model is built from: each computes its value on the backend and records itself.
//! Their backward rules are in `vjp.rs`; their math is specified on the `Backend` trait.

use super::{Op, Tape, Var};
use crate::backend::{numel, Backend, ConvParams, Group, PenaltyKind};

impl<B: Backend> Tape<B> {
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        let v = self.backend.add(self.value(a), self.value(b));
        self.push(v, Op::Add(a, b))
    }

    pub fn sub(&mut self, a: Var, b: Var) -> Var {
        let v = self.backend.sub(self.value(a), self.value(b));
        self.push(v, Op::Sub(a, b))
    }

    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        let v = self.backend.mul(self.value(a), self.value(b));
        self.push(v, Op::Mul(a, b))
    }

    pub fn scale(&mut self, a: Var, c: f64) -> Var {
        let v = self.backend.scale(self.value(a), c);
        self.push(v, Op::Scale(a, c))
    }

    pub fn add_scalar(&mut self, a: Var, c: f64) -> Var {
        let v = self.backend.add_scalar(self.value(a), c);
        self.push(v, Op::AddScalar(a))
    }

    /// aᵖ for a > 0.
    pub fn pow(&mut self, a: Var, p: f64) -> Var {
        let v = self.backend.powf(self.value(a), p);
        self.push(v, Op::Pow(a, p))
    }

    pub fn relu(&mut self, x: Var) -> Var {
        self.leaky_relu(x, 0.0)
    }

    pub fn leaky_relu(&mut self, x: Var, slope: f64) -> Var {
        let v = self.backend.leaky_relu(self.value(x), slope);
        self.push(v, Op::LeakyRelu(x, slope))
    }

    /// g where x > 0, slope·g elsewhere.
    pub fn leaky_relu_backward(&mut self, g: Var, x: Var, slope: f64) -> Var {
        let v = self.backend.leaky_relu_backward(self.value(g), self.value(x), slope);
        self.push(v, Op::LeakyReluBackward(g, x, slope))
    }

    pub fn tanh(&mut self, x: Var) -> Var {
        let v = self.backend.tanh(self.value(x));
        self.push(v, Op::Tanh(x))
    }

    /// σ(x) = 1/(1 + e^(−x)).
    pub fn sigmoid(&mut self, x: Var) -> Var {
        let v = self.backend.sigmoid(self.value(x));
        self.push(v, Op::Sigmoid(x))
    }

    /// Elementwise sigmoid cross-entropy of logits x against label z (see
    /// `Backend::sigmoid_cross_entropy`): −ln σ(x) for z = 1, −ln(1 − σ(x)) for z = 0.
    pub fn sigmoid_cross_entropy(&mut self, x: Var, z: f64) -> Var {
        let v = self.backend.sigmoid_cross_entropy(self.value(x), z);
        self.push(v, Op::SigmoidCrossEntropy(x, z))
    }

    /// g · (1 − y²).
    pub fn tanh_backward(&mut self, g: Var, y: Var) -> Var {
        let v = self.backend.tanh_backward(self.value(g), self.value(y));
        self.push(v, Op::TanhBackward(g, y))
    }

    pub fn group_sum(&mut self, x: Var, group: Group) -> Var {
        let v = self.backend.group_sum(self.value(x), group);
        self.push(v, Op::GroupSum(x, group))
    }

    /// Spreads one value per group over a tensor of `shape`.
    pub fn group_broadcast(&mut self, v: Var, group: Group, shape: &[usize]) -> Var {
        let out = self.backend.group_broadcast(self.value(v), group, shape);
        self.push(out, Op::GroupBroadcast(v, group))
    }

    pub fn group_mul(&mut self, x: Var, s: Var, group: Group) -> Var {
        let v = self.backend.group_mul(self.value(x), self.value(s), group);
        self.push(v, Op::GroupMul(x, s, group))
    }

    pub fn group_add(&mut self, x: Var, b: Var, group: Group) -> Var {
        let v = self.backend.group_add(self.value(x), self.value(b), group);
        self.push(v, Op::GroupAdd(x, b, group))
    }

    /// x·s[g] + b[g] per group: `group_add(group_mul(x, s), b)` in one op (one launch on a GPU).
    pub fn group_affine(&mut self, x: Var, s: Var, b: Var, group: Group) -> Var {
        let v = self.backend.group_affine(self.value(x), self.value(s), self.value(b), group, None);
        self.push(v, Op::GroupAffine(x, s, b, group))
    }

    /// leaky_relu(x·s[g] + b[g], slope) in one op (slope ≥ 0; 0 is ReLU): a norm layer's scale
    /// and offset with the activation after it, one launch on a GPU.
    pub fn group_affine_leaky_relu(&mut self, x: Var, s: Var, b: Var, group: Group, slope: f64) -> Var {
        assert!(slope >= 0.0, "group_affine_leaky_relu: slope {slope} < 0");
        let v = self.backend.group_affine(self.value(x), self.value(s), self.value(b), group, Some(slope));
        self.push(v, Op::GroupAffineLeakyRelu(x, s, b, group, slope))
    }

    /// Sum of all elements, shape [1].
    pub fn sum(&mut self, x: Var) -> Var {
        self.group_sum(x, Group::All)
    }

    /// Mean of all elements, shape [1].
    pub fn mean(&mut self, x: Var) -> Var {
        let n = numel(&self.shape(x));
        let s = self.sum(x);
        self.scale(s, 1.0 / n as f64)
    }

    /// The same elements under another shape.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Var {
        assert_eq!(numel(&self.shape(x)), numel(shape), "reshape {:?} to {:?}", self.shape(x), shape);
        let v = self.backend.view(self.value(x), 0, shape);
        self.push(v, Op::Reshape(x))
    }

    /// a's rows followed by b's (dim 0); the other dims must agree. One fill and two copies.
    pub fn concat_rows(&mut self, a: Var, b: Var) -> Var {
        let (sa, sb) = (self.shape(a), self.shape(b));
        assert!(!sa.is_empty() && sa[1..] == sb[1..], "concat_rows: shapes {sa:?} and {sb:?} do not fit");
        let mut shape = sa.clone();
        shape[0] += sb[0];
        let v = self.backend.fill(&shape, 0.0);
        self.backend.copy_into_inplace(&v, 0, self.value(a));
        self.backend.copy_into_inplace(&v, numel(&sa), self.value(b));
        self.push(v, Op::ConcatRows(a, b))
    }

    /// Rows start..start+count of x (dim 0): a view, no device work.
    pub fn rows(&mut self, x: Var, start: usize, count: usize) -> Var {
        let mut shape = self.shape(x);
        assert!(start + count <= shape[0], "rows {start}..{} of {shape:?}", start + count);
        let per = numel(&shape[1..]);
        shape[0] = count;
        let v = self.backend.view(self.value(x), start * per, &shape);
        self.push(v, Op::Rows(x, start))
    }

    /// x placed at row `start` of a zero tensor of `total` rows (the transpose of `rows`).
    pub fn pad_rows(&mut self, x: Var, start: usize, total: usize) -> Var {
        let mut shape = self.shape(x);
        assert!(start + shape[0] <= total, "pad_rows: {shape:?} at row {start} of {total}");
        let per = numel(&shape[1..]);
        shape[0] = total;
        let v = self.backend.fill(&shape, 0.0);
        self.backend.copy_into_inplace(&v, start * per, self.value(x));
        self.push(v, Op::PadRows(x, start))
    }

    /// op(a)·op(b).
    pub fn matmul(&mut self, a: Var, b: Var, ta: bool, tb: bool) -> Var {
        let v = self.backend.matmul(self.value(a), self.value(b), ta, tb);
        self.push(v, Op::MatMul(a, b, ta, tb))
    }

    /// x·wᵀ + b (b broadcast over rows): a Linear layer, one fused launch on the GPU.
    pub fn linear(&mut self, x: Var, w: Var, b: Var) -> Var {
        let v = self.backend.linear(self.value(x), self.value(w), self.value(b));
        self.push(v, Op::Linear(x, w, b))
    }

    pub fn conv2d(&mut self, x: Var, w: Var, p: ConvParams) -> Var {
        let v = self.backend.conv2d(self.value(x), self.value(w), p);
        self.push(v, Op::Conv2d(x, w, p))
    }

    /// The transposed convolution: the data gradient of conv2d, with output size `out_hw`.
    pub fn conv2d_data_grad(&mut self, gy: Var, w: Var, p: ConvParams, out_hw: (usize, usize)) -> Var {
        let v = self.backend.conv2d_data_grad(self.value(gy), self.value(w), p, out_hw);
        self.push(v, Op::ConvDataGrad(gy, w, p))
    }

    /// PyTorch's conv_transpose2d with weight [Ci, Co, K, K] (no output padding).
    pub fn conv_transpose2d(&mut self, x: Var, w: Var, p: ConvParams) -> Var {
        let (xs, ws) = (self.shape(x), self.shape(w));
        let k = ws[2];
        let out = (p.transposed_out_size(xs[2], k), p.transposed_out_size(xs[3], k));
        self.conv2d_data_grad(x, w, p, out)
    }

    pub fn conv2d_weight_grad(&mut self, x: Var, gy: Var, p: ConvParams, k: usize) -> Var {
        let v = self.backend.conv2d_weight_grad(self.value(x), self.value(gy), p, k);
        self.push(v, Op::ConvWeightGrad(x, gy, p))
    }

    /// (x − mean)/sqrt(var + eps) within each group.
    pub fn normalize(&mut self, x: Var, group: Group, eps: f64) -> Var {
        let v = self.backend.normalize(self.value(x), group, eps);
        self.push(v, Op::Normalize(x, group, eps))
    }

    pub fn normalize_backward(&mut self, g: Var, x: Var, group: Group, eps: f64) -> Var {
        let v = self.backend.normalize_backward(self.value(g), self.value(x), group, eps);
        self.push(v, Op::NormalizeBackward(g, x, group, eps))
    }

    /// ∂/∂x ⟨h, normalize_backward(gg, x)⟩ in one fused op (`Backend::normalize_hvp`): layer
    /// norm's double backward. `normalize_hvp_composite` is the same built from elementwise and
    /// group ops, and this op's backward rule.
    pub fn normalize_hvp(&mut self, gg: Var, h: Var, x: Var, group: Group, eps: f64) -> Var {
        let v = self.backend.normalize_hvp(self.value(gg), self.value(h), self.value(x), group, eps);
        self.push(v, Op::NormalizeHvp(gg, h, x, group, eps))
    }

    /// ∂/∂g ⟨h, u·dP/dg⟩ in one fused op (`Backend::penalty_hvp`), u of shape [1]: the penalty's
    /// double backward. `penalty_hvp_composite` is the reference and this op's backward rule.
    pub fn penalty_hvp(&mut self, g: Var, u: Var, h: Var, kind: PenaltyKind, eps: f64) -> Var {
        let v = self.backend.penalty_hvp(self.value(g), self.value(u), self.value(h), kind, eps);
        self.push(v, Op::PenaltyHvp(g, u, h, kind, eps))
    }

    /// x̂ = ε·x + (1−ε)·x̃ per sample; ε (shape [N]) must be a constant.
    pub fn interpolate(&mut self, x: Var, x_tilde: Var, eps: Var) -> Var {
        assert!(!self.requires_grad(eps), "interpolate: ε must be a constant");
        let v = self.backend.interpolate(self.value(x), self.value(x_tilde), self.value(eps));
        self.push(v, Op::Interpolate(x, x_tilde, eps))
    }

    /// The critic's input batch in one op (`Backend::critic_input`): [real; fake; x̂] with
    /// x̂ = ε·real + (1−ε)·fake per sample (shape [3N, ...]), or [real; fake] without ε ([2N, ...]).
    /// ε (shape [N]) must be a constant. Its rows are then taken with `rows` (views).
    pub fn critic_input(&mut self, real: Var, fake: Var, eps: Option<Var>) -> Var {
        if let Some(e) = eps {
            assert!(!self.requires_grad(e), "critic_input: ε must be a constant");
        }
        let v = self.backend.critic_input(self.value(real), self.value(fake), eps.map(|e| self.value(e)));
        self.push(v, Op::CriticInput(real, fake, eps))
    }

    /// Mean over samples of the gradient penalty of g = ∇ₓD(x̂) (see `Backend::penalty`), shape [1].
    /// The fused pass also yields dP/dg, which the node keeps for its backward.
    pub fn penalty(&mut self, g: Var, kind: PenaltyKind, eps: f64) -> Var {
        let (p, dp) = self.backend.penalty(self.value(g), kind, eps);
        self.push_with_aux(p, Op::Penalty(g, kind, eps), Some(dp))
    }

    /// u · dP/dg for a [1]-shaped u: the backward of `penalty`. Uses the saved dP/dg when the
    /// penalty node is at hand, else recomputes it.
    pub(crate) fn penalty_backward(
        &mut self,
        g: Var,
        u: Var,
        kind: PenaltyKind,
        eps: f64,
        saved: Option<B::Tensor>,
    ) -> Var {
        let dp = match saved {
            Some(dp) => dp,
            None => self.backend.penalty(self.value(g), kind, eps).1,
        };
        let v = self.backend.group_mul(&dp, self.value(u), Group::All);
        self.push(v, Op::PenaltyBackward(g, u, kind, eps))
    }
}
