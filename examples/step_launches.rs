//! Launches and allocations of one training step, counted on the host emulator without running
//! it: the step is captured into a graph (recorded, not executed), so even a DCGAN-64 step counts
//! in seconds. Prints, per case, the kernels of one eager step (what `--graph off` issues from the
//! host) at the default precision (tf32: tensor-core GEMMs and convolutions) and at f32 (the SIMT
//! kernels), the step's allocations and their bytes (tf32), and what a steady-state step with
//! graphs issues (one graph launch per iteration, one batch copy or gather per critic iteration,
//! no allocation). With `--by-kernel`, each case's kernels are also listed by name, most
//! frequent first, at both precisions.
//!   cargo run --release --example step_launches                         # every case
//!   cargo run --release --example step_launches -- dcgan64              # cases whose name contains dcgan64
//!   cargo run --release --example step_launches -- --by-kernel dcgan64  # with the breakdown
//!   WGAN_UNFUSED=1 cargo run ...   # without the one-launch layer norm and penalty (set_fused_norm(false))

use std::collections::BTreeMap;

use wgan::backend::cuda::Cuda;
use wgan::backend::Precision;
use wgan::train::{DatasetKind, Loss, TrainOptions};

/// (kernels, allocations, bytes, kernel names, critic iterations) of one eager step captured on the emulator.
fn count_step(
    cfg: &wgan::train::TrainConfig,
    shape: &[usize],
    precision: Precision,
) -> (u64, u64, u64, Vec<&'static str>, usize) {
    let be = Cuda::emulated().expect("the emulator needs a C++ compiler");
    be.set_poison(false);
    be.set_fused_norm(std::env::var("WGAN_UNFUSED").map_or(true, |v| v != "1"));
    be.set_precision(precision);
    let mut gan = cfg.build(be.clone()).expect("build");
    gan.graph = false;
    gan.prepare_step(shape);
    be.capture_begin().expect("capture");
    let c0 = be.counts();
    let s = gan.train_step_into(shape, |_, _| {});
    let iters = s.critic_iters;
    drop(s);
    let c = be.counts().since(&c0);
    let id = be.capture_end().expect("the step captures");
    be.check().expect("the step runs without host copies");
    let names = be.graph_kernel_names(id).expect("the emulator records names");
    assert_eq!(names.len() as u64, c.captured_launches);
    (c.captured_launches, c.captured_allocs, c.captured_alloc_bytes, names, iters)
}

fn histogram(names: &[&'static str]) -> Vec<(&'static str, usize)> {
    let mut h: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in names {
        *h.entry(n).or_default() += 1;
    }
    let mut v: Vec<_> = h.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let by_kernel = args.iter().any(|a| a == "--by-kernel");
    args.retain(|a| a != "--by-kernel");
    let filter = args;
    println!(
        "{:<26} {:>6} {:>12} {:>12} {:>10} {:>10} {:>18}",
        "case", "iters", "kernels tf32", "kernels f32", "allocs", "alloc MB", "graphs: host ops"
    );
    for (work, dataset, size, channels, batch) in [
        ("toy", DatasetKind::EightGaussians, 2, 1, 256),
        ("dcgan28", DatasetKind::Mnist, 28, 1, 64),
        ("dcgan64", DatasetKind::Mnist, 64, 3, 64),
    ] {
        for loss in [Loss::WganGp, Loss::Wgan] {
            let l = if loss == Loss::WganGp { "wgan-gp" } else { "wgan" };
            let name = format!("step/{work}/{l}/b{batch}");
            if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let toy = dataset.is_toy();
            let cfg = TrainOptions {
                dataset: Some(dataset),
                loss: Some(loss),
                batch_size: Some(batch),
                image_size: if toy { None } else { Some(size) },
                channels: if toy { None } else { Some(channels) },
                width: if toy { None } else { Some(64) },
                ..Default::default()
            }
            .resolve()
            .expect("configuration");
            let shape = if toy { vec![batch, 2] } else { vec![batch, channels, size, size] };
            let tf32 = count_step(&cfg, &shape, Precision::Tf32);
            let f32 = count_step(&cfg, &shape, Precision::F32);
            let iters = tf32.4;
            // Steady state with graphs: per critic iteration one batch copy or gather and one
            // graph launch; one graph launch for the generator iteration; nothing allocated.
            let graph_ops = 2 * iters + 1;
            println!(
                "{:<26} {:>6} {:>12} {:>12} {:>10} {:>10} {:>18}",
                name,
                iters,
                tf32.0,
                f32.0,
                tf32.1,
                format!("{:.1}", tf32.2 as f64 / 1e6),
                graph_ops
            );
            if by_kernel {
                for (label, names) in [("tf32", &tf32.3), ("f32", &f32.3)] {
                    println!("  {name} at {label}, kernels by name:");
                    for (k, n) in histogram(names) {
                        println!("    {n:>6}  {k}");
                    }
                }
            }
        }
    }
}
