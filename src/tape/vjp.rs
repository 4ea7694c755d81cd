//! Backward rules: for each op, the vector–Jacobian product with upstream gradient `g`, written with
//! tape ops so that it is itself differentiable. Only inputs marked `needed` get a contribution.
//!
//! Notation: for an op y = f(a, b), the rule returns (a, ∂⟨g, y⟩/∂a) and (b, ∂⟨g, y⟩/∂b).

use super::{Op, Tape, Var};
use crate::backend::{numel, Backend, Group, PenaltyKind};

impl<B: Backend> Tape<B> {
    pub(crate) fn vjp(&mut self, out: Var, op: &Op, g: Var, needed: &[bool]) -> Vec<(Var, Var)> {
        let want = |v: Var| needed[v.0];
        let mut r: Vec<(Var, Var)> = Vec::new();
        match *op {
            Op::Leaf => {}
            Op::Add(a, b) => {
                if want(a) {
                    r.push((a, g));
                }
                if want(b) {
                    r.push((b, g));
                }
            }
            Op::Sub(a, b) => {
                if want(a) {
                    r.push((a, g));
                }
                if want(b) {
                    r.push((b, self.scale(g, -1.0)));
                }
            }
            Op::Mul(a, b) => {
                if want(a) {
                    r.push((a, self.mul(g, b)));
                }
                if want(b) {
                    r.push((b, self.mul(g, a)));
                }
            }
            Op::Scale(a, c) => r.push((a, self.scale(g, c))),
            Op::AddScalar(a) => r.push((a, g)),
            Op::Pow(a, p) => {
                // d aᵖ = p·aᵖ⁻¹
                let d = self.pow(a, p - 1.0);
                let d = self.scale(d, p);
                r.push((a, self.mul(g, d)));
            }
            Op::LeakyRelu(x, s) => r.push((x, self.leaky_relu_backward(g, x, s))),
            // Linear in its first input; its derivative in x is zero almost everywhere.
            Op::LeakyReluBackward(gg, x, s) => {
                if want(gg) {
                    r.push((gg, self.leaky_relu_backward(g, x, s)));
                }
            }
            Op::Tanh(x) => r.push((x, self.tanh_backward(g, out))),
            // Both rules are built from tape ops (sigmoid, mul, scale, add_scalar), so they can be
            // differentiated again to any order.
            Op::Sigmoid(x) => {
                // dσ/dx = σ(1 − σ), from the output s = σ(x)
                let one_minus = self.scale(out, -1.0);
                let one_minus = self.add_scalar(one_minus, 1.0);
                let d = self.mul(out, one_minus);
                r.push((x, self.mul(g, d)));
            }
            Op::SigmoidCrossEntropy(x, z) => {
                // d/dx [max(x,0) − z·x + ln(1 + e^(−|x|))] = σ(x) − z
                let s = self.sigmoid(x);
                let d = self.add_scalar(s, -z);
                r.push((x, self.mul(g, d)));
            }
            Op::TanhBackward(gg, y) => {
                // z = gg·(1 − y²): dz/dgg = 1 − y², dz/dy = −2·gg·y
                if want(gg) {
                    r.push((gg, self.tanh_backward(g, y)));
                }
                if want(y) {
                    let t = self.mul(g, gg);
                    let t = self.mul(t, y);
                    r.push((y, self.scale(t, -2.0)));
                }
            }
            Op::GroupSum(x, grp) => {
                let shape = self.shape(x);
                r.push((x, self.group_broadcast(g, grp, &shape)));
            }
            Op::GroupBroadcast(v, grp) => r.push((v, self.group_sum(g, grp))),
            Op::GroupMul(x, s, grp) => {
                if want(x) {
                    r.push((x, self.group_mul(g, s, grp)));
                }
                if want(s) {
                    let t = self.mul(g, x);
                    r.push((s, self.group_sum(t, grp)));
                }
            }
            Op::GroupAdd(x, b, grp) => {
                if want(x) {
                    r.push((x, g));
                }
                if want(b) {
                    r.push((b, self.group_sum(g, grp)));
                }
            }
            Op::GroupAffineLeakyRelu(x, sc, b, grp, slope) => {
                // y = lrelu(z), z = x·s + b. With slope ≥ 0, y > 0 exactly where z > 0, so the
                // activation's backward reads the output (z is not kept).
                let gz = self.leaky_relu_backward(g, out, slope);
                if want(x) {
                    r.push((x, self.group_mul(gz, sc, grp)));
                }
                if want(sc) {
                    let t = self.mul(gz, x);
                    r.push((sc, self.group_sum(t, grp)));
                }
                if want(b) {
                    r.push((b, self.group_sum(gz, grp)));
                }
            }
            Op::GroupAffine(x, sc, b, grp) => {
                if want(x) {
                    r.push((x, self.group_mul(g, sc, grp)));
                }
                if want(sc) {
                    let t = self.mul(g, x);
                    r.push((sc, self.group_sum(t, grp)));
                }
                if want(b) {
                    r.push((b, self.group_sum(g, grp)));
                }
            }
            Op::Reshape(x) => {
                let shape = self.shape(x);
                r.push((x, self.reshape(g, &shape)));
            }
            Op::ConcatRows(a, b) => {
                let na = self.shape(a)[0];
                if want(a) {
                    r.push((a, self.rows(g, 0, na)));
                }
                if want(b) {
                    let nb = self.shape(b)[0];
                    r.push((b, self.rows(g, na, nb)));
                }
            }
            Op::Rows(x, start) => {
                let total = self.shape(x)[0];
                r.push((x, self.pad_rows(g, start, total)));
            }
            Op::PadRows(x, start) => {
                let n = self.shape(x)[0];
                r.push((x, self.rows(g, start, n)));
            }
            Op::MatMul(a, b, ta, tb) => {
                // C = op(A)·op(B): d op(A) = G·op(B)ᵀ, d op(B) = op(A)ᵀ·G, transposed back when needed.
                if want(a) {
                    let da = if ta { self.matmul(b, g, tb, true) } else { self.matmul(g, b, false, !tb) };
                    r.push((a, da));
                }
                if want(b) {
                    let db = if tb { self.matmul(g, a, true, ta) } else { self.matmul(a, g, !ta, false) };
                    r.push((b, db));
                }
            }
            Op::Linear(x, w, b) => {
                // y = x·wᵀ + b: dx = G·w, dw = Gᵀ·x, db = column sums of G.
                if want(x) {
                    r.push((x, self.matmul(g, w, false, false)));
                }
                if want(w) {
                    r.push((w, self.matmul(g, x, true, false)));
                }
                if want(b) {
                    r.push((b, self.group_sum(g, Group::Channel)));
                }
            }
            Op::Conv2d(x, w, p) => {
                if want(x) {
                    let xs = self.shape(x);
                    r.push((x, self.conv2d_data_grad(g, w, p, (xs[2], xs[3]))));
                }
                if want(w) {
                    let k = self.shape(w)[2];
                    r.push((w, self.conv2d_weight_grad(x, g, p, k)));
                }
            }
            Op::ConvDataGrad(gy, w, p) => {
                // z = conv_dataᵀ(gy, w): ⟨G, z⟩ = ⟨conv(G, w), gy⟩ = ⟨wgrad(G, gy), w⟩
                if want(gy) {
                    r.push((gy, self.conv2d(g, w, p)));
                }
                if want(w) {
                    let k = self.shape(w)[2];
                    r.push((w, self.conv2d_weight_grad(g, gy, p, k)));
                }
            }
            Op::ConvWeightGrad(x, gy, p) => {
                // z = wgrad(x, gy): ⟨G, z⟩ = ⟨conv(x, G), gy⟩ = ⟨conv_dataᵀ(gy, G), x⟩
                if want(x) {
                    let xs = self.shape(x);
                    r.push((x, self.conv2d_data_grad(gy, g, p, (xs[2], xs[3]))));
                }
                if want(gy) {
                    r.push((gy, self.conv2d(x, g, p)));
                }
            }
            Op::Normalize(x, grp, eps) => r.push((x, self.normalize_backward(g, x, grp, eps))),
            Op::SyncNormalize(x) => {
                let stats = self.nodes[out.0].aux.clone().expect("sync_normalize keeps its statistics");
                r.push((x, self.sync_normalize_backward(g, x, stats)));
            }
            Op::SyncNormalizeBackward(..) => panic!(
                "double backward through synchronised batch norm is not implemented (no critic of this crate \
                 has batch norm, and the generator's gradient is taken once)"
            ),
            Op::NormalizeBackward(gg, x, grp, eps) => {
                // The Jacobian J of normalize is symmetric, so the rule in gg is normalize_backward
                // again; the rule in x is the Hessian–vector product below.
                if want(gg) {
                    r.push((gg, self.normalize_backward(g, x, grp, eps)));
                }
                if want(x) {
                    r.push((x, self.normalize_hvp(gg, g, x, grp, eps)));
                }
            }
            Op::NormalizeHvp(gg, h, x, grp, eps) => {
                let ins = [gg, h, x];
                r.extend(
                    self.vjp_of_composite(&ins, g, needed, |t, v| {
                        t.normalize_hvp_composite(v[0], v[1], v[2], grp, eps)
                    }),
                );
            }
            Op::PenaltyHvp(gv, u, h, kind, eps) => {
                let ins = [gv, u, h];
                r.extend(
                    self.vjp_of_composite(&ins, g, needed, |t, v| t.penalty_hvp_composite(v[0], v[1], v[2], kind, eps)),
                );
            }
            Op::Interpolate(x, xt, e) => {
                if want(x) {
                    r.push((x, self.group_mul(g, e, Group::Sample)));
                }
                if want(xt) {
                    let one_minus = self.scale(e, -1.0);
                    let one_minus = self.add_scalar(one_minus, 1.0);
                    r.push((xt, self.group_mul(g, one_minus, Group::Sample)));
                }
            }
            Op::CriticInput(x, xt, e) => {
                // rows 0..n are real, n..2n fake, and with ε 2n..3n x̂ (whose rule is interpolate's).
                let n = self.shape(x)[0];
                let mixed = e.map(|e| (self.rows(g, 2 * n, n), e));
                if want(x) {
                    let mut d = self.rows(g, 0, n);
                    if let Some((gm, e)) = mixed {
                        let t = self.group_mul(gm, e, Group::Sample);
                        d = self.add(d, t);
                    }
                    r.push((x, d));
                }
                if want(xt) {
                    let mut d = self.rows(g, n, n);
                    if let Some((gm, e)) = mixed {
                        let one_minus = self.scale(e, -1.0);
                        let one_minus = self.add_scalar(one_minus, 1.0);
                        let t = self.group_mul(gm, one_minus, Group::Sample);
                        d = self.add(d, t);
                    }
                    r.push((xt, d));
                }
            }
            Op::Penalty(gv, kind, eps) => {
                let saved = self.nodes[out.0].aux.clone();
                r.push((gv, self.penalty_backward(gv, g, kind, eps, saved)));
            }
            Op::LinearAct(..) | Op::MatMulGated(..) => r.extend(self.vjp_epilogue(out, op, g, needed, false, None)),
            Op::PenaltyBackward(gv, u, kind, eps) => {
                if want(u) {
                    let one = self.backend.fill(&[1], 1.0);
                    let one = self.constant(one);
                    let dp = self.penalty_backward(gv, one, kind, eps, None);
                    let t = self.mul(g, dp);
                    r.push((u, self.sum(t)));
                }
                if want(gv) {
                    r.push((gv, self.penalty_hvp(gv, u, g, kind, eps)));
                }
            }
        }
        r
    }

    /// The backward rule of a fused op, from its composite: the composite `f` is built on the tape
    /// (recorded, whatever the current setting) over pass-through views of the op's inputs, and
    /// differentiated with seed `g`. The views make the derivatives partial ones (gradient stops
    /// at them instead of flowing on into the inputs' own histories, which the outer backward pass
    /// walks) while keeping the result connected to the inputs, so it can be differentiated again
    /// when the outer pass records. Only used where a fused op is differentiated (third order in
    /// training never happens; gradchecks of the fused ops do it).
    fn vjp_of_composite(
        &mut self,
        ins: &[Var; 3],
        g: Var,
        needed: &[bool],
        f: impl FnOnce(&mut Self, [Var; 3]) -> Var,
    ) -> Vec<(Var, Var)> {
        let record = self.set_grad_enabled(true);
        let views = ins.map(|v| {
            let shape = self.shape(v);
            self.reshape(v, &shape)
        });
        let y = f(self, views);
        self.set_grad_enabled(record);
        let wanted: Vec<usize> = (0..3).filter(|&i| needed[ins[i].0] && self.requires_grad(views[i])).collect();
        let targets: Vec<Var> = wanted.iter().map(|&i| views[i]).collect();
        if targets.is_empty() || !self.requires_grad(y) {
            return vec![];
        }
        let grads = self.grad_with_seeds(&[y], &[g], &targets, record);
        wanted.iter().zip(grads).map(|(&i, d)| (ins[i], d)).collect()
    }

    /// ∂/∂x ⟨H, normalize_backward(G, x)⟩ within each group of size m, with x̂ = normalize(x),
    /// σ² = var + eps, a = mean(G·x̂), b = mean(H·x̂), c = mean(H·G) − mean(H)·mean(G):
    ///   −(1/σ²)·[ x̂·(c − 3ab) + a·(H − mean H) + b·(G − mean G) ].
    /// Built from differentiable ops: the reference of the fused `normalize_hvp` and its backward
    /// rule.
    pub fn normalize_hvp_composite(&mut self, gg: Var, h: Var, x: Var, grp: Group, eps: f64) -> Var {
        let shape = self.shape(x);
        let m = (numel(&shape) / grp.count(&shape)) as f64;
        let mean = |t: &mut Self, v: Var| {
            let s = t.group_sum(v, grp);
            t.scale(s, 1.0 / m)
        };
        let centre = |t: &mut Self, v: Var, mu: Var| {
            let neg = t.scale(mu, -1.0);
            t.group_add(v, neg, grp)
        };
        // 1/σ² from x itself.
        let mu = mean(self, x);
        let xc = centre(self, x, mu);
        let sq = self.mul(xc, xc);
        let var = mean(self, sq);
        let var = self.add_scalar(var, eps);
        let inv_var = self.pow(var, -1.0);
        let xh = self.normalize(x, grp, eps);

        let g_mean = mean(self, gg);
        let h_mean = mean(self, h);
        let gx = self.mul(gg, xh);
        let a = mean(self, gx);
        let hx = self.mul(h, xh);
        let b = mean(self, hx);
        let hg = self.mul(h, gg);
        let hg_mean = mean(self, hg);
        let hm_gm = self.mul(h_mean, g_mean);
        let c = self.sub(hg_mean, hm_gm);
        let ab = self.mul(a, b);
        let ab3 = self.scale(ab, 3.0);
        let coef = self.sub(c, ab3);

        let t1 = self.group_mul(xh, coef, grp);
        let hc = centre(self, h, h_mean);
        let t2 = self.group_mul(hc, a, grp);
        let gc = centre(self, gg, g_mean);
        let t3 = self.group_mul(gc, b, grp);
        let s = self.add(t1, t2);
        let s = self.add(s, t3);
        let s = self.group_mul(s, inv_var, grp);
        self.scale(s, -1.0)
    }

    /// ∂/∂g ⟨H, u·dP/dg⟩ per sample, with n = sqrt(Σg² + eps), dP/dg = (1/N)·c(n)·g, c(n) = f'(n)/n:
    ///   (u/N)·[ c(n)·H + (c'(n)/n)·⟨g, H⟩·g ].
    /// Two-sided: c = 2 − 2/n, c'/n = 2/n³. One-sided: c = 2·max(0, n−1)/n, c'/n = 2/n³ where n > 1.
    /// Built from differentiable ops: the reference of the fused `penalty_hvp` and its backward
    /// rule.
    pub fn penalty_hvp_composite(&mut self, gv: Var, u: Var, h: Var, kind: PenaltyKind, eps: f64) -> Var {
        let n_samples = self.shape(gv)[0] as f64;
        let sq = self.mul(gv, gv);
        let s = self.group_sum(sq, Group::Sample);
        let s = self.add_scalar(s, eps);
        let n = self.pow(s, 0.5);
        let inv_n = self.pow(s, -0.5);
        let inv_n3 = self.pow(s, -1.5);
        let dc = self.scale(inv_n3, 2.0);
        let (c, dc) = match kind {
            PenaltyKind::TwoSided => {
                let c = self.scale(inv_n, -2.0);
                (self.add_scalar(c, 2.0), dc)
            }
            PenaltyKind::OneSided => {
                let excess = self.add_scalar(n, -1.0);
                let pos = self.relu(excess);
                let c = self.mul(pos, inv_n);
                let c = self.scale(c, 2.0);
                (c, self.leaky_relu_backward(dc, excess, 0.0))
            }
        };
        let gh = self.mul(gv, h);
        let gh = self.group_sum(gh, Group::Sample);
        let coef2 = self.mul(dc, gh);
        let t1 = self.group_mul(h, c, Group::Sample);
        let t2 = self.group_mul(gv, coef2, Group::Sample);
        let t = self.add(t1, t2);
        let t = self.group_mul(t, u, Group::All);
        self.scale(t, 1.0 / n_samples)
    }
}
