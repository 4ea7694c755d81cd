// gemm.cu: C = epilogue(op(A)·op(B)) for row-major 2-D A and B, op transposing when the flag is
// set, as a tiled shared-memory SGEMM (gemm_tile.cuh: 64×64 tiles, k step 16, 4×4 outputs per
// thread, optional deterministic split-K). The epilogue (epilogue.cuh: + bias[col], activation,
// gate) runs in the GEMM or, with split-K, in splitk_reduce_f32: a Linear layer with its ReLU in
// one pass. The transpose
// flags are compile-time: matmul_nn_f32 (A·B), matmul_nt_f32 (A·Bᵀ), matmul_tn_f32 (Aᵀ·B),
// matmul_tt_f32 (Aᵀ·Bᵀ).
// A is stored [M, K] (or [K, M] when transposed), B [K, N] (or [N, K]), C [M, N].

#include "gemm_tile.cuh"

// A (TA: stored [K, M]) as an operand of gemm_tile: element (i, kk). j_at keeps the row's offset.
template <bool TA>
struct MatA {
    static constexpr bool DIGITS = false;
    const float* __restrict__ p;
    u32 m, k;
    typedef i64 J;
    __device__ __forceinline__ J j_at(u32 i) const { return TA ? (i64)i : (i64)i * k; }
    __device__ __forceinline__ float at(J j, const KCur& kk) const {
        return TA ? p[(i64)kk.k * m + j] : p[j + kk.k];
    }
};

// B (TB: stored [N, K]) as an operand: element (kk, j).
template <bool TB>
struct MatB {
    static constexpr bool DIGITS = false;
    const float* __restrict__ p;
    u32 n, k;
    typedef i64 J;
    __device__ __forceinline__ J j_at(u32 j) const { return TB ? (i64)j * k : (i64)j; }
    __device__ __forceinline__ float at(J j, const KCur& kk) const {
        return TB ? p[j + kk.k] : p[(i64)kk.k * n + j];
    }
};

template <bool TA, bool TB>
struct MatOperand {
    MatA<TA> A;
    MatB<TB> B;
    GemmEpi epi;  // bias, activation, gate (epilogue.cuh)
    u32 n;
    __device__ __forceinline__ i64 c(u32 i, u32 j) const { return (i64)i * n + j; }
    __device__ __forceinline__ float epilogue(u32 j, i64 o, float v) const { return epi_apply(epi, j, o, v); }
};

#define MATMUL_ENTRY(name, TA, TB)                                                                  \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)                                   \
        name(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,     \
             GemmEpi epi, GemmShape s) {                                                            \
        MatOperand<TA, TB> op{{a, s.m, s.kd}, {b, s.nc, s.kd}, epi, s.nc};                          \
        gemm_tile<!(TA), !(TB)>(op, out, s);                                                        \
    }

MATMUL_ENTRY(matmul_nn_f32, false, false)
MATMUL_ENTRY(matmul_nt_f32, false, true)
MATMUL_ENTRY(matmul_tn_f32, true, false)
MATMUL_ENTRY(matmul_tt_f32, true, true)

extern "C" __global__ void splitk_reduce_f32(float* __restrict__ out, const float* __restrict__ ws, GemmEpi epi,
                                             SplitKParams p) {
    splitk_reduce(out, ws, epi, p);
}
