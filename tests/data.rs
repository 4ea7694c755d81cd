//! Data loading on well-formed input (bad input is in tests/cli.rs): the embedded digits, IDX raw
//! and gzip'd, CIFAR-10 binary batches, image folders (PNG and JPEG, grey and RGB, non-square),
//! the resize, and a batch order that is deterministic and resumes where it stopped.

use std::io::Write;
use std::sync::Arc;
use wgan::data::{self, BatchSampler, Prefetcher};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn embedded_mnist_is_ten_thousand_digits() {
    let d = data::embedded_mnist();
    assert_eq!((d.n, d.channels, d.height, d.width), (10_000, 1, 28, 28));
    assert!(d.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
    let mean = d.pixels.iter().map(|&v| v as f64).sum::<f64>() / d.pixels.len() as f64;
    // MNIST is mostly background: mean pixel 0.13 of 1, i.e. about −0.74 in [−1, 1].
    assert!((mean + 0.74).abs() < 0.03, "mean pixel {mean}");
}

#[test]
fn idx_raw_and_gzip_agree() {
    let d = tmp("idx");
    let mut bytes = vec![0, 0, 8, 3];
    for x in [3u32, 2, 2] {
        bytes.extend(x.to_be_bytes());
    }
    bytes.extend([0u8, 255, 128, 64, 1, 2, 3, 4, 9, 8, 7, 6]);
    std::fs::write(d.join("raw.idx"), &bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap();
    std::fs::write(d.join("img.idx.gz"), gz.finish().unwrap()).unwrap();
    let a = data::read_idx_images(&d.join("raw.idx")).unwrap();
    let b = data::read_idx_images(&d.join("img.idx.gz")).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.n, a.height, a.width), (3, 2, 2));
    assert_eq!(a.pixels[0], -1.0);
    assert_eq!(a.pixels[1], 1.0);
}

#[test]
fn cifar_batches_are_read_as_chw() {
    let d = tmp("cifar");
    let mut bytes = Vec::with_capacity(10_000 * 3073);
    for i in 0..10_000usize {
        bytes.push((i % 10) as u8);
        bytes.extend(std::iter::repeat(0u8).take(1024)); // red
        bytes.extend(std::iter::repeat(255u8).take(1024)); // green
        bytes.extend(std::iter::repeat((i % 256) as u8).take(1024)); // blue
    }
    std::fs::write(d.join("data_batch_1.bin"), &bytes).unwrap();
    let c = data::read_cifar10(&d).unwrap();
    assert_eq!((c.n, c.channels, c.height, c.width), (10_000, 3, 32, 32));
    let img = c.image(1);
    assert_eq!((img[0], img[1024]), (-1.0, 1.0));
    assert!((img[2048] - (2.0 / 255.0 - 1.0)).abs() < 1e-5, "blue of image 1: {}", img[2048]);
}

#[test]
fn image_folder_png_and_jpeg_grey_and_rgb() {
    let d = tmp("folder");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    // A wide red PNG: the centre crop keeps the middle square.
    let mut wide = image::RgbImage::new(60, 30);
    for (x, _, p) in wide.enumerate_pixels_mut() {
        *p = if (15..45).contains(&x) { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) };
    }
    wide.save(d.join("a.png")).unwrap();
    let grey = image::GrayImage::from_pixel(40, 40, image::Luma([255]));
    grey.save(d.join("sub/b.jpg")).unwrap();
    std::fs::write(d.join("notes.txt"), b"not an image, ignored").unwrap();
    let rgb = data::read_image_folder(&d, 32, 3).unwrap();
    assert_eq!((rgb.n, rgb.channels, rgb.height, rgb.width), (2, 3, 32, 32));
    let a = rgb.image(0);
    let centre = 16 * 32 + 16;
    assert!(a[centre] > 0.9 && a[1024 + centre] < -0.9 && a[2048 + centre] < -0.9, "centre crop of a.png is red");
    let b = rgb.image(1);
    assert!(b.iter().all(|&v| v > 0.9), "white JPEG stays white");
    let g = data::read_image_folder(&d, 28, 1).unwrap();
    assert_eq!((g.n, g.channels, g.height), (2, 1, 28));
}

#[test]
fn resize_keeps_a_constant_and_a_ramp() {
    let flat = data::resize_plane(&[0.25; 16], 4, 4, 7, 7);
    assert!(flat.iter().all(|v| (v - 0.25).abs() < 1e-6));
    let ramp: Vec<f32> = (0..28 * 28).map(|i| (i % 28) as f32 / 27.0).collect();
    let r = data::resize_plane(&ramp, 28, 28, 64, 64);
    let row: Vec<f32> = r[..64].to_vec();
    assert!(row.windows(2).all(|w| w[1] >= w[0] - 1e-6), "a ramp stays monotone");
    assert!(row[0] < 0.05 && row[63] > 0.95);
}

#[test]
fn batches_are_deterministic_and_resume() {
    let s = BatchSampler::new(100, 32, 7).unwrap();
    let all: Vec<Vec<usize>> = (0..10).map(|k| s.indices(k)).collect();
    assert_eq!(all, (0..10).map(|k| BatchSampler::new(100, 32, 7).unwrap().indices(k)).collect::<Vec<_>>());
    assert_ne!(all[0], BatchSampler::new(100, 32, 8).unwrap().indices(0), "the seed matters");
    // A prefetcher started at batch 4 yields batches 4, 5, … exactly.
    let data = Arc::new(data::embedded_mnist());
    let sampler = BatchSampler::new(data.n, 8, 3).unwrap();
    let mut p = Prefetcher::new(data.clone(), sampler.clone(), 4, 2);
    for k in 4..9 {
        let (got_k, batch) = p.next();
        assert_eq!(got_k, k);
        assert_eq!(batch, data.gather(&sampler.indices(k)));
    }
    assert_eq!(p.next_index(), 9);
}
