//! Analytic FLOP counts of the networks and of a training step, for benchmarks: the floor a step
//! cannot beat is its FLOPs divided by the device's measured peak.
//!
//! A multiply–add counts 2 FLOPs; only matrix products and convolutions are counted (elementwise
//! work is small beside them). A backward pass costs 2 forward passes (data and weight gradients).
//! Per WGAN-GP critic iteration: G forward (1·G) + D forward on real, fake and x̂ (3·D) + ∇ₓD(x̂)
//! with graph (1·D) + the final backward: through real and fake (2·2·D) and through the recorded
//! gradient graph, whose forward was 2·D and whose backward is 2·2·D: 12·D + 1·G in all. A WGAN
//! critic iteration is G + 2·D + 2·2·D = 6·D + 1·G; a generator iteration is G + D + D (data
//! gradient only) + 2·G = 3·G + 2·D.

use crate::nn::{Layer, Net};

/// FLOPs of one forward pass of `net` on `batch` samples.
pub fn forward_flops(net: &Net, batch: usize) -> f64 {
    let mut shape = net.input.clone();
    let mut total = 0.0;
    for layer in &net.layers {
        match *layer {
            Layer::Linear { inp, out } => {
                total += 2.0 * (inp * out) as f64;
                shape = vec![out];
            }
            Layer::Conv { cin, cout, k, p } => {
                let (ho, wo) = (p.out_size(shape[1], k), p.out_size(shape[2], k));
                total += 2.0 * (cout * cin * k * k * ho * wo) as f64;
                shape = vec![cout, ho, wo];
            }
            Layer::ConvT { cin, cout, k, p } => {
                let (hi, wi) = (shape[1], shape[2]);
                total += 2.0 * (cin * cout * k * k * hi * wi) as f64;
                shape = vec![cout, p.transposed_out_size(hi, k), p.transposed_out_size(wi, k)];
            }
            _ => {}
        }
    }
    total * batch as f64
}

/// FLOPs of one generator step: `n_critic` critic iterations and one generator iteration.
pub fn step_flops(gen: &Net, critic: &Net, batch: usize, n_critic: usize, penalty: bool) -> f64 {
    let (g, d) = (forward_flops(gen, batch), forward_flops(critic, batch));
    let critic_iter = g + if penalty { 12.0 * d } else { 6.0 * d };
    n_critic as f64 * critic_iter + 3.0 * g + 2.0 * d
}
