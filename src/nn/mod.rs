//! Layers, networks and their parameters.
//!
//! A network is a `Sequential` list of layers, named like PyTorch's `nn.Sequential` held in a
//! `main` attribute (`main.0.weight`, `main.1.running_mean`, …), so checkpoints load into the
//! matching PyTorch modules (`benches/reference/wgan_torch.py`). All parameters of a model live in
//! one flat buffer and so do their gradients, so an optimizer step or a weight clamp is one pass.

pub mod arch;
mod model;

pub use model::Model;

use crate::backend::{Backend, ConvParams, Group};
use crate::tape::{Tape, Var};

/// Batch norm and layer norm epsilon (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;
/// Batch norm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// y = x·Wᵀ + b, W [out, in].
    Linear {
        inp: usize,
        out: usize,
    },
    /// Conv2d without bias, W [cout, cin, k, k].
    Conv {
        cin: usize,
        cout: usize,
        k: usize,
        p: ConvParams,
    },
    /// ConvTranspose2d without bias, W [cin, cout, k, k].
    ConvT {
        cin: usize,
        cout: usize,
        k: usize,
        p: ConvParams,
    },
    /// BatchNorm2d: batch statistics in training, running statistics in eval.
    BatchNorm {
        c: usize,
    },
    /// Layer norm over (C,H,W) per sample with per-channel scale and offset (PyTorch GroupNorm(1, C)).
    LayerNorm {
        c: usize,
    },
    Relu,
    LeakyRelu(f64),
    Tanh,
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Normal {
        mean: f64,
        std: f64,
    },
    /// U(−bound, bound).
    Uniform {
        bound: f64,
    },
    Const(f64),
}

/// The initialisation rule of a network: how each layer kind's parameters start.
///
/// * `Dcgan` — Radford et al. 2015 (DCGAN), §4: "All weights were initialized from a zero-centered
///   Normal distribution with standard deviation 0.02", as the DCGAN reference code applies it
///   (`weights_init` of the PyTorch DCGAN example): Linear / Conv2d / ConvTranspose2d weights
///   N(0, 0.02), Linear biases 0, batch-norm scale N(1, 0.02) and offset 0. The rule of the image
///   models (the WGAN and WGAN-GP papers train DCGANs with it).
/// * `Pytorch` — PyTorch's module defaults (`reset_parameters` of `torch.nn.Linear` / `Conv2d` /
///   `ConvTranspose2d`): weights `kaiming_uniform_(a=√5)`, which is U(−1/√fan_in, 1/√fan_in), and
///   biases U(−1/√fan_in, 1/√fan_in); fan_in is the weight's dim 1 times the kernel area (so
///   cin·k² for Conv2d but cout·k² for ConvTranspose2d, whose weight is [cin, cout, k, k]); norm
///   scales 1 and offsets 0. The rule of the toy MLPs: the widely used PyTorch port of the
///   WGAN-GP paper's `gan_toy.py` builds them from plain `nn.Linear` and keeps these defaults.
///
/// Why the toy MLPs need the second: their first layer maps a 2-D point x to ReLU(W·x + b). With
/// b = 0 every hidden unit's kink is the line W_i·x = 0 through the origin, so all 512 units
/// split the plane along lines through one point and the first layer is positively homogeneous
/// (f(αx) = α f(x), α > 0): along any ray from the origin the whole network is linear until the
/// biases learn to move. The 8 Gaussians sit on a circle around the origin, so the critic (and
/// the generator, which maps 2-D noise the same way) must first grow biases of order the data's
/// radius (≈ 1.4) at lr 1e-4 before it can draw boundaries between modes. Biases drawn from
/// U(±1/√2) on the 2-input layer scatter those lines over the region the data occupies from the
/// first step. N(0, 0.02) weights also make the deeper layers' signals shrink by about
/// 0.02·√512 ≈ 0.45 per layer, where fan-in scaling keeps them of order one. (Measured: fan-in
/// weights with zero biases trained worse than either; see QUALITY.md.)
///
/// The paper's own TensorFlow code differs from both: `gan_toy.py` builds its hidden layers with
/// `tflib.ops.linear.Linear(..., initialization='he')` — uniform weights with standard deviation
/// √(2/fan_in) — and its output layers with the Glorot default, and every bias starts at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum InitRule {
    /// N(0, 0.02) weights, zero biases (DCGAN). Also what a configuration written before this
    /// field existed ran with, hence the serde default.
    #[default]
    #[serde(rename = "dcgan")]
    Dcgan,
    /// PyTorch's module defaults: U(±1/√fan_in) weights and biases.
    #[serde(rename = "pytorch")]
    Pytorch,
}

impl InitRule {
    pub const NAMES: &'static str = "pytorch or dcgan";

    pub fn name(self) -> &'static str {
        match self {
            InitRule::Dcgan => "dcgan",
            InitRule::Pytorch => "pytorch",
        }
    }

    /// (weight, bias) initialisation of a Linear / Conv / ConvT layer whose weight has `fan_in`
    /// inputs per output.
    fn affine(self, fan_in: usize) -> (Init, Init) {
        match self {
            InitRule::Dcgan => (Init::Normal { mean: 0.0, std: 0.02 }, Init::Const(0.0)),
            InitRule::Pytorch => {
                // kaiming_uniform_(a=√5): gain √(2/(1+a²)) = √(1/3), bound = gain·√(3/fan_in) = 1/√fan_in.
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                (Init::Uniform { bound }, Init::Uniform { bound })
            }
        }
    }

    /// Batch-norm scale initialisation.
    fn batch_norm_scale(self) -> Init {
        match self {
            InitRule::Dcgan => Init::Normal { mean: 1.0, std: 0.02 },
            InitRule::Pytorch => Init::Const(1.0),
        }
    }
}

impl std::str::FromStr for InitRule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dcgan" => Ok(InitRule::Dcgan),
            "pytorch" => Ok(InitRule::Pytorch),
            _ => Err(format!("expected {}, got {s:?}", Self::NAMES)),
        }
    }
}

impl std::fmt::Display for InitRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A named tensor inside a flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub init: Init,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A network: layers, the per-sample input shape and the layout of its flat buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    pub layers: Vec<Layer>,
    /// Per-sample input shape, e.g. [100, 1, 1] for a DCGAN generator fed z of shape [N, 100].
    pub input: Vec<usize>,
    /// Trainable parameters, in layer order.
    pub params: Vec<Slot>,
    /// Running statistics (batch norm), in layer order.
    pub buffers: Vec<Slot>,
    /// Per layer: index of its first parameter and first buffer.
    first: Vec<(usize, usize)>,
}

fn slots(list: &mut Vec<Slot>, offset: &mut usize, prefix: &str, items: &[(&str, Vec<usize>, Init)]) {
    for (name, shape, init) in items {
        list.push(Slot { name: format!("{prefix}.{name}"), shape: shape.clone(), offset: *offset, init: *init });
        *offset += shape.iter().product::<usize>();
    }
}

impl Net {
    /// A network with the `Dcgan` initialisation rule (see [`Net::with_init`]).
    pub fn new(layers: Vec<Layer>, input: Vec<usize>) -> Net {
        Net::with_rule(layers, input, InitRule::Dcgan)
    }

    /// A network whose parameters start by `rule`.
    pub fn with_rule(layers: Vec<Layer>, input: Vec<usize>, rule: InitRule) -> Net {
        let (mut params, mut buffers, mut first) = (Vec::new(), Vec::new(), Vec::new());
        let (mut po, mut bo) = (0, 0);
        for (i, layer) in layers.iter().enumerate() {
            first.push((params.len(), buffers.len()));
            let prefix = format!("main.{i}");
            let (p, b): (Vec<(&str, Vec<usize>, Init)>, Vec<(&str, Vec<usize>, Init)>) = match *layer {
                Layer::Linear { inp, out } => {
                    let (w, b) = rule.affine(inp);
                    (vec![("weight", vec![out, inp], w), ("bias", vec![out], b)], vec![])
                }
                // Bias-free (DCGAN): only the weight's rule applies.
                Layer::Conv { cin, cout, k, .. } => {
                    (vec![("weight", vec![cout, cin, k, k], rule.affine(cin * k * k).0)], vec![])
                }
                Layer::ConvT { cin, cout, k, .. } => {
                    (vec![("weight", vec![cin, cout, k, k], rule.affine(cout * k * k).0)], vec![])
                }
                Layer::BatchNorm { c } => (
                    vec![("weight", vec![c], rule.batch_norm_scale()), ("bias", vec![c], Init::Const(0.0))],
                    vec![("running_mean", vec![c], Init::Const(0.0)), ("running_var", vec![c], Init::Const(1.0))],
                ),
                Layer::LayerNorm { c } => {
                    (vec![("weight", vec![c], Init::Const(1.0)), ("bias", vec![c], Init::Const(0.0))], vec![])
                }
                Layer::Relu | Layer::LeakyRelu(_) | Layer::Tanh => (vec![], vec![]),
            };
            slots(&mut params, &mut po, &prefix, &p);
            slots(&mut buffers, &mut bo, &prefix, &b);
        }
        Net { layers, input, params, buffers, first }
    }

    /// The same network with its parameters starting by `rule` instead.
    pub fn with_init(self, rule: InitRule) -> Net {
        Net::with_rule(self.layers, self.input, rule)
    }

    pub fn num_params(&self) -> usize {
        self.params.iter().map(Slot::len).sum()
    }

    pub fn num_buffers(&self) -> usize {
        self.buffers.iter().map(Slot::len).sum()
    }

    /// Names of the batch-norm layers' `num_batches_tracked` counters (PyTorch keeps one per layer).
    pub fn batch_counters(&self) -> Vec<String> {
        (self.layers.iter().enumerate())
            .filter(|(_, l)| matches!(l, Layer::BatchNorm { .. }))
            .map(|(i, _)| format!("main.{i}.num_batches_tracked"))
            .collect()
    }

    /// Runs the network on x [N, ...input] (any shape with N·Π input elements). `params` are the
    /// parameter vars in `self.params` order. Batch norm uses `bn`: batch statistics (and, when
    /// given, running statistics updated in place) in training, running statistics in eval.
    pub fn forward<B: Backend>(&self, t: &mut Tape<B>, params: &[Var], x: Var, bn: BatchNormMode<'_, B>) -> Var {
        self.forward_parts(t, params, &[x], bn)[0]
    }

    /// Whether a sample's output depends on other samples of its batch (batch norm in training).
    pub fn couples_samples(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::BatchNorm { .. }))
    }

    /// `forward` on each of `parts`, parts of one batch along dim 0 (the critic's real and fake
    /// rows, and its x̂ rows). When the parts are adjacent rows of one buffer (as views of
    /// `Tape::critic_input`'s result are), each layer runs once over all their rows and is recorded
    /// per part (`Tape::per_sample_parts`): one launch per layer instead of one per part, while
    /// each part's backward, create-graph backward and double backward run over its own rows only.
    /// The results equal separate passes up to the order of f32 sums. A network with batch norm,
    /// which couples the samples of a batch, runs one pass per part (each with its own batch
    /// statistics).
    pub fn forward_parts<B: Backend>(
        &self,
        t: &mut Tape<B>,
        params: &[Var],
        parts: &[Var],
        bn: BatchNormMode<'_, B>,
    ) -> Vec<Var> {
        if parts.len() > 1 && self.couples_samples() {
            return parts.iter().map(|&x| self.forward(t, params, x, bn)).collect();
        }
        let mut h: Vec<Var> = parts
            .iter()
            .map(|&x| {
                let mut shape = vec![t.shape(x)[0]];
                shape.extend(&self.input);
                t.reshape(x, &shape)
            })
            .collect();
        // A norm layer's scale and offset and the (leaky) ReLU after it run as one op.
        let act_after = |i: usize| match self.layers.get(i + 1) {
            Some(Layer::Relu) => Some(0.0),
            Some(&Layer::LeakyRelu(s)) if s >= 0.0 => Some(s),
            _ => None,
        };
        let affine = |t: &mut Tape<B>, xh: Var, s: Var, b: Var, act: Option<f64>| match act {
            Some(slope) => t.group_affine_leaky_relu(xh, s, b, Group::Channel, slope),
            None => t.group_affine(xh, s, b, Group::Channel),
        };
        let mut fused_act = false;
        for (i, layer) in self.layers.iter().enumerate() {
            let (pi, bi) = self.first[i];
            if std::mem::take(&mut fused_act) {
                continue; // the activation ran with the norm layer before it
            }
            h = match *layer {
                // A Linear layer and the (leaky) ReLU after it run as one GEMM with its epilogue.
                Layer::Linear { .. } => match act_after(i) {
                    Some(slope) => {
                        fused_act = true;
                        t.per_sample_parts(&h, |t, h| t.linear_act(h, params[pi], params[pi + 1], slope))
                    }
                    None => t.per_sample_parts(&h, |t, h| t.linear(h, params[pi], params[pi + 1])),
                },
                Layer::Conv { p, .. } => t.per_sample_parts(&h, |t, h| t.conv2d(h, params[pi], p)),
                Layer::ConvT { p, .. } => t.per_sample_parts(&h, |t, h| t.conv_transpose2d(h, params[pi], p)),
                Layer::BatchNorm { .. } => {
                    let [h] = h[..] else { unreachable!("batch norm runs one part at a time") };
                    let xh = match bn {
                        // Data-parallel training: statistics over every rank's rows (src/dist/syncbn.rs).
                        BatchNormMode::Train(running) if t.synced() => {
                            let be = t.backend().clone();
                            let sl = &self.buffers[bi..bi + 2];
                            let views = running.map(|b| {
                                (be.view(b, sl[0].offset, &sl[0].shape), be.view(b, sl[1].offset, &sl[1].shape))
                            });
                            t.sync_normalize(h, NORM_EPS, views.as_ref().map(|(m, v)| (m, v, BN_MOMENTUM)))
                        }
                        BatchNormMode::Train(running) => {
                            if let Some(buffers) = running {
                                update_running_stats(t, h, buffers, &self.buffers[bi..bi + 2]);
                            }
                            t.normalize(h, Group::Channel, NORM_EPS)
                        }
                        BatchNormMode::Eval(buffers) => {
                            normalize_with_running_stats(t, h, buffers, &self.buffers[bi..bi + 2])
                        }
                    };
                    fused_act = act_after(i).is_some();
                    vec![affine(t, xh, params[pi], params[pi + 1], act_after(i))]
                }
                Layer::LayerNorm { .. } => {
                    let xh = t.per_sample_parts(&h, |t, h| t.normalize(h, Group::Sample, NORM_EPS));
                    fused_act = act_after(i).is_some();
                    t.per_sample_parts(&xh, |t, xh| affine(t, xh, params[pi], params[pi + 1], act_after(i)))
                }
                Layer::Relu => t.per_sample_parts(&h, |t, h| t.relu(h)),
                Layer::LeakyRelu(s) => t.per_sample_parts(&h, |t, h| t.leaky_relu(h, s)),
                Layer::Tanh => t.per_sample_parts(&h, |t, h| t.tanh(h)),
            };
        }
        h
    }
}

/// How batch-norm layers behave in a forward pass.
pub enum BatchNormMode<'a, B: Backend> {
    /// Batch statistics; the running statistics in the flat buffer are updated when given.
    Train(Option<&'a B::Tensor>),
    /// Running statistics from the flat buffer.
    Eval(&'a B::Tensor),
}

// By hand: a derive would ask for `B: Copy`, but only references are held.
impl<B: Backend> Clone for BatchNormMode<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for BatchNormMode<'_, B> {}

/// running ← (1 − m)·running + m·batch, with the unbiased batch variance, as PyTorch does: one
/// fused op (`Backend::batch_norm_running_update`). Done outside the tape: statistics carry no
/// gradient.
fn update_running_stats<B: Backend>(t: &Tape<B>, h: Var, buffers: &B::Tensor, slots: &[Slot]) {
    let be = t.backend();
    let rm = be.view(buffers, slots[0].offset, &slots[0].shape);
    let rv = be.view(buffers, slots[1].offset, &slots[1].shape);
    be.batch_norm_running_update(t.value(h), &rm, &rv, BN_MOMENTUM);
}

fn normalize_with_running_stats<B: Backend>(t: &mut Tape<B>, h: Var, buffers: &B::Tensor, slots: &[Slot]) -> Var {
    let be = t.backend().clone();
    let rm = be.view(buffers, slots[0].offset, &slots[0].shape);
    let rv = be.view(buffers, slots[1].offset, &slots[1].shape);
    let neg_mean = t.constant(be.scale(&rm, -1.0));
    let inv_std = t.constant(be.powf(&be.add_scalar(&rv, NORM_EPS), -0.5));
    let c = t.group_add(h, neg_mean, Group::Channel);
    t.group_mul(c, inv_std, Group::Channel)
}
