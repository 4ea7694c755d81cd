//! NCCL for data-parallel runs on GPUs (`--features nccl`; src/dist/): the gradient mean as one
//! NCCL all-reduce on the backend's training stream, in place in the flat gradient buffer, with
//! no copy through the host. The communicator is made once per run: rank 0 draws NCCL's unique id
//! and MPI broadcasts it (`Comm::broadcast_bytes`), then every rank joins with `ncclCommInitRank`
//! on its own GPU (the one of its local rank).
//!
//! The batch-norm statistics of synchronised batch norm stay on MPI (a few numbers per channel,
//! read on the host: src/dist/syncbn.rs), and so do the ranks' state hashes. So a step still
//! synchronises with the host at each batch-norm layer, and the step is not captured into a CUDA
//! graph under mpirun (run.rs says so); NCCL calls themselves may be captured (NCCL ≥ 2.9), which a
//! later change can use once batch norm's statistics move to the device.
//!
//! Not yet run on GPUs: this file compiles (CI builds it with `--features nccl`); the multi-GPU leg
//! of scripts/gpu-session runs it when a machine with several GPUs is lent. Under the host emulator
//! there is no NCCL: the gradient mean goes over MPI on host memory (src/dist/shard.rs).

use super::device::{Cuda, Exec};
use crate::dist::Comm;
use crate::error::{Error, Result};
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop};
use cudarc::nccl::safe::{Comm as NcclComm, Id, ReduceOp};
use std::sync::Arc;

/// One rank's NCCL communicator, on the training stream of its `Cuda`.
pub struct Nccl {
    comm: NcclComm,
}

// SAFETY: the communicator is used only by the training thread (the one that made it), as MPI is;
// NCCL communicators may be used from any one thread at a time.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

/// A window of a device buffer given by its address, for NCCL's in-place all-reduce. The caller
/// keeps the buffer alive and orders the work: everything runs on the one training stream.
struct Window {
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
}

impl DeviceSlice<f32> for Window {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl DevicePtr<f32> for Window {
    fn device_ptr<'a>(&'a self, _stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Sync(None))
    }
}

impl DevicePtrMut<f32> for Window {
    fn device_ptr_mut<'a>(&'a mut self, _stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Sync(None))
    }
}

impl Cuda {
    /// Joins this rank's NCCL communicator (every rank of `comm` calls it at the same point).
    /// Errors on the host emulator (no NCCL there) and when libnccl cannot be loaded.
    pub fn nccl_join(&self, comm: &Comm) -> Result<Nccl> {
        let Exec::Gpu(g) = &self.inner.exec else {
            return Err(Error::msg("NCCL needs a GPU: under the host emulator the collectives go over MPI"));
        };
        let mut id = Vec::new();
        if comm.rank() == 0 {
            let fresh = Id::new()
                .map_err(|e| Error(format!("NCCL: ncclGetUniqueId failed ({e:?}); is libnccl.so.2 installed?")))?;
            id = fresh.internal().iter().map(|&c| c as u8).collect();
        }
        comm.broadcast_bytes(0, &mut id);
        let mut internal = [0 as std::ffi::c_char; 128];
        if id.len() != internal.len() {
            return Err(Error(format!("NCCL: received a unique id of {} bytes, expected 128", id.len())));
        }
        for (d, s) in internal.iter_mut().zip(&id) {
            *d = *s as std::ffi::c_char;
        }
        let nccl = NcclComm::from_rank(g.stream.clone(), comm.rank(), comm.size(), Id::uninit(internal))
            .map_err(|e| Error(format!("NCCL: ncclCommInitRank failed on rank {} ({e:?})", comm.rank())))?;
        Ok(Nccl { comm: nccl })
    }

    /// `t` ← its mean over ranks, in place, queued on the training stream (ncclAvg in f32).
    pub fn nccl_mean_inplace(&self, n: &Nccl, t: &super::CudaTensor) -> Result<()> {
        let Exec::Gpu(g) = &self.inner.exec else {
            return Err(Error::msg("NCCL needs a GPU"));
        };
        let mut w = Window { ptr: self.ptr(t)?, len: t.numel(), stream: g.stream.clone() };
        n.comm
            .all_reduce_in_place(&mut w, &ReduceOp::Avg)
            .map_err(|e| Error(format!("NCCL all-reduce failed ({e:?})")))?;
        Ok(())
    }
}

/// The gradient mean through NCCL when `be` is a GPU `Cuda` and `comm` holds this rank's
/// communicator (set by `attach`); false otherwise (the caller goes over MPI).
pub fn try_mean<B: crate::backend::Backend>(be: &B, comm: &Comm, grads: &B::Tensor) -> bool {
    let any_be: &dyn std::any::Any = be;
    let any_t: &dyn std::any::Any = grads;
    let (Some(cuda), Some(t)) = (any_be.downcast_ref::<Cuda>(), any_t.downcast_ref::<super::CudaTensor>()) else {
        return false;
    };
    let Some(dev) = comm.device_collective() else { return false };
    let Some(n) = dev.downcast_ref::<Nccl>() else { return false };
    if let Err(e) = cuda.nccl_mean_inplace(n, t) {
        cuda.record(e);
    }
    true
}

/// Joins NCCL on a GPU `Cuda` and keeps the communicator in `comm` for `try_mean`; returns false
/// (and does nothing) under the host emulator, whose collectives go over MPI.
pub fn attach(cuda: &Cuda, comm: &Comm) -> Result<bool> {
    if matches!(cuda.inner.exec, Exec::Host(_)) {
        return Ok(false);
    }
    let n = cuda.nccl_join(comm)?;
    comm.set_device_collective(Arc::new(n));
    Ok(true)
}
