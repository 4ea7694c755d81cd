//! The fused ops (`Backend::normalize_hvp`, `penalty_hvp`, `group_affine`, `batch_norm_running_update`; CPU in
//! src/backend/cpu/fused.rs, CUDA in kernels/fused.cu):
//! - on the CPU in f64, each equals the composite of elementwise and group ops it replaces;
//! - the tape ops are checked against f64 finite differences, first and second order (their
//!   backward rule is the composite's);
//! - on the CUDA backend (GPU, or the host emulator in every CI run), each kernel against the CPU
//!   reference on random inputs and odd shapes, with every fresh allocation poisoned (NaN).

mod common;
mod cuda_devices;

use common::*;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::cuda::Cuda;
use wgan::backend::{Backend, Group, PenaltyKind};
use wgan::rng::HostRng;
use wgan::tape::{Tape, Var};

fn u(shape: &[usize], seed: u64) -> Input {
    input(shape, uniform(shape.iter().product(), -1.0, 1.0, seed))
}

fn max_diff(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    let s = b.iter().fold(1e-300f64, |m, y| m.max(y.abs()));
    (d, s)
}

/// The fused op's value and the composite's, on one f64 tape.
fn fused_vs_composite(inputs: &[Input], fused: Build, composite: Build) -> (Vec<f64>, Vec<f64>) {
    let mut t = Tape::new(be64());
    let vars: Vec<Var> = inputs.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let a = fused(&mut t, &vars);
    let b = composite(&mut t, &vars);
    (t.to_f64(a), t.to_f64(b))
}

#[test]
fn normalize_hvp_equals_its_composite() {
    for shape in [vec![3usize, 2, 2, 3], vec![5, 3], vec![2, 7, 3, 1], vec![1, 4, 5, 5]] {
        for g in [Group::Sample, Group::Channel, Group::All] {
            for eps in [1e-5, 0.3] {
                let ins = [u(&shape, 1), u(&shape, 2), input(&shape, uniform(shape.iter().product(), -2.0, 3.0, 3))];
                let (a, b) = fused_vs_composite(&ins, &|t, v| t.normalize_hvp(v[0], v[1], v[2], g, eps), &|t, v| {
                    t.normalize_hvp_composite(v[0], v[1], v[2], g, eps)
                });
                let (d, s) = max_diff(&a, &b);
                assert!(d <= 1e-12 * s, "normalize_hvp {shape:?} {g:?} eps {eps}: |diff| {d:e}, scale {s:e}");
            }
        }
    }
}

/// Gradients with norms on both sides of 1 (the one-sided form's two branches).
fn penalty_inputs() -> [Input; 3] {
    let g = input(&[3, 4], vec![0.1, -0.2, 0.3, 0.1, 0.9, 0.8, -0.7, 0.4, 1.1, -0.9, 0.8, 0.3]);
    [g, input(&[1], vec![0.7]), u(&[3, 4], 4)]
}

#[test]
fn penalty_hvp_equals_its_composite() {
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        let (a, b) =
            fused_vs_composite(&penalty_inputs(), &|t, v| t.penalty_hvp(v[0], v[1], v[2], kind, 1e-12), &|t, v| {
                t.penalty_hvp_composite(v[0], v[1], v[2], kind, 1e-12)
            });
        let (d, s) = max_diff(&a, &b);
        assert!(d <= 1e-12 * s, "penalty_hvp {kind:?}: |diff| {d:e}, scale {s:e}");
    }
}

#[test]
fn fused_ops_pass_first_and_second_order_gradchecks() {
    for g in [Group::Sample, Group::Channel] {
        let x = input(&[3, 2, 2, 3], uniform(36, -2.0, 3.0, 5));
        let ins = [u(&[3, 2, 2, 3], 6), u(&[3, 2, 2, 3], 7), x];
        check(&format!("normalize_hvp {g:?}"), &|t, v| t.normalize_hvp(v[0], v[1], v[2], g, 1e-5), &ins);
    }
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        check(
            &format!("penalty_hvp {kind:?}"),
            &|t, v| t.penalty_hvp(v[0], v[1], v[2], kind, 1e-12),
            &penalty_inputs(),
        );
    }
}

#[test]
fn group_affine_equals_group_mul_then_group_add() {
    for (shape, g) in
        [(vec![3usize, 4, 2, 3], Group::Channel), (vec![5, 3], Group::Channel), (vec![3, 2, 5], Group::Sample)]
    {
        let k = g.count(&shape);
        let ins = [u(&shape, 9), u(&[k], 10), u(&[k], 11)];
        let (a, b) = fused_vs_composite(&ins, &|t, v| t.group_affine(v[0], v[1], v[2], g), &|t, v| {
            let y = t.group_mul(v[0], v[1], g);
            t.group_add(y, v[2], g)
        });
        assert_eq!(a, b, "group_affine {shape:?} {g:?}: the same roundings as the two ops");
        check(&format!("group_affine {shape:?} {g:?}"), &|t, v| t.group_affine(v[0], v[1], v[2], g), &ins);
        for slope in [0.0, 0.2] {
            let (a, b) =
                fused_vs_composite(&ins, &|t, v| t.group_affine_leaky_relu(v[0], v[1], v[2], g, slope), &|t, v| {
                    let y = t.group_affine(v[0], v[1], v[2], g);
                    t.leaky_relu(y, slope)
                });
            assert_eq!(a, b, "group_affine_leaky_relu({slope}) {shape:?} {g:?}: the same roundings as the two ops");
            // Offsets away from 0 keep the finite differences off the kink.
            let x = input(&shape, away_from_zero(shape.iter().product(), 0.2, 1.0, 12));
            let ins = [x, input(&[k], uniform(k, 0.5, 1.5, 13)), input(&[k], vec![0.0; k])];
            check(
                &format!("group_affine_leaky_relu({slope}) {shape:?} {g:?}"),
                &|t, v| t.group_affine_leaky_relu(v[0], v[1], v[2], g, slope),
                &ins,
            );
        }
    }
}

#[test]
fn batch_norm_running_update_equals_the_composite() {
    let be = be64();
    let shape = [5usize, 3, 2, 3];
    let x = be.from_f64(&uniform(90, -2.0, 3.0, 8), &shape);
    let (rm, rv) = (be.from_f64(&[0.1, -0.2, 0.3], &[3]), be.from_f64(&[1.0, 0.5, 2.0], &[3]));
    // The composite the fused op replaced (what nn::update_running_stats did before).
    let m = 30.0;
    let mean = be.scale(&be.group_sum(&x, Group::Channel), 1.0 / m);
    let xc = be.sub(&x, &be.group_broadcast(&mean, Group::Channel, &shape));
    let var = be.scale(&be.group_sum(&be.mul(&xc, &xc), Group::Channel), 1.0 / (m - 1.0));
    let (em, ev) = (be.deep_copy(&rm), be.deep_copy(&rv));
    be.axpby_inplace(&em, 0.9, &mean, 0.1);
    be.axpby_inplace(&ev, 0.9, &var, 0.1);
    be.batch_norm_running_update(&x, &rm, &rv, 0.1);
    for (what, a, b) in [("mean", &rm, &em), ("var", &rv, &ev)] {
        let (d, s) = max_diff(&be.to_f64(a), &be.to_f64(b));
        assert!(d <= 1e-14 * s, "running {what}: |diff| {d:e}");
    }
}

// ---- the CUDA kernels against the CPU reference ----

struct Pair {
    g: Cuda,
    c: Cpu<f32>,
    rng: HostRng,
}

impl Pair {
    fn data(
        &mut self,
        shape: &[usize],
        s: f32,
        offset: f32,
    ) -> (<Cuda as Backend>::Tensor, <Cpu<f32> as Backend>::Tensor) {
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| self.rng.normal() as f32 * s + offset).collect();
        (self.g.from_f32(&v, shape), self.c.from_f32(&v, shape))
    }
    fn ok(&self) {
        if let Err(e) = self.g.check() {
            panic!("CUDA error: {e}");
        }
    }
}

fn pair(on: On) -> Option<Pair> {
    let g = cuda_devices::open(on)?;
    g.set_poison(true);
    Some(Pair { g, c: Cpu::new(), rng: HostRng::new(12345, 7) })
}

fn normalize_hvp_kernels(on: On) {
    let Some(mut t) = pair(on) else { return };
    // Odd shapes, a per-sample group longer than a block, a split-free Group::All.
    for shape in [vec![3usize, 5], vec![3, 67, 5, 5], vec![1, 5, 3, 3], vec![2, 3, 33, 31]] {
        let (gx, cx) = t.data(&shape, 3.0, 1.5);
        let (gg, cg) = t.data(&shape, 1.0, 0.2);
        let (gh, ch) = t.data(&shape, 1.0, -0.1);
        for group in [Group::Sample, Group::Channel, Group::All] {
            let s = format!("normalize_hvp {group:?} {shape:?}");
            let a = t.g.to_f32(&t.g.normalize_hvp(&gg, &gh, &gx, group, 1e-5));
            let b = t.c.to_f32(&t.c.normalize_hvp(&cg, &ch, &cx, group, 1e-5));
            close(&s, &a, &b, 1e-4);
        }
        t.ok();
    }
}

fn penalty_hvp_kernels(on: On) {
    let Some(mut t) = pair(on) else { return };
    for shape in [vec![3usize, 5], vec![5, 3, 7, 7], vec![1, 1000]] {
        for scale in [0.05f32, 1.0] {
            // scale 0.05: norms below 1 (the one-sided form's zero branch) for most samples.
            let (gg, cg) = t.data(&shape, scale, 0.0);
            let (gh, ch) = t.data(&shape, 1.0, 0.0);
            let (gu, cu) = (t.g.from_f32(&[0.7], &[1]), t.c.from_f32(&[0.7], &[1]));
            for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
                let s = format!("penalty_hvp {kind:?} {shape:?} scale {scale}");
                let a = t.g.to_f32(&t.g.penalty_hvp(&gg, &gu, &gh, kind, 1e-12));
                let b = t.c.to_f32(&t.c.penalty_hvp(&cg, &cu, &ch, kind, 1e-12));
                close(&s, &a, &b, 1e-4);
            }
        }
        t.ok();
    }
}

fn group_affine_kernel(on: On) {
    let Some(mut t) = pair(on) else { return };
    for (shape, group) in [
        (vec![3usize, 5], Group::Channel),
        (vec![3, 67, 5, 5], Group::Channel),
        (vec![2, 3, 33, 31], Group::Sample),
        (vec![7, 1, 1, 1], Group::All),
    ] {
        let k = group.count(&shape);
        let (gx, cx) = t.data(&shape, 2.0, 0.3);
        let (gs, cs) = t.data(&[k], 1.0, 1.0);
        let (gb, cb) = t.data(&[k], 1.0, 0.0);
        for leaky in [None, Some(0.0), Some(0.2)] {
            let a = t.g.to_f32(&t.g.group_affine(&gx, &gs, &gb, group, leaky));
            let b = t.c.to_f32(&t.c.group_affine(&cx, &cs, &cb, group, leaky));
            // One rounding apart at most (a fused multiply-add on the device).
            close(&format!("group_affine {leaky:?} {group:?} {shape:?}"), &a, &b, 2e-6);
        }
        t.ok();
    }
}

fn batch_norm_running_kernel(on: On) {
    let Some(mut t) = pair(on) else { return };
    for shape in [vec![3usize, 5], vec![7, 3, 5, 5], vec![2, 67, 3, 3], vec![1, 2, 64, 64]] {
        let c = shape[1];
        let (gx, cx) = t.data(&shape, 2.0, 0.5);
        let (grm, crm) = t.data(&[c], 1.0, 0.0);
        let (grv, crv) = t.data(&[c], 0.3, 1.0);
        // Views into a larger buffer, as the running statistics are in the model's flat buffer.
        let big = t.g.fill(&[3 * c + 1], f64::NAN);
        t.g.copy_into_inplace(&big, 1, &grm);
        t.g.copy_into_inplace(&big, 1 + 2 * c, &grv);
        let (vm, vv) = (t.g.view(&big, 1, &[c]), t.g.view(&big, 1 + 2 * c, &[c]));
        t.g.batch_norm_running_update(&gx, &vm, &vv, 0.1);
        t.c.batch_norm_running_update(&cx, &crm, &crv, 0.1);
        let s = format!("{shape:?}");
        close(&format!("running mean {s}"), &t.g.to_f32(&vm), &t.c.to_f32(&crm), 1e-5);
        close(&format!("running var {s}"), &t.g.to_f32(&vv), &t.c.to_f32(&crv), 1e-5);
        // The elements around the views are untouched.
        let all = t.g.to_f32(&big);
        assert!(all[0].is_nan() && all[1 + c..1 + 2 * c].iter().all(|v| v.is_nan()), "{s}: wrote outside the views");
        t.ok();
    }
}

on_gpu_and_emulator!(normalize_hvp_kernels, penalty_hvp_kernels, group_affine_kernel, batch_norm_running_kernel);
