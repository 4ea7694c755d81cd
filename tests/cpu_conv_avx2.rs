//! The opt-in AVX2 convolution kernels of the f32 CPU backend (src/backend/cpu/convk.rs) against
//! direct 7-loop references in f64, on shapes that hit every edge of their tiling: output rows not
//! a multiple of the 6-row panel, pixels not a multiple of the 16-column tile (1…17 and 49),
//! patches deeper than one 256-deep k block, strides 1–3, padding beyond the kernel, and batches
//! of several weight-gradient tasks and sub-chunks. A separate test binary, because the switch
//! (`use_avx2_conv`) is process-wide. Skips (passes with a note) on CPUs without AVX2 + FMA.

use wgan::backend::cpu::{avx2_conv_available, conv_path, use_avx2_conv, Cpu};
use wgan::backend::{Backend, ConvParams};
use wgan::rng::HostRng;

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
    fn out(&self, x: usize) -> usize {
        (x + 2 * self.p - self.k) / self.s + 1
    }
    /// f(x index, w index, y index) for every term of the direct convolution.
    fn terms(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = (self.out(self.h), self.out(self.w));
        for n in 0..self.n {
            for o in 0..self.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        for c in 0..self.ci {
                            for kh in 0..self.k {
                                for kw in 0..self.k {
                                    let ih = (oh * self.s + kh) as isize - self.p as isize;
                                    let iw = (ow * self.s + kw) as isize - self.p as isize;
                                    if ih < 0 || iw < 0 || ih >= self.h as isize || iw >= self.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * self.ci + c) * self.h + ih as usize) * self.w + iw as usize;
                                    let wi = ((o * self.ci + c) * self.k + kh) * self.k + kw;
                                    f(xi, wi, ((n * self.co + o) * ho + oh) * wo + ow);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut r = HostRng::new(seed, 7);
    // Values exact in f32, so the reference sees the same inputs as the kernel.
    (0..n).map(|_| (r.uniform() * 2.0 - 1.0) as f32 as f64).collect()
}

fn close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= 1e-5 * scale, "{what}: element {i}: got {g}, want {w}");
    }
}

fn check(be: &Cpu<f32>, c: Cfg) {
    let (ho, wo) = (c.out(c.h), c.out(c.w));
    let (xs, ws, ys) = ([c.n, c.ci, c.h, c.w], [c.co, c.ci, c.k, c.k], [c.n, c.co, ho, wo]);
    let x = rand_vec(xs.iter().product(), 1);
    let w = rand_vec(ws.iter().product(), 2);
    let gy = rand_vec(ys.iter().product(), 3);
    let (mut y, mut gx, mut gw) = (vec![0.0; gy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
    c.terms(|xi, wi, yi| {
        y[yi] += x[xi] * w[wi];
        gx[xi] += gy[yi] * w[wi];
        gw[wi] += gy[yi] * x[xi];
    });
    let (tx, tw, tg) = (be.from_f64(&x, &xs), be.from_f64(&w, &ws), be.from_f64(&gy, &ys));
    let p = ConvParams::new(c.s, c.p);
    let what = format!("{c:?}");
    close(&be.to_f32(&be.conv2d(&tx, &tw, p)), &y, &format!("conv2d {what}"));
    close(&be.to_f32(&be.conv2d_data_grad(&tg, &tw, p, (c.h, c.w))), &gx, &format!("data_grad {what}"));
    close(&be.to_f32(&be.conv2d_weight_grad(&tx, &tg, p, c.k)), &gw, &format!("weight_grad {what}"));
}

fn cfgs() -> Vec<Cfg> {
    let mut v = Vec::new();
    // Pixels per sample 1…17 (tile tails of every width), odd channel counts.
    for h in 1..=5 {
        for w in [1, 3, 4] {
            v.push(Cfg { n: 3, ci: 2, co: 7, h, w, k: 1, s: 1, p: 0 });
        }
    }
    for (s, p) in [(1, 0), (1, 1), (2, 1), (3, 2), (2, 3)] {
        v.push(Cfg { n: 2, ci: 3, co: 13, h: 9, w: 7, k: 3, s, p });
    }
    // The DCGAN-28 critic's layer shapes at small width: 49 and 16 pixels, a 1-channel input.
    v.push(Cfg { n: 3, ci: 1, co: 5, h: 28, w: 28, k: 4, s: 2, p: 1 });
    v.push(Cfg { n: 2, ci: 5, co: 11, h: 14, w: 14, k: 4, s: 2, p: 1 });
    v.push(Cfg { n: 2, ci: 6, co: 9, h: 7, w: 7, k: 3, s: 2, p: 1 });
    // Patches of 20·16 = 320 > 256: two k blocks; 17 samples: three weight-gradient tasks, and
    // sub-chunks of several samples within each.
    v.push(Cfg { n: 17, ci: 20, co: 19, h: 6, w: 5, k: 4, s: 1, p: 1 });
    v
}

#[test]
fn avx2_kernels_match_direct_loops() {
    if !avx2_conv_available() {
        eprintln!("skipped: this CPU has no AVX2 + FMA");
        return;
    }
    use_avx2_conv(true);
    assert_eq!(conv_path(), "fwd avx2, dgrad avx2, wgrad avx2");
    let be = Cpu::<f32>::new();
    for c in cfgs() {
        check(&be, c);
    }
}

#[test]
fn avx2_weight_grad_does_not_depend_on_thread_count() {
    if !avx2_conv_available() {
        eprintln!("skipped: this CPU has no AVX2 + FMA");
        return;
    }
    use_avx2_conv(true);
    let be = Cpu::<f32>::new();
    let c = Cfg { n: 19, ci: 4, co: 6, h: 10, w: 10, k: 4, s: 2, p: 1 };
    let x = be.from_f64(&rand_vec(c.n * c.ci * c.h * c.w, 4), &[c.n, c.ci, c.h, c.w]);
    let gy = be.from_f64(&rand_vec(c.n * c.co * 25, 5), &[c.n, c.co, 5, 5]);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| be.to_f32(&be.conv2d_weight_grad(&x, &gy, ConvParams::new(2, 1), 4)))
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}
