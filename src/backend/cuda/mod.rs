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
//! Layers, each importing only from those below it (no import cycles):
//! 1. `nvrtc.rs`, `kernels.rs` (sources, compilation, cache), `params.rs` (kernel parameter
//!    structs), `emu/` (the emulator's runtime);
//! 2. `issued.rs`: what was issued to the stream (counters, the capture in progress, the
//!    emulator's pool model), the state `device.rs` reports every launch, allocation and copy to;
//! 3. `device.rs`: context, stream, settings, tensors, allocation, copies, `launch!`, the sticky
//!    error;
//! 4. `graph.rs` (capture and replay), `memory.rs` (the pool's policy and report), `timing.rs`;
//! 5. `ops/`: the `Backend` implementation, one module per kernel family (`ops/conv.rs` ↔
//!    `kernels/conv.cu`, …; the table is in `ops/mod.rs`).
//!
//! See docs/CUDA.md for library discovery, the kernel cache and the allocator.

#[cfg(feature = "nccl")]
pub mod collective;
mod device;
pub mod emu;
mod graph;
mod issued;
pub mod kernels;
mod memory;
pub mod nvrtc;
mod ops;
pub mod params;
mod timing;

pub use device::{device_info, driver_version, system_report, Cuda, CudaTensor, GemmTiles};
pub use emu::{Checks, EmuOptions, Schedule};
pub use issued::{DeviceCounts, GraphFailure};
pub use kernels::{cache_dir, compile_all};
pub use memory::MemoryUse;
