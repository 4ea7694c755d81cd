//! Where the CPU backend's convolution time goes: times conv2d, its data gradient and its weight
//! gradient at every layer of a DCGAN critic and generator (batch 64) and prints the best of 15
//! runs (this machine is shared, so the median is noisy) in ms and GFLOP/s.
//!   cargo run --release --example profile_conv [-- 28|32|64 [width]]
//! `CPU_TIME=1` runs everything on one thread and times each call by that thread's CPU time
//! (CLOCK_THREAD_CPUTIME_ID) instead of the wall clock: on a busy shared machine (other processes
//! taking the cores) this is the least noisy measure of a kernel's speed; `BATCH=8 REPS=50` keeps
//! such runs short.
//! `WGAN_CPU_CONV=avx2` runs the (opt-in) AVX2 kernels; `AB=1` times both paths alternately.

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::bench_util;

/// CPU time of the calling thread, in ms (the profiler's clock; 0 where the platform has none).
fn thread_cpu_ms() -> f64 {
    wgan::backend::cpu::profile::thread_cpu_secs().map_or(0.0, |s| s * 1e3)
}

/// (median, best) ms of `runs` calls after `warm`: wall clock, or this thread's CPU time with CPU_TIME=1.
fn time_ms(warm: usize, runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    if std::env::var("CPU_TIME").is_err() {
        return bench_util::time_ms(warm, runs, f);
    }
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = thread_cpu_ms();
            f();
            thread_cpu_ms() - s
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[0])
}
use wgan::nn::arch::{dcgan_critic, dcgan_generator, CriticNorm};
use wgan::nn::Layer;

fn main() {
    if std::env::var("CPU_TIME").is_ok() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        return pool.install(run);
    }
    run()
}

fn run() {
    let size: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(28);
    let nc = if size == 28 { 1 } else { 3 };
    let width: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, reps) = (env("BATCH", 64), env("REPS", 15));
    let be = Cpu::<f32>::new();
    println!("DCGAN-{size} width {width} batch {n}, best of {reps}, conv path {}", wgan::backend::cpu::conv_path());
    let mut total = [0.0f64; 3];
    for net in
        [dcgan_critic(size, nc, width, CriticNorm::None).unwrap(), dcgan_generator(size, nc, width, 100).unwrap()]
    {
        let mut shape = net.input.clone();
        for (i, l) in net.layers.iter().enumerate() {
            // (ci, h, co, k, p): a transposed convolution is timed as the convolution it inverts.
            let (ci, h, co, k, p, t) = match *l {
                Layer::Conv { cin, cout, k, p } => {
                    let o = p.out_size(shape[1], k);
                    let c = (cin, shape[1], cout, k, p, "");
                    shape = vec![cout, o, o];
                    c
                }
                Layer::ConvT { cin, cout, k, p } => {
                    let o = p.transposed_out_size(shape[1], k);
                    shape = vec![cout, o, o];
                    (cout, o, cin, k, p, "T")
                }
                _ => continue,
            };
            let ho = p.out_size(h, k);
            let x = be.randn(&[n, ci, h, h], 1, 1);
            let w = be.randn(&[co, ci, k, k], 1, 2);
            let gy = be.randn(&[n, co, ho, ho], 1, 3);
            let flops = 2.0 * (n * co * ci * k * k * ho * ho) as f64;
            // With AB=1: the generic gemm path and the AVX2 kernels alternately, best of each.
            let ab = std::env::var("AB").is_ok();
            let time = |op: &dyn Fn()| -> f64 {
                if !ab {
                    return time_ms(2, reps, op).1;
                }
                let (mut best_g, mut best_k) = (f64::MAX, f64::MAX);
                for _ in 0..reps {
                    wgan::backend::cpu::use_avx2_conv(false);
                    best_g = best_g.min(time_ms(0, 1, op).1);
                    wgan::backend::cpu::use_avx2_conv(true);
                    best_k = best_k.min(time_ms(0, 1, op).1);
                }
                print!("[gemm {best_g:.3} avx2 {best_k:.3} = {:.2}x] ", best_g / best_k);
                best_k
            };
            let f = time(&|| drop(be.conv2d(&x, &w, p)));
            let d = time(&|| drop(be.conv2d_data_grad(&gy, &w, p, (h, h))));
            let g = time(&|| drop(be.conv2d_weight_grad(&x, &gy, p, k)));
            for (t, v) in total.iter_mut().zip([f, d, g]) {
                *t += v;
            }
            let r = |ms: f64| flops / ms / 1e6;
            println!(
                "l{i}{t:<2} {ci:>4}->{co:<4} {h:>2}->{ho:<2} k{k} s{}: fprop {f:7.2} ms {:6.1} GF/s | dgrad {d:7.2} ms {:6.1} | wgrad {g:7.2} ms {:6.1}",
                p.stride,
                r(f),
                r(d),
                r(g)
            );
        }
    }
    println!("total: fprop {:.1} ms, dgrad {:.1} ms, wgrad {:.1} ms", total[0], total[1], total[2]);
}
