//! Training images kept on the device: the data set is uploaded once, and each batch is gathered
//! there (`Backend::gather_rows_inplace`) through the batch order of [`BatchSampler`], whose
//! per-epoch permutations are computed on the host exactly as for host batches and uploaded once
//! per epoch. Batch k is therefore the same images, in the same order, as on the host path: a run
//! resumes exactly, and CPU and CUDA runs of one seed see the same batches.
//!
//! The permutation buffer holds two epochs, e₀ and e₀ + 1, as float indices (exact below 2²⁴), so
//! a batch that straddles an epoch boundary is one contiguous window of it.

use super::{BatchSampler, ImageDataset};
use crate::backend::Backend;

/// Largest data set whose indices are exact in f32.
const MAX_IMAGES: usize = 1 << 24;

pub struct DeviceImages<B: Backend> {
    data: B::Tensor,
    perm: B::Tensor,
    /// The first epoch the permutation buffer holds.
    first_epoch: Option<u64>,
    sampler: BatchSampler,
    next_k: u64,
}

/// Bytes the device copy of `ds` takes (images and the two-epoch permutation).
pub fn device_bytes(ds: &ImageDataset) -> u64 {
    (ds.pixels.len() as u64 + 2 * ds.n as u64) * 4
}

impl<B: Backend> DeviceImages<B> {
    /// Uploads `ds` when the device keeps training data and it fits its budget; positioned at
    /// batch `k0`. `notice` gets one line saying which way the data goes (nothing on the CPU).
    pub fn open(be: &B, ds: &ImageDataset, sampler: BatchSampler, k0: u64, notice: impl FnOnce(&str)) -> Option<Self> {
        let budget = be.data_memory_budget()?;
        let bytes = device_bytes(ds);
        let mb = |b: u64| b as f64 / 1e6;
        if bytes > budget || ds.n >= MAX_IMAGES {
            notice(&format!(
                "training data: {} images ({:.1} MB) do not fit the device's data budget of {:.1} MB \
                 (set WGAN_DEVICE_DATA_MAX in bytes to change it); streaming batches from the host",
                ds.n,
                mb(bytes),
                mb(budget)
            ));
            return None;
        }
        let data = be.from_f32(&ds.pixels, &[ds.n, ds.channels, ds.height, ds.width]);
        let perm = be.fill(&[2 * ds.n], 0.0);
        notice(&format!(
            "training data: {} images ({:.1} MB) uploaded to the device once; batches are gathered there",
            ds.n,
            mb(bytes)
        ));
        Some(DeviceImages { data, perm, first_epoch: None, sampler, next_k: k0 })
    }

    /// Gathers the next batch into `dst` ([batch, C, H, W]).
    pub fn fill(&mut self, be: &B, dst: &B::Tensor) {
        let k = self.next_k;
        self.next_k += 1;
        let (n, batch) = (self.sampler.n() as u64, self.sampler.batch() as u64);
        let pos = k * batch;
        let e = pos / n;
        if self.first_epoch != Some(e) {
            let mut idx: Vec<f32> = self.sampler.permutation(e).into_iter().map(|i| i as f32).collect();
            idx.extend(self.sampler.permutation(e + 1).into_iter().map(|i| i as f32));
            be.write_f32(&self.perm, &idx);
            self.first_epoch = Some(e);
        }
        be.gather_rows_inplace(dst, &self.data, &self.perm, (pos - e * n) as usize);
    }

    /// The index of the batch `fill` will gather next (the checkpoint's data position).
    pub fn next_index(&self) -> u64 {
        self.next_k
    }
}
