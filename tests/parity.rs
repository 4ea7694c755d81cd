//! The training step against PyTorch from identical weights: the fixtures in tests/data/parity_*
//! (written by `python3 benches/reference/make_parity_fixtures.py`, which documents them) hold the
//! initial weights, a real batch, the latent noise and ε, and what PyTorch computes in float64 from
//! exactly those float32 values. This test runs the same step with the crate's own functions on
//! the CPU reference backend (f32) and compares every value: the generated batch, the critic's
//! loss, Wasserstein estimate and penalty, every critic gradient, the critic after its optimizer
//! step (Adam, or RMSProp with the fused clamp), and the generator's loss and every gradient
//! against the updated critic. So nothing but the initialisation can differ between the two
//! trainers' steps. No PyTorch needed: the fixtures are committed.
//!
//! Tolerance: |ours − torch| ≤ rtol · max|torch| per tensor, rtol 2e-4 (f32 rounding of sums of up
//! to a few thousand terms against exact values), and for the optimizer step an absolute 2.5·lr
//! where the gradient is within f32 noise of zero (Adam's first step moves every weight by ±lr
//! whatever its gradient's size, so the sign of a near-zero gradient decides it).

use std::collections::HashMap;
use std::path::Path;
use wgan::backend::cpu::Cpu;
use wgan::backend::{Backend, PenaltyKind};
use wgan::nn::arch::{dcgan_critic, dcgan_generator, toy_critic_with, toy_generator_with, CriticNorm};
use wgan::nn::{BatchNormMode, Model, Net};
use wgan::tape::Tape;
use wgan::train::gan::{critic_loss, discriminator_loss, generator_loss, LossKind};
use wgan::train::optim::{OptimKind, Optimizer, OPTIM_EPS, RMSPROP_ALPHA};

type Be = Cpu<f32>;

struct Fixture {
    t: HashMap<String, (Vec<usize>, Vec<f32>)>,
    meta: std::collections::BTreeMap<String, String>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("parity_{name}.safetensors"));
        let (ts, meta) = wgan::checkpoint::read_safetensors(&path).unwrap();
        let t = ts.into_iter().map(|n| (n.name.clone(), (n.shape.clone(), n.as_f32().unwrap().to_vec()))).collect();
        Fixture { t, meta }
    }
    fn get(&self, k: &str) -> &[f32] {
        &self.t.get(k).unwrap_or_else(|| panic!("fixture has no {k}")).1
    }
    fn tensor(&self, be: &Be, k: &str) -> <Be as Backend>::Tensor {
        let (s, v) = &self.t[k];
        be.from_f32(v, s)
    }
    fn hyper(&self, k: &str) -> f64 {
        self.meta[k].parse().unwrap()
    }
    fn betas(&self) -> (f64, f64) {
        let s = self.meta["betas"].trim_matches(|c| c == '(' || c == ')');
        let v: Vec<f64> = s.split(',').map(|x| x.trim().parse().unwrap()).collect();
        (v[0], v[1])
    }
    /// A model whose parameters and running statistics are the fixture's `prefix.*` tensors.
    fn model(&self, be: &Be, prefix: &str, net: Net) -> Model<Be> {
        let flat = |slots: &[wgan::nn::Slot]| -> Vec<f32> {
            slots
                .iter()
                .flat_map(|s| {
                    let (shape, v) = &self.t[&format!("{prefix}.{}", s.name)];
                    assert_eq!(shape, &s.shape, "{prefix}.{}", s.name);
                    v.clone()
                })
                .collect()
        };
        let (p, b) = (flat(&net.params), flat(&net.buffers));
        Model::from_host(be, net, &p, &b, 0)
    }
}

fn close(what: &str, ours: &[f32], torch: &[f32], rtol: f64) {
    close_on(what, ours, torch, rtol, 0.0)
}

/// `close` with the scale at least `min_scale`: for a difference of means, the means' size.
fn close_on(what: &str, ours: &[f32], torch: &[f32], rtol: f64, min_scale: f64) {
    assert_eq!(ours.len(), torch.len(), "{what}: lengths differ");
    let scale = torch.iter().fold(min_scale, |m, v| m.max(v.abs() as f64)).max(1e-30);
    let (mut wi, mut wd) = (0, 0f64);
    for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
        let d = (*a as f64 - *b as f64).abs();
        assert!(a.is_finite(), "{what}[{i}] = {a}");
        if d > wd {
            (wi, wd) = (i, d);
        }
    }
    eprintln!("{what}: worst |diff| {wd:.2e} = {:.2e} of max |torch| {scale:.3e}", wd / scale);
    assert!(
        wd <= rtol * scale,
        "{what}[{wi}]: ours {} torch {} (|diff| {wd:.3e} > {rtol:.0e} × {scale:.3e})",
        ours[wi],
        torch[wi]
    );
}

fn run_case(name: &str, gen_net: Net, critic_net: Net) {
    let be = Be::new();
    let f = Fixture::load(name);
    let loss = f.meta["loss"].as_str();
    let kind = match loss {
        "wgan-gp" => LossKind::WganGp { lambda: f.hyper("lambda"), penalty: PenaltyKind::TwoSided },
        "wgan" => LossKind::Wgan { clip: f.hyper("clip") },
        "nsgan" => LossKind::Gan { non_saturating: true },
        "gan" => LossKind::Gan { non_saturating: false },
        other => panic!("unknown loss {other}"),
    };
    let rtol = 2e-4;
    let gen = f.model(&be, "G", gen_net);
    let critic = f.model(&be, "D", critic_net);

    // Critic iteration: fake = G(z) in training mode, without a graph (as Gan::critic_step).
    let fake = {
        let mut t = Tape::new(be);
        let z = t.constant(f.tensor(&be, "z_critic"));
        let p = gen.param_consts(&mut t);
        let y = gen.forward_train(&mut t, &p, z);
        t.value(y).clone()
    };
    close(&format!("{name}: generated batch"), &be.to_f32(&fake), f.get("fake"), rtol);
    let mut t = Tape::new(be);
    let real = t.constant(f.tensor(&be, "real"));
    let fake = t.constant(fake);
    let params = critic.param_leaves(&mut t);
    let l = match kind {
        LossKind::Gan { .. } => discriminator_loss(&mut t, &critic.net, &params, real, fake),
        LossKind::WganGp { lambda, penalty } => {
            let eps = t.constant(f.tensor(&be, "eps"));
            critic_loss(&mut t, &critic.net, &params, real, fake, Some((eps, lambda, penalty)))
        }
        LossKind::Wgan { .. } => critic_loss(&mut t, &critic.net, &params, real, fake, None),
    };
    let grads = t.grad(&[l.loss], &params, false);
    // D's outputs, recomputed outside the loss's graph.
    let d_of = |x: &str| {
        let mut t = Tape::new(be);
        let xv = t.constant(f.tensor(&be, x));
        let p = critic.param_consts(&mut t);
        let d = critic.net.forward(&mut t, &p, xv, BatchNormMode::Train(None));
        t.to_f32(d)
    };
    close(&format!("{name}: D(real)"), &d_of("real"), f.get("d_real"), rtol);
    close(&format!("{name}: D(fake)"), &d_of("fake"), f.get("d_fake"), rtol);
    // The Wasserstein losses are differences of two means that nearly cancel under clipping:
    // compare them on the scale of the critic's outputs, not of the difference.
    let d_scale = f.get("d_real").iter().chain(f.get("d_fake")).fold(0f64, |m, v| m.max(v.abs() as f64));
    let loss_scale = if matches!(kind, LossKind::Gan { .. }) { 0.0 } else { d_scale };
    close_on(&format!("{name}: critic loss"), &t.to_f32(l.loss), f.get("critic_loss"), rtol, loss_scale);
    close_on(&format!("{name}: Wasserstein estimate"), &t.to_f32(l.wdist), f.get("wdist"), rtol, d_scale);
    if let Some(p) = l.penalty {
        close(&format!("{name}: penalty"), &t.to_f32(p), f.get("penalty"), rtol);
    }
    // Under clipping every activation is dominated by the biases (≈1e-2) and the critic's gradients
    // are differences of batch means of such activations between real and fake (≈1e-5): f32
    // rounding of the terms alone (1e-2 · 6e-8) is 1e-4 of the difference. So 1e-3 there.
    let grad_rtol = if matches!(kind, LossKind::Wgan { .. }) { 1e-3 } else { rtol };
    for (s, g) in critic.net.params.iter().zip(&grads) {
        let want = f.get(&format!("grad.D.{}", s.name));
        close(&format!("{name}: ∂loss_D/∂{}", s.name), &t.to_f32(*g), want, grad_rtol);
    }
    critic.store_grads(&t, &grads);

    // The critic's optimizer step.
    let okind = match kind {
        LossKind::Wgan { clip } => {
            OptimKind::RmsProp { lr: f.hyper("lr"), alpha: RMSPROP_ALPHA, eps: OPTIM_EPS, clip: Some(clip) }
        }
        _ => {
            let (b1, b2) = f.betas();
            OptimKind::Adam { lr: f.hyper("lr"), beta1: b1, beta2: b2, eps: OPTIM_EPS }
        }
    };
    let before = be.to_f32(&critic.params);
    let g_flat = be.to_f32(&critic.grads);
    Optimizer::new(&be, okind, critic.net.num_params()).step(&be, &critic.params, &critic.grads);
    let after = be.to_f32(&critic.params);
    let lr = f.hyper("lr");
    for s in &critic.net.params {
        let want = f.get(&format!("stepped.D.{}", s.name));
        let gscale = g_flat[s.offset..s.offset + s.len()].iter().fold(0f32, |m, v| m.max(v.abs()));
        for i in 0..s.len() {
            let (a, w, g) = (after[s.offset + i], want[i], g_flat[s.offset + i]);
            // a gradient within f32 noise of zero may take either sign (see the header)
            let tol = if g.abs() <= 1e-3 * gscale { 2.5 * lr } else { 1e-3 * lr + 1e-7 * w.abs() as f64 };
            assert!(
                (a as f64 - w as f64).abs() <= tol,
                "{name}: stepped {}[{i}]: ours {a} torch {w} (before {}, gradient {g})",
                s.name,
                before[s.offset + i]
            );
        }
    }
    eprintln!("{name}: the critic's optimizer step agrees");

    // Generator iteration against the updated critic.
    let mut t = Tape::new(be);
    let z = t.constant(f.tensor(&be, "z_gen"));
    let gp = gen.param_leaves(&mut t);
    let cp = critic.param_consts(&mut t);
    let x = gen.forward_train(&mut t, &gp, z);
    let d = critic.net.forward(&mut t, &cp, x, BatchNormMode::Train(None));
    let lg = generator_loss(&mut t, d, kind);
    let gg = t.grad(&[lg], &gp, false);
    close(&format!("{name}: generator loss"), &t.to_f32(lg), f.get("gen_loss"), 1e-3);
    for (s, g) in gen.net.params.iter().zip(&gg) {
        // against a critic one optimizer step apart in f32 rounding: 1e-3
        close(&format!("{name}: ∂loss_G/∂{}", s.name), &t.to_f32(*g), f.get(&format!("grad.G.{}", s.name)), 1e-3);
    }
}

#[test]
fn toy_wgan_gp_step_matches_pytorch() {
    run_case("toy_gp", toy_generator_with(2, 16), toy_critic_with(16));
}

#[test]
fn toy_wgan_clip_step_matches_pytorch() {
    run_case("toy_clip", toy_generator_with(2, 16), toy_critic_with(16));
}

#[test]
fn toy_nsgan_step_matches_pytorch() {
    run_case("toy_nsgan", toy_generator_with(2, 16), toy_critic_with(16));
}

#[test]
fn dcgan28_layer_norm_wgan_gp_step_matches_pytorch() {
    run_case("dcgan28_gp", dcgan_generator(28, 1, 4, 8).unwrap(), dcgan_critic(28, 1, 4, CriticNorm::Layer).unwrap());
}

/// Several whole generator steps of the trainer itself (`Gan::train_step`: 5 critic iterations and
/// one generator iteration each, the optimizers' state and step count carried across 20 critic and 4
/// generator updates), against PyTorch fed the same draws. A single step cannot see Adam's betas (its first
/// update is ±lr whatever they are), RMSprop's square average, the clamp's interplay with the
/// updates, the order of the draws, or which batch each iteration takes.
#[test]
fn toy_wgan_gp_training_steps_match_pytorch() {
    run_steps_case("toy_gp_steps");
}

/// The same for WGAN with weight clipping: RMSprop on both networks, the critic clamped before its
/// first iteration (`Gan::new`, as the WGAN code) and after every update (fused into RMSprop).
#[test]
fn toy_wgan_clip_training_steps_match_pytorch() {
    run_steps_case("toy_clip_steps");
}

fn run_steps_case(name: &str) {
    use wgan::train::gan::{Gan, StepConfig};
    let be = Be::new();
    let f = Fixture::load(name);
    let (batch, gen_steps, n_critic) =
        (f.hyper("batch") as usize, f.hyper("gen_steps") as usize, f.hyper("n_critic") as usize);
    let lr = f.hyper("lr");
    let (loss, opt_g, opt_d) = match f.meta["loss"].as_str() {
        "wgan-gp" => {
            let (b1, b2) = f.betas();
            let adam = OptimKind::Adam { lr, beta1: b1, beta2: b2, eps: OPTIM_EPS };
            (LossKind::WganGp { lambda: f.hyper("lambda"), penalty: PenaltyKind::TwoSided }, adam, adam)
        }
        "wgan" => {
            let (alpha, clip) = (f.hyper("alpha"), f.hyper("clip"));
            let rms = |clip| OptimKind::RmsProp { lr, alpha, eps: OPTIM_EPS, clip };
            (LossKind::Wgan { clip }, rms(None), rms(Some(clip)))
        }
        other => panic!("{name}: unknown loss {other}"),
    };
    let cfg = StepConfig { loss, n_critic, wgan_schedule: false, batch, nz: 2, seed: f.hyper("seed") as u64 };
    let mut gan = Gan::new(be, cfg, toy_generator_with(2, 16), toy_critic_with(16), opt_g, opt_d);
    gan.gen = f.model(&be, "G", toy_generator_with(2, 16));
    gan.critic = f.model(&be, "D", toy_critic_with(16));
    if let LossKind::Wgan { clip } = loss {
        // what `Gan::new` does to its own fresh critic, for the fixture's
        be.clamp_inplace(&gan.critic.params, clip);
    }

    // The fixture's draws are the crate's own: check the port before trusting the rest.
    let z = be.to_f32(&be.randn(&[batch, 2], cfg.seed, wgan::train::gan::STREAM_DRAWS));
    close("first noise draw (Philox port)", &z, f.get("z_first"), 1e-6);
    if matches!(loss, LossKind::WganGp { .. }) {
        let eps = be.to_f32(&be.rand_uniform(&[batch], cfg.seed, wgan::train::gan::STREAM_DRAWS + 1));
        close("first ε draw (Philox port)", &eps, f.get("eps_first"), 0.0);
    }

    let reals = f.get("reals").to_vec();
    let mut next = 0;
    for step in 0..gen_steps {
        let stats = gan.train_step(|| {
            let r = be.from_f32(&reals[next * batch * 2..(next + 1) * batch * 2], &[batch, 2]);
            next += 1;
            r
        });
        let v = stats.read(&be);
        close(
            &format!("step {step}: critic loss"),
            &[v.critic_loss as f32],
            f.get(&format!("critic_loss.{step}")),
            1e-3,
        );
        close(&format!("step {step}: generator loss"), &[v.gen_loss as f32], f.get(&format!("gen_loss.{step}")), 1e-3);
    }
    assert_eq!(next, gen_steps * n_critic, "one real batch per critic iteration");

    // Every weight after 4 steps, in units of lr. f32 rounding moves a weight by ~1e-4·lr per
    // update; a gradient within rounding of zero may flip an update's sign (up to 2·lr once), so
    // a handful of weights may differ by a few lr, and almost all must agree to 1 % of lr. Wrong
    // betas or alpha, a swapped draw, a reused batch or a missed clamp move most weights by tenths
    // of lr or more.
    for (role, model) in [("G", &gan.gen), ("D", &gan.critic)] {
        let ours = be.to_f32(&model.params);
        let (mut worst, mut loose, mut n) = (0f64, 0usize, 0usize);
        for s in &model.net.params {
            let want = f.get(&format!("final.{role}.{}", s.name));
            for (i, w) in want.iter().enumerate() {
                let d = (ours[s.offset + i] as f64 - *w as f64).abs() / lr;
                worst = worst.max(d);
                loose += (d > 1e-2) as usize;
                n += 1;
            }
        }
        eprintln!("{name} {role}: {n} weights, worst |diff| {worst:.2e}·lr, {loose} beyond 1e-2·lr");
        assert!(worst <= 8.0, "{name} {role}: a weight differs by {worst:.2}·lr after {gen_steps} steps");
        assert!(loose * 100 <= n, "{name} {role}: {loose} of {n} weights differ by more than 1e-2·lr");
    }
}
