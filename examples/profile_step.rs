//! Where a toy WGAN-GP step spends its time on the CPU: times the pieces one by one.
//!   cargo run --release --example profile_step

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::bench_util::time_ms;
use wgan::train::run::Source;
use wgan::train::{DatasetKind, TrainOptions};

fn main() {
    let be = Cpu::<f32>::new();
    let a = be.randn(&[256, 512], 1, 1);
    let w = be.randn(&[512, 512], 1, 2);
    for (ta, tb) in [(false, true), (false, false), (true, false)] {
        let (ms, _) = time_ms(3, 20, || {
            if ta {
                be.matmul(&a, &a, ta, tb);
            } else {
                be.matmul(&a, &w, ta, tb);
            }
        });
        println!(
            "matmul 256x512x512 ta={ta} tb={tb}: {ms:.3} ms = {:.1} GFLOP/s",
            2.0 * 256.0 * 512.0 * 512.0 / ms / 1e6
        );
    }
    let (ms, _) = time_ms(3, 20, || {
        be.add(&a, &a);
    });
    println!("add 256x512: {ms:.3} ms");
    let cfg = TrainOptions { dataset: Some(DatasetKind::EightGaussians), steps: Some(1), ..Default::default() }
        .resolve()
        .unwrap();
    let mut gan = cfg.build(be.clone()).unwrap();
    let mut src = Source::open(&cfg, 0).unwrap();
    let real = src.next(&be, 256);
    let (ms, _) = time_ms(2, 10, || {
        gan.critic_step(&real);
    });
    println!("critic step: {ms:.2} ms");
    let (ms, _) = time_ms(2, 10, || {
        gan.generator_step();
    });
    println!("generator step: {ms:.2} ms");
    let (ms, _) = time_ms(1, 5, || {
        gan.train_step(|| real.clone());
    });
    println!("train step (5 critic + 1 gen): {ms:.2} ms");
}
