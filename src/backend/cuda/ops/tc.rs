//! Host side of the tensor-core GEMMs (`kernels/gemm_tc.cuh`, `gemm_tc.cu`, `conv_tc.cu`): the
//! operand descriptions (`TcOperand`: where element (j, k) of an operand lives, as a few integers,
//! so the kernels need no division in their main loops), tile choice, split-K, and the launches of
//! matmul and the three convolution passes at TF32 or BF16.
//!
//! The data gradient (the transposed convolution) runs as stride² phase GEMMs with only the live
//! taps (see conv_tc.cu), launched together (one GEMM launch and at most one split-K scatter for
//! strides up to 2); a 1×1 gy onto an unpadded K×K image is one plain GEMM.
//!
//! Called by `gemm.rs` and `conv.rs` when the precision is not f32; CPU reference: the same
//! functions as theirs (`backend::cpu::conv`), at the precision's tolerance.

use std::ffi::c_void;

use cudarc::driver::DeviceRepr;

use crate::backend::cuda::device::{arg_ptr, grid_1d, Cuda, CudaTensor, GemmTiles, BLOCK};
use crate::backend::cuda::kernels::Module;
use crate::backend::cuda::params::{GemmEpi, GemmShape, SplitKParams};
use crate::backend::{ConvParams, Precision};
use crate::{bail, Result};

/// gemm_tc.cuh `TcOperand`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcOperand {
    pub c0: i64,
    pub c1: i64,
    pub c2: i64,
    pub b0: i64,
    pub b1: i64,
    pub b2: i64,
    pub b3: i64,
    pub e1: i32,
    pub e2: i32,
    pub g1: i32,
    pub g2: i32,
    pub h3: i32,
    pub w3: i32,
    pub h: i32,
    pub w: i32,
    pub r1: u32,
    pub r2: u32,
    pub q1: u32,
    pub q2: u32,
    pub ext: u32,
    pub pad_: u32,
}

/// gemm_tc.cuh `TcOut`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcOut {
    pub om: i64,
    pub o0: i64,
    pub o1: i64,
    pub o2: i64,
    pub ob: i64,
    pub q1: u32,
    pub q2: u32,
}

/// gemm_tc.cuh `TcParams`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcParams {
    pub g: GemmShape,
    pub a: TcOperand,
    pub b: TcOperand,
    pub c: TcOut,
}

/// conv_tc.cu `TcPhases`: the stride phases of one data gradient, launched together.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct TcPhases {
    p: [TcParams; 4],
    ws_off: [i64; 4],
    zbase: [u32; 5],
    count: u32,
    pad_: [u32; 2],
}

/// conv_tc.cu `ScatterPhases`: the split-K slices of those phases, added and scattered together.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ScatterPhases {
    s: [SplitKParams; 4],
    c: [TcOut; 4],
    ws_off: [i64; 4],
    start: [i64; 5],
    count: u32,
    pad_: u32,
}

// SAFETY: plain-old-data with C layout, matching gemm_tc.cuh.
unsafe impl DeviceRepr for TcParams {}
unsafe impl DeviceRepr for TcOut {}
unsafe impl DeviceRepr for TcPhases {}
unsafe impl DeviceRepr for ScatterPhases {}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<TcOperand>() == 112);
    assert!(size_of::<TcOut>() == 48);
    assert!(size_of::<TcParams>() == 296);
    assert!(size_of::<TcPhases>() == 1248);
    assert!(size_of::<ScatterPhases>() == 368);
};

const TC_THREADS: u32 = 128;
const TC_BK: usize = 16;
/// Streaming multiprocessors to fill before splitting K (an H100/H200 has 132).
const FILL_BLOCKS: usize = 264;

impl TcOperand {
    /// No image, no digits: offset = j·bj + k·ck.
    fn matrix(bj: usize, ck: usize, ext: usize) -> TcOperand {
        TcOperand {
            c0: ck as i64,
            c1: 0,
            c2: 0,
            b0: bj as i64,
            b1: 0,
            b2: 0,
            b3: 0,
            e1: 0,
            e2: 0,
            g1: 0,
            g2: 0,
            h3: 0,
            w3: 0,
            h: i32::MAX,
            w: i32::MAX,
            r1: 1,
            r2: 1,
            q1: 1,
            q2: 1,
            ext: ext as u32,
            pad_: 0,
        }
    }
}

impl TcOut {
    /// Row-major: C[m, col] at m·ld + col.
    fn matrix(ld: usize) -> TcOut {
        TcOut { om: ld as i64, o0: 1, o1: 0, o2: 0, ob: 0, q1: 1, q2: 1 }
    }
}

/// A tile: rows × columns per block, and its kernel-name suffix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TcTile {
    Square,
    Narrow,
}

impl TcTile {
    fn dims(self) -> (usize, usize) {
        match self {
            TcTile::Square => (64, 64),
            TcTile::Narrow => (16, 128),
        }
    }
    fn pick(t: GemmTiles, rows: usize) -> TcTile {
        match t {
            GemmTiles::Narrow => TcTile::Narrow,
            GemmTiles::Square => TcTile::Square,
            GemmTiles::Auto if rows <= 16 => TcTile::Narrow,
            GemmTiles::Auto => TcTile::Square,
        }
    }
}

/// The kernel of `op` ("matmul_nn", "conv2d_fwd", ...) at a tile and precision.
fn kernel_name(op: &str, tile: TcTile, p: Precision) -> Result<&'static str> {
    macro_rules! names {
        ($($op:literal),+) => {
            match (op, tile, p) {
                $(
                    ($op, TcTile::Square, Precision::Tf32) => concat!($op, "_tf32"),
                    ($op, TcTile::Square, Precision::Bf16) => concat!($op, "_bf16"),
                    ($op, TcTile::Narrow, Precision::Tf32) => concat!($op, "_narrow_tf32"),
                    ($op, TcTile::Narrow, Precision::Bf16) => concat!($op, "_narrow_bf16"),
                )+
                _ => bail!("CUDA: no tensor-core kernel {op} at {p}"),
            }
        };
    }
    Ok(names!("matmul_nn", "matmul_nt", "matmul_tn", "matmul_tt", "conv2d_fwd", "conv2d_dgrad", "conv2d_wgrad"))
}

fn u32_of(what: &str, n: usize) -> Result<u32> {
    if n >= 1 << 31 {
        bail!("CUDA {what}: extent {n} is 2^31 or more");
    }
    Ok(n as u32)
}

/// Geometry of an m × nc product with reduction kd on `tile`: shape, grid, split-K slices
/// (a function of the shape only, so results are deterministic). `split` false keeps one slice.
fn plan(what: &str, m: usize, nc: usize, kd: usize, tile: TcTile, split: bool) -> Result<(GemmShape, (u32, u32, u32))> {
    let (tm, tn) = tile.dims();
    let (gx, gy) = (nc.div_ceil(tn).max(1), m.div_ceil(tm).max(1));
    if gy > 65535 {
        bail!("CUDA {what}: {m} output rows exceed one launch (at most {})", 65535 * tm);
    }
    let tiles = gx * gy;
    let mut splits = 1usize;
    if split && kd >= 512 && tiles < FILL_BLOCKS {
        splits = FILL_BLOCKS.div_ceil(tiles).min(kd.div_ceil(256)).clamp(1, 64);
    }
    let k_chunk = kd.div_ceil(splits).div_ceil(TC_BK).max(1) * TC_BK;
    let splits = kd.div_ceil(k_chunk).max(1);
    let shape = GemmShape {
        m: u32_of(what, m)?,
        nc: u32_of(what, nc)?,
        kd: u32_of(what, kd)?,
        k_chunk: u32_of(what, k_chunk)?,
        total: (m * nc) as i64,
    };
    Ok((shape, (gx as u32, gy as u32, splits as u32)))
}

impl Cuda {
    /// Launches one tensor-core GEMM writing C through `c` into `out_ptr`; when the grid splits K,
    /// the slices go to a row-major workspace and `splitk_scatter_f32` adds them in order into
    /// the output's layout.
    #[allow(clippy::too_many_arguments)]
    fn tc_launch(
        &self,
        module: Module,
        name: &'static str,
        (g, grid): (GemmShape, (u32, u32, u32)),
        a: u64,
        b: u64,
        epi: GemmEpi,
        out_ptr: u64,
        opa: TcOperand,
        opb: TcOperand,
        c: TcOut,
    ) -> Result<()> {
        if g.total == 0 {
            return Ok(());
        }
        let splits = grid.2 as usize;
        let ws = if splits > 1 { Some(self.empty(&[splits * g.total as usize])?) } else { None };
        let dst = match &ws {
            Some(w) => self.ptr(w)?,
            None => out_ptr,
        };
        let p = TcParams { g, a: opa, b: opb, c: if ws.is_some() { TcOut::matrix(g.nc as usize) } else { c } };
        let mut args: [*mut c_void; 5] = [arg_ptr(&dst), arg_ptr(&a), arg_ptr(&b), arg_ptr(&epi), arg_ptr(&p)];
        let sizes = [8, 8, 8, std::mem::size_of_val(&epi), std::mem::size_of_val(&p)];
        self.launch_raw(module, name, grid, TC_THREADS, &mut args, &sizes)?;
        if let Some(w) = &ws {
            let total = g.total as usize;
            let sp = SplitKParams { total: g.total, splits: splits as i64, cols: i64::from(g.nc.max(1)) };
            let wp = self.ptr(w)?;
            let mut args: [*mut c_void; 5] =
                [arg_ptr(&out_ptr), arg_ptr(&wp), arg_ptr(&epi), arg_ptr(&sp), arg_ptr(&c)];
            let sizes = [8, 8, std::mem::size_of_val(&epi), std::mem::size_of_val(&sp), std::mem::size_of_val(&c)];
            self.launch_raw(module, "splitk_scatter_f32", (grid_1d(total), 1, 1), BLOCK, &mut args, &sizes)?;
        }
        Ok(())
    }

    /// op(a)·op(b), then the epilogue, on tensor cores; shapes already checked by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tc_matmul(
        &self,
        a: u64,
        b: u64,
        epi: GemmEpi,
        out: &CudaTensor,
        (m, k, n): (usize, usize, usize),
        ta: bool,
        tb: bool,
    ) -> Result<()> {
        let prec = self.precision();
        let tile = TcTile::pick(self.gemm_tiles(), m);
        let op = match (ta, tb) {
            (false, false) => "matmul_nn",
            (false, true) => "matmul_nt",
            (true, false) => "matmul_tn",
            (true, true) => "matmul_tt",
        };
        let opa = if ta { TcOperand::matrix(1, m, m) } else { TcOperand::matrix(k, 1, m) };
        let opb = if tb { TcOperand::matrix(k, 1, n) } else { TcOperand::matrix(1, n, n) };
        let pl = plan("matmul", m, n, k, tile, true)?;
        let name = kernel_name(op, tile, prec)?;
        self.tc_launch(Module::GemmTc, name, pl, a, b, epi, self.ptr(out)?, opa, opb, TcOut::matrix(n))
    }

    /// y = conv2d(x, w): x [n, ci, h, w], w [co, ci, k, k], y [n, co, ho, wo] (checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tc_conv2d(
        &self,
        x: u64,
        w: u64,
        y: &CudaTensor,
        xs: [usize; 4],
        co: usize,
        k: usize,
        p: ConvParams,
    ) -> Result<()> {
        let [n, ci, h, wd] = xs;
        let (ho, wo) = (p.out_size(h, k), p.out_size(wd, k));
        let (s, pad) = (p.stride as i64, p.pad as i64);
        let opa = TcOperand::matrix(ci * k * k, 1, co);
        let opb = TcOperand {
            c0: (h * wd) as i64,
            c1: wd as i64,
            c2: 1,
            e1: 1,
            e2: 1,
            r1: k as u32,
            r2: k as u32,
            b0: (ci * h * wd) as i64,
            b1: s * wd as i64,
            b2: s,
            b3: -pad * wd as i64 - pad,
            g1: s as i32,
            g2: s as i32,
            h3: -pad as i32,
            w3: -pad as i32,
            h: h as i32,
            w: wd as i32,
            q1: ho as u32,
            q2: wo as u32,
            ext: (n * ho * wo) as u32,
            pad_: 0,
        };
        let c = TcOut {
            om: (ho * wo) as i64,
            o0: (co * ho * wo) as i64,
            o1: wo as i64,
            o2: 1,
            ob: 0,
            q1: ho as u32,
            q2: wo as u32,
        };
        let tile = TcTile::pick(self.gemm_tiles(), co);
        let pl = plan("conv2d", co, n * ho * wo, ci * k * k, tile, true)?;
        let name = kernel_name("conv2d_fwd", tile, self.precision())?;
        self.tc_launch(Module::ConvTc, name, pl, w, x, GemmEpi::default(), self.ptr(y)?, opa, opb, c)
    }

    /// gx = conv2d_data_grad(gy, w) into gx [n, ci, h, w], gy [n, co, ho, wo], one GEMM per stride
    /// phase over the live taps only; or one plain GEMM when gy is 1×1 and the image is the
    /// unpadded kernel window (the generator's first layer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tc_conv2d_data_grad(
        &self,
        gy: u64,
        w: u64,
        gx: &CudaTensor,
        gxs: [usize; 4],
        co: usize,
        k: usize,
        (ho, wo): (usize, usize),
        p: ConvParams,
    ) -> Result<()> {
        let [n, ci, h, wd] = gxs;
        let prec = self.precision();
        if ho == 1 && wo == 1 && p.pad == 0 && h == k && wd == k {
            // gx [n, ci·k·k] = gy [n, co] · w [co, ci·k·k]
            return self.tc_matmul(gy, w, GemmEpi::default(), gx, (n, co, ci * k * k), false, false);
        }
        let s = p.stride;
        let gx_ptr = self.ptr(gx)?;
        let tile = TcTile::pick(self.gemm_tiles(), ci);
        let name = kernel_name("conv2d_dgrad", tile, prec)?;
        // (plan, A, B, C) of each live phase.
        let mut phases = Vec::with_capacity(s * s);
        for ph in 0..s {
            for pw in 0..s {
                let (hp, wp) = (h.saturating_sub(ph).div_ceil(s), wd.saturating_sub(pw).div_ceil(s));
                if hp == 0 || wp == 0 {
                    continue;
                }
                let (rh, rw) = ((ph + p.pad) % s, (pw + p.pad) % s);
                let (kh, kw) = (k.saturating_sub(rh).div_ceil(s), k.saturating_sub(rw).div_ceil(s));
                let (ch, cw) = ((ph + p.pad - rh) / s, (pw + p.pad - rw) / s);
                let opa = TcOperand {
                    c0: (ci * k * k) as i64,
                    c1: (s * k) as i64,
                    c2: s as i64,
                    r1: kh.max(1) as u32,
                    r2: kw.max(1) as u32,
                    b0: (k * k) as i64,
                    b3: (rh * k + rw) as i64,
                    ext: ci as u32,
                    ..TcOperand::matrix(0, 0, 0)
                };
                let opb = TcOperand {
                    c0: (ho * wo) as i64,
                    c1: -(wo as i64),
                    c2: -1,
                    e1: -1,
                    e2: -1,
                    r1: kh.max(1) as u32,
                    r2: kw.max(1) as u32,
                    b0: (co * ho * wo) as i64,
                    b1: wo as i64,
                    b2: 1,
                    b3: (ch * wo + cw) as i64,
                    g1: 1,
                    g2: 1,
                    h3: ch as i32,
                    w3: cw as i32,
                    h: ho as i32,
                    w: wo as i32,
                    q1: hp as u32,
                    q2: wp as u32,
                    ext: (n * hp * wp) as u32,
                    pad_: 0,
                };
                let c = TcOut {
                    om: (h * wd) as i64,
                    o0: (ci * h * wd) as i64,
                    o1: (s * wd) as i64,
                    o2: s as i64,
                    ob: (ph * wd + pw) as i64,
                    q1: hp as u32,
                    q2: wp as u32,
                };
                let pl = plan("conv2d_data_grad", ci, n * hp * wp, co * kh * kw, tile, true)?;
                phases.push((pl, opa, opb, c));
            }
        }
        if phases.len() < 2 || phases.len() > 4 {
            for (pl, opa, opb, c) in phases {
                self.tc_launch(Module::ConvTc, name, pl, w, gy, GemmEpi::default(), gx_ptr, opa, opb, c)?;
            }
            return Ok(());
        }
        self.tc_phased_dgrad(tile, prec, &phases, w, gy, gx_ptr)
    }

    /// The 2 to 4 stride phases of a data gradient as one GEMM launch (blockIdx.z runs over the
    /// phases' K slices) and, when any phase splits K, one scatter launch of all the split slices
    /// (conv_tc.cu `conv2d_dgrad_phased_*`, `splitk_scatter_phased_f32`): per phase the same tiles,
    /// K slices and order of additions as a launch of its own, so the same result.
    #[allow(clippy::type_complexity)]
    fn tc_phased_dgrad(
        &self,
        tile: TcTile,
        prec: Precision,
        phases: &[((GemmShape, (u32, u32, u32)), TcOperand, TcOperand, TcOut)],
        w: u64,
        gy: u64,
        gx_ptr: u64,
    ) -> Result<()> {
        let name = match (tile, prec) {
            (TcTile::Square, Precision::Tf32) => "conv2d_dgrad_phased_tf32",
            (TcTile::Narrow, Precision::Tf32) => "conv2d_dgrad_phased_narrow_tf32",
            (TcTile::Square, Precision::Bf16) => "conv2d_dgrad_phased_bf16",
            (TcTile::Narrow, Precision::Bf16) => "conv2d_dgrad_phased_narrow_bf16",
            (_, Precision::F32) => bail!("CUDA: no tensor-core kernel conv2d_dgrad at f32"),
        };
        let zero = TcParams { g: phases[0].0 .0, a: phases[0].1, b: phases[0].2, c: phases[0].3 };
        let mut q = TcPhases { p: [zero; 4], ws_off: [0; 4], zbase: [0; 5], count: phases.len() as u32, pad_: [0; 2] };
        let zs = SplitKParams { total: 0, splits: 1, cols: 1 };
        let mut sc =
            ScatterPhases { s: [zs; 4], c: [phases[0].3; 4], ws_off: [0; 4], start: [0; 5], count: 0, pad_: 0 };
        let (mut gx, mut gy_, mut z, mut ws_len) = (1u32, 1u32, 0u32, 0usize);
        for (i, &((g, grid), opa, opb, c)) in phases.iter().enumerate() {
            let splits = grid.2 as usize;
            gx = gx.max(grid.0);
            gy_ = gy_.max(grid.1);
            q.zbase[i] = z;
            z += grid.2;
            // A split phase writes row-major slices into the workspace (as tc_launch does).
            let out_c = if splits > 1 { TcOut::matrix(g.nc as usize) } else { c };
            q.p[i] = TcParams { g, a: opa, b: opb, c: out_c };
            if splits > 1 {
                let k = sc.count as usize;
                q.ws_off[i] = ws_len as i64;
                sc.s[k] = SplitKParams { total: g.total, splits: splits as i64, cols: i64::from(g.nc.max(1)) };
                sc.c[k] = c;
                sc.ws_off[k] = ws_len as i64;
                sc.start[k + 1] = sc.start[k] + g.total;
                sc.count += 1;
                ws_len += splits * g.total as usize;
            }
        }
        q.zbase[phases.len()] = z;
        if z > 65535 {
            bail!("CUDA conv2d_data_grad: {z} K slices exceed one launch");
        }
        let ws = if ws_len > 0 { Some(self.empty(&[ws_len])?) } else { None };
        let wp = match &ws {
            Some(t) => self.ptr(t)?,
            None => 0,
        };
        let mut args: [*mut c_void; 5] = [arg_ptr(&gx_ptr), arg_ptr(&wp), arg_ptr(&w), arg_ptr(&gy), arg_ptr(&q)];
        let sizes = [8, 8, 8, 8, std::mem::size_of_val(&q)];
        self.launch_raw(Module::ConvTc, name, (gx, gy_, z), TC_THREADS, &mut args, &sizes)?;
        if sc.count > 0 {
            let total = sc.start[sc.count as usize] as usize;
            for k in sc.count as usize + 1..5 {
                sc.start[k] = sc.start[sc.count as usize];
            }
            let mut args: [*mut c_void; 3] = [arg_ptr(&gx_ptr), arg_ptr(&wp), arg_ptr(&sc)];
            let sizes = [8, 8, std::mem::size_of_val(&sc)];
            self.launch_raw(
                Module::ConvTc,
                "splitk_scatter_phased_f32",
                (grid_1d(total), 1, 1),
                BLOCK,
                &mut args,
                &sizes,
            )?;
        }
        Ok(())
    }

    /// gw [co, ci, k, k] = conv2d_weight_grad(x [n, ci, h, w], gy [n, co, ho, wo]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tc_conv2d_weight_grad(
        &self,
        x: u64,
        gy: u64,
        gw: &CudaTensor,
        xs: [usize; 4],
        (co, ho, wo): (usize, usize, usize),
        k: usize,
        p: ConvParams,
    ) -> Result<()> {
        let [n, ci, h, wd] = xs;
        let (s, pad) = (p.stride as i64, p.pad as i64);
        let opa = TcOperand {
            c0: (co * ho * wo) as i64,
            c1: wo as i64,
            c2: 1,
            r1: ho as u32,
            r2: wo as u32,
            b0: (ho * wo) as i64,
            ext: co as u32,
            ..TcOperand::matrix(0, 0, 0)
        };
        let opb = TcOperand {
            c0: (ci * h * wd) as i64,
            c1: s * wd as i64,
            c2: s,
            e1: s as i32,
            e2: s as i32,
            r1: ho as u32,
            r2: wo as u32,
            b0: (h * wd) as i64,
            b1: wd as i64,
            b2: 1,
            b3: -pad * wd as i64 - pad,
            g1: 1,
            g2: 1,
            h3: -pad as i32,
            w3: -pad as i32,
            h: h as i32,
            w: wd as i32,
            q1: k as u32,
            q2: k as u32,
            ext: (ci * k * k) as u32,
            pad_: 0,
        };
        let tile = TcTile::pick(self.gemm_tiles(), co);
        let pl = plan("conv2d_weight_grad", co, ci * k * k, n * ho * wo, tile, true)?;
        let name = kernel_name("conv2d_wgrad", tile, self.precision())?;
        self.tc_launch(
            Module::ConvTc,
            name,
            pl,
            gy,
            x,
            GemmEpi::default(),
            self.ptr(gw)?,
            opa,
            opb,
            TcOut::matrix(ci * k * k),
        )
    }
}

/// Self-tests of the warp-level instructions (`kernels/mma.cuh`) for `tests/gpu_tensorcore.rs`:
/// each runs one small kernel of `gemm_tc.cu` and returns what it wrote.
impl Cuda {
    fn selftest_run(
        &self,
        name: &'static str,
        out: &[&CudaTensor],
        inputs: &[&CudaTensor],
        grid: u32,
        block: u32,
    ) -> Result<()> {
        let mut ptrs: Vec<u64> = Vec::new();
        for t in out.iter().chain(inputs) {
            ptrs.push(self.ptr(t)?);
        }
        let mut args: Vec<*mut c_void> = ptrs.iter().map(arg_ptr).collect();
        let sizes = vec![8; args.len()];
        self.launch_raw(Module::GemmTc, name, (grid, 1, 1), block, &mut args, &sizes)
    }

    /// D = A·B + C on one warp through `mma_tf32` / `mma_bf16`: A 16×K, B K×8, C 16×8 row-major,
    /// K = 8 (TF32) or 16 (BF16).
    #[doc(hidden)]
    pub fn selftest_mma(&self, p: Precision, a: &[f32], b: &[f32], c: &[f32]) -> Result<Vec<f32>> {
        use crate::backend::Backend;
        let (k, name) = match p {
            Precision::Tf32 => (8, "mma_selftest_tf32"),
            Precision::Bf16 => (16, "mma_selftest_bf16"),
            Precision::F32 => bail!("selftest_mma: f32 has no tensor-core instruction"),
        };
        if a.len() != 16 * k || b.len() != k * 8 || c.len() != 128 {
            bail!("selftest_mma: A must be 16x{k}, B {k}x8, C 16x8");
        }
        let (ta, tb, tc) = (self.from_f32(a, &[16, k]), self.from_f32(b, &[k, 8]), self.from_f32(c, &[16, 8]));
        let d = self.empty(&[16, 8])?;
        self.selftest_run(name, &[&d], &[&ta, &tb, &tc], 1, 32)?;
        self.check()?;
        Ok(self.to_f32(&d))
    }

    /// Each x rounded to TF32 and to BF16 by the kernels' conversion functions (f32 bit patterns).
    #[doc(hidden)]
    pub fn selftest_round(&self, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        use crate::backend::Backend;
        let n = x.len();
        let tx = self.from_f32(x, &[n]);
        let (tf, bf) = (self.empty(&[n])?, self.empty(&[n])?);
        let (pt, pb, px) = (self.ptr(&tf)?, self.ptr(&bf)?, self.ptr(&tx)?);
        let nn = n as i64;
        let mut args: [*mut c_void; 4] = [arg_ptr(&pt), arg_ptr(&pb), arg_ptr(&px), arg_ptr(&nn)];
        self.launch_raw(Module::GemmTc, "round_selftest", (grid_1d(n), 1, 1), BLOCK, &mut args, &[8; 4])?;
        self.check()?;
        Ok((self.to_f32(&tf), self.to_f32(&bf)))
    }

    /// `ldmatrix_x4` (transposed or not) of a 32×8 matrix of 16-bit values, row-major as 128 words:
    /// lane l points at row l; returns the 4 registers each lane receives, lane-major.
    #[doc(hidden)]
    pub fn selftest_ldmatrix(&self, trans: bool, m: &[u32]) -> Result<Vec<u32>> {
        use crate::backend::Backend;
        if m.len() != 128 {
            bail!("selftest_ldmatrix: 128 words expected");
        }
        let bits: Vec<f32> = m.iter().map(|&w| f32::from_bits(w)).collect();
        let tm = self.from_f32(&bits, &[128]);
        let out = self.empty(&[128])?;
        let name = if trans { "ldmatrix_selftest_t" } else { "ldmatrix_selftest_n" };
        self.selftest_run(name, &[&out], &[&tm], 1, 32)?;
        self.check()?;
        Ok(self.to_f32(&out).iter().map(|v| v.to_bits()).collect())
    }
}

impl Cuda {
    /// The device's dense tensor-core rate at `p` (TF32 or BF16 operands, f32 accumulation) in
    /// TFLOP/s, from `mma_peak_*` in gemm_tc.cu: the ceiling of the tensor-core kernels.
    pub fn mma_peak_tflops(&self, p: Precision) -> Result<f64> {
        let (name, flops_per_mma) = match p {
            Precision::Tf32 => ("mma_peak_tf32", 2048.0),
            Precision::Bf16 => ("mma_peak_bf16", 4096.0),
            Precision::F32 => return self.fma_peak_tflops(),
        };
        let (blocks, threads, iters) = (1024u32 * 4, 128u32, 2048i64);
        let out = self.empty(&[(blocks * threads) as usize])?;
        let ptr = self.ptr(&out)?;
        let (ms, _) = self.time_events(1, 5, false, || {
            let mut args: [*mut c_void; 2] = [arg_ptr(&ptr), arg_ptr(&iters)];
            if let Err(e) = self.launch_raw(Module::GemmTc, name, (blocks, 1, 1), threads, &mut args, &[8; 2]) {
                self.record(e);
            }
        })?;
        let mmas = blocks as f64 * (threads / 32) as f64 * iters as f64 * 4.0;
        Ok(mmas * flops_per_mma / (ms * 1e-3) / 1e12)
    }
}
