//! The critic's real and fake batches as one pass of 2N stacked samples (`critic_on_both`, used
//! by `critic_loss` and `discriminator_loss`) give the gradients of two separate passes: on the
//! CPU in f64 to rounding, and on the CUDA backend (GPU, or the host emulator in every CI run) to
//! f32 reduction-order differences, for a DCGAN critic with layer norm and for the toy MLP, with
//! and without the penalty. Also the row ops the batching uses (`concat_rows`, `rows`,
//! `pad_rows`) against f64 finite differences, first and second order.

mod common;
mod cuda_devices;

use common::*;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::{Backend, PenaltyKind};
use wgan::nn::arch::{dcgan_critic, toy_critic_with, CriticNorm};
use wgan::nn::{BatchNormMode, Model, Net};
use wgan::tape::{Tape, Var};
use wgan::train::gan::{critic_loss, PENALTY_EPS};

#[test]
fn row_ops_pass_gradchecks() {
    let a = input(&[2, 3], uniform(6, -1.0, 1.0, 1));
    let b = input(&[3, 3], uniform(9, -1.0, 1.0, 2));
    check(
        "concat_rows",
        &|t, v| {
            let c = t.concat_rows(v[0], v[1]);
            t.mul(c, c)
        },
        &[a.clone(), b.clone()],
    );
    check(
        "rows",
        &|t, v| {
            let r = t.rows(v[0], 1, 2);
            t.mul(r, r)
        },
        &[b.clone()],
    );
    check(
        "pad_rows",
        &|t, v| {
            let p = t.pad_rows(v[0], 2, 5);
            t.mul(p, p)
        },
        &[a],
    );
}

/// The critic loss of the step before batching: D on real, fake (and x̂) as separate passes.
fn separate_passes<B: Backend>(
    t: &mut Tape<B>,
    net: &Net,
    params: &[Var],
    real: Var,
    fake: Var,
    gp: Option<(Var, f64, PenaltyKind)>,
) -> Var {
    let d_real = net.forward(t, params, real, BatchNormMode::Train(None));
    let d_fake = net.forward(t, params, fake, BatchNormMode::Train(None));
    let (m_real, m_fake) = (t.mean(d_real), t.mean(d_fake));
    let mut loss = t.sub(m_fake, m_real);
    if let Some((eps, lambda, kind)) = gp {
        let mixed = t.interpolate(real, fake, eps);
        let x_hat = t.detached_leaf(mixed);
        let d_hat = net.forward(t, params, x_hat, BatchNormMode::Train(None));
        let s = t.sum(d_hat);
        let g = t.grad(&[s], &[x_hat], true)[0];
        let p = t.penalty(g, kind, PENALTY_EPS);
        let lp = t.scale(p, lambda);
        loss = t.add(loss, lp);
    }
    loss
}

/// (loss, gradients) of the batched `critic_loss` and of the separate passes, on `be`.
fn both_ways<B: Backend>(be: &B, net: &Net, n: usize, with_gp: bool) -> [(Vec<f64>, Vec<Vec<f64>>); 2] {
    let model = Model::new(be, net.clone(), 5, 2);
    let mut shape = vec![n];
    shape.extend(&net.input);
    let len: usize = shape.iter().product();
    let real = be.from_f64(&uniform(len, -1.0, 1.0, 70), &shape);
    let fake = be.from_f64(&uniform(len, -1.0, 1.0, 71), &shape);
    let eps = be.from_f64(&uniform(n, 0.0, 1.0, 72), &[n]);
    std::array::from_fn(|k| {
        let mut t = Tape::new(be.clone());
        let params = model.param_leaves(&mut t);
        let (r, f) = (t.constant(real.clone()), t.constant(fake.clone()));
        let gp = with_gp.then(|| (t.constant(eps.clone()), 10.0, PenaltyKind::TwoSided));
        let loss = if k == 0 {
            critic_loss(&mut t, net, &params, r, f, gp).loss
        } else {
            separate_passes(&mut t, net, &params, r, f, gp)
        };
        let grads = t.grad(&[loss], &params, false);
        (t.to_f64(loss), grads.iter().map(|&g| t.to_f64(g)).collect())
    })
}

fn assert_same(what: &str, [a, b]: &[(Vec<f64>, Vec<Vec<f64>>); 2], rtol: f64) {
    let rel = |x: &[f64], y: &[f64]| {
        // A floor for gradients that cancel to 0 (the last bias under the WGAN loss: 1 − 1).
        let s = y.iter().fold(1e-4f64, |m, v| m.max(v.abs()));
        x.iter().zip(y).fold(0f64, |m, (p, q)| m.max((p - q).abs())) / s
    };
    assert!(rel(&a.0, &b.0) <= rtol, "{what}: loss {:?} batched vs {:?} separate", a.0, b.0);
    for (i, (ga, gb)) in a.1.iter().zip(&b.1).enumerate() {
        assert!(ga.iter().all(|v| v.is_finite()), "{what}: parameter {i}: non-finite gradient");
        let r = rel(ga, gb);
        assert!(r <= rtol, "{what}: parameter {i}: batched and separate gradients differ by {r:e} (relative)");
    }
}

fn critics() -> Vec<(&'static str, Net, usize)> {
    vec![
        ("dcgan28 layer norm", dcgan_critic(28, 1, 4, CriticNorm::Layer).unwrap(), 3),
        ("dcgan32 no norm", dcgan_critic(32, 3, 3, CriticNorm::None).unwrap(), 2),
        ("toy mlp", toy_critic_with(16), 5),
    ]
}

#[test]
fn batched_critic_gives_the_gradients_of_separate_passes_cpu() {
    for (name, net, n) in critics() {
        for gp in [false, true] {
            let r = both_ways(&Cpu::<f64>::new(), &net, n, gp);
            assert_same(&format!("{name} gp={gp} (cpu f64)"), &r, 1e-11);
        }
    }
}

fn batched_critic_on_cuda(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    for (name, net, n) in critics() {
        for gp in [false, true] {
            let r = both_ways(&g, &net, n, gp);
            g.check().expect("CUDA");
            assert_same(&format!("{name} gp={gp} ({on:?})"), &r, 1e-4);
            // And the batched CUDA result against the CPU reference.
            let c = both_ways(&Cpu::<f32>::new(), &net, n, gp);
            assert_same(&format!("{name} gp={gp} ({on:?} vs cpu)"), &[r[0].clone(), c[0].clone()], 1e-3);
        }
    }
}

on_gpu_and_emulator!(batched_critic_on_cuda);
