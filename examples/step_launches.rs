//! Launches and allocations of one training step, counted on the host emulator without running
//! it: the step is captured into a graph (recorded, not executed), so even a DCGAN-64 step counts
//! in seconds. Prints, per case, the kernels of one eager step (what `--graph off` issues from the
//! host) without and with the one-launch layer norm and penalty ("fused"), the step's allocations
//! and their bytes (fused), and what a steady-state step
//! with graphs issues (one graph launch per iteration, one batch copy or gather per critic
//! iteration, no allocation).
//!   cargo run --release --example step_launches            # every case
//!   cargo run --release --example step_launches -- dcgan64 # cases whose name contains dcgan64

use wgan::backend::cuda::Cuda;
use wgan::train::{DatasetKind, Loss, TrainOptions};

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "{:<26} {:>6} {:>14} {:>14} {:>12} {:>12} {:>18}",
        "case", "iters", "kernels", "fused", "allocs", "alloc MB", "graphs: host ops"
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
            let mut row = vec![];
            let mut iters = 0;
            for fused in [false, true] {
                let be = Cuda::emulated().expect("the emulator needs a C++ compiler");
                be.set_poison(false);
                be.set_fused_norm(fused);
                let mut gan = cfg.build(be.clone()).expect("build");
                gan.graph = false;
                gan.prepare_step(&shape);
                be.capture_begin().expect("capture");
                let c0 = be.counts();
                let s = gan.train_step_into(&shape, |_, _| {});
                iters = s.critic_iters;
                drop(s);
                let c = be.counts().since(&c0);
                be.capture_end().expect("the step captures");
                be.check().expect("the step runs without host copies");
                row.push((c.captured_launches, c.captured_allocs, c.captured_alloc_bytes));
            }
            // Steady state with graphs: per critic iteration one batch copy or gather and one
            // graph launch; one graph launch for the generator iteration; nothing allocated.
            let graph_ops = 2 * iters + 1;
            println!(
                "{:<26} {:>6} {:>14} {:>14} {:>12} {:>12} {:>18}",
                name,
                iters,
                row[0].0,
                row[1].0,
                row[1].1,
                format!("{:.1}", row[1].2 as f64 / 1e6),
                graph_ops
            );
        }
    }
}
