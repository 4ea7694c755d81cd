//! Device memory over training steps (docs/CUDA.md, "Memory"). The first step of a process runs
//! eagerly and sizes the default memory pool (its peak: every intermediate of a step); from the
//! second on, the step runs from CUDA graphs, whose intermediates are the graphs' own memory, and
//! the pool is trimmed back to what live tensors use. So in the steady state:
//! - no step allocates from the pool, and its reserve does not grow (`Cuda::memory`);
//! - the reserve is below the eager peak (the eager step's intermediates went back to the driver);
//! - the footprint is that reserve plus the graphs' memory, reported beside the eager peak.
//!
//! On the emulator (every CI run) the pool and the graph cache are the emulator's model of them
//! (`src/backend/cuda/memory.rs`): the reserve must then be exactly the live tensors. On a GPU
//! (ignored without one) the driver's attributes; alone in its own test binary, since other GPU
//! tests on the same device would share the pool.

mod cuda_devices;

use cuda_devices::On;
use wgan::backend::cuda::MemoryUse;
use wgan::train::{DatasetKind, Loss, TrainOptions};

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn steady_state_memory_is_bounded(on: On) {
    if cuda_devices::open(on).is_none() {
        return;
    }
    let cases: Vec<(&str, TrainOptions)> = match on {
        On::Gpu => [Loss::WganGp, Loss::Wgan]
            .into_iter()
            .map(|loss| {
                let o = TrainOptions {
                    dataset: Some(DatasetKind::Mnist),
                    loss: Some(loss),
                    width: Some(16),
                    batch_size: Some(32),
                    ..Default::default()
                };
                (if loss == Loss::Wgan { "mnist wgan" } else { "mnist wgan-gp" }, o)
            })
            .collect(),
        // Small models: the emulator runs every kernel on the CPU.
        On::Emulator => vec![
            (
                "toy wgan-gp",
                TrainOptions {
                    dataset: Some(DatasetKind::EightGaussians),
                    loss: Some(Loss::WganGp),
                    batch_size: Some(16),
                    width: Some(32),
                    n_critic: Some(2),
                    ..Default::default()
                },
            ),
            (
                "mnist wgan-gp",
                TrainOptions {
                    dataset: Some(DatasetKind::Mnist),
                    loss: Some(Loss::WganGp),
                    batch_size: Some(4),
                    width: Some(4),
                    n_critic: Some(2),
                    ..Default::default()
                },
            ),
        ],
    };
    for (name, opts) in cases {
        // A device of its own per case, so that the eager peak is this model's.
        let g = cuda_devices::open(on).unwrap();
        let cfg = TrainOptions { steps: Some(1), ..opts }.resolve().unwrap();
        let mut gan = cfg.build(g.clone()).unwrap();
        let mut source = wgan::train::run::Source::open(&cfg, 0).unwrap();
        let shape = source.batch_shape(cfg.batch_size);
        let mut step = |n: usize| -> (MemoryUse, wgan::backend::cuda::DeviceCounts) {
            let mut last = None;
            for _ in 0..n {
                let (s, p) = gan.train_step_profiled(&shape, |be, dst| source.fill(be, dst, cfg.batch_size));
                let _ = s.read(&g);
                g.check().unwrap();
                last = Some((p.memory, p.counts.unwrap()));
            }
            let (m, c) = last.unwrap();
            let Some(m) = m else { panic!("{name}: the CUDA backend reports no memory") };
            (m, c)
        };
        let (eager, _) = step(1);
        let (warm, _) = step(1); // captures both graphs and trims the pool
        let (after, d) = step(3);
        eprintln!(
            "{name} ({on:?}): eager peak {:.3} MiB (pool); steady state {:.3} MiB = pool {:.3} MiB + graphs {:.3} MiB \
             (at least {:.3} MiB live at once)",
            mib(eager.pool_peak),
            mib(after.footprint()),
            mib(after.pool_reserved),
            mib(after.graph_reserved),
            mib(after.graph_live_peak)
        );
        // With CUDA graphs (on by default) a steady-state step allocates nothing at all.
        assert_eq!(d.allocs, 0, "{name}: allocations in a steady-state step: {d:?}");
        assert_eq!(d.graph_launches, cfg.n_critic as u64 + 1, "{name}: one graph launch per iteration: {d:?}");
        assert_eq!(after.pool_reserved, warm.pool_reserved, "{name}: steady-state steps took memory: {after:?}");
        assert!(after.graph_reserved > 0, "{name}: the graphs own their intermediates: {after:?}");
        match on {
            On::Emulator => {
                // The eager step's intermediates went back: the reserve is the live tensors.
                assert_eq!(after.pool_reserved, after.pool_used, "{name}: the pool was not trimmed: {after:?}");
                assert!(after.pool_reserved < eager.pool_peak, "{name}: {after:?} vs eager {eager:?}");
                assert!(0 < after.graph_live_peak && after.graph_live_peak <= after.graph_reserved, "{after:?}");
            }
            // The driver reserves in chunks, so the trimmed reserve can round up to the peak.
            On::Gpu => assert!(after.pool_reserved <= eager.pool_peak, "{name}: {after:?} vs eager {eager:?}"),
        }
    }
}

on_gpu_and_emulator!(steady_state_memory_is_bounded);
