//! The `Backend` implementation: shape checks and launch geometry on the host, one kernel (or a
//! short fixed sequence) per op. Each trait method calls a `try_*` function returning `Result`
//! and records a failure (see [`Cuda::check`]).

use std::sync::Arc;

use super::device::{grid_1d, launch, Cuda, CudaTensor, BLOCK};
use super::kernels::Module;
use super::params as P;
use crate::backend::{inner, numel, AdamStep, Backend, ConvParams, Group, PenaltyKind, Precision, RmsPropStep};
use crate::{bail, Error, Result};

const GEMM_THREADS: u32 = 256;
/// Largest per-sample group that layer norm handles in one launch (one block per sample, 64
/// elements per thread): beyond it, the separate elementwise pass has more parallelism.
pub(crate) const FUSED_NORM_MAX_LEN: usize = 64 * BLOCK as usize;
/// Largest gradient whose penalty one block computes in one launch (`penalty_fused_f32`); larger
/// ones take a block per sample and a second launch for the mean.
pub(crate) const PENALTY_FUSED_MAX: usize = 1 << 16;
const TILE_K: usize = 16;

/// The tile a GEMM launch uses (`gemm_tile.cuh`): rows × columns of the output per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tile {
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
    fn kernel(self, square: &'static str, narrow: &'static str) -> &'static str {
        match self {
            Tile::Square => square,
            Tile::Narrow => narrow,
        }
    }
}

/// Which convolution tiles to use: [`GemmTiles::Auto`] picks the narrow tile for at most 16 output
/// rows; the forced choices are for tests and benchmarks that compare the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTiles {
    Auto,
    Square,
    Narrow,
}

impl GemmTiles {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
    pub(crate) fn from_code(c: u8) -> GemmTiles {
        match c {
            1 => GemmTiles::Square,
            2 => GemmTiles::Narrow,
            _ => GemmTiles::Auto,
        }
    }
    fn pick(self, rows: usize) -> Tile {
        match self {
            GemmTiles::Auto if rows <= 16 => Tile::Narrow,
            GemmTiles::Auto | GemmTiles::Square => Tile::Square,
            GemmTiles::Narrow => Tile::Narrow,
        }
    }
}

pub(super) fn same_shape(what: &str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
    if a.shape != b.shape {
        bail!("CUDA {what}: shapes {:?} and {:?} differ", a.shape, b.shape);
    }
    Ok(())
}

pub(super) fn i64_of(n: usize) -> i64 {
    n as i64
}

fn u32_of(what: &str, n: usize) -> Result<u32> {
    if n >= (1usize << 31) {
        bail!("CUDA {what}: extent {n} does not fit the kernel's 32-bit index (< 2^31)");
    }
    Ok(n as u32)
}

/// The strided-segment description of `group` over `shape` (see common.cuh).
pub(super) fn segments(what: &str, shape: &[usize], group: Group) -> Result<(P::Segments, P::GroupMap)> {
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

/// One tiled GEMM launch: the kernel, its planned geometry, and the convolution's shape if any.
/// The epilogue of a matrix product, as tensors (`P::GemmEpi` once checked): + bias [n] on every
/// row, then `act` (the leaky ReLU of that slope), then the gate (y laid out as the output, and
/// the slope of the activation whose backward it applies).
#[derive(Clone, Copy, Default)]
pub(crate) struct MatEpi<'a> {
    pub bias: Option<&'a CudaTensor>,
    pub act: Option<f64>,
    pub gate: Option<(&'a CudaTensor, f64)>,
}

struct Gemm {
    module: Module,
    name: &'static str,
    plan: (P::GemmShape, (u32, u32, u32), usize),
    conv: Option<P::ConvShape>,
}

/// Geometry of a tiled GEMM launch of an m × nc output with reduction kd on `tile`: the shape
/// struct, the grid, and the number of split-K slices (deterministic: depends on the shape only).
fn plan_gemm(what: &str, m: usize, nc: usize, kd: usize, tile: Tile) -> Result<(P::GemmShape, (u32, u32, u32), usize)> {
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
    fn host_to_device(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        if data.len() != numel(shape) {
            bail!("CUDA from_f32: {} values for shape {shape:?}", data.len());
        }
        let mut s = self.alloc(data.len())?;
        if !data.is_empty() {
            self.upload(data, &mut s)?;
        }
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(Arc::new(s)), offset: 0 })
    }

    fn device_to_host(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        let s =
            t.storage.as_ref().ok_or_else(|| Error::msg("CUDA: reading a tensor from an op that failed earlier"))?;
        let mut out = vec![0f32; t.numel()];
        self.download(s, t.offset, &mut out)?;
        if let Some(e) = self.pending_error() {
            return Err(e);
        }
        Ok(out)
    }

    fn pending_error(&self) -> Option<Error> {
        self.check().err()
    }

    fn read(&self, t: &CudaTensor) -> Vec<f32> {
        self.device_to_host(t).unwrap_or_else(|e| {
            self.record(e);
            vec![f32::NAN; t.numel()]
        })
    }

    fn try_fill(&self, shape: &[usize], value: f64) -> Result<CudaTensor> {
        let out = self.empty(shape)?;
        let n = out.numel();
        if n > 0 {
            let p = P::Scalar { n: i64_of(n), c: value as f32 };
            launch!(self, Module::Elementwise, "fill_f32", (grid_1d(n), 1, 1), BLOCK, self.ptr(&out)?, p);
        }
        Ok(out)
    }

    fn try_view(&self, t: &CudaTensor, offset: usize, shape: &[usize]) -> Result<CudaTensor> {
        let s = t.storage.as_ref().ok_or_else(|| Error::msg("CUDA view of a tensor from an op that failed earlier"))?;
        let start = t.offset + offset;
        if start + numel(shape) > s.len() {
            bail!(
                "CUDA view: {shape:?} at offset {offset} exceeds the storage ({} elements from {})",
                s.len(),
                t.offset
            );
        }
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(s.clone()), offset: start })
    }

    fn try_copy_into(&self, dst: &CudaTensor, offset: usize, src: &CudaTensor) -> Result<()> {
        let n = src.numel();
        let d =
            dst.storage.as_ref().ok_or_else(|| Error::msg("CUDA copy_into_inplace: destination from a failed op"))?;
        if dst.offset + offset + n > d.len() {
            bail!("CUDA copy_into_inplace: {n} elements at offset {offset} exceed the destination");
        }
        let dp = self.ptr(dst)? + (offset as u64) * 4;
        if src.overlaps_window(dst.storage.as_ref(), dst.offset + offset, n) {
            // cuMemcpyDtoD promises nothing for overlapping ranges (the CPU's copy is a memmove).
            let tmp = self.try_deep_copy(src)?;
            return self.copy_dtod(dp, self.ptr(&tmp)?, n);
        }
        self.copy_dtod(dp, self.ptr(src)?, n)
    }

    /// `x` itself, or a copy of it when it overlaps one of the buffers an in-place op writes.
    pub(super) fn read_copy(&self, x: &CudaTensor, written: &[&CudaTensor]) -> Result<Option<CudaTensor>> {
        Ok(if written.iter().any(|w| w.overlaps(x)) { Some(self.try_deep_copy(x)?) } else { None })
    }

    fn try_deep_copy(&self, t: &CudaTensor) -> Result<CudaTensor> {
        let out = self.empty(&t.shape)?;
        self.copy_dtod(self.ptr(&out)?, self.ptr(t)?, t.numel())?;
        Ok(out)
    }

    fn binary(&self, name: &'static str, a: &CudaTensor, b: &CudaTensor, c: f32) -> Result<CudaTensor> {
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

    fn unary(&self, name: &'static str, a: &CudaTensor, c: f32) -> Result<CudaTensor> {
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

    fn try_group_sum(&self, x: &CudaTensor, group: Group) -> Result<CudaTensor> {
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

    fn try_group_elementwise(
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

    /// Runs a planned tiled GEMM kernel, through a split-K workspace when the plan splits. `bias`
    /// (a device address, 0 for none) is added per output column by the matmul kernels.
    fn run_gemm(&self, g: Gemm, out: &CudaTensor, a: u64, b: u64, epi: P::GemmEpi) -> Result<()> {
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
    fn try_matmul(&self, a: &CudaTensor, b: &CudaTensor, ta: bool, tb: bool, e: MatEpi<'_>) -> Result<CudaTensor> {
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

    fn try_conv2d(&self, x: &CudaTensor, w: &CudaTensor, p: ConvParams) -> Result<CudaTensor> {
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

    fn try_conv2d_data_grad(
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

    fn try_conv2d_weight_grad(&self, x: &CudaTensor, gy: &CudaTensor, p: ConvParams, k: usize) -> Result<CudaTensor> {
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

    fn try_normalize(&self, x: &CudaTensor, g: Option<&CudaTensor>, group: Group, eps: f64) -> Result<CudaTensor> {
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

    fn try_interpolate(&self, x: &CudaTensor, xt: &CudaTensor, eps: &CudaTensor) -> Result<CudaTensor> {
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

    fn try_critic_input(&self, x: &CudaTensor, xt: &CudaTensor, eps: Option<&CudaTensor>) -> Result<CudaTensor> {
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

    fn try_penalty(&self, g: &CudaTensor, kind: PenaltyKind, eps: f64) -> Result<(CudaTensor, CudaTensor)> {
        let samples = g.shape.first().copied().unwrap_or(0);
        let n = g.numel();
        let value = self.empty(&[1])?;
        let dg = self.empty(&g.shape)?;
        let p = P::PenaltyParams {
            samples: i64_of(samples),
            per_sample: i64_of(if samples == 0 { 0 } else { n / samples }),
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

    fn try_random(&self, shape: &[usize], seed: u64, stream: u64, normal: bool) -> Result<CudaTensor> {
        let out = self.empty(shape)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let p = P::RngParams { n: i64_of(n), seed, stream };
        let g = (grid_1d(n), 1, 1);
        if normal {
            launch!(self, Module::Rng, "randn_f32", g, BLOCK, self.ptr(&out)?, p);
        } else {
            launch!(self, Module::Rng, "rand_uniform_f32", g, BLOCK, self.ptr(&out)?, p);
        }
        Ok(out)
    }

    fn try_adam(&self, p: &CudaTensor, g: &CudaTensor, m: &CudaTensor, v: &CudaTensor, s: AdamStep) -> Result<()> {
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

    fn try_rmsprop(&self, p: &CudaTensor, g: &CudaTensor, v: &CudaTensor, s: RmsPropStep) -> Result<()> {
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

    fn try_clamp(&self, p: &CudaTensor, c: f64) -> Result<()> {
        let n = p.numel();
        if n > 0 {
            let q = P::Scalar { n: i64_of(n), c: c as f32 };
            launch!(self, Module::Optim, "clamp_f32", (grid_1d(n), 1, 1), BLOCK, self.ptr(p)?, q);
        }
        Ok(())
    }

    fn try_axpby(&self, y: &CudaTensor, a: f64, x: &CudaTensor, b: f64) -> Result<()> {
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

    fn note(&self, r: Result<()>) {
        if let Err(e) = r {
            self.record(e);
        }
    }
}

impl Backend for Cuda {
    type Tensor = CudaTensor;
    /// A 4-float counter buffer (see `step.rs`).
    type Counter = CudaTensor;

    fn set_precision(&self, p: Precision) -> bool {
        Cuda::set_precision(self, p);
        true
    }

    fn name(&self) -> String {
        format!("cuda:{} {}", self.inner.ordinal, self.inner.name)
    }
    fn shape<'a>(&self, t: &'a CudaTensor) -> &'a [usize] {
        &t.shape
    }

    fn from_f32(&self, data: &[f32], shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.host_to_device(data, shape))
    }
    fn from_f64(&self, data: &[f64], shape: &[usize]) -> CudaTensor {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.from_f32(&v, shape)
    }
    fn to_f32(&self, t: &CudaTensor) -> Vec<f32> {
        self.read(t)
    }
    fn to_f64(&self, t: &CudaTensor) -> Vec<f64> {
        self.read(t).into_iter().map(|x| x as f64).collect()
    }
    fn fill(&self, shape: &[usize], value: f64) -> CudaTensor {
        self.finish(shape, self.try_fill(shape, value))
    }
    fn view(&self, t: &CudaTensor, offset: usize, shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.try_view(t, offset, shape))
    }
    fn join_rows(&self, parts: &[&CudaTensor]) -> Option<CudaTensor> {
        let storage = parts.first()?.storage.as_ref()?;
        if !parts.iter().all(|p| p.storage.as_ref().is_some_and(|s| Arc::ptr_eq(s, storage))) {
            return None;
        }
        let shape = crate::backend::joined_rows(parts.iter().map(|p| (&p.shape[..], p.offset)))?;
        let offset = parts[0].offset;
        (offset + numel(&shape) <= storage.len()).then(|| CudaTensor { shape, storage: Some(storage.clone()), offset })
    }
    fn copy_into_inplace(&self, dst: &CudaTensor, offset: usize, src: &CudaTensor) {
        self.note(self.try_copy_into(dst, offset, src))
    }
    fn deep_copy(&self, t: &CudaTensor) -> CudaTensor {
        self.finish(&t.shape, self.try_deep_copy(t))
    }
    fn check(&self) -> crate::Result<()> {
        Cuda::check(self)
    }
    fn failed(&self) -> bool {
        self.has_failed()
    }
    fn synchronize(&self) {
        if let Err(e) = self.sync() {
            self.record(e);
        }
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("add_f32", a, b, 0.0))
    }
    fn sub(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("sub_f32", a, b, 0.0))
    }
    fn mul(&self, a: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        self.finish(&a.shape, self.binary("mul_f32", a, b, 0.0))
    }
    fn scale(&self, a: &CudaTensor, c: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("scale_f32", a, c as f32))
    }
    fn add_scalar(&self, a: &CudaTensor, c: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("add_scalar_f32", a, c as f32))
    }
    fn powf(&self, a: &CudaTensor, p: f64) -> CudaTensor {
        self.finish(&a.shape, self.unary("powf_f32", a, p as f32))
    }
    fn leaky_relu(&self, x: &CudaTensor, slope: f64) -> CudaTensor {
        self.finish(&x.shape, self.unary("leaky_relu_f32", x, slope as f32))
    }
    fn leaky_relu_backward(&self, g: &CudaTensor, x: &CudaTensor, slope: f64) -> CudaTensor {
        self.finish(&g.shape, self.binary("leaky_relu_backward_f32", g, x, slope as f32))
    }
    fn sigmoid(&self, x: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.try_sigmoid(x))
    }
    fn sigmoid_cross_entropy(&self, x: &CudaTensor, z: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_sigmoid_cross_entropy(x, z))
    }
    fn tanh(&self, x: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.unary("tanh_f32", x, 0.0))
    }
    fn tanh_backward(&self, g: &CudaTensor, y: &CudaTensor) -> CudaTensor {
        self.finish(&g.shape, self.binary("tanh_backward_f32", g, y, 0.0))
    }

    fn group_sum(&self, x: &CudaTensor, group: Group) -> CudaTensor {
        let count = segments("group_sum", &x.shape, group).map(|(s, _)| s.count as usize).unwrap_or(0);
        self.finish(&[count], self.try_group_sum(x, group))
    }
    fn group_broadcast(&self, v: &CudaTensor, group: Group, shape: &[usize]) -> CudaTensor {
        self.finish(shape, self.try_group_elementwise("group_broadcast_f32", None, v, group, shape))
    }
    fn group_mul(&self, x: &CudaTensor, s: &CudaTensor, group: Group) -> CudaTensor {
        self.finish(&x.shape, self.try_group_elementwise("group_mul_f32", Some(x), s, group, &x.shape))
    }
    fn group_add(&self, x: &CudaTensor, b: &CudaTensor, group: Group) -> CudaTensor {
        self.finish(&x.shape, self.try_group_elementwise("group_add_f32", Some(x), b, group, &x.shape))
    }

    fn matmul(&self, a: &CudaTensor, b: &CudaTensor, ta: bool, tb: bool) -> CudaTensor {
        let r = self.try_matmul(a, b, ta, tb, MatEpi::default());
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn linear(&self, x: &CudaTensor, w: &CudaTensor, b: &CudaTensor) -> CudaTensor {
        let r = self.try_matmul(x, w, false, true, MatEpi { bias: Some(b), ..MatEpi::default() });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn linear_act(&self, x: &CudaTensor, w: &CudaTensor, b: &CudaTensor, act: Option<f64>) -> CudaTensor {
        let r = self.try_matmul(x, w, false, true, MatEpi { bias: Some(b), act, gate: None });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn matmul_gated(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        ta: bool,
        tb: bool,
        y: &CudaTensor,
        slope: f64,
    ) -> CudaTensor {
        let r = self.try_matmul(a, b, ta, tb, MatEpi { gate: Some((y, slope)), ..MatEpi::default() });
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn conv2d(&self, x: &CudaTensor, w: &CudaTensor, p: ConvParams) -> CudaTensor {
        let r = self.try_conv2d(x, w, p);
        let shape = r.as_ref().map(|t| t.shape.clone()).unwrap_or_default();
        self.finish(&shape, r)
    }
    fn conv2d_data_grad(&self, gy: &CudaTensor, w: &CudaTensor, p: ConvParams, out_hw: (usize, usize)) -> CudaTensor {
        let shape = [gy.shape.first().copied().unwrap_or(0), w.shape.get(1).copied().unwrap_or(0), out_hw.0, out_hw.1];
        self.finish(&shape, self.try_conv2d_data_grad(gy, w, p, out_hw))
    }
    fn conv2d_weight_grad(&self, x: &CudaTensor, gy: &CudaTensor, p: ConvParams, k: usize) -> CudaTensor {
        let shape = [gy.shape.get(1).copied().unwrap_or(0), x.shape.get(1).copied().unwrap_or(0), k, k];
        self.finish(&shape, self.try_conv2d_weight_grad(x, gy, p, k))
    }

    fn normalize(&self, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize(x, None, group, eps))
    }
    fn normalize_backward(&self, g: &CudaTensor, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize(x, Some(g), group, eps))
    }

    fn normalize_hvp(&self, gg: &CudaTensor, h: &CudaTensor, x: &CudaTensor, group: Group, eps: f64) -> CudaTensor {
        self.finish(&x.shape, self.try_normalize_hvp(gg, h, x, group, eps))
    }
    fn group_affine(
        &self,
        x: &CudaTensor,
        s: &CudaTensor,
        b: &CudaTensor,
        group: Group,
        leaky: Option<f64>,
    ) -> CudaTensor {
        self.finish(&x.shape, self.try_group_affine(x, s, b, group, leaky))
    }
    fn batch_norm_running_update(&self, x: &CudaTensor, rm: &CudaTensor, rv: &CudaTensor, momentum: f64) {
        if let Err(e) = self.try_batch_norm_running_update(x, rm, rv, momentum) {
            self.record(e);
        }
    }
    fn penalty_hvp(&self, g: &CudaTensor, u: &CudaTensor, h: &CudaTensor, kind: PenaltyKind, eps: f64) -> CudaTensor {
        self.finish(&g.shape, self.try_penalty_hvp(g, u, h, kind, eps))
    }

    fn interpolate(&self, x: &CudaTensor, x_tilde: &CudaTensor, eps: &CudaTensor) -> CudaTensor {
        self.finish(&x.shape, self.try_interpolate(x, x_tilde, eps))
    }
    fn critic_input(&self, real: &CudaTensor, fake: &CudaTensor, eps: Option<&CudaTensor>) -> CudaTensor {
        let mut shape = real.shape.clone();
        if let Some(n) = shape.first_mut() {
            *n *= if eps.is_some() { 3 } else { 2 };
        }
        self.finish(&shape, self.try_critic_input(real, fake, eps))
    }
    fn penalty(&self, g: &CudaTensor, kind: PenaltyKind, eps: f64) -> (CudaTensor, CudaTensor) {
        match self.try_penalty(g, kind, eps) {
            Ok(r) => r,
            Err(e) => {
                self.record(e);
                let dead = |s: &[usize]| CudaTensor { shape: s.to_vec(), storage: None, offset: 0 };
                (dead(&[1]), dead(&g.shape))
            }
        }
    }

    fn randn(&self, shape: &[usize], seed: u64, stream: u64) -> CudaTensor {
        self.finish(shape, self.try_random(shape, seed, stream, true))
    }
    fn rand_uniform(&self, shape: &[usize], seed: u64, stream: u64) -> CudaTensor {
        self.finish(shape, self.try_random(shape, seed, stream, false))
    }

    fn adam_inplace(&self, p: &CudaTensor, g: &CudaTensor, m: &CudaTensor, v: &CudaTensor, s: AdamStep) {
        self.note(self.try_adam(p, g, m, v, s))
    }
    fn rmsprop_inplace(&self, p: &CudaTensor, g: &CudaTensor, v: &CudaTensor, s: RmsPropStep) {
        self.note(self.try_rmsprop(p, g, v, s))
    }
    fn clamp_inplace(&self, p: &CudaTensor, c: f64) {
        self.note(self.try_clamp(p, c))
    }
    fn axpby_inplace(&self, y: &CudaTensor, a: f64, x: &CudaTensor, b: f64) {
        self.note(self.try_axpby(y, a, x, b))
    }

    fn counter(&self, value: u64) -> CudaTensor {
        self.finish(&[4], self.try_counter(value))
    }
    fn counter_set(&self, c: &CudaTensor, value: u64) {
        self.note(self.try_counter_set(c, value))
    }
    fn counter_get(&self, c: &CudaTensor) -> u64 {
        self.try_counter_get(c).unwrap_or_else(|e| {
            self.record(e);
            0
        })
    }
    fn counter_add(&self, c: &CudaTensor, delta: u64) {
        self.note(self.try_counter_add(c, delta))
    }
    fn randn_at(&self, shape: &[usize], seed: u64, stream: u64, base: &CudaTensor) -> CudaTensor {
        self.finish(shape, self.try_random_at(shape, seed, stream, base, true))
    }
    fn rand_uniform_at(&self, shape: &[usize], seed: u64, stream: u64, base: &CudaTensor) -> CudaTensor {
        self.finish(shape, self.try_random_at(shape, seed, stream, base, false))
    }
    fn adam_at_inplace(
        &self,
        p: &CudaTensor,
        g: &CudaTensor,
        m: &CudaTensor,
        v: &CudaTensor,
        s: AdamStep,
        t: &CudaTensor,
    ) {
        self.note(self.try_adam_at(p, g, m, v, s, t))
    }
    fn write_f32(&self, dst: &CudaTensor, data: &[f32]) {
        self.note(self.try_write(dst, data))
    }
    fn gather_rows_inplace(&self, dst: &CudaTensor, src: &CudaTensor, idx: &CudaTensor, start: usize) {
        self.note(self.try_gather_rows(dst, src, idx, start))
    }
    fn data_memory_budget(&self) -> Option<u64> {
        Some(self.data_budget())
    }
    fn supports_graphs(&self) -> bool {
        true
    }
    fn graph_capture_begin(&self) -> crate::Result<()> {
        self.capture_begin()
    }
    fn graph_capture_end(&self) -> crate::Result<usize> {
        self.capture_end()
    }
    fn graph_launch(&self, id: usize) -> crate::Result<()> {
        Cuda::graph_launch(self, id)
    }
    fn graph_drop(&self, id: usize) -> crate::Result<()> {
        Cuda::graph_drop(self, id)
    }
    fn keep_freed_memory(&self, keep: bool) -> crate::Result<()> {
        Cuda::keep_freed_memory(self, keep)
    }
    fn device_counts(&self) -> Option<super::DeviceCounts> {
        Some(self.counts())
    }
    fn device_memory(&self) -> Option<super::MemoryUse> {
        // A failure to read it is recorded like any other (Cuda::check reports it).
        self.memory().unwrap_or_else(|e| {
            self.record(e);
            None
        })
    }
}
