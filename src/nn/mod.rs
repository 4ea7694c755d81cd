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
    Normal { mean: f64, std: f64 },
    Const(f64),
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
    pub fn new(layers: Vec<Layer>, input: Vec<usize>) -> Net {
        let w = Init::Normal { mean: 0.0, std: 0.02 };
        let (mut params, mut buffers, mut first) = (Vec::new(), Vec::new(), Vec::new());
        let (mut po, mut bo) = (0, 0);
        for (i, layer) in layers.iter().enumerate() {
            first.push((params.len(), buffers.len()));
            let prefix = format!("main.{i}");
            let (p, b): (Vec<(&str, Vec<usize>, Init)>, Vec<(&str, Vec<usize>, Init)>) = match *layer {
                Layer::Linear { inp, out } => {
                    (vec![("weight", vec![out, inp], w), ("bias", vec![out], Init::Const(0.0))], vec![])
                }
                Layer::Conv { cin, cout, k, .. } => (vec![("weight", vec![cout, cin, k, k], w)], vec![]),
                Layer::ConvT { cin, cout, k, .. } => (vec![("weight", vec![cin, cout, k, k], w)], vec![]),
                Layer::BatchNorm { c } => (
                    vec![
                        ("weight", vec![c], Init::Normal { mean: 1.0, std: 0.02 }),
                        ("bias", vec![c], Init::Const(0.0)),
                    ],
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
        let n = t.shape(x)[0];
        let mut shape = vec![n];
        shape.extend(&self.input);
        let mut h = t.reshape(x, &shape);
        for (i, layer) in self.layers.iter().enumerate() {
            let (pi, bi) = self.first[i];
            h = match *layer {
                Layer::Linear { .. } => t.linear(h, params[pi], params[pi + 1]),
                Layer::Conv { p, .. } => t.conv2d(h, params[pi], p),
                Layer::ConvT { p, .. } => t.conv_transpose2d(h, params[pi], p),
                Layer::BatchNorm { .. } => {
                    let xh = match bn {
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
                    let y = t.group_mul(xh, params[pi], Group::Channel);
                    t.group_add(y, params[pi + 1], Group::Channel)
                }
                Layer::LayerNorm { .. } => {
                    let xh = t.normalize(h, Group::Sample, NORM_EPS);
                    let y = t.group_mul(xh, params[pi], Group::Channel);
                    t.group_add(y, params[pi + 1], Group::Channel)
                }
                Layer::Relu => t.relu(h),
                Layer::LeakyRelu(s) => t.leaky_relu(h, s),
                Layer::Tanh => t.tanh(h),
            };
        }
        h
    }
}

/// How batch-norm layers behave in a forward pass.
#[derive(Clone, Copy)]
pub enum BatchNormMode<'a, B: Backend> {
    /// Batch statistics; the running statistics in the flat buffer are updated when given.
    Train(Option<&'a B::Tensor>),
    /// Running statistics from the flat buffer.
    Eval(&'a B::Tensor),
}

/// running ← (1 − m)·running + m·batch, with the unbiased batch variance, as PyTorch does.
/// Done outside the tape: statistics carry no gradient.
fn update_running_stats<B: Backend>(t: &Tape<B>, h: Var, buffers: &B::Tensor, slots: &[Slot]) {
    let be = t.backend();
    let x = t.value(h);
    let shape = be.shape(x).to_vec();
    let m = (crate::backend::numel(&shape) / shape[1]) as f64;
    let mean = be.scale(&be.group_sum(x, Group::Channel), 1.0 / m);
    let xc = be.sub(x, &be.group_broadcast(&mean, Group::Channel, &shape));
    let var = be.scale(&be.group_sum(&be.mul(&xc, &xc), Group::Channel), 1.0 / (m - 1.0).max(1.0));
    let rm = be.view(buffers, slots[0].offset, &slots[0].shape);
    let rv = be.view(buffers, slots[1].offset, &slots[1].shape);
    be.axpby_inplace(&rm, 1.0 - BN_MOMENTUM, &mean, BN_MOMENTUM);
    be.axpby_inplace(&rv, 1.0 - BN_MOMENTUM, &var, BN_MOMENTUM);
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
