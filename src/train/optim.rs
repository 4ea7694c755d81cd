//! Optimizers over a model's flat parameter buffer, with PyTorch's semantics: one fused pass per
//! step (`Backend::adam_inplace`, `Backend::rmsprop_inplace`). Their state (Adam's m and v and step
//! count, RMSProp's square average) is part of a checkpoint, so a resumed run continues exactly.

use crate::backend::{AdamStep, Backend, RmsPropStep};

/// Which optimizer and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimKind {
    /// torch.optim.Adam(lr, betas, eps).
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64 },
    /// torch.optim.RMSprop(lr, alpha, eps); `clip` fuses WGAN's weight clamp into the step.
    RmsProp { lr: f64, alpha: f64, eps: f64, clip: Option<f64> },
}

/// PyTorch's default epsilon for both optimizers.
pub const OPTIM_EPS: f64 = 1e-8;
/// PyTorch's default RMSProp smoothing constant.
pub const RMSPROP_ALPHA: f64 = 0.99;

pub struct Optimizer<B: Backend> {
    pub kind: OptimKind,
    /// Adam's first moment (unused by RMSProp: a one-element placeholder).
    pub m: B::Tensor,
    /// Adam's second moment, or RMSProp's square average.
    pub v: B::Tensor,
    /// Steps taken (Adam's bias correction uses t + 1 for the next step).
    pub t: u64,
}

impl<B: Backend> Optimizer<B> {
    pub fn new(be: &B, kind: OptimKind, num_params: usize) -> Self {
        let m_len = if matches!(kind, OptimKind::Adam { .. }) { num_params } else { 1 };
        Optimizer { kind, m: be.fill(&[m_len], 0.0), v: be.fill(&[num_params], 0.0), t: 0 }
    }

    /// One update of `params` from `grads` (flat buffers of the same length).
    pub fn step(&mut self, be: &B, params: &B::Tensor, grads: &B::Tensor) {
        self.t += 1;
        match self.kind {
            OptimKind::Adam { lr, beta1, beta2, eps } => {
                be.adam_inplace(params, grads, &self.m, &self.v, AdamStep { lr, beta1, beta2, eps, t: self.t })
            }
            OptimKind::RmsProp { lr, alpha, eps, clip } => {
                be.rmsprop_inplace(params, grads, &self.v, RmsPropStep { lr, alpha, eps, clip })
            }
        }
    }

    /// As `step`, with Adam's step count read and advanced on the device (`t_dev` holds the same
    /// count as `self.t`): the form a step captured into a graph replays correctly.
    pub fn step_at(&mut self, be: &B, params: &B::Tensor, grads: &B::Tensor, t_dev: &B::Counter) {
        self.t += 1;
        match self.kind {
            OptimKind::Adam { lr, beta1, beta2, eps } => be.adam_at_inplace(
                params,
                grads,
                &self.m,
                &self.v,
                AdamStep { lr, beta1, beta2, eps, t: self.t },
                t_dev,
            ),
            OptimKind::RmsProp { lr, alpha, eps, clip } => {
                be.rmsprop_inplace(params, grads, &self.v, RmsPropStep { lr, alpha, eps, clip })
            }
        }
    }

    /// Names under which the state is checkpointed (prefixed by the model's role).
    pub fn state_tensors(&self, be: &B) -> Vec<(&'static str, Vec<f32>)> {
        match self.kind {
            OptimKind::Adam { .. } => vec![("exp_avg", be.to_f32(&self.m)), ("exp_avg_sq", be.to_f32(&self.v))],
            OptimKind::RmsProp { .. } => vec![("square_avg", be.to_f32(&self.v))],
        }
    }

    /// Restores the state saved by `state_tensors`; `get` looks a tensor up by name.
    pub fn load_state(
        &mut self,
        be: &B,
        t: u64,
        mut get: impl FnMut(&str) -> crate::Result<Vec<f32>>,
    ) -> crate::Result<()> {
        let n = be.shape(&self.v)[0];
        let check = |name: &str, v: Vec<f32>| -> crate::Result<Vec<f32>> {
            if v.len() != n {
                crate::bail!("optimizer state {name} has {} values, expected {n}", v.len());
            }
            Ok(v)
        };
        match self.kind {
            OptimKind::Adam { .. } => {
                self.m = be.from_f32(&check("exp_avg", get("exp_avg")?)?, &[n]);
                self.v = be.from_f32(&check("exp_avg_sq", get("exp_avg_sq")?)?, &[n]);
            }
            OptimKind::RmsProp { .. } => self.v = be.from_f32(&check("square_avg", get("square_avg")?)?, &[n]),
        }
        self.t = t;
        Ok(())
    }
}
