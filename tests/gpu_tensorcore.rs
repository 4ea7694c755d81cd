//! The tensor-core path (`kernels/mma.cuh`, `gemm_tc.cuh`, `gemm_tc.cu`, `conv_tc.cu`,
//! `src/backend/cuda/ops/tc.rs`) at TF32 and BF16, on the emulator in every CI run and on a GPU when
//! there is one (ignored otherwise; see tests/cuda_devices).
//!
//! 1. The instructions: one warp's `mma.sync` against a CPU product of non-symmetric matrices with
//!    distinct entries (exact: integer entries), so any misplaced fragment element fails; random
//!    entries against the product of the rounded operands; the operand roundings bit for bit
//!    against independent implementations of cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32 (ties,
//!    negative ties, carries into the exponent, overflow, subnormals); ldmatrix .x4 with and
//!    without .trans.
//! 2. Every matmul and convolution pass against two CPU references, output poisoned first, odd
//!    shapes, both tiles, split-K, stride phases, the 1×1 first layer:
//!    - tight: the f64 CPU result on the operands rounded as the kernels round them. Only f32
//!      accumulation differs, so |gpu − ref| ≤ (K/8 + 4)·2⁻²⁴·Σ|a·b| per element: a single
//!      wrong, missing or doubled term, or a wrong rounding rule, fails.
//!    - user-facing: the f32 CPU result on the unrounded operands, within the bound that the
//!      precision's unit roundoff u (2⁻¹¹ TF32, 2⁻⁸ BF16) gives for a sum of K products:
//!      |gpu − ref| ≤ (2u + u² + 2·K·2⁻²⁴)·Σ|a·b|.

mod cuda_devices;

use std::time::{SystemTime, UNIX_EPOCH};

use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::{Cuda, GemmTiles};
use wgan::backend::{Backend, ConvParams, Precision};
use wgan::rng::HostRng;

// Independent implementations of the rounding rules: tests/cuda_devices/rounded.rs.
use cuda_devices::rounded::{bf16_ref, round_ref, tf32_ref};

const TC: [Precision; 2] = [Precision::Tf32, Precision::Bf16];

fn seed() -> u64 {
    let s = std::env::var("WGAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    eprintln!("inputs seed {s} (WGAN_TEST_SEED={s} replays)");
    s
}

fn rounding_is_bit_exact(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    let mut xs: Vec<f32> = vec![
        1.0,
        -1.0,
        0.0,
        -0.0,
        f32::MAX,
        -f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
        -3e-42,
        f32::INFINITY,
        f32::NEG_INFINITY,
        std::f32::consts::PI,
        65504.0,
        // NaNs: quiet, negative, signalling, and one whose payload lies only in the 13 bits TF32
        // drops (see below for what is checked of them).
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7FA0_0000),
        f32::from_bits(0x7F80_0001),
    ];
    // Exact ties and neighbours for both formats, both signs, and carries into the exponent.
    for base in [1.0f32, 1.5, 1.9990234, 3.0, 1e-3, 7e20, 1e-39] {
        let b = base.to_bits();
        for low in [0x1000u32, 0x0FFF, 0x1001, 0x3000, 0x8000, 0x7FFF, 0x8001, 0x18000, 0xFFFF, 0x1FFF] {
            let v = f32::from_bits((b & !0xFFFF) | low);
            xs.push(v);
            xs.push(-v);
        }
    }
    let mut rng = HostRng::new(seed(), 7);
    for _ in 0..2000 {
        xs.push(f32::from_bits((rng.uniform() * 4294967295.0) as u32));
    }
    let (tf, bf) = g.selftest_round(&xs).expect("round_selftest");
    for (i, &x) in xs.iter().enumerate() {
        if x.is_nan() {
            // Only what the PTX ISA specifies. BF16 has an IEEE layout (8-bit exponent, 7-bit
            // mantissa) and cvt.rn.bf16x2.f32 is a floating-point conversion, which turns a NaN
            // into a NaN (payload unspecified). For TF32 the ISA says nothing: "the internal
            // layout of tf32 format is implementation defined" (Alternate Floating-Point Data
            // Formats), and only cvt's .satfinite form promises "if the input value is NaN, then
            // the result is NaN"; the kernels use plain cvt.rna.tf32.f32. (Compiled for sm_86 it skips the rounding for
            // |x| ≥ Inf and clears the low 13 bits, so 0x7F800001 would come out as Inf.)
            assert!(bf[i].is_nan(), "bf16 of NaN {:#x} must be a NaN", x.to_bits());
            continue;
        }
        assert_eq!(tf[i].to_bits(), tf32_ref(x).to_bits(), "tf32 of {x:e} ({:#010x})", x.to_bits());
        assert_eq!(bf[i].to_bits(), bf16_ref(x).to_bits(), "bf16 of {x:e} ({:#010x})", x.to_bits());
    }
}

fn mma_fragment_layouts(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    let mut rng = HostRng::new(seed(), 3);
    for p in TC {
        let k = if p == Precision::Tf32 { 8 } else { 16 };
        // Distinct small integers (exact in both formats and in every partial sum), no symmetry.
        let a: Vec<f32> = (0..16 * k).map(|i| ((i * 7 + 3) % 23) as f32 - 11.0).collect();
        let b: Vec<f32> = (0..k * 8).map(|i| ((i * 5 + 1) % 19) as f32 - 9.0 + 0.5 * (i % 3) as f32).collect();
        let c: Vec<f32> = (0..128).map(|i| (i as f32) * 0.25 - 16.0).collect();
        let d = g.selftest_mma(p, &a, &b, &c).expect("mma selftest");
        for r in 0..16 {
            for n in 0..8 {
                let want: f64 =
                    c[r * 8 + n] as f64 + (0..k).map(|kk| a[r * k + kk] as f64 * b[kk * 8 + n] as f64).sum::<f64>();
                assert_eq!(d[r * 8 + n] as f64, want, "{p}: D[{r}][{n}] (fragment layout)");
            }
        }
        // Random entries: the product of the rounded operands, one rounding to f32.
        let a: Vec<f32> = (0..16 * k).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..k * 8).map(|_| rng.normal() as f32).collect();
        let c: Vec<f32> = (0..128).map(|_| rng.normal() as f32).collect();
        let d = g.selftest_mma(p, &a, &b, &c).expect("mma selftest");
        for r in 0..16 {
            for n in 0..8 {
                let terms = (0..k).map(|kk| round_ref(p, a[r * k + kk]) as f64 * round_ref(p, b[kk * 8 + n]) as f64);
                let abs: f64 = terms.clone().map(f64::abs).sum::<f64>() + (c[r * 8 + n] as f64).abs();
                let want = c[r * 8 + n] as f64 + terms.sum::<f64>();
                let diff = (d[r * 8 + n] as f64 - want).abs();
                assert!(diff <= 4.0 * 2f64.powi(-24) * abs, "{p}: D[{r}][{n}] = {} want {want}", d[r * 8 + n]);
            }
        }
    }
}

fn ldmatrix_layouts(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    // 32 rows × 8 columns of 16-bit values v(r, c) = 100·r + c, two per word, low half first.
    let v = |r: usize, c: usize| (100 * r + c) as u32;
    let m: Vec<u32> = (0..128).map(|w| v(w / 4, 2 * (w % 4)) | (v(w / 4, 2 * (w % 4) + 1) << 16)).collect();
    for trans in [false, true] {
        let got = g.selftest_ldmatrix(trans, &m).expect("ldmatrix selftest");
        for lane in 0..32 {
            for q in 0..4 {
                let (r0, c0) = (q * 8, 0);
                let (lo, hi) = if trans {
                    (v(r0 + 2 * (lane % 4), c0 + lane / 4), v(r0 + 2 * (lane % 4) + 1, c0 + lane / 4))
                } else {
                    (v(r0 + lane / 4, 2 * (lane % 4)), v(r0 + lane / 4, 2 * (lane % 4) + 1))
                };
                assert_eq!(got[lane * 4 + q], lo | (hi << 16), "trans {trans}: lane {lane} register {q}");
            }
        }
    }
}

// ---- the GEMMs against the CPU ----

struct Ctx {
    g: Cuda,
    c32: Cpu<f32>,
    c64: Cpu<f64>,
    rng: HostRng,
}

impl Ctx {
    fn data(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.normal() as f32 * s).collect()
    }
}

/// Checks `gpu` against `exact` (f64 on the rounded operands, tight) and `plain` (f32 on the raw
/// operands), with `abs` = the same op on |operands| (Σ|a·b| per element) and `k` terms.
fn check(what: &str, p: Precision, gpu: &[f32], exact: &[f64], plain: &[f32], abs: &[f64], k: usize) {
    assert_eq!(gpu.len(), exact.len(), "{what}: length");
    let e = 2f64.powi(-24);
    let u = p.unit_roundoff();
    let tight = (k as f64 / 8.0 + 4.0) * e;
    let loose = 2.0 * u + u * u + 2.0 * k as f64 * e;
    for i in 0..gpu.len() {
        let (gv, s) = (gpu[i] as f64, abs[i] + 1e-30);
        assert!(gv.is_finite(), "{what}[{i}]: {gv} (unwritten or wrong)");
        let d = (gv - exact[i]).abs();
        assert!(
            d <= tight * s,
            "{what}[{i}]: gpu {gv} vs rounded-operand reference {} (|diff| {d:.3e} > {:.3e})",
            exact[i],
            tight * s
        );
        let d = (gv - plain[i] as f64).abs();
        assert!(
            d <= loose * s,
            "{what}[{i}]: gpu {gv} vs f32 reference {} (|diff| {d:.3e} > {:.3e})",
            plain[i],
            loose * s
        );
    }
}

fn setup(on: On) -> Option<Ctx> {
    let g = cuda_devices::open(on)?;
    Some(Ctx { g, c32: Cpu::<f32>::new(), c64: Cpu::<f64>::new(), rng: HostRng::new(seed(), 11) })
}

fn rounded(p: Precision, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| round_ref(p, x)).collect()
}
fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fn matmuls_at_tf32_and_bf16(on: On) {
    let Some(mut t) = setup(on) else { return };
    // (m, k, n): 1×1, odd, tile-sized, split-K, long and thin, wide.
    let shapes = [(1, 1, 1), (3, 5, 67), (67, 129, 3), (64, 64, 64), (5, 1000, 7), (17, 33, 130), (130, 7, 257)];
    for p in TC {
        t.g.set_precision(p);
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let ash = if ta { [k, m] } else { [m, k] };
                let bsh = if tb { [n, k] } else { [k, n] };
                let (a, b) = (t.data(m * k, 1.0), t.data(k * n, 1.0));
                let gc = t.g.matmul(&t.g.from_f32(&a, &ash), &t.g.from_f32(&b, &bsh), ta, tb);
                let c64 = &t.c64;
                let f64of = |v: &[f32], s: &[usize]| c64.from_f32(v, s);
                let exact =
                    c64.to_f64(&c64.matmul(&f64of(&rounded(p, &a), &ash), &f64of(&rounded(p, &b), &bsh), ta, tb));
                let absr = c64.to_f64(&c64.matmul(&f64of(&abs(&a), &ash), &f64of(&abs(&b), &bsh), ta, tb));
                let c32 = &t.c32;
                let plain = c32.to_f32(&c32.matmul(&c32.from_f32(&a, &ash), &c32.from_f32(&b, &bsh), ta, tb));
                let what = format!("{p} matmul m{m} k{k} n{n} ta {ta} tb {tb}");
                check(&what, p, &t.g.to_f32(&gc), &exact, &plain, &absr, k);
            }
            // linear with a bias, fused or added after the split-K slices.
            let (x, w, bias) = (t.data(m * k, 1.0), t.data(n * k, 1.0), t.data(n, 3.0));
            let gy = t.g.linear(&t.g.from_f32(&x, &[m, k]), &t.g.from_f32(&w, &[n, k]), &t.g.from_f32(&bias, &[n]));
            let c64 = &t.c64;
            let exact = c64.to_f64(&c64.linear(
                &c64.from_f32(&rounded(p, &x), &[m, k]),
                &c64.from_f32(&rounded(p, &w), &[n, k]),
                &c64.from_f32(&bias, &[n]),
            ));
            let absr = c64.to_f64(&c64.linear(
                &c64.from_f32(&abs(&x), &[m, k]),
                &c64.from_f32(&abs(&w), &[n, k]),
                &c64.from_f32(&abs(&bias), &[n]),
            ));
            let c32 = &t.c32;
            let plain = c32.to_f32(&c32.linear(
                &c32.from_f32(&x, &[m, k]),
                &c32.from_f32(&w, &[n, k]),
                &c32.from_f32(&bias, &[n]),
            ));
            check(&format!("{p} linear m{m} k{k} n{n}"), p, &t.g.to_f32(&gy), &exact, &plain, &absr, k + 1);
        }
        t.g.check().expect("CUDA error");
    }
}

/// (N, Ci, H, W, Co, K, stride, pad)
const CONVS: &[(usize, usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 3, 5, 5, 5, 3, 1, 1),
    (3, 5, 8, 8, 67, 4, 2, 1),   // stride 2, 4×4: four phases of 2×2 live taps
    (3, 67, 9, 7, 5, 3, 2, 0),   // odd image, stride 2, 3×3: phases with 1 and 2 live taps per axis
    (1, 1, 4, 4, 1, 4, 1, 0),    // 1×1 output: the data gradient is the first-layer GEMM
    (3, 5, 7, 7, 3, 3, 2, 1),    // stride 2 with a dropped last row
    (2, 3, 16, 16, 24, 4, 2, 1), // the DCGAN critic's first layer, smaller
    (2, 40, 4, 4, 1, 4, 1, 0),   // the critic's last layer; its data gradient is a plain GEMM
    (3, 5, 6, 6, 5, 3, 3, 2),    // stride 3: a phase with no live tap in one axis writes zeros
    (2, 6, 5, 5, 4, 1, 2, 0),    // 1×1 kernel, stride 2: phases with no taps at all
    (2, 8, 6, 6, 160, 4, 2, 1),  // split-K data gradient phases (160·2·2 = 640 terms) into gx's layout
    (2, 8, 9, 9, 200, 3, 2, 1),  // phases of 800 terms (split K) and of 200 (not) in one launch
];

fn convolutions_at_tf32_and_bf16(on: On) {
    let Some(mut t) = setup(on) else { return };
    for p in TC {
        t.g.set_precision(p);
        for tiles in [GemmTiles::Auto, GemmTiles::Narrow] {
            t.g.set_gemm_tiles(tiles);
            for &(n, ci, h, w, co, k, s, pad) in CONVS {
                let cp = ConvParams::new(s, pad);
                let (ho, wo) = (cp.out_size(h, k), cp.out_size(w, k));
                let what = format!("{p} {tiles:?}: N{n} Ci{ci} {h}x{w} Co{co} K{k} s{s} p{pad}");
                let (xs, wsh, ys) = ([n, ci, h, w], [co, ci, k, k], [n, co, ho, wo]);
                let (x, wt, gy) = (
                    t.data(xs.iter().product(), 1.0),
                    t.data(wsh.iter().product(), 0.2),
                    t.data(ys.iter().product(), 1.0),
                );
                let g = &t.g;
                let (gx_, gw_, ggy) = (g.from_f32(&x, &xs), g.from_f32(&wt, &wsh), g.from_f32(&gy, &ys));
                let c64 = &t.c64;
                let r = |v: &[f32], s: &[usize]| c64.from_f32(&rounded(p, v), s);
                let a = |v: &[f32], s: &[usize]| c64.from_f32(&abs(v), s);
                let c32 = &t.c32;
                let f = |v: &[f32], s: &[usize]| c32.from_f32(v, s);

                let y = g.conv2d(&gx_, &gw_, cp);
                assert_eq!(g.shape(&y), &ys, "{what}");
                let exact = c64.to_f64(&c64.conv2d(&r(&x, &xs), &r(&wt, &wsh), cp));
                let absr = c64.to_f64(&c64.conv2d(&a(&x, &xs), &a(&wt, &wsh), cp));
                let plain = c32.to_f32(&c32.conv2d(&f(&x, &xs), &f(&wt, &wsh), cp));
                check(&format!("conv2d {what}"), p, &g.to_f32(&y), &exact, &plain, &absr, ci * k * k);

                let dx = g.conv2d_data_grad(&ggy, &gw_, cp, (h, w));
                assert_eq!(g.shape(&dx), &xs, "{what}");
                let exact = c64.to_f64(&c64.conv2d_data_grad(&r(&gy, &ys), &r(&wt, &wsh), cp, (h, w)));
                let absr = c64.to_f64(&c64.conv2d_data_grad(&a(&gy, &ys), &a(&wt, &wsh), cp, (h, w)));
                let plain = c32.to_f32(&c32.conv2d_data_grad(&f(&gy, &ys), &f(&wt, &wsh), cp, (h, w)));
                check(&format!("conv2d_data_grad {what}"), p, &g.to_f32(&dx), &exact, &plain, &absr, co * k * k);

                let dw = g.conv2d_weight_grad(&gx_, &ggy, cp, k);
                assert_eq!(g.shape(&dw), &wsh, "{what}");
                let exact = c64.to_f64(&c64.conv2d_weight_grad(&r(&x, &xs), &r(&gy, &ys), cp, k));
                let absr = c64.to_f64(&c64.conv2d_weight_grad(&a(&x, &xs), &a(&gy, &ys), cp, k));
                let plain = c32.to_f32(&c32.conv2d_weight_grad(&f(&x, &xs), &f(&gy, &ys), cp, k));
                check(&format!("conv2d_weight_grad {what}"), p, &g.to_f32(&dw), &exact, &plain, &absr, n * ho * wo);
                g.check().expect("CUDA error");
            }
        }
    }
}

/// A long weight-gradient reduction (split-K over blockIdx.z, added in order) and a wide fwd/dgrad.
fn long_reductions_at_tf32(on: On) {
    let Some(mut t) = setup(on) else { return };
    t.g.set_precision(Precision::Tf32);
    let (n, ci, h, w, co, k, s, pad) = (8, 3, 16, 16, 16, 4, 2, 1);
    let cp = ConvParams::new(s, pad);
    let (ho, wo) = (cp.out_size(h, k), cp.out_size(w, k));
    let (xs, ys) = ([n, ci, h, w], [n, co, ho, wo]);
    let (x, gy) = (t.data(xs.iter().product(), 1.0), t.data(ys.iter().product(), 1.0));
    let dw = t.g.conv2d_weight_grad(&t.g.from_f32(&x, &xs), &t.g.from_f32(&gy, &ys), cp, k);
    let p = Precision::Tf32;
    let c64 = &t.c64;
    let exact = c64.to_f64(&c64.conv2d_weight_grad(
        &c64.from_f32(&rounded(p, &x), &xs),
        &c64.from_f32(&rounded(p, &gy), &ys),
        cp,
        k,
    ));
    let absr = c64.to_f64(&c64.conv2d_weight_grad(&c64.from_f32(&abs(&x), &xs), &c64.from_f32(&abs(&gy), &ys), cp, k));
    let c32 = &t.c32;
    let plain = c32.to_f32(&c32.conv2d_weight_grad(&c32.from_f32(&x, &xs), &c32.from_f32(&gy, &ys), cp, k));
    let got = t.g.to_f32(&dw);
    check("split-K conv2d_weight_grad", p, &got, &exact, &plain, &absr, n * ho * wo);
    // Deterministic: the same shapes give the same bits.
    let again = t.g.to_f32(&t.g.conv2d_weight_grad(&t.g.from_f32(&x, &xs), &t.g.from_f32(&gy, &ys), cp, k));
    assert!(got.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "split-K is not deterministic");
    t.g.check().expect("CUDA error");
}

/// `wgan train --precision tf32` end to end (DCGAN-28 on MNIST: every conv pass and the first
/// layer's GEMM on tensor cores, then the penalty's double backward through them); config.json
/// records the precision; the CPU says once that it ignores it.
fn train_end_to_end_at_tf32(on: On) {
    if cuda_devices::open(on).is_none() {
        return;
    }
    let dev = if on == On::Gpu { "cuda" } else { "emulated" };
    let out = std::env::temp_dir().join(format!("wgan-tc-train-{}-{dev}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bin = env!("CARGO_BIN_EXE_wgan");
    let args = ["train", "--dataset", "mnist", "--width", "4", "--batch-size", "4", "--n-critic", "2", "--steps", "2"];
    let o = std::process::Command::new(bin)
        .args(args)
        .args(["--device", dev, "--precision", "tf32", "--out", out.to_str().unwrap()])
        .output()
        .expect("run wgan");
    assert!(o.status.success(), "wgan train failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["precision"], "tf32");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for m in &lines {
        for k in ["critic_loss", "wasserstein", "penalty", "gen_loss"] {
            assert!(m[k].as_f64().is_some_and(f64::is_finite), "{k} is not finite in {m}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    if on == On::Emulator {
        let o = std::process::Command::new(bin)
            .args(args)
            .args(["--device", "cpu", "--precision", "bf16", "--out", out.to_str().unwrap()])
            .output()
            .expect("run wgan");
        assert!(o.status.success(), "wgan train on the CPU failed:\n{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.matches("--precision bf16 applies to CUDA devices").count(), 1, "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// Two `Cuda` instances have two streams with nothing ordering them: a tensor of one is refused by
/// the other (an error from check, no race). GPU only: the emulator runs launches synchronously.
fn separate_instances_do_not_share_tensors(on: On) {
    if on == On::Emulator {
        return;
    }
    let Some(a) = cuda_devices::open(on) else { return };
    let Some(b) = cuda_devices::open(on) else { return };
    let t = a.from_f32(&[1.0, 2.0, 3.0], &[3]);
    let _ = b.scale(&t, 2.0);
    let e = b.check().expect_err("a tensor of another Cuda instance must be refused");
    assert!(e.to_string().contains("another Cuda instance"), "{e}");
    a.check().expect("the owner is unaffected");
}

on_gpu_and_emulator!(
    separate_instances_do_not_share_tensors,
    train_end_to_end_at_tf32,
    rounding_is_bit_exact,
    mma_fragment_layouts,
    ldmatrix_layouts,
    matmuls_at_tf32_and_bf16,
    convolutions_at_tf32_and_bf16,
    long_reductions_at_tf32
);
