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
//!
//! TF32 and BF16 `mma.sync` (and the `cp.async` the tensor-core kernels feed them with) need
//! compute capability 8.0: on an older GPU the default falls back to f32 with a notice, and an
//! explicit `--precision tf32|bf16` is an error ([`resolve`]).

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

/// The oldest compute capability (major·10 + minor) with TF32 and BF16 `mma.sync`: sm_80.
pub const TENSOR_CORE_MIN_SM: u32 = 80;

/// The compute capability of an architecture name, major·10 + minor: "sm_75" → 75, "sm_90a" →
/// 90, "75" → 75; None for anything else.
pub fn sm_of(arch: &str) -> Option<u32> {
    let digits = arch.strip_prefix("sm_").unwrap_or(arch);
    let digits = digits.strip_suffix('a').unwrap_or(digits);
    (digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// Whether matrix products can run at `p` on a device of compute capability `sm` (None: no limit,
/// the host emulator, which emulates every instruction).
pub fn supported(p: Precision, sm: Option<u32>) -> bool {
    p == Precision::F32 || sm.map_or(true, |s| s >= TENSOR_CORE_MIN_SM)
}

/// The precision a device of compute capability `sm` runs at when none is asked for: TF32 from
/// sm_80 on (and under the emulator), else f32.
pub fn default_for(sm: Option<u32>) -> Precision {
    if supported(Precision::default(), sm) {
        Precision::default()
    } else {
        Precision::F32
    }
}

/// The precision to run at: `requested` on a device of compute capability `sm` (None: the host
/// emulator, no limit). `explicit` says the user asked for it (`--precision`); otherwise it is the
/// default or the value a resumed run recorded. Pure, so the decision is tested without such a GPU.
///
/// - Supported: `requested`, no notice.
/// - Not supported and not explicit: f32, and a one-line notice saying why.
/// - Not supported and explicit: an error naming the flag, the device's sm and what would work.
pub fn resolve(requested: Precision, explicit: bool, sm: Option<u32>) -> Result<(Precision, Option<String>), String> {
    if supported(requested, sm) {
        return Ok((requested, None));
    }
    let sm = sm.unwrap_or_default();
    let upper = requested.name().to_ascii_uppercase();
    if explicit {
        return Err(format!(
            "--precision {requested}: this GPU is sm_{sm}, and {upper} tensor cores (mma.sync) need sm_{TENSOR_CORE_MIN_SM} or newer; use --precision f32"
        ));
    }
    Ok((
        Precision::F32,
        Some(format!(
            "note: this GPU is sm_{sm}, without {upper} tensor cores (they need sm_{TENSOR_CORE_MIN_SM}); matrix products and convolutions run in f32"
        )),
    ))
}
