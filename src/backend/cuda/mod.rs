//! The CUDA backend: hand-written kernels (`kernels/*.cu`) compiled at run time by NVRTC for the
//! device's exact architecture, cached on disk, launched on one non-default stream through cudarc.
//!
//! - [`Cuda`] implements [`crate::backend::Backend`] on f32 tensors ([`CudaTensor`]: shape +
//!   window of shared device storage). Failures are recorded and surfaced by [`Cuda::check`].
//! - [`compile_all`] compiles every kernel file for an architecture without a GPU (CI).
//! - [`system_report`] / [`device_info`] describe the setup for `wgan info`.
//!
//! - [`Cuda::emulated`] runs the same host code and kernels on the CPU (`emu/`), for tests.
//!
//! See docs/CUDA.md for library discovery, the kernel cache and the allocator.

#[cfg(feature = "nccl")]
pub mod collective;
mod device;
pub mod emu;
mod fused;
mod graph;
pub mod kernels;
mod logistic;
mod memory;
pub mod nvrtc;
mod ops;
pub mod params;
mod step;
mod tc;
mod timing;

pub use device::{device_info, driver_version, system_report, Cuda, CudaTensor};
pub use emu::{Checks, EmuOptions, Schedule};
pub use graph::{DeviceCounts, GraphFailure};
pub use kernels::{cache_dir, compile_all};
pub use memory::MemoryUse;
pub use ops::GemmTiles;
