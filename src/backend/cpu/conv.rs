//! Matrix product and 2-D convolution: im2col / col2im around one GEMM per task of a few samples.
//!
//! The generic path (every f32 pass but the small-patch layers' forward and data gradient on AVX2,
//! and all of f64) splits the batch into tasks of `nb` samples (see [`task_split`]) that rayon's
//! threads take from one queue; a task runs its im2col (the tap tables of `taps.rs` for strided or
//! narrow outputs), one `gemm`-crate product and its re-layout or col2im on its own thread, from
//! per-thread scratch buffers that stay in L2. There is no hand-off inside a product and no
//! batch-wide im2col matrix (before: one 6 MB matrix per call for the DCGAN-28 critic's second
//! layer, written, packed and read through memory, with the GEMM's threads and the copies'
//! threads joining three times per call).

use super::par::{give_scratch, take_scratch, zeros};
use super::{convk, taps, CpuTensor, Elem};
use crate::backend::ConvParams;
use rayon::prelude::*;
use std::any::TypeId;

/// Largest im2col block of one task of the generic path (elements): 512 KB of f32, about one
/// core's L2, so the GEMM packs what the task's im2col just wrote from cache.
const TASK_COL: usize = 1 << 17;

/// C = op(A)·op(B) with the transposes expressed as strides.
pub(crate) fn matmul<T: Elem>(a: &CpuTensor<T>, b: &CpuTensor<T>, ta: bool, tb: bool) -> CpuTensor<T> {
    let (sa, sb) = (a.shape(), b.shape());
    assert!(sa.len() == 2 && sb.len() == 2, "matmul: 2-D operands needed, got {sa:?} and {sb:?}");
    let (m, k, rsa, csa) = if ta { (sa[1], sa[0], 1, sa[1]) } else { (sa[0], sa[1], sa[1], 1) };
    let (k2, n, rsb, csb) = if tb { (sb[1], sb[0], 1, sb[1]) } else { (sb[0], sb[1], sb[1], 1) };
    assert_eq!(
        k,
        k2,
        "matmul: inner extents differ ({sa:?}{} × {sb:?}{})",
        if ta { "ᵀ" } else { "" },
        if tb { "ᵀ" } else { "" }
    );
    let mut c = zeros::<T>(m * n);
    if m * n * k > 0 {
        // SAFETY: the strides describe the row-major operands and output exactly.
        unsafe {
            T::gemm(
                m,
                k,
                n,
                T::ONE,
                a.data().as_ptr(),
                rsa as isize,
                csa as isize,
                b.data().as_ptr(),
                rsb as isize,
                csb as isize,
                T::ZERO,
                c.as_mut_ptr(),
                n as isize,
                1,
                true,
            )
        }
    }
    CpuTensor::from_vec(c, &[m, n])
}

/// `s` as f32 when T is f32 (the AVX2 kernels are f32 only).
fn f32s<T: Elem>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32, checked by type id.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
}

fn f32s_mut<T: Elem>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32, checked by type id.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
}

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub ho: usize,
    pub wo: usize,
    pub s: usize,
    pub pad: usize,
}

impl Geom {
    pub fn kk(&self) -> usize {
        self.ci * self.k * self.k
    }
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// The kernel covers the whole unpadded input once (a 1×1 output): the convolution is a dense
    /// layer, x [n, ci·k·k] · wᵀ, and needs no im2col (the DCGAN critic's last layer and, as a
    /// transposed convolution, the generator's first).
    fn is_dense(&self) -> bool {
        self.pad == 0 && self.h == self.k && self.w == self.k && self.ho == 1 && self.wo == 1
    }
    /// Output columns [lo, hi) of a row whose input column ow·s + kw − pad lies in [0, w).
    #[inline]
    pub fn valid_cols(&self, kw: usize) -> (usize, usize) {
        valid_range(kw, self.w, self.wo, self.s, self.pad)
    }
    /// Output rows [lo, hi) whose input row oh·s + kh − pad lies in [0, h).
    #[inline]
    pub fn valid_rows(&self, kh: usize) -> (usize, usize) {
        valid_range(kh, self.h, self.ho, self.s, self.pad)
    }
}

/// The outputs o in [lo, hi) of a dimension (input `size`, `out` outputs) whose input position
/// o·s + tap − pad lies inside the input.
#[inline]
fn valid_range(tap: usize, size: usize, out: usize, s: usize, pad: usize) -> (usize, usize) {
    let lo = if tap >= pad { 0 } else { (pad - tap).div_ceil(s) }.min(out);
    let hi = if size + pad > tap { ((size - 1 + pad - tap) / s + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// col[r, j·P + p] = x[n0+j, ci, oh·s+kh−pad, ow·s+kw−pad] (0 outside) for r = (ci, kh, kw), on
/// the calling thread.
fn im2col<T: Elem>(g: &Geom, x: &[T], n0: usize, b: usize, col: &mut [T]) {
    let (p, hw, k) = (g.p(), g.h * g.w, g.k);
    for (r, dst) in col.chunks_mut(b * p).enumerate() {
        let (ci, kh, kw) = (r / (k * k), (r / k) % k, r % k);
        // The valid window of this kernel offset, hoisted out of the per-row loop: rows above
        // `rlo` and below `rhi`, and columns outside [lo, hi), read padding.
        let (rlo, rhi) = g.valid_rows(kh);
        let (lo, hi) = g.valid_cols(kw);
        let n = hi - lo;
        // Zero a sample's block once when some of it reads padding, rather than per row: the
        // per-row bookkeeping, not the copying, is what im2col's time goes to on small images.
        let padded = rlo > 0 || rhi < g.ho || lo > 0 || hi < g.wo;
        for j in 0..b {
            let plane = &x[((n0 + j) * g.ci + ci) * hw..][..hw];
            let d = &mut dst[j * p..][..p];
            if padded {
                d.fill(T::ZERO);
            }
            if n == 0 {
                continue;
            }
            for oh in rlo..rhi {
                let d = &mut d[oh * g.wo + lo..][..n];
                let src = &plane[(oh * g.s + kh - g.pad) * g.w + lo * g.s + kw - g.pad..];
                gather_strided(d, &src[..(n - 1) * g.s + 1], g.s);
            }
        }
    }
}

/// The adjoint of im2col on the calling thread: out[j, ci] (sample-major, [b, ci, h, w]) = Σ_{kh,kw}
/// scatter of the col rows (ci, kh, kw) [ci·k·k, b·P], sample j's columns.
pub(crate) fn col2im<T: Elem>(g: &Geom, col: &[T], b: usize, out: &mut [T]) {
    let (p, hw, k) = (g.p(), g.h * g.w, g.k);
    for (q, o) in out.chunks_mut(hw).enumerate() {
        let (j, ci) = (q / g.ci, q % g.ci);
        o.fill(T::ZERO);
        for kh in 0..k {
            let (rlo, rhi) = g.valid_rows(kh);
            for kw in 0..k {
                let (lo, hi) = g.valid_cols(kw);
                let n = hi - lo;
                if n == 0 || rlo == rhi {
                    continue;
                }
                let r = (ci * k + kh) * k + kw;
                let src = &col[r * b * p + j * p..][..p];
                for oh in rlo..rhi {
                    let s = &src[oh * g.wo + lo..][..n];
                    let d = &mut o[(oh * g.s + kh - g.pad) * g.w + lo * g.s + kw - g.pad..];
                    if g.s == 1 {
                        for (d, &v) in d[..n].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else if g.s == 2 {
                        for (i, &v) in s.iter().enumerate() {
                            d[2 * i] += v;
                        }
                    } else {
                        for (d, &v) in d.iter_mut().step_by(g.s).zip(s) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// dst[c, j·P + p] = src[j, c, p]: [b, C, P] → [C, b·P].
fn to_channel_major<T: Elem>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    for (ch, d) in dst.chunks_mut(b * p).enumerate() {
        for j in 0..b {
            d[j * p..][..p].copy_from_slice(&src[(j * c + ch) * p..][..p]);
        }
    }
}

/// dst[j, c, p] = src[c, j·P + p]: [C, b·P] → [b, C, P].
fn to_sample_major<T: Elem>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    for (j, d) in dst.chunks_mut(c * p).enumerate() {
        for ch in 0..c {
            d[ch * p..][..p].copy_from_slice(&src[ch * b * p + j * p..][..p]);
        }
    }
}

fn dims4(op: &str, s: &[usize]) -> [usize; 4] {
    assert_eq!(s.len(), 4, "{op}: 4-D tensor needed, got {s:?}");
    [s[0], s[1], s[2], s[3]]
}

fn check_weight(op: &str, w: &[usize]) -> [usize; 4] {
    let d = dims4(op, w);
    assert_eq!(d[2], d[3], "{op}: square kernels only, got {w:?}");
    d
}

/// C[m×n] (row stride n) = A·B + β·C with row-major A [m×k] (ta: stored k×m) and B, on the calling
/// thread (`par` false) or on rayon's pool.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Elem>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    ta: bool,
    b: &[T],
    ldb: usize,
    tb: bool,
    beta: T,
    c: &mut [T],
    par: bool,
) {
    if m * n * k == 0 {
        return;
    }
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, ldb) } else { (ldb, 1) };
    // SAFETY: callers pass slices holding the described matrices.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            T::ONE,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
            par,
        )
    }
}

/// The batch split of the generic path: tasks of `nb` samples, one GEMM each on the calling
/// thread, the two cores taking tasks from rayon's queue (no hand-off inside a product).
///
/// `nb` is the most samples whose im2col block (kk·nb·P elements) fits TASK_COL, so the block the
/// task writes is still in L2 when the GEMM packs it, lowered until the task count is even (or
/// nb = 1), so two threads get equal shares. It depends
/// only on the geometry, never on the thread count, so every result (the weight gradient's
/// fixed-order sum over tasks included) is the same on any number of threads.
fn task_split(g: &Geom) -> (usize, usize) {
    let mut nb = (TASK_COL / (g.kk() * g.p()).max(1)).clamp(1, g.n.max(1));
    while nb > 1 && g.n.div_ceil(nb) % 2 == 1 && g.n.div_ceil(nb) > 1 {
        nb -= 1;
    }
    (nb, g.n.div_ceil(nb).max(1))
}

pub(crate) fn conv2d<T: Elem>(x: &CpuTensor<T>, w: &CpuTensor<T>, cp: ConvParams) -> CpuTensor<T> {
    let [n, ci, h, wd] = dims4("conv2d", x.shape());
    let [co, ci2, k, _] = check_weight("conv2d", w.shape());
    assert_eq!(ci, ci2, "conv2d: input has {ci} channels, weight expects {ci2}");
    assert!(h + 2 * cp.pad >= k && wd + 2 * cp.pad >= k, "conv2d: kernel {k} larger than padded input {h}×{wd}");
    let g = Geom { n, ci, h, w: wd, k, ho: cp.out_size(h, k), wo: cp.out_size(wd, k), s: cp.stride, pad: cp.pad };
    let (kk, p) = (g.kk(), g.p());
    let mut out = zeros::<T>(n * co * p);
    if g.is_dense() {
        // SAFETY: read-only inputs.
        let (xs, ws) = unsafe { (x.data(), w.data()) };
        gemm(n, kk, co, xs, false, ws, kk, true, T::ZERO, &mut out, true);
        return CpuTensor::from_vec(out, &[n, co, 1, 1]);
    }
    if convk::enabled(convk::FWD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(xs), Some(ws), Some(o)) = unsafe { (f32s(x.data()), f32s(w.data()), f32s_mut(&mut out)) } {
            convk::conv2d(&g, co, xs, ws, o);
            return CpuTensor::from_vec(out, &[n, co, g.ho, g.wo]);
        }
    }
    let (nb, _) = task_split(&g);
    let idx = taps::use_taps(&g).then(|| taps::table(&g));
    // SAFETY: read-only inputs.
    let (xs, ws) = unsafe { (x.data(), w.data()) };
    let task = |t: usize, dst: &mut [T]| {
        let b = dst.len() / (co * p);
        let mut colv = take_scratch::<T>(kk * b * p);
        let col = &mut colv[..kk * b * p];
        match &idx {
            Some(idx) => taps::im2col(&g, idx, xs, t * nb, b, col),
            None => im2col(&g, xs, t * nb, b, col),
        }
        if b == 1 {
            gemm(co, kk, p, ws, false, col, p, false, T::ZERO, dst, false);
        } else {
            let mut tmpv = take_scratch::<T>(co * b * p);
            let tmp = &mut tmpv[..co * b * p];
            gemm(co, kk, b * p, ws, false, col, b * p, false, T::ZERO, tmp, false);
            to_sample_major(tmp, b, co, p, dst);
            give_scratch(tmpv);
        }
        give_scratch(colv);
    };
    out.par_chunks_mut(nb * co * p).enumerate().for_each(|(t, d)| task(t, d));
    CpuTensor::from_vec(out, &[n, co, g.ho, g.wo])
}

pub(crate) fn conv2d_data_grad<T: Elem>(
    gy: &CpuTensor<T>,
    w: &CpuTensor<T>,
    cp: ConvParams,
    (h, wd): (usize, usize),
) -> CpuTensor<T> {
    let [n, co, ho, wo] = dims4("conv2d_data_grad", gy.shape());
    let [co2, ci, k, _] = check_weight("conv2d_data_grad", w.shape());
    assert_eq!(co, co2, "conv2d_data_grad: gradient has {co} channels, weight has {co2} outputs");
    assert!(
        h + 2 * cp.pad >= k && cp.out_size(h, k) == ho && cp.out_size(wd, k) == wo,
        "conv2d_data_grad: output {h}×{wd} does not convolve to {ho}×{wo} (k {k}, {cp:?})"
    );
    let g = Geom { n, ci, h, w: wd, k, ho, wo, s: cp.stride, pad: cp.pad };
    let (kk, p) = (g.kk(), g.p());
    let mut out = zeros::<T>(n * ci * h * wd);
    if g.is_dense() {
        // SAFETY: read-only inputs.
        let (gs, ws) = unsafe { (gy.data(), w.data()) };
        gemm(n, co, kk, gs, false, ws, kk, false, T::ZERO, &mut out, true);
        return CpuTensor::from_vec(out, &[n, ci, h, wd]);
    }
    if convk::enabled(convk::DGRAD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(gs), Some(ws), Some(o)) = unsafe { (f32s(gy.data()), f32s(w.data()), f32s_mut(&mut out)) } {
            convk::data_grad(&g, co, gs, ws, o);
            return CpuTensor::from_vec(out, &[n, ci, h, wd]);
        }
    }
    let (nb, _) = task_split(&g);
    let idx = taps::use_taps(&g).then(|| taps::table(&g));
    let hw = h * wd;
    // SAFETY: read-only inputs.
    let (gs, ws) = unsafe { (gy.data(), w.data()) };
    let task = |t: usize, dst: &mut [T]| {
        let (n0, b) = (t * nb, dst.len() / (ci * hw));
        let src = &gs[n0 * co * p..(n0 + b) * co * p];
        let mut colv = take_scratch::<T>(kk * b * p);
        let col = &mut colv[..kk * b * p];
        if b == 1 {
            gemm(kk, co, p, ws, true, src, p, false, T::ZERO, col, false);
        } else {
            let mut gypv = take_scratch::<T>(co * b * p);
            let gyp = &mut gypv[..co * b * p];
            to_channel_major(src, b, co, p, gyp);
            gemm(kk, co, b * p, ws, true, gyp, b * p, false, T::ZERO, col, false);
            give_scratch(gypv);
        }
        match &idx {
            Some(idx) => taps::col2im(&g, idx, col, b, dst),
            None => col2im(&g, col, b, dst),
        }
        give_scratch(colv);
    };
    out.par_chunks_mut(nb * ci * hw).enumerate().for_each(|(t, d)| task(t, d));
    CpuTensor::from_vec(out, &[n, ci, h, wd])
}

pub(crate) fn conv2d_weight_grad<T: Elem>(
    x: &CpuTensor<T>,
    gy: &CpuTensor<T>,
    cp: ConvParams,
    k: usize,
) -> CpuTensor<T> {
    let [n, ci, h, wd] = dims4("conv2d_weight_grad", x.shape());
    let [n2, co, ho, wo] = dims4("conv2d_weight_grad", gy.shape());
    assert_eq!(n, n2, "conv2d_weight_grad: batch sizes differ");
    assert!(
        h + 2 * cp.pad >= k && cp.out_size(h, k) == ho && cp.out_size(wd, k) == wo,
        "conv2d_weight_grad: input {h}×{wd} does not convolve to {ho}×{wo} (k {k}, {cp:?})"
    );
    let g = Geom { n, ci, h, w: wd, k, ho, wo, s: cp.stride, pad: cp.pad };
    let (kk, p) = (g.kk(), g.p());
    let mut gw = zeros::<T>(co * kk);
    if g.is_dense() {
        // SAFETY: read-only inputs.
        let (xs, gs) = unsafe { (x.data(), gy.data()) };
        gemm(co, n, kk, gs, true, xs, kk, false, T::ZERO, &mut gw, true);
        return CpuTensor::from_vec(gw, &[co, ci, k, k]);
    }
    if convk::enabled(convk::WGRAD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(xs), Some(gs), Some(o)) = unsafe { (f32s(x.data()), f32s(gy.data()), f32s_mut(&mut gw)) } {
            convk::weight_grad(&g, co, xs, gs, o);
            return CpuTensor::from_vec(gw, &[co, ci, k, k]);
        }
    }
    let (nb, tasks) = task_split(&g);
    let idx = taps::use_taps(&g).then(|| taps::table(&g));
    // SAFETY: read-only inputs.
    let (xs, gs) = unsafe { (x.data(), gy.data()) };
    // Each task's partial gW over its samples; the partials are summed in task order.
    let mut partsv = if tasks > 1 { take_scratch::<T>(tasks * co * kk) } else { Vec::new() };
    let task = |t: usize, part: &mut [T]| {
        let n0 = t * nb;
        let b = nb.min(n - n0);
        let mut colv = take_scratch::<T>(kk * b * p);
        let col = &mut colv[..kk * b * p];
        match &idx {
            Some(idx) => taps::im2col(&g, idx, xs, n0, b, col),
            None => im2col(&g, xs, n0, b, col),
        }
        let src = &gs[n0 * co * p..(n0 + b) * co * p];
        if b == 1 {
            gemm(co, p, kk, src, false, col, p, true, T::ZERO, part, false);
        } else {
            let mut gypv = take_scratch::<T>(co * b * p);
            let gyp = &mut gypv[..co * b * p];
            to_channel_major(src, b, co, p, gyp);
            gemm(co, b * p, kk, gyp, false, col, b * p, true, T::ZERO, part, false);
            give_scratch(gypv);
        }
        give_scratch(colv);
    };
    if tasks == 1 {
        task(0, &mut gw);
    } else {
        let parts = &mut partsv[..tasks * co * kk];
        parts.par_chunks_mut(co * kk).enumerate().for_each(|(t, d)| task(t, d));
        let (first, rest) = parts.split_at(co * kk);
        gw.copy_from_slice(first);
        for part in rest.chunks(co * kk) {
            for (d, &v) in gw.iter_mut().zip(part) {
                *d += v;
            }
        }
        give_scratch(partsv);
    }
    CpuTensor::from_vec(gw, &[co, ci, k, k])
}

/// d[i] = src[i·s]: one row of an im2col tap.
pub(super) fn gather_strided<T: Copy>(d: &mut [T], src: &[T], s: usize) {
    if s == 1 {
        d.copy_from_slice(src);
    } else if s == 2 {
        // A constant stride lets LLVM drop the bounds checks and vectorise.
        for (i, v) in d.iter_mut().enumerate() {
            *v = src[2 * i];
        }
    } else {
        for (i, v) in d.iter_mut().enumerate() {
            *v = src[i * s];
        }
    }
}
