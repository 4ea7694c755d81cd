//! Device memory held by the backend: the default memory pool (stream-ordered allocations) and the
//! graphs' own memory, with the policy that bounds it in the steady state.
//!
//! Eager steps allocate every intermediate from the device's default pool. `Cuda::new` raises the
//! pool's release threshold to "never", so the first (eager) step sizes the pool and later eager
//! steps take nothing more from the driver. Once the training step runs from CUDA graphs, its
//! intermediates are graph-owned memory (a separate cache of the driver) and a step allocates
//! nothing from the pool: what the eager step left there is dead weight on top of the graphs'
//! memory. So the step calls [`Cuda::keep_freed_memory`]`(false)` once its graphs run: the threshold
//! goes back to 0 (freed memory returns to the driver at the next synchronisation) and the pool is
//! trimmed to what live tensors use. If the graphs are given up, `keep_freed_memory(true)`
//! restores the threshold for the eager steps that follow, and the dropped graphs' memory is
//! returned with `cuDeviceGraphMemTrim` (`Cuda::graph_drop`).
//!
//! [`Cuda::memory`] reports both parts. On a GPU it reads the pool's and the graph cache's
//! attributes. The emulator has neither, so it keeps a model with the same rules: the pool's reserve
//! grows to the bytes of live allocations made outside a capture, drops to them on a trim or, with
//! the threshold at 0, at synchronisation; the graphs hold the allocations made while capturing
//! them, each apart (an upper bound: CUDA may let a graph reuse memory it freed earlier in it),
//! and at least the most of them live at once (`MemoryUse::graph_live_peak`).

use cudarc::driver::{result as drv, sys};

use super::device::{drv_err, Cuda, Exec};
use super::issued::PoolModel;
use crate::Result;

/// Bytes of device memory, from [`Cuda::memory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// What the default pool holds from the driver now (its reserve).
    pub pool_reserved: u64,
    /// The highest reserve since the backend was opened: the eager steps' peak.
    pub pool_peak: u64,
    /// Of the reserve, what live tensors use.
    pub pool_used: u64,
    /// Memory the instantiated graphs own (their allocation nodes). On a GPU the driver's
    /// reserve for graphs; under the emulator, which keeps each allocation of a graph apart, the
    /// most they can need.
    pub graph_reserved: u64,
    /// Under the emulator, the least the graphs can need: for each graph, the most bytes of its
    /// allocations live at once, summed (CUDA may reuse memory a graph freed earlier in it). On a
    /// GPU, the same as `graph_reserved`.
    pub graph_live_peak: u64,
}

impl MemoryUse {
    /// Everything the backend holds: the pool's reserve and the graphs' memory.
    pub fn footprint(&self) -> u64 {
        self.pool_reserved + self.graph_reserved
    }
}

impl Cuda {
    fn pool_model(&self) -> std::sync::MutexGuard<'_, PoolModel> {
        self.inner.counters.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the default pool keeps freed memory for later allocations (true, the setting of
    /// `Cuda::new`: eager steps then take nothing new from the driver) or returns it to the driver
    /// at each synchronisation (false: for a steady state that allocates nothing, CUDA graphs).
    /// Switching it off also trims the pool to what live tensors use, after the queued work.
    pub fn keep_freed_memory(&self, keep: bool) -> Result<()> {
        self.sync()?;
        match &self.inner.exec {
            Exec::Gpu(g) => {
                if !g.ctx.has_async_alloc() {
                    return Ok(()); // cuMemAlloc/cuMemFree: there is no pool to manage
                }
                g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                let mut threshold: u64 = if keep { u64::MAX } else { 0 };
                // SAFETY: a valid device handle; the attribute takes a u64.
                unsafe {
                    let pool = drv::device::get_default_mem_pool(g.ctx.cu_device())
                        .map_err(drv_err("cuDeviceGetDefaultMemPool"))?;
                    drv::mem_pool::set_attribute(
                        pool,
                        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                        &mut threshold as *mut u64 as *mut std::ffi::c_void,
                    )
                    .map_err(drv_err("setting the memory pool's release threshold"))?;
                    if !keep {
                        sys::cuMemPoolTrimTo(pool, 0).result().map_err(drv_err("cuMemPoolTrimTo"))?;
                    }
                }
                Ok(())
            }
            Exec::Host(_) => {
                let mut m = self.pool_model();
                m.release = !keep;
                if !keep {
                    m.reserved = m.used();
                }
                Ok(())
            }
        }
    }

    /// The device memory the backend holds now, after the queued work (see [`MemoryUse`]). On a
    /// GPU from the default pool's and the graph cache's attributes; None where the device has
    /// no stream-ordered allocator. Under the emulator from its model of both (module docs).
    pub fn memory(&self) -> Result<Option<MemoryUse>> {
        self.sync()?;
        match &self.inner.exec {
            Exec::Gpu(g) => {
                if !g.ctx.has_async_alloc() {
                    return Ok(None);
                }
                g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                let dev = g.ctx.cu_device();
                // SAFETY: a valid device handle; each attribute is a cuuint64_t.
                unsafe {
                    let pool = drv::device::get_default_mem_pool(dev).map_err(drv_err("cuDeviceGetDefaultMemPool"))?;
                    let attr = |a: sys::CUmemPool_attribute| -> Result<u64> {
                        let mut v: u64 = 0;
                        drv::mem_pool::get_attribute(pool, a, &mut v as *mut u64 as *mut std::ffi::c_void)
                            .map_err(drv_err("reading a memory pool attribute"))?;
                        Ok(v)
                    };
                    use sys::CUmemPool_attribute as A;
                    let mut graph: u64 = 0;
                    sys::cuDeviceGetGraphMemAttribute(
                        dev,
                        sys::CUgraphMem_attribute::CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT,
                        &mut graph as *mut u64 as *mut std::ffi::c_void,
                    )
                    .result()
                    .map_err(drv_err("cuDeviceGetGraphMemAttribute"))?;
                    Ok(Some(MemoryUse {
                        pool_reserved: attr(A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
                        pool_peak: attr(A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?,
                        pool_used: attr(A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
                        graph_reserved: graph,
                        graph_live_peak: graph,
                    }))
                }
            }
            Exec::Host(_) => {
                let (graph_reserved, graph_live_peak) = self.graph_bytes();
                let mut m = self.pool_model();
                m.on_sync();
                let pool_used = m.used();
                Ok(Some(MemoryUse {
                    pool_reserved: m.reserved,
                    pool_peak: m.peak,
                    pool_used,
                    graph_reserved,
                    graph_live_peak,
                }))
            }
        }
    }

    /// Returns the memory of graphs that no longer exist to the driver (`cuDeviceGraphMemTrim`);
    /// under the emulator a dropped graph's memory is gone with it.
    pub(crate) fn trim_graph_memory(&self) -> Result<()> {
        if let Exec::Gpu(g) = &self.inner.exec {
            self.sync()?;
            g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
            // SAFETY: a valid device handle; only unused graph memory is released.
            unsafe { sys::cuDeviceGraphMemTrim(g.ctx.cu_device()) }
                .result()
                .map_err(drv_err("cuDeviceGraphMemTrim"))?;
        }
        Ok(())
    }
}
