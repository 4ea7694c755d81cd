//! A folder of PNG/JPEG images, searched recursively: each is centre-cropped to a square, resized to
//! the training size and converted to grey or RGB. Files are taken in sorted path order so the data
//! set — and hence the batch order — is the same on every machine.

use super::{byte_to_unit, resize_plane, ImageDataset};
use crate::error::{Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loads every `.png`, `.jpg` and `.jpeg` under `dir` as `channels` (1 or 3) × `image_size`².
pub fn read_image_folder(dir: &Path, image_size: usize, channels: usize) -> Result<ImageDataset> {
    if channels != 1 && channels != 3 {
        crate::bail!("image folder {}: channels must be 1 (grey) or 3 (RGB), got {channels}", dir.display());
    }
    if image_size == 0 {
        crate::bail!("image folder {}: image size must be at least 1", dir.display());
    }
    if !dir.is_dir() {
        crate::bail!("{}: not a folder (expected a folder of .png/.jpg images)", dir.display());
    }
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    if files.is_empty() {
        crate::bail!("{}: no images found (looked for .png, .jpg and .jpeg files, recursively)", dir.display());
    }
    files.sort();
    let images: Vec<Vec<f32>> = files.par_iter().map(|f| load_one(f, image_size, channels)).collect::<Result<_>>()?;
    Ok(ImageDataset { n: images.len(), channels, height: image_size, width: image_size, pixels: images.concat() })
}

/// Recursively lists image files; hidden entries (dot-names) are skipped, as tools leave
/// thumbnails and metadata there.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // metadata() follows symlinks, so linked folders and files are included.
        let meta = std::fs::metadata(&path).context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            collect(&path, out)?;
        } else if is_image_name(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decodes, centre-crops, converts and resizes one image to CHW floats.
fn load_one(path: &Path, size: usize, channels: usize) -> Result<Vec<f32>> {
    let img = image::ImageReader::open(path)
        .context(|| format!("cannot read image {}", path.display()))?
        .with_guessed_format()
        .context(|| format!("cannot read image {}", path.display()))?
        .decode()
        .context(|| format!("cannot decode image {}", path.display()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.min(h);
    if side == 0 {
        crate::bail!("image {} is empty ({w}×{h})", path.display());
    }
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    // Interleaved bytes → one plane per channel, cropped.
    let (bytes, c) = if channels == 1 { (img.to_luma8().into_raw(), 1) } else { (img.to_rgb8().into_raw(), 3) };
    let mut out = Vec::with_capacity(channels * size * size);
    for ch in 0..c {
        let mut plane = Vec::with_capacity(side * side);
        for y in y0..y0 + side {
            let row = &bytes[(y * w + x0) * c..(y * w + x0 + side) * c];
            plane.extend(row.chunks_exact(c).map(|px| byte_to_unit(px[ch])));
        }
        if side == size {
            out.extend_from_slice(&plane);
        } else {
            out.extend(resize_plane(&plane, side, side, size, size));
        }
    }
    Ok(out)
}
