//! CUDA graphs of the training step, on the host emulator (and a GPU when there is one):
//! capture freezes launch arguments, replays run the recorded work in order, per-step values come
//! from device counters, captured code may not touch the host, and whole training steps give
//! bit-identical results with graphs on and off, with no allocation and one graph launch per
//! iteration in the steady state.

mod cuda_devices;

use cuda_devices::On;
use wgan::backend::cuda::{Cuda, GraphFailure};
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

/// (checkpoint state, step scalars, device counts of the last step, its critic iterations)
type RunResult = (Vec<Vec<u32>>, Vec<u64>, wgan::backend::cuda::DeviceCounts, usize);

/// Runs `steps` steps with graphs `graph`.
fn run(on: On, opts: &TrainOptions, graph: bool, steps: usize) -> Option<RunResult> {
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

/// What a run with an injected graph failure ends with: checkpoint state, step scalars, whether
/// graphs are still on, and the device memory after the last step.
type FailedRun = (Vec<Vec<u32>>, Vec<u64>, bool, wgan::backend::cuda::MemoryUse);

/// Runs `steps` steps with graphs on, the graph operation `at` failing after `skip` successes.
fn run_failing(on: On, opts: &TrainOptions, steps: usize, at: GraphFailure, skip: usize) -> Option<FailedRun> {
    let be = cuda_devices::open(on)?;
    let cfg = opts.clone().resolve().unwrap();
    let mut gan = cfg.build(be.clone()).unwrap();
    be.fail_graph(at, skip);
    let mut source = wgan::train::run::Source::open(&cfg, 0).unwrap();
    let shape = source.batch_shape(cfg.batch_size);
    let mut scalars = vec![];
    let mut memory = None;
    for _ in 0..steps {
        let (s, p) = gan.train_step_profiled(&shape, |be, dst| source.fill(be, dst, cfg.batch_size));
        be.check().unwrap_or_else(|e| panic!("{at:?} after {skip}: the run must go on: {e}"));
        let v = s.read(&be);
        scalars.extend([v.critic_loss.to_bits(), v.wdist.to_bits(), v.gen_loss.to_bits()]);
        memory = p.memory;
    }
    Some((state(&gan), scalars, gan.graph, memory.expect("the CUDA backend reports its memory")))
}

/// A failed graph operation leaves training on the eager path with exactly the results of
/// `--graph off`: a capture that cannot start, one that fails at its end (instantiation), the first
/// launch of a new graph, the generator's capture after the critic's graph already ran, and a
/// replay once both graphs run (toy WGAN-GP, 2 critic iterations: step 2 captures and launches the
/// critic graph (launch 0), replays it (1), captures and launches the generator graph (2); step 3
/// replays the critic graph (3)). The run's graphs are dropped and the pool keeps freed memory for
/// the eager steps again.
fn failed_graphs_fall_back_to_eager_bitwise(on: On) {
    let opts = toy(Loss::WganGp);
    let steps = 4;
    let Some((want, want_scalars, _, _)) = run(on, &opts, false, steps) else { return };
    let cases = [
        (GraphFailure::Begin, 0),
        (GraphFailure::End, 0),
        (GraphFailure::Launch, 0),
        (GraphFailure::End, 1),
        (GraphFailure::Launch, 3),
    ];
    for (at, skip) in cases {
        let (got, scalars, graphs_on, m) = run_failing(on, &opts, steps, at, skip).unwrap();
        assert!(!graphs_on, "{at:?} after {skip}: graphs must be off after the failure");
        assert_eq!(scalars, want_scalars, "{at:?} after {skip}: step scalars differ from --graph off");
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert!(x == y, "{at:?} after {skip}: state {i} differs from --graph off");
        }
        if on == On::Emulator {
            // (On a GPU graph memory is per device, shared with other tests running.)
            assert_eq!(m.graph_reserved, 0, "{at:?} after {skip}: the graphs were not dropped: {m:?}");
        }
        // Eager steps free intermediates into the pool, which keeps them for the next step.
        assert!(m.pool_reserved > m.pool_used, "{at:?} after {skip}: the pool gives freed memory back: {m:?}");
    }
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

/// Batches gathered on the device are the host's batches, bit for bit, across epoch boundaries
/// and from any starting batch (resume); a data set over the budget streams from the host.
fn device_resident_batches_match_host_batches(on: On) {
    let Some(be) = cuda_devices::open(on) else { return };
    let (n, c, h, w, batch) = (10, 2, 3, 5, 4);
    let mut r = wgan::rng::HostRng::new(1, 1);
    let ds = wgan::data::ImageDataset {
        n,
        channels: c,
        height: h,
        width: w,
        pixels: (0..n * c * h * w).map(|_| r.uniform() as f32).collect(),
    };
    let sampler = wgan::data::BatchSampler::new(n, batch, 77).unwrap();
    for k0 in [0u64, 3] {
        let mut dev =
            wgan::data::DeviceImages::open(&be, &ds, sampler.clone(), k0, |_| {}).expect("10 images fit the device");
        let dst = be.fill(&[batch, c, h, w], f64::NAN);
        for k in k0..k0 + 8 {
            dev.fill(&be, &dst);
            let want = ds.gather(&sampler.indices(k));
            assert_eq!(bits(&be.to_f32(&dst)), bits(&want), "batch {k} (from {k0})");
        }
        assert_eq!(dev.next_index(), k0 + 8);
    }
    std::env::set_var("WGAN_DEVICE_DATA_MAX", "100");
    let mut said = String::new();
    let none = wgan::data::DeviceImages::open(&be, &ds, sampler, 0, |m| said = m.to_string());
    std::env::remove_var("WGAN_DEVICE_DATA_MAX");
    assert!(none.is_none() && said.contains("streaming batches from the host"), "{said}");
    // The CPU keeps its data where it is.
    let cpu = wgan::backend::cpu::Cpu::<f32>::new();
    let s2 = wgan::data::BatchSampler::new(n, batch, 77).unwrap();
    assert!(wgan::data::DeviceImages::open(&cpu, &ds, s2, 0, |_| {}).is_none());
}

/// Layer norm's forward in one launch: with its backward, against the CPU reference on odd
/// shapes with poisoned outputs, bit-identical to the two-launch form, one launch instead of two.
fn fused_layer_norm_matches_cpu(on: On) {
    use wgan::backend::Group;
    let Some(be) = cuda_devices::open(on) else { return };
    let cpu = wgan::backend::cpu::Cpu::<f32>::new();
    let mut r = wgan::rng::HostRng::new(8, 8);
    for shape in [vec![3usize, 5, 7, 9], vec![4, 33], vec![1, 3, 1, 1], vec![2, 3, 100, 60]] {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|_| (r.normal() * 3.0 + 1.5) as f32).collect();
        let g: Vec<f32> = (0..n).map(|_| r.normal() as f32).collect();
        let (xg, gg) = (be.from_f32(&x, &shape), be.from_f32(&g, &shape));
        let (xc, gc) = (cpu.from_f32(&x, &shape), cpu.from_f32(&g, &shape));
        let fused_applies = n / shape[0] <= 64 * 256;
        for fused in [true, false] {
            be.set_fused_norm(fused);
            let c0 = be.counts();
            let y = be.normalize(&xg, Group::Sample, 1e-5);
            let b = be.normalize_backward(&gg, &xg, Group::Sample, 1e-5);
            let launches = be.counts().since(&c0).launches;
            let want = if fused && fused_applies { 3 } else { 4 }; // the backward stays two launches
            assert_eq!(launches, want, "{shape:?} fused={fused}");
            let (yc, bc) =
                (cpu.normalize(&xc, Group::Sample, 1e-5), cpu.normalize_backward(&gc, &xc, Group::Sample, 1e-5));
            for (what, a, c) in
                [("forward", be.to_f32(&y), cpu.to_f32(&yc)), ("backward", be.to_f32(&b), cpu.to_f32(&bc))]
            {
                let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (i, (u, v)) in a.iter().zip(&c).enumerate() {
                    assert!((u - v).abs() <= 1e-5 * scale, "{what} {shape:?}[{i}] fused={fused}: {u} vs {v}");
                }
            }
        }
        be.set_fused_norm(true);
        let f = (
            be.to_f32(&be.normalize(&xg, Group::Sample, 1e-5)),
            be.to_f32(&be.normalize_backward(&gg, &xg, Group::Sample, 1e-5)),
        );
        be.set_fused_norm(false);
        let u = (
            be.to_f32(&be.normalize(&xg, Group::Sample, 1e-5)),
            be.to_f32(&be.normalize_backward(&gg, &xg, Group::Sample, 1e-5)),
        );
        be.set_fused_norm(true);
        assert_eq!((bits(&f.0), bits(&f.1)), (bits(&u.0), bits(&u.1)), "{shape:?}: fused and two-launch differ");
    }
    be.check().unwrap();
}

/// The penalty's norms, derivative and mean in one launch: against the CPU reference on odd
/// shapes, both kinds, bit-identical to the two launches, one launch instead of two.
fn fused_penalty_matches_cpu(on: On) {
    use wgan::backend::PenaltyKind;
    let Some(be) = cuda_devices::open(on) else { return };
    let cpu = wgan::backend::cpu::Cpu::<f32>::new();
    let mut r = wgan::rng::HostRng::new(6, 6);
    for shape in [vec![7usize, 3], vec![300, 2], vec![5, 1, 28, 28], vec![3, 3, 150, 150]] {
        let n: usize = shape.iter().product();
        let g: Vec<f32> = (0..n).map(|_| (r.normal() * 0.05) as f32).collect();
        let (gg, gc) = (be.from_f32(&g, &shape), cpu.from_f32(&g, &shape));
        for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
            let mut outs = vec![];
            for fused in [true, false] {
                be.set_fused_norm(fused);
                let c0 = be.counts();
                let (p, d) = be.penalty(&gg, kind, 1e-12);
                let launches = be.counts().since(&c0).launches;
                assert_eq!(launches, if fused && n <= 1 << 16 { 1 } else { 2 }, "{shape:?} fused={fused}");
                let (pc, dc) = cpu.penalty(&gc, kind, 1e-12);
                let (pv, pcv) = (be.to_f32(&p)[0], cpu.to_f32(&pc)[0]);
                assert!((pv - pcv).abs() <= 1e-5 * pcv.abs().max(1e-6), "{shape:?} {kind:?}: P {pv} vs {pcv}");
                let (dv, dcv) = (be.to_f32(&d), cpu.to_f32(&dc));
                let scale = dcv.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (i, (u, v)) in dv.iter().zip(&dcv).enumerate() {
                    assert!((u - v).abs() <= 1e-5 * scale, "{shape:?} {kind:?} dP/dg[{i}]: {u} vs {v}");
                }
                outs.push((pv.to_bits(), bits(&dv)));
            }
            assert_eq!(outs[0], outs[1], "{shape:?} {kind:?}: fused and two-launch penalty differ");
        }
    }
    be.set_fused_norm(true);
    be.check().unwrap();
}

on_gpu_and_emulator!(
    fused_penalty_matches_cpu,
    fused_layer_norm_matches_cpu,
    device_resident_batches_match_host_batches,
    captured_arguments_are_frozen,
    per_step_values_come_from_device_counters,
    captured_code_may_not_touch_the_host,
    counts_launches_and_allocations,
    toy_wgan_gp_graph_on_off_bitwise,
    toy_wgan_clip_graph_on_off_bitwise,
    failed_graphs_fall_back_to_eager_bitwise,
    mnist_dcgan_wgan_gp_graph_on_off_bitwise,
    mnist_dcgan_wgan_clip_graph_on_off_bitwise,
);
