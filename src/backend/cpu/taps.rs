//! im2col and col2im by per-tap index tables, for convolutions whose output rows are short or
//! strided (every layer of the DCGAN-28 critic: 7- and 4-pixel rows read with stride 2).
//!
//! The row-copying im2col in `conv.rs` pays a loop set-up, a valid-window computation and, at the
//! edges, a zero fill per output row; on a 7×7 output that bookkeeping, not the copying, was what
//! im2col cost (16 % of the default job's single-thread time, `perf`). Here the geometry is
//! resolved once per call into a table: for tap t = (kh, kw) and output pixel q, the offset of the
//! input element it reads inside a channel plane, or −1 where it reads padding. Each (channel,
//! sample) row of im2col is then one pass over P pixels: an AVX2 masked gather (8 pixels per
//! instruction, padding read as 0) for f32 where the CPU has it, an indexed copy otherwise. col2im
//! is the adjoint: per plane, for each tap, plane[idx[q]] += col[q] over the valid pixels (one tap
//! never maps two pixels to one input element, so the adds of a tap are independent).

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
/// adjoint of [`im2col`], on the calling thread. The table's valid entries are first listed per
/// tap as (pixel, input offset) pairs, so the adds run without a padding test.
pub(crate) fn col2im<T: Elem>(g: &Geom, idx: &[i32], col: &[T], b: usize, out: &mut [T]) {
    let (p, hw, kk2) = (g.p(), g.h * g.w, g.k * g.k);
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(idx.len());
    let mut starts = Vec::with_capacity(kk2 + 1);
    for t in 0..kk2 {
        starts.push(pairs.len());
        for (q, &i) in idx[t * p..][..p].iter().enumerate() {
            if i >= 0 {
                pairs.push((q as u32, i as u32));
            }
        }
    }
    starts.push(pairs.len());
    for (q, o) in out.chunks_mut(hw).enumerate() {
        let (j, ci) = (q / g.ci, q % g.ci);
        o.fill(T::ZERO);
        for t in 0..kk2 {
            let src = &col[(ci * kk2 + t) * b * p + j * p..][..p];
            for &(q, i) in &pairs[starts[t]..starts[t + 1]] {
                o[i as usize] += src[q as usize];
            }
        }
    }
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
