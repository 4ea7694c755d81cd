//! A small define-by-run autograd tape that supports double backward.
//!
//! Every op appends a node (its value and how it was made) to the tape and returns a `Var`, an index
//! into it. `grad(outputs, inputs, create_graph)` walks the nodes backwards and applies each op's
//! vector–Jacobian product (`vjp.rs`). Those backward rules are written with tape ops themselves,
//! so with `create_graph = true` the backward pass is recorded like any forward pass and its result
//! can be differentiated again: this is how the WGAN-GP penalty on ∇ₓD(x̂) sends gradient to the
//! critic's weights. The op set is closed under differentiation: every op's VJP uses only ops that
//! themselves have VJPs.
//!
//! A tape lives for one training step; dropping it frees every intermediate.

mod epilogue;
mod ops;
mod sync;
mod vjp;

use crate::backend::{numel, Backend, ConvParams, Group, PenaltyKind};

/// A value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub(crate) usize);

/// How a node was computed. Only nodes that require grad keep their op; the rest are leaves.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Leaf,
    Add(Var, Var),
    Sub(Var, Var),
    Mul(Var, Var),
    Scale(Var, f64),
    AddScalar(Var),
    Pow(Var, f64),
    LeakyRelu(Var, f64),
    /// (g, x, slope): linear in g, piecewise constant in x.
    LeakyReluBackward(Var, Var, f64),
    Tanh(Var),
    Sigmoid(Var),
    /// (x, z): the sigmoid cross-entropy of logits x against label z.
    SigmoidCrossEntropy(Var, f64),
    /// (g, y) with y = tanh(x).
    TanhBackward(Var, Var),
    GroupSum(Var, Group),
    GroupBroadcast(Var, Group),
    GroupMul(Var, Var, Group),
    GroupAdd(Var, Var, Group),
    Reshape(Var),
    MatMul(Var, Var, bool, bool),
    /// (x, w, b): x·wᵀ + b.
    Linear(Var, Var, Var),
    Conv2d(Var, Var, ConvParams),
    /// (gy, w): the transposed convolution.
    ConvDataGrad(Var, Var, ConvParams),
    /// (x, gy)
    ConvWeightGrad(Var, Var, ConvParams),
    Normalize(Var, Group, f64),
    /// (g, x)
    NormalizeBackward(Var, Var, Group, f64),
    /// (x, x̃, ε): ε is a constant.
    Interpolate(Var, Var, Var),
    /// The node's `aux` holds dP/dg from the fused forward pass.
    Penalty(Var, PenaltyKind, f64),
    /// (g, u): u · dP/dg with u a [1] tensor.
    PenaltyBackward(Var, Var, PenaltyKind, f64),
    /// (x, s, b): x·s[g] + b[g] per group, one fused op (`Backend::group_affine`).
    GroupAffine(Var, Var, Var, Group),
    /// (x, s, b, slope): leaky_relu(x·s[g] + b[g], slope), one fused op.
    GroupAffineLeakyRelu(Var, Var, Var, Group, f64),
    /// (a, b): a's rows then b's (dim 0), the other dims equal.
    ConcatRows(Var, Var),
    /// (x, start): rows start.. of x, as many as the node has (a view: no kernel).
    Rows(Var, usize),
    /// (x, start): x placed at row `start` of zeros with the node's row count.
    PadRows(Var, usize),
    /// (gg, h, x): ∂/∂x ⟨h, normalize_backward(gg, x)⟩, one fused op (`Backend::normalize_hvp`).
    NormalizeHvp(Var, Var, Var, Group, f64),
    /// (g, u, h): ∂/∂g ⟨h, u·dP/dg⟩, one fused op (`Backend::penalty_hvp`).
    PenaltyHvp(Var, Var, Var, PenaltyKind, f64),
    /// (real, fake, ε): [real; fake; x̂] with x̂ = ε·real + (1−ε)·fake, or [real; fake] without ε
    /// (`Backend::critic_input`); ε is a constant.
    CriticInput(Var, Var, Option<Var>),
    /// (x, w, b, slope): leaky_relu(x·wᵀ + b, slope), one GEMM with its epilogue (`Backend::linear_act`).
    LinearAct(Var, Var, Var, f64),
    /// (a, b, y, ta, tb, slope): leaky_relu_backward(op(a)·op(b), y, slope), one GEMM with its
    /// epilogue (`Backend::matmul_gated`); y is piecewise constant (no gradient).
    MatMulGated(Var, Var, Var, bool, bool, f64),
    /// (x, eps): batch norm's normalisation over every rank's rows (`Tape::sync_normalize`); the
    /// node's `aux` holds the global statistics.
    SyncNormalize(Var),
    /// (g, x): its backward; the node's `aux` holds the statistics of the forward.
    SyncNormalizeBackward(Var, Var),
}

impl Op {
    /// The inputs of this op (constants such as ε included).
    pub(crate) fn inputs(&self) -> Vec<Var> {
        use Op::*;
        match *self {
            Leaf => vec![],
            Scale(a, _) | AddScalar(a) | Pow(a, _) | LeakyRelu(a, _) | Tanh(a) | GroupSum(a, _) => vec![a],
            GroupBroadcast(a, _) | Reshape(a) | Normalize(a, _, _) | Penalty(a, _, _) => vec![a],
            Sigmoid(a) | SigmoidCrossEntropy(a, _) | Rows(a, _) | PadRows(a, _) => vec![a],
            ConcatRows(a, b) => vec![a, b],
            Add(a, b) | Sub(a, b) | Mul(a, b) | LeakyReluBackward(a, b, _) | TanhBackward(a, b) => vec![a, b],
            GroupMul(a, b, _) | GroupAdd(a, b, _) | MatMul(a, b, _, _) | Conv2d(a, b, _) => vec![a, b],
            ConvDataGrad(a, b, _) | ConvWeightGrad(a, b, _) | NormalizeBackward(a, b, _, _) => vec![a, b],
            PenaltyBackward(a, b, _, _) => vec![a, b],
            Interpolate(a, b, c) | Linear(a, b, c) => vec![a, b, c],
            NormalizeHvp(a, b, c, _, _) | PenaltyHvp(a, b, c, _, _) | GroupAffine(a, b, c, _) => vec![a, b, c],
            GroupAffineLeakyRelu(a, b, c, _, _) => vec![a, b, c],
            CriticInput(a, b, e) => [a, b].into_iter().chain(e).collect(),
            LinearAct(a, b, c, _) | MatMulGated(a, b, c, _, _, _) => vec![a, b, c],
            SyncNormalize(a) => vec![a],
            SyncNormalizeBackward(a, b) => vec![a, b],
        }
    }

    /// For an op that treats every sample (row of dim 0) of its first input on its own, with every
    /// other input shared by all samples: the same op on the batch `x` instead. None for every other
    /// op. These are the ops `Tape::per_sample_parts` evaluates once over several parts of a batch;
    /// a new per-sample op joins them with one line here.
    pub(crate) fn on_rows_of(&self, x: Var) -> Option<Op> {
        use Op::*;
        Some(match *self {
            Scale(_, c) => Scale(x, c),
            AddScalar(_) => AddScalar(x),
            Pow(_, p) => Pow(x, p),
            LeakyRelu(_, s) => LeakyRelu(x, s),
            Tanh(_) => Tanh(x),
            Sigmoid(_) => Sigmoid(x),
            Linear(_, w, b) => Linear(x, w, b),
            LinearAct(_, w, b, s) => LinearAct(x, w, b, s),
            Conv2d(_, w, p) => Conv2d(x, w, p),
            ConvDataGrad(_, w, p) => ConvDataGrad(x, w, p),
            Normalize(_, Group::Sample, eps) => Normalize(x, Group::Sample, eps),
            GroupAffine(_, s, b, Group::Channel) => GroupAffine(x, s, b, Group::Channel),
            GroupAffineLeakyRelu(_, s, b, Group::Channel, sl) => GroupAffineLeakyRelu(x, s, b, Group::Channel, sl),
            _ => return None,
        })
    }
}

pub(crate) struct Node<B: Backend> {
    pub(crate) value: B::Tensor,
    pub(crate) op: Op,
    pub(crate) requires_grad: bool,
    /// A tensor an op saved in its forward pass for its backward (the penalty's dP/dg).
    pub(crate) aux: Option<B::Tensor>,
}

/// `grad_with_ready`'s callback: (input index, its final gradient).
type Ready<'a, B> = Option<&'a mut dyn FnMut(usize, &<B as Backend>::Tensor)>;

/// The tape: a backend handle and the nodes recorded so far.
pub struct Tape<B: Backend> {
    pub(crate) backend: B,
    pub(crate) nodes: Vec<Node<B>>,
    grad_enabled: bool,
    /// Batch norm over every rank's rows (data-parallel training, `sync.rs`); None: this rank's.
    pub(crate) sync: Option<std::sync::Arc<crate::dist::Comm>>,
}

impl<B: Backend> Tape<B> {
    pub fn new(backend: B) -> Self {
        Tape { backend, nodes: Vec::new(), grad_enabled: true, sync: None }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of nodes recorded (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A leaf that gradients flow to (a parameter or an input we differentiate with respect to).
    pub fn leaf(&mut self, value: B::Tensor) -> Var {
        self.nodes.push(Node { value, op: Op::Leaf, requires_grad: true, aux: None });
        Var(self.nodes.len() - 1)
    }

    /// A constant: no gradient flows to it.
    pub fn constant(&mut self, value: B::Tensor) -> Var {
        self.nodes.push(Node { value, op: Op::Leaf, requires_grad: false, aux: None });
        Var(self.nodes.len() - 1)
    }

    /// A new leaf holding `v`'s value, cut off from `v`'s history (PyTorch's `detach()`), that
    /// gradients flow to: x̂ in the penalty is made this way from constant real and fake batches.
    pub fn detached_leaf(&mut self, v: Var) -> Var {
        let value = self.value(v).clone();
        self.leaf(value)
    }

    /// A constant holding `v`'s value (PyTorch's `detach()`).
    pub fn detach(&mut self, v: Var) -> Var {
        let value = self.value(v).clone();
        self.constant(value)
    }

    pub fn value(&self, v: Var) -> &B::Tensor {
        &self.nodes[v.0].value
    }

    pub fn shape(&self, v: Var) -> Vec<usize> {
        self.backend.shape(&self.nodes[v.0].value).to_vec()
    }

    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    pub fn to_f64(&self, v: Var) -> Vec<f64> {
        self.backend.to_f64(self.value(v))
    }

    pub fn to_f32(&self, v: Var) -> Vec<f32> {
        self.backend.to_f32(self.value(v))
    }

    /// Turns recording off (`false`) or on; returns the previous setting. With recording off every
    /// new node is a constant, as under PyTorch's `no_grad`.
    pub fn set_grad_enabled(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.grad_enabled, on)
    }

    /// Runs `f` with recording off.
    pub fn no_grad<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let prev = self.set_grad_enabled(false);
        let r = f(self);
        self.set_grad_enabled(prev);
        r
    }

    /// Appends the result of an op.
    pub(crate) fn push(&mut self, value: B::Tensor, op: Op) -> Var {
        self.push_with_aux(value, op, None)
    }

    pub(crate) fn push_with_aux(&mut self, value: B::Tensor, op: Op, aux: Option<B::Tensor>) -> Var {
        let requires_grad = self.grad_enabled && op.inputs().iter().any(|v| self.nodes[v.0].requires_grad);
        let op = if requires_grad { op } else { Op::Leaf };
        let aux = if requires_grad { aux } else { None };
        self.nodes.push(Node { value, op, requires_grad, aux });
        Var(self.nodes.len() - 1)
    }

    /// Applies `f`, which records one per-sample tape op (`Op::on_rows_of`) on its argument, to each
    /// of `parts`, parts of one batch along dim 0. When their values are adjacent row blocks of one
    /// buffer (`Backend::join_rows`), the op is evaluated once over all their rows (one launch on a
    /// GPU) and recorded once per part: each part's node holds its rows of the one result (a view)
    /// and has the op's usual inputs with the part in place of the batch, so backward passes,
    /// create-graph ones included, run over each part's own rows only, exactly as if each part had
    /// been evaluated alone. The results are again adjacent row blocks, so a chain of such ops
    /// stays joined. Otherwise (one part, parts not adjacent) `f` runs on each part.
    ///
    /// Panics if `f` records anything but one per-sample op of its argument (a programming error:
    /// batch norm, say, couples the samples and must run per part).
    pub fn per_sample_parts(&mut self, parts: &[Var], f: impl Fn(&mut Self, Var) -> Var) -> Vec<Var> {
        let joined = if parts.len() < 2 {
            None
        } else {
            let values: Vec<&B::Tensor> = parts.iter().map(|&p| self.value(p)).collect();
            self.backend.join_rows(&values)
        };
        let Some(joined) = joined else {
            return parts.iter().map(|&p| f(self, p)).collect();
        };
        // Evaluate on a stand-in leaf for the joined rows, with recording on so the op is kept.
        let n0 = self.nodes.len();
        let record = self.set_grad_enabled(true);
        let all = self.leaf(joined);
        let y = f(self, all);
        self.set_grad_enabled(record);
        assert!(
            y.0 == n0 + 1 && self.nodes.len() == n0 + 2,
            "per_sample_parts: the function must record exactly one op on its argument"
        );
        let node = self.nodes.pop().expect("pushed above");
        self.nodes.pop(); // the stand-in
        let ins = node.op.inputs();
        assert!(
            ins.first() == Some(&all) && !ins[1..].contains(&all) && node.aux.is_none(),
            "per_sample_parts: {:?} does not take the batch as its first input only",
            node.op
        );
        let shape = self.backend.shape(&node.value).to_vec();
        let rows: Vec<usize> = parts.iter().map(|&p| self.shape(p)[0]).collect();
        assert_eq!(shape.first(), Some(&rows.iter().sum()), "per_sample_parts: {:?} changed the row count", node.op);
        let per = numel(&shape[1..]);
        let mut start = 0;
        let mut out = Vec::with_capacity(parts.len());
        for (&p, &r) in parts.iter().zip(&rows) {
            let op = node
                .op
                .on_rows_of(p)
                .unwrap_or_else(|| panic!("per_sample_parts: {:?} is not a per-sample op (Op::on_rows_of)", node.op));
            let mut s = shape.clone();
            s[0] = r;
            let v = self.backend.view(&node.value, start * per, &s);
            start += r;
            out.push(self.push(v, op));
        }
        out
    }

    /// Gradients of a scalar `loss` with respect to every leaf that requires grad, like PyTorch's
    /// `loss.backward()`: `(leaf, gradient)` pairs in tape order, the gradients constants.
    pub fn backward(&mut self, loss: Var) -> Vec<(Var, Var)> {
        let leaves: Vec<Var> = (0..loss.0)
            .filter(|&i| self.nodes[i].requires_grad && matches!(self.nodes[i].op, Op::Leaf))
            .map(Var)
            .collect();
        let grads = self.grad(&[loss], &leaves, false);
        leaves.into_iter().zip(grads).collect()
    }

    /// Gradients of Σ outputs with respect to `inputs` (each output seeded with ones), like
    /// `torch.autograd.grad(outputs, inputs, create_graph=...)`. An input the outputs do not depend
    /// on gets zeros. With `create_graph` the backward pass is recorded, so the returned gradients
    /// can be differentiated again; without it they are constants.
    pub fn grad(&mut self, outputs: &[Var], inputs: &[Var], create_graph: bool) -> Vec<Var> {
        let seeds: Vec<Var> = outputs
            .iter()
            .map(|&o| {
                let shape = self.shape(o);
                let ones = self.backend.fill(&shape, 1.0);
                self.constant(ones)
            })
            .collect();
        self.grad_with_seeds(outputs, &seeds, inputs, create_graph)
    }

    /// Like `grad` with explicit upstream gradients (`seeds[i]` has the shape of `outputs[i]`).
    pub fn grad_with_seeds(&mut self, outputs: &[Var], seeds: &[Var], inputs: &[Var], create_graph: bool) -> Vec<Var> {
        self.grad_impl(outputs, seeds, inputs, create_graph, None)
    }

    /// `grad` (without create_graph) that also calls `ready(k, gradient)` for each input as soon as
    /// the backward pass has finished its gradient, while the pass goes on: data-parallel training
    /// starts reducing a bucket of gradients there (`crate::dist::overlap`). Each k once; the
    /// gradients are those `grad` returns.
    pub fn grad_with_ready(
        &mut self,
        outputs: &[Var],
        inputs: &[Var],
        ready: &mut dyn FnMut(usize, &B::Tensor),
    ) -> Vec<Var> {
        let seeds: Vec<Var> = outputs
            .iter()
            .map(|&o| {
                let ones = self.backend.fill(&self.shape(o), 1.0);
                self.constant(ones)
            })
            .collect();
        self.grad_impl(outputs, &seeds, inputs, false, Some(ready))
    }

    fn grad_impl(
        &mut self,
        outputs: &[Var],
        seeds: &[Var],
        inputs: &[Var],
        create_graph: bool,
        mut ready: Ready<'_, B>,
    ) -> Vec<Var> {
        assert_eq!(outputs.len(), seeds.len(), "grad: one seed per output");
        let n0 = self.nodes.len();
        // needed[i]: node i is an input or depends on one, so gradient must flow through it.
        let mut needed = vec![false; n0];
        for v in inputs {
            needed[v.0] = true;
        }
        let lo = inputs.iter().map(|v| v.0).min().unwrap_or(n0);
        for i in lo..n0 {
            if !needed[i] && self.nodes[i].requires_grad {
                needed[i] = self.nodes[i].op.inputs().iter().any(|v| needed[v.0]);
            }
        }
        // Which activations' backward can run in the epilogue of the GEMM that makes their gradient.
        let mut gates = epilogue::Gates::plan(self, outputs, inputs, &needed, lo);
        let prev = self.set_grad_enabled(create_graph);
        let mut grads: Vec<Option<Var>> = vec![None; n0];
        for (&o, &s) in outputs.iter().zip(seeds) {
            if needed[o.0] {
                grads[o.0] = Some(match grads[o.0] {
                    Some(g) => self.add(g, s),
                    None => s,
                });
            }
        }
        let hi = outputs.iter().map(|v| v.0 + 1).max().unwrap_or(0);
        // With `ready`: the lowest node that can send each input a contribution; once the pass is
        // below it, that input's gradient is final.
        let mut last_use: Vec<Option<usize>> = vec![None; inputs.len()];
        if ready.is_some() {
            for (i, node) in self.nodes.iter().enumerate().take(hi).skip(lo) {
                if needed[i] && node.requires_grad {
                    for v in node.op.inputs() {
                        for (k, _) in inputs.iter().enumerate().filter(|(_, &u)| u == v) {
                            last_use[k] = Some(last_use[k].map_or(i, |j: usize| j.min(i)));
                        }
                    }
                }
            }
        }
        let fire = |t: &mut Self, grads: &[Option<Var>], k: usize, ready: &mut Ready<'_, B>| {
            if let Some(f) = ready.as_mut() {
                match grads[inputs[k].0] {
                    Some(g) => f(k, t.value(g)),
                    None => f(k, &t.backend.fill(&t.shape(inputs[k]), 0.0)),
                }
            }
        };
        for i in (lo..hi).rev() {
            for (k, _) in last_use.iter().enumerate().filter(|(_, &u)| u == Some(i + 1)) {
                fire(self, &grads, k, &mut ready);
            }
            let Some(g) = grads[i] else { continue };
            if !needed[i] || !self.nodes[i].requires_grad {
                continue;
            }
            let op = self.nodes[i].op.clone();
            let contributions = match self.vjp_gated(Var(i), &op, g, &needed, &mut gates) {
                Some(c) => c,
                None => self.vjp(Var(i), &op, g, &needed),
            };
            for (input, contribution) in contributions {
                grads[input.0] = Some(match grads[input.0] {
                    Some(acc) => self.add(acc, contribution),
                    None => contribution,
                });
            }
        }
        if ready.is_some() {
            for (k, _) in last_use.iter().enumerate().filter(|(_, &u)| u.map_or(true, |j| j == lo)) {
                fire(self, &grads, k, &mut ready);
            }
        }
        let result = inputs
            .iter()
            .map(|&v| match grads[v.0] {
                Some(g) if create_graph || !self.nodes[g.0].requires_grad => g,
                Some(g) => self.detach(g),
                None => {
                    let zeros = self.backend.fill(&self.shape(v), 0.0);
                    self.constant(zeros)
                }
            })
            .collect();
        self.set_grad_enabled(prev);
        result
    }
}
