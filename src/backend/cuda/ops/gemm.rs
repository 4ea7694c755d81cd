//! Host code of `kernels/gemm.cu` (and the split-K reduction): the CUDA-core f32 matrix products
//! with their epilogue (`MatEpi`: bias, activation, gate), tile choice and split-K planning shared
//! with the convolutions (`conv.rs`). TF32/BF16 products go to the tensor cores (`tc.rs`).
//! CPU reference: `backend::cpu::conv::matmul` (and the `linear*`/`matmul_gated` epilogues in
//! `backend::cpu`).

use super::{i64_of, u32_of};
use crate::backend::cuda::device::{grid_1d, launch, Cuda, CudaTensor, GemmTiles, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params as P;
use crate::backend::Precision;
use crate::{bail, Result};

const GEMM_THREADS: u32 = 256;
const TILE_K: usize = 16;

/// The tile a GEMM launch uses (`gemm_tile.cuh`): rows × columns of the output per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tile {
    /// 64 × 64: the general case.
    Square,
    /// 16 × 256: products with at most 16 rows (few channels), which a 64-row tile would mostly waste.
    Narrow,
}

impl Tile {
    fn dims(self) -> (usize, usize) {
        match self {
            Tile::Square => (64, 64),
            Tile::Narrow => (16, 256),
        }
    }
    /// The kernel of a pass on this tile, from the names of its two instantiations.
    pub(super) fn kernel(self, square: &'static str, narrow: &'static str) -> &'static str {
        match self {
            Tile::Square => square,
            Tile::Narrow => narrow,
        }
    }
}

impl GemmTiles {
    pub(super) fn pick(self, rows: usize) -> Tile {
        match self {
            GemmTiles::Auto if rows <= 16 => Tile::Narrow,
            GemmTiles::Auto | GemmTiles::Square => Tile::Square,
            GemmTiles::Narrow => Tile::Narrow,
        }
    }
}

/// The epilogue of a matrix product, as tensors (`P::GemmEpi` once checked): + bias [n] on every
/// row, then `act` (the leaky ReLU of that slope), then the gate (y laid out as the output, and
/// the slope of the activation whose backward it applies).
#[derive(Clone, Copy, Default)]
pub(crate) struct MatEpi<'a> {
    pub bias: Option<&'a CudaTensor>,
    pub act: Option<f64>,
    pub gate: Option<(&'a CudaTensor, f64)>,
}

/// One tiled GEMM launch: the kernel, its planned geometry, and the convolution's shape if any.
pub(super) struct Gemm {
    pub module: Module,
    pub name: &'static str,
    pub plan: (P::GemmShape, (u32, u32, u32), usize),
    pub conv: Option<P::ConvShape>,
}

/// Geometry of a tiled GEMM launch of an m × nc output with reduction kd on `tile`: the shape
/// struct, the grid, and the number of split-K slices (deterministic: depends on the shape only).
pub(super) fn plan_gemm(
    what: &str,
    m: usize,
    nc: usize,
    kd: usize,
    tile: Tile,
) -> Result<(P::GemmShape, (u32, u32, u32), usize)> {
    let (m32, nc32, kd32) = (u32_of(what, m)?, u32_of(what, nc)?, u32_of(what, kd)?);
    let (tm, tn) = tile.dims();
    let (gx, gy) = (nc.div_ceil(tn), m.div_ceil(tm));
    if gy > 65535 {
        bail!("CUDA {what}: {m} output rows exceed one launch (at most {})", 65535 * tm);
    }
    let tiles = (gx * gy).max(1);
    let mut splits = 1usize;
    if kd >= 512 && tiles < 128 {
        splits = 256usize.div_ceil(tiles).min(kd.div_ceil(256)).clamp(1, 64);
    }
    let k_chunk = kd.div_ceil(splits).div_ceil(TILE_K).max(1) * TILE_K;
    let splits = kd.div_ceil(k_chunk).max(1);
    let shape = P::GemmShape { m: m32, nc: nc32, kd: kd32, k_chunk: k_chunk as u32, total: i64_of(m * nc) };
    Ok((shape, (gx.max(1) as u32, gy.max(1) as u32, splits as u32), splits))
}

impl Cuda {
    /// Runs a planned tiled GEMM kernel, through a split-K workspace when the plan splits. `bias`
    /// (a device address, 0 for none) is added per output column by the matmul kernels.
    pub(super) fn run_gemm(&self, g: Gemm, out: &CudaTensor, a: u64, b: u64, epi: P::GemmEpi) -> Result<()> {
        let Gemm { module: m, name, plan: (shape, grid, splits), conv } = g;
        if shape.total == 0 {
            return Ok(());
        }
        let ws = if splits > 1 { Some(self.empty(&[splits * shape.total as usize])?) } else { None };
        let dst = match &ws {
            Some(w) => self.ptr(w)?,
            None => self.ptr(out)?,
        };
        match (name, conv) {
            ("matmul_nn_f32", None) => launch!(self, m, "matmul_nn_f32", grid, GEMM_THREADS, dst, a, b, epi, shape),
            ("matmul_nt_f32", None) => launch!(self, m, "matmul_nt_f32", grid, GEMM_THREADS, dst, a, b, epi, shape),
            ("matmul_tn_f32", None) => launch!(self, m, "matmul_tn_f32", grid, GEMM_THREADS, dst, a, b, epi, shape),
            ("matmul_tt_f32", None) => launch!(self, m, "matmul_tt_f32", grid, GEMM_THREADS, dst, a, b, epi, shape),
            ("conv2d_fwd_f32", Some(c)) => {
                launch!(self, m, "conv2d_fwd_f32", grid, GEMM_THREADS, dst, a, b, P::ConvParams { g: shape, c })
            }
            ("conv2d_dgrad_f32", Some(c)) => {
                launch!(self, m, "conv2d_dgrad_f32", grid, GEMM_THREADS, dst, a, b, P::ConvParams { g: shape, c })
            }
            ("conv2d_wgrad_f32", Some(c)) => {
                launch!(self, m, "conv2d_wgrad_f32", grid, GEMM_THREADS, dst, a, b, P::ConvParams { g: shape, c })
            }
            ("conv2d_fwd_narrow_f32", Some(c)) => {
                let p = P::ConvParams { g: shape, c };
                launch!(self, m, "conv2d_fwd_narrow_f32", grid, GEMM_THREADS, dst, a, b, p)
            }
            ("conv2d_dgrad_narrow_f32", Some(c)) => {
                let p = P::ConvParams { g: shape, c };
                launch!(self, m, "conv2d_dgrad_narrow_f32", grid, GEMM_THREADS, dst, a, b, p)
            }
            ("conv2d_wgrad_narrow_f32", Some(c)) => {
                let p = P::ConvParams { g: shape, c };
                launch!(self, m, "conv2d_wgrad_narrow_f32", grid, GEMM_THREADS, dst, a, b, p)
            }
            _ => bail!("CUDA: no GEMM kernel {name}"),
        }
        if let Some(w) = &ws {
            let total = shape.total as usize;
            let p = P::SplitKParams { total: shape.total, splits: i64_of(splits), cols: i64::from(shape.nc.max(1)) };
            launch!(self, m, "splitk_reduce_f32", (grid_1d(total), 1, 1), BLOCK, self.ptr(out)?, self.ptr(w)?, epi, p);
        }
        Ok(())
    }

    /// op(a)·op(b), then the epilogue `e` (epilogue.cuh): + bias [n] on every row, the activation,
    /// the gate (laid out as the output).
    pub(super) fn try_matmul(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        ta: bool,
        tb: bool,
        e: MatEpi<'_>,
    ) -> Result<CudaTensor> {
        if a.shape.len() != 2 || b.shape.len() != 2 {
            bail!("CUDA matmul: needs 2-D operands, got {:?} and {:?}", a.shape, b.shape);
        }
        let (m, k) = if ta { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
        let (k2, n) = if tb { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
        if k != k2 {
            bail!(
                "CUDA matmul: inner extents differ: {:?}{} · {:?}{}",
                a.shape,
                if ta { "ᵀ" } else { "" },
                b.shape,
                if tb { "ᵀ" } else { "" }
            );
        }
        let bias_ptr = match e.bias {
            Some(v) if v.shape != [n] => bail!("CUDA linear: bias of shape {:?} for {n} output features", v.shape),
            Some(v) => self.ptr(v)?,
            None => 0,
        };
        let (gate_ptr, gate_slope) = match e.gate {
            Some((y, _)) if y.shape != [m, n] => bail!("CUDA matmul_gated: gate of shape {:?} for [{m}, {n}]", y.shape),
            Some((y, s)) => (self.ptr(y)?, s as f32),
            None => (0, 0.0),
        };
        let epi = P::GemmEpi {
            bias: bias_ptr,
            gate: gate_ptr,
            slope: e.act.map(|s| s as f32).unwrap_or(gate_slope),
            act: u32::from(e.act.is_some()),
        };
        let out = self.empty(&[m, n])?;
        if self.precision() != Precision::F32 {
            self.tc_matmul(self.ptr(a)?, self.ptr(b)?, epi, &out, (m, k, n), ta, tb)?;
            return Ok(out);
        }
        let name = match (ta, tb) {
            (false, false) => "matmul_nn_f32",
            (false, true) => "matmul_nt_f32",
            (true, false) => "matmul_tn_f32",
            (true, true) => "matmul_tt_f32",
        };
        let g = Gemm { module: Module::Gemm, name, plan: plan_gemm("matmul", m, n, k, Tile::Square)?, conv: None };
        self.run_gemm(g, &out, self.ptr(a)?, self.ptr(b)?, epi)?;
        Ok(out)
    }
}
