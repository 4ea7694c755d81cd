//! CUDA backend (work in progress).
pub mod kernels;
pub mod nvrtc;
pub use kernels::compile_all;
