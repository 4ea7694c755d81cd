//! The CPU backend against naive direct-loop references, adjointness and finite differences.

use wgan::backend::cpu::{Cpu, CpuTensor};
use wgan::backend::{numel, AdamStep, Backend, ConvParams, Group, PenaltyKind, RmsPropStep};
use wgan::rng::{self, HostRng};

type C64 = Cpu<f64>;
type C32 = Cpu<f32>;

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut r = HostRng::new(seed, 99);
    (0..n).map(|_| r.uniform() * 2.0 - 1.0).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}: element {i}: got {g}, want {w} (tol {tol}·{scale})");
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------- references

fn naive_matmul(a: &[f64], sa: [usize; 2], b: &[f64], sb: [usize; 2], ta: bool, tb: bool) -> (Vec<f64>, usize, usize) {
    let at = |i: usize, j: usize| {
        if ta {
            a[j * sa[1] + i]
        } else {
            a[i * sa[1] + j]
        }
    };
    let bt = |i: usize, j: usize| {
        if tb {
            b[j * sb[1] + i]
        } else {
            b[i * sb[1] + j]
        }
    };
    let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let n = if tb { sb[0] } else { sb[1] };
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
        }
    }
    (c, m, n)
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
}

impl Cfg {
    fn ho(&self) -> usize {
        (self.h + 2 * self.p - self.k) / self.s + 1
    }
    fn wo(&self) -> usize {
        (self.w + 2 * self.p - self.k) / self.s + 1
    }
    fn xs(&self) -> [usize; 4] {
        [self.n, self.ci, self.h, self.w]
    }
    fn ws(&self) -> [usize; 4] {
        [self.co, self.ci, self.k, self.k]
    }
    fn ys(&self) -> [usize; 4] {
        [self.n, self.co, self.ho(), self.wo()]
    }
    /// Calls f(x index, w index, y index) for every term of the direct 7-loop convolution.
    fn for_terms(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = (self.ho(), self.wo());
        for n in 0..self.n {
            for co in 0..self.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        for ci in 0..self.ci {
                            for kh in 0..self.k {
                                for kw in 0..self.k {
                                    let ih = (oh * self.s + kh) as isize - self.p as isize;
                                    let iw = (ow * self.s + kw) as isize - self.p as isize;
                                    if ih < 0 || iw < 0 || ih >= self.h as isize || iw >= self.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * self.ci + ci) * self.h + ih as usize) * self.w + iw as usize;
                                    let wi = ((co * self.ci + ci) * self.k + kh) * self.k + kw;
                                    let yi = ((n * self.co + co) * ho + oh) * wo + ow;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    fn conv(&self, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; numel(&self.ys())];
        self.for_terms(|xi, wi, yi| y[yi] += x[xi] * w[wi]);
        y
    }
    fn data_grad(&self, gy: &[f64], w: &[f64]) -> Vec<f64> {
        let mut gx = vec![0.0; numel(&self.xs())];
        self.for_terms(|xi, wi, yi| gx[xi] += gy[yi] * w[wi]);
        gx
    }
    fn weight_grad(&self, x: &[f64], gy: &[f64]) -> Vec<f64> {
        let mut gw = vec![0.0; numel(&self.ws())];
        self.for_terms(|xi, wi, yi| gw[wi] += gy[yi] * x[xi]);
        gw
    }
}

fn conv_cfgs() -> Vec<Cfg> {
    let mut v = Vec::new();
    for &n in &[1, 3] {
        for &(ci, co) in &[(3, 5), (7, 3)] {
            for &k in &[3, 4] {
                for &s in &[1, 2] {
                    for &p in &[0, 1] {
                        v.push(Cfg { n, ci, co, h: 9, w: 7, k, s, p });
                    }
                }
            }
        }
    }
    // 1×1 outputs, a single input channel, a kernel as large as the padded input.
    v.push(Cfg { n: 3, ci: 5, co: 7, h: 4, w: 4, k: 4, s: 1, p: 0 });
    v.push(Cfg { n: 1, ci: 1, co: 2, h: 3, w: 3, k: 3, s: 2, p: 0 });
    v.push(Cfg { n: 2, ci: 3, co: 3, h: 2, w: 2, k: 4, s: 2, p: 1 });
    // The kernel spans the full height but not the width: not the dense (1×1 output) fast path.
    v.push(Cfg { n: 2, ci: 3, co: 4, h: 4, w: 6, k: 4, s: 1, p: 0 });
    // Padding larger than the kernel reaches (whole kernel rows and columns outside the image).
    v.push(Cfg { n: 2, ci: 2, co: 3, h: 3, w: 2, k: 2, s: 1, p: 3 });
    v.push(Cfg { n: 1, ci: 2, co: 2, h: 2, w: 3, k: 2, s: 2, p: 3 });
    // stride 2 with a remainder: the last input column is not touched.
    v.push(Cfg { n: 3, ci: 3, co: 5, h: 8, w: 6, k: 3, s: 2, p: 0 });
    v
}

// ---------------------------------------------------------------- elementwise

fn check_elementwise<B: Backend>(be: &B, tol: f64) {
    let shape = [3, 5, 7];
    let n = numel(&shape);
    let a = rand_vec(n, 1);
    let b = rand_vec(n, 2);
    let pos: Vec<f64> = a.iter().map(|v| v.abs() + 0.1).collect();
    let (ta, tb, tp) = (be.from_f64(&a, &shape), be.from_f64(&b, &shape), be.from_f64(&pos, &shape));
    let chk = |t: &B::Tensor, f: &dyn Fn(usize) -> f64, what: &str| {
        assert_eq!(be.shape(t), &shape);
        let want: Vec<f64> = (0..n).map(f).collect();
        assert_close(&be.to_f64(t), &want, tol, what);
    };
    chk(&be.add(&ta, &tb), &|i| a[i] + b[i], "add");
    chk(&be.sub(&ta, &tb), &|i| a[i] - b[i], "sub");
    chk(&be.mul(&ta, &tb), &|i| a[i] * b[i], "mul");
    chk(&be.scale(&ta, -1.5), &|i| -1.5 * a[i], "scale");
    chk(&be.add_scalar(&ta, 0.25), &|i| a[i] + 0.25, "add_scalar");
    chk(&be.powf(&tp, -0.5), &|i| pos[i].powf(-0.5), "powf");
    chk(&be.leaky_relu(&ta, 0.2), &|i| if a[i] > 0.0 { a[i] } else { 0.2 * a[i] }, "leaky_relu");
    chk(&be.leaky_relu(&ta, 0.0), &|i| a[i].max(0.0), "relu");
    chk(&be.leaky_relu_backward(&tb, &ta, 0.2), &|i| if a[i] > 0.0 { b[i] } else { 0.2 * b[i] }, "leaky_relu_backward");
    chk(&be.tanh(&ta), &|i| a[i].tanh(), "tanh");
    chk(&be.tanh_backward(&tb, &ta), &|i| b[i] * (1.0 - a[i] * a[i]), "tanh_backward");
}

#[test]
fn elementwise_f64() {
    check_elementwise(&C64::new(), 1e-14);
}

#[test]
fn elementwise_f32() {
    check_elementwise(&C32::new(), 1e-6);
}

#[test]
fn elementwise_large_parallel_path() {
    let be = C32::new();
    let n = 100_003;
    let a = rand_vec(n, 3);
    let b = rand_vec(n, 4);
    let got = be.to_f64(&be.mul(&be.from_f64(&a, &[n]), &be.from_f64(&b, &[n])));
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (*x as f32 * *y as f32) as f64).collect();
    assert_eq!(got, want);
}

#[test]
#[should_panic]
fn binary_ops_reject_different_shapes() {
    let be = C64::new();
    be.add(&be.fill(&[2, 3], 1.0), &be.fill(&[3, 2], 1.0));
}

// ---------------------------------------------------------------- storage

#[test]
fn host_transfer_fill_and_deep_copy() {
    let be = C32::new();
    let t = be.from_f32(&[1.0, 2.5, -3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(be.to_f32(&t), vec![1.0, 2.5, -3.0, 4.0, 5.0, 6.0]);
    assert_eq!(be.to_f64(&be.fill(&[2, 2], 0.5)), vec![0.5; 4]);
    let d = be.deep_copy(&t);
    assert!(!d.shares_storage(&t));
    be.copy_into_inplace(&d, 0, &be.fill(&[2], 9.0));
    assert_eq!(be.to_f32(&t)[0], 1.0);
    assert_eq!(be.to_f32(&d)[..3], [9.0, 9.0, -3.0]);
    let c = t.clone();
    assert!(c.shares_storage(&t));
}

#[test]
fn views_alias_storage() {
    let be = C64::new();
    let buf = be.fill(&[10], 0.0);
    let w = be.view(&buf, 2, &[2, 2]);
    let b = be.view(&buf, 6, &[3]);
    assert_eq!(w.shape(), &[2, 2]);
    // Writing the parent is seen by the view.
    be.copy_into_inplace(&buf, 2, &be.from_f64(&[1.0, 2.0, 3.0, 4.0], &[4]));
    assert_eq!(be.to_f64(&w), vec![1.0, 2.0, 3.0, 4.0]);
    // Writing through a view is seen by the parent and by a view of the view.
    be.copy_into_inplace(&b, 1, &be.from_f64(&[7.0, 8.0], &[2]));
    assert_eq!(be.to_f64(&buf), vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 7.0, 8.0, 0.0]);
    let ww = be.view(&w, 1, &[2]);
    assert_eq!(be.to_f64(&ww), vec![2.0, 3.0]);
    // In-place optimizer steps on a view update the parent buffer.
    be.clamp_inplace(&b, 7.5);
    assert_eq!(be.to_f64(&buf)[6..9], [0.0, 7.0, 7.5]);
    be.axpby_inplace(&w, 2.0, &be.fill(&[2, 2], 1.0), -1.0);
    assert_eq!(be.to_f64(&buf)[2..6], [1.0, 3.0, 5.0, 7.0]);
    // Ops on views read the right window.
    assert_eq!(be.to_f64(&be.scale(&ww, 2.0)), vec![6.0, 10.0]);
    // Overlapping self-copy behaves like memmove.
    be.copy_into_inplace(&buf, 3, &be.view(&buf, 2, &[4]));
    assert_eq!(be.to_f64(&buf)[2..8], [1.0, 1.0, 3.0, 5.0, 7.0, 7.0]);
}

#[test]
#[should_panic]
fn view_out_of_range_panics() {
    let be = C64::new();
    be.view(&be.fill(&[4], 0.0), 2, &[3]);
}

// ---------------------------------------------------------------- groups

fn check_groups<B: Backend>(be: &B, shape: &[usize], tol: f64) {
    let n = numel(shape);
    let x = rand_vec(n, 5);
    let tx = be.from_f64(&x, shape);
    for group in [Group::All, Group::Sample, Group::Channel] {
        let g = group.count(shape);
        let v = rand_vec(g, 6);
        let tv = be.from_f64(&v, &[g]);
        let idx = |i: usize| group.index(shape, i);
        let mut sums = vec![0.0; g];
        for i in 0..n {
            sums[idx(i)] += x[i];
        }
        let what = format!("{group:?} {shape:?}");
        let s = be.group_sum(&tx, group);
        assert_eq!(be.shape(&s), &[g]);
        assert_close(&be.to_f64(&s), &sums, tol * n as f64, &format!("group_sum {what}"));
        let bc = be.group_broadcast(&tv, group, shape);
        assert_eq!(be.shape(&bc), shape);
        assert_close(
            &be.to_f64(&bc),
            &(0..n).map(|i| v[idx(i)]).collect::<Vec<_>>(),
            tol,
            &format!("broadcast {what}"),
        );
        let m = be.group_mul(&tx, &tv, group);
        assert_close(
            &be.to_f64(&m),
            &(0..n).map(|i| x[i] * v[idx(i)]).collect::<Vec<_>>(),
            tol,
            &format!("mul {what}"),
        );
        let a = be.group_add(&tx, &tv, group);
        assert_close(
            &be.to_f64(&a),
            &(0..n).map(|i| x[i] + v[idx(i)]).collect::<Vec<_>>(),
            tol,
            &format!("add {what}"),
        );
    }
}

#[test]
fn group_ops_f64() {
    let be = C64::new();
    for shape in [&[5, 7][..], &[3, 5, 2, 3], &[1, 3, 4, 4], &[4, 1], &[1, 1], &[6]] {
        if shape.len() == 1 {
            continue;
        }
        check_groups(&be, shape, 1e-14);
    }
}

#[test]
fn group_ops_f32_large() {
    // Large enough for the parallel paths (several chunks per group and per row).
    let be = C32::new();
    check_groups(&be, &[64, 8, 16, 16], 1e-6);
    check_groups(&be, &[256, 512], 1e-6);
    check_groups(&be, &[2, 3, 150, 150], 1e-6);
}

#[test]
fn group_sample_on_1d() {
    let be = C64::new();
    let t = be.from_f64(&[1.0, 2.0, 3.0], &[3]);
    assert_eq!(be.to_f64(&be.group_sum(&t, Group::Sample)), vec![1.0, 2.0, 3.0]);
    assert_eq!(be.to_f64(&be.group_sum(&t, Group::All)), vec![6.0]);
}

#[test]
#[should_panic]
fn group_add_rejects_wrong_count() {
    let be = C64::new();
    be.group_add(&be.fill(&[2, 3], 1.0), &be.fill(&[2], 1.0), Group::Channel);
}

#[test]
fn reductions_do_not_depend_on_thread_count() {
    let be = C32::new();
    let shape = [32, 16, 12, 12];
    let x = be.from_f64(&rand_vec(numel(&shape), 81), &shape);
    let run = || {
        let mut out = Vec::new();
        for g in [Group::All, Group::Sample, Group::Channel] {
            out.push(be.to_f32(&be.group_sum(&x, g)));
            out.push(be.to_f32(&be.normalize(&x, g, 1e-5)));
            out.push(be.to_f32(&be.normalize_backward(&x, &x, g, 1e-5)));
        }
        out.push(be.to_f32(&be.penalty(&x, PenaltyKind::TwoSided, 1e-8).0));
        out
    };
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
    let one = pool(1).install(run);
    let three = pool(3).install(run);
    assert_eq!(one, three);
}

// ---------------------------------------------------------------- matmul

fn check_matmul<B: Backend>(be: &B, tol: f64) {
    for &(m, k, n) in &[(5, 7, 3), (1, 1, 1), (1, 9, 4), (13, 1, 6), (33, 65, 17)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let sa = if ta { [k, m] } else { [m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let a = rand_vec(m * k, 7);
                let b = rand_vec(k * n, 8);
                let c = be.matmul(&be.from_f64(&a, &sa), &be.from_f64(&b, &sb), ta, tb);
                let (want, wm, wn) = naive_matmul(&a, sa, &b, sb, ta, tb);
                assert_eq!(be.shape(&c), &[wm, wn]);
                assert_close(&be.to_f64(&c), &want, tol * k as f64, &format!("matmul {m}x{k}x{n} {ta} {tb}"));
            }
        }
    }
}

#[test]
fn matmul_f64() {
    check_matmul(&C64::new(), 1e-15);
}

#[test]
fn matmul_f32() {
    check_matmul(&C32::new(), 1e-6);
}

#[test]
fn matmul_views() {
    let be = C64::new();
    let buf = be.from_f64(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[7]);
    let a = be.view(&buf, 1, &[2, 2]);
    let b = be.view(&buf, 3, &[2, 1]);
    // [[1,2],[3,4]] · [[3],[4]]
    assert_eq!(be.to_f64(&be.matmul(&a, &b, false, false)), vec![11.0, 25.0]);
}

#[test]
#[should_panic]
fn matmul_rejects_mismatched_inner() {
    let be = C64::new();
    be.matmul(&be.fill(&[2, 3], 1.0), &be.fill(&[2, 3], 1.0), false, false);
}

// ---------------------------------------------------------------- convolution

fn check_conv<B: Backend>(be: &B, cfg: Cfg, tol: f64) {
    let x = rand_vec(numel(&cfg.xs()), 11);
    let w = rand_vec(numel(&cfg.ws()), 12);
    let gy = rand_vec(numel(&cfg.ys()), 13);
    let p = ConvParams::new(cfg.s, cfg.p);
    let (tx, tw, tg) = (be.from_f64(&x, &cfg.xs()), be.from_f64(&w, &cfg.ws()), be.from_f64(&gy, &cfg.ys()));
    let what = format!("{cfg:?}");
    let y = be.conv2d(&tx, &tw, p);
    assert_eq!(be.shape(&y), &cfg.ys(), "{what}");
    let y = be.to_f64(&y);
    assert_close(&y, &cfg.conv(&x, &w), tol, &format!("conv2d {what}"));
    let gx = be.conv2d_data_grad(&tg, &tw, p, (cfg.h, cfg.w));
    assert_eq!(be.shape(&gx), &cfg.xs(), "{what}");
    let gx = be.to_f64(&gx);
    assert_close(&gx, &cfg.data_grad(&gy, &w), tol, &format!("data_grad {what}"));
    let gw = be.conv2d_weight_grad(&tx, &tg, p, cfg.k);
    assert_eq!(be.shape(&gw), &cfg.ws(), "{what}");
    let gw = be.to_f64(&gw);
    assert_close(&gw, &cfg.weight_grad(&x, &gy), tol, &format!("weight_grad {what}"));
    // Adjointness: <conv(x, w), gy> = <x, data_grad(gy, w)> = <w, weight_grad(x, gy)>.
    let (l, r1, r2) = (dot(&y, &gy), dot(&x, &gx), dot(&w, &gw));
    let sc = 1.0 + l.abs();
    assert!((l - r1).abs() <= tol * 10.0 * sc && (l - r2).abs() <= tol * 10.0 * sc, "adjoint {what}: {l} {r1} {r2}");
}

#[test]
fn conv_f64_against_direct_loops() {
    let be = C64::new();
    for cfg in conv_cfgs() {
        check_conv(&be, cfg, 1e-13);
    }
}

#[test]
fn conv_f32_against_direct_loops() {
    let be = C32::new();
    for cfg in conv_cfgs() {
        check_conv(&be, cfg, 2e-6);
    }
}

#[test]
fn conv_large_batch_chunks_and_parallel_paths() {
    // One sample's im2col block exceeds a task's limit (128K elements): one sample per task, on
    // the row-copying im2col (stride 1, 31-pixel rows).
    let be = C32::new();
    check_conv(&be, Cfg { n: 18, ci: 16, co: 5, h: 32, w: 32, k: 4, s: 1, p: 1 }, 1e-5);
    check_conv(&be, Cfg { n: 9, ci: 3, co: 8, h: 28, w: 28, k: 4, s: 2, p: 1 }, 1e-5);
    // Few input channels: several samples per task and an uneven last task (5, 5, 5, 1).
    check_conv(&be, Cfg { n: 16, ci: 3, co: 4, h: 40, w: 40, k: 4, s: 2, p: 1 }, 1e-5);
}

/// Configurations whose batch splits into several multi-sample tasks of the generic path (the
/// tap-table im2col / col2im and the fixed-order weight-gradient sum), the last one short.
fn task_cfgs() -> Vec<Cfg> {
    vec![
        // k·k·ci = 1024, 25 pixels: 5 samples per task, 8 tasks (the last of 2).
        Cfg { n: 37, ci: 64, co: 5, h: 10, w: 10, k: 4, s: 2, p: 1 },
        // stride 3 with padding, an odd batch.
        Cfg { n: 29, ci: 40, co: 3, h: 11, w: 13, k: 4, s: 3, p: 2 },
        // stride 1, 8-pixel rows (the tap tables), padding beyond the kernel.
        Cfg { n: 13, ci: 150, co: 2, h: 6, w: 6, k: 3, s: 1, p: 2 },
    ]
}

#[test]
fn conv_multi_sample_tasks_against_direct_loops() {
    for cfg in task_cfgs() {
        check_conv(&C32::new(), cfg, 1e-5);
        check_conv(&C64::new(), cfg, 1e-12);
    }
}

#[test]
fn conv_does_not_depend_on_thread_count() {
    let be = C32::new();
    let run = || {
        let mut out = Vec::new();
        for cfg in task_cfgs() {
            let p = ConvParams::new(cfg.s, cfg.p);
            let x = be.from_f64(&rand_vec(numel(&cfg.xs()), 21), &cfg.xs());
            let w = be.from_f64(&rand_vec(numel(&cfg.ws()), 22), &cfg.ws());
            let gy = be.from_f64(&rand_vec(numel(&cfg.ys()), 23), &cfg.ys());
            out.push(be.to_f32(&be.conv2d(&x, &w, p)));
            out.push(be.to_f32(&be.conv2d_data_grad(&gy, &w, p, (cfg.h, cfg.w))));
            out.push(be.to_f32(&be.conv2d_weight_grad(&x, &gy, p, cfg.k)));
        }
        out
    };
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
    let one = pool(1).install(run);
    assert_eq!(one, pool(2).install(run));
    assert_eq!(one, pool(3).install(run));
}

#[test]
fn conv_known_values() {
    // 1×1×3×3 input, 2×2 kernel of ones, stride 1, no padding: sums of 2×2 windows.
    let be = C64::new();
    let x = be.from_f64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1, 1, 3, 3]);
    let w = be.fill(&[1, 1, 2, 2], 1.0);
    assert_eq!(be.to_f64(&be.conv2d(&x, &w, ConvParams::new(1, 0))), vec![12.0, 16.0, 24.0, 28.0]);
    // With padding 1 and stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
    assert_eq!(be.to_f64(&be.conv2d(&x, &w, ConvParams::new(2, 1))), vec![1.0, 5.0, 11.0, 28.0]);
}

#[test]
#[should_panic]
fn conv_rejects_channel_mismatch() {
    let be = C64::new();
    be.conv2d(&be.fill(&[1, 3, 5, 5], 1.0), &be.fill(&[2, 4, 3, 3], 1.0), ConvParams::new(1, 0));
}

// ---------------------------------------------------------------- normalisation

fn group_stats(x: &[f64], shape: &[usize], group: Group) -> Vec<(f64, f64)> {
    let g = group.count(shape);
    let mut s = vec![(0.0, 0.0, 0.0); g];
    for (i, v) in x.iter().enumerate() {
        let e = &mut s[group.index(shape, i)];
        e.0 += v;
        e.1 += v * v;
        e.2 += 1.0;
    }
    s.iter().map(|&(a, b, c)| (a / c, b / c - (a / c) * (a / c))).collect()
}

#[test]
fn normalize_has_zero_mean_unit_variance() {
    let be = C64::new();
    for shape in [&[6, 5][..], &[3, 5, 2, 3], &[64, 8, 16, 16]] {
        let x: Vec<f64> = rand_vec(numel(shape), 21).iter().map(|v| 3.0 * v + 1.5).collect();
        for group in [Group::All, Group::Sample, Group::Channel] {
            let y = be.to_f64(&be.normalize(&be.from_f64(&x, shape), group, 0.0));
            for (i, (m, v)) in group_stats(&y, shape, group).into_iter().enumerate() {
                assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-10, "{group:?} {shape:?} group {i}: mean {m} var {v}");
            }
            // With eps the variance shrinks to var/(var+eps).
            let st = group_stats(&x, shape, group);
            let y = be.to_f64(&be.normalize(&be.from_f64(&x, shape), group, 0.5));
            for (i, (m, v)) in group_stats(&y, shape, group).into_iter().enumerate() {
                let want = st[i].1 / (st[i].1 + 0.5);
                assert!(m.abs() < 1e-12 && (v - want).abs() < 1e-10, "{group:?} eps: {v} vs {want}");
            }
        }
    }
}

#[test]
fn normalize_f32_matches_f64() {
    let (b32, b64) = (C32::new(), C64::new());
    let shape = [4, 6, 5, 5];
    let x: Vec<f64> = rand_vec(numel(&shape), 22).iter().map(|v| 4.0 * v - 2.0).collect();
    let g = rand_vec(numel(&shape), 23);
    for group in [Group::All, Group::Sample, Group::Channel] {
        let a = b32.to_f64(&b32.normalize(&b32.from_f64(&x, &shape), group, 1e-5));
        let b = b64.to_f64(&b64.normalize(&b64.from_f64(&x, &shape), group, 1e-5));
        assert_close(&a, &b, 1e-5, "normalize f32");
        let a = b32.normalize_backward(&b32.from_f64(&g, &shape), &b32.from_f64(&x, &shape), group, 1e-5);
        let b = b64.normalize_backward(&b64.from_f64(&g, &shape), &b64.from_f64(&x, &shape), group, 1e-5);
        assert_close(&b32.to_f64(&a), &b64.to_f64(&b), 1e-5, "normalize_backward f32");
    }
}

#[test]
fn normalize_backward_matches_finite_differences() {
    let be = C64::new();
    for shape in [&[4, 3][..], &[3, 2, 2, 3]] {
        let n = numel(shape);
        let x = rand_vec(n, 31);
        let up = rand_vec(n, 32);
        for group in [Group::All, Group::Sample, Group::Channel] {
            let eps = 1e-3;
            let loss = |x: &[f64]| dot(&be.to_f64(&be.normalize(&be.from_f64(x, shape), group, eps)), &up);
            let g = be.to_f64(&be.normalize_backward(&be.from_f64(&up, shape), &be.from_f64(&x, shape), group, eps));
            let h = 1e-6;
            let fd: Vec<f64> = (0..n)
                .map(|i| {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    a[i] += h;
                    b[i] -= h;
                    (loss(&a) - loss(&b)) / (2.0 * h)
                })
                .collect();
            assert_close(&g, &fd, 1e-7, &format!("normalize_backward {group:?} {shape:?}"));
        }
    }
}

// ---------------------------------------------------------------- WGAN-GP

#[test]
fn interpolate_per_sample() {
    let be = C64::new();
    let shape = [3, 2, 2, 2];
    let x = rand_vec(24, 41);
    let xt = rand_vec(24, 42);
    let e = [0.0, 0.25, 1.0];
    let got = be.to_f64(&be.interpolate(&be.from_f64(&x, &shape), &be.from_f64(&xt, &shape), &be.from_f64(&e, &[3])));
    let want: Vec<f64> = (0..24).map(|i| e[i / 8] * x[i] + (1.0 - e[i / 8]) * xt[i]).collect();
    assert_close(&got, &want, 1e-15, "interpolate");
    assert_eq!(got[..8], xt[..8]);
    assert_eq!(got[16..], x[16..]);
}

#[test]
fn penalty_at_zero_gradient_is_finite() {
    let be = C64::new();
    let g = be.fill(&[4, 3, 2, 2], 0.0);
    let eps = 1e-12;
    let (p, d) = be.penalty(&g, PenaltyKind::TwoSided, eps);
    assert_eq!(be.shape(&p), &[1]);
    assert_eq!(be.shape(&d), &[4, 3, 2, 2]);
    let p = be.to_f64(&p)[0];
    assert!((p - (eps.sqrt() - 1.0).powi(2)).abs() < 1e-15, "two-sided P at 0: {p}");
    assert!(be.to_f64(&d).iter().all(|v| *v == 0.0));
    let (p, d) = be.penalty(&g, PenaltyKind::OneSided, eps);
    assert_eq!(be.to_f64(&p), vec![0.0]);
    assert!(be.to_f64(&d).iter().all(|v| *v == 0.0));
    // eps = 0 as well: P is finite, the two-sided gradient is the formula's 0·(−1/0) = NaN (eps is
    // what prevents it), the one-sided gradient is exactly 0.
    let (p, d) = be.penalty(&g, PenaltyKind::TwoSided, 0.0);
    assert_eq!(be.to_f64(&p), vec![1.0]);
    assert!(be.to_f64(&d).iter().all(|v| v.is_nan()));
    let (p, d) = be.penalty(&g, PenaltyKind::OneSided, 0.0);
    assert_eq!(be.to_f64(&p), vec![0.0]);
    assert!(be.to_f64(&d).iter().all(|v| *v == 0.0));
    let b32 = C32::new();
    let (p, d) = b32.penalty(&b32.fill(&[2, 5], 0.0), PenaltyKind::TwoSided, 1e-8);
    assert!(b32.to_f32(&p)[0].is_finite() && b32.to_f32(&d).iter().all(|v| v.is_finite()));
}

fn naive_penalty(g: &[f64], nsamp: usize, kind: PenaltyKind, eps: f64) -> (f64, Vec<f64>) {
    let per = g.len() / nsamp;
    let mut p = 0.0;
    let mut d = vec![0.0; g.len()];
    for i in 0..nsamp {
        let s = &g[i * per..(i + 1) * per];
        let norm = (s.iter().map(|v| v * v).sum::<f64>() + eps).sqrt();
        let e = match kind {
            PenaltyKind::TwoSided => norm - 1.0,
            PenaltyKind::OneSided => (norm - 1.0).max(0.0),
        };
        p += e * e / nsamp as f64;
        for j in 0..per {
            d[i * per + j] = 2.0 / nsamp as f64 * e * s[j] / norm;
        }
    }
    (p, d)
}

#[test]
fn penalty_values_and_gradient() {
    let be = C64::new();
    let shape = [5, 2, 3, 3];
    let n = numel(&shape);
    // Samples with norms below and above 1, so the one-sided form is active for some only.
    let g: Vec<f64> =
        rand_vec(n, 51).iter().enumerate().map(|(i, v)| v * if i / 18 % 2 == 0 { 0.1 } else { 0.8 }).collect();
    for kind in [PenaltyKind::TwoSided, PenaltyKind::OneSided] {
        let eps = 1e-8;
        let (p, d) = be.penalty(&be.from_f64(&g, &shape), kind, eps);
        let (wp, wd) = naive_penalty(&g, 5, kind, eps);
        assert!((be.to_f64(&p)[0] - wp).abs() < 1e-14, "{kind:?} P");
        let d = be.to_f64(&d);
        assert_close(&d, &wd, 1e-14, &format!("{kind:?} dP/dg"));
        // Finite differences of P.
        let h = 1e-6;
        for i in (0..n).step_by(7) {
            let (mut a, mut b) = (g.clone(), g.clone());
            a[i] += h;
            b[i] -= h;
            let pa = be.to_f64(&be.penalty(&be.from_f64(&a, &shape), kind, eps).0)[0];
            let pb = be.to_f64(&be.penalty(&be.from_f64(&b, &shape), kind, eps).0)[0];
            assert!(((pa - pb) / (2.0 * h) - d[i]).abs() < 1e-7, "{kind:?} fd at {i}");
        }
    }
    // Two-sided exceeds one-sided when some norms are below 1.
    let p2 = be.to_f64(&be.penalty(&be.from_f64(&g, &shape), PenaltyKind::TwoSided, 0.0).0)[0];
    let p1 = be.to_f64(&be.penalty(&be.from_f64(&g, &shape), PenaltyKind::OneSided, 0.0).0)[0];
    assert!(p2 > p1 && p1 > 0.0, "{p2} {p1}");
}

#[test]
fn penalty_known_value() {
    // Two samples: g = (3, 4) has norm 5 → (5−1)² = 16; g = (0.6, 0.8) has norm 1 → 0. P = 8.
    let be = C64::new();
    let (p, d) = be.penalty(&be.from_f64(&[3.0, 4.0, 0.6, 0.8], &[2, 2]), PenaltyKind::TwoSided, 0.0);
    assert!((be.to_f64(&p)[0] - 8.0).abs() < 1e-12);
    // dP/dg = (2/2)·4·g/5.
    assert_close(&be.to_f64(&d), &[2.4, 3.2, 0.0, 0.0], 1e-12, "known dP/dg");
}

// ---------------------------------------------------------------- random numbers

#[test]
fn random_numbers_match_rng_module() {
    let be = C64::new();
    let shape = [7, 11, 13];
    let n = numel(&shape);
    let z = be.to_f64(&be.randn(&shape, 1234, 5));
    let u = be.to_f64(&be.rand_uniform(&shape, 1234, 5));
    for i in 0..n {
        assert_eq!(z[i], rng::normal(1234, 5, i as u64), "randn {i}");
        assert_eq!(u[i], rng::uniform(1234, 5, i as u64), "uniform {i}");
    }
    let b32 = C32::new();
    let z32 = b32.to_f32(&b32.randn(&[100_000], 9, 1));
    for i in (0..100_000).step_by(997) {
        assert_eq!(z32[i], rng::normal(9, 1, i as u64) as f32);
    }
    // Different streams and seeds differ.
    assert_ne!(be.to_f64(&be.randn(&[4], 1234, 6)), z[..4]);
    assert_ne!(be.to_f64(&be.randn(&[4], 1235, 5)), z[..4]);
}

#[test]
fn random_numbers_moments() {
    let be = C32::new();
    let n = 200_000;
    let z = be.to_f64(&be.randn(&[n], 42, 0));
    let u = be.to_f64(&be.rand_uniform(&[n], 42, 0));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let var = |v: &[f64]| {
        let m = mean(v);
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
    };
    assert!(mean(&z).abs() < 0.01 && (var(&z) - 1.0).abs() < 0.01, "normal {} {}", mean(&z), var(&z));
    assert!((mean(&u) - 0.5).abs() < 0.005 && (var(&u) - 1.0 / 12.0).abs() < 0.002, "uniform");
    assert!(u.iter().all(|&x| x > 0.0 && x < 1.0));
}

// ---------------------------------------------------------------- optimizers

#[test]
fn adam_two_steps_match_pytorch_formula() {
    let be = C64::new();
    let p0 = [0.5, -1.0, 2.0, 0.0];
    let grads = [[0.1, -0.2, 0.3, 0.0], [-0.4, 0.5, 0.05, 1.0]];
    let (lr, b1, b2, eps) = (1e-3, 0.5, 0.9, 1e-8);
    let p = be.from_f64(&p0, &[4]);
    let m = be.fill(&[4], 0.0);
    let v = be.fill(&[4], 0.0);
    let (mut wp, mut wm, mut wv) = (p0.to_vec(), vec![0.0; 4], vec![0.0; 4]);
    for (t, g) in grads.iter().enumerate() {
        let t = t as u64 + 1;
        be.adam_inplace(&p, &be.from_f64(g, &[4]), &m, &v, AdamStep { lr, beta1: b1, beta2: b2, eps, t });
        for i in 0..4 {
            wm[i] = b1 * wm[i] + (1.0 - b1) * g[i];
            wv[i] = b2 * wv[i] + (1.0 - b2) * g[i] * g[i];
            let step = lr / (1.0 - b1.powi(t as i32));
            let denom = wv[i].sqrt() / (1.0 - b2.powi(t as i32)).sqrt() + eps;
            wp[i] -= step * wm[i] / denom;
        }
    }
    assert_close(&be.to_f64(&p), &wp, 1e-15, "adam p");
    assert_close(&be.to_f64(&m), &wm, 1e-15, "adam m");
    assert_close(&be.to_f64(&v), &wv, 1e-15, "adam v");
    // Hand-computed: element 0, step 1: m = 0.05, v = 0.001, m̂ = 0.1, v̂ = 0.01 → p = 0.5 − 1e-3·0.1/(0.1+1e-8).
    // Step 2: m = −0.175, v = 0.0169, m̂ = −0.2333…, v̂ = 0.0889474… → p += 1e-3·0.2333/0.298241.
    let p1 = 0.5 - 1e-3 * 0.1 / (0.1 + 1e-8);
    let m2 = 0.5 * 0.05 + 0.5 * -0.4;
    let v2: f64 = 0.9 * 0.001 + 0.1 * 0.16;
    let want0 = p1 - 1e-3 / 0.75 * m2 / (v2.sqrt() / (0.19f64).sqrt() + 1e-8);
    assert!((be.to_f64(&p)[0] - want0).abs() < 1e-15);
    assert!((want0 - (0.499 + 1e-3 * 0.23333333 / 0.29824045)).abs() < 1e-8, "{want0}");
    // Zero gradient at step 1 leaves the parameter unchanged.
    assert_eq!(be.to_f64(&p)[3], 0.0 - 1e-3 / 0.75 * 0.5 / ((0.1f64).sqrt() / (0.19f64).sqrt() + 1e-8));
}

#[test]
fn adam_f32_large_matches_f64() {
    let (b32, b64) = (C32::new(), C64::new());
    let n = 70_001;
    let p0 = rand_vec(n, 61);
    let g = rand_vec(n, 62);
    let s = AdamStep { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, t: 3 };
    let (p32, m32, v32) = (b32.from_f64(&p0, &[n]), b32.fill(&[n], 0.01), b32.fill(&[n], 0.02));
    let (p64, m64, v64) = (b64.from_f64(&p0, &[n]), b64.fill(&[n], 0.01), b64.fill(&[n], 0.02));
    b32.adam_inplace(&p32, &b32.from_f64(&g, &[n]), &m32, &v32, s);
    b64.adam_inplace(&p64, &b64.from_f64(&g, &[n]), &m64, &v64, s);
    assert_close(&b32.to_f64(&p32), &b64.to_f64(&p64), 1e-6, "adam f32");
    assert_ne!(b64.to_f64(&p64), p0);
}

#[test]
fn rmsprop_two_steps_and_clip() {
    let be = C64::new();
    let p0 = [0.5, -1.0, 0.009, -0.0095];
    let grads = [[0.1, -0.2, 0.3, 0.0], [-0.4, 0.5, 0.05, 1.0]];
    let (lr, alpha, eps) = (5e-5, 0.99, 1e-8);
    for clip in [None, Some(0.01)] {
        let p = be.from_f64(&p0, &[4]);
        let v = be.fill(&[4], 0.0);
        let (mut wp, mut wv) = (p0.to_vec(), vec![0.0; 4]);
        for g in &grads {
            be.rmsprop_inplace(&p, &be.from_f64(g, &[4]), &v, RmsPropStep { lr, alpha, eps, clip });
            for i in 0..4 {
                wv[i] = alpha * wv[i] + (1.0 - alpha) * g[i] * g[i];
                wp[i] -= lr * g[i] / (wv[i].sqrt() + eps);
                if let Some(c) = clip {
                    wp[i] = wp[i].clamp(-c, c);
                }
            }
        }
        assert_close(&be.to_f64(&p), &wp, 1e-15, "rmsprop p");
        assert_close(&be.to_f64(&v), &wv, 1e-15, "rmsprop v");
        if clip.is_some() {
            assert!(be.to_f64(&p).iter().all(|x| x.abs() <= 0.01));
            assert_eq!(be.to_f64(&p)[..2], [0.01, -0.01]);
        }
    }
    // Hand-computed first step of element 0: v = 0.01·0.01 = 1e-4, p = 0.5 − 5e-5·0.1/(0.01 + 1e-8).
    let p = be.from_f64(&[0.5], &[1]);
    let v = be.fill(&[1], 0.0);
    be.rmsprop_inplace(&p, &be.from_f64(&[0.1], &[1]), &v, RmsPropStep { lr, alpha, eps, clip: None });
    assert!((be.to_f64(&v)[0] - 1e-4).abs() < 1e-18);
    assert!((be.to_f64(&p)[0] - (0.5 - 5e-5 * 0.1 / (0.01 + 1e-8))).abs() < 1e-15);
}

#[test]
fn clamp_and_axpby() {
    let be = C32::new();
    let n = 40_000;
    let x = rand_vec(n, 71);
    let p = be.from_f64(&x, &[n]);
    be.clamp_inplace(&p, 0.3);
    let got = be.to_f64(&p);
    for i in 0..n {
        assert_eq!(got[i], (x[i] as f32).clamp(-0.3, 0.3) as f64);
    }
    let y0 = rand_vec(n, 72);
    let y = be.from_f64(&y0, &[n]);
    be.axpby_inplace(&y, 0.9, &p, 0.1);
    let got = be.to_f64(&y);
    for i in (0..n).step_by(101) {
        assert!((got[i] - (0.9 * y0[i] + 0.1 * (x[i]).clamp(-0.3, 0.3))).abs() < 1e-6);
    }
    // y aliasing x: y ← 0.5y + 0.25y.
    let b = C64::new();
    let t = b.from_f64(&[4.0, 8.0], &[2]);
    b.axpby_inplace(&t, 0.5, &t.clone(), 0.25);
    assert_eq!(b.to_f64(&t), vec![3.0, 6.0]);
}

#[test]
fn optimizers_on_views_of_flat_buffers() {
    // Parameters and both Adam moments as views of one state buffer.
    let be = C64::new();
    let state = be.fill(&[9], 0.0);
    let (p, m, v) = (be.view(&state, 0, &[3]), be.view(&state, 3, &[3]), be.view(&state, 6, &[3]));
    be.copy_into_inplace(&state, 0, &be.from_f64(&[1.0, 2.0, 3.0], &[3]));
    be.adam_inplace(&p, &be.fill(&[3], 1.0), &m, &v, AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 0.0, t: 1 });
    let s = be.to_f64(&state);
    assert_close(&s[..3], &[0.9, 1.9, 2.9], 1e-14, "p");
    assert_close(&s[3..6], &[0.1; 3], 1e-14, "m");
    assert_close(&s[6..], &[0.01; 3], 1e-14, "v");
}

#[test]
#[should_panic]
fn adam_rejects_overlapping_state() {
    let be = C64::new();
    let s = be.fill(&[4], 0.0);
    let p = be.view(&s, 0, &[2]);
    let m = be.view(&s, 1, &[2]);
    let v = be.view(&s, 2, &[2]);
    be.adam_inplace(&p, &be.fill(&[2], 1.0), &m, &v, AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, t: 1 });
}

#[test]
fn name_and_debug() {
    let be = C32::new();
    assert!(be.name().starts_with("cpu"));
    let t: CpuTensor<f32> = be.fill(&[2], 1.0);
    assert!(format!("{t:?}").contains("[2]"));
    let _ = Cpu::<f64>::default();
}

// ---------------------------------------------------------------- timing (cargo test -- --ignored)

fn time<R>(what: &str, reps: usize, mut f: impl FnMut() -> R) {
    let _ = f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    eprintln!("{what:<52} min {:>8.3} ms   median {:>8.3} ms", ts[0], ts[reps / 2]);
}

#[test]
#[ignore]
fn timing() {
    let be = C32::new();
    eprintln!("{}", be.name());
    let a = be.randn(&[256, 512], 1, 0);
    let w = be.randn(&[512, 512], 1, 1);
    let b = be.randn(&[512], 1, 2);
    time("matmul [256,512]x[512,512]", 50, || be.matmul(&a, &w, false, false));
    time("matmul [256,512]x[512,512]ᵀ", 50, || be.matmul(&a, &w, false, true));
    time("matmul [256,512]ᵀx[256,512] (weight grad)", 50, || be.matmul(&a, &a, true, false));
    time("group_add Channel [256,512]", 200, || be.group_add(&a, &b, Group::Channel));
    time("group_sum Channel [256,512]", 200, || be.group_sum(&a, Group::Channel));
    time("leaky_relu [256,512]", 200, || be.leaky_relu(&a, 0.2));
    time("leaky_relu_backward [256,512]", 200, || be.leaky_relu_backward(&a, &a, 0.2));
    time("add [256,512]", 200, || be.add(&a, &a));
    time("randn [256,512]", 50, || be.randn(&[256, 512], 3, 0));
    time("penalty [256,512]", 200, || be.penalty(&a, PenaltyKind::TwoSided, 1e-12));
    let p = be.randn(&[1 << 20], 2, 0);
    let (m, v) = (be.fill(&[1 << 20], 0.0), be.fill(&[1 << 20], 0.0));
    let s = AdamStep { lr: 1e-4, beta1: 0.5, beta2: 0.9, eps: 1e-8, t: 1 };
    time("adam 1M", 50, || be.adam_inplace(&p, &p.clone(), &m, &v, s));
    for (t, (n, ci, co, h, k, st, pd)) in
        [(64, 1, 64, 28, 4, 2, 1), (64, 64, 128, 14, 4, 2, 1), (64, 128, 256, 7, 3, 1, 1)].into_iter().enumerate()
    {
        let t = t as u64;
        let x = be.randn(&[n, ci, h, h], 5, t);
        let wt = be.randn(&[co, ci, k, k], 6, t);
        let cp = ConvParams::new(st, pd);
        let y = be.conv2d(&x, &wt, cp);
        let what = format!("[{n},{ci},{h},{h}] * [{co},{ci},{k},{k}] s{st} p{pd}");
        time(&format!("conv2d {what}"), 10, || be.conv2d(&x, &wt, cp));
        time(&format!("data_grad {what}"), 10, || be.conv2d_data_grad(&y, &wt, cp, (h, h)));
        time(&format!("weight_grad {what}"), 10, || be.conv2d_weight_grad(&x, &y, cp, k));
    }
    let x = be.randn(&[64, 128, 14, 14], 7, 0);
    time("normalize Channel [64,128,14,14]", 20, || be.normalize(&x, Group::Channel, 1e-5));
    time("normalize_backward Channel [64,128,14,14]", 20, || be.normalize_backward(&x, &x, Group::Channel, 1e-5));
}

#[test]
#[ignore]
fn timing_groups() {
    let be = C32::new();
    let a = be.randn(&[256, 512], 1, 0);
    for g in [Group::All, Group::Sample, Group::Channel] {
        let v = be.randn(&[g.count(&[256, 512])], 1, 2);
        time(&format!("group_add {g:?} [256,512]"), 500, || be.group_add(&a, &v, g));
        time(&format!("group_broadcast {g:?} [256,512]"), 500, || be.group_broadcast(&v, g, &[256, 512]));
        time(&format!("group_sum {g:?} [256,512]"), 500, || be.group_sum(&a, g));
    }
}

#[test]
#[ignore]
fn timing_conv() {
    let be = C32::new();
    let (x, w) = (be.randn(&[64, 64, 14, 14], 5, 0), be.randn(&[128, 64, 4, 4], 6, 0));
    let cp = ConvParams::new(2, 1);
    let y = be.conv2d(&x, &w, cp);
    time("conv2d", 10, || be.conv2d(&x, &w, cp));
    time("data_grad", 10, || be.conv2d_data_grad(&y, &w, cp, (14, 14)));
    time("weight_grad", 10, || be.conv2d_weight_grad(&x, &y, cp, 4));
    let (a, b) = (be.randn(&[128, 1024], 1, 0), be.randn(&[1024, 3136], 1, 1));
    time("its GEMM alone: [128,1024]x[1024,3136]", 10, || be.matmul(&a, &b, false, false));
}
