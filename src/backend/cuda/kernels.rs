//! The kernel sources (embedded at build time), their NVRTC options, and the on-disk CUBIN cache.
//!
//! Each `kernels/*.cu` file is one module, compiled on first use for the device's exact
//! `sm_XY` to a CUBIN. Headers (`common.cuh`, `gemm_tile.cuh`) are handed to NVRTC in memory.
//! Cache file: `<dir>/<module>-<hash>.cubin`, the hash covering the source, the headers, the
//! options, the NVRTC version and the architecture; files carry a checksummed header, are written
//! through a temporary file and a rename, and a file that fails its check is recompiled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

use super::nvrtc;

/// Headers every module may include, by the name used in `#include "..."`.
pub const HEADERS: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("epilogue.cuh", include_str!("../../../kernels/epilogue.cuh")),
    ("gemm_tile.cuh", include_str!("../../../kernels/gemm_tile.cuh")),
    ("mma.cuh", include_str!("../../../kernels/mma.cuh")),
    ("gemm_tc.cuh", include_str!("../../../kernels/gemm_tc.cuh")),
];

/// One kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    Conv,
    Gemm,
    /// Tensor-core convolutions and matrix products (TF32, BF16).
    ConvTc,
    GemmTc,
    Elementwise,
    Reduce,
    Norm,
    Penalty,
    Optim,
    Rng,
    Logistic,
    /// Fused ops of the double backward and of batch norm's running statistics.
    Fused,
    /// The arithmetic ceiling for benchmarks.
    Peak,
}

impl Module {
    pub const ALL: [Module; 13] = [
        Module::Conv,
        Module::Gemm,
        Module::ConvTc,
        Module::GemmTc,
        Module::Elementwise,
        Module::Reduce,
        Module::Norm,
        Module::Penalty,
        Module::Optim,
        Module::Rng,
        Module::Logistic,
        Module::Fused,
        Module::Peak,
    ];

    /// The file name under `kernels/`.
    pub fn file(self) -> &'static str {
        match self {
            Module::Conv => "conv.cu",
            Module::Gemm => "gemm.cu",
            Module::ConvTc => "conv_tc.cu",
            Module::GemmTc => "gemm_tc.cu",
            Module::Elementwise => "elementwise.cu",
            Module::Reduce => "reduce.cu",
            Module::Norm => "norm.cu",
            Module::Penalty => "penalty.cu",
            Module::Optim => "optim.cu",
            Module::Rng => "rng.cu",
            Module::Logistic => "logistic.cu",
            Module::Fused => "fused.cu",
            Module::Peak => "peak.cu",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Module::Conv => include_str!("../../../kernels/conv.cu"),
            Module::Gemm => include_str!("../../../kernels/gemm.cu"),
            Module::ConvTc => include_str!("../../../kernels/conv_tc.cu"),
            Module::GemmTc => include_str!("../../../kernels/gemm_tc.cu"),
            Module::Elementwise => include_str!("../../../kernels/elementwise.cu"),
            Module::Reduce => include_str!("../../../kernels/reduce.cu"),
            Module::Norm => include_str!("../../../kernels/norm.cu"),
            Module::Penalty => include_str!("../../../kernels/penalty.cu"),
            Module::Optim => include_str!("../../../kernels/optim.cu"),
            Module::Rng => include_str!("../../../kernels/rng.cu"),
            Module::Logistic => include_str!("../../../kernels/logistic.cu"),
            Module::Fused => include_str!("../../../kernels/fused.cu"),
            Module::Peak => include_str!("../../../kernels/peak.cu"),
        }
    }
}

/// The kernel sources of `$WGAN_KERNEL_DIR`, when set: every module and header read from that
/// directory once per process instead of the copies embedded at build time (kernel development,
/// and tools that check a modified kernel without a rebuild). A missing file is an error.
fn overrides() -> Result<Option<&'static HashMap<&'static str, String>>> {
    static O: OnceLock<std::result::Result<Option<HashMap<&'static str, String>>, String>> = OnceLock::new();
    let r = O.get_or_init(|| {
        let Some(dir) = std::env::var_os("WGAN_KERNEL_DIR").filter(|d| !d.is_empty()).map(PathBuf::from) else {
            return Ok(None);
        };
        let files = Module::ALL.iter().map(|m| m.file()).chain(HEADERS.iter().map(|(n, _)| *n));
        let mut map = HashMap::new();
        for f in files {
            let p = dir.join(f);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                format!("WGAN_KERNEL_DIR={}: cannot read kernels/{f} there ({}: {e}); the directory must hold every kernel file", dir.display(), p.display())
            })?;
            map.insert(f, text);
        }
        Ok(Some(map))
    });
    match r {
        Ok(m) => Ok(m.as_ref()),
        Err(e) => Err(Error(e.clone())),
    }
}

/// The source of module `m`: from `$WGAN_KERNEL_DIR` when set, else the embedded copy.
pub fn module_source(m: Module) -> Result<&'static str> {
    Ok(match overrides()? {
        Some(o) => o[m.file()].as_str(),
        None => m.source(),
    })
}

/// The headers every module may include, from `$WGAN_KERNEL_DIR` when set, else embedded.
pub fn headers() -> Result<Vec<(&'static str, &'static str)>> {
    Ok(match overrides()? {
        Some(o) => HEADERS.iter().map(|(n, _)| (*n, o[n].as_str())).collect(),
        None => HEADERS.to_vec(),
    })
}

/// NVRTC options for an architecture such as "sm_90". Warnings are switched on wherever NVRTC
/// offers a switch (spills, local memory, member-initialiser order); the CI test fails on any.
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        "--fmad=true".into(),
        "--Wreorder".into(),
        "--ptxas-options=--warn-on-spills".into(),
        "--ptxas-options=--warn-on-local-memory-usage".into(),
        "--display-error-number".into(),
        // Line tables (no effect on the code): sanitizer and profiler reports name source lines.
        "-lineinfo".into(),
    ]
}

/// Compiles one module to a CUBIN for `arch`, without touching any cache.
pub fn compile(m: Module, arch: &str) -> Result<nvrtc::Compiled> {
    nvrtc::compile(m.file(), module_source(m)?, &headers()?, &options(arch), nvrtc::Output::Cubin)
}

/// Compiles every kernel file for `arch` (e.g. "sm_80") and returns (file, NVRTC log) pairs.
/// Needs NVRTC but no GPU; any compile error is returned as an error carrying the log.
pub fn compile_all(arch: &str) -> Result<Vec<(String, String)>> {
    Module::ALL.iter().map(|&m| compile(m, arch).map(|c| (m.file().to_string(), c.log))).collect()
}

/// The kernel cache directory: `$WGAN_KERNEL_CACHE`, else `$XDG_CACHE_HOME/wgan/kernels`, else
/// `~/.cache/wgan/kernels`; None when none of these can be formed.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("WGAN_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("wgan").join("kernels"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("wgan").join("kernels"))
}

/// 64-bit FNV-1a, stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache key of a module: 128 bits of hash over everything that affects the image.
pub fn cache_key(m: Module, arch: &str, nvrtc_version: (i32, i32)) -> String {
    let opts = options(arch).join(" ");
    let ver = format!("{}.{}", nvrtc_version.0, nvrtc_version.1);
    // A missing override file is reported by `compile`; the key then falls back to the embedded text.
    let source = module_source(m).unwrap_or(m.source());
    let headers = headers().unwrap_or_else(|_| HEADERS.to_vec());
    let mut parts: Vec<&[u8]> = vec![source.as_bytes(), opts.as_bytes(), ver.as_bytes(), arch.as_bytes()];
    for (n, t) in &headers {
        parts.push(n.as_bytes());
        parts.push(t.as_bytes());
    }
    let a = fnv1a(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv1a(0x84222325_cbf29ce4 ^ 0x9e37_79b9_7f4a_7c15, &parts);
    format!("{a:016x}{b:016x}")
}

const MAGIC: &[u8; 8] = b"WGANCUB1";

/// Wraps an image with a header: magic, payload length, payload checksum.
fn encode(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(image.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(image.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(0xcbf2_9ce4_8422_2325, &[image]).to_le_bytes());
    out.extend_from_slice(image);
    out
}

/// The payload of a cache file, or None when the file is truncated or corrupt.
fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    let payload = &bytes[24..];
    (payload.len() == len && len > 0 && fnv1a(0xcbf2_9ce4_8422_2325, &[payload]) == sum).then(|| payload.to_vec())
}

/// The cache file of a module.
pub fn cache_path(dir: &Path, m: Module, key: &str) -> PathBuf {
    let stem = m.file().trim_end_matches(".cu");
    dir.join(format!("{stem}-{key}.cubin"))
}

/// Reads a cached image; None when absent or corrupt (the caller recompiles and overwrites).
pub fn read_cached(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().and_then(|b| decode(&b))
}

/// Writes an image to the cache (temp file + rename). Failure is not fatal: the caller ignores it
/// after noting it, since the compiled image is already in memory.
pub fn write_cached(path: &Path, image: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error(format!("creating {}: {e}", dir.display())))?;
    }
    // A temporary name unique to this process and call, so concurrent writers never share one.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
    let r = std::fs::write(&tmp, encode(image)).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| crate::Error(format!("writing kernel cache {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_roundtrip_and_corruption() {
        let img = b"\x7fELF some cubin bytes".to_vec();
        let enc = encode(&img);
        assert_eq!(decode(&enc).as_deref(), Some(&img[..]));
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&enc[..enc.len() - 1]), None);
        assert_eq!(decode(b"short"), None);
    }

    #[test]
    fn keys_differ_by_arch_and_version() {
        let a = cache_key(Module::Conv, "sm_80", (12, 8));
        assert_ne!(a, cache_key(Module::Conv, "sm_90", (12, 8)));
        assert_ne!(a, cache_key(Module::Conv, "sm_80", (13, 0)));
        assert_ne!(a, cache_key(Module::Gemm, "sm_80", (12, 8)));
        assert_eq!(a.len(), 32);
    }
}
