//! The WGAN-GP critic loss, checked as a whole: its gradient with respect to the critic's weights
//! (which runs through ∇ₓD(x̂), a double backward) against finite differences in f64, for an MLP
//! critic and a small conv critic with leaky ReLU and layer norm; and tests that catch the classic
//! penalty mistakes, each shown to fail on a version of the loss that makes the mistake.

mod common;
use common::*;
use wgan::backend::{Backend, ConvParams, Group, PenaltyKind};
use wgan::nn::{BatchNormMode, Layer, Net};
use wgan::tape::{Tape, Var};
use wgan::train::gan::{critic_loss, PENALTY_EPS};

fn mlp_critic() -> Net {
    Net::new(
        vec![
            Layer::Linear { inp: 2, out: 6 },
            Layer::Relu,
            Layer::Linear { inp: 6, out: 5 },
            Layer::Relu,
            Layer::Linear { inp: 5, out: 1 },
        ],
        vec![2],
    )
}

fn conv_critic() -> Net {
    Net::new(
        vec![
            Layer::Conv { cin: 2, cout: 3, k: 3, p: ConvParams::new(2, 1) },
            Layer::LeakyRelu(0.2),
            Layer::Conv { cin: 3, cout: 4, k: 3, p: ConvParams::new(1, 1) },
            Layer::LayerNorm { c: 4 },
            Layer::LeakyRelu(0.2),
            Layer::Conv { cin: 4, cout: 1, k: 3, p: ConvParams::new(1, 0) },
        ],
        vec![2, 5, 5],
    )
}

/// Random parameters: normal-ish weights large enough that ‖∇ₓD‖ is near 1 (both branches of the
/// penalty matter), layer-norm scales near 1.
fn params_for(net: &Net, seed: u64) -> Vec<Input> {
    net.params
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.len();
            let v = if s.name.ends_with("weight") && s.shape.len() == 1 {
                uniform(n, 0.7, 1.3, seed + i as u64)
            } else {
                uniform(n, -0.8, 0.8, seed + i as u64)
            };
            input(&s.shape, v)
        })
        .collect()
}

struct Setup {
    net: Net,
    real: Vec<f64>,
    fake: Vec<f64>,
    eps: Vec<f64>,
    shape: Vec<usize>,
}

fn setup(net: Net, n: usize) -> Setup {
    let mut shape = vec![n];
    shape.extend(&net.input);
    let len = shape.iter().product();
    Setup {
        real: uniform(len, -1.0, 1.0, 70),
        fake: uniform(len, -1.0, 1.0, 71),
        eps: uniform(n, 0.0, 1.0, 72),
        shape,
        net,
    }
}

fn build_loss(s: &Setup, kind: PenaltyKind, lambda: f64) -> impl Fn(&mut Tape<B64>, &[Var]) -> Var + '_ {
    move |t, params| {
        let be = be64();
        let real = t.constant(be.from_f64(&s.real, &s.shape));
        let fake = t.constant(be.from_f64(&s.fake, &s.shape));
        let eps = t.constant(be.from_f64(&s.eps, &[s.shape[0]]));
        critic_loss(t, &s.net, params, real, fake, Some((eps, lambda, kind))).loss
    }
}

#[test]
fn wgan_gp_loss_gradient_mlp_critic() {
    let s = setup(mlp_critic(), 4);
    let p = params_for(&s.net, 80);
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        gradcheck(&format!("WGAN-GP loss, MLP critic, {kind:?}"), &build_loss(&s, kind, 10.0), &p);
    }
}

#[test]
fn wgan_gp_loss_gradient_conv_critic() {
    let s = setup(conv_critic(), 3);
    let p = params_for(&s.net, 90);
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        gradcheck(&format!("WGAN-GP loss, conv critic, {kind:?}"), &build_loss(&s, kind, 10.0), &p);
    }
}

/// Gradient of the loss w.r.t. the parameters from the tape, and by central differences.
fn tape_vs_numeric(f: &dyn Fn(&mut Tape<B64>, &[Var]) -> Var, p: &[Input]) -> f64 {
    let mut t = Tape::new(be64());
    let vars: Vec<Var> = p.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let l = f(&mut t, &vars);
    let g = t.grad(&[l], &vars, false);
    let a: Vec<Vec<f64>> = g.iter().map(|&v| t.to_f64(v)).collect();
    let eval = |x: &[Input]| {
        let mut t = Tape::new(be64());
        let vars: Vec<Var> = x.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
        let l = f(&mut t, &vars);
        t.to_f64(l)[0]
    };
    let mut n = Vec::new();
    for k in 0..p.len() {
        n.push(
            (0..p[k].values.len())
                .map(|j| {
                    let (mut a, mut b) = (p.to_vec(), p.to_vec());
                    a[k].values[j] += 1e-6;
                    b[k].values[j] -= 1e-6;
                    (eval(&a) - eval(&b)) / 2e-6
                })
                .collect(),
        );
    }
    worst(&a, &n, 1e-6, 1e-5).0
}

#[test]
fn dropping_the_second_order_term_is_caught() {
    // The mistake: ∇ₓD(x̂) taken without create_graph, so the penalty sends no gradient to the
    // weights. The same check that passes on `critic_loss` must fail on it.
    let s = setup(mlp_critic(), 4);
    let p = params_for(&s.net, 80);
    let wrong = |t: &mut Tape<B64>, params: &[Var]| {
        let be = be64();
        let real = t.constant(be.from_f64(&s.real, &s.shape));
        let fake = t.constant(be.from_f64(&s.fake, &s.shape));
        let eps = t.constant(be.from_f64(&s.eps, &[s.shape[0]]));
        let base = critic_loss(t, &s.net, params, real, fake, None).loss;
        let mixed = t.interpolate(real, fake, eps);
        let x_hat = t.detached_leaf(mixed);
        let d = s.net.forward(t, params, x_hat, BatchNormMode::Train(None));
        let sd = t.sum(d);
        let g = t.grad(&[sd], &[x_hat], false)[0]; // <- the mistake
        let pen = t.penalty(g, PenaltyKind::TwoSided, PENALTY_EPS);
        let lp = t.scale(pen, 10.0);
        t.add(base, lp)
    };
    assert!(tape_vs_numeric(&build_loss(&s, PenaltyKind::TwoSided, 10.0), &p) <= 1.0);
    let r = tape_vs_numeric(&wrong, &p);
    assert!(r > 100.0, "the check did not notice a dropped second-order term (ratio {r})");
}

/// ∇ₓD at each sample of `x` by central differences of D (f64), then the penalty computed the
/// textbook way: the norm over each sample's whole (C,H,W).
fn reference_penalty(net: &Net, params: &[Input], x: &[f64], shape: &[usize], per_sample_norm: bool) -> f64 {
    let d_of = |x: &[f64]| -> Vec<f64> {
        let mut t = Tape::new(be64());
        let p: Vec<Var> = params.iter().map(|i| t.constant(be64().from_f64(&i.values, &i.shape))).collect();
        let xv = t.constant(be64().from_f64(x, shape));
        let d = net.forward(&mut t, &p, xv, BatchNormMode::Train(None));
        t.to_f64(d)
    };
    let n = shape[0];
    let len = x.len() / n;
    let mut g = vec![0.0; x.len()];
    for j in 0..x.len() {
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        a[j] += 1e-6;
        b[j] -= 1e-6;
        g[j] = (d_of(&a)[j / len] - d_of(&b)[j / len]) / 2e-6;
    }
    if per_sample_norm {
        (0..n).map(|i| (g[i * len..(i + 1) * len].iter().map(|v| v * v).sum::<f64>().sqrt() - 1.0).powi(2)).sum::<f64>()
            / n as f64
    } else {
        // The wrong-axes mistake: a norm per spatial position over the channels only.
        let (c, hw) = (shape[1], len / shape[1]);
        let mut total = 0.0;
        for i in 0..n {
            for q in 0..hw {
                let s: f64 = (0..c).map(|ch| g[i * len + ch * hw + q].powi(2)).sum();
                total += (s.sqrt() - 1.0).powi(2);
            }
        }
        total / (n * hw) as f64
    }
}

#[test]
fn penalty_uses_per_sample_eps_and_per_sample_norm() {
    let s = setup(conv_critic(), 3);
    let p = params_for(&s.net, 90);
    // What the library computes.
    let mut t = Tape::new(be64());
    let params: Vec<Var> = p.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let real = t.constant(be64().from_f64(&s.real, &s.shape));
    let fake = t.constant(be64().from_f64(&s.fake, &s.shape));
    let eps = t.constant(be64().from_f64(&s.eps, &[3]));
    let pen =
        critic_loss(&mut t, &s.net, &params, real, fake, Some((eps, 1.0, PenaltyKind::TwoSided))).penalty.unwrap();
    let got = t.to_f64(pen)[0];

    // The textbook penalty: x̂ on the segment from fake to real with one ε per sample.
    let len = s.real.len() / 3;
    let x_hat: Vec<f64> =
        (0..s.real.len()).map(|j| s.eps[j / len] * s.real[j] + (1.0 - s.eps[j / len]) * s.fake[j]).collect();
    let want = reference_penalty(&s.net, &p, &x_hat, &s.shape, true);
    assert!((got - want).abs() < 1e-6 * (1.0 + want.abs()), "penalty {got}, textbook {want}");

    // Mistake 1: ε drawn per element. The library's value must not match it.
    let eps_elem = uniform(s.real.len(), 0.0, 1.0, 72);
    let x_elem: Vec<f64> =
        (0..s.real.len()).map(|j| eps_elem[j] * s.real[j] + (1.0 - eps_elem[j]) * s.fake[j]).collect();
    let per_elem = reference_penalty(&s.net, &p, &x_elem, &s.shape, true);
    assert!((per_elem - want).abs() > 1e-3, "per-element ε is indistinguishable here: pick other inputs");
    // Mistake 2: the norm over the wrong axes.
    let wrong_axes = reference_penalty(&s.net, &p, &x_hat, &s.shape, false);
    assert!((wrong_axes - want).abs() > 1e-3, "wrong-axes norm is indistinguishable here: pick other inputs");
}

#[test]
fn zero_gradient_gives_no_nan() {
    // A critic whose weights are all zero has ∇ₓD = 0 everywhere: ‖g‖ would be sqrt(0), whose
    // derivative is infinite. With the epsilon inside the square root everything stays finite.
    let s = setup(mlp_critic(), 4);
    let zeros: Vec<Input> = s.net.params.iter().map(|sl| input(&sl.shape, vec![0.0; sl.len()])).collect();
    let mut t = Tape::new(be64());
    let params: Vec<Var> = zeros.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let l = build_loss(&s, PenaltyKind::TwoSided, 10.0)(&mut t, &params);
    let loss = t.to_f64(l)[0];
    assert!((loss - 10.0).abs() < 1e-4, "loss at zero weights should be λ·(0−1)² ≈ 10, got {loss}");
    for g in t.grad(&[l], &params, false) {
        assert!(t.to_f64(g).iter().all(|v| v.is_finite()), "non-finite gradient at g = 0");
    }
    let be = be64();
    let g0 = be.fill(&[4, 2], 0.0);
    let (p, dp) = be.penalty(&g0, PenaltyKind::TwoSided, PENALTY_EPS);
    assert!(be.to_f64(&p)[0].is_finite() && be.to_f64(&dp).iter().all(|v| v.is_finite()));
    let _ = Group::All;
}
