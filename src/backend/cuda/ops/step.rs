//! Device-resident step counters: the per-step values (the random draw counter, Adam's step count
//! and bias corrections) that a step captured into a CUDA graph must read from device memory,
//! because a replay keeps the launch arguments of the capture.
//!
//! A counter is a 4-float buffer: a u64 in the first two floats and, for Adam, the step's
//! `step_size` and `bc2_sqrt` in the other two (written by `adam_prepare_f32`).
//!
//! Also the step's other device-side inputs: host values written into a fixed buffer and batch
//! rows gathered on the device. Kernels: `counter_add_u64`, `randn_at_f32`, `rand_uniform_at_f32`
//! (`rng.cu`), `adam_prepare_f32`, `adam_at_f32` (`optim.cu`), `gather_rows_f32`
//! (`elementwise.cu`). CPU reference: `Cpu`'s `counter*`, `*_at` and `gather_rows_inplace`
//! (`backend::cpu`).

use std::sync::Arc;

use super::same_shape;
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::AdamStep;
use crate::{bail, Error, Result};

/// Floats in a counter buffer.
const COUNTER_FLOATS: usize = 4;

fn bits(value: u64) -> [f32; COUNTER_FLOATS] {
    [f32::from_bits(value as u32), f32::from_bits((value >> 32) as u32), 0.0, 0.0]
}

impl Cuda {
    fn counter_ptr(&self, c: &CudaTensor) -> Result<u64> {
        if c.numel() != COUNTER_FLOATS {
            bail!("CUDA: a step counter must be a counter buffer (got shape {:?})", c.shape);
        }
        self.ptr(c)
    }

    pub(crate) fn try_counter(&self, value: u64) -> Result<CudaTensor> {
        let mut s = self.alloc(COUNTER_FLOATS)?;
        self.upload(&bits(value), &mut s)?;
        Ok(CudaTensor { shape: vec![COUNTER_FLOATS], storage: Some(Arc::new(s)), offset: 0 })
    }

    pub(crate) fn try_counter_set(&self, c: &CudaTensor, value: u64) -> Result<()> {
        self.counter_ptr(c)?;
        self.try_write(c, &bits(value)[..2])
    }

    pub(crate) fn try_counter_get(&self, c: &CudaTensor) -> Result<u64> {
        self.counter_ptr(c)?;
        let s = c.storage.as_ref().ok_or_else(|| Error::msg("CUDA: counter from a failed op"))?;
        let mut out = [0f32; 2];
        self.download(s, c.offset, &mut out)?;
        Ok(out[0].to_bits() as u64 | ((out[1].to_bits() as u64) << 32))
    }

    pub(crate) fn try_counter_add(&self, c: &CudaTensor, delta: u64) -> Result<()> {
        let p = self.counter_ptr(c)?;
        launch!(self, Module::Rng, "counter_add_u64", (1, 1, 1), 32, p, delta);
        Ok(())
    }

    pub(crate) fn try_random_at(
        &self,
        shape: &[usize],
        seed: u64,
        stream: u64,
        base: &CudaTensor,
        normal: bool,
    ) -> Result<CudaTensor> {
        let b = self.counter_ptr(base)?;
        let out = self.empty(shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::RngParams { n: n as i64, seed, stream };
        let g = (grid_1d(n), 1, 1);
        if normal {
            launch!(self, Module::Rng, "randn_at_f32", g, BLOCK, self.ptr(&out)?, p, b);
        } else {
            launch!(self, Module::Rng, "rand_uniform_at_f32", g, BLOCK, self.ptr(&out)?, p, b);
        }
        Ok(out)
    }

    pub(crate) fn try_adam_at(
        &self,
        p: &CudaTensor,
        g: &CudaTensor,
        m: &CudaTensor,
        v: &CudaTensor,
        s: AdamStep,
        t: &CudaTensor,
    ) -> Result<()> {
        let state = self.counter_ptr(t)?;
        same_shape("adam", p, g)?;
        same_shape("adam", p, m)?;
        same_shape("adam", p, v)?;
        if p.overlaps(m) || p.overlaps(v) || m.overlaps(v) {
            bail!("CUDA adam: the parameter and moment buffers overlap");
        }
        let prep = P::AdamPrepare { lr: s.lr, beta1: s.beta1, beta2: s.beta2 };
        launch!(self, Module::Optim, "adam_prepare_f32", (1, 1, 1), 32, state, prep);
        let n = p.numel();
        if n == 0 {
            return Ok(());
        }
        // adam_f32's contract: an overlapping read-only gradient is copied first.
        let g_copy = self.read_copy(g, &[p, m, v])?;
        let g = g_copy.as_ref().unwrap_or(g);
        let a = P::AdamParams {
            n: n as i64,
            beta1: s.beta1 as f32,
            one_minus_beta1: (1.0 - s.beta1) as f32,
            beta2: s.beta2 as f32,
            one_minus_beta2: (1.0 - s.beta2) as f32,
            eps: s.eps as f32,
            step_size: 0.0,
            bc2_sqrt: 0.0,
        };
        let args = (self.ptr(p)?, self.ptr(g)?, self.ptr(m)?, self.ptr(v)?);
        launch!(
            self,
            Module::Optim,
            "adam_at_f32",
            (grid_1d(n), 1, 1),
            BLOCK,
            args.0,
            args.1,
            args.2,
            args.3,
            a,
            state
        );
        Ok(())
    }

    pub(crate) fn try_gather_rows(
        &self,
        dst: &CudaTensor,
        src: &CudaTensor,
        idx: &CudaTensor,
        start: usize,
    ) -> Result<()> {
        let rows = dst.shape.first().copied().unwrap_or(0);
        let n = dst.numel();
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let row_len = n / rows;
        if src.shape.is_empty() || src.numel() != src.shape[0] * row_len {
            bail!("CUDA gather_rows: rows of {row_len} values from a tensor of shape {:?}", src.shape);
        }
        if start + rows > idx.numel() {
            bail!("CUDA gather_rows: indices {start}..{} of {}", start + rows, idx.numel());
        }
        if dst.overlaps(src) || dst.overlaps(idx) {
            bail!("CUDA gather_rows: the batch overlaps its source");
        }
        let p = P::GatherParams { n: n as i64, row_len: row_len as i64, start: start as i64 };
        let args = (self.ptr(dst)?, self.ptr(src)?, self.ptr(idx)?);
        launch!(self, Module::Elementwise, "gather_rows_f32", (grid_1d(n), 1, 1), BLOCK, args.0, args.1, args.2, p);
        Ok(())
    }

    /// Bytes of training data to keep on the device: `$WGAN_DEVICE_DATA_MAX` when set, else a
    /// quarter of the GPU's memory (the rest is for the step), 1 GiB under the emulator.
    pub(crate) fn data_budget(&self) -> u64 {
        if let Some(v) = std::env::var("WGAN_DEVICE_DATA_MAX").ok().and_then(|v| v.parse().ok()) {
            return v;
        }
        match &self.inner.exec {
            crate::backend::cuda::device::Exec::Gpu(g) => {
                // SAFETY: a valid device handle of an open context.
                unsafe { cudarc::driver::result::device::total_mem(g.ctx.cu_device()) }.map_or(0, |b| b as u64 / 4)
            }
            crate::backend::cuda::device::Exec::Host(_) => 1 << 30,
        }
    }

    /// Host values into elements [0, data.len()) of `dst`'s window.
    pub(crate) fn try_write(&self, dst: &CudaTensor, data: &[f32]) -> Result<()> {
        if data.len() > dst.numel() {
            bail!("CUDA write: {} values into a tensor of shape {:?}", data.len(), dst.shape);
        }
        let s = dst.storage.as_ref().ok_or_else(|| Error::msg("CUDA write into a tensor from a failed op"))?;
        if data.is_empty() {
            return Ok(());
        }
        self.upload_at(data, s, dst.offset)
    }
}
