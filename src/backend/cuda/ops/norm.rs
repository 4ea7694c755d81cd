//! Host code of `kernels/norm.cu`: normalisation over groups (layer, batch and instance norm) and
//! its backward, as one launch for small per-sample groups or statistics then apply. CPU
//! reference: `backend::cpu::norm::{normalize, normalize_backward}`.

use super::{same_shape, segments};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::Group;
use crate::Result;

/// Largest per-sample group that layer norm handles in one launch (one block per sample, 64
/// elements per thread): beyond it, the separate elementwise pass has more parallelism.
pub(crate) const FUSED_NORM_MAX_LEN: usize = 64 * BLOCK as usize;

impl Cuda {
    pub(super) fn try_normalize(
        &self,
        x: &CudaTensor,
        g: Option<&CudaTensor>,
        group: Group,
        eps: f64,
    ) -> Result<CudaTensor> {
        let (seg, map) = segments("normalize", &x.shape, group)?;
        if let Some(g) = g {
            same_shape("normalize_backward", g, x)?;
        }
        let out = self.empty(&x.shape)?;
        let (count, n) = (seg.count as usize, x.numel());
        if n == 0 || count == 0 {
            return Ok(out);
        }
        let p = P::NormParams { seg, map, eps: eps as f32 };
        let (o, xp) = (self.ptr(&out)?, self.ptr(x)?);
        if g.is_none() && group == Group::Sample && seg.len as usize <= FUSED_NORM_MAX_LEN && self.fused_norm() {
            launch!(self, Module::Norm, "normalize_fused_f32", (count as u32, 1, 1), BLOCK, o, xp, p);
            return Ok(out);
        }
        match g {
            None => {
                let stats = self.empty(&[2 * count])?;
                let sp = self.ptr(&stats)?;
                launch!(self, Module::Norm, "normalize_stats_f32", (count as u32, 1, 1), BLOCK, sp, xp, p);
                launch!(self, Module::Norm, "normalize_apply_f32", (grid_1d(n), 1, 1), BLOCK, o, xp, sp, p);
            }
            Some(g) => {
                let stats = self.empty(&[4 * count])?;
                let (sp, gp) = (self.ptr(&stats)?, self.ptr(g)?);
                launch!(self, Module::Norm, "normalize_backward_stats_f32", (count as u32, 1, 1), BLOCK, sp, gp, xp, p);
                launch!(
                    self,
                    Module::Norm,
                    "normalize_backward_apply_f32",
                    (grid_1d(n), 1, 1),
                    BLOCK,
                    o,
                    gp,
                    xp,
                    sp,
                    p
                );
            }
        }
        Ok(out)
    }
}
