//! One WGAN / WGAN-GP training step on any backend: the critic's loss (with the gradient penalty
//! differentiated through ∇ₓD(x̂)), the generator's loss, and the schedule of critic iterations.
//!
//! Randomness: every draw of latent noise or of ε takes the next Philox stream
//! (`STREAM_DRAWS + draws`), so the whole run is a function of the seed and the draw counter, on the
//! CPU and the GPU alike, and a checkpoint only needs the counter to resume exactly.

use super::data_parallel::Role;
use super::optim::{OptimKind, Optimizer};
use crate::backend::{numel, Backend, Group, PenaltyKind};
use crate::nn::{BatchNormMode, Model, Net};
use crate::tape::{Tape, Var};

/// Philox streams of a run (all under the run's seed).
pub const STREAM_GEN_INIT: u64 = 1;
pub const STREAM_CRITIC_INIT: u64 = 2;
pub const STREAM_FIXED_NOISE: u64 = 3;
pub const STREAM_TOY_DATA: u64 = 4;
/// Draw k of latent noise or ε uses stream STREAM_DRAWS + k.
pub const STREAM_DRAWS: u64 = 1 << 32;

/// Epsilon inside the square root of the gradient norm: ‖g‖ = sqrt(Σg² + PENALTY_EPS), so g = 0
/// gives a finite norm and a zero gradient instead of NaN.
pub const PENALTY_EPS: f64 = 1e-12;

/// The two kinds of training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// Weight clipping (Arjovsky et al. 2017): the clamp is fused into the critic's RMSProp step.
    Wgan { clip: f64 },
    /// Gradient penalty (Gulrajani et al. 2017): loss += λ · penalty.
    WganGp { lambda: f64, penalty: PenaltyKind },
    /// The standard GAN: the discriminator's logits D(x) go through the sigmoid cross-entropy,
    /// real labelled 1 and fake 0. The generator minimises log(1 − σ(D(G(z)))) (minimax) or
    /// −log σ(D(G(z))) (`non_saturating`).
    Gan { non_saturating: bool },
}

/// Hyperparameters of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConfig {
    pub loss: LossKind,
    pub n_critic: usize,
    /// WGAN's schedule: 100 critic iterations for the first 25 generator steps and every 500th.
    pub wgan_schedule: bool,
    pub batch: usize,
    pub nz: usize,
    pub seed: u64,
}

/// The critic's loss and its parts (each [1]-shaped on the tape).
pub struct CriticLoss {
    /// mean D(fake) − mean D(real) [+ λ·penalty]: what the critic minimises (for the standard GAN,
    /// mean BCE(D(real), 1) + mean BCE(D(fake), 0)).
    pub loss: Var,
    /// mean D(real) − mean D(fake): the Wasserstein estimate (for the standard GAN, the same
    /// difference of logits, reported for comparison).
    pub wdist: Var,
    /// The gradient penalty (WGAN-GP only), before λ.
    pub penalty: Option<Var>,
}

/// The standard GAN discriminator's loss on `t`: mean BCE(D(real), 1) + mean BCE(D(fake), 0), with
/// D's outputs as logits; `wdist` is mean D(real) − mean D(fake) as for the critic.
pub fn discriminator_loss<B: Backend>(
    t: &mut Tape<B>,
    critic: &Net,
    params: &[Var],
    real: Var,
    fake: Var,
) -> CriticLoss {
    let (d_real, d_fake) = critic_on_both(t, critic, params, real, fake);
    let (m_real, m_fake) = (t.mean(d_real), t.mean(d_fake));
    let wdist = t.sub(m_real, m_fake);
    let l_real = t.sigmoid_cross_entropy(d_real, 1.0);
    let l_fake = t.sigmoid_cross_entropy(d_fake, 0.0);
    let (l_real, l_fake) = (t.mean(l_real), t.mean(l_fake));
    let loss = t.add(l_real, l_fake);
    CriticLoss { loss, wdist, penalty: None }
}

/// (D(real), D(fake)) on `t`. A critic without batch norm treats every sample on its own (layer
/// norm or no norm: nothing couples the samples), so both batches go through it as one pass of
/// their stacked rows, whose forward and backward are one launch per layer instead of two, with
/// the same FLOPs; the outputs are row views of the one result. Mathematically the gradients are
/// those of two passes; numerically the weight gradients sum the 2N samples in one reduction
/// instead of adding two (`tests/batched_critic.rs`). A critic with batch norm (not one this crate
/// builds for WGAN-GP) would couple the batches: it gets two passes.
pub fn critic_on_both<B: Backend>(t: &mut Tape<B>, critic: &Net, params: &[Var], real: Var, fake: Var) -> (Var, Var) {
    match critic_pass(t, critic, params, real, fake) {
        CriticPass::Stacked { d, n, nf } => (t.rows(d, 0, n), t.rows(d, n, nf)),
        CriticPass::Separate { d_real, d_fake } => (d_real, d_fake),
    }
}

/// D's outputs on the real and the fake batch: one stacked pass, or two.
enum CriticPass {
    /// D of the 2N stacked samples: rows 0..n real, n..n + nf fake.
    Stacked {
        d: Var,
        n: usize,
        nf: usize,
    },
    Separate {
        d_real: Var,
        d_fake: Var,
    },
}

fn critic_pass<B: Backend>(t: &mut Tape<B>, critic: &Net, params: &[Var], real: Var, fake: Var) -> CriticPass {
    if critic.couples_samples() {
        let d_real = critic.forward(t, params, real, BatchNormMode::Train(None));
        let d_fake = critic.forward(t, params, fake, BatchNormMode::Train(None));
        return CriticPass::Separate { d_real, d_fake };
    }
    let (n, nf) = (t.shape(real)[0], t.shape(fake)[0]);
    // [real; fake] in one launch (`critic_input` without ε) where the batches have one shape.
    let both =
        if t.shape(real) == t.shape(fake) { t.critic_input(real, fake, None) } else { t.concat_rows(real, fake) };
    let d = critic.forward(t, params, both, BatchNormMode::Train(None));
    CriticPass::Stacked { d, n, nf }
}

/// (mean D(real), mean D(fake)) from D of the stacked 2N samples, both batches of N: one sum per
/// row block of D's outputs (viewed as [2, N·outputs]) and one scale, whose backward is one
/// broadcast, instead of a sum, a scale and a broadcast per batch.
fn stacked_means<B: Backend>(t: &mut Tape<B>, d: Var, n: usize) -> (Var, Var) {
    let per = numel(&t.shape(d)) / (2 * n);
    let d = t.reshape(d, &[2, n * per]);
    let sums = t.group_sum(d, Group::Sample);
    let means = t.scale(sums, 1.0 / (n * per) as f64);
    (t.rows(means, 0, 1), t.rows(means, 1, 1))
}

/// (mean D(real), mean D(fake)) on `t`, each [1]: with the batches stacked (`critic_on_both`)
/// and of equal size N, from `stacked_means`.
pub fn critic_means<B: Backend>(t: &mut Tape<B>, critic: &Net, params: &[Var], real: Var, fake: Var) -> (Var, Var) {
    match critic_pass(t, critic, params, real, fake) {
        CriticPass::Stacked { d, n, nf } if n == nf && n > 0 => stacked_means(t, d, n),
        CriticPass::Stacked { d, n, nf } => {
            let (d_real, d_fake) = (t.rows(d, 0, n), t.rows(d, n, nf));
            (t.mean(d_real), t.mean(d_fake))
        }
        CriticPass::Separate { d_real, d_fake } => (t.mean(d_real), t.mean(d_fake)),
    }
}

/// The generator's loss from the critic's outputs `d` = D(G(z)) under `loss`.
pub fn generator_loss<B: Backend>(t: &mut Tape<B>, d: Var, loss: LossKind) -> Var {
    match loss {
        LossKind::Wgan { .. } | LossKind::WganGp { .. } => {
            let m = t.mean(d);
            t.scale(m, -1.0)
        }
        // minimax: minimise log(1 − σ(d)) = −BCE(d, 0)
        LossKind::Gan { non_saturating: false } => {
            let l = t.sigmoid_cross_entropy(d, 0.0);
            let m = t.mean(l);
            t.scale(m, -1.0)
        }
        // non-saturating: minimise −log σ(d) = BCE(d, 1)
        LossKind::Gan { non_saturating: true } => {
            let l = t.sigmoid_cross_entropy(d, 1.0);
            t.mean(l)
        }
    }
}

/// Builds the critic's loss on `t`. `real` and `fake` are constants; with a penalty, `eps` ([N],
/// constant) picks x̂ = ε·real + (1−ε)·fake per sample, and ∇ₓD(x̂) is taken with create_graph so
/// that the penalty's gradient reaches `params` through it.
///
/// With a penalty, a critic without batch norm and batches of one shape, the critic sees all 3N
/// samples in one pass: `critic_input` lays out [real; fake; x̂] in one launch, x̂'s rows become a
/// detached leaf (a view), and `Net::forward_parts` runs each layer once over the 3N rows while
/// recording the 2N rows of real and fake (the loss) and the N rows of x̂ (the penalty) as
/// separate nodes. So ∇ₓD(x̂), taken with create_graph, and its double backward run over x̂'s N
/// rows only, and the loss's backward over 2N: the FLOPs of three separate passes, with one
/// forward launch per layer instead of two (`tests/batched_critic.rs` checks the gradients
/// against three separate passes).
pub fn critic_loss<B: Backend>(
    t: &mut Tape<B>,
    critic: &Net,
    params: &[Var],
    real: Var,
    fake: Var,
    gp: Option<(Var, f64, PenaltyKind)>,
) -> CriticLoss {
    let n = t.shape(real)[0];
    let joint = gp.is_some() && !critic.couples_samples() && t.shape(real) == t.shape(fake) && n > 0;
    let (m_real, m_fake, d_hat) = match gp {
        Some((eps, _, _)) if joint => {
            let all = t.critic_input(real, fake, Some(eps));
            let both = t.rows(all, 0, 2 * n);
            let mixed = t.rows(all, 2 * n, n);
            let x_hat = t.detached_leaf(mixed);
            let d = critic.forward_parts(t, params, &[both, x_hat], BatchNormMode::Train(None));
            let (m_real, m_fake) = stacked_means(t, d[0], n);
            (m_real, m_fake, Some((x_hat, d[1])))
        }
        _ => {
            let (m_real, m_fake) = critic_means(t, critic, params, real, fake);
            let d_hat = gp.map(|(eps, _, _)| {
                let mixed = t.interpolate(real, fake, eps);
                let x_hat = t.detached_leaf(mixed);
                (x_hat, critic.forward(t, params, x_hat, BatchNormMode::Train(None)))
            });
            (m_real, m_fake, d_hat)
        }
    };
    let wdist = t.sub(m_real, m_fake);
    let mut loss = t.sub(m_fake, m_real);
    let mut penalty = None;
    if let (Some((_, lambda, kind)), Some((x_hat, d_hat))) = (gp, d_hat) {
        let s = t.sum(d_hat);
        let g = t.grad(&[s], &[x_hat], true)[0];
        let p = t.penalty(g, kind, PENALTY_EPS);
        let lp = t.scale(p, lambda);
        loss = t.add(loss, lp);
        penalty = Some(p);
    }
    CriticLoss { loss, wdist, penalty }
}

/// Scalars of one training step, still on the device (read them only when logging).
pub struct StepStats<B: Backend> {
    pub critic_loss: B::Tensor,
    pub wdist: B::Tensor,
    pub penalty: Option<B::Tensor>,
    pub gen_loss: B::Tensor,
    pub critic_iters: usize,
}

/// Host values of `StepStats`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepValues {
    pub critic_loss: f64,
    pub wdist: f64,
    pub penalty: Option<f64>,
    pub gen_loss: f64,
}

impl<B: Backend> StepStats<B> {
    pub fn read(&self, be: &B) -> StepValues {
        StepValues {
            critic_loss: be.to_f64(&self.critic_loss)[0],
            wdist: be.to_f64(&self.wdist)[0],
            penalty: self.penalty.as_ref().map(|p| be.to_f64(p)[0]),
            gen_loss: be.to_f64(&self.gen_loss)[0],
        }
    }
}

/// A generator and a critic with their optimizers and the run's random draw counter.
pub struct Gan<B: Backend> {
    pub be: B,
    pub cfg: StepConfig,
    pub gen: Model<B>,
    pub critic: Model<B>,
    pub opt_g: Optimizer<B>,
    pub opt_d: Optimizer<B>,
    /// Random draws taken so far (noise and ε).
    pub draws: u64,
    /// Generator steps taken so far.
    pub gen_steps: u64,
    /// Capture the step into graphs and replay them, where the backend can (`step_graph`).
    pub graph: bool,
    /// Generator steps this process has run (the first runs eagerly).
    pub(crate) steps_in_process: u64,
    /// The step's fixed device state, made by the first step.
    pub(crate) dev: Option<super::step_graph::DeviceStep<B>>,
    /// This rank's part of a data-parallel run (`crate::dist`; `data_parallel.rs`); None in one
    /// process.
    pub dist: Option<crate::dist::Shard>,
}

impl<B: Backend> Gan<B> {
    /// A fresh pair, initialised from the seed. Under weight clipping the critic starts clamped,
    /// as the WGAN code clamps before its first critic iteration.
    pub fn new(be: B, cfg: StepConfig, gen_net: Net, critic_net: Net, opt_g: OptimKind, opt_d: OptimKind) -> Self {
        let gen = Model::new(&be, gen_net, cfg.seed, STREAM_GEN_INIT);
        let critic = Model::new(&be, critic_net, cfg.seed, STREAM_CRITIC_INIT);
        if let LossKind::Wgan { clip } = cfg.loss {
            be.clamp_inplace(&critic.params, clip);
        }
        let opt_g = Optimizer::new(&be, opt_g, gen.net.num_params());
        let opt_d = Optimizer::new(&be, opt_d, critic.net.num_params());
        Gan {
            be,
            cfg,
            gen,
            critic,
            opt_g,
            opt_d,
            draws: 0,
            gen_steps: 0,
            graph: false,
            steps_in_process: 0,
            dev: None,
            dist: None,
        }
    }

    fn next_stream(&mut self) -> u64 {
        self.draws += 1;
        STREAM_DRAWS + self.draws - 1
    }

    /// Latent noise for `n` samples from the next draw.
    pub fn noise(&mut self, n: usize) -> B::Tensor {
        let s = self.next_stream();
        self.my_rows(n, |rows| self.be.randn(&[rows, self.cfg.nz], self.cfg.seed, s))
    }

    /// Critic iterations before the next generator step.
    pub fn critic_iters(&self) -> usize {
        let g = self.gen_steps;
        if self.cfg.wgan_schedule && (g < 25 || g % 500 == 0) {
            100
        } else {
            self.cfg.n_critic
        }
    }

    /// Generated samples in training mode (batch statistics; running statistics updated, as
    /// PyTorch's `G(z).detach()` does), without recording a graph.
    fn generate_detached(&mut self, n: usize) -> B::Tensor {
        let z = self.noise(n);
        let mut t = self.step_tape();
        let zv = t.constant(z);
        let params = self.gen.param_consts(&mut t);
        let fake = self.gen.forward_train(&mut t, &params, zv);
        t.value(fake).clone()
    }

    /// One critic iteration on a real batch; returns (loss, Wasserstein estimate, penalty).
    pub fn critic_step(&mut self, real: &B::Tensor) -> (B::Tensor, B::Tensor, Option<B::Tensor>) {
        let n = self.be.shape(real)[0];
        let fake = self.generate_detached(n);
        let mut t = self.step_tape();
        let (real, fake) = (t.constant(real.clone()), t.constant(fake));
        let params = self.critic.param_leaves(&mut t);
        let gp = match self.cfg.loss {
            LossKind::WganGp { lambda, penalty } => {
                let s = self.next_stream();
                let eps = t.constant(self.my_rows(n, |rows| self.be.rand_uniform(&[rows], self.cfg.seed, s)));
                Some((eps, lambda, penalty))
            }
            LossKind::Wgan { .. } | LossKind::Gan { .. } => None,
        };
        let l = match self.cfg.loss {
            LossKind::Gan { .. } => discriminator_loss(&mut t, &self.critic.net, &params, real, fake),
            _ => critic_loss(&mut t, &self.critic.net, &params, real, fake, gp),
        };
        self.backward_reduced(&mut t, l.loss, &params, Role::Critic);
        self.opt_d.step(&self.be, &self.critic.params, &self.critic.grads);
        (t.value(l.loss).clone(), t.value(l.wdist).clone(), l.penalty.map(|p| t.value(p).clone()))
    }

    /// One generator iteration: minimise −mean D(G(z)) (or the standard GAN's generator loss);
    /// returns the loss.
    pub fn generator_step(&mut self) -> B::Tensor {
        let n = self.local_batch();
        let z = self.noise(n);
        let mut t = self.step_tape();
        let zv = t.constant(z);
        let gp = self.gen.param_leaves(&mut t);
        let cp = self.critic.param_consts(&mut t);
        let fake = self.gen.forward_train(&mut t, &gp, zv);
        let d = self.critic.net.forward(&mut t, &cp, fake, BatchNormMode::Train(None));
        let loss = generator_loss(&mut t, d, self.cfg.loss);
        self.backward_reduced(&mut t, loss, &gp, Role::Generator);
        self.opt_g.step(&self.be, &self.gen.params, &self.gen.grads);
        self.gen_steps += 1;
        t.value(loss).clone()
    }

    /// One generator step with its critic iterations before it; `next_real` supplies a fresh real
    /// batch for every critic iteration (copied into the step's fixed batch buffer: see
    /// `train_step_into`, which writes batches there without the copy). The scalars returned live
    /// in buffers the next step overwrites.
    pub fn train_step(&mut self, mut next_real: impl FnMut() -> B::Tensor) -> StepStats<B> {
        let mut first = Some(next_real());
        let shape = self.be.shape(first.as_ref().expect("just set")).to_vec();
        self.train_step_into(&shape, |be, dst| {
            let real = first.take().unwrap_or_else(&mut next_real);
            be.copy_into_inplace(dst, 0, &real);
        })
    }

    /// Generated samples in eval mode (running statistics) for pictures and metrics.
    pub fn sample(&self, z: &B::Tensor) -> B::Tensor {
        sample_with(&self.be, &self.gen, z)
    }

    /// Critic values of a batch, without recording a graph.
    pub fn critic_values(&self, x: &B::Tensor) -> B::Tensor {
        let mut t = Tape::new(self.be.clone());
        t.set_grad_enabled(false);
        let xv = t.constant(x.clone());
        let p = self.critic.param_consts(&mut t);
        let d = self.critic.net.forward(&mut t, &p, xv, BatchNormMode::Train(None));
        t.value(d).clone()
    }
}

/// G(z) in eval mode.
pub fn sample_with<B: Backend>(be: &B, gen: &Model<B>, z: &B::Tensor) -> B::Tensor {
    let mut t = Tape::new(be.clone());
    t.set_grad_enabled(false);
    let zv = t.constant(z.clone());
    let p = gen.param_consts(&mut t);
    let y = gen.forward_eval(&mut t, &p, zv);
    t.value(y).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::nn::arch::{dcgan_critic, toy_critic_with, CriticNorm};
    use crate::tape::Op;

    /// With the penalty, the critic's 3N samples go through one forward pass, but no op of the tape
    /// runs over all 3N rows except the input itself: the loss path's ops (forward and backward) run
    /// over the 2N rows of real and fake, the penalty's (forward, create-graph backward and double
    /// backward) over x̂'s N rows, as with three separate passes.
    #[test]
    fn the_3n_pass_records_each_path_on_its_own_rows() {
        let n = 5;
        for net in [dcgan_critic(28, 1, 4, CriticNorm::Layer).unwrap(), toy_critic_with(8)] {
            let be = Cpu::<f64>::new();
            let model = Model::new(&be, net.clone(), 1, STREAM_CRITIC_INIT);
            let mut shape = vec![n];
            shape.extend(&net.input);
            let mut t = Tape::new(be.clone());
            let params = model.param_leaves(&mut t);
            let real = t.constant(be.randn(&shape, 1, 10));
            let fake = t.constant(be.randn(&shape, 1, 11));
            let eps = t.constant(be.rand_uniform(&[n], 1, 12));
            let l = critic_loss(&mut t, &net, &params, real, fake, Some((eps, 10.0, PenaltyKind::TwoSided)));
            let forward = t.len();
            let _ = t.grad(&[l.loss], &params, false);
            // Ops from node `from` on (recorded ones keep their op; the last backward's are values).
            let rows = |k: usize, from: usize| {
                (t.nodes[from..].iter().filter(|nd| be.shape(&nd.value).first() == Some(&k)).map(|nd| &nd.op))
                    .collect::<Vec<&Op>>()
            };
            assert_eq!(rows(3 * n, 0).len(), 1, "only the critic input has 3N rows: {:?}", rows(3 * n, 0));
            for k in [n, 2 * n] {
                let layer = |op: &&Op| matches!(op, Op::Conv2d(..) | Op::Linear(..));
                assert!(rows(k, 0).iter().any(layer), "no layer recorded over {k} rows");
                assert!(!rows(k, forward).is_empty(), "the backward pass made nothing over {k} rows");
            }
            // ∇ₓD(x̂) was taken with create_graph: its ops are recorded, over x̂'s N rows.
            let backward = |op: &&Op| matches!(op, Op::ConvDataGrad(..) | Op::MatMul(..) | Op::LeakyReluBackward(..));
            assert!(rows(n, 0).iter().any(backward), "no create-graph backward op over N rows");
        }
    }
}
