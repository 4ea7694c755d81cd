//! Host code of `kernels/elementwise.cu`: unary and binary maps (arithmetic, leaky ReLU, tanh and
//! their backward) and the per-group broadcast, scale and offset. CPU reference:
//! `backend::cpu::elementwise::{map, zip, leaky_relu, tanh_backward, group_map, group_broadcast}`.

use super::{i64_of, same_shape, segments};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::Group;
use crate::{bail, Result};

impl Cuda {
    pub(super) fn binary(&self, name: &'static str, a: &CudaTensor, b: &CudaTensor, c: f32) -> Result<CudaTensor> {
        same_shape(name, a, b)?;
        let out = self.empty(&a.shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::Scalar { n: i64_of(n), c };
        let (o, pa, pb) = (self.ptr(&out)?, self.ptr(a)?, self.ptr(b)?);
        let g = (grid_1d(n), 1, 1);
        match name {
            "add_f32" => launch!(self, Module::Elementwise, "add_f32", g, BLOCK, o, pa, pb, p),
            "sub_f32" => launch!(self, Module::Elementwise, "sub_f32", g, BLOCK, o, pa, pb, p),
            "mul_f32" => launch!(self, Module::Elementwise, "mul_f32", g, BLOCK, o, pa, pb, p),
            "leaky_relu_backward_f32" => {
                launch!(self, Module::Elementwise, "leaky_relu_backward_f32", g, BLOCK, o, pa, pb, p)
            }
            "tanh_backward_f32" => launch!(self, Module::Elementwise, "tanh_backward_f32", g, BLOCK, o, pa, pb, p),
            _ => bail!("CUDA: no binary kernel {name}"),
        }
        Ok(out)
    }

    pub(super) fn unary(&self, name: &'static str, a: &CudaTensor, c: f32) -> Result<CudaTensor> {
        let out = self.empty(&a.shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::Scalar { n: i64_of(n), c };
        let (o, pa) = (self.ptr(&out)?, self.ptr(a)?);
        let g = (grid_1d(n), 1, 1);
        match name {
            "scale_f32" => launch!(self, Module::Elementwise, "scale_f32", g, BLOCK, o, pa, p),
            "add_scalar_f32" => launch!(self, Module::Elementwise, "add_scalar_f32", g, BLOCK, o, pa, p),
            "powf_f32" => launch!(self, Module::Elementwise, "powf_f32", g, BLOCK, o, pa, p),
            "leaky_relu_f32" => launch!(self, Module::Elementwise, "leaky_relu_f32", g, BLOCK, o, pa, p),
            "tanh_f32" => launch!(self, Module::Elementwise, "tanh_f32", g, BLOCK, o, pa, p),
            _ => bail!("CUDA: no unary kernel {name}"),
        }
        Ok(out)
    }

    pub(super) fn try_group_elementwise(
        &self,
        name: &'static str,
        x: Option<&CudaTensor>,
        v: &CudaTensor,
        group: Group,
        shape: &[usize],
    ) -> Result<CudaTensor> {
        let (seg, map) = segments(name, shape, group)?;
        if v.numel() != seg.count as usize {
            bail!("CUDA {name}: {} group values for {} groups of {shape:?}", v.numel(), seg.count);
        }
        if let Some(x) = x {
            if x.shape != shape {
                bail!("CUDA {name}: shape mismatch");
            }
        }
        let out = self.empty(shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let g = (grid_1d(n), 1, 1);
        let (o, vp) = (self.ptr(&out)?, self.ptr(v)?);
        match (name, x) {
            ("group_broadcast_f32", None) => {
                launch!(self, Module::Elementwise, "group_broadcast_f32", g, BLOCK, o, vp, map)
            }
            ("group_mul_f32", Some(x)) => {
                launch!(self, Module::Elementwise, "group_mul_f32", g, BLOCK, o, self.ptr(x)?, vp, map)
            }
            ("group_add_f32", Some(x)) => {
                launch!(self, Module::Elementwise, "group_add_f32", g, BLOCK, o, self.ptr(x)?, vp, map)
            }
            _ => bail!("CUDA: no group kernel {name}"),
        }
        Ok(out)
    }
}
