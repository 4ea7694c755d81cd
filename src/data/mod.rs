//! Training images: loaders for MNIST (IDX), CIFAR-10 (binary batches) and folders of PNG/JPEG
//! files, all producing one in-memory `ImageDataset` (NCHW, f32 in [−1, 1]); a bilinear resize; and
//! a deterministic, seekable batch order with a background prefetcher.

mod batches;
mod cifar;
mod device;
mod folder;
mod idx;
mod resize;

pub use batches::{BatchSampler, Prefetcher};
pub use cifar::{read_cifar10, CIFAR_BATCH_FILES};
pub use device::{device_bytes, DeviceImages};
pub use folder::read_image_folder;
pub use idx::{embedded_mnist, parse_idx_images, read_idx_images};
pub use resize::{resize_dataset, resize_plane};

use crate::error::Result;

/// A whole data set in memory, NCHW, pixels scaled from 0..=255 to [−1, 1] (the generator's tanh
/// range).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<f32>,
}

impl ImageDataset {
    /// Floats per image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (CHW). Panics if `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.pixels[i * len..(i + 1) * len]
    }

    /// Appends the images at `indices`, in that order, to `out` (one NCHW batch).
    pub fn gather_into(&self, indices: &[usize], out: &mut Vec<f32>) {
        out.reserve(indices.len() * self.image_len());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
    }

    /// The images at `indices` as one NCHW batch.
    pub fn gather(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::new();
        self.gather_into(indices, &mut out);
        out
    }
}

/// Maps a byte to [−1, 1]: 0 → −1, 255 → +1.
#[inline]
pub(crate) fn byte_to_unit(b: u8) -> f32 {
    b as f32 / 127.5 - 1.0
}

/// Converts between grey and RGB: grey → RGB repeats the plane; RGB → grey uses the ITU-R BT.601
/// luma weights (what most image tools use). Other conversions are an error.
pub fn convert_channels(ds: &ImageDataset, channels: usize) -> Result<ImageDataset> {
    let plane = ds.height * ds.width;
    let pixels = match (ds.channels, channels) {
        (a, b) if a == b => ds.pixels.clone(),
        (1, 3) => {
            let mut out = Vec::with_capacity(ds.n * 3 * plane);
            for img in ds.pixels.chunks_exact(plane) {
                for _ in 0..3 {
                    out.extend_from_slice(img);
                }
            }
            out
        }
        (3, 1) => {
            let mut out = Vec::with_capacity(ds.n * plane);
            for img in ds.pixels.chunks_exact(3 * plane) {
                let (r, rest) = img.split_at(plane);
                let (g, b) = rest.split_at(plane);
                out.extend((0..plane).map(|p| 0.299 * r[p] + 0.587 * g[p] + 0.114 * b[p]));
            }
            out
        }
        (a, b) => {
            crate::bail!("cannot convert images with {a} channels to {b} channels (only 1 ↔ 3)")
        }
    };
    Ok(ImageDataset { n: ds.n, channels, height: ds.height, width: ds.width, pixels })
}
