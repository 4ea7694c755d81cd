//! Tensors in and out of the device: host copies, fills, views and device copies (`fill_f32` of
//! `kernels/elementwise.cu`, otherwise the driver's copies). CPU reference: `Cpu`'s `from_f32`,
//! `fill`, `view`, `copy_into_inplace` and `deep_copy` (`backend::cpu`, `backend::cpu::storage`).

use std::sync::Arc;

use super::i64_of;
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::numel;
use crate::{bail, Error, Result};

impl Cuda {
    pub(super) fn host_to_device(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        if data.len() != numel(shape) {
            bail!("CUDA from_f32: {} values for shape {shape:?}", data.len());
        }
        let mut s = self.alloc(data.len())?;
        if !data.is_empty() {
            self.upload(data, &mut s)?;
        }
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(Arc::new(s)), offset: 0 })
    }

    pub(super) fn device_to_host(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        let s =
            t.storage.as_ref().ok_or_else(|| Error::msg("CUDA: reading a tensor from an op that failed earlier"))?;
        let mut out = vec![0f32; t.numel()];
        self.download(s, t.offset, &mut out)?;
        if let Some(e) = self.pending_error() {
            return Err(e);
        }
        Ok(out)
    }

    fn pending_error(&self) -> Option<Error> {
        self.check().err()
    }

    pub(super) fn read(&self, t: &CudaTensor) -> Vec<f32> {
        self.device_to_host(t).unwrap_or_else(|e| {
            self.record(e);
            vec![f32::NAN; t.numel()]
        })
    }

    pub(super) fn try_fill(&self, shape: &[usize], value: f64) -> Result<CudaTensor> {
        let out = self.empty(shape)?;
        let n = out.numel();
        if n > 0 {
            let p = P::Scalar { n: i64_of(n), c: value as f32 };
            launch!(self, Module::Elementwise, "fill_f32", (grid_1d(n), 1, 1), BLOCK, self.ptr(&out)?, p);
        }
        Ok(out)
    }

    pub(super) fn try_view(&self, t: &CudaTensor, offset: usize, shape: &[usize]) -> Result<CudaTensor> {
        let s = t.storage.as_ref().ok_or_else(|| Error::msg("CUDA view of a tensor from an op that failed earlier"))?;
        let start = t.offset + offset;
        if start + numel(shape) > s.len() {
            bail!(
                "CUDA view: {shape:?} at offset {offset} exceeds the storage ({} elements from {})",
                s.len(),
                t.offset
            );
        }
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(s.clone()), offset: start })
    }

    pub(super) fn try_copy_into(&self, dst: &CudaTensor, offset: usize, src: &CudaTensor) -> Result<()> {
        let n = src.numel();
        let d =
            dst.storage.as_ref().ok_or_else(|| Error::msg("CUDA copy_into_inplace: destination from a failed op"))?;
        if dst.offset + offset + n > d.len() {
            bail!("CUDA copy_into_inplace: {n} elements at offset {offset} exceed the destination");
        }
        let dp = self.ptr(dst)? + (offset as u64) * 4;
        if src.overlaps_window(dst.storage.as_ref(), dst.offset + offset, n) {
            // cuMemcpyDtoD promises nothing for overlapping ranges (the CPU's copy is a memmove).
            let tmp = self.try_deep_copy(src)?;
            return self.copy_dtod(dp, self.ptr(&tmp)?, n);
        }
        self.copy_dtod(dp, self.ptr(src)?, n)
    }

    /// `x` itself, or a copy of it when it overlaps one of the buffers an in-place op writes.
    pub(super) fn read_copy(&self, x: &CudaTensor, written: &[&CudaTensor]) -> Result<Option<CudaTensor>> {
        Ok(if written.iter().any(|w| w.overlaps(x)) { Some(self.try_deep_copy(x)?) } else { None })
    }

    pub(super) fn try_deep_copy(&self, t: &CudaTensor) -> Result<CudaTensor> {
        let out = self.empty(&t.shape)?;
        self.copy_dtod(self.ptr(&out)?, self.ptr(t)?, t.numel())?;
        Ok(out)
    }
}
