//! `#[repr(C)]` mirrors of the parameter structs the kernels take by value. Each must match its C
//! definition field for field (the C side names them in the comment); the size assertions at the
//! bottom catch a field added on one side only.

use cudarc::driver::DeviceRepr;

/// common.cuh `Segments`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segments {
    pub count: i64,
    pub len: i64,
    pub run: i64,
    pub outer_stride: i64,
    pub group_stride: i64,
}

/// common.cuh `GroupMap`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupMap {
    pub n: i64,
    pub div: i64,
    pub modulus: i64,
}

/// elementwise.cu `Unary` and `Binary` (same layout)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar {
    pub n: i64,
    pub c: f32,
}

/// reduce.cu `SumParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SumParams {
    pub seg: Segments,
    pub chunk: i64,
    pub splits: i64,
}

/// norm.cu `NormParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormParams {
    pub seg: Segments,
    pub map: GroupMap,
    pub eps: f32,
}

/// penalty.cu `InterpParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpParams {
    pub n: i64,
    pub per_sample: i64,
}

/// penalty.cu `PenaltyParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PenaltyParams {
    pub samples: i64,
    pub per_sample: i64,
    pub eps: f32,
    pub one_sided: i32,
}

/// optim.cu `AdamParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AdamParams {
    pub n: i64,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
}

/// elementwise.cu `GatherParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GatherParams {
    pub n: i64,
    pub row_len: i64,
    pub start: i64,
}

/// optim.cu `AdamPrepare`: the host-side hyperparameters of `adam_prepare_f32`, in f64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AdamPrepare {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
}

/// optim.cu `RmsPropParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RmsPropParams {
    pub n: i64,
    pub lr: f32,
    pub alpha: f32,
    pub one_minus_alpha: f32,
    pub eps: f32,
    pub clip: f32,
    pub has_clip: i32,
}

/// optim.cu `ClampParams` has the layout of [`Scalar`]; `AxpbyParams`:
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AxpbyParams {
    pub n: i64,
    pub a: f32,
    pub b: f32,
}

/// rng.cu `RngParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RngParams {
    pub n: i64,
    pub seed: u64,
    pub stream: u64,
}

/// gemm_tile.cuh `GemmShape`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmShape {
    pub m: u32,
    pub nc: u32,
    pub kd: u32,
    pub k_chunk: u32,
    pub total: i64,
}

/// epilogue.cuh `GemmEpi`: what a GEMM does to each output element after its reduction: + bias[col]
/// (pointer, 0: none), then the activation (`act` 1: v > 0 ? v : slope·v), then the gate (pointer
/// to a tensor laid out as the output, 0: none; v where gate > 0, slope·v elsewhere).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GemmEpi {
    pub bias: u64,
    pub gate: u64,
    pub slope: f32,
    pub act: u32,
}

impl GemmEpi {
    /// Only a bias (0: nothing at all).
    pub fn bias(bias: u64) -> GemmEpi {
        GemmEpi { bias, ..GemmEpi::default() }
    }
}

/// gemm_tile.cuh `SplitKParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SplitKParams {
    pub total: i64,
    pub splits: i64,
    pub cols: i64,
}

/// conv.cu `ConvShape`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvShape {
    pub n: u32,
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub k: u32,
    pub ho: u32,
    pub wo: u32,
    pub stride: u32,
    pub pad: u32,
    /// x / stride = (x · s_mul) >> s_shr for 0 ≤ x < 2^31 ([`ConvShape::stride_divisor`]).
    pub s_mul: u32,
    pub s_shr: u32,
}

impl ConvShape {
    /// The multiply-high constants that divide any 0 ≤ x < 2^31 by `d` (1 ≤ d < 2^31) exactly:
    /// shr = 31 + ⌈log2 d⌉, mul = ⌈2^shr / d⌉ < 2^32, and x / d = (x · mul) >> shr. Why: with
    /// e = mul·d − 2^shr < d, x·mul / 2^shr = x/d + x·e / (d·2^shr), whose excess is below
    /// x / 2^shr < 2^−⌈log2 d⌉ ≤ 1/d, while the fraction of x/d is at most (d−1)/d: the floor holds.
    pub fn stride_divisor(d: u32) -> (u32, u32) {
        assert!(d >= 1 && d < 1 << 31, "divisor {d} out of range");
        let l = 32 - (d - 1).leading_zeros(); // ⌈log2 d⌉ (0 for d = 1)
        let shr = 31 + l;
        let mul = (1u64 << shr).div_ceil(u64::from(d));
        (mul as u32, shr)
    }
}

/// conv.cu `ConvParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvParams {
    pub g: GemmShape,
    pub c: ConvShape,
}

/// peak.cu `PeakParams`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PeakParams {
    pub iters: i64,
    pub a: f32,
    pub b: f32,
}

// SAFETY: plain-old-data structs with C layout, matching the kernels' parameter types.
unsafe impl DeviceRepr for Segments {}
unsafe impl DeviceRepr for GroupMap {}
unsafe impl DeviceRepr for Scalar {}
unsafe impl DeviceRepr for PeakParams {}
unsafe impl DeviceRepr for SumParams {}
unsafe impl DeviceRepr for NormParams {}
unsafe impl DeviceRepr for InterpParams {}
unsafe impl DeviceRepr for PenaltyParams {}
unsafe impl DeviceRepr for AdamParams {}
unsafe impl DeviceRepr for AdamPrepare {}
unsafe impl DeviceRepr for GatherParams {}
unsafe impl DeviceRepr for RmsPropParams {}
unsafe impl DeviceRepr for AxpbyParams {}
unsafe impl DeviceRepr for RngParams {}
unsafe impl DeviceRepr for GemmShape {}
unsafe impl DeviceRepr for SplitKParams {}
unsafe impl DeviceRepr for GemmEpi {}
unsafe impl DeviceRepr for ConvShape {}
unsafe impl DeviceRepr for ConvParams {}

// Sizes as the C compiler lays the structs out (x86-64 and the CUDA ABI agree for these types).
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<Segments>() == 40);
    assert!(size_of::<GemmEpi>() == 24);
    assert!(size_of::<GroupMap>() == 24);
    assert!(size_of::<Scalar>() == 16);
    assert!(size_of::<PeakParams>() == 16);
    assert!(size_of::<SumParams>() == 56);
    assert!(size_of::<NormParams>() == 72);
    assert!(size_of::<InterpParams>() == 16);
    assert!(size_of::<PenaltyParams>() == 24);
    assert!(size_of::<AdamParams>() == 40);
    assert!(size_of::<AdamPrepare>() == 24);
    assert!(size_of::<GatherParams>() == 24);
    assert!(size_of::<RmsPropParams>() == 32);
    assert!(size_of::<AxpbyParams>() == 16);
    assert!(size_of::<RngParams>() == 24);
    assert!(size_of::<GemmShape>() == 24);
    assert!(size_of::<SplitKParams>() == 24);
    assert!(size_of::<ConvShape>() == 48);
    assert!(size_of::<ConvParams>() == 72);
};

#[cfg(test)]
mod tests {
    use super::ConvShape;

    #[test]
    fn stride_divisor_divides_exactly() {
        let xs: Vec<u32> = (0..5000u32).chain((1u32 << 31) - 5000..1u32 << 31).chain([12345678, 1 << 30]).collect();
        for d in (1..=64u32).chain([100, 1000, 65535, 65536, 1 << 20, (1 << 30) + 1, (1 << 31) - 1]) {
            let (mul, shr) = ConvShape::stride_divisor(d);
            for &x in &xs {
                assert_eq!(((u64::from(x) * u64::from(mul)) >> shr) as u32, x / d, "{x} / {d}");
            }
        }
    }
}
