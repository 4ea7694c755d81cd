//! Host code of `kernels/reduce.cu`: sums over groups (all, per sample, per channel), split over
//! more blocks for few long groups. CPU reference: `backend::cpu::elementwise::group_sum`.

use super::{i64_of, segments};
use crate::backend::cuda::device::{launch, Cuda, CudaTensor, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::Group;
use crate::Result;

impl Cuda {
    pub(super) fn try_group_sum(&self, x: &CudaTensor, group: Group) -> Result<CudaTensor> {
        let (seg, _) = segments("group_sum", &x.shape, group)?;
        let count = seg.count as usize;
        let out = self.empty(&[count])?;
        if count == 0 {
            return Ok(out);
        }
        let len = seg.len as usize;
        // Long groups are split over more blocks (a second launch adds the partial sums in order)
        // only when there are fewer than 128 groups: from 128 groups on, one block per group
        // already about fills a GPU (132 SMs on an H100), and the second launch would cost more
        // than it saves.
        let mut splits = 1usize;
        if len > 4096 && count < 128 {
            splits = 256usize.div_ceil(count).min(len.div_ceil(2048)).clamp(1, 65535);
        }
        let chunk = len.div_ceil(splits).max(1);
        let splits = len.div_ceil(chunk).max(1);
        let p = P::SumParams { seg, chunk: i64_of(chunk), splits: i64_of(splits) };
        let xp = self.ptr(x)?;
        if splits == 1 {
            launch!(self, Module::Reduce, "group_sum_partial_f32", (count as u32, 1, 1), BLOCK, self.ptr(&out)?, xp, p);
        } else {
            let partial = self.empty(&[count * splits])?;
            let pp = self.ptr(&partial)?;
            launch!(self, Module::Reduce, "group_sum_partial_f32", (count as u32, splits as u32, 1), BLOCK, pp, xp, p);
            launch!(self, Module::Reduce, "group_sum_finish_f32", (count as u32, 1, 1), BLOCK, self.ptr(&out)?, pp, p);
        }
        Ok(out)
    }
}
