//! MNIST's IDX image format (raw or gzip'd): a big-endian header — magic 0x00000803, count, rows,
//! columns — then one byte per pixel. Also the 10,000 digits embedded in the binary.

use super::{byte_to_unit, ImageDataset};
use crate::error::{Context, Result};
use std::io::Read;
use std::path::Path;

const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The digits shipped in `data/mnist10k` (see its README for attribution).
static EMBEDDED_MNIST_GZ: &[u8] = include_bytes!("../../data/mnist10k/images-idx3-ubyte.gz");

/// The 10,000 embedded MNIST digits: 10000 × 1 × 28 × 28 in [−1, 1].
pub fn embedded_mnist() -> ImageDataset {
    // The bytes are part of the build, so a failure here is a packaging bug, not bad input.
    parse_idx_images(EMBEDDED_MNIST_GZ, "embedded MNIST").expect("embedded MNIST digits are corrupt")
}

/// Reads an IDX image file, gzip'd or not (told apart by the gzip magic bytes, not the name).
pub fn read_idx_images(path: &Path) -> Result<ImageDataset> {
    let bytes = std::fs::read(path).context(|| format!("cannot read {}", path.display()))?;
    parse_idx_images(&bytes, &path.display().to_string())
}

/// Parses IDX image bytes (gzip'd or not); `what` names the source in error messages.
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<ImageDataset> {
    let raw;
    let bytes = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context(|| format!("{what}: corrupt gzip data"))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 16 {
        crate::bail!(
            "{what}: not an IDX image file (only {} bytes; the header alone is 16: magic, count, rows, columns)",
            bytes.len()
        );
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let magic = word(0);
    if magic != IDX_IMAGES_MAGIC {
        crate::bail!("{what}: not an IDX image file (magic 0x{magic:08x}, expected 0x{IDX_IMAGES_MAGIC:08x})");
    }
    let (n, h, w) = (word(1) as usize, word(2) as usize, word(3) as usize);
    if n == 0 || h == 0 || w == 0 {
        crate::bail!("{what}: IDX header says {n} images of {h}×{w}; expected at least one image of at least 1×1");
    }
    // Checked: a corrupt header must not overflow into a small, plausible size.
    let expected = n.checked_mul(h).and_then(|x| x.checked_mul(w));
    let body = bytes.len() - 16;
    match expected {
        Some(e) if e == body => {}
        Some(e) if e > body => crate::bail!(
            "{what}: truncated: header says {n} images of {h}×{w} = {e} bytes, file has {body} after the 16-byte header"
        ),
        Some(e) => crate::bail!(
            "{what}: {} trailing bytes: header says {n} images of {h}×{w} = {e} bytes, file has {body}",
            body - e
        ),
        None => crate::bail!("{what}: IDX header says {n} images of {h}×{w}, which is impossibly large"),
    }
    Ok(ImageDataset {
        n,
        channels: 1,
        height: h,
        width: w,
        pixels: bytes[16..].iter().map(|&b| byte_to_unit(b)).collect(),
    })
}
