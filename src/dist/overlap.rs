//! The gradient reduction overlapped with the backward pass, as PyTorch DDP does: a network's flat
//! gradient buffer is cut into buckets of consecutive parameters, taken from the last layer back
//! (the order in which the backward pass finishes them); as soon as the backward pass has finished
//! every gradient of a bucket (`Tape::grad_with_ready`), the bucket goes to a communication thread,
//! which averages it over ranks on its own duplicate of the world (MPI_THREAD_MULTIPLE), while the
//! backward pass goes on with the layers before. After the pass the training thread waits for the
//! buckets still on their way and writes the means back.
//!
//! The mean of each element is the one `Comm::mean_f32` computes over the whole buffer (a
//! deterministic reduction adds every element in rank order, whatever the bucket), so overlapping
//! changes no bit of the result (`tests/mpi_train.rs` checks it).
//!
//! Opt-in (`--overlap-reduce on`): on the CPU with one core per rank the communication thread
//! competes with the rank's compute thread for its core, and measured slower there (BENCHMARKS.md:
//! 1.31× against 1.72× for the toy model on 2 cores); it pays where a rank has a core to spare for
//! it. Where MPI does not grant MPI_THREAD_MULTIPLE the gradients are reduced after the pass.

use super::Comm;
use crate::nn::Slot;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Elements per bucket (256 Ki f32 = 1 MiB: a few buckets per network of this crate; PyTorch DDP's
/// default is 25 MiB, for larger models).
pub const BUCKET_ELEMS: usize = 1 << 18;

/// `BUCKET_ELEMS`, or WGAN_DIST_BUCKET_ELEMS (tests: many buckets on small networks).
pub fn bucket_elems() -> usize {
    std::env::var("WGAN_DIST_BUCKET_ELEMS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(BUCKET_ELEMS)
}

/// A bucket: parameter slots `slots` (indices into the network's slots), elements start..end of
/// the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub slots: std::ops::Range<usize>,
    pub start: usize,
    pub end: usize,
}

/// Buckets of at most about `cap` elements over `slots` (laid out one after another in the flat
/// buffer), from the last slot back; a slot larger than `cap` is a bucket of its own.
pub fn buckets(slots: &[Slot], cap: usize) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut hi = slots.len();
    while hi > 0 {
        let mut lo = hi - 1;
        let mut n = slots[lo].len();
        while lo > 0 && n + slots[lo - 1].len() <= cap {
            lo -= 1;
            n += slots[lo].len();
        }
        out.push(Bucket { slots: lo..hi, start: slots[lo].offset, end: slots[hi - 1].offset + slots[hi - 1].len() });
        hi = lo;
    }
    out
}

type Job = (usize, Vec<f32>);

/// The communication thread and its queues.
pub struct Reducer {
    jobs: Mutex<Option<Sender<Job>>>,
    done: Mutex<Receiver<(usize, Vec<f32>)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reducer {
    /// Starts the thread on `comm`'s duplicate; None where collectives may not run on another
    /// thread.
    pub fn start(comm: &Comm) -> Option<Arc<Reducer>> {
        let dup = comm.duplicate()?;
        let (jobs, rx) = channel::<Job>();
        let (tx, done) = channel();
        let thread = std::thread::Builder::new()
            .name("wgan-grad-reduce".into())
            .spawn(move || {
                for (id, mut v) in rx {
                    dup.mean_f32(&mut v);
                    if tx.send((id, v)).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Arc::new(Reducer {
            jobs: Mutex::new(Some(jobs)),
            done: Mutex::new(done),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queues bucket `id`'s gradients for averaging.
    pub fn send(&self, id: usize, grads: Vec<f32>) {
        if let Some(tx) = self.jobs.lock().expect("reducer lock").as_ref() {
            tx.send((id, grads)).expect("the gradient reduction thread ended");
        }
    }

    /// Waits for the next averaged bucket; adds the time waited to `comm`'s clock.
    pub fn recv(&self, comm: &Comm) -> (usize, Vec<f32>) {
        let t0 = Instant::now();
        let r = self.done.lock().expect("reducer lock").recv().expect("the gradient reduction thread ended");
        comm.add_wait(t0.elapsed().as_secs_f64());
        r
    }
}

impl Drop for Reducer {
    /// Ends the thread (and frees its communicator) before MPI is finalised.
    fn drop(&mut self) {
        self.jobs.lock().map(|mut j| j.take()).ok();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Init;

    fn slot(offset: usize, len: usize) -> Slot {
        Slot { name: String::new(), shape: vec![len], offset, init: Init::Const(0.0) }
    }

    #[test]
    fn buckets_run_from_the_last_slot_back_and_cover_the_buffer() {
        let slots = [slot(0, 5), slot(5, 3), slot(8, 10), slot(18, 2), slot(20, 1)];
        let b = buckets(&slots, 6);
        assert_eq!(
            b,
            vec![
                Bucket { slots: 3..5, start: 18, end: 21 },
                Bucket { slots: 2..3, start: 8, end: 18 },
                Bucket { slots: 1..2, start: 5, end: 8 },
                Bucket { slots: 0..1, start: 0, end: 5 },
            ]
        );
    }
}
