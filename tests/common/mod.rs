//! Shared test helpers: f64 finite-difference gradient checks on the CPU backend, in the manner
//! of PyTorch's gradcheck (first order) and gradgradcheck (second order).
#![allow(dead_code)]

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::rng::HostRng;
use wgan::tape::{Tape, Var};

pub type B64 = Cpu<f64>;

pub fn be64() -> B64 {
    Cpu::<f64>::new()
}

/// Random values in [lo, hi), deterministic in `seed`.
pub fn uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut r = HostRng::new(seed, 99);
    (0..n).map(|_| lo + (hi - lo) * r.uniform()).collect()
}

/// Random values in ±[lo, hi): magnitudes bounded away from 0 (for ops with a kink at 0).
pub fn away_from_zero(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut r = HostRng::new(seed, 98);
    (0..n)
        .map(|_| {
            let m = lo + (hi - lo) * r.uniform();
            if r.uniform() < 0.5 {
                -m
            } else {
                m
            }
        })
        .collect()
}

/// An input of a checked function: shape and values.
#[derive(Clone, Debug)]
pub struct Input {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

pub fn input(shape: &[usize], values: Vec<f64>) -> Input {
    assert_eq!(shape.iter().product::<usize>(), values.len());
    Input { shape: shape.to_vec(), values }
}

/// A function under test: builds one output from the input leaves.
pub type Build<'a> = &'a dyn Fn(&mut Tape<B64>, &[Var]) -> Var;

/// Reduces any output to a scalar with fixed random weights, so every output element matters.
fn weighted_sum(t: &mut Tape<B64>, y: Var, seed: u64) -> Var {
    let shape = t.shape(y);
    let n = shape.iter().product();
    let w = t.constant(be64().from_f64(&uniform(n, -1.0, 1.0, seed ^ 0x5eed), &shape));
    let p = t.mul(y, w);
    t.sum(p)
}

fn scalar_of(f: Build, inputs: &[Input], seed: u64) -> f64 {
    let mut t = Tape::new(be64());
    let vars: Vec<Var> = inputs.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let y = f(&mut t, &vars);
    let s = weighted_sum(&mut t, y, seed);
    t.to_f64(s)[0]
}

/// Analytic gradient of the weighted output sum w.r.t. every input.
fn analytic_grad(f: Build, inputs: &[Input], seed: u64) -> Vec<Vec<f64>> {
    let mut t = Tape::new(be64());
    let vars: Vec<Var> = inputs.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
    let y = f(&mut t, &vars);
    let s = weighted_sum(&mut t, y, seed);
    let g = t.grad(&[s], &vars, false);
    g.iter().map(|&v| t.to_f64(v)).collect()
}

fn central_difference(eval: &dyn Fn(&[Input]) -> f64, inputs: &[Input], h: f64) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for k in 0..inputs.len() {
        let mut gk = Vec::with_capacity(inputs[k].values.len());
        for j in 0..inputs[k].values.len() {
            let mut plus = inputs.to_vec();
            plus[k].values[j] += h;
            let mut minus = inputs.to_vec();
            minus[k].values[j] -= h;
            gk.push((eval(&plus) - eval(&minus)) / (2.0 * h));
        }
        out.push(gk);
    }
    out
}

/// Largest |a − n| / (atol + rtol·|n|) over all elements; ≤ 1 passes.
pub fn worst(analytic: &[Vec<f64>], numeric: &[Vec<f64>], atol: f64, rtol: f64) -> (f64, String) {
    let mut w = (0.0, String::new());
    for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert_eq!(a.len(), n.len());
        for (j, (x, y)) in a.iter().zip(n).enumerate() {
            let r = (x - y).abs() / (atol + rtol * y.abs());
            if !(r <= w.0) {
                w = (
                    if r.is_nan() { f64::INFINITY } else { r },
                    format!("input {k} element {j}: analytic {x} numeric {y}"),
                );
            }
        }
    }
    w
}

/// First-order check: the tape's gradient equals central differences.
pub fn gradcheck(name: &str, f: Build, inputs: &[Input]) {
    let seed = 17;
    let a = analytic_grad(f, inputs, seed);
    let n = central_difference(&|x| scalar_of(f, x, seed), inputs, 1e-6);
    let (r, at) = worst(&a, &n, 1e-6, 1e-5);
    assert!(r <= 1.0, "{name}: first-order gradient mismatch (ratio {r:.2}) at {at}");
}

/// Second-order check: differentiate ⟨∇f, v⟩ (built with create_graph) and compare with central
/// differences of the analytic first-order gradient.
pub fn gradgradcheck(name: &str, f: Build, inputs: &[Input]) {
    let seed = 23;
    let dirs: Vec<Vec<f64>> =
        inputs.iter().enumerate().map(|(k, i)| uniform(i.values.len(), -1.0, 1.0, 1000 + k as u64)).collect();
    let gv = |x: &[Input], create: bool| -> (Tape<B64>, Vec<Var>, Var) {
        let mut t = Tape::new(be64());
        let vars: Vec<Var> = x.iter().map(|i| t.leaf(be64().from_f64(&i.values, &i.shape))).collect();
        let y = f(&mut t, &vars);
        let s = weighted_sum(&mut t, y, seed);
        let g = t.grad(&[s], &vars, create);
        let mut acc: Option<Var> = None;
        for (k, &gk) in g.iter().enumerate() {
            let d = t.constant(be64().from_f64(&dirs[k], &x[k].shape));
            let p = t.mul(gk, d);
            let s = t.sum(p);
            acc = Some(match acc {
                Some(a) => t.add(a, s),
                None => s,
            });
        }
        (t, vars, acc.unwrap())
    };
    let (mut t, vars, s) = gv(inputs, true);
    let gg = t.grad(&[s], &vars, false);
    let a: Vec<Vec<f64>> = gg.iter().map(|&v| t.to_f64(v)).collect();
    let n = central_difference(
        &|x| {
            let (t, _, s) = gv(x, false);
            t.to_f64(s)[0]
        },
        inputs,
        1e-5,
    );
    let (r, at) = worst(&a, &n, 1e-5, 1e-4);
    assert!(r <= 1.0, "{name}: second-order gradient mismatch (ratio {r:.2}) at {at}");
}

/// Both checks.
pub fn check(name: &str, f: Build, inputs: &[Input]) {
    gradcheck(name, f, inputs);
    gradgradcheck(name, f, inputs);
}

/// A kernel's output (`gpu`, from the emulator or a GPU) against the CPU reference: every value
/// finite (outputs are poisoned with NaN first, so an unwritten element fails) and within
/// rtol × the reference's largest magnitude.
pub fn close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(1e-30f64, |m, v| m.max(v.abs() as f64));
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(g.is_finite(), "{what}[{i}]: gpu {g} (NaN: unwritten or wrong)");
        let d = (*g as f64 - *c as f64).abs();
        assert!(d <= rtol * scale, "{what}[{i}]: gpu {g} cpu {c} (|diff| {d:.3e} > {rtol:.0e} × {scale:.3e})");
    }
}
