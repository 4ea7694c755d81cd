//! Host code of `kernels/optim.cu`: the in-place optimiser updates (Adam, RMSProp, weight
//! clipping, y ← a·y + b·x); Adam with a device-resident step count is in `step.rs`. CPU
//! reference: `backend::cpu::optim`.

use super::{i64_of, same_shape};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::{AdamStep, RmsPropStep};
use crate::{bail, Result};

impl Cuda {
    pub(super) fn try_adam(
        &self,
        p: &CudaTensor,
        g: &CudaTensor,
        m: &CudaTensor,
        v: &CudaTensor,
        s: AdamStep,
    ) -> Result<()> {
        same_shape("adam", p, g)?;
        same_shape("adam", p, m)?;
        same_shape("adam", p, v)?;
        if p.overlaps(m) || p.overlaps(v) || m.overlaps(v) {
            bail!("CUDA adam: the parameter and moment buffers overlap");
        }
        let n = p.numel();
        if n == 0 {
            return Ok(());
        }
        let g_copy = self.read_copy(g, &[p, m, v])?;
        let g = g_copy.as_ref().unwrap_or(g);
        let t = s.t.max(1) as f64;
        let bc1 = 1.0 - s.beta1.powf(t);
        let bc2 = 1.0 - s.beta2.powf(t);
        let a = P::AdamParams {
            n: i64_of(n),
            beta1: s.beta1 as f32,
            one_minus_beta1: (1.0 - s.beta1) as f32,
            beta2: s.beta2 as f32,
            one_minus_beta2: (1.0 - s.beta2) as f32,
            eps: s.eps as f32,
            step_size: (s.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        };
        let args = (self.ptr(p)?, self.ptr(g)?, self.ptr(m)?, self.ptr(v)?);
        launch!(self, Module::Optim, "adam_f32", (grid_1d(n), 1, 1), BLOCK, args.0, args.1, args.2, args.3, a);
        Ok(())
    }

    pub(super) fn try_rmsprop(&self, p: &CudaTensor, g: &CudaTensor, v: &CudaTensor, s: RmsPropStep) -> Result<()> {
        same_shape("rmsprop", p, g)?;
        same_shape("rmsprop", p, v)?;
        if p.overlaps(v) {
            bail!("CUDA rmsprop: the parameter and mean-square buffers overlap");
        }
        let n = p.numel();
        if n == 0 {
            return Ok(());
        }
        let g_copy = self.read_copy(g, &[p, v])?;
        let g = g_copy.as_ref().unwrap_or(g);
        let r = P::RmsPropParams {
            n: i64_of(n),
            lr: s.lr as f32,
            alpha: s.alpha as f32,
            one_minus_alpha: (1.0 - s.alpha) as f32,
            eps: s.eps as f32,
            clip: s.clip.unwrap_or(0.0) as f32,
            has_clip: s.clip.is_some() as i32,
        };
        let args = (self.ptr(p)?, self.ptr(g)?, self.ptr(v)?);
        launch!(self, Module::Optim, "rmsprop_f32", (grid_1d(n), 1, 1), BLOCK, args.0, args.1, args.2, r);
        Ok(())
    }

    pub(super) fn try_clamp(&self, p: &CudaTensor, c: f64) -> Result<()> {
        let n = p.numel();
        if n > 0 {
            let q = P::Scalar { n: i64_of(n), c: c as f32 };
            launch!(self, Module::Optim, "clamp_f32", (grid_1d(n), 1, 1), BLOCK, self.ptr(p)?, q);
        }
        Ok(())
    }

    pub(super) fn try_axpby(&self, y: &CudaTensor, a: f64, x: &CudaTensor, b: f64) -> Result<()> {
        same_shape("axpby", y, x)?;
        let n = y.numel();
        if n > 0 {
            let x_copy = self.read_copy(x, &[y])?;
            let x = x_copy.as_ref().unwrap_or(x);
            let q = P::AxpbyParams { n: i64_of(n), a: a as f32, b: b as f32 };
            launch!(self, Module::Optim, "axpby_f32", (grid_1d(n), 1, 1), BLOCK, self.ptr(y)?, self.ptr(x)?, q);
        }
        Ok(())
    }
}
