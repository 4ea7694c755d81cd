//! Memory on the GPU: after warm-up, training steps take no new memory from the driver. The
//! backend allocates from the device's stream-ordered pool and keeps freed memory there, so the
//! pool's reserve (`Cuda::pool_reserved_bytes`) must stop growing once every buffer size a step
//! uses has been seen; and with CUDA graphs a steady-state step makes no allocation at all (the
//! same count is asserted on the emulator in tests/gpu_graph.rs). GPU only (the emulator has no
//! pool); alone in its own test binary, since other tests on the same device would share the pool.

use wgan::backend::cuda::Cuda;
use wgan::backend::Backend;
use wgan::train::{DatasetKind, Loss, TrainOptions};

#[test]
#[ignore = "needs a CUDA GPU"]
fn steady_state_steps_take_no_memory_from_the_driver() {
    let g = match Cuda::new(0) {
        Ok(g) => g,
        Err(e) if std::env::var("WGAN_REQUIRE_GPU").as_deref() == Ok("1") => panic!("WGAN_REQUIRE_GPU=1: {e}"),
        Err(e) => return eprintln!("skipped: no GPU ({e})"),
    };
    for loss in [Loss::WganGp, Loss::Wgan] {
        let cfg = TrainOptions {
            dataset: Some(DatasetKind::Mnist),
            loss: Some(loss),
            width: Some(16),
            batch_size: Some(32),
            steps: Some(1),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut gan = cfg.build(g.clone()).unwrap();
        let reals: Vec<_> = (0..4).map(|i| g.randn(&[32, 1, 28, 28], 7, i)).collect();
        let mut k = 0;
        let mut step = |n: usize| {
            for _ in 0..n {
                let s = gan.train_step(|| {
                    k += 1;
                    reals[k % reals.len()].clone()
                });
                let _ = s.read(&g);
            }
        };
        step(2);
        let warm = g.pool_reserved_bytes().unwrap();
        let Some(warm) = warm else {
            return eprintln!("skipped: this device has no stream-ordered allocator (every allocation is cuMemAlloc)");
        };
        step(5);
        // With CUDA graphs (on by default) a steady-state step allocates nothing at all: every
        // intermediate is graph-owned memory (the graph's own pool, not the default pool above).
        let c0 = g.counts();
        step(1);
        let d = g.counts().since(&c0);
        assert_eq!(d.allocs, 0, "{loss:?}: allocations in a steady-state step: {d:?}");
        assert_eq!(d.graph_launches, cfg.n_critic as u64 + 1, "{loss:?}: one graph launch per iteration: {d:?}");
        g.check().unwrap();
        let after = g.pool_reserved_bytes().unwrap().unwrap();
        eprintln!("{loss:?}: pool reserve {warm} bytes after warm-up, {after} after 5 more steps");
        assert_eq!(
            after,
            warm,
            "{loss:?}: steady-state steps took {} more bytes from the driver",
            after as i64 - warm as i64
        );
    }
}
