//! The standard GAN's pieces on the CPU reference: `sigmoid` and `sigmoid_cross_entropy` against
//! closed forms (including logits large enough to overflow a naive formula), their tape rules
//! against f64 finite differences (first and second order), the whole discriminator and generator
//! losses likewise, and `--loss gan|nsgan` training on 8 gaussians.

mod common;
use common::*;
use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::nn::arch::toy_critic_with;
use wgan::tape::Var;
use wgan::train::gan::{discriminator_loss, generator_loss, LossKind};
use wgan::train::{DatasetKind, Loss, TrainOptions};

/// −z·ln σ(x) − (1 − z)·ln(1 − σ(x)) in f64 the long way, for moderate x only.
fn bce_naive(x: f64, z: f64) -> f64 {
    let s = 1.0 / (1.0 + (-x).exp());
    -z * s.ln() - (1.0 - z) * (1.0 - s).ln()
}

#[test]
fn values_match_closed_forms() {
    let be = be64();
    let xs = [-7.5, -2.0, -0.3, 0.0, 0.4, 1.0, 6.0];
    let x = be.from_f64(&xs, &[xs.len()]);
    let s = be.to_f64(&be.sigmoid(&x));
    for (&x, &s) in xs.iter().zip(&s) {
        assert!((s - 1.0 / (1.0 + (-x).exp())).abs() < 1e-15, "sigmoid({x}) = {s}");
    }
    for z in [0.0, 1.0, 0.25] {
        let l = be.to_f64(&be.sigmoid_cross_entropy(&x, z));
        for (&x, &l) in xs.iter().zip(&l) {
            let want = bce_naive(x, z);
            assert!((l - want).abs() < 1e-12 * want.abs().max(1.0), "bce({x}, {z}) = {l}, want {want}");
        }
    }
    // ln 2 at x = 0 for either label.
    let l0 = be.to_f64(&be.sigmoid_cross_entropy(&be.from_f64(&[0.0], &[1]), 1.0))[0];
    assert!((l0 - std::f64::consts::LN_2).abs() < 1e-15);
}

#[test]
fn large_logits_stay_finite_and_accurate_in_f32() {
    // e^(−x) overflows f32 beyond x ≈ 88, and ln(1 + e^(−x)) rounds to 0 in 1 + tiny: the stable
    // form gives −x·(z − 1{x>0})-like exact answers and keeps the tiny tail.
    let be = Cpu::<f32>::new();
    let xs = [-1.0e4f32, -100.0, -30.0, 30.0, 100.0, 1.0e4];
    let x = be.from_f32(&xs, &[xs.len()]);
    let s = be.to_f32(&be.sigmoid(&x));
    assert_eq!(s[0], 0.0);
    assert_eq!(s[5], 1.0);
    assert!((s[2] - (-30f64).exp() as f32).abs() <= 1e-6 * s[2], "σ(−30) = {}", s[2]);
    let real = be.to_f32(&be.sigmoid_cross_entropy(&x, 1.0)); // softplus(−x)
    let fake = be.to_f32(&be.sigmoid_cross_entropy(&x, 0.0)); // softplus(x)
    assert!(real.iter().chain(&fake).all(|v| v.is_finite() && *v >= 0.0), "{real:?} {fake:?}");
    assert_eq!(real[0], 1.0e4);
    assert_eq!(fake[5], 1.0e4);
    assert_eq!(real[1], 100.0);
    // softplus(−30) = ln(1 + e^−30) ≈ 9.357623e−14: kept, not rounded to zero.
    let tail = (-30f64).exp().ln_1p() as f32;
    assert!((real[3] - tail).abs() <= 1e-6 * tail, "softplus(−30) = {}, want {tail}", real[3]);
    assert!((fake[2] - tail).abs() <= 1e-6 * tail);
}

#[test]
fn tape_rules_first_and_second_order() {
    let x = [input(&[3, 5], uniform(15, -4.0, 4.0, 31))];
    check("sigmoid", &|t, v| t.sigmoid(v[0]), &x);
    for z in [1.0, 0.0, 0.3] {
        check(&format!("sigmoid_cross_entropy z={z}"), &|t, v| t.sigmoid_cross_entropy(v[0], z), &x);
    }
    // Composed with another op, so the second-order check sees a non-trivial upstream gradient.
    check(
        "sigmoid_cross_entropy(x·y)",
        &|t, v| {
            let p = t.mul(v[0], v[1]);
            t.sigmoid_cross_entropy(p, 1.0)
        },
        &[x[0].clone(), input(&[3, 5], uniform(15, -1.5, 1.5, 32))],
    );
}

/// The parameters of a width-4 toy critic followed by real and fake batches, as check inputs.
fn critic_inputs() -> (wgan::nn::Net, Vec<Input>) {
    let net = toy_critic_with(4);
    let mut ins: Vec<Input> = net
        .params
        .iter()
        .enumerate()
        .map(|(k, s)| input(&s.shape, uniform(s.len(), -0.8, 0.8, 40 + k as u64)))
        .collect();
    ins.push(input(&[3, 2], uniform(6, -1.5, 1.5, 50)));
    ins.push(input(&[3, 2], uniform(6, -1.5, 1.5, 51)));
    (net, ins)
}

#[test]
fn discriminator_loss_gradients() {
    let (net, ins) = critic_inputs();
    let np = net.params.len();
    check(
        "discriminator loss (BCE real 1 + BCE fake 0) w.r.t. critic parameters and inputs",
        &|t, v: &[Var]| discriminator_loss(t, &net, &v[..np], v[np], v[np + 1]).loss,
        &ins,
    );
}

#[test]
fn generator_losses_gradients() {
    let (net, ins) = critic_inputs();
    let np = net.params.len();
    for ns in [false, true] {
        check(
            &format!("generator loss, non_saturating {ns}"),
            &|t, v: &[Var]| {
                let d = net.forward(t, &v[..np], v[np + 1], wgan::nn::BatchNormMode::Train(None));
                generator_loss(t, d, LossKind::Gan { non_saturating: ns })
            },
            &ins,
        );
    }
}

#[test]
fn generator_losses_are_the_textbook_ones() {
    // minimax: log(1 − σ(d)); non-saturating: −log σ(d); WGAN: −d (means over the batch).
    let be = be64();
    let ds = [-2.0, 0.5, 3.0];
    let mut t = wgan::tape::Tape::new(be);
    let d = t.constant(be.from_f64(&ds, &[3, 1]));
    let mean = |f: &dyn Fn(f64) -> f64| ds.iter().map(|&d| f(d)).sum::<f64>() / 3.0;
    let sig = |d: f64| 1.0 / (1.0 + (-d).exp());
    let mm = generator_loss(&mut t, d, LossKind::Gan { non_saturating: false });
    let ns = generator_loss(&mut t, d, LossKind::Gan { non_saturating: true });
    assert!((t.to_f64(mm)[0] - mean(&|d| (1.0 - sig(d)).ln())).abs() < 1e-12);
    assert!((t.to_f64(ns)[0] - mean(&|d| -sig(d).ln())).abs() < 1e-12);
}

#[test]
fn gan_defaults_are_resolved_and_recorded() {
    for (loss, name) in [(Loss::Gan, "gan"), (Loss::NsGan, "nsgan")] {
        let toy = TrainOptions { dataset: Some(DatasetKind::EightGaussians), loss: Some(loss), ..Default::default() }
            .resolve()
            .unwrap();
        assert_eq!((toy.n_critic, toy.lr, toy.betas), (1, 1e-4, (0.5, 0.9)), "{name} on toy data");
        let img = TrainOptions { loss: Some(loss), ..Default::default() }.resolve().unwrap();
        assert_eq!((img.n_critic, img.lr, img.betas), (1, 2e-4, (0.5, 0.999)), "{name} on images");
        let json = serde_json::to_value(&toy).unwrap();
        assert_eq!(json["loss"], name);
        assert_eq!(json["init"], "pytorch");
        assert_eq!(json["critic_norm"], "none");
        assert_eq!(serde_json::to_value(&img).unwrap()["init"], "dcgan");
    }
}

#[test]
fn nsgan_and_gan_train_on_8_gaussians() {
    // A short run at width 64: the discriminator learns (its loss falls below ln 4, the value at
    // D = ½ everywhere) and every value stays finite.
    let be = Cpu::<f32>::new();
    for loss in [Loss::NsGan, Loss::Gan] {
        let cfg = TrainOptions {
            dataset: Some(DatasetKind::EightGaussians),
            loss: Some(loss),
            width: Some(64),
            seed: Some(3),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut gan = cfg.build(be).unwrap();
        let mut src = wgan::train::run::Source::open(&cfg, 0).unwrap();
        let mut last = None;
        for _ in 0..60 {
            let v = gan.train_step(|| src.next(&be, cfg.batch_size)).read(&be);
            assert!(v.critic_loss.is_finite() && v.gen_loss.is_finite(), "{loss:?}: {v:?}");
            last = Some(v);
        }
        let v = last.unwrap();
        assert!(v.critic_loss < 4f64.ln(), "{loss:?}: discriminator loss {} after 60 steps", v.critic_loss);
        assert!(v.penalty.is_none());
    }
}
