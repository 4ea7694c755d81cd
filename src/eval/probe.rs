//! The scores logged while training on MNIST: Inception Score, FID and class coverage of a fixed
//! batch of samples against the held-out reference digits, in the embedded classifier's space.
//! About 1,000 generator and classifier forward passes per sample step: roughly one training
//! step's cost for the default DCGAN.

use super::features::{Embedding, FeatureNet};
use super::fid::{frechet_distance, Gaussian};
use super::{mnist, resize_images, scores};
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::Model;

/// Samples scored at each sample step.
pub const PROBE_SAMPLES: usize = 1000;
/// Philox stream of the probe's fixed noise (seeded with the run's seed).
pub const STREAM_PROBE_NOISE: u64 = 0x6576_616c; // "eval"

pub struct Probe {
    net: FeatureNet,
    real: Gaussian,
    real_hist: Vec<f64>,
    channels: usize,
    size: usize,
}

/// What the probe measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeScores {
    pub inception_score: f64,
    pub fid: f64,
    pub classes_covered: usize,
    pub class_kl: f64,
}

impl Probe {
    /// A probe for grey MNIST runs (any image size: samples are resized to 28×28); None otherwise.
    pub fn for_run(mnist_like: bool, channels: usize, size: usize) -> Result<Option<Probe>> {
        if !mnist_like || channels != 1 {
            return Ok(None);
        }
        let net = mnist::embedded_classifier()?;
        let (digits, _) = mnist::embedded_subset(mnist::REFERENCE);
        let cpu = crate::backend::cpu::Cpu::<f32>::new();
        let e = net.embed(&cpu, &digits.pixels, digits.n);
        let real = Gaussian::fit(&e.feats, e.n, e.d);
        let real_hist = scores::class_histogram(&e.probs, e.k);
        Ok(Some(Probe { net, real, real_hist, channels, size }))
    }

    /// Scores `PROBE_SAMPLES` samples of `gen` from the run's fixed probe noise. The generator runs
    /// on its backend; the classifier on the CPU (it is small, and this keeps the cost off an
    /// emulated device).
    ///
    /// On the host emulator (`--device emulated`, for tests) the generator is copied to the CPU
    /// first: running 1,000 samples through emulated kernels would cost minutes and check nothing
    /// that the sample grids do not.
    pub fn measure<B: Backend>(&self, be: &B, gen: &Model<B>, nz: usize, seed: u64) -> ProbeScores {
        let cpu = crate::backend::cpu::Cpu::<f32>::new();
        let x = if be.name().contains("host emulator") {
            let params = be.to_f32(&gen.params);
            let buffers = if gen.net.buffers.is_empty() { vec![] } else { be.to_f32(&gen.buffers) };
            let g = Model::from_host(&cpu, gen.net.clone(), &params, &buffers, gen.batches_tracked.get());
            super::export::generate(&cpu, &g, nz, PROBE_SAMPLES, seed, STREAM_PROBE_NOISE)
        } else {
            super::export::generate(be, gen, nz, PROBE_SAMPLES, seed, STREAM_PROBE_NOISE)
        };
        let x = resize_images(&x, PROBE_SAMPLES, self.channels, self.size, 28);
        let e: Embedding = self.net.embed(&cpu, &x, PROBE_SAMPLES);
        let (covered, class_kl) = scores::coverage(&scores::class_histogram(&e.probs, e.k), &self.real_hist);
        ProbeScores {
            inception_score: scores::inception_score(&e.probs, e.k),
            fid: frechet_distance(&Gaussian::fit(&e.feats, e.n, e.d), &self.real),
            classes_covered: covered,
            class_kl,
        }
    }
}

/// (step, FID) of the lines of metrics.jsonl up to step `upto` that carry an FID (a resumed run
/// keeps its curve).
pub fn read_fid_history(path: &std::path::Path, upto: u64) -> Vec<(u64, f64)> {
    let Ok(text) = std::fs::read_to_string(path) else { return vec![] };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["fid"].as_f64()?)))
        .filter(|&(s, _)| s <= upto)
        .collect()
}

/// Adds the probe's scores to a metrics.jsonl line.
pub fn record(line: &mut serde_json::Value, s: &ProbeScores) {
    line["inception_score"] = s.inception_score.into();
    line["fid"] = s.fid.into();
    line["classes_covered"] = s.classes_covered.into();
    line["class_kl"] = s.class_kl.into();
}

/// loss.png with a second panel: the Wasserstein estimate above, the FID (embedded classifier,
/// `PROBE_SAMPLES` samples against the held-out digits) below, on the same step axis.
pub fn loss_and_fid_plot(path: &std::path::Path, wdist: &[(u64, f64)], fid: &[(u64, f64)]) -> Result<()> {
    use crate::plot::{canvas::Canvas, line_plot_canvas, LINE_PLOT_SIZE};
    let (w, h) = LINE_PLOT_SIZE;
    let pts = |v: &[(u64, f64)]| -> Vec<(f64, f64)> { v.iter().map(|&(s, y)| (s as f64, y)).collect() };
    let top = line_plot_canvas(
        &[("Wasserstein estimate", pts(wdist))],
        "Wasserstein estimate (critic) over generator steps",
        (w, h),
    );
    let title = format!("FID ({PROBE_SAMPLES} samples vs held-out digits) over generator steps");
    let bottom = line_plot_canvas(&[("FID (embedded MNIST classifier)", pts(fid))], &title, (w, h * 3 / 4));
    let mut cv = Canvas::new(w, top.height + bottom.height, crate::plot::canvas::WHITE);
    cv.px[..top.px.len()].copy_from_slice(&top.px);
    cv.px[top.px.len()..].copy_from_slice(&bottom.px);
    cv.save_png(path)
}
