//! Where a training step spends its time on the CPU, per backend op and operand shapes.
//!
//!   cargo run --release --example profile_step                  # default job: MNIST DCGAN-28, width 32, WGAN-GP
//!   cargo run --release --example profile_step -- dcgan28 64    # width 64
//!   cargo run --release --example profile_step -- toy
//!
//! Times `STEPS` (default 5) generator steps (5 critic iterations + 1 generator iteration each)
//! with the backend's per-op recording on, and prints one row per op and shape: calls per step,
//! ms per step, GFLOP/s (products and convolutions) and share of the step; then totals per op and
//! the time outside backend ops (tape bookkeeping, freeing tensors). The step time with recording
//! off is printed first: recording adds a clock read and a lock per op.
//! `CPU_TIME=1` runs everything on one thread (a one-thread rayon pool) and records each op's and
//! each step's thread CPU time (CLOCK_THREAD_CPUTIME_ID) instead of the wall time: on a busy
//! shared machine the least disturbed measure of where a step's work goes.
//! `AB=11` instead alternates whole steps on the generic convolution path and with the AVX2 kernel
//! passes of that mask (11, the default: forward + data gradient of small-patch layers; 7: every
//! pass and shape; see `cpu::set_avx2_conv_passes`) and prints both.

use wgan::backend::cpu::{self, profile, Cpu};
use wgan::bench_util::time_ms;
use wgan::train::run::Source;
use wgan::train::{DatasetKind, Loss, TrainOptions};

fn main() {
    if std::env::var("CPU_TIME").is_ok() {
        profile::use_thread_cpu_time(true);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        return pool.install(run);
    }
    run()
}

/// (median, min) ms of `runs` calls after `warm`: wall clock, or thread CPU time with CPU_TIME=1.
fn timed(warm: usize, runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    if std::env::var("CPU_TIME").is_err() {
        return time_ms(warm, runs, f);
    }
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = profile::thread_cpu_secs().unwrap_or(0.0);
            f();
            (profile::thread_cpu_secs().unwrap_or(0.0) - s) * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = args.first().map(String::as_str).unwrap_or("dcgan28");
    let width: Option<usize> = args.get(1).and_then(|s| s.parse().ok());
    let steps: usize = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let toy = work == "toy";
    let (dataset, size, nc, batch) = match work {
        "toy" => (DatasetKind::EightGaussians, 2, 1, 256),
        "dcgan64" => (DatasetKind::Mnist, 64, 3, 64),
        _ => (DatasetKind::Mnist, 28, 1, 64),
    };
    let cfg = TrainOptions {
        dataset: Some(dataset),
        loss: Some(Loss::WganGp),
        batch_size: Some(batch),
        image_size: if toy { None } else { Some(size) },
        channels: if toy { None } else { Some(nc) },
        width: if toy { None } else { Some(width.unwrap_or(32)) },
        lambda: Some(10.0),
        betas: Some((0.0, 0.9)),
        steps: Some(1),
        out: Some(std::env::temp_dir().join("wgan-profile")),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let be = Cpu::<f32>::new();
    let mut gan = cfg.build(be).unwrap();
    let mut src = Source::open(&cfg, 0).unwrap();
    let reals: Vec<_> = (0..6).map(|_| src.next(&be, batch)).collect();
    let mut k = 0;
    let mut step = || {
        gan.train_step(|| {
            k += 1;
            reals[k % reals.len()].clone()
        });
    };
    if let Some(mask) = std::env::var("AB").ok().and_then(|s| s.parse::<u8>().ok()) {
        // Whole steps on the generic conv path and with AVX2 kernel passes `mask`, alternately.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        step();
        for _ in 0..steps {
            cpu::set_avx2_conv_passes(0);
            a.push(timed(0, 1, &mut step).0);
            cpu::set_avx2_conv_passes(mask);
            b.push(timed(0, 1, &mut step).0);
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "{work} AB, {steps} steps each, alternating: gemm median {:.1} min {:.1} ms | avx2 passes {mask} median {:.1} min {:.1} ms | median ratio {:.2}x, min ratio {:.2}x | loadavg {}",
            a[steps / 2],
            a[0],
            b[steps / 2],
            b[0],
            a[steps / 2] / b[steps / 2],
            a[0] / b[0],
            load.trim()
        );
        return;
    }
    let (med, min) = timed(1, steps, &mut step);
    println!(
        "{work} width {} batch {batch} WGAN-GP, {} rayon threads, conv {}: {med:.1} ms/step median, {min:.1} min of {steps} (recording off){}; loadavg {}",
        cfg.width,
        rayon::current_num_threads(),
        cpu::conv_path(),
        if std::env::var("CPU_TIME").is_ok() { ", thread CPU time" } else { "" },
        load_avg()
    );
    profile::take();
    profile::enable(true);
    let clock = if std::env::var("CPU_TIME").is_ok() { " (thread CPU time)" } else { "" };
    let wall = timed(0, steps, &mut step).0;
    profile::enable(false);
    let mut recs = profile::take();
    recs.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let per = |s: f64| s * 1e3 / steps as f64;
    println!("recording on: {wall:.1} ms/step median{clock}; loadavg {}\n", load_avg());
    println!("{:<20} {:<46} {:>6} {:>9} {:>8} {:>7}", "op", "shapes", "calls", "ms/step", "GFLOP/s", "share");
    for r in &recs {
        let gf = if r.flops > 0.0 { format!("{:.1}", r.flops / r.secs / 1e9) } else { "-".into() };
        println!(
            "{:<20} {:<46} {:>6} {:>9.2} {:>8} {:>6.1}%",
            r.op,
            r.shapes,
            r.calls / steps as u64,
            per(r.secs),
            gf,
            100.0 * per(r.secs) / wall
        );
    }
    let mut ops: Vec<(&str, f64, f64)> = Vec::new();
    for r in &recs {
        match ops.iter_mut().find(|o| o.0 == r.op) {
            Some(o) => {
                o.1 += r.secs;
                o.2 += r.flops;
            }
            None => ops.push((r.op, r.secs, r.flops)),
        }
    }
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("\nper op:");
    for (op, s, f) in &ops {
        let gf = if *f > 0.0 { format!("{:.1} GFLOP/s", f / s / 1e9) } else { String::new() };
        println!("{op:<20} {:>9.2} ms/step {:>6.1}%  {gf}", per(*s), 100.0 * per(*s) / wall);
    }
    let heavy: f64 = recs.iter().filter(|r| r.flops > 0.0).map(|r| r.secs).sum();
    let all: f64 = recs.iter().map(|r| r.secs).sum();
    let flops: f64 = recs.iter().map(|r| r.flops).sum();
    println!(
        "\nGEMM + conv: {:.1} ms/step ({:.1}%, {:.1} GFLOP/s over {:.2} GFLOP); other ops: {:.1} ms/step ({:.1}%); \
         outside backend ops: {:.1} ms/step ({:.1}%)",
        per(heavy),
        100.0 * per(heavy) / wall,
        flops / heavy / 1e9,
        flops / steps as f64 / 1e9,
        per(all - heavy),
        100.0 * per(all - heavy) / wall,
        wall - per(all),
        100.0 * (wall - per(all)) / wall
    );
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}
