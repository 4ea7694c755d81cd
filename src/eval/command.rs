//! `wgan eval --from RUN [--n N] [--features NET.safetensors]`: every metric of a run's samples
//! against held-out real images, beside the same metric between two disjoint real sets (the
//! floor), printed as a table and written to RUN/eval.json.

use super::features::{Embedding, FeatureNet};
use super::{compare, mnist, resize_images, Metrics};
use crate::backend::Backend;
use crate::error::{Context, Result};
use crate::rng::HostRng;
use crate::train::config::{DatasetKind, TrainConfig};
use std::path::{Path, PathBuf};

/// Philox stream of the evaluation's latent vectors (seeded with `--seed`).
pub const STREAM_EVAL_NOISE: u64 = 0x6576_616c + 1;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub from: PathBuf,
    pub n: usize,
    pub features: Option<PathBuf>,
    pub seed: u64,
}

/// The result of `wgan eval`, as written to eval.json.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub samples: usize,
    pub real_reference: String,
    pub real_floor_set: String,
    pub reference_size: usize,
    pub feature_network: String,
    pub feature_dim: usize,
    pub classes: usize,
    /// Generated samples against the reference set.
    pub metrics: Metrics,
    /// The floor set against the reference set: what a perfect generator would score.
    pub real_vs_real: Metrics,
    pub notes: Vec<String>,
    pub seed: u64,
    pub version: String,
}

/// The run folder of a `--from` path: the folder itself, or the run holding a checkpoint file.
fn run_folder(from: &Path) -> PathBuf {
    let mut p = if from.is_file() { from.parent().unwrap_or(Path::new(".")).to_path_buf() } else { from.to_path_buf() };
    // A checkpoint folder (RUN/checkpoint or RUN/checkpoint.N) reports into its run.
    while p.join("generator.safetensors").is_file() && !p.join("config.json").is_file() {
        match p.parent() {
            Some(q) if q.join("config.json").is_file() => p = q.to_path_buf(),
            _ => break,
        }
    }
    p
}

/// Picks the feature network for a run, with the reason when there is none.
fn feature_net(cfg: &TrainConfig, user: Option<&Path>) -> Result<FeatureNet> {
    if let Some(p) = user {
        return FeatureNet::load(p).context(|| "--features".to_string());
    }
    if cfg.dataset == DatasetKind::Mnist {
        return mnist::embedded_classifier();
    }
    crate::bail!(
        "no feature network for {} images: the embedded one is an MNIST classifier (28×28 grey digits). \
         Pass --features NET.safetensors, a network in the layout `wgan eval --help` describes \
         (trained on data like this run's), or export samples with `wgan sample --out DIR/` for clean-fid or torch-fidelity",
        cfg.dataset.name()
    )
}

/// Brings images of the run's shape to the network's input, or says why it cannot.
fn adapt(
    images: Vec<f32>,
    n: usize,
    c: usize,
    size: usize,
    net: &FeatureNet,
    notes: &mut Vec<String>,
    what: &str,
) -> Result<Vec<f32>> {
    let (nc, nh, nw) = net.input;
    if c != nc {
        crate::bail!(
            "{what} have {c} channel(s) and the feature network ({}) takes {nc}; use a network trained on {c}-channel images",
            net.name
        );
    }
    if size == nh && size == nw {
        return Ok(images);
    }
    if nh != nw {
        crate::bail!("{what} are {size}×{size} and the feature network ({}) takes {nh}×{nw} images", net.name);
    }
    let note = format!("{what} resized from {size}×{size} to {nh}×{nh} (bilinear) for the feature network");
    if !notes.contains(&note) {
        notes.push(note);
    }
    Ok(resize_images(&images, n, c, size, nh))
}

/// The real reference and floor sets as images the network takes, with their descriptions.
fn real_sets(
    cfg: &TrainConfig,
    net: &FeatureNet,
    n: usize,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<(Vec<f32>, Vec<f32>, usize, String, String)> {
    let embedded_mnist = cfg.dataset == DatasetKind::Mnist;
    if embedded_mnist {
        let (a, _) = mnist::embedded_subset(mnist::REFERENCE);
        let (b, _) = mnist::embedded_subset(mnist::FLOOR);
        let m = a.n;
        let a = adapt(a.pixels, m, 1, 28, net, notes, "real digits")?;
        let b = adapt(b.pixels, m, 1, 28, net, notes, "real digits")?;
        return Ok((
            a,
            b,
            m,
            format!(
                "embedded MNIST digits {}..{} (held out from the classifier)",
                mnist::REFERENCE.start,
                mnist::REFERENCE.end
            ),
            format!("embedded MNIST digits {}..{}", mnist::FLOOR.start, mnist::FLOOR.end),
        ));
    }
    let data =
        crate::train::run::load_images(cfg).context(|| "the run's real images (for the reference sets)".to_string())?;
    if data.n < 4 {
        crate::bail!("the run's data set has {} images; at least 4 are needed for two real sets", data.n);
    }
    let m = n.min(data.n / 2);
    let mut idx: Vec<usize> = (0..data.n).collect();
    let mut rng = HostRng::new(seed, 0x7265_616c);
    for i in 0..2 * m {
        let j = i + rng.below((data.n - i) as u32) as usize;
        idx.swap(i, j);
    }
    let a = adapt(data.gather(&idx[..m]), m, data.channels, data.height, net, notes, "real images")?;
    let b = adapt(data.gather(&idx[m..2 * m]), m, data.channels, data.height, net, notes, "real images")?;
    let src = cfg.data.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    Ok((a, b, m, format!("{m} random images of {src}"), format!("another {m} random images of {src}, disjoint")))
}

/// Runs `wgan eval`: loads the generator, draws `n` samples, computes every metric and its floor,
/// and writes eval.json into the run folder.
pub fn eval_run<B: Backend>(be: &B, o: &EvalOptions) -> Result<(EvalReport, PathBuf)> {
    if o.n < 10 {
        crate::bail!("--n {}: expected at least 10 samples (the metrics need a few per class)", o.n);
    }
    let (cfg, gen) = crate::train::snapshot::load_generator(be, &o.from)?;
    if cfg.dataset.is_toy() {
        crate::bail!(
            "{}: a 2-D run ({}); its exact W1 and mode coverage are in metrics.jsonl. `wgan eval` measures image runs",
            o.from.display(),
            cfg.dataset.name()
        );
    }
    let net = feature_net(&cfg, o.features.as_deref())?;
    let mut notes = Vec::new();
    let (ra, rb, m, ref_desc, floor_desc) = real_sets(&cfg, &net, o.n, o.seed, &mut notes)?;
    let x = super::export::generate(be, &gen, cfg.nz, o.n, o.seed, STREAM_EVAL_NOISE);
    let x = adapt(x, o.n, cfg.channels, cfg.image_size, &net, &mut notes, "samples")?;
    if o.n != m {
        notes.push(format!(
            "the floor compares {m} real images with {m}; FID and KID are biased by set size, so compare samples and floor at --n {m}"
        ));
    }
    let embed = |imgs: &[f32], k: usize| -> Embedding { net.embed(be, imgs, k) };
    let (es, ea, eb) = (embed(&x, o.n), embed(&ra, m), embed(&rb, m));
    if es.feats.iter().any(|v| !v.is_finite()) {
        crate::bail!(
            "the generator's samples give non-finite features (the checkpoint holds NaN or infinite weights?)"
        );
    }
    let metrics = compare(&es, &ea, o.seed);
    let real_vs_real = compare(&eb, &ea, o.seed);
    let report = EvalReport {
        samples: o.n,
        real_reference: ref_desc,
        real_floor_set: floor_desc,
        reference_size: m,
        feature_network: match (net.name.as_str(), mnist::embedded_accuracy()) {
            (mnist::CLASSIFIER_NAME, Some(acc)) if o.features.is_none() => {
                format!("{} ({:.2} % held-out accuracy)", mnist::CLASSIFIER_NAME, 100.0 * acc)
            }
            (name, _) => name.to_string(),
        },
        feature_dim: net.feature_dim(),
        classes: net.classes(),
        metrics,
        real_vs_real,
        notes,
        seed: o.seed,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let dir = run_folder(&o.from);
    let path = dir.join("eval.json");
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    crate::fsutil::atomic_write(&path, format!("{json}\n").as_bytes())?;
    Ok((report, path))
}

/// The report as a table: metric, samples, real-vs-real floor, and which way is better.
pub fn table(r: &EvalReport) -> String {
    let (s, f) = (&r.metrics, &r.real_vs_real);
    let rows: Vec<(String, String, String, String)> = vec![
        (
            "Inception Score".into(),
            format!("{:.3}", s.inception_score),
            format!("{:.3}", f.inception_score),
            format!("higher (at most {})", s.classes),
        ),
        ("Mode Score".into(), format!("{:.3}", s.mode_score), format!("{:.3}", f.mode_score), "higher".into()),
        ("FID".into(), format!("{:.4}", s.fid), format!("{:.4}", f.fid), "lower".into()),
        (
            "KID".into(),
            format!("{:.5} ± {:.5}", s.kid, s.kid_std),
            format!("{:.5} ± {:.5}", f.kid, f.kid_std),
            "lower".into(),
        ),
        (
            "1-NN accuracy".into(),
            format!("{:.4}", s.one_nn_accuracy),
            format!("{:.4}", f.one_nn_accuracy),
            "closer to 0.5".into(),
        ),
        (
            "classes covered (≥ 2 %)".into(),
            format!("{}/{}", s.classes_covered, s.classes),
            format!("{}/{}", f.classes_covered, f.classes),
            "higher".into(),
        ),
        ("class histogram KL".into(), format!("{:.4}", s.class_kl), format!("{:.4}", f.class_kl), "lower".into()),
    ];
    let head = (
        "metric".to_string(),
        format!("samples (n={})", r.samples),
        format!("real vs real (n={})", r.reference_size),
        "better".to_string(),
    );
    let w0 = rows.iter().chain([&head]).map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().chain([&head]).map(|r| r.1.chars().count()).max().unwrap_or(0);
    let w2 = rows.iter().chain([&head]).map(|r| r.2.chars().count()).max().unwrap_or(0);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out = format!("features: {} ({} features, {} classes)\n", r.feature_network, r.feature_dim, r.classes);
    out += &format!("reference: {}\nfloor set: {}\n\n", r.real_reference, r.real_floor_set);
    for row in std::iter::once(&head).chain(&rows) {
        out += &format!("{}  {}  {}  {}\n", pad(&row.0, w0), pad(&row.1, w1), pad(&row.2, w2), row.3);
    }
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    out
}
