//! Feature networks: a plain stack of convolutions and linear layers with ReLU between them, read
//! from safetensors. The last layer gives class logits (posteriors by softmax, for IS, Mode Score
//! and coverage); its input, the penultimate activations, are the features (for FID, KID, 1-NN).
//!
//! File layout (the embedded MNIST classifier uses it too, so a user's network is a drop-in):
//! - tensors `layers.{i}.weight` and `layers.{i}.bias`, F32, i = 0, 1, 2, … with no gaps;
//!   a 4-D weight [Cout, Cin, K, K] is a Conv2d (PyTorch's cross-correlation), a 2-D weight
//!   [Out, In] a Linear layer whose input is the previous activation flattened in C, H, W order;
//!   biases [Cout] or [Out];
//! - metadata `input` = "C,H,W" (the image shape the network takes, pixels in [−1, 1]);
//!   `layers.{i}.stride` and `layers.{i}.padding` for convolutions (default 1 and 0).
//!
//! ReLU follows every layer but the last. From PyTorch: `nn.Sequential` of Conv2d/ReLU/Flatten/
//! Linear, saved with the parametrised layers renumbered 0, 1, 2, … (see the README).

use crate::backend::{Backend, ConvParams, Group};
use crate::checkpoint::{read_safetensors, write_safetensors, NamedTensor};
use crate::error::Result;
use crate::tape::{Tape, Var};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Conv { cin: usize, cout: usize, k: usize, stride: usize, pad: usize },
    Linear { inp: usize, out: usize },
}

impl LayerKind {
    pub fn weight_shape(&self) -> Vec<usize> {
        match *self {
            LayerKind::Conv { cin, cout, k, .. } => vec![cout, cin, k, k],
            LayerKind::Linear { inp, out } => vec![out, inp],
        }
    }
    pub fn outputs(&self) -> usize {
        match *self {
            LayerKind::Conv { cout, .. } => cout,
            LayerKind::Linear { out, .. } => out,
        }
    }
}

/// A feature network: its layers, input shape and all parameters in one flat vector
/// (weight then bias of each layer, in order).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureNet {
    /// (C, H, W) of the images it takes.
    pub input: (usize, usize, usize),
    pub layers: Vec<LayerKind>,
    pub params: Vec<f32>,
    /// What it is, for reports: "embedded MNIST classifier" or the file name.
    pub name: String,
}

/// The activation shape after each layer: (C, H, W), with H = W = 1 after a linear layer.
fn shapes(
    input: (usize, usize, usize),
    layers: &[LayerKind],
) -> std::result::Result<Vec<(usize, usize, usize)>, String> {
    let mut s = input;
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        s = match *l {
            LayerKind::Conv { cin, cout, k, stride, pad } => {
                if cin != s.0 {
                    return Err(format!("layer {i}: a convolution over {cin} channels after {} channels", s.0));
                }
                if s.1 + 2 * pad < k || s.2 + 2 * pad < k || stride == 0 {
                    return Err(format!("layer {i}: a {k}×{k} convolution does not fit a {}×{} input", s.1, s.2));
                }
                let p = ConvParams::new(stride, pad);
                (cout, p.out_size(s.1, k), p.out_size(s.2, k))
            }
            LayerKind::Linear { inp, out } => {
                if inp != s.0 * s.1 * s.2 {
                    return Err(format!(
                        "layer {i}: a linear layer over {inp} inputs after an activation of {}×{}×{} = {}",
                        s.0,
                        s.1,
                        s.2,
                        s.0 * s.1 * s.2
                    ));
                }
                (out, 1, 1)
            }
        };
        out.push(s);
    }
    Ok(out)
}

impl FeatureNet {
    /// A network of `layers` on `input`, parameters zero (fill them before use).
    pub fn new(input: (usize, usize, usize), layers: Vec<LayerKind>, name: &str) -> Result<FeatureNet> {
        if layers.len() < 2 {
            crate::bail!("a feature network needs at least two layers (features, then class logits)");
        }
        shapes(input, &layers).map_err(crate::Error)?;
        let n = layers.iter().map(|l| l.weight_shape().iter().product::<usize>() + l.outputs()).sum();
        Ok(FeatureNet { input, layers, params: vec![0.0; n], name: name.to_string() })
    }

    /// (offset, shape) of each tensor in `params`: weight, bias, weight, bias, …
    pub fn slots(&self) -> Vec<(usize, Vec<usize>)> {
        let mut o = 0;
        let mut v = Vec::new();
        for l in &self.layers {
            for shape in [l.weight_shape(), vec![l.outputs()]] {
                let len: usize = shape.iter().product();
                v.push((o, shape));
                o += len;
            }
        }
        v
    }

    /// Number of classes (outputs of the last layer).
    pub fn classes(&self) -> usize {
        self.layers.last().map(LayerKind::outputs).unwrap_or(0)
    }

    /// Length of the feature vector (the last layer's input).
    pub fn feature_dim(&self) -> usize {
        match self.layers.last() {
            Some(LayerKind::Linear { inp, .. }) => *inp,
            Some(LayerKind::Conv { cin, .. }) => *cin,
            None => 0,
        }
    }

    /// Forward on the tape: (features [N, F], logits [N, K]) for images x [N, C, H, W]. `params`
    /// are the tensors in `slots()` order.
    pub fn forward<B: Backend>(&self, t: &mut Tape<B>, params: &[Var], x: Var) -> (Var, Var) {
        let n = t.shape(x)[0];
        let mut h = x;
        let mut feat = x;
        for (i, l) in self.layers.iter().enumerate() {
            if i + 1 == self.layers.len() {
                let s = t.shape(h);
                feat = t.reshape(h, &[n, s[1..].iter().product()]);
                h = feat;
            }
            let (w, b) = (params[2 * i], params[2 * i + 1]);
            h = match *l {
                LayerKind::Conv { stride, pad, .. } => {
                    let s = t.shape(h);
                    if s.len() == 2 {
                        h = t.reshape(h, &[n, s[1], 1, 1]);
                    }
                    let y = t.conv2d(h, w, ConvParams::new(stride, pad));
                    t.group_add(y, b, Group::Channel)
                }
                LayerKind::Linear { .. } => {
                    let s = t.shape(h);
                    let flat = t.reshape(h, &[n, s[1..].iter().product()]);
                    t.linear(flat, w, b)
                }
            };
            if i + 1 < self.layers.len() {
                h = t.relu(h);
            }
        }
        let s = t.shape(h);
        let logits = t.reshape(h, &[n, s[1..].iter().product()]);
        (feat, logits)
    }

    /// Features and class posteriors (softmax of the logits) of images (NCHW f32 in [−1, 1]) on
    /// `be`, in batches of 250, in f64 on the host.
    pub fn embed<B: Backend>(&self, be: &B, images: &[f32], n: usize) -> Embedding {
        let (c, h, w) = self.input;
        let len = c * h * w;
        assert_eq!(images.len(), n * len, "embed: images do not match the network's input");
        let (f, k) = (self.feature_dim(), self.classes());
        let mut out = Embedding { n, d: f, k, feats: Vec::with_capacity(n * f), probs: Vec::with_capacity(n * k) };
        let p = be.from_f32(&self.params, &[self.params.len()]);
        for start in (0..n).step_by(250) {
            let m = (n - start).min(250);
            let mut t = Tape::new(be.clone());
            t.set_grad_enabled(false);
            let params: Vec<Var> = self.slots().into_iter().map(|(o, s)| t.constant(be.view(&p, o, &s))).collect();
            let x = t.constant(be.from_f32(&images[start * len..(start + m) * len], &[m, c, h, w]));
            let (fv, lv) = self.forward(&mut t, &params, x);
            out.feats.extend(t.to_f64(fv));
            for row in t.to_f64(lv).chunks_exact(k) {
                out.probs.extend(softmax(row));
            }
        }
        out
    }

    /// Reads a feature network in the layout above, with errors that name the file and the tensor.
    pub fn load(path: &Path) -> Result<FeatureNet> {
        let (tensors, meta) = read_safetensors(path)?;
        let name = path.display().to_string();
        Self::from_tensors(&tensors, &meta, &name)
    }

    /// Builds a network from named tensors and metadata (`what` names the source in errors).
    pub fn from_tensors(tensors: &[NamedTensor], meta: &BTreeMap<String, String>, what: &str) -> Result<FeatureNet> {
        let layout = "expected tensors layers.0.weight, layers.0.bias, layers.1.weight, … (see `wgan eval --help`)";
        let input = meta.get("input").ok_or_else(|| {
            crate::Error(format!("{what}: no \"input\" metadata (expected \"C,H,W\", e.g. \"1,28,28\"); {layout}"))
        })?;
        let dims: Vec<usize> = input.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        let [c, h, w] = dims[..] else {
            crate::bail!("{what}: metadata input = {input:?}; expected \"C,H,W\", e.g. \"1,28,28\"");
        };
        let get = |n: &str| tensors.iter().find(|t| t.name == n);
        let mut layers = Vec::new();
        let mut values = Vec::new();
        for i in 0.. {
            let Some(wt) = get(&format!("layers.{i}.weight")) else { break };
            let bname = format!("layers.{i}.bias");
            let bt = get(&bname).ok_or_else(|| crate::Error(format!("{what}: layers.{i}.weight has no {bname}")))?;
            let (Some(wv), Some(bv)) = (wt.as_f32(), bt.as_f32()) else {
                crate::bail!("{what}: layer {i}: expected F32 tensors");
            };
            let num = |key: &str, default: usize| -> Result<usize> {
                match meta.get(&format!("layers.{i}.{key}")) {
                    None => Ok(default),
                    Some(s) => s.trim().parse().map_err(|_| {
                        crate::Error(format!("{what}: metadata layers.{i}.{key} = {s:?}; expected a whole number"))
                    }),
                }
            };
            let kind = match wt.shape[..] {
                [cout, cin, k, k2] if k == k2 => {
                    LayerKind::Conv { cin, cout, k, stride: num("stride", 1)?, pad: num("padding", 0)? }
                }
                [out, inp] => LayerKind::Linear { inp, out },
                _ => crate::bail!(
                    "{what}: layers.{i}.weight has shape {:?}; expected [Cout, Cin, K, K] (conv) or [Out, In] (linear)",
                    wt.shape
                ),
            };
            if bt.shape != [kind.outputs()] {
                crate::bail!("{what}: {bname} has shape {:?}; expected [{}]", bt.shape, kind.outputs());
            }
            layers.push(kind);
            values.extend_from_slice(wv);
            values.extend_from_slice(bv);
        }
        if layers.is_empty() {
            crate::bail!("{what}: no layers.0.weight; {layout}");
        }
        if let Some(extra) = tensors.iter().find(|t| {
            !t.name
                .strip_prefix("layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|s| s.parse::<usize>().ok())
                .is_some_and(|j| j < layers.len())
        }) {
            crate::bail!("{what}: unexpected tensor {:?}; {layout}", extra.name);
        }
        let name = meta.get("name").cloned().unwrap_or_else(|| what.to_string());
        let mut net = FeatureNet::new((c, h, w), layers, &name).map_err(|e| crate::Error(format!("{what}: {e}")))?;
        net.params = values;
        Ok(net)
    }

    /// Writes the network in the layout above, atomically, with extra metadata.
    pub fn save(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut meta = extra.clone();
        let (c, h, w) = self.input;
        meta.insert("input".into(), format!("{c},{h},{w}"));
        meta.insert("name".into(), self.name.clone());
        let mut tensors = Vec::new();
        let slots = self.slots();
        for (i, l) in self.layers.iter().enumerate() {
            if let LayerKind::Conv { stride, pad, .. } = *l {
                meta.insert(format!("layers.{i}.stride"), stride.to_string());
                meta.insert(format!("layers.{i}.padding"), pad.to_string());
            }
            for (j, part) in ["weight", "bias"].iter().enumerate() {
                let (o, s) = &slots[2 * i + j];
                let len: usize = s.iter().product();
                tensors.push(NamedTensor::f32(
                    format!("layers.{i}.{part}"),
                    s.clone(),
                    self.params[*o..o + len].to_vec(),
                ));
            }
        }
        write_safetensors(path, &tensors, &meta)
    }
}

/// Numerically stable softmax of one row.
pub fn softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Features (n × d) and class posteriors (n × k) of a set of images, in f64.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub n: usize,
    pub d: usize,
    pub k: usize,
    pub feats: Vec<f64>,
    pub probs: Vec<f64>,
}

impl Embedding {
    /// Rows `a..b` as a new embedding.
    pub fn slice(&self, a: usize, b: usize) -> Embedding {
        Embedding {
            n: b - a,
            d: self.d,
            k: self.k,
            feats: self.feats[a * self.d..b * self.d].to_vec(),
            probs: self.probs[a * self.k..b * self.k].to_vec(),
        }
    }
}
