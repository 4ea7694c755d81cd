//! A small DCGAN trained with WGAN-GP on the embedded MNIST digits, on the CPU: the Wasserstein
//! estimate falls from its peak and the samples move away from noise towards the data: the mean
//! generated image (per pixel position) comes to correlate with the mean digit, whose bright
//! central stroke area and dark border noise lacks.

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::train::gan::STREAM_FIXED_NOISE;
use wgan::train::run::{load_images, Source};
use wgan::train::TrainOptions;

/// The mean image (per pixel position) of a batch of 28×28 images.
fn mean_image(x: &[f32]) -> Vec<f64> {
    let n = x.len() / 784;
    (0..784).map(|p| (0..n).map(|i| x[i * 784 + p] as f64).sum::<f64>() / n as f64).collect()
}

/// Pearson correlation.
fn corr(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt().max(1e-30)
}

#[test]
fn dcgan_wgan_gp_on_embedded_mnist() {
    let steps = 300;
    let cfg =
        TrainOptions { steps: Some(steps), width: Some(16), batch_size: Some(64), seed: Some(3), ..Default::default() }
            .resolve()
            .unwrap();
    let be = Cpu::<f32>::new();
    let mut gan = cfg.build(be.clone()).unwrap();
    let mut source = Source::open(&cfg, 0).unwrap();
    let data = load_images(&cfg).unwrap();
    let target = mean_image(&data.pixels);
    let z = be.randn(&[256, cfg.nz], 9, STREAM_FIXED_NOISE);
    let before = corr(&mean_image(&be.to_f32(&gan.sample(&z))), &target);
    let mut w = Vec::new();
    let t0 = std::time::Instant::now();
    for _ in 0..steps {
        let v = gan.train_step(|| source.next(&be, cfg.batch_size)).read(&be);
        assert!(v.critic_loss.is_finite() && v.gen_loss.is_finite());
        w.push(v.wdist);
    }
    let after = corr(&mean_image(&be.to_f32(&gan.sample(&z))), &target);
    let smooth = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let peak = w.windows(20).map(smooth).fold(f64::MIN, f64::max);
    let end = smooth(&w[w.len() - 20..]);
    eprintln!("{steps} steps in {:.1} s; W peak {peak:.3} → end {end:.3}; correlation of the mean sample with the mean digit {before:.3} → {after:.3}", t0.elapsed().as_secs_f64());
    assert!(end < 0.7 * peak, "Wasserstein estimate did not fall: peak {peak:.3}, end {end:.3}");
    assert!(
        after > 0.6 && after > before + 0.3,
        "samples did not move towards the data: correlation {before:.3} → {after:.3}"
    );
}
