//! The collectives over MPI (`--features mpi`): the `mpi` crate (rsmpi) on the system's MPI
//! library (Debian's OpenMPI: `scripts/install-mpi`).

use super::comm::Collective;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

/// MPI_COMM_WORLD and the communicator of this machine's ranks.
pub struct Mpi {
    world: SimpleCommunicator,
    local: SimpleCommunicator,
    host: String,
    /// MPI_THREAD_MULTIPLE was granted: a duplicate may run collectives on another thread.
    multiple: bool,
    /// Finalises MPI when dropped (after `world` and `local`, declared before it); None in a
    /// duplicate.
    _universe: Option<Universe>,
}

// SAFETY: each `Mpi` (a communicator) is used by one thread at a time: the world by the training
// thread, a duplicate by the gradient buckets' thread (`overlap.rs`), which exists only when MPI
// granted MPI_THREAD_MULTIPLE. The CPU backend's worker threads never communicate.
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI (once per process). Errors when MPI was already initialised.
    pub fn init() -> crate::Result<Mpi> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| crate::Error("MPI: already initialised in this process".into()))?;
        let world = universe.world();
        let local = world.split_shared(world.rank());
        let host = mpi::environment::processor_name().unwrap_or_else(|_| "?".into());
        let multiple = threading == mpi::Threading::Multiple;
        Ok(Mpi { world, local, host, multiple, _universe: Some(universe) })
    }
}

fn displs(counts: &[usize]) -> Vec<Count> {
    counts
        .iter()
        .scan(0, |s, &c| {
            let d = *s;
            *s += c as Count;
            Some(d)
        })
        .collect()
}

fn counts_of(counts: &[usize]) -> Vec<Count> {
    counts.iter().map(|&c| c as Count).collect()
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local.rank() as usize
    }
    fn local_size(&self) -> usize {
        self.local.size() as usize
    }
    fn host(&self) -> String {
        self.host.clone()
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
    }
    fn all_reduce_max_u64(&self, buf: &mut [u64]) {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::max());
    }
    fn all_gather_f64(&self, send: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; send.len() * self.size()];
        self.world.all_gather_into(send, &mut out[..]);
        out
    }
    fn all_to_all_f32(&self, send: &[f32], counts: &[usize]) -> Vec<f32> {
        let w = self.size();
        let me = counts[self.rank()];
        let scounts = counts_of(counts);
        let sdispls = displs(counts);
        let rcounts = vec![me as Count; w];
        let rdispls: Vec<Count> = (0..w).map(|r| (r * me) as Count).collect();
        let mut out = vec![0f32; me * w];
        {
            let s = Partition::new(send, &scounts[..], &sdispls[..]);
            let mut r = PartitionMut::new(&mut out[..], &rcounts[..], &rdispls[..]);
            self.world.all_to_all_varcount_into(&s, &mut r);
        }
        out
    }
    fn all_gather_var_f32(&self, piece: &[f32], counts: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; counts.iter().sum()];
        let c = counts_of(counts);
        let d = displs(counts);
        {
            let mut r = PartitionMut::new(&mut out[..], &c[..], &d[..]);
            self.world.all_gather_varcount_into(piece, &mut r);
        }
        out
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let rootp = self.world.process_at_rank(root as i32);
        let mut len = [buf.len() as u64];
        rootp.broadcast_into(&mut len[..]);
        buf.resize(len[0] as usize, 0);
        rootp.broadcast_into(&mut buf[..]);
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
    fn duplicate(&self) -> Option<Box<dyn Collective>> {
        if !self.multiple {
            return None;
        }
        Some(Box::new(Mpi {
            world: self.world.duplicate(),
            local: self.local.duplicate(),
            host: self.host.clone(),
            multiple: true,
            _universe: None,
        }))
    }
}
