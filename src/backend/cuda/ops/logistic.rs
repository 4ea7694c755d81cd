//! Host code of `kernels/logistic.cu`: `sigmoid` and `sigmoid_cross_entropy`, one launch each.
//! CPU reference: `backend::cpu::elementwise::{sigmoid, sigmoid_cross_entropy}`.

use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::{bail, Result};

impl Cuda {
    /// Launches `name` (a kernel of logistic.cu) over every element of `x`; `z` is the label.
    fn logistic(&self, name: &'static str, x: &CudaTensor, z: f32) -> Result<CudaTensor> {
        let out = self.empty(&x.shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let Ok(n64) = i64::try_from(n) else { bail!("CUDA {name}: {n} elements do not fit in i64") };
        let p = P::Scalar { n: n64, c: z };
        let (o, px) = (self.ptr(&out)?, self.ptr(x)?);
        let g = (grid_1d(n), 1, 1);
        match name {
            "sigmoid_f32" => launch!(self, Module::Logistic, "sigmoid_f32", g, BLOCK, o, px, p),
            "sigmoid_cross_entropy_f32" => {
                launch!(self, Module::Logistic, "sigmoid_cross_entropy_f32", g, BLOCK, o, px, p)
            }
            _ => bail!("CUDA: no logistic kernel {name}"),
        }
        Ok(out)
    }

    pub(crate) fn try_sigmoid(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.logistic("sigmoid_f32", x, 0.0)
    }

    pub(crate) fn try_sigmoid_cross_entropy(&self, x: &CudaTensor, z: f64) -> Result<CudaTensor> {
        self.logistic("sigmoid_cross_entropy_f32", x, z as f32)
    }
}
