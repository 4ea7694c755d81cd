//! im2col and col2im by per-tap index tables, for convolutions whose output rows are short or
//! strided (every layer of the DCGAN-28 critic: 7- and 4-pixel rows read with stride 2).
//!
//! The row-copying im2col in `conv.rs` pays a loop set-up, a valid-window computation and, at the
//! edges, a zero fill per output row; on a 7×7 output that bookkeeping, not the copying, was what
//! im2col cost (16 % of the default job's single-thread time, `perf`). Here the geometry is
//! resolved once per call into a table: for tap t = (kh, kw) and output pixel q, the offset of the
//! input element it reads inside a channel plane, or −1 where it reads padding. Each (channel,
//! sample) row of im2col is then one pass over P pixels: an AVX2 masked gather (8 pixels per
//! instruction, padding read as 0) for f32 where the CPU has it, an indexed copy otherwise. col2im,
//! the adjoint, runs on the inverted table as a gather-sum per input element (see [`col2im`]).

use super::conv::Geom;
use super::Elem;
use std::any::TypeId;

/// Whether `g` runs on the tap tables: strided or narrow outputs (row copies of < 16 elements).
pub(crate) fn use_taps(g: &Geom) -> bool {
    g.s > 1 || g.wo < 16
}

/// idx[t·P + q] for tap t = kh·k + kw and output pixel q = oh·wo + ow: the input offset ih·w + iw
/// inside a channel plane, or −1 for padding.
pub(crate) fn table(g: &Geom) -> Vec<i32> {
    let (k, p) = (g.k, g.p());
    let mut idx = vec![-1i32; k * k * p];
    for kh in 0..k {
        for kw in 0..k {
            let t = &mut idx[(kh * k + kw) * p..][..p];
            let (rlo, rhi) = g.valid_rows(kh);
            let (lo, hi) = g.valid_cols(kw);
            for oh in rlo..rhi {
                for ow in lo..hi {
                    let (ih, iw) = (oh * g.s + kh - g.pad, ow * g.s + kw - g.pad);
                    t[oh * g.wo + ow] = (ih * g.w + iw) as i32;
                }
            }
        }
    }
    idx
}

/// col[r, j·P + q] = x[n0+j, ci, …] through the table, r = (ci, kh, kw): im2col of samples
/// n0..n0+b on the calling thread.
pub(crate) fn im2col<T: Elem>(g: &Geom, idx: &[i32], x: &[T], n0: usize, b: usize, col: &mut [T]) {
    let (p, hw, kk2) = (g.p(), g.h * g.w, g.k * g.k);
    let simd = TypeId::of::<T>() == TypeId::of::<f32>() && super::convk::avx2_conv_available();
    for (r, dst) in col.chunks_mut(b * p).enumerate() {
        let (ci, t) = (r / kk2, r % kk2);
        let ix = &idx[t * p..][..p];
        for j in 0..b {
            let plane = &x[((n0 + j) * g.ci + ci) * hw..][..hw];
            let d = &mut dst[j * p..][..p];
            if simd {
                // SAFETY: T is f32 (type id above); AVX2 checked; every idx entry is −1 or < hw.
                unsafe {
                    gather_avx2(
                        std::slice::from_raw_parts_mut(d.as_mut_ptr().cast(), p),
                        std::slice::from_raw_parts(plane.as_ptr().cast(), hw),
                        ix,
                    )
                }
            } else {
                for (d, &i) in d.iter_mut().zip(ix) {
                    *d = if i >= 0 { plane[i as usize] } else { T::ZERO };
                }
            }
        }
    }
}

/// out[j, ci] ([b, ci, h, w]) = Σ_taps scatter of col rows (ci, kh, kw), sample j's columns: the
/// adjoint of [`im2col`], on the calling thread.
///
/// Computed as a gather-sum rather than a scatter: the table is inverted into, for each input
/// offset i, the col offsets t·(b·P) + q of the (at most ⌈k/s⌉²) pixels that read it, in tap order;
/// each plane is then out[i] = Σ_c col[base + inv[c][i]], 8 offsets at a time with AVX2 masked
/// gathers for f32. The sum runs in tap order, as the scatter's adds did, so both give the same bits.
pub(crate) fn col2im<T: Elem>(g: &Geom, idx: &[i32], col: &[T], b: usize, out: &mut [T]) {
    let (p, hw, kk2) = (g.p(), g.h * g.w, g.k * g.k);
    let ld = b * p;
    assert!(kk2 * ld <= i32::MAX as usize, "col2im: a task's im2col block is too large for i32 offsets");
    // inv[c·hw + i]: the c-th contribution to input offset i, −1 past the last.
    let mut count = vec![0usize; hw];
    for &i in idx.iter().filter(|&&i| i >= 0) {
        count[i as usize] += 1;
    }
    let m = count.iter().copied().max().unwrap_or(0);
    let mut inv = vec![-1i32; m * hw];
    count.fill(0);
    for t in 0..kk2 {
        for (q, &i) in idx[t * p..][..p].iter().enumerate() {
            if i >= 0 {
                let i = i as usize;
                inv[count[i] * hw + i] = (t * ld + q) as i32;
                count[i] += 1;
            }
        }
    }
    let simd = TypeId::of::<T>() == TypeId::of::<f32>() && super::convk::avx2_conv_available();
    for (q, o) in out.chunks_mut(hw).enumerate() {
        let (j, ci) = (q / g.ci, q % g.ci);
        let base = &col[ci * kk2 * ld + j * p..];
        if simd {
            // SAFETY: T is f32 (type id above); AVX2 checked; every inv entry is −1 or an offset
            // t·ld + q < kk2·ld − j·p inside `base`.
            unsafe {
                gather_sum_avx2(
                    std::slice::from_raw_parts_mut(o.as_mut_ptr().cast(), hw),
                    std::slice::from_raw_parts(base.as_ptr().cast(), base.len()),
                    &inv,
                    m,
                )
            }
        } else {
            for (i, o) in o.iter_mut().enumerate() {
                let mut acc = T::ZERO;
                for c in 0..m {
                    let v = inv[c * hw + i];
                    if v >= 0 {
                        acc += base[v as usize];
                    }
                }
                *o = acc;
            }
        }
    }
}

/// o[i] = Σ_(c < m) src[inv[c·n + i]] (entries −1 skipped), n = o.len(), summed in c order.
///
/// # Safety
/// AVX2 must be present; every inv entry must be −1 or a valid index of src.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather_sum_avx2(o: &mut [f32], src: &[f32], inv: &[i32], m: usize) {
    use std::arch::x86_64::*;
    let n = o.len();
    let zero = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let mut acc = _mm256_setzero_ps();
        for c in 0..m {
            let iv = _mm256_loadu_si256(inv.as_ptr().add(c * n + i).cast());
            let mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iv, _mm256_set1_epi32(-1)));
            acc = _mm256_add_ps(acc, _mm256_mask_i32gather_ps::<4>(zero, src.as_ptr(), iv, mask));
        }
        _mm256_storeu_ps(o.as_mut_ptr().add(i), acc);
        i += 8;
    }
    for i in i..n {
        let mut acc = 0.0f32;
        for c in 0..m {
            let v = inv[c * n + i];
            if v >= 0 {
                acc += *src.get_unchecked(v as usize);
            }
        }
        o[i] = acc;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gather_sum_avx2(_: &mut [f32], _: &[f32], _: &[i32], _: usize) {
    unreachable!("AVX2 gather called off x86-64")
}

/// d[q] = src[ix[q]] (0 where ix[q] < 0), 8 pixels per masked gather.
///
/// # Safety
/// AVX2 must be present; every ix entry must be −1 or a valid index of src.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather_avx2(d: &mut [f32], src: &[f32], ix: &[i32]) {
    use std::arch::x86_64::*;
    let n = d.len();
    let zero = _mm256_setzero_ps();
    let mut q = 0;
    while q + 8 <= n {
        let iv = _mm256_loadu_si256(ix.as_ptr().add(q).cast());
        let mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iv, _mm256_set1_epi32(-1)));
        let v = _mm256_mask_i32gather_ps::<4>(zero, src.as_ptr(), iv, mask);
        _mm256_storeu_ps(d.as_mut_ptr().add(q), v);
        q += 8;
    }
    for q in q..n {
        let i = ix[q];
        d[q] = if i >= 0 { *src.get_unchecked(i as usize) } else { 0.0 };
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gather_avx2(_: &mut [f32], _: &[f32], _: &[i32]) {
    unreachable!("AVX2 gather called off x86-64")
}
