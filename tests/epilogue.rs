//! The GEMM epilogues (kernels/epilogue.cuh, src/tape/epilogue.rs): `linear_act` (a Linear layer and
//! its leaky ReLU in one GEMM) and `matmul_gated` (a product through the backward of the
//! activation that made y), and the tape's gated backward that uses the second for the first.
//! - on the CPU in f64: each op equals its composite; both pass f64 finite-difference checks of
//!   first and second order; a ReLU MLP built from `linear_act` gives the same value, gradients
//!   and double-backward gradients as the same MLP built from `linear` and `leaky_relu`;
//! - on the CUDA backend (the host emulator in every CI run): both kernels at f32, TF32 and BF16
//!   against the CPU reference with the same operand rounding (`Rounded`), odd sizes, split-K,
//!   the narrow tiles, poisoned outputs; and the gated backward issues no activation-backward
//!   launch of its own.

mod common;
mod cuda_devices;

use common::*;
use cuda_devices::rounded::Rounded;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::Cuda;
use wgan::backend::{Backend, Precision};
use wgan::rng::HostRng;
use wgan::tape::{Tape, Var};

fn u(shape: &[usize], seed: u64) -> Input {
    input(shape, uniform(shape.iter().product(), -1.0, 1.0, seed))
}

fn small(shape: &[usize], seed: u64) -> Input {
    input(shape, uniform(shape.iter().product(), -0.3, 0.3, seed))
}

/// Biases of magnitude in [0.5, 1.5): with |x|, |w| < 0.3 and 4 inputs, z = x·wᵀ + b stays ≥ 0.14
/// away from the kink, so finite differences never cross it.
fn biases(n: usize, seed: u64) -> Input {
    input(&[n], away_from_zero(n, 0.5, 1.5, seed))
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s = b.iter().fold(1e-300f64, |m, y| m.max(y.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / s
}

#[test]
fn linear_act_and_matmul_gated_equal_their_composites() {
    let be = be64();
    let (x, w, b) = (u(&[5, 3], 1), u(&[4, 3], 2), u(&[4], 3));
    let (x, w, b) =
        (be.from_f64(&x.values, &x.shape), be.from_f64(&w.values, &w.shape), be.from_f64(&b.values, &b.shape));
    for slope in [0.0, 0.2] {
        let fused = be.to_f64(&be.linear_act(&x, &w, &b, Some(slope)));
        let composite = be.to_f64(&be.leaky_relu(&be.linear(&x, &w, &b), slope));
        assert_eq!(fused, composite, "linear_act({slope})");
        assert!(composite.iter().any(|&v| v < 0.0) == (slope > 0.0), "both signs of z occur");
    }
    assert_eq!(be.to_f64(&be.linear_act(&x, &w, &b, None)), be.to_f64(&be.linear(&x, &w, &b)));
    // y with zeros (a ReLU's output), negatives (a leaky one's) and positives.
    let y = be.from_f64(
        &[0.0, -0.5, 1.0, 2.0, 0.0, 0.3, -0.1, 0.0, 4.0, -2.0, 1.0, 0.0, 0.5, 0.5, -0.5, 0.0, 1.0, 0.0, 0.0, 0.7],
        &[5, 4],
    );
    let gw = be.from_f64(&uniform(12, -1.0, 1.0, 4), &[3, 4]);
    for slope in [0.0, 0.2] {
        let fused = be.to_f64(&be.matmul_gated(&x, &gw, false, false, &y, slope));
        let composite = be.to_f64(&be.leaky_relu_backward(&be.matmul(&x, &gw, false, false), &y, slope));
        assert_eq!(fused, composite, "matmul_gated({slope})");
    }
}

#[test]
fn epilogue_ops_pass_first_and_second_order_gradchecks() {
    for slope in [0.0, 0.2] {
        let ins = [small(&[3, 4], 5), small(&[5, 4], 6), biases(5, 7)];
        check(&format!("linear_act({slope})"), &|t, v| t.linear_act(v[0], v[1], v[2], slope), &ins);
        // Two layers: the second's input gradient goes out through the first's activation
        // (matmul_gated), so this checks the gated rule and its derivative too.
        let ins = [small(&[3, 4], 8), small(&[4, 4], 9), biases(4, 10), small(&[2, 4], 11), biases(2, 12)];
        check(
            &format!("linear(linear_act({slope}))"),
            &|t, v| {
                let h = t.linear_act(v[0], v[1], v[2], slope);
                t.linear(h, v[3], v[4])
            },
            &ins,
        );
        check(
            &format!("linear_act(linear_act({slope}))"),
            &|t, v| {
                let h = t.linear_act(v[0], v[1], v[2], slope);
                t.linear_act(h, v[3], v[4], slope)
            },
            &ins,
        );
        // The activation consumed twice, by a Linear (which could gate) and by a product (which
        // cannot): its gradient must not be taken as gated.
        let ins = [small(&[3, 4], 31), small(&[4, 4], 32), biases(4, 33), small(&[2, 4], 34), biases(2, 35)];
        check(
            &format!("linear(h) and h·h, h = linear_act({slope})"),
            &|t, v| {
                let h = t.linear_act(v[0], v[1], v[2], slope);
                let a = t.linear(h, v[3], v[4]);
                let a = t.sum(a);
                let q = t.mul(h, h);
                let q = t.sum(q);
                t.add(a, q)
            },
            &ins,
        );
        // A plain matmul consuming the activation: its a-gradient is gated too.
        for tb in [false, true] {
            let ins =
                [small(&[3, 4], 16), small(&[4, 4], 17), biases(4, 18), small(if tb { &[2, 4] } else { &[4, 2] }, 19)];
            check(
                &format!("matmul(linear_act({slope}), w, tb {tb})"),
                &|t, v| {
                    let h = t.linear_act(v[0], v[1], v[2], slope);
                    t.matmul(h, v[3], false, tb)
                },
                &ins,
            );
        }
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let sa = if ta { [4, 3] } else { [3, 4] };
            let sb = if tb { [5, 4] } else { [4, 5] };
            let y = input(&[3, 5], away_from_zero(15, 0.05, 1.0, 13));
            check(
                &format!("matmul_gated({slope}) ta {ta} tb {tb}"),
                &|t, v| t.matmul_gated(v[0], v[1], ta, tb, v[2], slope),
                &[u(&sa, 14), u(&sb, 15), y],
            );
        }
    }
}

/// A 3-hidden-layer MLP (the toy nets' shape, small): fused with `linear_act` or built from
/// `linear` and `leaky_relu`.
fn mlp(t: &mut Tape<B64>, v: &[Var], slope: f64, fused: bool) -> Var {
    let mut h = v[0];
    for l in 0..3 {
        let (w, b) = (v[1 + 2 * l], v[2 + 2 * l]);
        h = if fused {
            t.linear_act(h, w, b, slope)
        } else {
            let z = t.linear(h, w, b);
            t.leaky_relu(z, slope)
        };
    }
    t.linear(h, v[7], v[8])
}

/// Value, parameter gradients of Σ D(x)·r, and parameter gradients of a WGAN-GP-like penalty
/// Σ (∇ₓ Σ D(x))² (the double backward), for the fused or the plain MLP.
fn mlp_grads(ins: &[Input], slope: f64, fused: bool) -> Vec<Vec<f64>> {
    let mut t = Tape::new(be64());
    let v: Vec<Var> = ins.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let d = mlp(&mut t, &v, slope, fused);
    let mut out = vec![t.to_f64(d)];
    let r = t.constant(be64().from_f64(&uniform(ins[0].shape[0], -1.0, 1.0, 30), &[ins[0].shape[0], 1]));
    let dr = t.mul(d, r);
    let loss = t.sum(dr);
    for g in t.grad(&[loss], &v, false) {
        out.push(t.to_f64(g));
    }
    let d = mlp(&mut t, &v, slope, fused);
    let gx = t.grad(&[d], &[v[0]], true)[0];
    let sq = t.mul(gx, gx);
    let p = t.sum(sq);
    for g in t.grad(&[p], &v[1..], false) {
        out.push(t.to_f64(g));
    }
    out
}

fn mlp_inputs() -> Vec<Input> {
    vec![
        u(&[6, 2], 20),
        u(&[5, 2], 21),
        u(&[5], 22),
        u(&[5, 5], 23),
        u(&[5], 24),
        u(&[5, 5], 25),
        u(&[5], 26),
        u(&[1, 5], 27),
        u(&[1], 28),
    ]
}

#[test]
fn gated_backward_equals_the_unfused_backward_first_and_second_order() {
    for slope in [0.0, 0.2] {
        let a = mlp_grads(&mlp_inputs(), slope, true);
        let b = mlp_grads(&mlp_inputs(), slope, false);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let d = max_rel(x, y);
            assert!(d <= 1e-12, "slope {slope}, result {i}: fused vs plain differ by {d:e}");
        }
    }
}

#[test]
fn mlp_with_epilogues_passes_gradchecks() {
    // The whole MLP: the gated backward (3 gates) first and second order against finite differences.
    let mut ins = vec![small(&[3, 2], 40)];
    for (l, (i, o)) in [(2, 4), (4, 4), (4, 4)].into_iter().enumerate() {
        ins.push(small(&[o, i], 41 + 2 * l as u64));
        ins.push(biases(o, 42 + 2 * l as u64));
    }
    ins.push(small(&[1, 4], 50));
    ins.push(biases(1, 51));
    for slope in [0.0, 0.2] {
        check(&format!("mlp({slope})"), &|t, v| mlp(t, v, slope, true), &ins);
        // The penalty's shape, Σ (∇ₓ D(x))²: its gradient runs the chain of gated GEMMs of the
        // double backward (each MatMulGated's a-gradient through the mask below); checked to
        // second order, i.e. third derivatives of D.
        check(
            &format!("Σ (∇ₓ mlp({slope}))²"),
            &|t, v| {
                let d = mlp(t, v, slope, true);
                let gx = t.grad(&[d], &[v[0]], true)[0];
                let sq = t.mul(gx, gx);
                t.sum(sq)
            },
            &ins,
        );
    }
}

// ---- the CUDA kernels against the CPU reference ----

fn ok(g: &Cuda) {
    if let Err(e) = g.check() {
        panic!("CUDA error: {e}");
    }
}

fn data(rng: &mut HostRng, shape: &[usize], s: f32, offset: f32) -> Vec<f32> {
    (0..shape.iter().product()).map(|_| rng.normal() as f32 * s + offset).collect()
}

/// (m, k, n) cases: odd sizes, one row, at most 16 rows (the narrow tiles), and reductions long
/// enough to split K (k ≥ 512 over few tiles), where the epilogue runs in the split-K reduction.
const SHAPES: [(usize, usize, usize); 6] =
    [(1, 2, 5), (5, 3, 7), (13, 37, 70), (67, 33, 65), (16, 600, 9), (70, 1100, 66)];

fn linear_act_kernel(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    g.set_poison(true);
    let mut rng = HostRng::new(2024, 3);
    for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
        g.set_precision(p);
        let c = Rounded::new(Cpu::<f32>::new(), p);
        for (m, k, n) in SHAPES {
            let (x, w, b) =
                (data(&mut rng, &[m, k], 1.0, 0.0), data(&mut rng, &[n, k], 0.2, 0.0), data(&mut rng, &[n], 1.0, 0.0));
            let (gx, gw, gb) = (g.from_f32(&x, &[m, k]), g.from_f32(&w, &[n, k]), g.from_f32(&b, &[n]));
            let (cx, cw, cb) = (c.from_f32(&x, &[m, k]), c.from_f32(&w, &[n, k]), c.from_f32(&b, &[n]));
            for act in [None, Some(0.0), Some(0.2)] {
                let a = g.to_f32(&g.linear_act(&gx, &gw, &gb, act));
                let r = c.to_f32(&c.linear_act(&cx, &cw, &cb, act));
                let what = format!("linear_act {act:?} {p} m {m} k {k} n {n}");
                close(&what, &a, &r, 1e-5);
                if act == Some(0.0) {
                    assert!(
                        a.iter().any(|&v| v == 0.0) && a.iter().any(|&v| v > 0.0),
                        "{what}: both sides of the kink"
                    );
                }
            }
            ok(&g);
        }
    }
}

fn matmul_gated_kernel(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    g.set_poison(true);
    let mut rng = HostRng::new(2025, 4);
    for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
        g.set_precision(p);
        let c = Rounded::new(Cpu::<f32>::new(), p);
        for (m, k, n) in SHAPES {
            // y with exact zeros (a ReLU's output) and both signs.
            let y: Vec<f32> =
                data(&mut rng, &[m, n], 1.0, 0.0).into_iter().map(|v| if v.abs() < 0.3 { 0.0 } else { v }).collect();
            let (gy, cy) = (g.from_f32(&y, &[m, n]), c.from_f32(&y, &[m, n]));
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let sa = if ta { [k, m] } else { [m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let (a, b) = (data(&mut rng, &sa, 1.0, 0.0), data(&mut rng, &sb, 1.0, 0.0));
                let (ga, gb) = (g.from_f32(&a, &sa), g.from_f32(&b, &sb));
                let (ca, cb) = (c.from_f32(&a, &sa), c.from_f32(&b, &sb));
                for slope in [0.0, 0.2] {
                    let r1 = g.to_f32(&g.matmul_gated(&ga, &gb, ta, tb, &gy, slope));
                    let r2 = c.to_f32(&c.matmul_gated(&ca, &cb, ta, tb, &cy, slope));
                    close(&format!("matmul_gated({slope}) {p} ta {ta} tb {tb} m {m} k {k} n {n}"), &r1, &r2, 1e-5);
                }
            }
            ok(&g);
        }
    }
}

/// The toy critic's backward on the emulator: the fused MLP's gradients match the CPU's, and its
/// backward issues exactly one launch fewer per hidden layer than the unfused MLP's (each
/// activation's backward went into the epilogue of the GEMM before it), its forward one fewer per
/// hidden layer (each activation went into its Linear's epilogue).
fn gated_backward_launches(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    g.set_poison(true);
    let mut rng = HostRng::new(7, 7);
    let dims = [(2usize, 33usize), (33, 33), (33, 33), (33, 1)];
    let x = data(&mut rng, &[9, 2], 1.0, 0.0);
    let params: Vec<(Vec<f32>, Vec<usize>)> = dims
        .iter()
        .flat_map(|&(i, o)| {
            [(data(&mut rng, &[o, i], 0.5, 0.0), vec![o, i]), (data(&mut rng, &[o], 0.3, 0.0), vec![o])]
        })
        .collect();
    let run = |fused: bool| {
        let mut t = Tape::new(g.clone());
        let mut v = vec![t.leaf(g.from_f32(&x, &[9, 2]))];
        v.extend(params.iter().map(|(d, s)| t.leaf(g.from_f32(d, s))));
        let c0 = g.counts().launches;
        let mut h = v[0];
        for l in 0..3 {
            h = if fused {
                t.linear_act(h, v[1 + 2 * l], v[2 + 2 * l], 0.0)
            } else {
                let z = t.linear(h, v[1 + 2 * l], v[2 + 2 * l]);
                t.relu(z)
            };
        }
        let d = t.linear(h, v[7], v[8]);
        let c1 = g.counts().launches;
        let grads = t.grad(&[d], &v, false);
        let c2 = g.counts().launches;
        let values: Vec<Vec<f32>> = grads.iter().map(|&gv| t.to_f32(gv)).collect();
        ok(&g);
        (c1 - c0, c2 - c1, values)
    };
    let (fwd_fused, bwd_fused, a) = run(true);
    let (fwd_plain, bwd_plain, b) = run(false);
    assert_eq!(fwd_plain - fwd_fused, 3, "forward: one launch fewer per hidden layer");
    assert_eq!(bwd_plain - bwd_fused, 3, "backward: one launch fewer per hidden layer");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "gradient {i}: fused and unfused are the same roundings");
    }
}

on_gpu_and_emulator!(linear_act_kernel, matmul_gated_kernel, gated_backward_launches);
