//! Convolutions as GEMMs over the whole batch (PyTorch's cross-correlation, square kernels).
//!
//! im2col lays the input out as col [Ci·K·K, N·Ho·Wo] (zeros where the window leaves the padded
//! image); then forward = W [Co, Ci·K·K] · col, the weight gradient = gy' · colᵀ, and the data
//! gradient = col2im(Wᵀ · gy'), where gy' is the upstream gradient as [Co, N·Ho·Wo].

use super::{gemm, CpuTensor, Elem};
use crate::backend::ConvParams;
use rayon::prelude::*;

struct Geometry {
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    k: usize,
    ho: usize,
    wo: usize,
    s: usize,
    pad: usize,
}

impl Geometry {
    fn l(&self) -> usize {
        self.ho * self.wo
    }
    /// Input coordinate of output position `o` and kernel tap `t`, if inside the image.
    #[inline]
    fn src(&self, o: usize, t: usize, limit: usize) -> Option<usize> {
        let v = (o * self.s + t) as isize - self.pad as isize;
        (v >= 0 && (v as usize) < limit).then_some(v as usize)
    }
}

fn im2col<T: Elem>(x: &[T], g: &Geometry) -> Vec<T> {
    let cols = g.n * g.l();
    let mut col = vec![T::default(); g.ci * g.k * g.k * cols];
    col.par_chunks_mut(cols).enumerate().for_each(|(row, out)| {
        let (c, t) = (row / (g.k * g.k), row % (g.k * g.k));
        let (ki, kj) = (t / g.k, t % g.k);
        for n in 0..g.n {
            let plane = &x[(n * g.ci + c) * g.h * g.w..][..g.h * g.w];
            let dst = &mut out[n * g.l()..][..g.l()];
            for oh in 0..g.ho {
                let Some(ih) = g.src(oh, ki, g.h) else { continue };
                for ow in 0..g.wo {
                    if let Some(iw) = g.src(ow, kj, g.w) {
                        dst[oh * g.wo + ow] = plane[ih * g.w + iw];
                    }
                }
            }
        }
    });
    col
}

/// [N, C, L] → [C, N·L].
fn to_channel_major<T: Elem>(y: &[T], n: usize, c: usize, l: usize) -> Vec<T> {
    let mut out = vec![T::default(); y.len()];
    out.par_chunks_mut(n * l).enumerate().for_each(|(ch, dst)| {
        for s in 0..n {
            dst[s * l..(s + 1) * l].copy_from_slice(&y[(s * c + ch) * l..][..l]);
        }
    });
    out
}

/// [C, N·L] → [N, C, L].
fn to_sample_major<T: Elem>(y: &[T], n: usize, c: usize, l: usize) -> Vec<T> {
    let mut out = vec![T::default(); y.len()];
    out.par_chunks_mut(c * l).enumerate().for_each(|(s, dst)| {
        for ch in 0..c {
            dst[ch * l..(ch + 1) * l].copy_from_slice(&y[(ch * n + s) * l..][..l]);
        }
    });
    out
}

fn geometry(xshape: &[usize], k: usize, p: ConvParams, out_hw: Option<(usize, usize)>) -> Geometry {
    let (n, ci, h, w) = (xshape[0], xshape[1], xshape[2], xshape[3]);
    assert!(h + 2 * p.pad >= k && w + 2 * p.pad >= k, "conv: kernel {k} larger than the padded input {h}×{w}");
    let (ho, wo) = out_hw.unwrap_or((p.out_size(h, k), p.out_size(w, k)));
    Geometry { n, ci, h, w, k, ho, wo, s: p.stride, pad: p.pad }
}

pub fn forward<T: Elem>(x: &[T], xs: &[usize], w: &[T], ws: &[usize], p: ConvParams) -> CpuTensor<T> {
    assert!(xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1], "conv2d: input {xs:?} and weight {ws:?} do not match");
    let (co, k) = (ws[0], ws[2]);
    let g = geometry(xs, k, p, None);
    let col = im2col(x, &g);
    let kk = g.ci * k * k;
    let mut y = vec![T::default(); co * g.n * g.l()];
    gemm(co, kk, g.n * g.l(), w, false, &col, false, &mut y, false);
    CpuTensor::new(to_sample_major(&y, g.n, co, g.l()), &[g.n, co, g.ho, g.wo])
}

pub fn weight_grad<T: Elem>(x: &[T], xs: &[usize], gy: &[T], gs: &[usize], p: ConvParams, k: usize) -> CpuTensor<T> {
    let g = geometry(xs, k, p, None);
    assert!(gs.len() == 4 && gs[0] == g.n && gs[2] == g.ho && gs[3] == g.wo, "conv2d_weight_grad: gradient {gs:?} does not match input {xs:?}");
    let co = gs[1];
    let col = im2col(x, &g);
    let gyc = to_channel_major(gy, g.n, co, g.l());
    let kk = g.ci * k * k;
    let mut gw = vec![T::default(); co * kk];
    gemm(co, g.n * g.l(), kk, &gyc, false, &col, true, &mut gw, false);
    CpuTensor::new(gw, &[co, g.ci, k, k])
}

pub fn data_grad<T: Elem>(gy: &[T], gs: &[usize], w: &[T], ws: &[usize], p: ConvParams, out_hw: (usize, usize)) -> CpuTensor<T> {
    assert!(gs.len() == 4 && ws.len() == 4 && gs[1] == ws[0], "conv2d_data_grad: gradient {gs:?} and weight {ws:?} do not match");
    let (co, ci, k) = (ws[0], ws[1], ws[2]);
    let (n, ho, wo) = (gs[0], gs[2], gs[3]);
    let (h, w_) = out_hw;
    assert!(p.out_size(h, k) == ho && p.out_size(w_, k) == wo, "conv2d_data_grad: output {h}×{w_} does not give {ho}×{wo}");
    let g = Geometry { n, ci, h, w: w_, k, ho, wo, s: p.stride, pad: p.pad };
    let gyc = to_channel_major(gy, n, co, g.l());
    let kk = ci * k * k;
    let mut col = vec![T::default(); kk * n * g.l()];
    gemm(kk, co, n * g.l(), w, true, &gyc, false, &mut col, false);
    // col2im: each (sample, channel) plane gathers its taps; planes are independent.
    let cols = n * g.l();
    let mut dx = vec![T::default(); n * ci * h * w_];
    dx.par_chunks_mut(h * w_).enumerate().for_each(|(plane, out)| {
        let (s, c) = (plane / ci, plane % ci);
        for ki in 0..k {
            for kj in 0..k {
                let row = &col[((c * k + ki) * k + kj) * cols + s * g.l()..][..g.l()];
                for oh in 0..ho {
                    let Some(ih) = g.src(oh, ki, h) else { continue };
                    for ow in 0..wo {
                        if let Some(iw) = g.src(ow, kj, w_) {
                            let o = &mut out[ih * w_ + iw];
                            *o = o.add(row[oh * wo + ow]);
                        }
                    }
                }
            }
        }
    });
    CpuTensor::new(dx, &[n, ci, h, w_])
}
