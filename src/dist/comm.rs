//! The collectives a data-parallel run needs, and `Comm`, which adds to them the deterministic
//! rank-order sum and the time spent communicating.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One rank's view of the world of ranks: the few MPI collectives training uses. Every rank must
/// call the same collectives in the same order with the same lengths.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The rank among the ranks of this machine (picks the GPU, divides the cores).
    fn local_rank(&self) -> usize;
    fn local_size(&self) -> usize;
    /// The machine's name, as MPI knows it.
    fn host(&self) -> String;
    /// Elementwise sum over ranks in the library's own order (MPI_Allreduce).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]);
    /// Elementwise sum over ranks of f32 values, in the library's own order and precision.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]);
    fn all_reduce_max_u64(&self, buf: &mut [u64]);
    /// Every rank's `send` (all of one length), concatenated in rank order.
    fn all_gather_f64(&self, send: &[f64]) -> Vec<f64>;
    /// Reduce-scatter's exchange: `send` cut into `counts` pieces (in rank order), piece k to rank
    /// k; returns what every rank sent this rank, concatenated in rank order (each `counts[rank]`
    /// long).
    fn all_to_all_f32(&self, send: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Every rank's piece (`counts[r]` long from rank r), concatenated in rank order.
    fn all_gather_var_f32(&self, piece: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Rank `root`'s bytes on every rank (`buf` is replaced).
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>);
    fn barrier(&self);
    /// Ends every rank of the run now (MPI_Abort).
    fn abort(&self, code: i32) -> !;
    /// A second world of the same ranks whose collectives may run on another thread while this
    /// one's run (MPI_Comm_dup under MPI_THREAD_MULTIPLE); None where that is not allowed.
    fn duplicate(&self) -> Option<Box<dyn Collective>> {
        None
    }
}

/// A collective with the deterministic mode and a clock.
pub struct Comm {
    inner: Box<dyn Collective>,
    /// Sum in rank order (`--deterministic-reduce`, default on): bitwise the same result on every
    /// rank and in every rerun with the same number of ranks.
    pub deterministic: bool,
    /// Average gradients in buckets on a communication thread while the backward pass goes on
    /// (`--overlap-reduce`, `overlap.rs`).
    pub overlap: bool,
    nanos: AtomicU64,
    calls: AtomicU64,
    /// A device library's communicator for the gradients (NCCL on GPUs:
    /// src/backend/cuda/collective.rs); None: over this collective, on host memory.
    device: std::sync::Mutex<Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>>,
}

impl Comm {
    pub fn new(inner: Box<dyn Collective>, deterministic: bool) -> Comm {
        Comm {
            inner,
            deterministic,
            overlap: false,
            nanos: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            device: Default::default(),
        }
    }

    /// Keeps a device library's communicator (NCCL) for the gradient reduction.
    pub fn set_device_collective(&self, c: std::sync::Arc<dyn std::any::Any + Send + Sync>) {
        *self.device.lock().expect("device collective lock") = Some(c);
    }

    /// The device library's communicator, if one was set.
    pub fn device_collective(&self) -> Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.device.lock().ok().and_then(|d| d.clone())
    }

    pub fn rank(&self) -> usize {
        self.inner.rank()
    }
    pub fn size(&self) -> usize {
        self.inner.size()
    }
    pub fn local_rank(&self) -> usize {
        self.inner.local_rank()
    }
    pub fn local_size(&self) -> usize {
        self.inner.local_size()
    }
    pub fn host(&self) -> String {
        self.inner.host()
    }
    pub fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }

    fn timed<R>(&self, f: impl FnOnce(&dyn Collective) -> R) -> R {
        let t0 = Instant::now();
        let r = f(self.inner.as_ref());
        self.nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Adds time spent waiting for collectives run elsewhere (the gradient buckets' thread).
    pub fn add_wait(&self, secs: f64) {
        self.nanos.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    /// A `Comm` over a duplicate of this world, for another thread (None where not allowed).
    pub fn duplicate(&self) -> Option<Comm> {
        self.inner.duplicate().map(|c| Comm::new(c, self.deterministic))
    }

    /// Seconds spent in collectives so far, and how many were called.
    pub fn spent(&self) -> (f64, u64) {
        (self.nanos.load(Ordering::Relaxed) as f64 * 1e-9, self.calls.load(Ordering::Relaxed))
    }

    /// Elementwise sum over ranks. Deterministic: every rank's values gathered and added in rank
    /// order (for the short vectors of statistics this is used for).
    pub fn sum_f64(&self, buf: &mut [f64]) {
        if self.size() == 1 {
            return;
        }
        if !self.deterministic {
            return self.timed(|c| c.all_reduce_sum_f64(buf));
        }
        let all = self.timed(|c| c.all_gather_f64(buf));
        let n = buf.len();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (0..self.size()).fold(0.0, |acc, r| acc + all[r * n + i]);
        }
    }

    /// Elementwise mean over ranks of f32 values (the gradients). Deterministic: a reduce-scatter
    /// (each rank adds up one contiguous piece of every rank's values, in rank order, in f64, and
    /// rounds the mean once) and an all-gather of the pieces: the bandwidth of a ring all-reduce,
    /// and the same bits on every rank in every rerun. Otherwise MPI_Allreduce in f32 and a scale.
    pub fn mean_f32(&self, buf: &mut [f32]) {
        let w = self.size();
        if w == 1 {
            return;
        }
        if !self.deterministic {
            self.timed(|c| c.all_reduce_sum_f32(buf));
            let inv = 1.0 / w as f32;
            buf.iter_mut().for_each(|x| *x *= inv);
            return;
        }
        let counts = pieces(buf.len(), w);
        let me = self.rank();
        let got = self.timed(|c| c.all_to_all_f32(buf, &counts));
        let k = counts[me];
        let inv = 1.0 / w as f64;
        let piece: Vec<f32> =
            (0..k).map(|i| ((0..w).fold(0.0f64, |acc, r| acc + got[r * k + i] as f64) * inv) as f32).collect();
        let all = self.timed(|c| c.all_gather_var_f32(&piece, &counts));
        buf.copy_from_slice(&all);
    }

    /// The largest of every rank's values.
    pub fn max_u64(&self, buf: &mut [u64]) {
        if self.size() > 1 {
            self.timed(|c| c.all_reduce_max_u64(buf));
        }
    }

    pub fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        if self.size() > 1 {
            self.timed(|c| c.broadcast_bytes(root, buf));
        }
    }

    pub fn barrier(&self) {
        if self.size() > 1 {
            self.timed(|c| c.barrier());
        }
    }

    /// Whether every rank holds the same 64-bit value (a hash of its state), and the ranks that
    /// differ from rank 0 when not.
    pub fn agree(&self, value: u64) -> Result<(), Vec<usize>> {
        if self.size() == 1 {
            return Ok(());
        }
        // Two words per rank (a u64 does not fit an f64 exactly), gathered.
        let all = self.timed(|c| c.all_gather_f64(&[(value >> 32) as f64, (value & 0xffff_ffff) as f64]));
        let of = |r: usize| ((all[2 * r] as u64) << 32) | all[2 * r + 1] as u64;
        let differ: Vec<usize> = (1..self.size()).filter(|&r| of(r) != of(0)).collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(differ)
        }
    }
}

/// `len` split into `w` contiguous pieces, the first `len % w` one longer.
pub fn pieces(len: usize, w: usize) -> Vec<usize> {
    (0..w).map(|r| len / w + usize::from(r < len % w)).collect()
}

/// FNV-1a over bytes: a cheap hash for comparing ranks' states.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The FNV-1a offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A world of one rank (every collective returns its input): for tests of what the ranks compute,
/// and for code that takes a `Comm` in one process.
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn host(&self) -> String {
        "localhost".into()
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) {}
    fn all_reduce_sum_f32(&self, _: &mut [f32]) {}
    fn all_reduce_max_u64(&self, _: &mut [u64]) {}
    fn all_gather_f64(&self, send: &[f64]) -> Vec<f64> {
        send.to_vec()
    }
    fn all_to_all_f32(&self, send: &[f32], _: &[usize]) -> Vec<f32> {
        send.to_vec()
    }
    fn all_gather_var_f32(&self, piece: &[f32], _: &[usize]) -> Vec<f32> {
        piece.to_vec()
    }
    fn broadcast_bytes(&self, _: usize, _: &mut Vec<u8>) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_buffer() {
        assert_eq!(pieces(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(pieces(3, 4), vec![1, 1, 1, 0]);
        assert_eq!(pieces(8, 2).iter().sum::<usize>(), 8);
    }
}
