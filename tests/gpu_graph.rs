//! CUDA graphs of the training step, on the host emulator (and a GPU when there is one):
//! capture freezes launch arguments, replays run the recorded work in order, per-step values come
//! from device counters, captured code may not touch the host, and whole training steps give
//! bit-identical results with graphs on and off, with no allocation and one graph launch per
//! iteration in the steady state.

mod cuda_devices;

use cuda_devices::On;
use wgan::backend::cuda::Cuda;
use wgan::backend::Backend;
use wgan::train::{DatasetKind, Gan, Loss, TrainOptions};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A launch recorded in a capture keeps the argument values it had then; nothing runs until the
/// graph is launched; each launch runs it again.
fn captured_arguments_are_frozen(on: On) {
    let Some(be) = cuda_devices::open(on) else { return };
    let n = 300;
    let out = be.fill(&[n], 0.0);
    let mut stream = 7u64;
    be.capture_begin().unwrap();
    let r = be.rand_uniform(&[n], 1, stream);
    be.copy_into_inplace(&out, 0, &r);
    drop(r);
    let id = be.capture_end().unwrap();
    assert!(be.to_f32(&out).iter().all(|&v| v == 0.0), "captured work ran before the graph was launched");
    stream += 1; // a later value of the host variable must not reach the replay
    let want7 = be.to_f32(&be.rand_uniform(&[n], 1, 7));
    let want8 = be.to_f32(&be.rand_uniform(&[n], 1, stream));
    assert_ne!(want7, want8);
    for _ in 0..2 {
        be.fill_into_zero(&out);
        be.graph_launch(id).unwrap();
        assert_eq!(bits(&be.to_f32(&out)), bits(&want7), "a replay must use the arguments of the capture");
    }
    be.check().unwrap();
}

/// A value that changes per replay must come from device memory: the draw counter read by
/// `randn_at` and advanced inside the graph gives a new stream each replay, while the same draw
/// with its stream as a kernel parameter repeats the capture's numbers.
fn per_step_values_come_from_device_counters(on: On) {
    let Some(be) = cuda_devices::open(on) else { return };
    let n = 257;
    let (a, b) = (be.fill(&[n], 0.0), be.fill(&[n], 0.0));
    let ctr = be.counter(5);
    let mut host_draws = 5u64;
    be.capture_begin().unwrap();
    let x = be.randn_at(&[n], 3, 100, &ctr);
    be.copy_into_inplace(&a, 0, &x);
    let y = be.randn(&[n], 3, 100 + host_draws); // the wrong way: a frozen parameter
    be.copy_into_inplace(&b, 0, &y);
    be.counter_add(&ctr, 1);
    host_draws += 1;
    drop((x, y));
    let id = be.capture_end().unwrap();
    let mut frozen = None;
    for k in 0..3u64 {
        be.graph_launch(id).unwrap();
        let want = be.to_f32(&be.randn(&[n], 3, 105 + k));
        assert_eq!(bits(&be.to_f32(&a)), bits(&want), "replay {k}: randn_at must read the counter");
        let got_b = be.to_f32(&b);
        match &frozen {
            None => frozen = Some(got_b),
            Some(f) => assert_eq!(bits(f), bits(&got_b), "a kernel parameter is frozen at capture"),
        }
    }
    assert_eq!(be.counter_get(&ctr), 8);
    assert_eq!(host_draws, 6, "the host's copy advanced once, at capture");
    be.check().unwrap();
}

/// Host copies and synchronisation inside a capture are errors, and so is freeing a buffer that
/// was allocated before the capture (a free node the graph does not own).
fn captured_code_may_not_touch_the_host(on: On) {
    let Some(be) = cuda_devices::open(on) else { return };
    be.capture_begin().unwrap();
    let _t = be.from_f32(&[1.0, 2.0], &[2]);
    let _ = be.capture_end();
    let e = be.check().expect_err("an upload inside a capture must fail");
    assert!(e.to_string().contains("captured"), "{e}");
    if on == On::Emulator {
        let be = cuda_devices::open(on).unwrap();
        let before = be.fill(&[8], 1.0);
        be.capture_begin().unwrap();
        drop(before);
        let e = be.capture_end().expect_err("freeing a pre-capture buffer in a capture must fail");
        assert!(e.to_string().contains("allocated before the capture"), "{e}");
    }
}

/// The counters see allocations and launches; a replay allocates nothing.
fn counts_launches_and_allocations(on: On) {
    let Some(be) = cuda_devices::open(on) else { return };
    let x = be.fill(&[64], 2.0);
    let c0 = be.counts();
    let y = be.scale(&x, 3.0);
    let c1 = be.counts().since(&c0);
    assert_eq!((c1.launches, c1.allocs, c1.alloc_bytes), (1, 1, 256), "{c1:?}");
    be.capture_begin().unwrap();
    let z = be.add(&x, &y);
    be.copy_into_inplace(&x, 0, &z);
    drop(z);
    let id = be.capture_end().unwrap();
    let c2 = be.counts();
    for _ in 0..3 {
        be.graph_launch(id).unwrap();
    }
    let d = be.counts().since(&c2);
    assert_eq!((d.launches, d.allocs, d.graph_launches, d.replayed_kernels), (0, 0, 3, 3), "{d:?}");
    // x = 2 + 6·3 after three replays of x ← x + y (y = 6).
    assert_eq!(be.to_f32(&x), vec![20.0; 64]);
}

trait ZeroFill {
    fn fill_into_zero(&self, t: &wgan::backend::cuda::CudaTensor);
}
impl ZeroFill for Cuda {
    fn fill_into_zero(&self, t: &wgan::backend::cuda::CudaTensor) {
        self.write_f32(t, &vec![0.0; t.numel()]);
    }
}

/// Everything a checkpoint holds, as bits.
fn state(g: &Gan<Cuda>) -> Vec<Vec<u32>> {
    let be = &g.be;
    vec![
        bits(&be.to_f32(&g.gen.params)),
        bits(&be.to_f32(&g.critic.params)),
        bits(&be.to_f32(&g.gen.buffers)),
        bits(&be.to_f32(&g.opt_g.m)),
        bits(&be.to_f32(&g.opt_g.v)),
        bits(&be.to_f32(&g.opt_d.m)),
        bits(&be.to_f32(&g.opt_d.v)),
        vec![g.draws as u32, g.opt_g.t as u32, g.opt_d.t as u32, g.gen.batches_tracked.get() as u32],
    ]
}

/// Runs `steps` steps with graphs `graph`; returns the state, the step scalars, and the device
/// counts of the last step.
fn run(
    on: On,
    opts: &TrainOptions,
    graph: bool,
    steps: usize,
) -> Option<(Vec<Vec<u32>>, Vec<u64>, wgan::backend::cuda::DeviceCounts, usize)> {
    let be = cuda_devices::open(on)?;
    let cfg = opts.clone().resolve().unwrap();
    let mut gan = cfg.build(be.clone()).unwrap();
    gan.graph = graph;
    let mut source = wgan::train::run::Source::open(&cfg, 0).unwrap();
    let shape = source.batch_shape(cfg.batch_size);
    let mut scalars = vec![];
    let mut last = None;
    for _ in 0..steps {
        let (s, p) = gan.train_step_profiled(&shape, |be, dst| source.fill(be, dst, cfg.batch_size));
        be.check().unwrap();
        let v = s.read(&be);
        scalars.extend([v.critic_loss.to_bits(), v.wdist.to_bits(), v.gen_loss.to_bits()]);
        last = Some((p.counts.unwrap(), s.critic_iters));
    }
    let (counts, iters) = last.unwrap();
    Some((state(&gan), scalars, counts, iters))
}

fn graph_on_and_off_agree(on: On, opts: TrainOptions) {
    let steps = 3;
    let Some((a, sa, ca, iters)) = run(on, &opts, true, steps) else { return };
    let (b, sb, cb, _) = run(on, &opts, false, steps).unwrap();
    assert_eq!(sa, sb, "step scalars differ between --graph on and off");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "state {i} (gen, critic, bn, adam g m/v, adam d m/v, counters) differs");
    }
    // Steady state with graphs: one graph launch per iteration, nothing else but the batch copies.
    assert_eq!(ca.allocs, 0, "allocations in a steady-state step: {ca:?}");
    assert_eq!(ca.launches, 0, "kernel launches outside the graphs: {ca:?}");
    assert_eq!(ca.graph_launches, iters as u64 + 1, "{ca:?}");
    assert_eq!(ca.copies, iters as u64, "one batch upload per critic iteration: {ca:?}");
    // Without graphs every kernel is a launch and most outputs an allocation.
    assert_eq!(cb.launches, ca.replayed_kernels, "the graphs replay exactly the eager kernels");
    assert!(cb.allocs > 0 && cb.graph_launches == 0);
}

fn toy(loss: Loss) -> TrainOptions {
    TrainOptions {
        dataset: Some(DatasetKind::EightGaussians),
        loss: Some(loss),
        batch_size: Some(16),
        width: Some(32),
        n_critic: Some(2),
        seed: Some(5),
        ..Default::default()
    }
}

fn toy_wgan_gp_graph_on_off_bitwise(on: On) {
    graph_on_and_off_agree(on, toy(Loss::WganGp));
}

fn toy_wgan_clip_graph_on_off_bitwise(on: On) {
    graph_on_and_off_agree(on, toy(Loss::Wgan));
}

fn mnist_dcgan_wgan_gp_graph_on_off_bitwise(on: On) {
    graph_on_and_off_agree(
        on,
        TrainOptions {
            dataset: Some(DatasetKind::Mnist),
            loss: Some(Loss::WganGp),
            batch_size: Some(4),
            width: Some(4),
            n_critic: Some(2),
            seed: Some(9),
            ..Default::default()
        },
    );
}

fn mnist_dcgan_wgan_clip_graph_on_off_bitwise(on: On) {
    graph_on_and_off_agree(
        on,
        TrainOptions {
            dataset: Some(DatasetKind::Mnist),
            loss: Some(Loss::Wgan),
            batch_size: Some(4),
            width: Some(4),
            n_critic: Some(2),
            seed: Some(9),
            ..Default::default()
        },
    );
}

on_gpu_and_emulator!(
    captured_arguments_are_frozen,
    per_step_values_come_from_device_counters,
    captured_code_may_not_touch_the_host,
    counts_launches_and_allocations,
    toy_wgan_gp_graph_on_off_bitwise,
    toy_wgan_clip_graph_on_off_bitwise,
    mnist_dcgan_wgan_gp_graph_on_off_bitwise,
    mnist_dcgan_wgan_clip_graph_on_off_bitwise,
);
