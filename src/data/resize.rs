//! Separable triangle-filter resampling of f32 planes: plain bilinear interpolation when enlarging,
//! and, when shrinking, a triangle widened to the scale factor so every source pixel contributes
//! (no aliasing) — the same scheme as Pillow's BILINEAR.

use super::ImageDataset;
use crate::error::Result;

/// Resizes every image of `ds` to `image_size` × `image_size` (a no-op copy when already that size).
/// Non-square images are stretched; loaders centre-crop before this when that matters.
pub fn resize_dataset(ds: &ImageDataset, image_size: usize) -> Result<ImageDataset> {
    if image_size == 0 {
        crate::bail!("image size must be at least 1, got 0");
    }
    if ds.height == image_size && ds.width == image_size {
        return Ok(ds.clone());
    }
    let (sh, sw) = (ds.height, ds.width);
    let planes = ds.n * ds.channels;
    let mut pixels = vec![0.0f32; planes * image_size * image_size];
    let rows = weights(sh, image_size);
    let cols = weights(sw, image_size);
    use rayon::prelude::*;
    pixels
        .par_chunks_mut(image_size * image_size)
        .zip(ds.pixels.par_chunks(sh * sw))
        .for_each(|(dst, src)| resample(src, sh, sw, dst, image_size, image_size, &rows, &cols));
    Ok(ImageDataset { n: ds.n, channels: ds.channels, height: image_size, width: image_size, pixels })
}

/// Resizes one `sh`×`sw` plane to `dh`×`dw`.
pub fn resize_plane(src: &[f32], sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f32> {
    let mut dst = vec![0.0; dh * dw];
    resample(src, sh, sw, &mut dst, dh, dw, &weights(sh, dh), &weights(sw, dw));
    dst
}

/// For each output index along one axis: the first source index and the normalised weights.
type Taps = Vec<(usize, Vec<f32>)>;

fn weights(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(src);
            let mut w: Vec<f64> =
                (lo..hi).map(|j| (1.0 - ((j as f64 + 0.5 - centre) / support).abs()).max(0.0)).collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            } else {
                // Cannot happen for src ≥ 1 (the nearest pixel always has positive weight); kept
                // so a degenerate case degrades to nearest rather than black.
                w.iter_mut().for_each(|x| *x = 0.0);
                if let Some(x) = w.first_mut() {
                    *x = 1.0;
                }
            }
            (lo, w.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn resample(src: &[f32], sh: usize, sw: usize, dst: &mut [f32], _dh: usize, dw: usize, rows: &Taps, cols: &Taps) {
    // Horizontal pass into sh × dw, then vertical into dh × dw.
    let mut tmp = vec![0.0f32; sh * dw];
    for y in 0..sh {
        let row = &src[y * sw..(y + 1) * sw];
        for (x, (lo, w)) in cols.iter().enumerate() {
            tmp[y * dw + x] = w.iter().zip(&row[*lo..]).map(|(a, b)| a * b).sum();
        }
    }
    for (y, (lo, w)) in rows.iter().enumerate() {
        let out = &mut dst[y * dw..(y + 1) * dw];
        out.fill(0.0);
        for (k, wk) in w.iter().enumerate() {
            let r = &tmp[(lo + k) * dw..(lo + k + 1) * dw];
            out.iter_mut().zip(r).for_each(|(o, v)| *o += wk * v);
        }
    }
}
