//! wgan: WGAN and WGAN-GP training on hand-written CUDA kernels, with a CPU reference backend and a
//! small autograd tape that supports double backward.

pub mod backend;
pub mod bench_util;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod flops;
pub mod fsutil;
pub mod metrics;
pub mod nn;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod tape;
pub mod toy;
pub mod train;
pub mod view;

pub use error::{Context, Error, Result};
