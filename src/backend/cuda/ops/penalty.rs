//! Host code of `kernels/penalty.cu`: the critic's input (real, fake and interpolated samples in
//! one batch) and the gradient penalty with its derivative. CPU reference:
//! `backend::cpu::elementwise::{interpolate, critic_input}` and `backend::cpu::norm::penalty`.

use super::{i64_of, same_shape};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::PenaltyKind;
use crate::{bail, Result};

/// Largest gradient whose penalty one block computes in one launch (`penalty_fused_f32`); larger
/// ones take a block per sample and a second launch for the mean.
pub(crate) const PENALTY_FUSED_MAX: usize = 1 << 16;

impl Cuda {
    pub(super) fn try_interpolate(&self, x: &CudaTensor, xt: &CudaTensor, eps: &CudaTensor) -> Result<CudaTensor> {
        same_shape("interpolate", x, xt)?;
        if x.shape.is_empty() {
            bail!("CUDA interpolate: needs a batch dimension, got a 0-d tensor");
        }
        let samples = x.shape[0];
        if eps.numel() != samples {
            bail!("CUDA interpolate: {} ε values for {samples} samples", eps.numel());
        }
        let out = self.empty(&x.shape)?;
        let n = x.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::InterpParams { n: i64_of(n), per_sample: i64_of(n / samples) };
        let args = (self.ptr(&out)?, self.ptr(x)?, self.ptr(xt)?, self.ptr(eps)?);
        launch!(self, Module::Penalty, "interpolate_f32", (grid_1d(n), 1, 1), BLOCK, args.0, args.1, args.2, args.3, p);
        Ok(out)
    }

    pub(super) fn try_critic_input(
        &self,
        x: &CudaTensor,
        xt: &CudaTensor,
        eps: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        same_shape("critic_input", x, xt)?;
        if x.shape.is_empty() {
            bail!("CUDA critic_input: needs a batch dimension, got a 0-d tensor");
        }
        let samples = x.shape[0];
        if let Some(e) = eps {
            if e.numel() != samples {
                bail!("CUDA critic_input: {} ε values for {samples} samples", e.numel());
            }
        }
        let mut shape = x.shape.clone();
        shape[0] *= if eps.is_some() { 3 } else { 2 };
        let out = self.empty(&shape)?;
        let n = x.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::InterpParams { n: i64_of(n), per_sample: i64_of(n / samples) };
        let ep = match eps {
            Some(e) => self.ptr(e)?,
            None => 0,
        };
        let args = (self.ptr(&out)?, self.ptr(x)?, self.ptr(xt)?, ep);
        launch!(
            self,
            Module::Penalty,
            "critic_input_f32",
            (grid_1d(n), 1, 1),
            BLOCK,
            args.0,
            args.1,
            args.2,
            args.3,
            p
        );
        Ok(out)
    }

    pub(super) fn try_penalty(&self, g: &CudaTensor, kind: PenaltyKind, eps: f64) -> Result<(CudaTensor, CudaTensor)> {
        let samples = g.shape.first().copied().unwrap_or(0);
        let n = g.numel();
        let value = self.empty(&[1])?;
        let dg = self.empty(&g.shape)?;
        let p = P::PenaltyParams {
            samples: i64_of(samples),
            per_sample: i64_of(n.checked_div(samples).unwrap_or(0)),
            eps: eps as f32,
            one_sided: (kind == PenaltyKind::OneSided) as i32,
        };
        if n <= PENALTY_FUSED_MAX && self.fused_norm() {
            let args = (self.ptr(&value)?, self.ptr(&dg)?, self.ptr(g)?);
            launch!(self, Module::Penalty, "penalty_fused_f32", (1, 1, 1), BLOCK, args.0, args.1, args.2, p);
            return Ok((value, dg));
        }
        let per = self.empty(&[samples])?;
        if samples > 0 {
            let args = (self.ptr(&dg)?, self.ptr(&per)?, self.ptr(g)?);
            launch!(
                self,
                Module::Penalty,
                "penalty_sample_f32",
                (samples as u32, 1, 1),
                BLOCK,
                args.0,
                args.1,
                args.2,
                p
            );
        }
        launch!(self, Module::Penalty, "penalty_mean_f32", (1, 1, 1), BLOCK, self.ptr(&value)?, self.ptr(&per)?, p);
        Ok((value, dg))
    }
}
