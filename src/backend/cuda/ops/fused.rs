//! Host code of `kernels/fused.cu`: the Hessian–vector products of layer norm and of the penalty
//! (two launches each, where the tape's composites took about 40 and 20), and batch norm's running
//! statistics (one launch, where the composite took about ten). CPU reference:
//! `backend::cpu::fused`.

use cudarc::driver::DeviceRepr;

use super::{i64_of, same_shape, segments};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::{Group, PenaltyKind};
use crate::{bail, Result};

/// fused.cu `RunningParams`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct RunningParams {
    seg: P::Segments,
    a: f32,
    b: f32,
}

// SAFETY: plain-old-data with C layout, matching fused.cu.
unsafe impl DeviceRepr for RunningParams {}
const _: () = assert!(std::mem::size_of::<RunningParams>() == 48);

/// fused.cu `AffineParams`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct AffineParams {
    map: P::GroupMap,
    slope: f32,
    leaky: i32,
}

// SAFETY: plain-old-data with C layout, matching fused.cu.
unsafe impl DeviceRepr for AffineParams {}
const _: () = assert!(std::mem::size_of::<AffineParams>() == 32);

impl Cuda {
    pub(crate) fn try_normalize_hvp(
        &self,
        gg: &CudaTensor,
        h: &CudaTensor,
        x: &CudaTensor,
        group: Group,
        eps: f64,
    ) -> Result<CudaTensor> {
        same_shape("normalize_hvp", gg, x)?;
        same_shape("normalize_hvp", h, x)?;
        let (seg, map) = segments("normalize_hvp", &x.shape, group)?;
        let out = self.empty(&x.shape)?;
        let (count, n) = (seg.count as usize, x.numel());
        if n == 0 || count == 0 {
            return Ok(out);
        }
        // fused.cu FusedNormParams has NormParams' layout.
        let p = P::NormParams { seg, map, eps: eps as f32 };
        let stats = self.empty(&[8 * count])?;
        let (sp, gp, hp, xp) = (self.ptr(&stats)?, self.ptr(gg)?, self.ptr(h)?, self.ptr(x)?);
        launch!(self, Module::Fused, "normalize_hvp_stats_f32", (count as u32, 1, 1), BLOCK, sp, gp, hp, xp, p);
        let o = self.ptr(&out)?;
        launch!(self, Module::Fused, "normalize_hvp_apply_f32", (grid_1d(n), 1, 1), BLOCK, o, gp, hp, xp, sp, p);
        Ok(out)
    }

    pub(crate) fn try_group_affine(
        &self,
        x: &CudaTensor,
        s: &CudaTensor,
        b: &CudaTensor,
        group: Group,
        leaky: Option<f64>,
    ) -> Result<CudaTensor> {
        let (seg, map) = segments("group_affine", &x.shape, group)?;
        let c = seg.count as usize;
        if s.numel() != c || b.numel() != c {
            bail!(
                "CUDA group_affine: {c} groups of {:?}, scale of {} and offset of {} values",
                x.shape,
                s.numel(),
                b.numel()
            );
        }
        let out = self.empty(&x.shape)?;
        let n = x.numel();
        if n == 0 {
            return Ok(out);
        }
        let (o, xp, sp, bp) = (self.ptr(&out)?, self.ptr(x)?, self.ptr(s)?, self.ptr(b)?);
        let p = AffineParams { map, slope: leaky.unwrap_or(0.0) as f32, leaky: leaky.is_some() as i32 };
        launch!(self, Module::Fused, "group_affine_f32", (grid_1d(n), 1, 1), BLOCK, o, xp, sp, bp, p);
        Ok(out)
    }

    pub(crate) fn try_batch_norm_running_update(
        &self,
        x: &CudaTensor,
        rm: &CudaTensor,
        rv: &CudaTensor,
        momentum: f64,
    ) -> Result<()> {
        let (seg, _) = segments("batch_norm_running_update", &x.shape, Group::Channel)?;
        let c = seg.count as usize;
        if rm.numel() != c || rv.numel() != c {
            bail!(
                "CUDA batch_norm_running_update: {c} channels, running statistics of {} and {}",
                rm.numel(),
                rv.numel()
            );
        }
        if rm.overlaps(rv) || rm.overlaps(x) || rv.overlaps(x) {
            bail!("CUDA batch_norm_running_update: the running statistics and the input overlap");
        }
        if c == 0 {
            return Ok(());
        }
        let p = RunningParams { seg, a: (1.0 - momentum) as f32, b: momentum as f32 };
        let (mp, vp, xp) = (self.ptr(rm)?, self.ptr(rv)?, self.ptr(x)?);
        launch!(self, Module::Fused, "batch_norm_running_f32", (c as u32, 1, 1), BLOCK, mp, vp, xp, p);
        Ok(())
    }

    pub(crate) fn try_penalty_hvp(
        &self,
        g: &CudaTensor,
        u: &CudaTensor,
        h: &CudaTensor,
        kind: PenaltyKind,
        eps: f64,
    ) -> Result<CudaTensor> {
        same_shape("penalty_hvp", g, h)?;
        if u.numel() != 1 {
            bail!("CUDA penalty_hvp: u must hold one value, got shape {:?}", u.shape);
        }
        if g.shape.is_empty() {
            bail!("CUDA penalty_hvp: needs a batch dimension, got a 0-d tensor");
        }
        let samples = g.shape[0];
        let out = self.empty(&g.shape)?;
        let n = g.numel();
        if n == 0 {
            return Ok(out);
        }
        // fused.cu PenaltyHvpParams has PenaltyParams' layout.
        let p = P::PenaltyParams {
            samples: i64_of(samples),
            per_sample: i64_of(n / samples),
            eps: eps as f32,
            one_sided: (kind == PenaltyKind::OneSided) as i32,
        };
        let coef = self.empty(&[2 * samples])?;
        let (cp, gp, hp) = (self.ptr(&coef)?, self.ptr(g)?, self.ptr(h)?);
        launch!(self, Module::Fused, "penalty_hvp_sample_f32", (samples as u32, 1, 1), BLOCK, cp, gp, hp, p);
        let (o, up) = (self.ptr(&out)?, self.ptr(u)?);
        launch!(self, Module::Fused, "penalty_hvp_apply_f32", (grid_1d(n), 1, 1), BLOCK, o, gp, hp, cp, up, p);
        Ok(out)
    }
}
