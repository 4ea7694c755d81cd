//! The training step's hooks for data-parallel runs (`crate::dist`): this rank's rows of each
//! random draw, synchronised batch norm on the step's tapes, and the gradient average before each
//! optimizer step. With one process (`Gan::dist` None) each hook is the single-process step's.

use super::gan::Gan;
use crate::backend::Backend;
use crate::tape::{Tape, Var};

/// Which network's gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Generator,
    Critic,
}

impl<B: Backend> Gan<B> {
    /// The rows of a batch this process trains on: `--batch-size` in one process, its slice of it
    /// under data parallelism.
    pub fn local_batch(&self) -> usize {
        self.dist.as_ref().map_or(self.cfg.batch, |d| d.local_batch)
    }

    /// A tape for the step: batch norm over every rank's rows under data parallelism.
    pub(crate) fn step_tape(&self) -> Tape<B> {
        let mut t = Tape::new(self.be.clone());
        t.set_sync(self.dist.as_ref().map(|d| d.comm.clone()));
        t
    }

    /// This rank's `n` rows of a draw that `make(rows)` makes for `rows` samples: under data
    /// parallelism the draw of the whole global batch (Philox numbers by global sample index), of
    /// which this rank takes its slice; otherwise the draw of `n` rows itself.
    pub(crate) fn my_rows(&self, n: usize, make: impl FnOnce(usize) -> B::Tensor) -> B::Tensor {
        match &self.dist {
            Some(d) => {
                assert_eq!(n, d.local_batch, "a data-parallel step takes {} rows per rank", d.local_batch);
                d.rows(&self.be, &make(d.global_batch))
            }
            None => make(n),
        }
    }

    /// The gradients of `loss` with respect to `role`'s parameters (`params`, its leaves on `t`)
    /// into its flat gradient buffer, averaged over ranks under data parallelism: bucket by bucket
    /// while the backward pass goes on where a communication thread can run (`dist::overlap`),
    /// otherwise after it. In one process, `grad` and `store_grads`.
    pub(crate) fn backward_reduced(&self, t: &mut Tape<B>, loss: Var, params: &[Var], role: Role) {
        let model = match role {
            Role::Generator => &self.gen,
            Role::Critic => &self.critic,
        };
        let Some(reducer) = self.dist.as_ref().and_then(|d| d.overlap.clone()) else {
            let grads = t.grad(&[loss], params, false);
            model.store_grads(t, &grads);
            if let Some(d) = &self.dist {
                d.reduce_grads(&self.be, &model.grads);
            }
            return;
        };
        let be = &self.be;
        let slots = &model.net.params;
        let buckets = crate::dist::overlap::buckets(slots, crate::dist::overlap::bucket_elems());
        let mut bucket_of = vec![0; slots.len()];
        let mut left: Vec<usize> = buckets.iter().map(|b| b.slots.len()).collect();
        for (i, b) in buckets.iter().enumerate() {
            bucket_of[b.slots.clone()].iter_mut().for_each(|x| *x = i);
        }
        let mut sent = 0;
        t.grad_with_ready(&[loss], params, &mut |k, g| {
            be.copy_into_inplace(&model.grads, slots[k].offset, g);
            let i = bucket_of[k];
            left[i] -= 1;
            if left[i] == 0 {
                let b = &buckets[i];
                reducer.send(i, be.to_f32(&be.view(&model.grads, b.start, &[b.end - b.start])));
                sent += 1;
            }
        });
        let comm = &self.dist.as_ref().expect("overlap under data parallelism").comm;
        for _ in 0..sent {
            let (i, mean) = reducer.recv(comm);
            let b = &buckets[i];
            be.copy_into_inplace(&model.grads, b.start, &be.from_f32(&mean, &[b.end - b.start]));
        }
        assert_eq!(sent, buckets.len(), "every bucket of gradients is reduced");
    }

    /// A 64-bit hash of everything a checkpoint holds (parameters, running statistics, optimizer
    /// state, counters), to check that every rank holds the same state.
    pub fn state_hash(&self) -> u64 {
        use crate::dist::comm::{fnv1a, FNV_START};
        let be = &self.be;
        let mut h = FNV_START;
        for t in [&self.gen.params, &self.gen.buffers, &self.critic.params, &self.critic.buffers] {
            h = fnv1a(h, bytemuck::cast_slice(&be.to_f32(t)));
        }
        for o in [&self.opt_g, &self.opt_d] {
            for (_, v) in o.state_tensors(be) {
                h = fnv1a(h, bytemuck::cast_slice(&v));
            }
            h = fnv1a(h, &o.t.to_le_bytes());
        }
        for c in [self.draws, self.gen_steps, self.gen.batches_tracked.get() as u64] {
            h = fnv1a(h, &c.to_le_bytes());
        }
        h
    }
}
