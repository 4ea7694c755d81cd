//! Where the CPU backend's convolution time goes: times conv2d, its data gradient and its weight
//! gradient at every layer of a DCGAN critic and generator (batch 64) and prints the best of 15
//! runs (this machine is shared, so the median is noisy) in ms and GFLOP/s.
//!   cargo run --release --example profile_conv [-- 28|32|64]

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::bench_util::time_ms;
use wgan::nn::arch::{dcgan_critic, dcgan_generator, CriticNorm};
use wgan::nn::Layer;

fn main() {
    let size: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(28);
    let nc = if size == 28 { 1 } else { 3 };
    let be = Cpu::<f32>::new();
    let n = 64;
    let mut total = [0.0f64; 3];
    for net in [dcgan_critic(size, nc, 64, CriticNorm::None).unwrap(), dcgan_generator(size, nc, 64, 128).unwrap()] {
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
            let (_, f) = time_ms(2, 15, || drop(be.conv2d(&x, &w, p)));
            let (_, d) = time_ms(2, 15, || drop(be.conv2d_data_grad(&gy, &w, p, (h, h))));
            let (_, g) = time_ms(2, 15, || drop(be.conv2d_weight_grad(&x, &gy, p, k)));
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
