//! The logistic kernels (`kernels/logistic.cu`) and a standard-GAN training step on the CUDA
//! backend against the CPU reference, on the GPU (ignored without one) and on the host emulator.
//! Outputs are poisoned with NaN first, so an unwritten element fails.
//!
//! Tolerance: 1e-5 of the largest magnitude for the two ops (expf/log1pf of a math library on
//! each side, at most a few ulp apart); the training step as tests/gpu_train.rs: at tf32/bf16
//! (`WGAN_TEST_PRECISION`) against the CPU with the products' operands rounded alike
//! (`cuda_devices::rounded`), tolerances widened by 2u (u the unit roundoff).

mod cuda_devices;

use cuda_devices::rounded::Rounded;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::{Backend, Precision};
use wgan::train::{DatasetKind, Loss, TrainOptions};

fn close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64, atol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let d = (*g as f64 - *c as f64).abs();
        assert!(g.is_finite() && d <= atol + rtol * scale, "{what}[{i}]: gpu {g} cpu {c} (scale {scale})");
    }
}

fn logistic_ops_match_cpu(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    let c = Cpu::<f32>::new();
    let mut r = wgan::rng::HostRng::new(5, 5);
    // Odd sizes (one element, one block and a bit, several blocks), logits up to ±120 so that
    // e^(−x) would overflow f32 in a naive formula, and exact zeros.
    for n in [1usize, 257, 3001] {
        let mut v: Vec<f32> = (0..n).map(|_| (r.normal() * 8.0) as f32).collect();
        v[0] = 0.0;
        if n > 4 {
            v[1] = 120.0;
            v[2] = -120.0;
            v[3] = -30.0;
            v[4] = 30.0;
        }
        let (gx, cx) = (g.from_f32(&v, &[n]), c.from_f32(&v, &[n]));
        close(&format!("sigmoid n={n}"), &g.to_f32(&g.sigmoid(&gx)), &c.to_f32(&c.sigmoid(&cx)), 1e-5, 0.0);
        for z in [0.0, 1.0, 0.3] {
            let (a, b) = (g.to_f32(&g.sigmoid_cross_entropy(&gx, z)), c.to_f32(&c.sigmoid_cross_entropy(&cx, z)));
            close(&format!("sigmoid_cross_entropy z={z} n={n}"), &a, &b, 1e-5, 0.0);
            if n > 4 {
                // the tiny tail ln(1 + e^−30) ≈ 9.4e−14 must survive on the device too (log1pf):
                // softplus(x) at x = −30 for label 0, softplus(−x) at x = 30 for label 1
                let i = if z == 0.0 { 3 } else { 4 };
                if z != 0.3 {
                    assert!(
                        a[i] > 0.0 && (a[i] - b[i]).abs() <= 1e-5 * b[i].abs(),
                        "tail z={z}: gpu {} cpu {}",
                        a[i],
                        b[i]
                    );
                }
            }
        }
    }
    if let Err(e) = g.check() {
        panic!("CUDA error: {e}");
    }
}

fn gan_steps_match_cpu(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    for loss in [Loss::Gan, Loss::NsGan] {
        let cfg = TrainOptions {
            dataset: Some(DatasetKind::EightGaussians),
            loss: Some(loss),
            width: Some(8),
            batch_size: Some(7),
            seed: Some(2),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        fn run<B: Backend>(be: B, cfg: &wgan::train::TrainConfig) -> (Vec<f32>, Vec<f32>, f64, f64) {
            let mut gan = cfg.build(be.clone()).unwrap();
            let mut src = wgan::train::run::Source::open(cfg, 0).unwrap();
            let mut v = None;
            for _ in 0..2 {
                v = Some(gan.train_step(|| src.next(&be, cfg.batch_size)).read(&be));
            }
            let v = v.unwrap();
            (be.to_f32(&gan.critic.params), be.to_f32(&gan.gen.params), v.critic_loss, v.gen_loss)
        }
        let (dc, gc, lc, lgc) = run(g.clone(), &cfg);
        let p = cuda_devices::precision();
        let (dr, gr, lr_, lgr) = run(Rounded::new(Cpu::<f32>::new(), p), &cfg);
        let wide = if p == Precision::F32 { 0.0 } else { 2.0 * p.unit_roundoff() };
        let tol = 1e-4 + wide;
        assert!((lc - lr_).abs() <= tol * lr_.abs().max(1.0), "{loss:?} discriminator loss: gpu {lc} cpu {lr_}");
        assert!((lgc - lgr).abs() <= tol * lgr.abs().max(1.0), "{loss:?} generator loss: gpu {lgc} cpu {lgr}");
        // two Adam updates: a weight whose gradient is near zero may move by ±lr either way
        let atol = 2.0 * cfg.lr * 2.0;
        close(&format!("{loss:?} critic parameters"), &dc, &dr, 1e-3 + wide, atol);
        close(&format!("{loss:?} generator parameters"), &gc, &gr, 1e-3 + wide, atol);
        if let Err(e) = g.check() {
            panic!("CUDA error: {e}");
        }
    }
}

on_gpu_and_emulator!(logistic_ops_match_cpu, gan_steps_match_cpu);

/// `wgan train --loss gan|nsgan` end to end on the emulated device: exits 0 and records what ran.
fn gan_trains_from_the_command_line(on: On) {
    if on == On::Gpu && cuda_devices::open(on).is_none() {
        return;
    }
    if on == On::Emulator && cuda_devices::open(on).is_none() {
        return;
    }
    let device = if on == On::Gpu { "cuda" } else { "emulated" };
    // one loss: the two differ only in the generator's loss, which tests/logistic.rs and
    // gan_steps_match_cpu cover; each run here pays the emulator's start-up
    for loss in ["nsgan"] {
        let dir = std::env::temp_dir().join(format!("wgan-gan-cli-{}-{loss}-{device}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgan"))
            .args(["train", "--dataset", "8gaussians", "--loss", loss, "--steps", "3", "--width", "8"])
            .args(["--batch-size", "16", "--device", device, "--sample-every", "3", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{loss}: {}", String::from_utf8_lossy(&out.stderr));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["loss"], loss);
        assert_eq!(cfg["n_critic"], 1);
        assert_eq!(cfg["init"], "pytorch");
        assert_eq!(cfg["critic_norm"], "none");
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 3, "{metrics}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

on_gpu_and_emulator!(gan_trains_from_the_command_line);
