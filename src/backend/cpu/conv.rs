//! Matrix product and 2-D convolution (im2col / col2im around one GEMM per batch chunk).

use super::par::{give_scratch, take_scratch, zeros, PAR_MIN};
use super::{convk, CpuTensor, Elem};
use crate::backend::ConvParams;
use rayon::prelude::*;
use std::any::TypeId;

/// Largest im2col buffer (elements); bigger batches are processed in chunks of samples.
const COL_MAX: usize = 1 << 22;

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
    /// Samples per chunk so that the im2col buffer stays under COL_MAX.
    fn batch_chunk(&self) -> usize {
        (COL_MAX / (self.kk() * self.p()).max(1)).clamp(1, self.n.max(1))
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

/// col[r, j·P + p] = x[n0+j, ci, oh·s+kh−pad, ow·s+kw−pad] (0 outside) for r = (ci, kh, kw).
fn im2col<T: Elem>(g: &Geom, x: &[T], n0: usize, b: usize, col: &mut [T]) {
    im2col_par(g, x, n0, b, col, col.len() >= PAR_MIN)
}

fn im2col_par<T: Elem>(g: &Geom, x: &[T], n0: usize, b: usize, col: &mut [T], par: bool) {
    let (p, hw, k) = (g.p(), g.h * g.w, g.k);
    let row = |r: usize, dst: &mut [T]| {
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
    };
    let len = b * p;
    if !par {
        col.chunks_mut(len).enumerate().for_each(|(r, d)| row(r, d));
    } else {
        col.par_chunks_mut(len).enumerate().for_each(|(r, d)| row(r, d));
    }
}

/// out[ci, j] = Σ_{kh,kw} scatter of col rows (ci, kh, kw): the adjoint of im2col, written
/// channel-major ([ci, b, h, w]) so that each task reads its channel's k² rows of `col`
/// front to back (the GEMM just wrote them; streaming them beats gathering pieces of 16 rows
/// per output plane, which made col2im wait on memory).
fn col2im<T: Elem>(g: &Geom, col: &[T], b: usize, out: &mut [T]) {
    col2im_par(g, col, b, out, out.len() >= PAR_MIN)
}

/// col2im of one sample on the calling thread: col [ci·k·k, P] → out [ci, h, w].
pub(crate) fn col2im_seq<T: Elem>(g: &Geom, col: &[T], out: &mut [T]) {
    col2im_par(g, col, 1, out, false)
}

fn col2im_par<T: Elem>(g: &Geom, col: &[T], b: usize, out: &mut [T], par: bool) {
    let (p, hw, k) = (g.p(), g.h * g.w, g.k);
    // A task is one channel's planes, or one plane when there are too few channels to keep the
    // threads busy (an image's 1 or 3 channels).
    let jb = if g.ci >= 4 { b } else { 1 };
    let planes = |q: usize, o: &mut [T]| {
        let (ci, j0) = (q * jb / b, q * jb % b);
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
                for j in 0..jb {
                    let src = &col[r * b * p + (j0 + j) * p..][..p];
                    let o = &mut o[j * hw..][..hw];
                    for oh in rlo..rhi {
                        let s = &src[oh * g.wo + lo..][..n];
                        let d = &mut o[(oh * g.s + kh - g.pad) * g.w + lo * g.s + kw - g.pad..];
                        if g.s == 1 {
                            for (d, &v) in d[..n].iter_mut().zip(s) {
                                *d += v;
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
    };
    if !par {
        out.chunks_mut(jb * hw).enumerate().for_each(|(q, o)| planes(q, o));
    } else {
        out.par_chunks_mut(jb * hw).enumerate().for_each(|(q, o)| planes(q, o));
    }
}

/// dst[c, j·P + p] = src[j, c, p]: [b, C, P] → [C, b·P].
fn to_channel_major<T: Elem>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    let f = |ch: usize, d: &mut [T]| {
        for j in 0..b {
            d[j * p..][..p].copy_from_slice(&src[(j * c + ch) * p..][..p]);
        }
    };
    if dst.len() < PAR_MIN {
        dst.chunks_mut(b * p).enumerate().for_each(|(ch, d)| f(ch, d));
    } else {
        dst.par_chunks_mut(b * p).enumerate().for_each(|(ch, d)| f(ch, d));
    }
}

/// dst[j, c, p] = src[c, j·P + p]: [C, b·P] → [b, C, P].
fn to_sample_major<T: Elem>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    let f = |j: usize, d: &mut [T]| {
        for ch in 0..c {
            d[ch * p..][..p].copy_from_slice(&src[ch * b * p + j * p..][..p]);
        }
    };
    if dst.len() < PAR_MIN {
        dst.chunks_mut(c * p).enumerate().for_each(|(j, d)| f(j, d));
    } else {
        dst.par_chunks_mut(c * p).enumerate().for_each(|(j, d)| f(j, d));
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

/// C[m×n] (row stride ldc) = α·A·B + β·C with row-major A [m×k] (ta: stored k×m) and B.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Elem>(m: usize, k: usize, n: usize, a: &[T], ta: bool, b: &[T], ldb: usize, tb: bool, beta: T, c: &mut [T]) {
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
        )
    }
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
        gemm(n, kk, co, xs, false, ws, kk, true, T::ZERO, &mut out);
        return CpuTensor::from_vec(out, &[n, co, 1, 1]);
    }
    if convk::enabled(convk::FWD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(xs), Some(ws), Some(o)) = unsafe { (f32s(x.data()), f32s(w.data()), f32s_mut(&mut out)) } {
            convk::conv2d(&g, co, xs, ws, o);
            return CpuTensor::from_vec(out, &[n, co, g.ho, g.wo]);
        }
    }
    let nb = g.batch_chunk();
    let mut col = take_scratch::<T>(kk * nb * p);
    let mut tmp = if nb > 1 { take_scratch::<T>(co * nb * p) } else { Vec::new() };
    // SAFETY: read-only inputs.
    let (xs, ws) = unsafe { (x.data(), w.data()) };
    for n0 in (0..n).step_by(nb) {
        let b = nb.min(n - n0);
        let col = &mut col[..kk * b * p];
        im2col(&g, xs, n0, b, col);
        let dst = &mut out[n0 * co * p..(n0 + b) * co * p];
        if b == 1 {
            gemm(co, kk, p, ws, false, col, p, false, T::ZERO, dst);
        } else {
            let tmp = &mut tmp[..co * b * p];
            gemm(co, kk, b * p, ws, false, col, b * p, false, T::ZERO, tmp);
            to_sample_major(tmp, b, co, p, dst);
        }
    }
    give_scratch(col);
    give_scratch(tmp);
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
        gemm(n, co, kk, gs, false, ws, kk, false, T::ZERO, &mut out);
        return CpuTensor::from_vec(out, &[n, ci, h, wd]);
    }
    if convk::enabled(convk::DGRAD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(gs), Some(ws), Some(o)) = unsafe { (f32s(gy.data()), f32s(w.data()), f32s_mut(&mut out)) } {
            convk::data_grad(&g, co, gs, ws, o);
            return CpuTensor::from_vec(out, &[n, ci, h, wd]);
        }
    }
    let nb = g.batch_chunk();
    let hw = h * wd;
    let mut col = take_scratch::<T>(kk * nb * p);
    let mut gyp = if nb > 1 { take_scratch::<T>(co * nb * p) } else { Vec::new() };
    let mut dxc = if nb > 1 { take_scratch::<T>(ci * nb * hw) } else { Vec::new() };
    // SAFETY: read-only inputs.
    let (gs, ws) = unsafe { (gy.data(), w.data()) };
    for n0 in (0..n).step_by(nb) {
        let b = nb.min(n - n0);
        let src = &gs[n0 * co * p..(n0 + b) * co * p];
        let bm: &[T] = if b == 1 {
            src
        } else {
            to_channel_major(src, b, co, p, &mut gyp[..co * b * p]);
            &gyp[..co * b * p]
        };
        let col = &mut col[..kk * b * p];
        gemm(kk, co, b * p, ws, true, bm, b * p, false, T::ZERO, col);
        let dst = &mut out[n0 * ci * hw..(n0 + b) * ci * hw];
        if b == 1 {
            col2im(&g, col, 1, dst);
        } else {
            col2im(&g, col, b, &mut dxc[..ci * b * hw]);
            to_sample_major(&dxc[..ci * b * hw], b, ci, hw, dst);
        }
    }
    give_scratch(col);
    give_scratch(gyp);
    give_scratch(dxc);
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
        gemm(co, n, kk, gs, true, xs, kk, false, T::ZERO, &mut gw);
        return CpuTensor::from_vec(gw, &[co, ci, k, k]);
    }
    if convk::enabled(convk::WGRAD, g.kk()) {
        // SAFETY: read-only inputs.
        if let (Some(xs), Some(gs), Some(o)) = unsafe { (f32s(x.data()), f32s(gy.data()), f32s_mut(&mut gw)) } {
            convk::weight_grad(&g, co, xs, gs, o);
            return CpuTensor::from_vec(gw, &[co, ci, k, k]);
        }
    }
    let nb = g.batch_chunk();
    let mut col = take_scratch::<T>(kk * nb * p);
    let mut gyp = if nb > 1 { take_scratch::<T>(co * nb * p) } else { Vec::new() };
    // SAFETY: read-only inputs.
    let (xs, gs) = unsafe { (x.data(), gy.data()) };
    for n0 in (0..n).step_by(nb) {
        let b = nb.min(n - n0);
        let col = &mut col[..kk * b * p];
        im2col(&g, xs, n0, b, col);
        let src = &gs[n0 * co * p..(n0 + b) * co * p];
        let am: &[T] = if b == 1 {
            src
        } else {
            to_channel_major(src, b, co, p, &mut gyp[..co * b * p]);
            &gyp[..co * b * p]
        };
        gemm(co, b * p, kk, am, false, col, b * p, true, T::ONE, &mut gw);
    }
    give_scratch(col);
    give_scratch(gyp);
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
