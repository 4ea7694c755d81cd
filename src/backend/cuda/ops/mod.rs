//! The `Backend` implementation, by op family: each module holds the host code (shape checks,
//! launch geometry, one kernel or a short fixed sequence per op) of one kernel file, and names the
//! CPU function it must agree with. `backend.rs` is the trait impl itself, one forwarding line per
//! method; each `try_*` returns a `Result`, and the trait method records a failure (see
//! [`Cuda::check`]).
//!
//! | module | kernels | ops |
//! |---|---|---|
//! | `tensor.rs` | `elementwise.cu` (`fill_f32`), driver copies | from/to host, fill, view, copies |
//! | `elementwise.rs` | `elementwise.cu` | unary and binary maps, per-group broadcast/scale/offset |
//! | `logistic.rs` | `logistic.cu` | sigmoid, sigmoid cross-entropy |
//! | `reduce.rs` | `reduce.cu` | group sums |
//! | `gemm.rs` | `gemm.cu` | f32 matrix products with their epilogue; tiles and split-K |
//! | `conv.rs` | `conv.cu` | f32 convolution passes (implicit GEMMs on `gemm.rs`'s tiles) |
//! | `tc.rs` | `gemm_tc.cu`, `conv_tc.cu` | the same at TF32/BF16 on the tensor cores |
//! | `norm.rs` | `norm.cu` | normalisation over groups and its backward |
//! | `penalty.rs` | `penalty.cu` | critic input, gradient penalty |
//! | `fused.rs` | `fused.cu` | Hessian–vector products, group affine, running statistics |
//! | `rng.rs` | `rng.cu` | normal and uniform draws |
//! | `optim.rs` | `optim.cu` | Adam, RMSProp, clipping, axpby |
//! | `step.rs` | `rng.cu`, `optim.cu`, `elementwise.cu` | device-resident step counters, batch gathers |
//!
//! This layer sits above `device.rs` (tensors, allocation, launches) and `graph.rs` (capture),
//! and nothing below imports from it.

mod backend;
mod conv;
mod elementwise;
mod fused;
mod gemm;
mod logistic;
mod norm;
mod optim;
mod penalty;
mod reduce;
mod rng;
mod step;
mod tc;
mod tensor;

use super::device::{Cuda, CudaTensor};
use super::params as P;
use crate::backend::{inner, numel, Group};
use crate::{bail, Result};

fn same_shape(what: &str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
    if a.shape != b.shape {
        bail!("CUDA {what}: shapes {:?} and {:?} differ", a.shape, b.shape);
    }
    Ok(())
}

fn i64_of(n: usize) -> i64 {
    n as i64
}

fn u32_of(what: &str, n: usize) -> Result<u32> {
    if n >= (1usize << 31) {
        bail!("CUDA {what}: extent {n} does not fit the kernel's 32-bit index (< 2^31)");
    }
    Ok(n as u32)
}

/// The strided-segment description of `group` over `shape` (see common.cuh).
fn segments(what: &str, shape: &[usize], group: Group) -> Result<(P::Segments, P::GroupMap)> {
    let n = numel(shape);
    let (count, len, run, outer, gstride, div, modulus) = match group {
        Group::All => (1, n, n, 0, n, 1, 1),
        Group::Sample => {
            if shape.is_empty() {
                bail!("CUDA {what}: Group::Sample needs at least one dimension");
            }
            let l = n / shape[0].max(1);
            (shape[0], l, l, 0, l, l, shape[0])
        }
        Group::Channel => {
            if shape.len() < 2 {
                bail!("CUDA {what}: Group::Channel needs at least two dimensions, got {shape:?}");
            }
            let (c, inn) = (shape[1], inner(shape));
            (c, shape[0] * inn, inn, c * inn, inn, inn, c)
        }
    };
    let seg = P::Segments {
        count: i64_of(count),
        len: i64_of(len),
        run: i64_of(run.max(1)),
        outer_stride: i64_of(outer),
        group_stride: i64_of(gstride),
    };
    let map = P::GroupMap { n: i64_of(n), div: i64_of(div.max(1)), modulus: i64_of(modulus.max(1)) };
    Ok((seg, map))
}

impl Cuda {
    /// Records the failure of an in-place op (one that returns no tensor to carry it).
    fn note(&self, r: Result<()>) {
        if let Err(e) = r {
            self.record(e);
        }
    }
}
