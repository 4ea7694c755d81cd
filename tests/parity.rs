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
