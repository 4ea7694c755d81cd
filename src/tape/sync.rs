//! Synchronised batch norm on the tape: `normalize` over Group::Channel with the statistics of
//! every rank's rows (`crate::dist::syncbn`), for data-parallel training.

use super::{Op, Tape, Var};
use crate::backend::Backend;
use crate::dist::Comm;
use std::sync::Arc;

impl<B: Backend> Tape<B> {
    /// Makes this tape's batch-norm layers (in training mode) take their statistics over every
    /// rank of `comm` (None: over this tape's rows only, the default).
    pub fn set_sync(&mut self, comm: Option<Arc<Comm>>) {
        self.sync = comm.filter(|c| c.size() > 1);
    }

    /// Whether batch norm on this tape is synchronised across ranks.
    pub fn synced(&self) -> bool {
        self.sync.is_some()
    }

    /// `normalize(x, Group::Channel, eps)` with the mean and variance of every rank's rows, and
    /// the running statistics (`running`: mean, variance, momentum) updated with them. Every rank
    /// must call it at the same point of its step. Panics on a tape without `set_sync`.
    pub fn sync_normalize(&mut self, x: Var, eps: f64, running: Option<crate::dist::syncbn::Running<'_, B>>) -> Var {
        let comm = self.sync.clone().expect("sync_normalize on a tape without set_sync");
        let (v, stats) = crate::dist::syncbn::forward(&self.backend, &comm, self.value(x), eps, running);
        self.push_with_aux(v, Op::SyncNormalize(x), Some(stats))
    }

    pub(crate) fn sync_normalize_backward(&mut self, g: Var, x: Var, stats: B::Tensor) -> Var {
        let comm = self.sync.clone().expect("sync_normalize_backward on a tape without set_sync");
        let v = crate::dist::syncbn::backward(&self.backend, &comm, self.value(g), self.value(x), &stats);
        self.push_with_aux(v, Op::SyncNormalizeBackward(g, x), Some(stats))
    }
}
