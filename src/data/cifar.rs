//! CIFAR-10's binary format: `data_batch_1.bin` … `data_batch_5.bin`, each 10,000 records of one
//! label byte (0–9) and 3,072 pixel bytes (1024 red, 1024 green, 1024 blue, rows top to bottom) —
//! already CHW.

use super::{byte_to_unit, ImageDataset};
use crate::error::{Context, Result};
use std::path::{Path, PathBuf};

/// The training batches, in the order they are concatenated.
pub const CIFAR_BATCH_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const RECORDS_PER_BATCH: usize = 10_000;

/// Reads every training batch present in `dir` (any subset of the five; each must be well-formed).
/// `dir` may also be the folder that contains the unpacked `cifar-10-batches-bin`.
pub fn read_cifar10(dir: &Path) -> Result<ImageDataset> {
    if !dir.is_dir() {
        crate::bail!(
            "{}: not a folder (expected the CIFAR-10 binary batches data_batch_1.bin … data_batch_5.bin)",
            dir.display()
        );
    }
    let mut files = batch_files(dir);
    if files.is_empty() {
        files = batch_files(&dir.join("cifar-10-batches-bin"));
    }
    if files.is_empty() {
        crate::bail!(
            "{}: no CIFAR-10 batches found (expected data_batch_1.bin … data_batch_5.bin of the binary version, \
             cifar-10-binary.tar.gz, unpacked here or in cifar-10-batches-bin/)",
            dir.display()
        );
    }
    let mut pixels = Vec::new();
    let mut n = 0;
    for f in &files {
        let bytes = std::fs::read(f).context(|| format!("cannot read {}", f.display()))?;
        n += parse_batch(&bytes, f, &mut pixels)?;
    }
    Ok(ImageDataset { n, channels: 3, height: SIDE, width: SIDE, pixels })
}

fn batch_files(dir: &Path) -> Vec<PathBuf> {
    CIFAR_BATCH_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect()
}

/// Appends one batch's images to `out`; returns how many. A whole number of records is accepted
/// (so cut-down batches work), but anything else, or a label outside 0–9 (e.g. CIFAR-100's
/// two-label records), is reported.
fn parse_batch(bytes: &[u8], path: &Path, out: &mut Vec<f32>) -> Result<usize> {
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        crate::bail!(
            "{}: not a CIFAR-10 binary batch ({} bytes; expected {} = {RECORDS_PER_BATCH} records of 1 label byte + \
             {PIXELS} pixel bytes, or at least a whole number of {RECORD}-byte records)",
            path.display(),
            bytes.len(),
            RECORDS_PER_BATCH * RECORD
        );
    }
    let records = bytes.len() / RECORD;
    out.reserve(records * PIXELS);
    for (r, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            crate::bail!(
                "{}: not a CIFAR-10 binary batch (record {r} has label {}, expected 0–9)",
                path.display(),
                rec[0]
            );
        }
        out.extend(rec[1..].iter().map(|&b| byte_to_unit(b)));
    }
    Ok(records)
}
