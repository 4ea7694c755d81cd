//! Host code of `kernels/conv.cu`: the three convolution passes (forward, data gradient, weight
//! gradient) as implicit GEMMs on the f32 tiles of `gemm.rs`; at TF32/BF16 they go to `tc.rs`
//! (`conv_tc.cu`). CPU reference: `backend::cpu::conv::{conv2d, conv2d_data_grad,
//! conv2d_weight_grad}`.

use super::gemm::{plan_gemm, Gemm};
use super::u32_of;
use crate::backend::cuda::device::{Cuda, CudaTensor};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::{ConvParams, Precision};
use crate::{bail, Result};

impl Cuda {
    fn conv_shape(
        &self,
        what: &str,
        x: [usize; 4],
        co: usize,
        k: usize,
        o: (usize, usize),
        p: ConvParams,
    ) -> Result<P::ConvShape> {
        if p.stride == 0 || k == 0 {
            bail!("CUDA {what}: stride and kernel size must be positive");
        }
        Ok(P::ConvShape {
            n: u32_of(what, x[0])?,
            ci: u32_of(what, x[1])?,
            h: u32_of(what, x[2])?,
            w: u32_of(what, x[3])?,
            co: u32_of(what, co)?,
            k: u32_of(what, k)?,
            ho: u32_of(what, o.0)?,
            wo: u32_of(what, o.1)?,
            stride: u32_of(what, p.stride)?,
            pad: u32_of(what, p.pad)?,
            s_mul: P::ConvShape::stride_divisor(u32_of(what, p.stride)?).0,
            s_shr: P::ConvShape::stride_divisor(u32_of(what, p.stride)?).1,
        })
    }

    pub(super) fn try_conv2d(&self, x: &CudaTensor, w: &CudaTensor, p: ConvParams) -> Result<CudaTensor> {
        let (xs, ws) = (&x.shape, &w.shape);
        if xs.len() != 4 || ws.len() != 4 || ws[1] != xs[1] || ws[2] != ws[3] {
            bail!("CUDA conv2d: x {xs:?} and w {ws:?} do not fit (x [N,Ci,H,W], w [Co,Ci,K,K])");
        }
        let k = ws[2];
        if xs[2] + 2 * p.pad < k || xs[3] + 2 * p.pad < k {
            bail!("CUDA conv2d: kernel {k} larger than the padded input {xs:?}");
        }
        let (ho, wo) = (p.out_size(xs[2], k), p.out_size(xs[3], k));
        let c = self.conv_shape("conv2d", [xs[0], xs[1], xs[2], xs[3]], ws[0], k, (ho, wo), p)?;
        let out = self.empty(&[xs[0], ws[0], ho, wo])?;
        if self.precision() != Precision::F32 {
            self.tc_conv2d(self.ptr(x)?, self.ptr(w)?, &out, [xs[0], xs[1], xs[2], xs[3]], ws[0], k, p)?;
            return Ok(out);
        }
        let tile = self.gemm_tiles().pick(ws[0]);
        let plan = plan_gemm("conv2d", ws[0], xs[0] * ho * wo, xs[1] * k * k, tile)?;
        let name = tile.kernel("conv2d_fwd_f32", "conv2d_fwd_narrow_f32");
        let g = Gemm { module: Module::Conv, name, plan, conv: Some(c) };
        self.run_gemm(g, &out, self.ptr(x)?, self.ptr(w)?, P::GemmEpi::default())?;
        Ok(out)
    }

    pub(super) fn try_conv2d_data_grad(
        &self,
        gy: &CudaTensor,
        w: &CudaTensor,
        p: ConvParams,
        out_hw: (usize, usize),
    ) -> Result<CudaTensor> {
        let (gs, ws) = (&gy.shape, &w.shape);
        if gs.len() != 4 || ws.len() != 4 || ws[0] != gs[1] || ws[2] != ws[3] {
            bail!("CUDA conv2d_data_grad: gy {gs:?} and w {ws:?} do not fit (gy [N,Co,Ho,Wo], w [Co,Ci,K,K])");
        }
        let (n, ci, k) = (gs[0], ws[1], ws[2]);
        let (h, wd) = out_hw;
        let c = self.conv_shape("conv2d_data_grad", [n, ci, h, wd], ws[0], k, (gs[2], gs[3]), p)?;
        let out = self.empty(&[n, ci, h, wd])?;
        if self.precision() != Precision::F32 {
            let (gp, wp) = (self.ptr(gy)?, self.ptr(w)?);
            self.tc_conv2d_data_grad(gp, wp, &out, [n, ci, h, wd], ws[0], k, (gs[2], gs[3]), p)?;
            return Ok(out);
        }
        let tile = self.gemm_tiles().pick(ci);
        let plan = plan_gemm("conv2d_data_grad", ci, n * h * wd, ws[0] * k * k, tile)?;
        let name = tile.kernel("conv2d_dgrad_f32", "conv2d_dgrad_narrow_f32");
        let g = Gemm { module: Module::Conv, name, plan, conv: Some(c) };
        self.run_gemm(g, &out, self.ptr(gy)?, self.ptr(w)?, P::GemmEpi::default())?;
        Ok(out)
    }

    pub(super) fn try_conv2d_weight_grad(
        &self,
        x: &CudaTensor,
        gy: &CudaTensor,
        p: ConvParams,
        k: usize,
    ) -> Result<CudaTensor> {
        let (xs, gs) = (&x.shape, &gy.shape);
        if xs.len() != 4 || gs.len() != 4 || xs[0] != gs[0] {
            bail!("CUDA conv2d_weight_grad: x {xs:?} and gy {gs:?} do not fit");
        }
        let (co, ci) = (gs[1], xs[1]);
        let c = self.conv_shape("conv2d_weight_grad", [xs[0], ci, xs[2], xs[3]], co, k, (gs[2], gs[3]), p)?;
        let out = self.empty(&[co, ci, k, k])?;
        if self.precision() != Precision::F32 {
            let xs4 = [xs[0], ci, xs[2], xs[3]];
            self.tc_conv2d_weight_grad(self.ptr(x)?, self.ptr(gy)?, &out, xs4, (co, gs[2], gs[3]), k, p)?;
            return Ok(out);
        }
        let tile = self.gemm_tiles().pick(co);
        let plan = plan_gemm("conv2d_weight_grad", co, ci * k * k, xs[0] * gs[2] * gs[3], tile)?;
        let name = tile.kernel("conv2d_wgrad_f32", "conv2d_wgrad_narrow_f32");
        let g = Gemm { module: Module::Conv, name, plan, conv: Some(c) };
        self.run_gemm(g, &out, self.ptr(x)?, self.ptr(gy)?, P::GemmEpi::default())?;
        Ok(out)
    }
}
