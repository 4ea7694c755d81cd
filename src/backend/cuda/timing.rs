//! Timing on the GPU for the benchmarks: CUDA events around queued work, an L2 flush so the cache
//! is not what is measured, and the copy-bandwidth ceiling measured in the same run.

use super::device::{drv_err, launch, Cuda};
use super::kernels::Module;
use super::params::PeakParams;
use crate::Result;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaSlice;

/// Bytes written by `flush_l2`: larger than any current L2 (H100: 50 MB, H200: 60 MB… B200: 126 MB).
const FLUSH_BYTES: usize = 256 << 20;

impl Cuda {
    /// Median and minimum in ms of `runs` executions of the work `f` queues, timed with CUDA
    /// events, after `warm` warm-up runs; the L2 cache is flushed before each timed run when
    /// `flush` is set.
    pub fn time_events(&self, warm: usize, runs: usize, flush: bool, mut f: impl FnMut()) -> Result<(f64, f64)> {
        let gpu = self.gpu("event timing")?;
        let (ctx, stream) = (&gpu.ctx, &gpu.stream);
        let start = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(drv_err("creating an event"))?;
        let end = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(drv_err("creating an event"))?;
        let mut scratch = if flush { Some(self.raw_alloc(FLUSH_BYTES / 4)?) } else { None };
        for _ in 0..warm {
            f();
        }
        let mut t = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            if let Some(s) = scratch.as_mut() {
                self.flush_with(s)?;
            }
            start.record(stream).map_err(drv_err("recording an event"))?;
            f();
            end.record(stream).map_err(drv_err("recording an event"))?;
            t.push(start.elapsed_ms(&end).map_err(drv_err("reading an event"))? as f64);
        }
        self.check()?;
        t.sort_by(|a, b| a.total_cmp(b));
        Ok((t[t.len() / 2], t[0]))
    }

    fn flush_with(&self, s: &mut CudaSlice<f32>) -> Result<()> {
        self.gpu("flushing L2")?.stream.memset_zeros(s).map_err(drv_err("flushing L2"))
    }

    /// Device memory outside the tensor allocator (no poisoning), for the ceilings.
    fn raw_alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: uninitialised memory that is only ever written (flush) or copied (bandwidth).
        unsafe { self.gpu("allocating")?.stream.alloc::<f32>(n) }.map_err(drv_err("allocating device memory"))
    }

    /// Device-to-device copy bandwidth in GB/s (bytes read + written), from a 1 GiB copy: the
    /// ceiling for memory-bound kernels, measured on this device.
    pub fn copy_bandwidth_gbs(&self) -> Result<f64> {
        let n = (1usize << 30) / 4 / 2;
        let src = self.raw_alloc(n)?;
        let mut dst = self.raw_alloc(n)?;
        let stream = self.gpu("copy bandwidth")?.stream.clone();
        let (ms, _) = self.time_events(2, 10, false, || {
            if let Err(e) = stream.memcpy_dtod(&src, &mut dst) {
                self.record(crate::Error(format!("CUDA copy: {e}")));
            }
        })?;
        Ok(2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9)
    }

    /// The device's f32 FMA rate in TFLOP/s, from `kernels/peak.cu`: the arithmetic ceiling.
    pub fn fma_peak_tflops(&self) -> Result<f64> {
        let (blocks, threads, iters) = (1024u32 * 8, 256u32, 4096i64);
        let out = self.raw_alloc((blocks * threads) as usize)?;
        let stream = self.gpu("FMA peak")?.stream.clone();
        let (ms, _) = self.time_events(1, 5, false, || {
            let r = (|| -> Result<()> {
                let q = PeakParams { iters, a: 0.999_9, b: 1e-4 };
                let (p, _g) = cudarc::driver::DevicePtr::device_ptr(&out, &stream);
                launch!(self, Module::Peak, "fma_peak_f32", (blocks, 1, 1), threads, p, q);
                Ok(())
            })();
            if let Err(e) = r {
                self.record(e);
            }
        })?;
        let flops = blocks as f64 * threads as f64 * iters as f64 * 16.0;
        Ok(flops / (ms * 1e-3) / 1e12)
    }
}
