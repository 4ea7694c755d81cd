//! Training: optimizers, the WGAN / WGAN-GP step, the run configuration and the run loop with its
//! outputs (metrics, pictures, checkpoints).

pub mod config;
mod data_parallel;
pub mod gan;
pub mod optim;
pub mod run;
pub mod snapshot;
mod step_graph;

pub use config::{DatasetKind, Loss, Penalty, TrainConfig, TrainOptions};
pub use gan::{Gan, LossKind, StepConfig};
pub use optim::{OptimKind, Optimizer};
pub use step_graph::StepProfile;
