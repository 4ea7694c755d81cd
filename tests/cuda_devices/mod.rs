//! The two devices the CUDA tests run on.
//!
//! - `On::Gpu`: a real GPU. These tests are `#[ignore = "needs a CUDA GPU"]`; run them with
//!   `--include-ignored`. Without a GPU they return early, unless `WGAN_REQUIRE_GPU=1`, which makes
//!   them fail.
//! - `On::Emulator`: the same backend with the kernels compiled for the CPU by the system's C++
//!   compiler (`Cuda::emulated`). These run in every `cargo test`; without a C++ compiler they
//!   return early, unless `WGAN_REQUIRE_EMULATOR=1` (set by scripts/test), which makes them fail.
//!
//! `on_gpu_and_emulator!(f, g, ...)` turns each `fn f(on: On)` into the tests `f::gpu` and
//! `f::emulated`.

pub mod rounded;

use wgan::backend::cuda::Cuda;
use wgan::backend::Precision;

/// The precision of matrix products and convolutions in these tests: `WGAN_TEST_PRECISION`
/// (f32, tf32, bf16), default f32 (the exact reference kernels; tests/gpu_tensorcore.rs sets
/// TF32 and BF16 itself). Tolerances of products scale with its unit roundoff.
#[allow(dead_code)]
pub fn precision() -> Precision {
    match std::env::var("WGAN_TEST_PRECISION") {
        Ok(s) if !s.is_empty() => s.parse().unwrap_or_else(|e| panic!("WGAN_TEST_PRECISION: {e}")),
        _ => Precision::F32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    Gpu,
    Emulator,
}

/// Opens the device, or None (after saying why) when it is missing and not required.
pub fn open(on: On) -> Option<Cuda> {
    let (r, var) = match on {
        On::Gpu => (Cuda::new(0), "WGAN_REQUIRE_GPU"),
        On::Emulator => (Cuda::emulated(), "WGAN_REQUIRE_EMULATOR"),
    };
    match r {
        Ok(g) => {
            // Poisoned unless WGAN_CUDA_POISON=0 (for compute-sanitizer's initcheck, which sees
            // the poisoning as a write).
            g.set_poison(std::env::var("WGAN_CUDA_POISON").as_deref() != Ok("0"));
            g.set_precision(precision());
            Some(g)
        }
        Err(e) if std::env::var(var).as_deref() == Ok("1") => panic!("{var}=1 but {on:?} unavailable: {e}"),
        Err(e) => {
            eprintln!("skipped: {on:?} unavailable ({e})");
            None
        }
    }
}

#[macro_export]
macro_rules! on_gpu_and_emulator {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            #[ignore = "needs a CUDA GPU"]
            fn gpu() {
                super::$name($crate::cuda_devices::On::Gpu)
            }
            #[test]
            fn emulated() {
                super::$name($crate::cuda_devices::On::Emulator)
            }
        }
    )+};
}
