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

    /// The rule of `Linear`, `LinearAct` and `MatMulGated` nodes, and of a `MatMul` whose a is to
    /// be gated, with gating: `gates` says whether the gradient that their first GEMM makes (of x,
    /// or of a) is to go out through that input's mask, and whether this node's own gradient
    /// already did. None for every other op (the plain rules of vjp.rs).
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
            Op::MatMul(a, _, false, _) if gates.gate_of(a).is_some() => a,
            Op::MatMulGated(a, _, _, false, ..) => a,
            Op::MatMulGated(..) => Var(usize::MAX),
            _ => return None,
        };
        let arrived_gated = gates.gated[out.0];
        let gate_x = gates.gate_of(x);
        if gate_x.is_some() {
            gates.gated[x.0] = true;
        }
        Some(self.vjp_epilogue(out, op, g, needed, arrived_gated, gate_x))
    }

    /// Rules of `Linear`, `LinearAct`, `MatMul` and `MatMulGated`. `arrived_gated`: g already went
    /// through this node's mask (its consumer's GEMM applied it). `gate_x`: (slope, mask y) of the
    /// input x (Linear, LinearAct) or a (MatMul, MatMulGated; not transposed) whose only gradient
    /// is the one made here, which then goes out through that mask (`matmul_gated`).
    pub(crate) fn vjp_epilogue(
        &mut self,
        out: Var,
        op: &Op,
        g: Var,
        needed: &[bool],
        arrived_gated: bool,
        gate_x: Option<(f64, Var)>,
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
                        Some((s, y)) => self.matmul_gated(gz, w, false, false, y, s),
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
            Op::MatMul(a, b, ta, tb) | Op::MatMulGated(a, b, _, ta, tb, _) => {
                // MatMulGated: C = M ⊙ (op(A)·op(B)), M = act'(y) constant: ⟨H, C⟩ = ⟨M ⊙ H,
                // op(A)·op(B)⟩, so the matmul rule with M ⊙ H; nothing for y (piecewise constant).
                let hm = match *op {
                    Op::MatMulGated(_, _, y, _, _, slope) if !arrived_gated => self.leaky_relu_backward(g, y, slope),
                    _ => g,
                };
                if want(a) {
                    let da = match gate_x {
                        _ if ta => self.matmul(b, hm, tb, true),
                        Some((s, ya)) => self.matmul_gated(hm, b, false, !tb, ya, s),
                        None => self.matmul(hm, b, false, !tb),
                    };
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

/// Per backward pass: which nodes' gradients arrive through their mask already.
pub(crate) struct Gates {
    /// Nodes whose gradient may be made through their mask, with that mask's (slope, y): a
    /// LinearAct (its own output) or a MatMulGated (its y) that exactly one needed node consumes
    /// (gate inputs, which get no gradient, aside), as the x of a Linear or LinearAct or the
    /// untransposed a of a MatMul or MatMulGated, and that is neither an output nor an input of the pass.
    gate: Vec<Option<(f64, Var)>>,
    /// Node i's gradient was made through its mask (by its consumer's epilogue).
    pub(crate) gated: Vec<bool>,
}

impl Gates {
    pub(crate) fn plan<B: Backend>(t: &Tape<B>, outputs: &[Var], inputs: &[Var], needed: &[bool], lo: usize) -> Gates {
        let n = needed.len();
        let mut uses = vec![0u32; n];
        let mut by_gemm = vec![false; n];
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
            let ins = node.op.inputs();
            for v in &ins {
                uses[v.0] += 1;
            }
            match node.op {
                // A gate input receives no gradient (piecewise constant): not a use.
                Op::MatMulGated(_, _, y, ..) | Op::LeakyReluBackward(_, y, _) => uses[y.0] -= 1,
                _ => {}
            }
            if let Op::Linear(x, ..)
            | Op::LinearAct(x, ..)
            | Op::MatMul(x, _, false, _)
            | Op::MatMulGated(x, _, _, false, ..) = node.op
            {
                by_gemm[x.0] = ins.iter().filter(|&&v| v == x).count() == 1;
            }
        }
        let gate = (0..n)
            .map(|i| {
                let ok = needed[i] && t.nodes[i].requires_grad && uses[i] == 1 && by_gemm[i];
                match t.nodes[i].op {
                    Op::LinearAct(.., s) if ok => Some((s, Var(i))),
                    Op::MatMulGated(_, _, y, _, _, s) if ok => Some((s, y)),
                    _ => None,
                }
            })
            .collect();
        Gates { gate, gated: vec![false; n] }
    }

    fn gate_of(&self, x: Var) -> Option<(f64, Var)> {
        self.gate.get(x.0).copied().flatten()
    }
}
