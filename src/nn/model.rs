//! A network with its state on a backend: one flat buffer of parameters, one of their gradients,
//! one of running statistics, and the batch-norm batch counter.

use super::{BatchNormMode, Init, Net, Slot};
use crate::backend::Backend;
use crate::rng::HostRng;
use crate::tape::{Tape, Var};
use std::cell::Cell;

pub struct Model<B: Backend> {
    pub net: Net,
    pub params: B::Tensor,
    pub grads: B::Tensor,
    pub buffers: B::Tensor,
    /// Batches seen in training mode (PyTorch's `num_batches_tracked`, the same for every BN layer).
    pub batches_tracked: Cell<i64>,
}

fn init_values(slots: &[Slot], total: usize, rng: &mut HostRng) -> Vec<f32> {
    let mut v = vec![0f32; total];
    for s in slots {
        for x in &mut v[s.offset..s.offset + s.len()] {
            *x = match s.init {
                Init::Normal { mean, std } => (mean + std * rng.normal()) as f32,
                Init::Uniform { bound } => (bound * (2.0 * rng.uniform() - 1.0)) as f32,
                Init::Const(c) => c as f32,
            };
        }
    }
    v
}

impl<B: Backend> Model<B> {
    /// A model with freshly initialised parameters drawn from Philox stream `stream` of `seed`.
    pub fn new(backend: &B, net: Net, seed: u64, stream: u64) -> Self {
        let mut rng = HostRng::new(seed, stream);
        let p = init_values(&net.params, net.num_params(), &mut rng);
        let b = init_values(&net.buffers, net.num_buffers(), &mut rng);
        Self::from_host(backend, net, &p, &b, 0)
    }

    /// A model from host values of its flat parameter and buffer vectors.
    pub fn from_host(backend: &B, net: Net, params: &[f32], buffers: &[f32], batches_tracked: i64) -> Self {
        assert_eq!(params.len(), net.num_params());
        assert_eq!(buffers.len(), net.num_buffers());
        Model {
            params: backend.from_f32(params, &[params.len()]),
            grads: backend.fill(&[params.len()], 0.0),
            // A model without batch norm still gets a (one-element) buffer so the field is uniform.
            buffers: if buffers.is_empty() {
                backend.fill(&[1], 0.0)
            } else {
                backend.from_f32(buffers, &[buffers.len()])
            },
            batches_tracked: Cell::new(batches_tracked),
            net,
        }
    }

    fn param_views(&self, backend: &B) -> Vec<B::Tensor> {
        self.net.params.iter().map(|s| backend.view(&self.params, s.offset, &s.shape)).collect()
    }

    /// The parameters as leaves that gradients flow to.
    pub fn param_leaves(&self, t: &mut Tape<B>) -> Vec<Var> {
        let views = self.param_views(t.backend());
        views.into_iter().map(|v| t.leaf(v)).collect()
    }

    /// The parameters as constants (the other network's step).
    pub fn param_consts(&self, t: &mut Tape<B>) -> Vec<Var> {
        let views = self.param_views(t.backend());
        views.into_iter().map(|v| t.constant(v)).collect()
    }

    /// Forward in training mode: batch statistics, running statistics updated.
    pub fn forward_train(&self, t: &mut Tape<B>, params: &[Var], x: Var) -> Var {
        if !self.net.buffers.is_empty() {
            self.batches_tracked.set(self.batches_tracked.get() + 1);
        }
        self.net.forward(t, params, x, BatchNormMode::Train(Some(&self.buffers)))
    }

    /// Forward in eval mode: running statistics.
    pub fn forward_eval(&self, t: &mut Tape<B>, params: &[Var], x: Var) -> Var {
        self.net.forward(t, params, x, BatchNormMode::Eval(&self.buffers))
    }

    /// Writes per-parameter gradients (in `net.params` order) into the flat gradient buffer.
    pub fn store_grads(&self, t: &Tape<B>, grads: &[Var]) {
        let be = t.backend();
        for (s, g) in self.net.params.iter().zip(grads) {
            be.copy_into_inplace(&self.grads, s.offset, t.value(*g));
        }
    }

    /// Host copies of (named parameters, named running statistics), for checkpoints.
    pub fn named_state(&self, backend: &B) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let p = backend.to_f32(&self.params);
        let b = if self.net.buffers.is_empty() { vec![] } else { backend.to_f32(&self.buffers) };
        let mut out = Vec::new();
        for s in &self.net.params {
            out.push((s.name.clone(), s.shape.clone(), p[s.offset..s.offset + s.len()].to_vec()));
        }
        for s in &self.net.buffers {
            out.push((s.name.clone(), s.shape.clone(), b[s.offset..s.offset + s.len()].to_vec()));
        }
        out
    }
}
