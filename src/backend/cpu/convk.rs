//! The f32 convolution passes on x86-64 with AVX2 + FMA: im2col whose output *is* the GEMM's packed
//! B operand, around one register-tiled micro-kernel, one sample (or a few) per task.
//!
//! Why this route: the DCGAN layers are small (K = 16…1024, 16…196 output pixels per sample). A
//! task takes one sample: its im2col block (≤ 100 KB) stays in L2, the micro-kernel reads it in
//! place (rows of the block are the B panel, 16 columns at a time, the tail by masked loads), writes
//! the sample's NCHW output directly, and the two cores split the batch with no hand-off inside a
//! product. (The generic path in `conv.rs` now works the same way, on tasks of a few samples around
//! the `gemm` crate; see there.)
//!
//! - forward:        y_j[co, p] = W[co, r] · col_j[r, p]                    (A = W packed once per call)
//! - data gradient:  col_j[r, p] = Wᵀ[r, co] · gy_j[co, p], then col2im      (B = gy_j read in place)
//! - weight gradient: gWᵀ[r, co] = Σ_j col_j[r, p] · gy_j[co, p]ᵀ          (col_j written as A panels)
//!   summed per fixed chunk of `WG_TASK` samples, then over chunks in order, so the result does not
//!   depend on the thread count.
//!
//! The micro-kernel computes a 6×16 tile of C from a 6-row panel of A stored k-major ([k][6]) and a
//! 16-column strip of B (row stride ldb): 12 ymm accumulators, 2 loads and 6 broadcasts per k.
//! AVX-512 machines run it too (no 512-bit variant: no AVX-512 machine was available to test one).
//!
//! Which passes use it: [`set_avx2_conv_passes`] / `WGAN_CPU_CONV` (default: forward and data
//! gradient of small-patch layers, the 1- to 3-channel image layers, where the CPU has AVX2 but not
//! AVX-512: there they measured 1.02–1.45× the generic path; on the wide layers 0.89–1.04×, and
//! weight gradients 0.53–0.90×, so those stay on the `gemm` crate, as does everything with AVX-512, whose 512-bit kernels are
//! wider than these). Without AVX2 + FMA, and
//! for f64, the generic path runs. Timing beside the generic path in one process:
//! `AB=1 CPU_TIME=1 cargo run --release --example profile_conv`.

use super::conv::Geom;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Rows (of C and A) and columns (of C and B) of the micro-kernel's tile.
pub(crate) const MR: usize = 6;
pub(crate) const NR: usize = 16;
/// Depth of one pass of the micro-kernel over k (the B strip, KC × 16 floats, stays in L1).
const KC: usize = 256;
/// Samples per weight-gradient task (the unit of the fixed reduction order).
const WG_TASK: usize = 8;
/// Largest im2col block of one weight-gradient sub-chunk (floats): 256 KB, inside L2.
const ROW_MAX: usize = 64 * 1024;

/// Passes that run on the AVX2 kernels: bit 0 forward, bit 1 data gradient, bit 2 weight gradient,
/// bit 3 "small patches only" (ci·k² ≤ SMALL_K); bit 7 set once decided (from `WGAN_CPU_CONV` on
/// first use, or by [`set_avx2_conv_passes`]).
static PASSES: AtomicU8 = AtomicU8::new(0);
pub(crate) const FWD: u8 = 1;
pub(crate) const DGRAD: u8 = 2;
pub(crate) const WGRAD: u8 = 4;
pub(crate) const SMALL_ONLY: u8 = 8;
/// Largest patch (ci·k²) counted as small: a 1- to 3-channel layer with a 4×4 kernel.
const SMALL_K: usize = 48;

/// The default on an AVX2 machine without AVX-512: forward and data gradient of small-patch
/// layers (the 1-channel image layers: 1.02–1.45× the generic path, single-threaded CPU time,
/// bench-results/2026-11-30-conv-ab-cputime.log); the generic path everywhere else, where these
/// kernels measured 0.89–1.04× of it (forward, data gradient) and 0.53–0.90× (weight gradient). With AVX-512 the `gemm` crate's 512-bit kernels are twice
/// as wide as these, so every pass stays there.
fn default_passes() -> u8 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        return 0;
    }
    FWD | DGRAD | SMALL_ONLY
}

/// Whether this CPU can run the kernels (AVX2 and FMA).
pub fn avx2_conv_available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Which f32 convolution passes use the AVX2 kernels (where available): a mask of bit 0 forward,
/// bit 1 data gradient, bit 2 weight gradient, bit 3 only for patches of at most 48 (1–3 input
/// channels). `WGAN_CPU_CONV=gemm` (0), `avx2` (7) or a number sets it at start-up; the default
/// is 11 (forward and data gradient of small-patch layers) on AVX2 machines without AVX-512, 0
/// with AVX-512.
pub fn set_avx2_conv_passes(mask: u8) {
    PASSES.store(0x80 | (mask & 15), Ordering::Relaxed);
}

/// All passes on the AVX2 kernels, every shape (`true`), or none (`false`).
pub fn use_avx2_conv(on: bool) {
    set_avx2_conv_passes(if on { 7 } else { 0 });
}

/// Whether `pass` (FWD, DGRAD or WGRAD) of a convolution with patches of `kk` = ci·k² runs on the
/// AVX2 kernels.
pub(crate) fn enabled(pass: u8, kk: usize) -> bool {
    let mut v = PASSES.load(Ordering::Relaxed);
    if v == 0 {
        v = 0x80
            | match std::env::var("WGAN_CPU_CONV").as_deref() {
                Ok("gemm") => 0,
                Ok("avx2") => 7,
                Ok(s) => s.parse::<u8>().map(|m| m & 15).unwrap_or_else(|_| default_passes()),
                Err(_) => default_passes(),
            };
        PASSES.store(v, Ordering::Relaxed);
    }
    v & pass != 0 && (v & SMALL_ONLY == 0 || kk <= SMALL_K) && avx2_conv_available()
}

/// The f32 convolution paths on this machine, e.g. "fwd avx2, dgrad avx2, wgrad gemm".
pub fn conv_path() -> String {
    enabled(FWD, 0); // decides PASSES on first use
    let small = PASSES.load(Ordering::Relaxed) & SMALL_ONLY != 0;
    let p = |b: u8| if enabled(b, 0) { "avx2" } else { "gemm" };
    let only = if small { format!(" (avx2 only for patches ci·k² ≤ {SMALL_K})") } else { String::new() };
    format!("fwd {}, dgrad {}, wgrad {}{only}", p(FWD), p(DGRAD), p(WGRAD))
}

/// A packed in MR-row panels: panel q holds rows q·MR.. as [k][MR] (rows past `m` are zero).
/// `at(i, k)` reads A[i, k].
fn pack_a(m: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0.0f32; panels * k * MR];
    for q in 0..panels {
        let dst = &mut out[q * k * MR..][..k * MR];
        for i in 0..MR.min(m - q * MR) {
            for kk in 0..k {
                dst[kk * MR + i] = at(q * MR + i, kk);
            }
        }
    }
    out
}

/// B packed in NR-column tiles: tile t holds columns t·NR.. as [k][NR] (columns past n are zero),
/// so the micro-kernel reads a contiguous strip (a strided strip of a row-major B aliases in L1).
/// `row(kk, buf)` writes row kk of B (n values) into `buf` (NR-padded, zero past n on entry).
fn pack_b(k: usize, n: usize, pb: &mut [f32], mut row: impl FnMut(usize, &mut [f32]), buf: &mut [f32]) {
    let tiles = n.div_ceil(NR);
    let buf = &mut buf[..tiles * NR];
    for kk in 0..k {
        row(kk, &mut buf[..n]);
        for t in 0..tiles {
            pb[(t * k + kk) * NR..][..NR].copy_from_slice(&buf[t * NR..][..NR]);
        }
    }
}

/// A scratch buffer of at least n floats and the offset of its first 64-byte-aligned element (the
/// micro-kernel's 32-byte loads of a packed operand must not straddle cache lines).
fn take_aligned(n: usize) -> (Vec<f32>, usize) {
    let v = super::par::take_scratch::<f32>(n + 16);
    let off = (64 - (v.as_ptr() as usize) % 64) % 64 / 4;
    (v, off)
}

/// Floats of a B packed by [`pack_b`].
fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// C[m × n] (row stride ldc) (+)= A · B with A packed by [`pack_a`] and B by [`pack_b`] (depth k).
///
/// # Safety
/// AVX2 and FMA must be present; c must hold m rows of ldc ≥ n floats.
unsafe fn gemm_packed(m: usize, n: usize, k: usize, ap: &[f32], pb: &[f32], c: *mut f32, ldc: usize, accumulate: bool) {
    let panels = m.div_ceil(MR);
    assert!(ap.len() >= panels * k * MR && pb.len() >= packed_len(k, n));
    let tiles = n.div_ceil(NR);
    // One operand is re-read once per tile or panel of the other: keep it in L1 (32 KB) if it fits.
    // A panels inner re-read all of A per column tile; B tiles inner all of B per row panel.
    let kc0 = KC.min(k);
    let (a_bytes, b_bytes) = (panels * kc0 * MR * 4, tiles * kc0 * NR * 4);
    let a_inner = a_bytes <= 24 << 10 || b_bytes > 28 << 10;
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let call = |t: usize, q: usize| {
            let (n0, mr) = (t * NR, MR.min(m - q * MR));
            kernel::tile(
                kc,
                ap.as_ptr().add(q * k * MR + k0 * MR),
                pb.as_ptr().add((t * k + k0) * NR),
                c.add(q * MR * ldc + n0),
                ldc,
                mr,
                NR.min(n - n0),
                accumulate || k0 > 0,
            )
        };
        if a_inner {
            for t in 0..tiles {
                for q in 0..panels {
                    call(t, q);
                }
            }
        } else {
            for q in 0..panels {
                for t in 0..tiles {
                    call(t, q);
                }
            }
        }
    }
}

/// y [n, co, ho, wo] = conv2d(x, w); `out` is y's buffer.
pub(crate) fn conv2d(g: &Geom, co: usize, xs: &[f32], ws: &[f32], out: &mut [f32]) {
    use rayon::prelude::*;
    let (kk, p) = (g.kk(), g.p());
    let ap = pack_a(co, kk, |i, k| ws[i * kk + k]);
    out.par_chunks_mut(co * p).enumerate().for_each(|(j, y)| {
        let (mut pbv, off) = take_aligned(packed_len(kk, p));
        let pb = &mut pbv[off..];
        let mut buf = vec![0.0f32; p.div_ceil(NR) * NR];
        let hw = g.h * g.w;
        let xj = &xs[j * g.ci * hw..][..g.ci * hw];
        pack_b(kk, p, pb, |r, d| im2col_row(g, xj, r, d), &mut buf);
        // SAFETY: AVX2/FMA checked by `enabled`; y is co × p.
        unsafe { gemm_packed(co, p, kk, &ap, pb, y.as_mut_ptr(), p, false) };
        super::par::give_scratch(pbv);
    });
}

/// d[q] = x[ci, oh·s+kh−pad, ow·s+kw−pad] (0 outside) for pixel q = (oh, ow), row r = (ci, kh, kw).
fn im2col_row(g: &Geom, xj: &[f32], r: usize, d: &mut [f32]) {
    let k = g.k;
    let (ci, kh, kw) = (r / (k * k), (r / k) % k, r % k);
    let (rlo, rhi) = g.valid_rows(kh);
    let (lo, hi) = g.valid_cols(kw);
    let n = hi - lo;
    if rlo > 0 || rhi < g.ho || lo > 0 || hi < g.wo {
        d.fill(0.0);
    }
    if n == 0 {
        return;
    }
    let plane = &xj[ci * g.h * g.w..][..g.h * g.w];
    for oh in rlo..rhi {
        let d = &mut d[oh * g.wo + lo..][..n];
        let src = &plane[(oh * g.s + kh - g.pad) * g.w + lo * g.s + kw - g.pad..];
        super::conv::gather_strided(d, &src[..(n - 1) * g.s + 1], g.s);
    }
}

/// dx [n, ci, h, w] = conv2d_data_grad(gy, w); `out` is dx's buffer.
pub(crate) fn data_grad(g: &Geom, co: usize, gs: &[f32], ws: &[f32], out: &mut [f32]) {
    use rayon::prelude::*;
    let (kk, p) = (g.kk(), g.p());
    let ap = pack_a(kk, co, |r, c| ws[c * kk + r]);
    out.par_chunks_mut(g.ci * g.h * g.w).enumerate().for_each(|(j, dx)| {
        let mut col = super::par::take_scratch::<f32>(kk * p);
        let (mut pbv, off) = take_aligned(packed_len(co, p));
        let pb = &mut pbv[off..];
        let mut buf = vec![0.0f32; p.div_ceil(NR) * NR];
        let gy = &gs[j * co * p..][..co * p];
        pack_b(co, p, pb, |c, d| d.copy_from_slice(&gy[c * p..][..p]), &mut buf);
        // SAFETY: as above; col is kk × p.
        unsafe { gemm_packed(kk, p, co, &ap, pb, col.as_mut_ptr(), p, false) };
        super::conv::col2im(g, &col[..kk * p], 1, dx);
        super::par::give_scratch(pbv);
        super::par::give_scratch(col);
    });
}

/// gw [co, ci, k, k] = conv2d_weight_grad(x, gy); `gw` is zero on entry.
///
/// Computed transposed, gWᵀ[r, o] = Σ_(j,q) col_j[r, q] · gy_j[o, q]: the im2col rows (the fast,
/// row-copying gather) are written straight into the A panels, and B = gyᵀ is the small operand.
pub(crate) fn weight_grad(g: &Geom, co: usize, xs: &[f32], gs: &[f32], gw: &mut [f32]) {
    use rayon::prelude::*;
    let (kk, p, n, hw) = (g.kk(), g.p(), g.n, g.h * g.w);
    let tasks = n.div_ceil(WG_TASK);
    let sub = (ROW_MAX / (p * kk).max(1)).clamp(1, WG_TASK);
    let panels = kk.div_ceil(MR);
    let partial = |t: usize| -> Vec<f32> {
        let mut acc = vec![0.0f32; kk * co];
        let mut ap = super::par::take_scratch::<f32>(panels * MR * sub * p);
        let (mut pbv, off) = take_aligned(packed_len(sub * p, co));
        let pb = &mut pbv[off..];
        let mut buf = vec![0.0f32; p];
        let (lo, hi) = (t * WG_TASK, ((t + 1) * WG_TASK).min(n));
        for (c, j0) in (lo..hi).step_by(sub).enumerate() {
            let b = sub.min(hi - j0);
            let kd = b * p;
            for j in 0..b {
                let xj = &xs[(j0 + j) * g.ci * hw..][..g.ci * hw];
                for r in 0..kk {
                    im2col_row(g, xj, r, &mut buf);
                    let a = &mut ap[(r / MR * kd + j * p) * MR + r % MR..];
                    for (q, &v) in buf.iter().enumerate() {
                        a[q * MR] = v;
                    }
                }
                let gyj = &gs[(j0 + j) * co * p..][..co * p];
                for o in 0..co {
                    let d = &mut pb[(o / NR * kd + j * p) * NR + o % NR..];
                    for (q, &v) in gyj[o * p..][..p].iter().enumerate() {
                        d[q * NR] = v;
                    }
                }
            }
            // Rows of A past kk and columns of B past co hold stale values: the kernel does not
            // store those rows and columns of C.
            // SAFETY: as above; acc is kk × co.
            unsafe { gemm_packed(kk, co, kd, &ap, pb, acc.as_mut_ptr(), co, c > 0) };
        }
        super::par::give_scratch(ap);
        super::par::give_scratch(pbv);
        acc
    };
    let parts: Vec<Vec<f32>> = (0..tasks).into_par_iter().map(partial).collect();
    let mut sum = parts[0].clone();
    for part in &parts[1..] {
        for (d, v) in sum.iter_mut().zip(part) {
            *d += v;
        }
    }
    for (o, row) in gw.chunks_mut(kk).enumerate() {
        for (r, v) in row.iter_mut().enumerate() {
            *v = sum[r * co + o];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// C[i, j] (+)= Σ_k a[k·MR + i] · b[k·NR + j] for i < mr, j < nr (nr ≤ 16, mr ≤ 6).
    ///
    /// # Safety
    /// AVX2 + FMA; a holds kc·MR floats, b kc·NR floats, c mr rows of nr floats.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        acc: bool,
    ) {
        if nr == NR {
            tile_v::<2, false>(kc, a, b, c, ldc, mr, nr, acc)
        } else if nr > 8 {
            tile_v::<2, true>(kc, a, b, c, ldc, mr, nr, acc)
        } else if nr == 8 {
            tile_v::<1, false>(kc, a, b, c, ldc, mr, nr, acc)
        } else {
            tile_v::<1, true>(kc, a, b, c, ldc, mr, nr, acc)
        }
    }

    /// V vectors of 8 columns per row; with MASK the last vector covers nr − 8·(V−1) columns.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_v<const V: usize, const MASK: bool>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        acc: bool,
    ) {
        let rem = (nr - 8 * (V - 1)) as i32;
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let mut s = [[_mm256_setzero_ps(); V]; MR];
        let mut bp = b;
        let mut ap = a;
        for _ in 0..kc {
            let mut bv = [_mm256_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm256_loadu_ps(bp.add(8 * v));
            }
            for (i, si) in s.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*ap.add(i));
                for v in 0..V {
                    si[v] = _mm256_fmadd_ps(ai, bv[v], si[v]);
                }
            }
            bp = bp.add(NR);
            ap = ap.add(MR);
        }
        for (i, si) in s.iter().enumerate().take(mr) {
            let cp = c.add(i * ldc);
            for (v, &r) in si.iter().enumerate() {
                let last = MASK && v == V - 1;
                let dst = cp.add(8 * v);
                let mut r = r;
                if acc {
                    let old = if last { _mm256_maskload_ps(dst, mask) } else { _mm256_loadu_ps(dst) };
                    r = _mm256_add_ps(old, r);
                }
                if last {
                    _mm256_maskstore_ps(dst, mask, r)
                } else {
                    _mm256_storeu_ps(dst, r)
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    /// Never called: `enabled()` is false off x86-64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        _: usize,
        _: *const f32,
        _: *const f32,
        _: *mut f32,
        _: usize,
        _: usize,
        _: usize,
        _: bool,
    ) {
        unreachable!("AVX2 convolution kernel called off x86-64")
    }
}
