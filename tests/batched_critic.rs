//! The critic's batches in one pass give the gradients of separate passes. Without a penalty,
//! real and fake run as one pass of 2N stacked samples (`critic_on_both`, used by `critic_loss`
//! and `discriminator_loss`); with the penalty, real, fake and x̂ run as one forward pass of 3N
//! samples whose real+fake rows and x̂ rows are recorded apart (`Net::forward_parts`), so the
//! loss's backward runs over 2N rows and ∇ₓD(x̂) and its double backward over N. Checked against
//! three separate passes (real, fake, x̂), on the CPU in f64 to rounding and on the CUDA backend
//! (GPU, or the host emulator in every CI run) to f32 reduction-order differences, for DCGAN
//! critics with and without layer norm and for the toy MLP.
//!
//! Also the pieces: the row ops (`concat_rows`, `rows`, `pad_rows`) and `critic_input` against
//! f64 finite differences, first and second order; `critic_input_f32` on the emulator against the
//! CPU reference (odd sizes, poisoned output); `join_rows` on both backends; and
//! `Tape::per_sample_parts` (one evaluation over adjacent row blocks, recorded per part) against
//! finite differences and against evaluating each part alone.

mod common;
mod cuda_devices;

use common::*;
use cuda_devices::rounded::Rounded;
use cuda_devices::On;
use wgan::backend::cpu::Cpu;
use wgan::backend::{Backend, ConvParams, Group, PenaltyKind};
use wgan::nn::arch::{dcgan_critic, toy_critic_with, CriticNorm};
use wgan::nn::{BatchNormMode, Model, Net};
use wgan::tape::{Tape, Var};
use wgan::train::gan::{critic_loss, PENALTY_EPS};

#[test]
fn row_ops_pass_gradchecks() {
    let a = input(&[2, 3], uniform(6, -1.0, 1.0, 1));
    let b = input(&[3, 3], uniform(9, -1.0, 1.0, 2));
    check(
        "concat_rows",
        &|t, v| {
            let c = t.concat_rows(v[0], v[1]);
            t.mul(c, c)
        },
        &[a.clone(), b.clone()],
    );
    check(
        "rows",
        &|t, v| {
            let r = t.rows(v[0], 1, 2);
            t.mul(r, r)
        },
        &[b.clone()],
    );
    check(
        "pad_rows",
        &|t, v| {
            let p = t.pad_rows(v[0], 2, 5);
            t.mul(p, p)
        },
        &[a],
    );
}

/// The critic loss of the step before batching: D on real, fake (and x̂) as separate passes.
fn separate_passes<B: Backend>(
    t: &mut Tape<B>,
    net: &Net,
    params: &[Var],
    real: Var,
    fake: Var,
    gp: Option<(Var, f64, PenaltyKind)>,
) -> Var {
    let d_real = net.forward(t, params, real, BatchNormMode::Train(None));
    let d_fake = net.forward(t, params, fake, BatchNormMode::Train(None));
    let (m_real, m_fake) = (t.mean(d_real), t.mean(d_fake));
    let mut loss = t.sub(m_fake, m_real);
    if let Some((eps, lambda, kind)) = gp {
        let mixed = t.interpolate(real, fake, eps);
        let x_hat = t.detached_leaf(mixed);
        let d_hat = net.forward(t, params, x_hat, BatchNormMode::Train(None));
        let s = t.sum(d_hat);
        let g = t.grad(&[s], &[x_hat], true)[0];
        let p = t.penalty(g, kind, PENALTY_EPS);
        let lp = t.scale(p, lambda);
        loss = t.add(loss, lp);
    }
    loss
}

/// (loss, gradients) of the batched `critic_loss` and of the separate passes, on `be`.
fn both_ways<B: Backend>(be: &B, net: &Net, n: usize, with_gp: bool) -> [(Vec<f64>, Vec<Vec<f64>>); 2] {
    let model = Model::new(be, net.clone(), 5, 2);
    let mut shape = vec![n];
    shape.extend(&net.input);
    let len: usize = shape.iter().product();
    let real = be.from_f64(&uniform(len, -1.0, 1.0, 70), &shape);
    let fake = be.from_f64(&uniform(len, -1.0, 1.0, 71), &shape);
    let eps = be.from_f64(&uniform(n, 0.0, 1.0, 72), &[n]);
    std::array::from_fn(|k| {
        let mut t = Tape::new(be.clone());
        let params = model.param_leaves(&mut t);
        let (r, f) = (t.constant(real.clone()), t.constant(fake.clone()));
        let gp = with_gp.then(|| (t.constant(eps.clone()), 10.0, PenaltyKind::TwoSided));
        let loss = if k == 0 {
            critic_loss(&mut t, net, &params, r, f, gp).loss
        } else {
            separate_passes(&mut t, net, &params, r, f, gp)
        };
        let grads = t.grad(&[loss], &params, false);
        (t.to_f64(loss), grads.iter().map(|&g| t.to_f64(g)).collect())
    })
}

fn assert_same(what: &str, [a, b]: &[(Vec<f64>, Vec<Vec<f64>>); 2], rtol: f64) {
    let rel = |x: &[f64], y: &[f64]| {
        // A floor for gradients that cancel to 0 (the last bias under the WGAN loss: 1 − 1).
        let s = y.iter().fold(1e-4f64, |m, v| m.max(v.abs()));
        x.iter().zip(y).fold(0f64, |m, (p, q)| m.max((p - q).abs())) / s
    };
    assert!(rel(&a.0, &b.0) <= rtol, "{what}: loss {:?} batched vs {:?} separate", a.0, b.0);
    for (i, (ga, gb)) in a.1.iter().zip(&b.1).enumerate() {
        assert!(ga.iter().all(|v| v.is_finite()), "{what}: parameter {i}: non-finite gradient");
        let r = rel(ga, gb);
        assert!(r <= rtol, "{what}: parameter {i}: batched and separate gradients differ by {r:e} (relative)");
    }
}

fn critics() -> Vec<(&'static str, Net, usize)> {
    vec![
        ("dcgan28 layer norm", dcgan_critic(28, 1, 4, CriticNorm::Layer).unwrap(), 3),
        ("dcgan32 no norm", dcgan_critic(32, 3, 3, CriticNorm::None).unwrap(), 2),
        ("toy mlp", toy_critic_with(16), 5),
    ]
}

#[test]
fn batched_critic_gives_the_gradients_of_separate_passes_cpu() {
    for (name, net, n) in critics() {
        for gp in [false, true] {
            let r = both_ways(&Cpu::<f64>::new(), &net, n, gp);
            assert_same(&format!("{name} gp={gp} (cpu f64)"), &r, 1e-11);
        }
    }
}

/// A tolerance of `rtol` at f32, widened at TF32 and BF16 (`WGAN_TEST_PRECISION`): there the two
/// ways' f32 sums differ in order, a last-bit difference can round an operand of the next layer to
/// a neighbouring TF32/BF16 value, and so the results differ by a few of its unit roundoffs.
fn tol(rtol: f64) -> f64 {
    let p = cuda_devices::precision();
    if p == wgan::backend::Precision::F32 {
        rtol
    } else {
        rtol + 16.0 * p.unit_roundoff()
    }
}

fn batched_critic_on_cuda(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    for (name, net, n) in critics() {
        for gp in [false, true] {
            let r = both_ways(&g, &net, n, gp);
            g.check().expect("CUDA");
            assert_same(&format!("{name} gp={gp} ({on:?})"), &r, tol(1e-4));
            // And the batched CUDA result against the CPU reference.
            // (At TF32/BF16: the CPU with the operands rounded as the tensor cores round them.)
            let c = both_ways(&Rounded::new(Cpu::<f32>::new(), cuda_devices::precision()), &net, n, gp);
            assert_same(&format!("{name} gp={gp} ({on:?} vs cpu)"), &[r[0].clone(), c[0].clone()], tol(1e-3));
        }
    }
}

on_gpu_and_emulator!(batched_critic_on_cuda);

// ---- the fused critic input ----

#[test]
fn critic_input_is_real_fake_and_their_interpolation() {
    let be = be64();
    let shape = [3usize, 2, 3, 1];
    let (r, f, e) = (uniform(18, -1.0, 1.0, 80), uniform(18, -1.0, 1.0, 81), uniform(3, 0.0, 1.0, 82));
    let (rt, ft, et) = (be.from_f64(&r, &shape), be.from_f64(&f, &shape), be.from_f64(&e, &[3]));
    let all = be.critic_input(&rt, &ft, Some(&et));
    assert_eq!(be.shape(&all), [9, 2, 3, 1]);
    let mixed = be.to_f64(&be.interpolate(&rt, &ft, &et));
    assert_eq!(be.to_f64(&all), [&r[..], &f[..], &mixed[..]].concat());
    let both = be.critic_input(&rt, &ft, None);
    assert_eq!(be.shape(&both), [6, 2, 3, 1]);
    assert_eq!(be.to_f64(&both), [&r[..], &f[..]].concat());
}

#[test]
fn critic_input_passes_gradchecks() {
    let eps = uniform(3, 0.0, 1.0, 83);
    let ins = [input(&[3, 2, 2], uniform(12, -1.0, 1.0, 84)), input(&[3, 2, 2], uniform(12, -1.0, 1.0, 85))];
    check(
        "critic_input with ε",
        &|t, v| {
            let e = t.constant(be64().from_f64(&eps, &[3]));
            let y = t.critic_input(v[0], v[1], Some(e));
            t.mul(y, y)
        },
        &ins,
    );
    check(
        "critic_input without ε",
        &|t, v| {
            let y = t.critic_input(v[0], v[1], None);
            t.mul(y, y)
        },
        &ins,
    );
}

fn critic_input_kernel(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    g.set_poison(true);
    let c = Cpu::<f32>::new();
    for shape in [vec![1usize, 1], vec![3, 5], vec![7, 3, 5, 5], vec![2, 1, 33, 31], vec![5, 2]] {
        let n: usize = shape.iter().product();
        let data = |seed| uniform(n, -2.0, 2.0, seed).iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let (r, f) = (data(90), data(91));
        let e: Vec<f32> = uniform(shape[0], 0.0, 1.0, 92).iter().map(|&v| v as f32).collect();
        let (gr, gf, ge) = (g.from_f32(&r, &shape), g.from_f32(&f, &shape), g.from_f32(&e, &[shape[0]]));
        let (cr, cf, ce) = (c.from_f32(&r, &shape), c.from_f32(&f, &shape), c.from_f32(&e, &[shape[0]]));
        let g_mixed = g.to_f32(&g.interpolate(&gr, &gf, &ge));
        for with_eps in [false, true] {
            let what = format!("critic_input {shape:?} ε {with_eps} ({on:?})");
            let out = g.critic_input(&gr, &gf, with_eps.then_some(&ge));
            let a = g.to_f32(&out);
            let b = c.to_f32(&c.critic_input(&cr, &cf, with_eps.then_some(&ce)));
            let mut want_shape = shape.clone();
            want_shape[0] *= if with_eps { 3 } else { 2 };
            assert_eq!(g.shape(&out), &want_shape[..], "{what}: shape");
            assert_eq!(a.len(), b.len(), "{what}: length");
            assert!(a.iter().all(|v| v.is_finite()), "{what}: an element left unwritten (NaN poison)");
            // Real and fake rows are copies; x̂ is the interpolate kernel's, bit for bit, and one
            // rounding from the CPU's (a fused multiply-add on the device).
            assert_eq!(a[..2 * n], b[..2 * n], "{what}: real and fake rows");
            if with_eps {
                assert_eq!(a[2 * n..], g_mixed[..], "{what}: x̂ rows differ from interpolate_f32's");
                for (i, (x, y)) in a[2 * n..].iter().zip(&b[2 * n..]).enumerate() {
                    assert!((x - y).abs() <= 2e-6 * y.abs().max(1.0), "{what}: x̂[{i}] {x} vs cpu {y}");
                }
            }
        }
        g.check().expect("CUDA");
    }
}

// ---- joined rows and per-sample parts ----

fn join_rows_rule<B: Backend>(be: &B) {
    let buf = be.from_f64(&uniform(40, -1.0, 1.0, 93), &[10, 2, 2]);
    let a = be.view(&buf, 0, &[3, 2, 2]);
    let b = be.view(&buf, 12, &[2, 2, 2]);
    let c = be.view(&buf, 20, &[5, 4]);
    let j = be.join_rows(&[&a, &b]).expect("adjacent row blocks join");
    assert_eq!(be.shape(&j), [5, 2, 2]);
    assert_eq!(be.to_f64(&j), be.to_f64(&buf)[..20]);
    assert!(be.join_rows(&[&b, &a]).is_none(), "out of order");
    assert!(be.join_rows(&[&a, &be.view(&buf, 16, &[2, 2, 2])]).is_none(), "a gap");
    assert!(be.join_rows(&[&b, &c]).is_none(), "other dims after dim 0");
    assert!(be.join_rows(&[&a, &be.deep_copy(&b)]).is_none(), "another buffer");
}

#[test]
fn join_rows_accepts_only_adjacent_row_blocks_cpu() {
    join_rows_rule(&be64());
}

/// A chain of the critics' per-sample ops (convolution, layer norm, affine + LeakyReLU, tanh; and
/// linear, LeakyReLU) on `parts`, each op through `per_sample_parts`.
fn conv_chain<B: Backend>(t: &mut Tape<B>, parts: &[Var], w: Var, s: Var, b: Var) -> Vec<Var> {
    let h = t.per_sample_parts(parts, |t, x| t.conv2d(x, w, ConvParams::new(2, 1)));
    let h = t.per_sample_parts(&h, |t, x| t.normalize(x, Group::Sample, 1e-5));
    let h = t.per_sample_parts(&h, |t, x| t.group_affine_leaky_relu(x, s, b, Group::Channel, 0.2));
    t.per_sample_parts(&h, |t, x| t.tanh(x))
}

fn mlp_chain<B: Backend>(t: &mut Tape<B>, parts: &[Var], w: Var, b: Var) -> Vec<Var> {
    let h = t.per_sample_parts(parts, |t, x| t.linear(x, w, b));
    let h = t.per_sample_parts(&h, |t, x| t.leaky_relu(x, 0.2));
    t.per_sample_parts(&h, |t, x| t.scale(x, 1.5))
}

/// Rows 0..3 and 3..5 of x as two parts, through `chain`; the parts' outputs must share one buffer
/// (one evaluation), and the result is part 0 squared (a non-linear loss path) beside part 1.
fn on_two_parts(t: &mut Tape<B64>, x: Var, chain: impl Fn(&mut Tape<B64>, &[Var]) -> Vec<Var>) -> Var {
    let parts = [t.rows(x, 0, 3), t.rows(x, 3, 2)];
    let y = chain(t, &parts);
    assert!(t.backend().join_rows(&[t.value(y[0]), t.value(y[1])]).is_some(), "the parts were not evaluated together");
    let sq = t.mul(y[0], y[0]);
    t.concat_rows(sq, y[1])
}

#[test]
fn per_sample_parts_pass_gradchecks() {
    let k = 3;
    check(
        "per_sample_parts conv chain",
        &|t, v| on_two_parts(t, v[0], |t, p| conv_chain(t, p, v[1], v[2], v[3])),
        &[
            input(&[5, 2, 4, 4], uniform(160, -1.0, 1.0, 94)),
            input(&[k, 2, 3, 3], uniform(54, -0.5, 0.5, 95)),
            input(&[k], uniform(k, 0.5, 1.5, 96)),
            input(&[k], uniform(k, -0.3, 0.3, 97)),
        ],
    );
    check(
        "per_sample_parts mlp chain",
        &|t, v| on_two_parts(t, v[0], |t, p| mlp_chain(t, p, v[1], v[2])),
        &[
            input(&[5, 3], away_from_zero(15, 0.2, 1.0, 98)),
            input(&[4, 3], uniform(12, -1.0, 1.0, 99)),
            input(&[4], uniform(4, -0.2, 0.2, 100)),
        ],
    );
}

/// (values, gradients of a loss on both parts w.r.t. x and every parameter) with the parts as rows of
/// one buffer (`joined`) or as two separate tensors.
fn parts_two_ways<B: Backend>(be: &B, joined: bool) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let x = be.from_f64(&uniform(160, -1.0, 1.0, 101), &[5, 2, 4, 4]);
    let mut t = Tape::new(be.clone());
    let w = t.leaf(be.from_f64(&uniform(54, -0.5, 0.5, 102), &[3, 2, 3, 3]));
    let s = t.leaf(be.from_f64(&uniform(3, 0.5, 1.5, 103), &[3]));
    let b = t.leaf(be.from_f64(&uniform(3, -0.3, 0.3, 104), &[3]));
    let parts = if joined {
        let x = t.leaf(x);
        [t.rows(x, 0, 3), t.rows(x, 3, 2)]
    } else {
        [t.leaf(be.view(&be.deep_copy(&x), 0, &[3, 2, 4, 4])), t.leaf(be.deep_copy(&be.view(&x, 96, &[2, 2, 4, 4])))]
    };
    let y = conv_chain(&mut t, &parts, w, s, b);
    assert_eq!(be.join_rows(&[t.value(y[0]), t.value(y[1])]).is_some(), joined);
    // The penalty's pattern on part 1: a create-graph gradient w.r.t. the part, then its square.
    let s1 = t.sum(y[1]);
    let g1 = t.grad(&[s1], &[parts[1]], true)[0];
    let gg = t.mul(g1, g1);
    let p = t.sum(gg);
    let sq = t.mul(y[0], y[0]);
    let l0 = t.sum(sq);
    let loss = t.add(l0, p);
    let grads = t.grad(&[loss], &[w, s, b], false);
    (y.iter().map(|&v| t.to_f64(v)).collect(), grads.iter().map(|&v| t.to_f64(v)).collect())
}

#[test]
fn per_sample_parts_equal_separate_evaluations_cpu() {
    let (a, b) = (parts_two_ways(&be64(), true), parts_two_ways(&be64(), false));
    for (what, x, y) in [("values", &a.0, &b.0), ("gradients", &a.1, &b.1)] {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let s = q.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
            let d = p.iter().zip(q).fold(0f64, |m, (u, v)| m.max((u - v).abs()));
            assert!(d <= 1e-12 * s, "{what} {i}: joined and separate differ by {d:e} (scale {s:e})");
        }
    }
}

#[test]
#[should_panic(expected = "not a per-sample op")]
fn per_sample_parts_refuses_an_op_that_couples_samples() {
    let be = be64();
    let mut t = Tape::new(be.clone());
    let x = t.leaf(be.from_f64(&uniform(10, -1.0, 1.0, 105), &[5, 2]));
    let parts = [t.rows(x, 0, 3), t.rows(x, 3, 2)];
    t.per_sample_parts(&parts, |t, x| t.normalize(x, Group::Channel, 1e-5));
}

fn parts_on_cuda(on: On) {
    let Some(g) = cuda_devices::open(on) else { return };
    join_rows_rule(&g);
    // One evaluation: the two parts' forward costs the launches of one part's.
    let count = |parts: usize| {
        let mut t = Tape::new(g.clone());
        let x = t.constant(g.from_f64(&uniform(160, -1.0, 1.0, 106), &[5, 2, 4, 4]));
        let w = t.leaf(g.from_f64(&uniform(54, -0.5, 0.5, 107), &[3, 2, 3, 3]));
        let s = t.leaf(g.fill(&[3], 1.0));
        let b = t.leaf(g.fill(&[3], 0.0));
        let p = if parts == 2 { vec![t.rows(x, 0, 3), t.rows(x, 3, 2)] } else { vec![x] };
        let before = g.device_counts().expect("counts").launches;
        let _ = conv_chain(&mut t, &p, w, s, b);
        g.device_counts().expect("counts").launches - before
    };
    assert_eq!(count(2), count(1), "per_sample_parts on CUDA did not evaluate the parts together");
    let cpu = Rounded::new(Cpu::<f32>::new(), cuda_devices::precision());
    let (a, c) = (parts_two_ways(&g, true), parts_two_ways(&cpu, false));
    for (what, x, y) in [("values", &a.0, &c.0), ("gradients", &a.1, &c.1)] {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let s = q.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            let d = p.iter().zip(q).fold(0f64, |m, (u, v)| m.max((u - v).abs()));
            assert!(
                d <= tol(1e-4) * s,
                "{what} {i} ({on:?}): joined CUDA and separate CPU differ by {d:e} (scale {s:e})"
            );
        }
    }
    g.check().expect("CUDA");
}

on_gpu_and_emulator!(critic_input_kernel, parts_on_cuda);
