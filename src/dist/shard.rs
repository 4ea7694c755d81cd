//! One rank's part of a data-parallel run: its rows of the global batch, and the reduction of its
//! gradients.

use super::Comm;
use crate::backend::Backend;
use std::sync::Arc;

/// This rank's slice of the global batch and the world it shares the step with.
#[derive(Clone)]
pub struct Shard {
    pub comm: Arc<Comm>,
    pub rank: usize,
    pub size: usize,
    /// `--batch-size`: the global batch.
    pub global_batch: usize,
    /// This rank's rows: global samples offset..offset + local_batch.
    pub offset: usize,
    pub local_batch: usize,
    /// Average the gradients over ranks before each optimizer step. Off only to prove that the
    /// equality tests catch a missing reduction (`WGAN_DIST_SKIP_GRAD_REDUCE=1`, tests only).
    pub reduce_grads: bool,
    /// The communication thread that averages buckets of gradients while the backward pass goes
    /// on (`overlap.rs`); None: the gradients are averaged after the pass.
    pub overlap: Option<Arc<super::overlap::Reducer>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Shard(rank {} of {}, rows {}..{})",
            self.rank,
            self.size,
            self.offset,
            self.offset + self.local_batch
        )
    }
}

impl Shard {
    /// The slice of a global batch of `global_batch` rows for this rank of `comm`'s world: equal
    /// contiguous slices, in rank order. Errors when the batch does not divide among the ranks.
    pub fn new(comm: Arc<Comm>, global_batch: usize) -> crate::Result<Shard> {
        let (rank, size) = (comm.rank(), comm.size());
        if global_batch % size != 0 {
            crate::bail!(
                "--batch-size {global_batch}: the global batch must divide evenly among the {size} ranks \
                 (each takes an equal contiguous slice); choose a multiple of {size}"
            );
        }
        let local_batch = global_batch / size;
        let reduce_grads = std::env::var("WGAN_DIST_SKIP_GRAD_REDUCE").map_or(true, |v| v != "1");
        // NCCL (on GPUs) averages the whole buffer on the training stream instead.
        let overlap = if comm.overlap && reduce_grads && size > 1 && comm.device_collective().is_none() {
            super::overlap::Reducer::start(&comm)
        } else {
            None
        };
        Ok(Shard { comm, rank, size, global_batch, offset: rank * local_batch, local_batch, reduce_grads, overlap })
    }

    /// This rank's rows of a tensor holding the global batch along dim 0 (a view).
    pub fn rows<B: Backend>(&self, be: &B, full: &B::Tensor) -> B::Tensor {
        let shape = be.shape(full);
        assert_eq!(shape[0], self.global_batch, "Shard::rows: expected the global batch");
        let per: usize = shape[1..].iter().product();
        let mut s = shape.to_vec();
        s[0] = self.local_batch;
        be.view(full, self.offset * per, &s)
    }

    /// This rank's rows of host values of the global batch.
    pub fn slice_host<'a>(&self, full: &'a [f32]) -> &'a [f32] {
        let per = full.len() / self.global_batch;
        &full[self.offset * per..(self.offset + self.local_batch) * per]
    }

    /// Replaces the flat gradient buffer `grads` by its mean over ranks.
    pub fn reduce_grads<B: Backend>(&self, be: &B, grads: &B::Tensor) {
        if !self.reduce_grads || self.size == 1 {
            return;
        }
        #[cfg(feature = "nccl")]
        if crate::backend::cuda::collective::try_mean(be, &self.comm, grads) {
            return;
        }
        let mut g = be.to_f32(grads);
        self.comm.mean_f32(&mut g);
        be.write_f32(grads, &g);
    }

    /// The mean over ranks of a few scalars (the step's losses: each rank's is the mean over its
    /// rows, so their mean is the global batch's).
    pub fn mean_scalars(&self, v: &mut [f64]) {
        self.comm.sum_f64(v);
        let inv = 1.0 / self.size as f64;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}
