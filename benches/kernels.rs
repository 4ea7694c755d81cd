//! Kernel benchmarks, llm.c-style: every case first checks the CUDA kernel against the CPU
//! reference on the same random inputs, then times it with CUDA events (warm-up, median of 20
//! runs, L2 flushed before each) and prints time, TFLOP/s or GB/s, and the percentage of the
//! ceiling measured in the same run (f32 FMA rate from `kernels/peak.cu` for the f32 kernels, the
//! TF32 / BF16 `mma.sync` rates from `kernels/gemm_tc.cu` for the tensor-core ones; device-to-device copy
//! bandwidth). Cases: conv forward, data gradient and weight gradient at every layer of the
//! DCGAN-64 critic and generator at batch 64 and of the 28/32 MNIST models, the toy MLP GEMMs at
//! batch 256 (each at f32, then `/tf32` and `/bf16` on tensor cores), and the fused penalty,
//! interpolate, critic input, optimizer and clamp kernels.
//! Writes `bench-results/<date>-<device>-kernels.json`.
//!
//!   cargo bench --bench kernels              # needs a CUDA GPU; says so and exits 0 without one
//!   cargo bench --bench kernels -- conv/fprop
//!   WGAN_BENCH_EMULATED=1 WGAN_BENCH_BATCH=2 cargo bench --bench kernels   # dry run: every case's
//!       validation on the host emulator (no timing), to check the harness without a GPU

use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::{Cuda, GemmTiles};
use wgan::backend::Precision;
use wgan::backend::{AdamStep, Backend, ConvParams, Group, PenaltyKind, RmsPropStep};
use wgan::nn::arch::{dcgan_critic, dcgan_generator, CriticNorm};
use wgan::nn::{Layer, Net};

/// A convolution problem: conv2d of x [n, ci, h, w] with w [co, ci, k, k].
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    n: usize,
    ci: usize,
    h: usize,
    co: usize,
    k: usize,
    p: ConvParams,
}

impl ConvCase {
    fn out(&self) -> usize {
        self.p.out_size(self.h, self.k)
    }
    fn flops(&self) -> f64 {
        2.0 * (self.n * self.co * self.ci * self.k * self.k * self.out() * self.out()) as f64
    }
}

/// The conv problems of a network's layers; a transposed convolution is the data gradient of the
/// convolution it inverts, so it appears as that convolution.
fn conv_cases(net: &Net, batch: usize) -> Vec<(String, ConvCase)> {
    let mut shape = net.input.clone();
    let mut v = Vec::new();
    for (i, l) in net.layers.iter().enumerate() {
        match *l {
            Layer::Conv { cin, cout, k, p } => {
                v.push((format!("l{i}"), ConvCase { n: batch, ci: cin, h: shape[1], co: cout, k, p }));
                let o = p.out_size(shape[1], k);
                shape = vec![cout, o, o];
            }
            Layer::ConvT { cin, cout, k, p } => {
                let o = p.transposed_out_size(shape[1], k);
                v.push((format!("l{i}T"), ConvCase { n: batch, ci: cout, h: o, co: cin, k, p }));
                shape = vec![cout, o, o];
            }
            _ => {}
        }
    }
    v
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    (0..n).map(|i| wgan::rng::normal(seed, 77, i as u64) as f32).collect()
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs() as f64));
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max) / scale
}

struct Bench {
    gpu: Cuda,
    cpu: Cpu<f32>,
    peak_tflops: f64,
    /// Measured tensor-core ceilings at TF32 and BF16 (NaN on the emulator).
    tc_peak_tflops: [f64; 2],
    /// The precision the current cases run at (their ceiling: FMA for f32, tensor cores otherwise).
    prec: Precision,
    bw_gbs: f64,
    filter: Vec<String>,
    records: Vec<serde_json::Value>,
    failures: usize,
    /// A dry run on the host emulator: validate every case, time none.
    emulated: bool,
}

enum Work {
    Flops(f64),
    Bytes(f64),
}

impl Bench {
    fn ceiling(&self) -> f64 {
        match self.prec {
            Precision::F32 => self.peak_tflops,
            Precision::Tf32 => self.tc_peak_tflops[0],
            Precision::Bf16 => self.tc_peak_tflops[1],
        }
    }

    /// Validation tolerance of a product with `k`-term sums at the current precision, relative to
    /// the output's largest magnitude: 1e-4 at f32; at TF32/BF16 the operand rounding bound 2u per
    /// term, over a random sum whose Σ|a·b| is about √k times the largest output.
    fn tol(&self, k: usize) -> f64 {
        match self.prec {
            Precision::F32 => 1e-4,
            p => 2.0 * p.unit_roundoff() * (k as f64).sqrt() + 1e-4,
        }
    }

    fn wanted(&self, name: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| name.contains(f.as_str()))
    }

    /// Validates (`gpu_out` vs `cpu_out`, relative tolerance `tol`), then times `run`.
    fn case(&mut self, name: &str, gpu_out: Vec<f32>, cpu_out: Vec<f32>, tol: f64, work: Work, run: impl FnMut()) {
        let err = rel_err(&gpu_out, &cpu_out);
        let ok = err <= tol && gpu_out.iter().all(|v| v.is_finite());
        if !ok {
            self.failures += 1;
            println!("{name:<40} FAILED validation: relative error {err:.2e} > {tol:.0e}");
            return;
        }
        if self.emulated {
            println!("{name:<40} validated on the host emulator (err {err:.1e}); not timed");
            return;
        }
        let (ms, min) = match self.gpu.time_events(3, 20, true, run) {
            Ok(t) => t,
            Err(e) => {
                self.failures += 1;
                println!("{name:<40} FAILED: {e}");
                return;
            }
        };
        let (rate, unit, pct) = match work {
            Work::Flops(f) => (f / (ms * 1e-3) / 1e12, "TFLOP/s", f / (ms * 1e-3) / 1e12 / self.ceiling() * 100.0),
            Work::Bytes(b) => (b / (ms * 1e-3) / 1e9, "GB/s", b / (ms * 1e-3) / 1e9 / self.bw_gbs * 100.0),
        };
        println!("{name:<40} {ms:>9.4} ms {rate:>9.2} {unit:<8} {pct:>6.1}% of ceiling   (err {err:.1e})");
        self.records.push(serde_json::json!({
            "case": name, "device": self.gpu.name(), "ours_ms": ms, "ours_min_ms": min, "rate": rate, "unit": unit,
            "percent_of_ceiling": pct, "rel_err": err,
        }));
    }

    /// Every conv pass at `c`; a pass with at most 16 output rows (which runs on the 16×256 tile) is
    /// also timed on the 64×64 tile, as `<name>/square-tile`, to show what the narrow tile gains.
    /// Then every pass again on tensor cores at TF32 and BF16 (`<name>/tf32`, `<name>/bf16`).
    fn conv(&mut self, label: &str, c: ConvCase) {
        self.set_prec(Precision::F32);
        self.conv_passes(label, c, "", [true; 3]);
        let small = [c.co <= 16, c.ci <= 16, c.co <= 16];
        if small.iter().any(|&s| s) {
            self.gpu.set_gemm_tiles(GemmTiles::Square);
            self.conv_passes(label, c, "/square-tile", small);
            self.gpu.set_gemm_tiles(GemmTiles::Auto);
        }
        for p in [Precision::Tf32, Precision::Bf16] {
            self.set_prec(p);
            self.conv_passes(label, c, &format!("/{p}"), [true; 3]);
        }
        self.set_prec(Precision::F32);
    }

    fn set_prec(&mut self, p: Precision) {
        self.prec = p;
        self.gpu.set_precision(p);
    }

    /// conv/fprop, conv/dgrad and conv/wgrad at `c`, those of `which` that are set.
    fn conv_passes(&mut self, label: &str, c: ConvCase, suffix: &str, which: [bool; 3]) {
        let (g, cp) = (&self.gpu.clone(), &self.cpu.clone());
        let (o, h) = (c.out(), c.h);
        let xs = [c.n, c.ci, h, h];
        let ws = [c.co, c.ci, c.k, c.k];
        let ys = [c.n, c.co, o, o];
        let (x, w, gy) =
            (random(xs.iter().product(), 1), random(ws.iter().product(), 2), random(ys.iter().product(), 3));
        let (gx, gw, ggy) = (g.from_f32(&x, &xs), g.from_f32(&w, &ws), g.from_f32(&gy, &ys));
        let (cx, cw, cgy) = (cp.from_f32(&x, &xs), cp.from_f32(&w, &ws), cp.from_f32(&gy, &ys));
        let f = c.flops();
        let name = format!("conv/fprop/{label}{suffix}");
        if which[0] && self.wanted(&name) {
            let (a, b) = (g.to_f32(&g.conv2d(&gx, &gw, c.p)), cp.to_f32(&cp.conv2d(&cx, &cw, c.p)));
            let gg = g.clone();
            let tol = self.tol(c.ci * c.k * c.k);
            self.case(&name, a, b, tol, Work::Flops(f), || drop(gg.conv2d(&gx, &gw, c.p)));
        }
        let name = format!("conv/dgrad/{label}{suffix}");
        if which[1] && self.wanted(&name) {
            let a = g.to_f32(&g.conv2d_data_grad(&ggy, &gw, c.p, (h, h)));
            let b = cp.to_f32(&cp.conv2d_data_grad(&cgy, &cw, c.p, (h, h)));
            let gg = g.clone();
            let tol = self.tol(c.co * c.k * c.k);
            self.case(&name, a, b, tol, Work::Flops(f), || drop(gg.conv2d_data_grad(&ggy, &gw, c.p, (h, h))));
        }
        let name = format!("conv/wgrad/{label}{suffix}");
        if which[2] && self.wanted(&name) {
            let a = g.to_f32(&g.conv2d_weight_grad(&gx, &ggy, c.p, c.k));
            let b = cp.to_f32(&cp.conv2d_weight_grad(&cx, &cgy, c.p, c.k));
            let gg = g.clone();
            let tol = self.tol(c.n * o * o);
            self.case(&name, a, b, tol, Work::Flops(f), || drop(gg.conv2d_weight_grad(&gx, &ggy, c.p, c.k)));
        }
    }

    /// The matmul at f32, then on tensor cores at TF32 and BF16 (`<name>/tf32`, `<name>/bf16`).
    fn gemm(&mut self, name: &str, mnk: (usize, usize, usize), ta: bool, tb: bool) {
        for p in Precision::ALL {
            self.set_prec(p);
            let n = if p == Precision::F32 { name.to_string() } else { format!("{name}/{p}") };
            self.gemm_at(&n, mnk, ta, tb);
        }
        self.set_prec(Precision::F32);
    }

    fn gemm_at(&mut self, name: &str, (m, k, n): (usize, usize, usize), ta: bool, tb: bool) {
        if !self.wanted(name) {
            return;
        }
        let (g, cp) = (self.gpu.clone(), self.cpu.clone());
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let (a, b) = (random(m * k, 4), random(k * n, 5));
        let (ga, gb) = (g.from_f32(&a, &sa), g.from_f32(&b, &sb));
        let out = g.to_f32(&g.matmul(&ga, &gb, ta, tb));
        let want = cp.to_f32(&cp.matmul(&cp.from_f32(&a, &sa), &cp.from_f32(&b, &sb), ta, tb));
        let tol = self.tol(k);
        self.case(name, out, want, tol, Work::Flops(2.0 * (m * k * n) as f64), || drop(g.matmul(&ga, &gb, ta, tb)));
    }

    fn memory_bound(&mut self) {
        let (g, cp) = (self.gpu.clone(), self.cpu.clone());
        // The DCGAN-64 critic's parameters (width 64), as one flat buffer.
        let np = dcgan_critic(64, 3, 64, CriticNorm::Layer).unwrap().num_params();
        let (p0, gr, m0, v0) =
            (random(np, 6), random(np, 7), random(np, 8), random(np, 9).iter().map(|v| v * v).collect::<Vec<_>>());
        let adam = AdamStep { lr: 1e-4, beta1: 0.0, beta2: 0.9, eps: 1e-8, t: 3 };
        if self.wanted("optim/adam") {
            let run_once = |be_p: Vec<f32>| -> (Vec<f32>, Vec<f32>) {
                let (p, gg, m, v) =
                    (g.from_f32(&be_p, &[np]), g.from_f32(&gr, &[np]), g.from_f32(&m0, &[np]), g.from_f32(&v0, &[np]));
                g.adam_inplace(&p, &gg, &m, &v, adam);
                let (cpp, cg, cm, cv) = (
                    cp.from_f32(&be_p, &[np]),
                    cp.from_f32(&gr, &[np]),
                    cp.from_f32(&m0, &[np]),
                    cp.from_f32(&v0, &[np]),
                );
                cp.adam_inplace(&cpp, &cg, &cm, &cv, adam);
                (g.to_f32(&p), cp.to_f32(&cpp))
            };
            let (a, b) = run_once(p0.clone());
            let (p, gg, m, v) =
                (g.from_f32(&p0, &[np]), g.from_f32(&gr, &[np]), g.from_f32(&m0, &[np]), g.from_f32(&v0, &[np]));
            self.case(&format!("optim/adam/n{np}"), a, b, 1e-5, Work::Bytes(7.0 * 4.0 * np as f64), || {
                g.adam_inplace(&p, &gg, &m, &v, adam)
            });
        }
        let rms = RmsPropStep { lr: 5e-5, alpha: 0.99, eps: 1e-8, clip: Some(0.01) };
        if self.wanted("optim/rmsprop") {
            let (p, gg, v) = (g.from_f32(&p0, &[np]), g.from_f32(&gr, &[np]), g.from_f32(&v0, &[np]));
            g.rmsprop_inplace(&p, &gg, &v, rms);
            let (cpp, cg, cv) = (cp.from_f32(&p0, &[np]), cp.from_f32(&gr, &[np]), cp.from_f32(&v0, &[np]));
            cp.rmsprop_inplace(&cpp, &cg, &cv, rms);
            let (a, b) = (g.to_f32(&p), cp.to_f32(&cpp));
            self.case(&format!("optim/rmsprop-clip/n{np}"), a, b, 1e-5, Work::Bytes(5.0 * 4.0 * np as f64), || {
                g.rmsprop_inplace(&p, &gg, &v, rms)
            });
        }
        if self.wanted("optim/clamp") {
            let p = g.from_f32(&p0, &[np]);
            g.clamp_inplace(&p, 0.01);
            let cpp = cp.from_f32(&p0, &[np]);
            cp.clamp_inplace(&cpp, 0.01);
            let (a, b) = (g.to_f32(&p), cp.to_f32(&cpp));
            self.case(&format!("optim/clamp/n{np}"), a, b, 0.0, Work::Bytes(2.0 * 4.0 * np as f64), || {
                g.clamp_inplace(&p, 0.01)
            });
        }
        // x̂ and the penalty at the DCGAN-64 input size, batch 64.
        let shape = [64, 3, 64, 64];
        let n: usize = shape.iter().product();
        let (x, xt, e) = (random(n, 10), random(n, 11), (0..64).map(|i| (i as f32 + 0.5) / 64.0).collect::<Vec<_>>());
        if self.wanted("penalty/interpolate") {
            let (gx, gxt, ge) = (g.from_f32(&x, &shape), g.from_f32(&xt, &shape), g.from_f32(&e, &[64]));
            let a = g.to_f32(&g.interpolate(&gx, &gxt, &ge));
            let b = cp.to_f32(&cp.interpolate(
                &cp.from_f32(&x, &shape),
                &cp.from_f32(&xt, &shape),
                &cp.from_f32(&e, &[64]),
            ));
            self.case("penalty/interpolate/b64x3x64x64", a, b, 1e-6, Work::Bytes(3.0 * 4.0 * n as f64), || {
                drop(g.interpolate(&gx, &gxt, &ge))
            });
        }
        if self.wanted("penalty/critic_input") {
            // [real; fake; x̂] in one pass: reads 2 and writes 3 tensors of the batch's size.
            let (gx, gxt, ge) = (g.from_f32(&x, &shape), g.from_f32(&xt, &shape), g.from_f32(&e, &[64]));
            let a = g.to_f32(&g.critic_input(&gx, &gxt, Some(&ge)));
            let b = cp.to_f32(&cp.critic_input(
                &cp.from_f32(&x, &shape),
                &cp.from_f32(&xt, &shape),
                Some(&cp.from_f32(&e, &[64])),
            ));
            self.case("penalty/critic_input/b64x3x64x64", a, b, 1e-6, Work::Bytes(5.0 * 4.0 * n as f64), || {
                drop(g.critic_input(&gx, &gxt, Some(&ge)))
            });
        }
        for (kind, label) in [(PenaltyKind::TwoSided, "two-sided"), (PenaltyKind::OneSided, "one-sided")] {
            let name = format!("penalty/{label}/b64x3x64x64");
            if !self.wanted(&name) {
                continue;
            }
            let scaled: Vec<f32> = x.iter().map(|v| v * 0.02).collect(); // norms near 1
            let gg = g.from_f32(&scaled, &shape);
            let (gp, gd) = g.penalty(&gg, kind, 1e-12);
            let (cpp, cd) = cp.penalty(&cp.from_f32(&scaled, &shape), kind, 1e-12);
            let mut a = g.to_f32(&gd);
            a.extend(g.to_f32(&gp));
            let mut b = cp.to_f32(&cd);
            b.extend(cp.to_f32(&cpp));
            self.case(&name, a, b, 1e-5, Work::Bytes(2.0 * 4.0 * n as f64), || drop(g.penalty(&gg, kind, 1e-12)));
        }
        let _ = Group::All;
    }
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let emulated = std::env::var("WGAN_BENCH_EMULATED").is_ok_and(|v| v == "1");
    let batch: usize = std::env::var("WGAN_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let opened = if emulated { Cuda::emulated() } else { Cuda::new(0) };
    let gpu = match opened {
        Ok(g) => g,
        Err(e) => {
            println!("kernel benchmarks need a CUDA GPU: {e}");
            return;
        }
    };
    let tc_peak_tflops = if emulated {
        [f64::NAN; 2]
    } else {
        match (gpu.mma_peak_tflops(Precision::Tf32), gpu.mma_peak_tflops(Precision::Bf16)) {
            (Ok(t), Ok(b)) => [t, b],
            (Err(e), _) | (_, Err(e)) => {
                println!("{}: measuring the tensor-core ceilings failed: {e}", gpu.name());
                std::process::exit(1);
            }
        }
    };
    let (peak_tflops, bw_gbs) = if emulated {
        println!("{}: dry run, batch {batch}: validation only", gpu.name());
        (f64::NAN, f64::NAN)
    } else {
        let ceilings = gpu.fma_peak_tflops().and_then(|p| Ok((p, gpu.copy_bandwidth_gbs()?)));
        match ceilings {
            Ok(c) => c,
            Err(e) => {
                println!("{}: measuring the ceilings failed: {e}", gpu.name());
                std::process::exit(1);
            }
        }
    };
    if !emulated {
        println!(
            "{}: f32 FMA ceiling {peak_tflops:.1} TFLOP/s, tensor cores {:.1} TFLOP/s TF32, {:.1} BF16, \
             device-to-device copy {bw_gbs:.0} GB/s (measured now)",
            gpu.name(),
            tc_peak_tflops[0],
            tc_peak_tflops[1]
        );
    }
    gpu.set_precision(Precision::F32);
    let mut b = Bench {
        gpu,
        cpu: Cpu::new(),
        peak_tflops,
        tc_peak_tflops,
        prec: Precision::F32,
        bw_gbs,
        filter,
        records: vec![],
        failures: 0,
        emulated,
    };
    let nets: Vec<(String, Net)> = vec![
        ("critic64".into(), dcgan_critic(64, 3, 64, CriticNorm::Layer).unwrap()),
        ("gen64".into(), dcgan_generator(64, 3, 64, 100).unwrap()),
        ("critic32".into(), dcgan_critic(32, 3, 64, CriticNorm::Layer).unwrap()),
        ("gen32".into(), dcgan_generator(32, 3, 64, 100).unwrap()),
        ("critic28".into(), dcgan_critic(28, 1, 64, CriticNorm::Layer).unwrap()),
        ("gen28".into(), dcgan_generator(28, 1, 64, 100).unwrap()),
    ];
    for (net_name, net) in &nets {
        for (layer, c) in conv_cases(net, batch) {
            b.conv(&format!("{net_name}.{layer}/b{batch}"), c);
        }
    }
    // Toy MLP at batch 256: forward x·Wᵀ, data gradient g·W, weight gradient gᵀ·x.
    b.gemm("gemm/fprop/toy512/b256", (256, 512, 512), false, true);
    b.gemm("gemm/dgrad/toy512/b256", (256, 512, 512), false, false);
    b.gemm("gemm/wgrad/toy512/b256", (512, 256, 512), true, false);
    b.memory_bound();
    if emulated {
        println!("dry run: {} case(s) failed validation", b.failures);
        std::process::exit(i32::from(b.failures > 0));
    }
    let commit = wgan::bench_util::commit();
    for r in &mut b.records {
        r["commit"] = commit.clone().into();
    }
    let device = b.gpu.name();
    let slug: String =
        device.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let path = std::path::Path::new("bench-results").join(format!(
        "{}-{}-kernels.json",
        wgan::bench_util::today(),
        slug.trim_matches('-')
    ));
    let _ = std::fs::create_dir_all("bench-results");
    if let Err(e) = wgan::fsutil::atomic_write(&path, serde_json::to_string_pretty(&b.records).unwrap().as_bytes()) {
        println!("could not write {}: {e}", path.display());
    } else {
        println!("wrote {}", path.display());
    }
    if b.failures > 0 {
        println!("{} case(s) FAILED", b.failures);
        std::process::exit(1);
    }
}
