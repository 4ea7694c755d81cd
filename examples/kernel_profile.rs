//! The memory profile of one DCGAN-64 WGAN-GP training step's kernels, counted on the host emulator
//! (no GPU): per kernel, global requests and sectors per request of loads and stores, shared
//! requests with wavefronts per request and excess wavefronts (bank conflicts), `cp.async` requests,
//! sectors per request and bytes by size — what Nsight Compute's memory tables give on a GPU,
//! counted from the addresses the kernels' lanes use (docs/CUDA.md, "Memory profile").
//!
//!   cargo run --release --example kernel_profile                  # batch 4, tf32 (the default precision)
//!   cargo run --release --example kernel_profile -- 2 f32 sites   # batch 2, f32 kernels, and the per-site table
//!
//! Arguments, in any order: a batch size (default 4), a precision (tf32, bf16, f32), `sites` (also
//! print every access site with its source line), `dcgan28` (the MNIST model instead). The step is
//! one critic iteration and one generator iteration (n_critic = 1: a full WGAN-GP step repeats the
//! critic iteration 5 times), width 64, images 3×64×64, eager (no graph), real images all zero
//! (addresses do not depend on values). Counts are of the emulator's run: see the doc for what it
//! cannot see (caches, timing, the device compiler's choices).

use wgan::backend::cuda::{Cuda, EmuOptions};
use wgan::backend::Precision;
use wgan::train::{DatasetKind, Loss, TrainOptions};

fn main() {
    if let Err(e) = run() {
        eprintln!("kernel_profile: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut batch = 4usize;
    let mut precision = Precision::Tf32;
    let mut sites = false;
    let mut dcgan28 = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "sites" => sites = true,
            "dcgan28" => dcgan28 = true,
            "tf32" => precision = Precision::Tf32,
            "bf16" => precision = Precision::Bf16,
            "f32" => precision = Precision::F32,
            n => {
                batch = n.parse().ok().filter(|&b| b > 0).ok_or_else(|| {
                    format!("unknown argument `{n}` (a batch size, tf32, bf16, f32, sites or dcgan28)")
                })?
            }
        }
    }
    let (size, channels) = if dcgan28 { (28, 1) } else { (64, 3) };
    let cfg = TrainOptions {
        dataset: Some(DatasetKind::Mnist),
        loss: Some(Loss::WganGp),
        n_critic: Some(1),
        batch_size: Some(batch),
        image_size: Some(size),
        channels: Some(channels),
        width: Some(64),
        lambda: Some(10.0),
        betas: Some((0.0, 0.9)),
        ..Default::default()
    }
    .resolve()
    .map_err(|e| e.to_string())?;
    let be = Cuda::emulated_with(EmuOptions { profile: true, ..EmuOptions::from_env().map_err(|e| e.to_string())? })
        .map_err(|e| e.to_string())?;
    be.set_poison(false);
    be.set_precision(precision);
    let mut gan = cfg.build(be.clone()).map_err(|e| e.to_string())?;
    gan.graph = false;
    let shape = [batch, channels, size, size];
    let t = std::time::Instant::now();
    gan.prepare_step(&shape);
    be.check().map_err(|e| e.to_string())?;
    // Only the step: not the set-up's initialisation kernels.
    be.emu_profile_reset();
    let stats = gan.train_step_into(&shape, |_, _| {});
    let iters = stats.critic_iters;
    drop(stats);
    be.check().map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let p = be.emu_profile().ok_or("not the emulator")?;
    println!(
        "memory profile, counted on the host emulator (not a GPU measurement): DCGAN-{size} ({channels}x{size}x{size}), WGAN-GP, width 64, batch {batch}, {precision:?}, {iters} critic iteration(s) + 1 generator iteration, eager; {} kernels, {} launches; emulated in {secs:.0} s",
        p.kernels.len(),
        p.kernels.iter().map(|k| k.launches).sum::<u64>()
    );
    println!("columns: requests = warp-level instructions; sec/rq = 32-byte sectors per request; wf/rq = shared wavefronts per request (LDS+LDSM: shared loads and ldmatrix); excess wf = wavefronts beyond the ideal for the access width (bank conflicts; for LDGSTS: of its shared destination); cp NB bytes = bytes copied by cp.async of N bytes per lane");
    print!("{}", p.kernel_table());
    if sites {
        println!("\nper access site (source line, innermost frame first):");
        print!("{}", p.site_table());
    }
    Ok(())
}
