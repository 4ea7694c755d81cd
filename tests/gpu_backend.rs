//! Every op of the CUDA backend against the CPU reference backend, on fresh random inputs and odd
//! shapes (batch 1 and 3, channel counts 3, 5, 67 that are not multiples of a tile, 1×1 outputs,
//! pad 0 and 1, stride 1 and 2, kernel 3 and 4, long reductions that take the split paths).
//! Every fresh GPU allocation is filled with NaN first (`Cuda::set_poison(true)`), so an output
//! element a kernel forgets to write fails the comparison.
//!
//! All tests are ignored by default (they need a GPU): `cargo test --test gpu_backend --
//! --include-ignored`. Without a GPU they return early, unless `WGAN_REQUIRE_GPU=1`, which makes
//! them fail. The inputs' seed is printed; `WGAN_TEST_SEED=<n>` replays a run.
//!
//! Matrix products and convolutions run at `WGAN_TEST_PRECISION` (f32 by default; tf32 or bf16 run
//! them on tensor cores, their tolerance widened by 2u·√terms, u the unit roundoff).
//!
//! Tolerances, all relative to the largest magnitude of the CPU result (`scale`):
//! - exact (0): copies, fill, views, rand_uniform (the same integer arithmetic on both sides);
//! - 2e-6: single-rounding elementwise ops (add, sub, mul, scale, leaky_relu, interpolate, axpby);
//! - 1e-5: ops through a math library (tanh, powf) and randn (f64 Box–Muller on both sides,
//!   rounded to f32: at most an ulp apart), optimizer updates (FMA contraction differs);
//! - 1e-4: reductions, normalisation, penalty, matmul and convolutions: f32 sums of up to a few
//!   thousand terms in different orders (the GPU accumulates reductions in f64, GEMMs in f32).
//!   A sum of products can cancel to far below its terms (a 4097-term dot product of normal
//!   values is ~64 in size but can land near 0), and then its rounding error is set by the terms,
//!   not the result; so matmuls and convolutions (`close_dot`) take as scale the larger of the
//!   result's magnitude and that of the same sum of |terms| (the op on |inputs|) over √terms, the
//!   size of an uncancelled random sum.

mod cuda_devices;

use std::time::{SystemTime, UNIX_EPOCH};

use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::{Cuda, GemmTiles};
use wgan::backend::{AdamStep, Backend, ConvParams, Group, PenaltyKind, RmsPropStep};
use wgan::rng::HostRng;

struct Ctx {
    g: Cuda,
    c: Cpu<f32>,
    rng: HostRng,
}

fn setup(on: On) -> Option<Ctx> {
    let g = cuda_devices::open(on)?;
    let seed = std::env::var("WGAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    eprintln!("inputs seed {seed} (WGAN_TEST_SEED={seed} replays)");
    Some(Ctx { g, c: Cpu::<f32>::new(), rng: HostRng::new(seed, 0) })
}

impl Ctx {
    /// Fresh standard-normal data scaled by `s`.
    fn data(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.normal() as f32 * s).collect()
    }
    fn positive(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| 0.1 + 2.0 * self.rng.uniform() as f32).collect()
    }
    /// |x| on the CPU backend, for the bound of a sum of products.
    fn abs(&self, x: &<Cpu<f32> as Backend>::Tensor) -> <Cpu<f32> as Backend>::Tensor {
        let v: Vec<f32> = self.c.to_f32(x).iter().map(|v| v.abs()).collect();
        self.c.from_f32(&v, self.c.shape(x))
    }
    /// The same data on both backends.
    fn pair(&mut self, shape: &[usize], s: f32) -> (<Cuda as Backend>::Tensor, <Cpu<f32> as Backend>::Tensor) {
        let v = self.data(shape.iter().product(), s);
        (self.g.from_f32(&v, shape), self.c.from_f32(&v, shape))
    }
    fn ok(&self) {
        if let Err(e) = self.g.check() {
            panic!("CUDA error: {e}");
        }
    }
}

fn close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(1e-30f64, |m, v| m.max(v.abs() as f64));
    let mut worst = (0usize, 0f64);
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(g.is_finite() == c.is_finite(), "{what}[{i}]: gpu {g} cpu {c} (NaN: unwritten or wrong)");
        let d = (*g as f64 - *c as f64).abs();
        if d > worst.1 {
            worst = (i, d);
        }
    }
    let (i, d) = worst;
    assert!(
        d <= rtol * scale,
        "{what}: worst element {i}: gpu {} cpu {} (|diff| {d:.3e} > {rtol:.0e} × scale {scale:.3e})",
        gpu[i],
        cpu[i]
    );
}

/// `close` for sums of `terms` products, whose same sum over |inputs| is `abs_sum` (see the header).
fn close_dot(what: &str, gpu: &[f32], cpu: &[f32], abs_sum: &[f32], terms: usize, rtol: f64) {
    let result = cpu.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let terms_scale = abs_sum.iter().fold(0f64, |m, v| m.max(*v as f64)) / (terms.max(1) as f64).sqrt();
    // `close` measures against the CPU result's largest magnitude; widen it to `terms_scale`.
    let scale = result.max(terms_scale);
    // At TF32/BF16 (WGAN_TEST_PRECISION) each product carries up to 2u of its |term|: at most
    // 2u·max Σ|terms| = 2u·√terms·terms_scale in all.
    let p = cuda_devices::precision();
    let rtol =
        if p == wgan::backend::Precision::F32 { rtol } else { rtol + 2.0 * p.unit_roundoff() * (terms as f64).sqrt() };
    close(what, gpu, cpu, rtol * scale / result.max(1e-30));
}

fn elementwise_ops(on: On) {
    let Some(mut t) = setup(on) else { return };
    for shape in [vec![1], vec![3, 5], vec![3, 67, 5, 5], vec![1, 1, 1, 1], vec![1_000_003]] {
        let (ga, ca) = t.pair(&shape, 1.0);
        let (gb, cb) = t.pair(&shape, 2.0);
        let s = format!("{shape:?}");
        let (g, c) = (&t.g, &t.c);
        close(&format!("add {s}"), &g.to_f32(&g.add(&ga, &gb)), &c.to_f32(&c.add(&ca, &cb)), 2e-6);
        close(&format!("sub {s}"), &g.to_f32(&g.sub(&ga, &gb)), &c.to_f32(&c.sub(&ca, &cb)), 2e-6);
        close(&format!("mul {s}"), &g.to_f32(&g.mul(&ga, &gb)), &c.to_f32(&c.mul(&ca, &cb)), 2e-6);
        close(&format!("scale {s}"), &g.to_f32(&g.scale(&ga, -0.37)), &c.to_f32(&c.scale(&ca, -0.37)), 2e-6);
        close(
            &format!("add_scalar {s}"),
            &g.to_f32(&g.add_scalar(&ga, 1.25)),
            &c.to_f32(&c.add_scalar(&ca, 1.25)),
            2e-6,
        );
        for slope in [0.0, 0.2] {
            close(
                &format!("leaky_relu({slope}) {s}"),
                &g.to_f32(&g.leaky_relu(&ga, slope)),
                &c.to_f32(&c.leaky_relu(&ca, slope)),
                2e-6,
            );
            close(
                &format!("leaky_relu_backward({slope}) {s}"),
                &g.to_f32(&g.leaky_relu_backward(&gb, &ga, slope)),
                &c.to_f32(&c.leaky_relu_backward(&cb, &ca, slope)),
                2e-6,
            );
        }
        let (gy, cy) = (g.tanh(&ga), c.tanh(&ca));
        close(&format!("tanh {s}"), &g.to_f32(&gy), &c.to_f32(&cy), 1e-5);
        close(
            &format!("tanh_backward {s}"),
            &g.to_f32(&g.tanh_backward(&gb, &gy)),
            &c.to_f32(&c.tanh_backward(&cb, &cy)),
            1e-5,
        );
        let pos = t.positive(shape.iter().product());
        let (gp, cp) = (t.g.from_f32(&pos, &shape), t.c.from_f32(&pos, &shape));
        for p in [-0.5, 2.0, 0.75] {
            close(&format!("powf({p}) {s}"), &t.g.to_f32(&t.g.powf(&gp, p)), &t.c.to_f32(&t.c.powf(&cp, p)), 1e-5);
        }
        t.ok();
    }
}

fn creation_views_and_copies(on: On) {
    let Some(mut t) = setup(on) else { return };
    for shape in [vec![1], vec![3, 67, 5, 5], vec![0, 3]] {
        let n: usize = shape.iter().product();
        let v = t.data(n, 1.0);
        let g = &t.g;
        let a = g.from_f32(&v, &shape);
        assert_eq!(g.to_f32(&a), v, "from_f32/to_f32 round trip");
        let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        assert_eq!(g.to_f64(&g.from_f64(&v64, &shape)), v64, "from_f64/to_f64 round trip");
        assert_eq!(g.to_f32(&g.fill(&shape, -2.5)), vec![-2.5f32; n], "fill");
        let d = g.deep_copy(&a);
        assert_eq!(g.to_f32(&d), v, "deep_copy");
        assert_eq!(g.shape(&d), &shape[..]);
    }
    // Views share storage; copy_into_inplace writes through them; views of views compose offsets.
    let v = t.data(100, 1.0);
    let g = &t.g;
    let buf = g.from_f32(&v, &[100]);
    let mid = g.view(&buf, 10, &[5, 8]);
    assert_eq!(g.to_f32(&mid), v[10..50].to_vec(), "view");
    let inner = g.view(&mid, 3, &[7]);
    assert_eq!(g.to_f32(&inner), v[13..20].to_vec(), "view of a view");
    let src = g.fill(&[4], 7.0);
    g.copy_into_inplace(&mid, 2, &src);
    let mut want = v.clone();
    want[12..16].copy_from_slice(&[7.0; 4]);
    assert_eq!(g.to_f32(&buf), want, "copy_into_inplace through a view");
    let copy = g.deep_copy(&mid);
    g.copy_into_inplace(&buf, 10, &g.fill(&[40], 0.5));
    assert_eq!(g.to_f32(&copy), want[10..50].to_vec(), "deep_copy shares no storage");
    t.ok();
}

const GROUPS: [Group; 3] = [Group::All, Group::Sample, Group::Channel];

fn group_reductions_and_broadcasts(on: On) {
    let Some(mut t) = setup(on) else { return };
    let shapes = [vec![1, 1], vec![3, 5], vec![3, 67, 7, 7], vec![1, 5, 64, 64], vec![3, 2, 129, 67], vec![513, 3]];
    for shape in shapes {
        let (gx, cx) = t.pair(&shape, 1.0);
        for group in GROUPS {
            let s = format!("{group:?} {shape:?}");
            let (gs, cs) = (t.g.group_sum(&gx, group), t.c.group_sum(&cx, group));
            assert_eq!(t.g.shape(&gs), t.c.shape(&cs), "group_sum shape {s}");
            close(&format!("group_sum {s}"), &t.g.to_f32(&gs), &t.c.to_f32(&cs), 1e-4);
            let k = group.count(&shape);
            let (gv, cv) = t.pair(&[k], 1.0);
            let (g, c) = (&t.g, &t.c);
            close(
                &format!("group_broadcast {s}"),
                &g.to_f32(&g.group_broadcast(&gv, group, &shape)),
                &c.to_f32(&c.group_broadcast(&cv, group, &shape)),
                0.0,
            );
            close(
                &format!("group_mul {s}"),
                &g.to_f32(&g.group_mul(&gx, &gv, group)),
                &c.to_f32(&c.group_mul(&cx, &cv, group)),
                2e-6,
            );
            close(
                &format!("group_add {s}"),
                &g.to_f32(&g.group_add(&gx, &gv, group)),
                &c.to_f32(&c.group_add(&cx, &cv, group)),
                2e-6,
            );
        }
        t.ok();
    }
}

fn matmul_all_transposes(on: On) {
    let Some(mut t) = setup(on) else { return };
    // (m, k, n): 1×1, odd, tile-sized, a long reduction (split-K), a wide output.
    for (m, k, n) in [(1, 1, 1), (3, 5, 67), (67, 129, 3), (64, 64, 64), (5, 1000, 7), (1, 4097, 1), (130, 7, 257)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let ash = if ta { [k, m] } else { [m, k] };
            let bsh = if tb { [n, k] } else { [k, n] };
            let (ga, ca) = t.pair(&ash, 1.0);
            let (gb, cb) = t.pair(&bsh, 1.0);
            let (gc, cc) = (t.g.matmul(&ga, &gb, ta, tb), t.c.matmul(&ca, &cb, ta, tb));
            assert_eq!(t.g.shape(&gc), &[m, n]);
            let bound = t.c.to_f32(&t.c.matmul(&t.abs(&ca), &t.abs(&cb), ta, tb));
            let what = format!("matmul m{m} k{k} n{n} ta {ta} tb {tb}");
            close_dot(&what, &t.g.to_f32(&gc), &t.c.to_f32(&cc), &bound, k, 1e-4);
        }
        // linear: x [m, k], w [n, k], bias [n], the bias fused into the GEMM (or its split-K sum).
        let (gx, cx) = t.pair(&[m, k], 1.0);
        let (gw, cw) = t.pair(&[n, k], 1.0);
        let (gb, cb) = t.pair(&[n], 3.0);
        let (gy, cy) = (t.g.linear(&gx, &gw, &gb), t.c.linear(&cx, &cw, &cb));
        assert_eq!(t.g.shape(&gy), &[m, n]);
        let bound = t.c.to_f32(&t.c.linear(&t.abs(&cx), &t.abs(&cw), &t.abs(&cb)));
        close_dot(&format!("linear m{m} k{k} n{n}"), &t.g.to_f32(&gy), &t.c.to_f32(&cy), &bound, k + 1, 1e-4);
        t.ok();
    }
}

/// (N, Ci, H, W, Co, K, stride, pad)
const CONVS: &[(usize, usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 3, 5, 5, 5, 3, 1, 1),
    (3, 5, 8, 8, 67, 4, 2, 1),
    (3, 67, 9, 7, 5, 3, 2, 0),
    (1, 1, 4, 4, 1, 4, 1, 0),    // 1×1 output
    (3, 5, 7, 7, 3, 3, 2, 1),    // stride 2 with a dropped last row
    (3, 3, 32, 32, 64, 4, 2, 1), // DCGAN critic's first layer
    (2, 64, 8, 8, 128, 4, 2, 1),
    (1, 128, 4, 4, 1, 4, 1, 0), // DCGAN critic's last layer
    (3, 5, 6, 6, 5, 3, 1, 0),
];

/// Every shape on each tile choice: the automatic one (16×256 for at most 16 output rows, else
/// 64×64), and each tile forced, so both kernels are checked on every shape.
fn conv2d_forward_and_gradients(on: On) {
    let Some(mut t) = setup(on) else { return };
    for tiles in [GemmTiles::Auto, GemmTiles::Square, GemmTiles::Narrow] {
        t.g.set_gemm_tiles(tiles);
        for &(n, ci, h, w, co, k, s, p) in CONVS {
            let cp = ConvParams::new(s, p);
            let (ho, wo) = (cp.out_size(h, k), cp.out_size(w, k));
            let what = format!("{tiles:?} tiles: N{n} Ci{ci} {h}x{w} Co{co} K{k} s{s} p{p}");
            let (gx, cx) = t.pair(&[n, ci, h, w], 1.0);
            let (gw, cw) = t.pair(&[co, ci, k, k], 0.2);
            let (ggy, cgy) = t.pair(&[n, co, ho, wo], 1.0);
            let (ax, aw, agy) = (t.abs(&cx), t.abs(&cw), t.abs(&cgy));
            let (g, c) = (&t.g, &t.c);
            let gy = g.conv2d(&gx, &gw, cp);
            assert_eq!(g.shape(&gy), &[n, co, ho, wo], "{what}");
            let bound = c.to_f32(&c.conv2d(&ax, &aw, cp));
            let cy = c.to_f32(&c.conv2d(&cx, &cw, cp));
            close_dot(&format!("conv2d {what}"), &g.to_f32(&gy), &cy, &bound, ci * k * k, 1e-4);
            let gdx = g.conv2d_data_grad(&ggy, &gw, cp, (h, w));
            assert_eq!(g.shape(&gdx), &[n, ci, h, w], "{what}");
            let bound = c.to_f32(&c.conv2d_data_grad(&agy, &aw, cp, (h, w)));
            let cdx = c.to_f32(&c.conv2d_data_grad(&cgy, &cw, cp, (h, w)));
            close_dot(&format!("conv2d_data_grad {what}"), &g.to_f32(&gdx), &cdx, &bound, co * k * k, 1e-4);
            let gdw = g.conv2d_weight_grad(&gx, &ggy, cp, k);
            assert_eq!(g.shape(&gdw), &[co, ci, k, k], "{what}");
            let bound = c.to_f32(&c.conv2d_weight_grad(&ax, &agy, cp, k));
            let cdw = c.to_f32(&c.conv2d_weight_grad(&cx, &cgy, cp, k));
            close_dot(&format!("conv2d_weight_grad {what}"), &g.to_f32(&gdw), &cdw, &bound, n * ho * wo, 1e-4);
            t.ok();
        }
    }
}

fn normalize_and_backward(on: On) {
    let Some(mut t) = setup(on) else { return };
    for shape in [vec![3, 5], vec![3, 67, 5, 5], vec![1, 5, 3, 3], vec![64, 8], vec![2, 3, 64, 64]] {
        let (gx, cx) = t.pair(&shape, 3.0);
        // An offset, so that the mean matters.
        let (gx, cx) = (t.g.add_scalar(&gx, 1.5), t.c.add_scalar(&cx, 1.5));
        let (gg, cg) = t.pair(&shape, 1.0);
        for group in GROUPS {
            for eps in [1e-5, 0.1] {
                let s = format!("{group:?} {shape:?} eps {eps}");
                let (g, c) = (&t.g, &t.c);
                close(
                    &format!("normalize {s}"),
                    &g.to_f32(&g.normalize(&gx, group, eps)),
                    &c.to_f32(&c.normalize(&cx, group, eps)),
                    1e-4,
                );
                close(
                    &format!("normalize_backward {s}"),
                    &g.to_f32(&g.normalize_backward(&gg, &gx, group, eps)),
                    &c.to_f32(&c.normalize_backward(&cg, &cx, group, eps)),
                    1e-4,
                );
            }
        }
        t.ok();
    }
}

fn interpolate_and_penalty(on: On) {
    let Some(mut t) = setup(on) else { return };
    for shape in [vec![1, 2], vec![3, 5, 4, 4], vec![3, 3, 64, 64], vec![64, 2]] {
        let n = shape[0];
        let (gx, cx) = t.pair(&shape, 1.0);
        let (gxt, cxt) = t.pair(&shape, 1.0);
        let e: Vec<f32> = (0..n).map(|_| t.rng.uniform() as f32).collect();
        let (ge, ce) = (t.g.from_f32(&e, &[n]), t.c.from_f32(&e, &[n]));
        let s = format!("{shape:?}");
        close(
            &format!("interpolate {s}"),
            &t.g.to_f32(&t.g.interpolate(&gx, &gxt, &ge)),
            &t.c.to_f32(&t.c.interpolate(&cx, &cxt, &ce)),
            2e-6,
        );
        // Per-sample scales so that some gradient norms fall below 1 and some above.
        let per: usize = shape[1..].iter().product();
        let mut gv = t.data(n * per, 1.0);
        for (i, chunk) in gv.chunks_mut(per).enumerate() {
            let target = if i % 2 == 0 { 0.5 } else { 1.7 };
            let norm = chunk.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            chunk.iter_mut().for_each(|v| *v = (*v as f64 * target / norm) as f32);
        }
        let (gg, cg) = (t.g.from_f32(&gv, &shape), t.c.from_f32(&gv, &shape));
        for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
            for eps in [0.0, 1e-6] {
                let (gp, gd) = t.g.penalty(&gg, kind, eps);
                let (cp, cd) = t.c.penalty(&cg, kind, eps);
                assert_eq!(t.g.shape(&gp), &[1]);
                close(&format!("penalty value {kind:?} {s}"), &t.g.to_f32(&gp), &t.c.to_f32(&cp), 1e-4);
                close(&format!("penalty gradient {kind:?} {s}"), &t.g.to_f32(&gd), &t.c.to_f32(&cd), 1e-4);
            }
        }
        t.ok();
    }
}

fn random_numbers_match_the_cpu(on: On) {
    let Some(t) = setup(on) else { return };
    for (shape, seed, stream) in [(vec![1], 0u64, 0u64), (vec![3, 67, 5], 42, 7), (vec![1 << 20], u64::MAX, 1 << 40)] {
        let gu = t.g.to_f32(&t.g.rand_uniform(&shape, seed, stream));
        let cu = t.c.to_f32(&t.c.rand_uniform(&shape, seed, stream));
        assert_eq!(gu, cu, "rand_uniform {shape:?} seed {seed} stream {stream}: must be bit-identical");
        for (i, v) in gu.iter().enumerate().take(1000) {
            assert_eq!(*v, wgan::rng::uniform(seed, stream, i as u64) as f32);
        }
        let gn = t.g.to_f32(&t.g.randn(&shape, seed, stream));
        let cn = t.c.to_f32(&t.c.randn(&shape, seed, stream));
        let mut differ = 0usize;
        for (i, (g, c)) in gn.iter().zip(&cn).enumerate() {
            if g != c {
                differ += 1;
                let ulp = (g.to_bits() as i64 - c.to_bits() as i64).abs();
                assert!(ulp <= 1, "randn[{i}]: gpu {g} cpu {c} differ by {ulp} ulp");
            }
        }
        assert!(differ * 10_000 <= gn.len().max(10_000), "randn: {differ} of {} values differ by an ulp", gn.len());
        t.ok();
    }
}

fn optimizers_and_inplace_updates(on: On) {
    let Some(mut t) = setup(on) else { return };
    for n in [1usize, 67, 100_003] {
        let (gp, cp) = t.pair(&[n], 1.0);
        let (gm, cm) = t.pair(&[n], 0.0);
        let (gv, cv) = (t.g.fill(&[n], 0.0), t.c.fill(&[n], 0.0));
        for step in 1..=3u64 {
            let (gg, cg) = t.pair(&[n], 0.1);
            let s = AdamStep { lr: 1e-3, beta1: 0.5, beta2: 0.9, eps: 1e-8, t: step };
            t.g.adam_inplace(&gp, &gg, &gm, &gv, s);
            t.c.adam_inplace(&cp, &cg, &cm, &cv, s);
        }
        close(&format!("adam p n{n}"), &t.g.to_f32(&gp), &t.c.to_f32(&cp), 1e-5);
        close(&format!("adam m n{n}"), &t.g.to_f32(&gm), &t.c.to_f32(&cm), 1e-5);
        close(&format!("adam v n{n}"), &t.g.to_f32(&gv), &t.c.to_f32(&cv), 1e-5);

        for clip in [None, Some(0.01)] {
            let (gp, cp) = t.pair(&[n], 0.05);
            let (gv, cv) = (t.g.fill(&[n], 0.0), t.c.fill(&[n], 0.0));
            for _ in 0..3 {
                let (gg, cg) = t.pair(&[n], 0.1);
                let s = RmsPropStep { lr: 5e-5, alpha: 0.99, eps: 1e-8, clip };
                t.g.rmsprop_inplace(&gp, &gg, &gv, s);
                t.c.rmsprop_inplace(&cp, &cg, &cv, s);
            }
            close(&format!("rmsprop p n{n} clip {clip:?}"), &t.g.to_f32(&gp), &t.c.to_f32(&cp), 1e-5);
            close(&format!("rmsprop v n{n} clip {clip:?}"), &t.g.to_f32(&gv), &t.c.to_f32(&cv), 1e-5);
        }

        let (gp, cp) = t.pair(&[n], 0.05);
        t.g.clamp_inplace(&gp, 0.01);
        t.c.clamp_inplace(&cp, 0.01);
        close(&format!("clamp n{n}"), &t.g.to_f32(&gp), &t.c.to_f32(&cp), 0.0);

        let (gy, cy) = t.pair(&[n], 1.0);
        let (gx, cx) = t.pair(&[n], 1.0);
        t.g.axpby_inplace(&gy, 0.9, &gx, 0.1);
        t.c.axpby_inplace(&cy, 0.9, &cx, 0.1);
        close(&format!("axpby n{n}"), &t.g.to_f32(&gy), &t.c.to_f32(&cy), 2e-6);
        t.ok();
    }
}

/// In-place ops whose operands are overlapping views of one buffer, as the CPU reference defines
/// them: a read operand that overlaps a written one is read as it was before the op (axpby's x,
/// the optimizers' gradient, copy_into's source), and overlapping optimizer state is an error.
/// On a GPU, threads run in no fixed order, so a kernel that read such an operand in place would
/// give a different answer from run to run; shifts of both signs and of more than a block of
/// threads cover the orders that matter.
fn inplace_ops_on_overlapping_views(on: On) {
    let Some(mut t) = setup(on) else { return };
    let len = 300_007;
    for shift in [0isize, 1, -1, 1000, -1000] {
        let m = len - 1000;
        let (ys, xs) = if shift >= 0 { (0, shift as usize) } else { ((-shift) as usize, 0) };
        let what = format!("shift {shift}");
        let (gb, cb) = t.pair(&[len], 1.0);
        let (g, c) = (&t.g, &t.c);
        g.axpby_inplace(&g.view(&gb, ys, &[m]), 0.5, &g.view(&gb, xs, &[m]), 0.25);
        c.axpby_inplace(&c.view(&cb, ys, &[m]), 0.5, &c.view(&cb, xs, &[m]), 0.25);
        close(&format!("axpby on overlapping views, {what}"), &g.to_f32(&gb), &c.to_f32(&cb), 2e-6);
        g.copy_into_inplace(&gb, ys, &g.view(&gb, xs, &[m]));
        c.copy_into_inplace(&cb, ys, &c.view(&cb, xs, &[m]));
        close(&format!("copy_into from an overlapping view, {what}"), &g.to_f32(&gb), &c.to_f32(&cb), 0.0);
        t.ok();
    }
    // Adam and RMSProp whose gradient overlaps the state: p, m, v as views of one flat buffer,
    // the gradient a window straddling p and m.
    let n = 70_001;
    let (gs, cs) = t.pair(&[3 * n], 0.1);
    let (g, c) = (&t.g, &t.c);
    let views = |s: usize, len: usize| (g.view(&gs, s, &[len]), c.view(&cs, s, &[len]));
    let ((gp, cp), (gm, cm), (gv, cv), (gg, cg)) = (views(0, n), views(n, n), views(2 * n, n), views(n / 2, n));
    let (g2, c2) = (g.mul(&gv, &gv), c.mul(&cv, &cv)); // v ≥ 0
    g.copy_into_inplace(&gs, 2 * n, &g2);
    c.copy_into_inplace(&cs, 2 * n, &c2);
    let s = AdamStep { lr: 1e-3, beta1: 0.5, beta2: 0.9, eps: 1e-8, t: 2 };
    g.adam_inplace(&gp, &gg, &gm, &gv, s);
    c.adam_inplace(&cp, &cg, &cm, &cv, s);
    close("adam with the gradient overlapping p and m", &g.to_f32(&gs), &c.to_f32(&cs), 1e-5);
    let r = RmsPropStep { lr: 5e-5, alpha: 0.99, eps: 1e-8, clip: Some(0.01) };
    g.rmsprop_inplace(&gp, &gg, &gv, r);
    c.rmsprop_inplace(&cp, &cg, &cv, r);
    close("rmsprop with the gradient overlapping p", &g.to_f32(&gs), &c.to_f32(&cs), 1e-5);
    t.ok();
    // Overlapping state cannot be updated consistently: an error (the CPU panics).
    let (gq, _) = t.pair(&[4], 1.0);
    let (g1, g2) = (t.g.view(&gq, 0, &[2]), t.g.view(&gq, 1, &[2]));
    t.g.adam_inplace(&g1, &t.g.fill(&[2], 1.0), &g2, &t.g.view(&gq, 2, &[2]), s);
    let e = t.g.check().expect_err("overlapping Adam state must be reported");
    assert!(e.to_string().contains("overlap"), "error says why: {e}");
}

fn reductions_are_deterministic(on: On) {
    let Some(mut t) = setup(on) else { return };
    let (gx, _) = t.pair(&[3, 64, 32, 32], 1.0);
    let (ggy, _) = t.pair(&[3, 128, 16, 16], 1.0);
    let g = &t.g;
    let cp = ConvParams::new(2, 1);
    let runs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..3)
        .map(|_| {
            (
                g.to_f32(&g.group_sum(&gx, Group::All)),
                g.to_f32(&g.group_sum(&gx, Group::Channel)),
                g.to_f32(&g.conv2d_weight_grad(&gx, &ggy, cp, 4)),
            )
        })
        .collect();
    for r in &runs[1..] {
        assert_eq!(r.0, runs[0].0, "group_sum(All) must be bit-reproducible");
        assert_eq!(r.1, runs[0].1, "group_sum(Channel) must be bit-reproducible");
        assert_eq!(r.2, runs[0].2, "conv2d_weight_grad (split-K) must be bit-reproducible");
    }
    t.ok();
}

fn errors_are_reported_not_panicked(on: On) {
    let Some(mut t) = setup(on) else { return };
    let (a, _) = t.pair(&[3, 5], 1.0);
    let (b, _) = t.pair(&[5, 3], 1.0);
    t.ok();
    let bad = t.g.add(&a, &b); // shape mismatch: recorded, not a panic
    assert!(t.g.to_f32(&bad).iter().all(|v| v.is_nan()), "a failed op reads back as NaN");
    let e = t.g.check().expect_err("the mismatch must be reported by check()");
    assert!(e.to_string().contains("add"), "error names the op: {e}");
}

on_gpu_and_emulator!(
    elementwise_ops,
    creation_views_and_copies,
    group_reductions_and_broadcasts,
    matmul_all_transposes,
    conv2d_forward_and_gradients,
    normalize_and_backward,
    interpolate_and_penalty,
    random_numbers_match_the_cpu,
    optimizers_and_inplace_updates,
    inplace_ops_on_overlapping_views,
    reductions_are_deterministic,
    errors_are_reported_not_panicked,
);
