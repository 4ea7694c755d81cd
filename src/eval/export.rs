//! Samples for the ecosystem's tools: a folder of numbered PNG files (what clean-fid,
//! torch-fidelity and pytorch-fid take) or a NumPy `.npy` array, each written so that a failure
//! leaves nothing half-written under the requested name.

use crate::backend::Backend;
use crate::error::{Context, Result};
use crate::fsutil::atomic_write_with;
use crate::nn::Model;
use std::io::Write;
use std::path::Path;

/// Generator outputs per forward pass when drawing many samples.
const CHUNK: usize = 500;

/// G(z) for n latent vectors drawn from Philox stream `stream` of `seed` (the same z as one
/// `randn(&[n, nz], seed, stream)`), in chunks, NCHW (or [n, 2]) on the host.
pub fn generate<B: Backend>(be: &B, gen: &Model<B>, nz: usize, n: usize, seed: u64, stream: u64) -> Vec<f32> {
    let z = be.randn(&[n, nz], seed, stream);
    let mut out = Vec::new();
    for start in (0..n).step_by(CHUNK) {
        let m = (n - start).min(CHUNK);
        let zc = be.view(&z, start * nz, &[m, nz]);
        out.extend(be.to_f32(&crate::train::gan::sample_with(be, gen, &zc)));
    }
    out
}

/// The `.npy` (format version 1.0) bytes of a little-endian f32 array of `shape`, C order.
pub fn npy_bytes(data: &[f32], shape: &[usize]) -> Vec<u8> {
    assert_eq!(data.len(), shape.iter().product::<usize>());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is padded to a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `data` of `shape` as a `.npy` file, atomically.
pub fn write_npy(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let bytes = npy_bytes(data, shape);
    atomic_write_with(path, |f| f.write_all(&bytes))
}

/// Writes n NCHW images in [−1, 1] (c = 1 grey, 3 RGB) as `dir/000000.png`, `000001.png`, … The
/// files are written in a temporary sibling folder that is renamed to `dir` at the end, so `dir`
/// appears whole or not at all. `dir` must not exist, or be an empty folder.
pub fn write_png_folder(dir: &Path, images: &[f32], n: usize, c: usize, h: usize, w: usize) -> Result<()> {
    if c != 1 && c != 3 {
        crate::bail!("{}: cannot write {c}-channel images as PNG (expected 1 or 3)", dir.display());
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !dir.is_dir() || !empty {
            crate::bail!(
                "--out {}: already exists and is not an empty folder; choose a new folder name",
                dir.display()
            );
        }
    }
    let tmp = crate::fsutil::temp_path(dir);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).context(|| format!("cannot create {}", tmp.display()))?;
    let digits = n.saturating_sub(1).to_string().len().max(6);
    let len = c * h * w;
    let result = (|| -> Result<()> {
        let mut px = vec![0u8; len];
        for (i, img) in images.chunks_exact(len).take(n).enumerate() {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        px[(y * w + x) * c + ch] = crate::plot::to_byte(img[ch * h * w + y * w + x]);
                    }
                }
            }
            let path = tmp.join(format!("{i:0digits$}.png"));
            crate::plot::canvas::write_png(&path, w as u32, h as u32, c as u8, &px)?;
        }
        if dir.exists() {
            std::fs::remove_dir(dir).context(|| format!("cannot replace the empty folder {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir).context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Where `wgan sample --out` writes many samples: a folder of PNGs or a `.npy` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkOut {
    Folder,
    Npy,
}

impl BulkOut {
    /// A name ending in `/`, an existing folder or a name without extension is a folder; `.npy` an
    /// array; anything else (a .png grid, a .csv) is not a bulk output.
    pub fn of(out: &Path) -> Option<BulkOut> {
        let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if out.as_os_str().to_string_lossy().ends_with('/') || out.is_dir() || ext.is_none() {
            Some(BulkOut::Folder)
        } else if ext.as_deref() == Some("npy") {
            Some(BulkOut::Npy)
        } else {
            None
        }
    }
}

/// The same latent vectors as `wgan sample`'s grid: stream of the fixed noise + 100.
pub const STREAM_SAMPLE_NOISE: u64 = crate::train::gan::STREAM_FIXED_NOISE + 100;

/// `wgan sample --from RUN --n N --out DIR/|x.npy`: N samples as numbered PNG files in a new folder
/// (images only), or as an f32 array in [−1, 1] of shape [N, C, H, W] ([N, 2] for 2-D data).
pub fn sample_bulk<B: Backend>(be: &B, from: &Path, n: usize, out: &Path, seed: u64, kind: BulkOut) -> Result<()> {
    let (cfg, gen) = crate::train::snapshot::load_generator(be, from)?;
    if kind == BulkOut::Folder && cfg.dataset.is_toy() {
        crate::bail!(
            "--out {}: a folder of PNG images is for image runs, and this generator makes 2-D points; use a .csv or .npy name",
            out.display()
        );
    }
    let x = generate(be, &gen, cfg.nz, n, seed, STREAM_SAMPLE_NOISE);
    if x.iter().any(|v| !v.is_finite()) {
        crate::bail!(
            "the generator's samples are not finite (the checkpoint holds NaN or infinite weights?); nothing written"
        );
    }
    let (c, s) = (cfg.channels, cfg.image_size);
    match kind {
        BulkOut::Npy if cfg.dataset.is_toy() => write_npy(out, &x, &[n, 2]),
        BulkOut::Npy => write_npy(out, &x, &[n, c, s, s]),
        BulkOut::Folder => write_png_folder(out, &x, n, c, s, s),
    }
}
