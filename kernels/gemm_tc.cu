// gemm_tc.cu: C = op(A)·op(B) (+ bias[col]) on tensor cores, TF32 or BF16 operands, f32
// accumulation (gemm_tc.cuh): matmul_{nn,nt,tn,tt}_{tf32,bf16} on 64×64 tiles and
// matmul_*_narrow_* on 16×128 tiles for at most 16 rows. Same arguments and layouts as gemm.cu's
// f32 kernels (A [M, K] or [K, M] when transposed, B [K, N] or [N, K], C [M, N]); the operands'
// addressing comes in TcParams (src/backend/cuda/tc.rs). Each operand is staged along its
// contiguous axis: k for a plain A and a transposed B, the row/column index otherwise.

#include "gemm_tc.cuh"

#define TC_ENTRY(name, P, BM, BN, WM, AK, BKF)                                                            \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                              \
        name(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,           \
             const float* __restrict__ bias, TcParams p) {                                                \
        tc_gemm<P, BM, BN, WM, AK, BKF>(a, b, out, bias, p);                                              \
    }

#define MATMUL_TC(prec, P)                                                      \
    TC_ENTRY(matmul_nn_##prec, P, 64, 64, 2, true, false)                       \
    TC_ENTRY(matmul_nt_##prec, P, 64, 64, 2, true, true)                        \
    TC_ENTRY(matmul_tn_##prec, P, 64, 64, 2, false, false)                      \
    TC_ENTRY(matmul_tt_##prec, P, 64, 64, 2, false, true)                       \
    TC_ENTRY(matmul_nn_narrow_##prec, P, 16, 128, 1, true, false)               \
    TC_ENTRY(matmul_nt_narrow_##prec, P, 16, 128, 1, true, true)                \
    TC_ENTRY(matmul_tn_narrow_##prec, P, 16, 128, 1, false, false)              \
    TC_ENTRY(matmul_tt_narrow_##prec, P, 16, 128, 1, false, true)

MATMUL_TC(tf32, Tf32)
MATMUL_TC(bf16, Bf16)

extern "C" __global__ void splitk_reduce_f32(float* __restrict__ out, const float* __restrict__ ws,
                                             const float* __restrict__ bias, SplitKParams p) {
    splitk_reduce(out, ws, bias, p);
}
