// conv_tc.cu: the three convolution passes as implicit GEMMs on tensor cores (gemm_tc.cuh), TF32
// or BF16 operands, f32 accumulation; PyTorch cross-correlation semantics as conv.cu's f32 kernels.
//
//   conv2d_fwd_*    y = conv(x, w): M = Co, columns (n, oh, ow), k (ci, kh, kw). A = w (k-fast),
//                   B = x gathered, k-fast too: a thread keeps its 8 columns' positions and walks
//                   one k per tile, instead of walking 8 k's (a digit carry each) for one column,
//                   which halves the staging's instructions (sass-report: 720 → 485 per K step).
//                   Consecutive k are consecutive kw, adjacent in memory; column-fast staging
//                   was no better coalesced at stride 2 (consecutive ow are 2 apart).
//   conv2d_dgrad_*  gx (the transposed convolution), split by output phase: for stride s, one launch
//                   per (ih mod s, iw mod s) phase, whose columns are that phase's pixels and whose
//                   k runs over the live taps only, kh ≡ (ih + pad) mod s: (co, jh, jw) with
//                   kh = rh + s·jh, so oh = i' + ch − jh exactly (no tap multiplies a zero, no
//                   division). A 1×1 gy onto a K×K image with no padding is a plain GEMM
//                   (the generator's first layer): tc.rs runs it as matmul_nn.
//   conv2d_wgrad_*  gw: M = Co, columns (ci, kh, kw), k (n, oh, ow), both operands k-fast; long
//                   reductions split across blockIdx.z and added in order by splitk_reduce_f32.
// The `_narrow` kernels use 16×128 tiles for at most 16 output rows (1 or 3 image channels).
// All addressing comes in TcParams from src/backend/cuda/tc.rs.

#include "gemm_tc.cuh"

#define TC_ENTRY(name, P, BM, BN, WM, AK, BKF)                                                            \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                              \
        name(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,           \
             const float* __restrict__ bias, TcParams p) {                                                \
        tc_gemm<P, BM, BN, WM, AK, BKF>(a, b, out, bias, p);                                              \
    }

#define CONV_TC(prec, P)                                                        \
    TC_ENTRY(conv2d_fwd_##prec, P, 64, 64, 2, true, true)                       \
    TC_ENTRY(conv2d_dgrad_##prec, P, 64, 64, 2, true, false)                    \
    TC_ENTRY(conv2d_wgrad_##prec, P, 64, 64, 2, true, true)                     \
    TC_ENTRY(conv2d_fwd_narrow_##prec, P, 16, 128, 1, true, true)               \
    TC_ENTRY(conv2d_dgrad_narrow_##prec, P, 16, 128, 1, true, false)            \
    TC_ENTRY(conv2d_wgrad_narrow_##prec, P, 16, 128, 1, true, false)

CONV_TC(tf32, Tf32)
CONV_TC(bf16, Bf16)

extern "C" __global__ void splitk_scatter_f32(float* __restrict__ out, const float* __restrict__ ws,
                                              const float* __restrict__ bias, SplitKParams p, TcOut c) {
    splitk_scatter(out, ws, bias, p, c);
}
