//! A small DCGAN trained with WGAN-GP on the embedded MNIST digits, on the CPU: the Wasserstein
//! estimate falls from its peak and the samples move away from noise towards the data's pixel
//! statistics (the histogram of pixel values, which for MNIST is mostly background at −1 and
//! some ink near +1).

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::train::gan::STREAM_FIXED_NOISE;
use wgan::train::run::{load_images, Source};
use wgan::train::TrainOptions;

/// 10-bin histogram of values in [−1, 1], as fractions.
fn histogram(x: &[f32]) -> [f64; 10] {
    let mut h = [0.0; 10];
    for &v in x {
        h[(((v as f64 + 1.0) / 2.0 * 10.0) as usize).min(9)] += 1.0;
    }
    h.map(|c| c / x.len() as f64)
}

fn l1(a: &[f64; 10], b: &[f64; 10]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

#[test]
fn dcgan_wgan_gp_on_embedded_mnist() {
    let steps = 300;
    let cfg = TrainOptions { steps: Some(steps), width: Some(8), batch_size: Some(32), seed: Some(3), ..Default::default() }
        .resolve()
        .unwrap();
    let be = Cpu::<f32>::new();
    let mut gan = cfg.build(be.clone()).unwrap();
    let mut source = Source::open(&cfg, 0).unwrap();
    let data = load_images(&cfg).unwrap();
    let target = histogram(&data.pixels);
    let z = be.randn(&[256, cfg.nz], 9, STREAM_FIXED_NOISE);
    let before = l1(&histogram(&be.to_f32(&gan.sample(&z))), &target);
    let mut w = Vec::new();
    let t0 = std::time::Instant::now();
    for _ in 0..steps {
        let v = gan.train_step(|| source.next(&be, cfg.batch_size)).read(&be);
        assert!(v.critic_loss.is_finite() && v.gen_loss.is_finite());
        w.push(v.wdist);
    }
    let after = l1(&histogram(&be.to_f32(&gan.sample(&z))), &target);
    let smooth = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let peak = w.windows(20).map(smooth).fold(f64::MIN, f64::max);
    let end = smooth(&w[w.len() - 20..]);
    eprintln!("{steps} steps in {:.1} s; W peak {peak:.3} → end {end:.3}; pixel-histogram L1 {before:.3} → {after:.3}", t0.elapsed().as_secs_f64());
    assert!(end < 0.7 * peak, "Wasserstein estimate did not fall: peak {peak:.3}, end {end:.3}");
    assert!(after < 0.5 * before, "samples did not approach the data's pixel statistics: {before:.3} → {after:.3}");
}
