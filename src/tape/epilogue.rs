//! A Linear layer and its activation as GEMM epilogues (kernels/epilogue.cuh), forward and backward.
//!
//! Forward: `linear_act(x, w, b, slope)` is y = leaky_relu(x·wᵀ + b, slope) (slope ≥ 0; 0 is ReLU)
//! in one op, one launch on a GPU: the bias and the activation run in the GEMM's epilogue.
//!
//! Backward: y's op needs g_z = g ⊙ act'(z), and for slope ≥ 0 the sign of y gives act'(z), so z
//! is never stored. When the gradient g of y comes from exactly one place, the input-gradient GEMM
//! of the Linear layer that consumed y (dx = g'·w), that GEMM applies the mask in its epilogue
//! (`matmul_gated`), and y's own rule takes g_z as it arrives: the activation's backward costs no
//! launch of its own. g_z then feeds y's weight gradient (g_zᵀ·x), input gradient and bias
//! gradient (column sums), as a materialised g_z would. Applying the mask once where g_z is made is
//! cheaper than folding it into the operand loads of the two GEMMs that read g_z (each tile reloads
//! its operands, and the bias gradient would need its own masked sum).
//!
//! Closed under differentiation: `matmul_gated`'s rule is leaky_relu_backward and matmul (whose
//! rules are tape ops), and `linear_act`'s is matmul_gated / matmul / group_sum, so the GP critic's
//! double backward runs through both. `tests/epilogue.rs` checks both ops and the gated backward
//! against f64 finite differences, first and second order, and against the unfused composite.

use super::{Op, Tape, Var};
use crate::backend::{Backend, Group};

impl<B: Backend> Tape<B> {
    /// leaky_relu(x·wᵀ + b, slope) (slope ≥ 0): a Linear layer and its (leaky) ReLU as one GEMM
    /// with its epilogue (`Backend::linear_act`).
    pub fn linear_act(&mut self, x: Var, w: Var, b: Var, slope: f64) -> Var {
        assert!(slope >= 0.0, "linear_act: slope {slope} < 0 (the backward reads the mask from the output)");
        let v = self.backend.linear_act(self.value(x), self.value(w), self.value(b), Some(slope));
        self.push(v, Op::LinearAct(x, w, b, slope))
    }

    /// leaky_relu_backward(op(a)·op(b), y, slope) (slope ≥ 0) as one GEMM with its epilogue
    /// (`Backend::matmul_gated`): the gradient through the activation that made y.
    pub fn matmul_gated(&mut self, a: Var, b: Var, ta: bool, tb: bool, y: Var, slope: f64) -> Var {
        assert!(slope >= 0.0, "matmul_gated: slope {slope} < 0");
        let v = self.backend.matmul_gated(self.value(a), self.value(b), ta, tb, self.value(y), slope);
        self.push(v, Op::MatMulGated(a, b, y, ta, tb, slope))
    }

    /// The rule of `Linear` and `LinearAct` nodes when their input-gradient GEMM may gate (`gates`
    /// says whether x's gradient is to arrive through x's activation, and whether this node's
    /// gradient already did); None for every other op (the plain rules of vjp.rs).
    pub(crate) fn vjp_gated(
        &mut self,
        out: Var,
        op: &Op,
        g: Var,
        needed: &[bool],
        gates: &mut Gates,
    ) -> Option<Vec<(Var, Var)>> {
        let x = match *op {
            Op::Linear(x, ..) | Op::LinearAct(x, ..) => x,
            _ => return None,
        };
        let arrived_gated = gates.gated[out.0];
        let gate_x = gates.slope_of(x);
        if gate_x.is_some() {
            gates.gated[x.0] = true;
        }
        Some(self.vjp_epilogue(out, op, g, needed, arrived_gated, gate_x))
    }

    /// Rules of `Linear`, `LinearAct` and `MatMulGated`. `arrived_gated`: g is already the gradient
    /// of the pre-activation z (a LinearAct whose consumer's GEMM applied the mask). `gate_x`: x is
    /// a LinearAct output of that slope whose only gradient is this one, so dx goes out through
    /// x's activation (`matmul_gated`).
    pub(crate) fn vjp_epilogue(
        &mut self,
        out: Var,
        op: &Op,
        g: Var,
        needed: &[bool],
        arrived_gated: bool,
        gate_x: Option<f64>,
    ) -> Vec<(Var, Var)> {
        let want = |v: Var| needed[v.0];
        let mut r = Vec::new();
        match *op {
            Op::Linear(x, w, b) | Op::LinearAct(x, w, b, _) => {
                // y = act(z), z = x·wᵀ + b: g_z = g ⊙ act'(z) (from y's sign), dx = g_z·w,
                // dw = g_zᵀ·x, db = column sums of g_z.
                let gz = match *op {
                    Op::LinearAct(.., slope) if !arrived_gated => self.leaky_relu_backward(g, out, slope),
                    _ => g,
                };
                if want(x) {
                    let dx = match gate_x {
                        Some(s) => self.matmul_gated(gz, w, false, false, x, s),
                        None => self.matmul(gz, w, false, false),
                    };
                    r.push((x, dx));
                }
                if want(w) {
                    r.push((w, self.matmul(gz, x, true, false)));
                }
                if want(b) {
                    r.push((b, self.group_sum(gz, Group::Channel)));
                }
            }
            Op::MatMulGated(a, b, y, ta, tb, slope) => {
                // C = M ⊙ (op(A)·op(B)), M = act'(y) constant: ⟨H, C⟩ = ⟨M ⊙ H, op(A)·op(B)⟩, so the
                // matmul rule with M ⊙ H; nothing for y (piecewise constant).
                let hm = self.leaky_relu_backward(g, y, slope);
                if want(a) {
                    let da = if ta { self.matmul(b, hm, tb, true) } else { self.matmul(hm, b, false, !tb) };
                    r.push((a, da));
                }
                if want(b) {
                    let db = if tb { self.matmul(hm, a, true, ta) } else { self.matmul(a, hm, !ta, false) };
                    r.push((b, db));
                }
            }
            _ => unreachable!("vjp_epilogue: not an epilogue op"),
        }
        r
    }
}

/// Per backward pass: which nodes' gradients arrive through their activation already.
pub(crate) struct Gates {
    /// LinearAct nodes whose gradient may be made gated: slope, when exactly one needed node
    /// consumes them, as the x of a Linear or LinearAct, and they are neither an output nor an
    /// input of the pass.
    slope: Vec<Option<f64>>,
    /// Node i's gradient was made through its activation (by its consumer's epilogue).
    pub(crate) gated: Vec<bool>,
}

impl Gates {
    pub(crate) fn plan<B: Backend>(t: &Tape<B>, outputs: &[Var], inputs: &[Var], needed: &[bool], lo: usize) -> Gates {
        let n = needed.len();
        let mut uses = vec![0u32; n];
        let mut by_linear = vec![false; n];
        for v in outputs.iter().chain(inputs) {
            if v.0 < n {
                uses[v.0] += 2;
            }
        }
        for i in lo..n {
            let node = &t.nodes[i];
            if !needed[i] || !node.requires_grad {
                continue;
            }
            for v in node.op.inputs() {
                uses[v.0] += 1;
            }
            if let Op::Linear(x, w, b) | Op::LinearAct(x, w, b, _) = node.op {
                by_linear[x.0] = x != w && x != b;
            }
        }
        let slope = (0..n)
            .map(|i| match t.nodes[i].op {
                Op::LinearAct(.., s) if needed[i] && t.nodes[i].requires_grad && uses[i] == 1 && by_linear[i] => {
                    Some(s)
                }
                _ => None,
            })
            .collect();
        Gates { slope, gated: vec![false; n] }
    }

    fn slope_of(&self, x: Var) -> Option<f64> {
        self.slope.get(x.0).copied().flatten()
    }
}
