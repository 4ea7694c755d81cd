//! The tape and the training step on the GPU against the CPU reference: the double-backward
//! penalty gradient, and one full WGAN-GP and one WGAN step (critic iterations + generator step).
//! Ignored without a GPU; `WGAN_REQUIRE_GPU=1 cargo test --release -- --include-ignored` runs
//! them and fails rather than passes when no GPU is found.
//!
//! Matrix products and convolutions run at `WGAN_TEST_PRECISION` (f32 by default). At tf32 or
//! bf16 the reference is the CPU backend with the same operands rounded as the tensor cores round
//! them (`cuda_devices::rounded::Rounded`), not the plain f32 CPU: through the penalty's double
//! backward and a critic's cancelling sums, the operand rounding alone moves gradients by up to
//! ~3 % (tf32) and ~5 % (bf16) of their scale (measured on the emulator against the f32 CPU,
//! 2026-11-30), which a tolerance wide enough to admit it could not tell from a wrong fragment
//! layout; against the rounded reference the GPU agrees to ~2e-4 (tf32) and ~1.4e-3 (bf16).
//!
//! Tolerances: both sides compute in f32 with different summation orders, so values agree to a
//! relative 1e-3 of the tensor's largest magnitude. At tf32/bf16 add 2u (u the unit roundoff): an
//! operand computed in f32 on both sides, a few ulps apart, can round to neighbouring TF32/BF16
//! values on the two sides, which moves that product by up to 2u of its size (one such flip in a
//! term as large as the scale). After an optimizer step, parameters may differ by up to one step
//! size where a gradient is near zero and its sign differs (Adam's and RMSProp's first steps move
//! every weight by about ±lr whatever the gradient's size), so parameters are compared with an
//! absolute tolerance of 2·lr·(updates) on top.

mod cuda_devices;

use cuda_devices::rounded::Rounded;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::{Backend, Precision};
use wgan::tape::{Tape, Var};
use wgan::train::gan::critic_loss;
use wgan::train::{Gan, Loss, TrainConfig, TrainOptions};

fn close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64, atol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let p = cuda_devices::precision();
    let rtol = if p == Precision::F32 { rtol } else { rtol + 2.0 * p.unit_roundoff() };
    let scale = cpu.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let d = (*g as f64 - *c as f64).abs();
        assert!(g.is_finite() && d <= atol + rtol * scale, "{what}[{i}]: gpu {g} cpu {c} (scale {scale})");
    }
}

fn cfg(loss: Loss) -> TrainConfig {
    TrainOptions {
        loss: Some(loss),
        width: Some(8),
        batch_size: Some(5),
        steps: Some(1),
        seed: Some(11),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

fn batches(n: usize, len: usize) -> Vec<Vec<f32>> {
    let mut r = wgan::rng::HostRng::new(4, 4);
    (0..n).map(|_| (0..len).map(|_| (r.uniform() * 2.0 - 1.0) as f32).collect()).collect()
}

fn penalty_double_backward_matches_cpu(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    let c = Cpu::<f32>::new();
    let cfg = cfg(Loss::WganGp);
    let (_, net) = cfg.networks().unwrap();
    let shape = [5, 1, 28, 28];
    let data = batches(2, 5 * 28 * 28);
    let eps: Vec<f32> = vec![0.1, 0.5, 0.9, 0.33, 0.71];
    fn grads<B: Backend>(be: B, net: &wgan::nn::Net, data: &[Vec<f32>], eps: &[f32], shape: &[usize]) -> Vec<Vec<f32>> {
        let m = wgan::nn::Model::new(&be, net.clone(), 11, 2);
        let mut t = Tape::new(be.clone());
        let p = m.param_leaves(&mut t);
        let real = t.constant(be.from_f32(&data[0], shape));
        let fake = t.constant(be.from_f32(&data[1], shape));
        let e = t.constant(be.from_f32(eps, &[shape[0]]));
        let l = critic_loss(&mut t, net, &p, real, fake, Some((e, 10.0, wgan::backend::PenaltyKind::TwoSided)));
        let mut out = vec![t.to_f32(l.loss), t.to_f32(l.penalty.unwrap())];
        let gs: Vec<Var> = t.grad(&[l.loss], &p, false);
        out.extend(gs.iter().map(|&v| t.to_f32(v)));
        out
    }
    let a = grads(g, &net, &data, &eps, &shape);
    let b = grads(Rounded::new(c, cuda_devices::precision()), &net, &data, &eps, &shape);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        close(&format!("output {i} (loss, penalty, then gradients)"), x, y, 1e-3, 1e-6);
    }
}

fn one_step<B: Backend>(be: B, cfg: &TrainConfig, data: &[Vec<f32>]) -> (Gan<B>, Vec<f32>) {
    let mut gan = cfg.build(be.clone()).unwrap();
    let shape = [cfg.batch_size, 1, 28, 28];
    let mut k = 0;
    let reals: Vec<B::Tensor> = data.iter().map(|d| be.from_f32(d, &shape)).collect();
    // The first critic iteration's gradients, before any update has moved the two apart.
    gan.critic_step(&reals[0]);
    let first_grads = be.to_f32(&gan.critic.grads);
    gan.train_step(|| {
        k += 1;
        reals[k % reals.len()].clone()
    });
    (gan, first_grads)
}

fn compare_steps(on: On, loss: Loss) {
    let Some(g) = cuda_devices::open(on) else { return };
    let cfg = cfg(loss);
    let data = batches(6, cfg.batch_size * 28 * 28);
    let (a, ga) = one_step(g, &cfg, &data);
    let (b, gb) = one_step(Rounded::new(Cpu::<f32>::new(), cuda_devices::precision()), &cfg, &data);
    close("critic gradient of the first iteration", &ga, &gb, 1e-3, 1e-7);
    let updates = (cfg.n_critic + 1) as f64;
    let atol = 2.0 * cfg.lr * updates * if loss == Loss::Wgan { 10.0 } else { 1.0 };
    close("critic parameters after a step", &a.be.to_f32(&a.critic.params), &b.be.to_f32(&b.critic.params), 1e-3, atol);
    close("generator parameters after a step", &a.be.to_f32(&a.gen.params), &b.be.to_f32(&b.gen.params), 1e-3, atol);
    close("batch-norm running statistics", &a.be.to_f32(&a.gen.buffers), &b.be.to_f32(&b.gen.buffers), 1e-3, 1e-5);
}

fn wgan_gp_step_matches_cpu(on: On) {
    compare_steps(on, Loss::WganGp);
}

fn wgan_clip_step_matches_cpu(on: On) {
    compare_steps(on, Loss::Wgan);
}

on_gpu_and_emulator!(penalty_double_backward_matches_cpu, wgan_gp_step_matches_cpu, wgan_clip_step_matches_cpu);
