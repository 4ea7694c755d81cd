//! The architectures: the toy MLPs of the WGAN-GP paper's gan_toy.py and DCGAN generators and
//! critics for 28×28, 32×32 and 64×64 images. `benches/reference/wgan_torch.py` defines the same
//! networks in PyTorch with the same parameter names.

use super::{InitRule, Layer, Net};
use crate::backend::ConvParams;
use crate::error::Result;

/// Default hidden width of the toy MLPs (gan_toy.py's DIM; `--width` changes it).
pub const TOY_DIM: usize = 512;
/// Latent size of the toy generator (gan_toy.py feeds 2-D noise).
pub const TOY_NZ: usize = 2;
/// Critic LeakyReLU slope (DCGAN).
pub const LEAKY_SLOPE: f64 = 0.2;

/// Critic normalisation: none, or layer norm over (C,H,W) per sample (the WGAN-GP paper's choice;
/// batch norm is not allowed in a WGAN-GP critic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CriticNorm {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "layer")]
    Layer,
}

impl std::str::FromStr for CriticNorm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(CriticNorm::None),
            "layer" => Ok(CriticNorm::Layer),
            _ => Err(format!("expected none or layer, got {s:?}")),
        }
    }
}

impl std::fmt::Display for CriticNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CriticNorm::None => "none",
            CriticNorm::Layer => "layer",
        })
    }
}

/// gan_toy.py's generator: Linear(2,512) ReLU ×3 → Linear(512, 2).
pub fn toy_generator() -> Net {
    toy_generator_with(TOY_NZ, TOY_DIM)
}

/// The toy generator with another latent size and hidden width: Linear(nz,d) ReLU ×3 → Linear(d, 2).
pub fn toy_generator_with(nz: usize, d: usize) -> Net {
    mlp(nz, d, 2)
}

/// gan_toy.py's critic: Linear(2,512) ReLU ×3 → Linear(512, 1).
pub fn toy_critic() -> Net {
    toy_critic_with(TOY_DIM)
}

/// The toy critic with hidden width `d`: Linear(2,d) ReLU ×3 → Linear(d, 1).
pub fn toy_critic_with(d: usize) -> Net {
    mlp(2, d, 1)
}

/// The toy MLPs start by PyTorch's `nn.Linear` default ([`InitRule::Pytorch`]), as the PyTorch
/// port of gan_toy.py does; `Net::with_init` switches them to another rule.
fn mlp(inp: usize, d: usize, out: usize) -> Net {
    Net::with_rule(
        vec![
            Layer::Linear { inp, out: d },
            Layer::Relu,
            Layer::Linear { inp: d, out: d },
            Layer::Relu,
            Layer::Linear { inp: d, out: d },
            Layer::Relu,
            Layer::Linear { inp: d, out },
        ],
        vec![inp],
        InitRule::Pytorch,
    )
}

/// (cin, cout, kernel, stride, pad) of each transposed convolution, first to last.
fn generator_plan(size: usize, nc: usize, w: usize, nz: usize) -> Result<Vec<(usize, usize, usize, usize, usize)>> {
    Ok(match size {
        64 => vec![
            (nz, 8 * w, 4, 1, 0),
            (8 * w, 4 * w, 4, 2, 1),
            (4 * w, 2 * w, 4, 2, 1),
            (2 * w, w, 4, 2, 1),
            (w, nc, 4, 2, 1),
        ],
        32 => vec![(nz, 4 * w, 4, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, w, 4, 2, 1), (w, nc, 4, 2, 1)],
        28 => vec![(nz, 4 * w, 7, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, nc, 4, 2, 1)],
        _ => crate::bail!("--image-size {size}: the DCGAN models make 28, 32 or 64 pixel images"),
    })
}

/// (cin, cout, kernel, stride, pad) of each convolution, first to last.
fn critic_plan(size: usize, nc: usize, w: usize) -> Result<Vec<(usize, usize, usize, usize, usize)>> {
    Ok(match size {
        64 => vec![
            (nc, w, 4, 2, 1),
            (w, 2 * w, 4, 2, 1),
            (2 * w, 4 * w, 4, 2, 1),
            (4 * w, 8 * w, 4, 2, 1),
            (8 * w, 1, 4, 1, 0),
        ],
        32 => vec![(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 4, 2, 1), (4 * w, 1, 4, 1, 0)],
        28 => vec![(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 3, 2, 1), (4 * w, 1, 4, 1, 0)],
        _ => crate::bail!("--image-size {size}: the DCGAN models take 28, 32 or 64 pixel images"),
    })
}

/// DCGAN generator (initialised by [`InitRule::Dcgan`]): z [N, nz] → image [N, nc, size, size] in [−1, 1]; ConvT–BN–ReLU, last ConvT–Tanh.
pub fn dcgan_generator(size: usize, nc: usize, width: usize, nz: usize) -> Result<Net> {
    check_width(width)?;
    let plan = generator_plan(size, nc, width, nz)?;
    let mut layers = Vec::new();
    for (i, &(cin, cout, k, s, p)) in plan.iter().enumerate() {
        layers.push(Layer::ConvT { cin, cout, k, p: ConvParams::new(s, p) });
        if i + 1 < plan.len() {
            layers.push(Layer::BatchNorm { c: cout });
            layers.push(Layer::Relu);
        } else {
            layers.push(Layer::Tanh);
        }
    }
    Ok(Net::new(layers, vec![nz, 1, 1]))
}

/// DCGAN critic (initialised by [`InitRule::Dcgan`]): image → [N, 1, 1, 1]; Conv–[LayerNorm]–LeakyReLU(0.2), no norm after the first
/// convolution, the last convolution linear.
pub fn dcgan_critic(size: usize, nc: usize, width: usize, norm: CriticNorm) -> Result<Net> {
    check_width(width)?;
    let plan = critic_plan(size, nc, width)?;
    let mut layers = Vec::new();
    for (i, &(cin, cout, k, s, p)) in plan.iter().enumerate() {
        layers.push(Layer::Conv { cin, cout, k, p: ConvParams::new(s, p) });
        if i + 1 == plan.len() {
            break;
        }
        if i > 0 && norm == CriticNorm::Layer {
            layers.push(Layer::LayerNorm { c: cout });
        }
        layers.push(Layer::LeakyRelu(LEAKY_SLOPE));
    }
    Ok(Net::new(layers, vec![nc, size, size]))
}

fn check_width(width: usize) -> Result<()> {
    if width == 0 || width > 1024 {
        crate::bail!("--width {width}: expected a channel width between 1 and 1024");
    }
    Ok(())
}
