//! The precision of matrix-product operands on the GPU: a user choice (`--precision`).
//!
//! - `f32`: the exact SIMT kernels (`kernels/gemm.cu`, `kernels/conv.cu`), the reference path.
//! - `tf32`: operands rounded to TF32 (10 mantissa bits, `cvt.rna`: nearest, ties away from zero)
//!   as they enter the tensor cores; f32 accumulation, storage and optimizer state. What PyTorch
//!   uses for convolutions by default, and the CUDA default here.
//! - `bf16`: operands rounded to BF16 (7 mantissa bits, nearest even); f32 accumulation, storage
//!   and optimizer state.
//!
//! Only matrix products and convolutions change; every other op is f32 whatever the choice. The CPU
//! backend computes in f32 (or f64) and ignores it.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    #[default]
    Tf32,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Tf32, Precision::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Unit roundoff of one operand rounding: 2^-24 (f32), 2^-11 (tf32), 2^-8 (bf16).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::Tf32 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Precision {
        match c {
            0 => Precision::F32,
            2 => Precision::Bf16,
            _ => Precision::Tf32,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("precision {s:?}: expected f32, tf32 or bf16")),
        }
    }
}
