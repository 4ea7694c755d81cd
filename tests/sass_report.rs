//! The machine-code report in CI: every kernel file compiled for sm_90 through the crate's NVRTC
//! path and options (plus `ptxas -v` for registers, spills and shared memory), written as CUBINs,
//! then `scripts/sass-report` disassembles them (nvdisasm from the `nvidia-cuda-nvdisasm` wheel)
//! and fails on any spill, on a tensor-core kernel without HMMA in its main loop, or on integer
//! division in the main loop of any convolution or matmul kernel (f32 SIMT ones included).
//! Prints the report.
//!
//! Without NVRTC or nvdisasm the test says why and passes, unless WGAN_REQUIRE_NVRTC=1 /
//! WGAN_REQUIRE_NVDISASM=1 (scripts/test sets both). `WGAN_SASS_DIR` keeps the CUBINs there.

use std::path::PathBuf;
use std::process::Command;

use wgan::backend::cuda::kernels::{options, Module, HEADERS};
use wgan::backend::cuda::nvrtc;

#[test]
fn sm90_machine_code_report() {
    if !nvrtc::is_available() {
        let why = nvrtc::library().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(std::env::var("WGAN_REQUIRE_NVRTC").as_deref() != Ok("1"), "WGAN_REQUIRE_NVRTC=1 but no NVRTC: {why}");
        eprintln!("skipped: NVRTC not available ({why})");
        return;
    }
    let dir = match std::env::var_os("WGAN_SASS_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("wgan-sass-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = options("sm_90");
    opts.push("--ptxas-options=-v".into());
    for m in Module::ALL {
        let c = nvrtc::compile(m.file(), m.source(), HEADERS, &opts, nvrtc::Output::Cubin)
            .unwrap_or_else(|e| panic!("{}: {e}", m.file()));
        let stem = m.file().trim_end_matches(".cu");
        std::fs::write(dir.join(format!("{stem}.cubin")), &c.image).unwrap();
        std::fs::write(dir.join(format!("{stem}.log")), &c.log).unwrap();
    }
    if std::env::var("WGAN_SASS_REPORT_ONLY_BUILD").as_deref() == Ok("1") {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/sass-report");
    let out = Command::new("python3").arg(&script).arg("--dir").arg(&dir).output().expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if std::env::var_os("WGAN_SASS_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if out.status.code() == Some(2) {
        assert!(std::env::var("WGAN_REQUIRE_NVDISASM").as_deref() != Ok("1"), "WGAN_REQUIRE_NVDISASM=1: {text}");
        eprintln!("skipped: {text}");
        return;
    }
    println!("{text}");
    assert!(out.status.success(), "machine-code report failed:\n{text}");
}
