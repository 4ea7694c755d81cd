//! Training-step benchmark: milliseconds per generator step (n_critic = 5 critic iterations + 1
//! generator iteration) for the toy MLPs at batch 256 and the DCGANs at batch 64, WGAN-GP and WGAN,
//! on the CPU and (when one works) the GPU. Prints each step's FLOPs and the floor they imply at
//! the peak measured in the same run, and — when `WGAN_TORCH_JSON` names the output of
//! `benches/reference/wgan_torch.py --json` from the same machine — PyTorch's time and the ratio.
//! Writes `bench-results/<date>-<device>.json`.
//!
//!   cargo bench --bench train_step                # all CPU cases that finish in minutes
//!   cargo bench --bench train_step -- toy         # only cases whose name contains "toy"
//!   WGAN_BENCH_STEPS=20 cargo bench --bench train_step
//!   WGAN_BENCH_SKIP_CPU=1 cargo bench --bench train_step   # the GPU cases only

use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::Cuda;
use wgan::backend::Backend;
use wgan::bench_util::time_ms;
use wgan::flops::step_flops;
use wgan::train::run::Source;
use wgan::train::{DatasetKind, Loss, TrainConfig, TrainOptions};

struct Case {
    name: String,
    cfg: TrainConfig,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    // dcgan28w32: the default job (`wgan train`: MNIST, width 32); the others at width 64.
    for (work, dataset, size, channels, batch, width) in [
        ("toy", DatasetKind::EightGaussians, 2, 1, 256, 64),
        ("dcgan28w32", DatasetKind::Mnist, 28, 1, 64, 32),
        ("dcgan28", DatasetKind::Mnist, 28, 1, 64, 64),
        ("dcgan64", DatasetKind::Mnist, 64, 3, 64, 64),
    ] {
        for loss in [Loss::WganGp, Loss::Wgan] {
            let toy = dataset.is_toy();
            let cfg = TrainOptions {
                dataset: Some(dataset),
                loss: Some(loss),
                batch_size: Some(batch),
                image_size: if toy { None } else { Some(size) },
                channels: if toy { None } else { Some(channels) },
                width: if toy { None } else { Some(width) },
                // The reference script's toy benchmark uses the paper's defaults (λ 10, betas (0, 0.9)).
                lambda: Some(10.0),
                betas: Some((0.0, 0.9)),
                steps: Some(1),
                out: Some(std::env::temp_dir().join("wgan-bench")),
                ..Default::default()
            }
            .resolve()
            .expect("bench configuration");
            let l = if loss == Loss::WganGp { "wgan-gp" } else { "wgan" };
            v.push(Case { name: format!("step/{work}/{l}/b{batch}"), cfg });
        }
    }
    v
}

/// A measured peak: FLOP/s of a large f32 matrix product on this backend.
fn peak_flops<B: Backend>(be: &B) -> f64 {
    let n = 1024;
    let a = be.randn(&[n, n], 1, 1);
    let b = be.randn(&[n, n], 1, 2);
    let (ms, _) = time_ms(2, 5, || {
        let c = be.matmul(&a, &b, false, false);
        be.synchronize();
        drop(c);
    });
    2.0 * (n * n * n) as f64 / (ms * 1e-3)
}

fn torch_times() -> Vec<serde_json::Value> {
    let Ok(path) = std::env::var("WGAN_TORCH_JSON") else { return vec![] };
    // A missing or broken file leaves the torch column empty rather than losing our own numbers.
    let parsed = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
    let v = match parsed {
        Ok(v) => v,
        Err(e) => {
            println!("WGAN_TORCH_JSON={path}: {e}; no torch column");
            return vec![];
        }
    };
    match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => o.get("records").and_then(|r| r.as_array()).cloned().unwrap_or_default(),
        _ => vec![],
    }
}

/// Runs every selected case on `be`. `ceiling`: the device's arithmetic ceiling in FLOP/s, when
/// one was measured (the GPU's f32 FMA rate); else the floor uses this backend's own 1024³ matmul
/// rate (the CPU, where the GEMM library is at the machine's practical peak).
fn run_cases<B: Backend>(
    be: B,
    device: &str,
    ceiling: Option<f64>,
    filter: &[String],
    records: &mut Vec<serde_json::Value>,
) {
    let steps: usize = std::env::var("WGAN_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let matmul = peak_flops(&be);
    println!("\n{device}: measured f32 matmul rate {:.1} GFLOP/s (1024³)", matmul / 1e9);
    let peak = match ceiling {
        Some(c) => {
            println!("{device}: measured f32 FMA ceiling {:.1} GFLOP/s; floors are FLOPs at that rate", c / 1e9);
            c
        }
        None => matmul,
    };
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>16}",
        "case", "ms/step", "min ms", "GFLOP", "floor ms", "torch ms", "ratio", "best torch"
    );
    let torch = torch_times();
    let is_cpu = device == "cpu";
    for c in cases() {
        if !filter.is_empty() && !filter.iter().any(|f| c.name.contains(f.as_str())) {
            continue;
        }
        // DCGAN-64 on a 2-core CPU takes minutes per step: run it only when asked for by name.
        if is_cpu && c.name.contains("dcgan64") && !filter.iter().any(|f| f.contains("dcgan64")) {
            continue;
        }
        let mut gan = c.cfg.build(be.clone()).expect("build");
        let mut source = Source::open(&c.cfg, 0).expect("data");
        let batch = c.cfg.batch_size;
        let reals: Vec<B::Tensor> = (0..8).map(|_| source.next(&be, batch)).collect();
        let mut k = 0;
        let (runs, warm) = if is_cpu && !c.name.contains("toy") { (steps.min(3), 1) } else { (steps, 2) };
        let (med, min) = time_ms(warm, runs, || {
            let s = gan.train_step(|| {
                k += 1;
                reals[k % reals.len()].clone()
            });
            let _ = s.read(&be); // the step's one host synchronisation (logging)
        });
        // Launches per step (devices that count them): one more, steady-state step.
        let per_step = be.device_counts().and_then(|before| {
            let _ = gan
                .train_step(|| {
                    k += 1;
                    reals[k % reals.len()].clone()
                })
                .read(&be);
            be.device_counts().map(|after| after.since(&before))
        });
        if let Some(p) = &per_step {
            println!(
                "{:<28} host submissions/step {} ({} kernel launches, {} graph launches, {} copies), kernels run {}, allocations {}",
                c.name,
                p.host_submissions(),
                p.launches,
                p.graph_launches,
                p.copies,
                p.launches + p.replayed_kernels,
                p.allocs
            );
        }
        let (g, d) = c.cfg.networks().unwrap();
        let flops = step_flops(&g, &d, batch, c.cfg.n_critic, c.cfg.loss == Loss::WganGp);
        let floor = flops / peak * 1e3;
        let t = torch.iter().find(|r| {
            r["case"] == c.name.as_str()
                && r["mode"].as_str().unwrap_or("eager") == "eager"
                && (r["device"].as_str().unwrap_or("") == "cpu") == is_cpu
        });
        let torch_ms = t.and_then(|r| r["torch_ms"].as_f64());
        let ratio = torch_ms.map(|tm| tm / med);
        // PyTorch's fastest configuration of this case (eager, tuned or graph), beside its default.
        let best = torch
            .iter()
            .filter(|r| r["case"] == c.name.as_str() && (r["device"].as_str().unwrap_or("") == "cpu") == is_cpu)
            .filter_map(|r| Some((r["torch_ms"].as_f64()?, r["mode"].as_str().unwrap_or("eager").to_string())))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10} {:>8} {:>16}",
            c.name,
            med,
            min,
            flops / 1e9,
            floor,
            torch_ms.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            ratio.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into()),
            best.as_ref().map(|(ms, m)| format!("{:.2}x ({m})", ms / med)).unwrap_or_else(|| "-".into())
        );
        records.push(serde_json::json!({
            "case": c.name, "device": device, "ours_ms": med, "ours_min_ms": min, "torch_ms": torch_ms,
            "ratio": ratio, "flops": flops, "floor_ms": floor, "peak_gflops": peak / 1e9,
            "matmul_gflops": matmul / 1e9,
            "cpu_conv": if is_cpu { Some(wgan::backend::cpu::conv_path()) } else { None },
            "loadavg": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
            "torch_best_ms": best.as_ref().map(|b| b.0), "torch_best_mode": best.as_ref().map(|b| b.1.clone()),
            "ratio_best": best.as_ref().map(|b| b.0 / med),
            "host_submissions_per_step": per_step.map(|p| p.host_submissions()),
            "graph_launches_per_step": per_step.map(|p| p.graph_launches),
            "kernels_per_step": per_step.map(|p| p.launches + p.replayed_kernels),
            "allocs_per_step": per_step.map(|p| p.allocs),
        }));
    }
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut records = Vec::new();
    let cpu = Cpu::<f32>::new();
    let cpu_name = cpu.name();
    println!("cpu convolutions (f32): {}", wgan::backend::cpu::conv_path());
    if std::env::var("WGAN_BENCH_SKIP_CPU").is_ok_and(|v| v == "1") {
        println!("cpu: skipped (WGAN_BENCH_SKIP_CPU=1)");
    } else {
        run_cases(cpu, "cpu", None, &filter, &mut records);
    }
    let mut device = if cpu_name.starts_with("cpu") { "cpu".to_string() } else { cpu_name };
    match Cuda::new(0) {
        Ok(gpu) => {
            // Matrix products and convolutions at WGAN_BENCH_PRECISION (f32, tf32, bf16; default
            // tf32, the CUDA default and what PyTorch's convolutions use).
            let prec: wgan::backend::Precision = match std::env::var("WGAN_BENCH_PRECISION") {
                Ok(s) if !s.is_empty() => s.parse().unwrap_or_else(|e| panic!("WGAN_BENCH_PRECISION: {e}")),
                _ => Default::default(),
            };
            gpu.set_precision(prec);
            println!("\n{}: matrix products and convolutions at {prec} (WGAN_BENCH_PRECISION)", gpu.name());
            // The precision is part of the device's name: records (and the day's JSON file) of each
            // precision stay apart.
            device = format!("{} {prec}", gpu.name());
            let name = device.clone();
            let ceiling = match gpu.fma_peak_tflops() {
                Ok(t) => Some(t * 1e12),
                Err(e) => {
                    println!("{name}: FMA ceiling not measured ({e}); floors use the matmul rate");
                    None
                }
            };
            run_cases(gpu, &name, ceiling, &filter, &mut records);
        }
        Err(e) => println!("\nno GPU benchmark: {e}"),
    }
    let commit = wgan::bench_util::commit();
    for r in &mut records {
        r["commit"] = commit.clone().into();
    }
    if records.is_empty() {
        println!("\nno case ran: nothing written");
        return;
    }
    let date = wgan::bench_util::today();
    let slug: String =
        device.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let dir = std::path::Path::new("bench-results");
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{date}-{}.json", slug.trim_matches('-')));
    // Merge into the day's file: a record of the same case and device is replaced, others kept,
    // so runs of different workloads on one day share one file.
    let key = |r: &serde_json::Value| (r["case"].to_string(), r["device"].to_string());
    let mut merged: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .unwrap_or_default();
    merged.retain(|old| !records.iter().any(|r| key(r) == key(old)));
    let n = records.len();
    merged.extend(records);
    let text = serde_json::to_string_pretty(&merged).unwrap();
    match wgan::fsutil::atomic_write(&path, text.as_bytes()) {
        Ok(()) => println!("\nwrote {n} records to {} ({} in the file)", path.display(), merged.len()),
        Err(e) => println!("\ncould not write results: {e}"),
    }
}
