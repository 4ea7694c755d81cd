//! f64 finite-difference checks of every tape op, first order (gradcheck) and second order
//! (gradgradcheck), on the CPU reference backend.

mod common;
use common::*;
use wgan::backend::{Backend, ConvParams, Group, PenaltyKind};
use wgan::tape::{Tape, Var};

fn u(shape: &[usize], seed: u64) -> Input {
    input(shape, uniform(shape.iter().product(), -1.0, 1.0, seed))
}
fn pos(shape: &[usize], seed: u64) -> Input {
    input(shape, uniform(shape.iter().product(), 0.5, 2.0, seed))
}
fn nz(shape: &[usize], seed: u64) -> Input {
    input(shape, away_from_zero(shape.iter().product(), 0.05, 1.0, seed))
}

#[test]
fn elementwise_binary() {
    let ins = [u(&[3, 4], 1), u(&[3, 4], 2)];
    check("add", &|t, v| t.add(v[0], v[1]), &ins);
    check("sub", &|t, v| t.sub(v[0], v[1]), &ins);
    check("mul", &|t, v| t.mul(v[0], v[1]), &ins);
    // The same var on both sides: gradients must accumulate.
    check("mul self", &|t, v| t.mul(v[0], v[0]), &ins[..1]);
}

#[test]
fn elementwise_unary() {
    let x = [u(&[2, 3, 2, 2], 3)];
    check("scale", &|t, v| t.scale(v[0], -1.7), &x);
    check("add_scalar", &|t, v| t.add_scalar(v[0], 0.3), &x);
    check("pow -0.5", &|t, v| t.pow(v[0], -0.5), &[pos(&[5], 4)]);
    check("pow 3", &|t, v| t.pow(v[0], 3.0), &[pos(&[5], 5)]);
    check("tanh", &|t, v| t.tanh(v[0]), &x);
    let xn = [nz(&[2, 3, 2, 2], 6)];
    check("relu", &|t, v| t.relu(v[0]), &xn);
    check("leaky_relu", &|t, v| t.leaky_relu(v[0], 0.2), &xn);
}

#[test]
fn backward_ops_are_differentiable() {
    // leaky_relu_backward(g, x): linear in g, constant in x (away from the kink).
    let ins = [u(&[3, 5], 7), nz(&[3, 5], 8)];
    check("leaky_relu_backward", &|t, v| t.leaky_relu_backward(v[0], v[1], 0.2), &ins);
    // tanh_backward(g, y) = g(1 − y²), with y itself an output of tanh.
    let ins = [u(&[3, 5], 9), u(&[3, 5], 10)];
    check(
        "tanh_backward",
        &|t, v| {
            let y = t.tanh(v[1]);
            t.tanh_backward(v[0], y)
        },
        &ins,
    );
}

#[test]
fn groups() {
    for (shape, name) in [(vec![3usize, 4, 2, 3], "4-D"), (vec![5, 3], "2-D")] {
        for g in [Group::All, Group::Sample, Group::Channel] {
            let x = u(&shape, 11);
            let count = g.count(&shape);
            let n = format!("{name} {g:?}");
            check(&format!("group_sum {n}"), &|t, v| t.group_sum(v[0], g), &[x.clone()]);
            let s = shape.clone();
            check(
                &format!("group_broadcast {n}"),
                &move |t: &mut Tape<B64>, v: &[Var]| t.group_broadcast(v[0], g, &s),
                &[u(&[count], 12)],
            );
            check(&format!("group_mul {n}"), &|t, v| t.group_mul(v[0], v[1], g), &[x.clone(), u(&[count], 13)]);
            check(&format!("group_add {n}"), &|t, v| t.group_add(v[0], v[1], g), &[x.clone(), u(&[count], 14)]);
        }
    }
    check("mean", &|t, v| t.mean(v[0]), &[u(&[4, 3], 15)]);
    check(
        "reshape",
        &|t, v| {
            let r = t.reshape(v[0], &[2, 6]);
            t.mul(r, r)
        },
        &[u(&[4, 3], 16)],
    );
}

#[test]
fn matmul_all_transposes() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { u(&[4, 3], 20) } else { u(&[3, 4], 20) };
        let b = if tb { u(&[5, 4], 21) } else { u(&[4, 5], 21) };
        check(&format!("matmul ta={ta} tb={tb}"), &|t, v| t.matmul(v[0], v[1], ta, tb), &[a, b]);
    }
}

#[test]
fn linear_with_bias() {
    // x [3, 4], w [5, 4], b [5]: y = x·wᵀ + b.
    check("linear", &|t, v| t.linear(v[0], v[1], v[2]), &[u(&[3, 4], 22), u(&[5, 4], 23), u(&[5], 24)]);
}

#[test]
fn convolutions() {
    // (batch, cin, cout, size, k, stride, pad), odd sizes included.
    for (n, ci, co, s, k, st, p) in
        [(2, 2, 3, 5, 3, 1, 1), (1, 3, 2, 6, 4, 2, 1), (3, 1, 2, 4, 4, 1, 0), (2, 2, 2, 7, 3, 2, 0)]
    {
        let cp = ConvParams::new(st, p);
        let x = u(&[n, ci, s, s], 30);
        let w = u(&[co, ci, k, k], 31);
        let name = format!("n{n} ci{ci} co{co} s{s} k{k} st{st} p{p}");
        check(&format!("conv2d {name}"), &|t, v| t.conv2d(v[0], v[1], cp), &[x.clone(), w.clone()]);
        let o = cp.out_size(s, k);
        let gy = u(&[n, co, o, o], 32);
        check(
            &format!("conv2d_data_grad {name}"),
            &|t, v| t.conv2d_data_grad(v[0], v[1], cp, (s, s)),
            &[gy.clone(), w.clone()],
        );
        check(
            &format!("conv2d_weight_grad {name}"),
            &|t, v| t.conv2d_weight_grad(v[0], v[1], cp, k),
            &[x.clone(), gy.clone()],
        );
        // A product of two convolutions: second order in both x and w.
        check(
            &format!("conv2d squared {name}"),
            &|t, v| {
                let y = t.conv2d(v[0], v[1], cp);
                t.mul(y, y)
            },
            &[x, w],
        );
    }
    let cp = ConvParams::new(2, 1);
    check(
        "conv_transpose2d",
        &|t, v| t.conv_transpose2d(v[0], v[1], cp),
        &[u(&[2, 3, 3, 3], 33), u(&[3, 2, 4, 4], 34)],
    );
}

#[test]
fn normalisation() {
    for g in [Group::Sample, Group::Channel] {
        let x = u(&[3, 2, 2, 3], 40);
        check(&format!("normalize {g:?}"), &|t, v| t.normalize(v[0], g, 1e-5), &[x.clone()]);
        check(
            &format!("normalize_backward {g:?}"),
            &|t, v| t.normalize_backward(v[0], v[1], g, 1e-5),
            &[u(&[3, 2, 2, 3], 41), x],
        );
    }
    check("normalize 2-D channel", &|t, v| t.normalize(v[0], Group::Channel, 1e-5), &[u(&[5, 3], 42)]);
}

#[test]
fn interpolation_and_penalty() {
    let eps = uniform(3, 0.0, 1.0, 50);
    check(
        "interpolate",
        &|t, v| {
            let e = t.constant(be64().from_f64(&eps, &[3]));
            t.interpolate(v[0], v[1], e)
        },
        &[u(&[3, 2, 2, 2], 51), u(&[3, 2, 2, 2], 52)],
    );
    // Norms on both sides of 1 for the two-sided form; above 1 only for the one-sided form's
    // active branch, and a sample below 1 contributes nothing.
    let small = input(&[2, 3], vec![0.1, -0.2, 0.3, 0.9, 0.8, -0.7]);
    let big = input(&[2, 3], vec![1.1, -0.9, 0.8, 0.9, 1.8, -0.7]);
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        check(&format!("penalty {kind:?} small"), &|t, v| t.penalty(v[0], kind, 1e-12), &[small.clone()]);
        check(&format!("penalty {kind:?} big"), &|t, v| t.penalty(v[0], kind, 1e-12), &[big.clone()]);
    }
}

#[test]
fn backward_reaches_every_leaf() {
    // loss = Σ (a·b) + Σ a: ∂/∂a = b + 1, ∂/∂b = a; the constant c gets nothing.
    let be = be64();
    let mut t = Tape::new(be.clone());
    let a = t.leaf(be.from_f64(&[1.0, 2.0], &[2]));
    let c = t.constant(be.from_f64(&[5.0, 5.0], &[2]));
    let b = t.leaf(be.from_f64(&[3.0, -4.0], &[2]));
    let ab = t.mul(a, b);
    let abc = t.add(ab, c);
    let s1 = t.sum(abc);
    let s2 = t.sum(a);
    let loss = t.add(s1, s2);
    let g = t.backward(loss);
    assert_eq!(g.len(), 2);
    assert_eq!((g[0].0, g[1].0), (a, b));
    assert_eq!(t.to_f64(g[0].1), vec![4.0, -3.0]);
    assert_eq!(t.to_f64(g[1].1), vec![1.0, 2.0]);
}
