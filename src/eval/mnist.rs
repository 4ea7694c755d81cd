//! The MNIST classifier that stands in for Inception: its architecture, its training on the
//! embedded digits (with our own tape and backends), and the weights embedded in the binary.
//!
//! Split of the 10,000 embedded digits (`data/mnist10k`, shuffled with a fixed seed upstream):
//! - 0..8000: the classifier's training set;
//! - 8000..10000: held out from the classifier. Its test accuracy is measured on all 2,000; for
//!   `wgan eval`, 8000..9000 is the real reference set and 9000..10000 the second, disjoint real
//!   set that gives each metric's real-vs-real floor.
//!
//! The GAN itself trains on all 10,000 embedded digits: "held out" is with respect to the feature
//! network, as Inception's training set is disjoint from the images FID is usually computed on.

use super::features::{FeatureNet, LayerKind};
use crate::backend::{AdamStep, Backend};
use crate::data::{embedded_mnist, ImageDataset};
use crate::error::{Context, Result};
use crate::rng::HostRng;
use crate::tape::{Tape, Var};
use std::io::Read;
use std::ops::Range;

/// The classifier's training digits.
pub const TRAIN: Range<usize> = 0..8000;
/// Held-out digits: the classifier's test set.
pub const HELD_OUT: Range<usize> = 8000..10000;
/// The real reference set of `wgan eval` (held out).
pub const REFERENCE: Range<usize> = 8000..9000;
/// The second real set, disjoint from the reference, for the real-vs-real floors.
pub const FLOOR: Range<usize> = 9000..10000;

static EMBEDDED_LABELS_GZ: &[u8] = include_bytes!("../../data/mnist10k/labels-idx1-ubyte.gz");
/// The trained classifier (see the README for the command that reproduces it).
static EMBEDDED_CLASSIFIER: &[u8] = include_bytes!("../../data/classifier/mnist-classifier.safetensors");

/// The labels (0–9) of the 10,000 embedded digits.
pub fn embedded_labels() -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(EMBEDDED_LABELS_GZ)
        .read_to_end(&mut raw)
        .expect("embedded MNIST labels are corrupt");
    assert!(raw.len() == 8 + 10_000 && raw[..4] == [0, 0, 8, 1], "embedded MNIST labels are corrupt");
    raw[8..].to_vec()
}

/// The architecture: three stride-2 3×3 convolutions (8, 16, 32 channels: 28 → 14 → 7 → 4), a
/// linear layer to 32 features, and a linear layer to the 10 class logits. 22,570 parameters.
pub fn classifier_layers() -> Vec<LayerKind> {
    vec![
        LayerKind::Conv { cin: 1, cout: 8, k: 3, stride: 2, pad: 1 },
        LayerKind::Conv { cin: 8, cout: 16, k: 3, stride: 2, pad: 1 },
        LayerKind::Conv { cin: 16, cout: 32, k: 3, stride: 2, pad: 1 },
        LayerKind::Linear { inp: 32 * 4 * 4, out: 32 },
        LayerKind::Linear { inp: 32, out: 10 },
    ]
}

/// The name reports give the embedded network.
pub const CLASSIFIER_NAME: &str = "embedded MNIST classifier";

/// The embedded, trained classifier.
pub fn embedded_classifier() -> Result<FeatureNet> {
    let (tensors, meta) = crate::checkpoint::parse_safetensors(EMBEDDED_CLASSIFIER, CLASSIFIER_NAME)?;
    let mut net = FeatureNet::from_tensors(&tensors, &meta, CLASSIFIER_NAME)?;
    net.name = CLASSIFIER_NAME.to_string();
    Ok(net)
}

/// The held-out test accuracy recorded in the embedded classifier's metadata.
pub fn embedded_accuracy() -> Option<f64> {
    let (_, meta) = crate::checkpoint::parse_safetensors(EMBEDDED_CLASSIFIER, CLASSIFIER_NAME).ok()?;
    meta.get("held_out_accuracy")?.parse().ok()
}

/// How the classifier is trained (the defaults made the embedded weights).
#[derive(Clone, Copy, Debug)]
pub struct ClassifierTraining {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for ClassifierTraining {
    fn default() -> Self {
        ClassifierTraining { epochs: 10, batch: 64, lr: 2e-3, seed: 0 }
    }
}

/// The images and labels at `range` of the embedded set.
pub fn embedded_subset(range: Range<usize>) -> (ImageDataset, Vec<u8>) {
    let all = embedded_mnist();
    let labels = embedded_labels();
    let idx: Vec<usize> = range.clone().collect();
    let ds = ImageDataset { n: idx.len(), channels: 1, height: 28, width: 28, pixels: all.gather(&idx) };
    (ds, labels[range].to_vec())
}

/// Accuracy of `net` on images with labels.
pub fn accuracy<B: Backend>(be: &B, net: &FeatureNet, images: &ImageDataset, labels: &[u8]) -> f64 {
    let e = net.embed(be, &images.pixels, images.n);
    let hist = e.probs.chunks_exact(e.k).zip(labels).filter(|(row, &y)| argmax(row) == y as usize).count();
    hist as f64 / labels.len() as f64
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b })
}

/// Trains the classifier on digits `TRAIN` with softmax cross-entropy and Adam (PyTorch's
/// defaults but the learning rate, halved for each of the last epochs after the fourth), batches
/// in a seeded random order each epoch, weights He-normal (std √(2/fan_in)), biases zero.
/// `log` gets one line per epoch. Returns the network and its accuracy on `HELD_OUT`.
/// Deterministic on the CPU: same seed, same weights.
pub fn train_classifier<B: Backend>(
    be: &B,
    s: &ClassifierTraining,
    mut log: impl FnMut(&str),
) -> Result<(FeatureNet, f64)> {
    let (train, train_labels) = embedded_subset(TRAIN);
    let (test, test_labels) = embedded_subset(HELD_OUT);
    let mut net = FeatureNet::new((1, 28, 28), classifier_layers(), CLASSIFIER_NAME)?;
    let mut rng = HostRng::new(s.seed, 1);
    for (i, (o, shape)) in net.slots().into_iter().enumerate() {
        let len: usize = shape.iter().product();
        if i % 2 == 0 {
            let fan_in: usize = shape[1..].iter().product();
            let std = (2.0 / fan_in as f64).sqrt();
            net.params[o..o + len].iter_mut().for_each(|p| *p = (std * rng.normal()) as f32);
        }
    }
    let slots = net.slots();
    let np = net.params.len();
    let params = be.from_f32(&net.params, &[np]);
    let grads = be.fill(&[np], 0.0);
    let (m, v) = (be.fill(&[np], 0.0), be.fill(&[np], 0.0));
    let k = net.classes();
    let mut t_step = 0u64;
    let mut order_rng = HostRng::new(s.seed, 2);
    for epoch in 0..s.epochs {
        let lr = s.lr * 0.5f64.powi(epoch.saturating_sub(3) as i32);
        let mut order: Vec<usize> = (0..train.n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, order_rng.below(i as u32 + 1) as usize);
        }
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for batch in order.chunks(s.batch) {
            let b = batch.len();
            let mut t = Tape::new(be.clone());
            let pv: Vec<Var> = slots.iter().map(|(o, sh)| t.leaf(be.view(&params, *o, sh))).collect();
            let x = t.constant(be.from_f32(&train.gather(batch), &[b, 1, 28, 28]));
            let (_, logits) = net.forward(&mut t, &pv, x);
            // Cross-entropy's gradient with respect to the logits, (softmax − onehot)/b, is
            // computed on the host; Σ logits·G (G constant) then has the loss's parameter gradients.
            let lv = t.to_f64(logits);
            let mut g = vec![0.0; b * k];
            for (r, (row, &i)) in lv.chunks_exact(k).zip(batch).enumerate() {
                let p = super::features::softmax(row);
                let y = train_labels[i] as usize;
                loss_sum -= p[y].max(1e-300).ln();
                for j in 0..k {
                    g[r * k + j] = (p[j] - if j == y { 1.0 } else { 0.0 }) / b as f64;
                }
            }
            seen += b;
            let gv = t.constant(be.from_f64(&g, &[b, k]));
            let prod = t.mul(logits, gv);
            let surrogate = t.sum(prod);
            let pairs = t.backward(surrogate);
            for ((o, _), (_, gr)) in slots.iter().zip(&pairs) {
                be.copy_into_inplace(&grads, *o, t.value(*gr));
            }
            t_step += 1;
            be.adam_inplace(&params, &grads, &m, &v, AdamStep { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: t_step });
        }
        net.params = be.to_f32(&params);
        let acc = accuracy(be, &net, &test, &test_labels);
        log(&format!(
            "epoch {}/{}: lr {lr:.2e}, train loss {:.4}, held-out accuracy {:.2} %",
            epoch + 1,
            s.epochs,
            loss_sum / seen as f64,
            100.0 * acc
        ));
    }
    be.check().context(|| "classifier training".to_string())?;
    let acc = accuracy(be, &net, &test, &test_labels);
    Ok((net, acc))
}
