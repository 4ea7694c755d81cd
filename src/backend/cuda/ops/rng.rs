//! Host code of `kernels/rng.cu`: counter-based normal and uniform draws (the step counters'
//! `*_at` variants are in `step.rs`). CPU reference: `backend::cpu::elementwise::random`.

use super::i64_of;
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::Result;

impl Cuda {
    pub(super) fn try_random(&self, shape: &[usize], seed: u64, stream: u64, normal: bool) -> Result<CudaTensor> {
        let out = self.empty(shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::RngParams { n: i64_of(n), seed, stream };
        let g = (grid_1d(n), 1, 1);
        if normal {
            launch!(self, Module::Rng, "randn_f32", g, BLOCK, self.ptr(&out)?, p);
        } else {
            launch!(self, Module::Rng, "rand_uniform_f32", g, BLOCK, self.ptr(&out)?, p);
        }
        Ok(out)
    }
}
