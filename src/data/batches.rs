//! Batch order and prefetching. The order is a pure function of (seed, batch index), so a resumed
//! run sees exactly the batches it would have seen without the interruption, and a background
//! thread can assemble batches ahead of the trainer.

use super::ImageDataset;
use crate::error::Result;
use crate::rng::HostRng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Philox stream of epoch `e`'s permutation is `DATA_ORDER_STREAM + e`: far from the small stream
/// numbers other users of the seed take, so data order and, say, initialisation are independent.
pub const DATA_ORDER_STREAM: u64 = 0xDA7A_0000_0000_0000;

/// The sequence of batches: positions k·batch … k·batch + batch − 1 of the endless concatenation of
/// per-epoch permutations of 0..n (so a batch can straddle two epochs and no image is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSampler {
    n: usize,
    batch: usize,
    seed: u64,
}

impl BatchSampler {
    /// Checks that 1 ≤ batch ≤ n (and n fits the 32-bit shuffle).
    pub fn new(n: usize, batch: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            crate::bail!("the data set is empty");
        }
        if batch == 0 {
            crate::bail!("batch size must be at least 1");
        }
        if batch > n {
            crate::bail!("batch size {batch} is larger than the data set ({n} images); use a batch of at most {n}");
        }
        if n > u32::MAX as usize {
            crate::bail!("data set of {n} images is too large (at most {} supported)", u32::MAX);
        }
        Ok(BatchSampler { n, batch, seed })
    }

    pub fn n(&self) -> usize {
        self.n
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The epoch batch `k` starts in.
    pub fn epoch_of(&self, k: u64) -> u64 {
        ((k as u128 * self.batch as u128) / self.n as u128) as u64
    }

    /// Epoch `e`'s order: a Fisher–Yates shuffle of 0..n driven by Philox (seed, stream of `e`).
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut rng = HostRng::new(self.seed, DATA_ORDER_STREAM.wrapping_add(epoch));
        let mut p: Vec<usize> = (0..self.n).collect();
        for i in (1..self.n).rev() {
            let j = rng.below(i as u32 + 1) as usize;
            p.swap(i, j);
        }
        p
    }

    /// The dataset indices of batch `k`.
    pub fn indices(&self, k: u64) -> Vec<usize> {
        self.indices_cached(k, &mut None)
    }

    /// As `indices`, reusing the last epoch's permutation (one shuffle per epoch, not per batch).
    fn indices_cached(&self, k: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Vec<usize> {
        let (n, batch) = (self.n as u128, self.batch as u128);
        let start = k as u128 * batch;
        (start..start + batch)
            .map(|pos| {
                let e = (pos / n) as u64;
                if cache.as_ref().map(|c| c.0) != Some(e) {
                    *cache = Some((e, self.permutation(e)));
                }
                cache.as_ref().map_or(0, |c| c.1[(pos % n) as usize])
            })
            .collect()
    }
}

/// Assembles batches k0, k0+1, … on a background thread, up to `depth` ahead. Dropping it stops
/// the thread. If the thread cannot be started (or has died), batches are built on the caller's
/// thread instead — same batches, just not overlapped.
pub struct Prefetcher {
    data: Arc<ImageDataset>,
    sampler: BatchSampler,
    next_k: u64,
    rx: Option<Receiver<(u64, Vec<f32>)>>,
    worker: Option<JoinHandle<()>>,
    cache: Option<(u64, Vec<usize>)>,
}

impl Prefetcher {
    pub fn new(data: Arc<ImageDataset>, sampler: BatchSampler, k0: u64, depth: usize) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let (d, s) = (data.clone(), sampler.clone());
        let worker = std::thread::Builder::new()
            .name("wgan-prefetch".into())
            .spawn(move || {
                let mut cache = None;
                for k in k0.. {
                    let batch = d.gather(&s.indices_cached(k, &mut cache));
                    // The receiver is gone: the Prefetcher was dropped, so stop.
                    if tx.send((k, batch)).is_err() {
                        return;
                    }
                }
            })
            .ok();
        let rx = worker.as_ref().map(|_| rx);
        Prefetcher { data, sampler, next_k: k0, rx, worker, cache: None }
    }

    /// The next batch: its index k and its pixels (batch × C × H × W).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> (u64, Vec<f32>) {
        let k = self.next_k;
        self.next_k += 1;
        if let Some(rx) = &self.rx {
            match rx.recv() {
                Ok((got, batch)) if got == k => return (k, batch),
                // Out of step or disconnected: never expected, but fall back rather than fail.
                _ => self.rx = None,
            }
        }
        (k, self.data.gather(&self.sampler.indices_cached(k, &mut self.cache)))
    }

    /// The batch order.
    pub fn sampler(&self) -> &BatchSampler {
        &self.sampler
    }

    /// The index of the batch `next` will return.
    pub fn next_index(&self) -> u64 {
        self.next_k
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Dropping the receiver makes the worker's blocked or next `send` fail, so it returns.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
