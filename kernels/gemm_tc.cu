// gemm_tc.cu: C = op(A)·op(B) (+ bias[col]) on tensor cores, TF32 or BF16 operands, f32
// accumulation (gemm_tc.cuh): matmul_{nn,nt,tn,tt}_{tf32,bf16} on 64×64 tiles and
// matmul_*_narrow_* on 16×128 tiles for at most 16 rows. Same arguments and layouts as gemm.cu's
// f32 kernels (A [M, K] or [K, M] when transposed, B [K, N] or [N, K], C [M, N]); the operands'
// addressing comes in TcParams (src/backend/cuda/ops/tc.rs). Each operand is staged along its
// contiguous axis: k for a plain A and a transposed B, the row/column index otherwise.

#include "gemm_tc.cuh"

#define TC_ENTRY(name, P, BM, BN, WM, AK, BKF)                                                            \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                              \
        name(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,           \
             GemmEpi epi, TcParams p) {                                                                   \
        tc_gemm<P, BM, BN, WM, AK, BKF>(a, b, out, epi, p);                                               \
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

extern "C" __global__ void splitk_scatter_f32(float* __restrict__ out, const float* __restrict__ ws, GemmEpi epi,
                                              SplitKParams p, TcOut c) {
    splitk_scatter(out, ws, epi, p, c);
}

// ---- self-tests of mma.cuh (tests/gpu_tensorcore.rs), one warp ----
// D = A·B + C with A 16×K row-major, B K×8 row-major ([k][n]), C and D 16×8 row-major, K = 8
// (TF32) or 16 (BF16). The fragments are loaded here exactly as the PTX ISA's figures place them,
// written independently of the emulator's lane mapping, so a wrong layout on either side fails.
extern "C" __global__ void mma_selftest_tf32(float* __restrict__ d, const float* __restrict__ a,
                                             const float* __restrict__ b, const float* __restrict__ c) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    u32 fa[1][4], fb[1][2];
    fa[0][0] = tf32_round(a[g * 8 + t]);
    fa[0][1] = tf32_round(a[(g + 8) * 8 + t]);
    fa[0][2] = tf32_round(a[g * 8 + t + 4]);
    fa[0][3] = tf32_round(a[(g + 8) * 8 + t + 4]);
    fb[0][0] = tf32_round(b[t * 8 + g]);
    fb[0][1] = tf32_round(b[(t + 4) * 8 + g]);
    float acc[1][1][4] = {{{c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]}}};
    mma_tf32<1, 1>(acc, fa, fb);
    d[g * 8 + 2 * t] = acc[0][0][0];
    d[g * 8 + 2 * t + 1] = acc[0][0][1];
    d[(g + 8) * 8 + 2 * t] = acc[0][0][2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[0][0][3];
}

extern "C" __global__ void mma_selftest_bf16(float* __restrict__ d, const float* __restrict__ a,
                                             const float* __restrict__ b, const float* __restrict__ c) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    u32 fa[1][4], fb[1][2];
    fa[0][0] = bf16x2_pack(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
    fa[0][1] = bf16x2_pack(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
    fa[0][2] = bf16x2_pack(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
    fa[0][3] = bf16x2_pack(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
    fb[0][0] = bf16x2_pack(b[2 * t * 8 + g], b[(2 * t + 1) * 8 + g]);
    fb[0][1] = bf16x2_pack(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
    float acc[1][1][4] = {{{c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]}}};
    mma_bf16<1, 1>(acc, fa, fb);
    d[g * 8 + 2 * t] = acc[0][0][0];
    d[g * 8 + 2 * t + 1] = acc[0][0][1];
    d[(g + 8) * 8 + 2 * t] = acc[0][0][2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[0][0][3];
}

// tf[i] = x[i] rounded to TF32, bf[i] = x[i] rounded to BF16 (as f32 bit patterns), i < n.
extern "C" __global__ void round_selftest(float* __restrict__ tf, float* __restrict__ bf, const float* __restrict__ x,
                                          i64 n) {
    WG_FOR(i, n) {
        tf[i] = __int_as_float((int)tf32_round(x[i]));
        bf[i] = __int_as_float((int)(bf16x2_pack(x[i], 0.0f) << 16));
    }
}

// ldmatrix .x4 (TRANS 0 or 1) of a 32×8 matrix of 16-bit values m (row-major, stored as 128 u32
// words): lane l points at row l; out[l·4 + q] is the register q lane l receives.
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_selftest(u32* __restrict__ out, const u32* __restrict__ m) {
    __shared__ u32 s[128];
    const int lane = threadIdx.x & 31;
    for (int i = lane; i < 128; i += 32) s[i] = m[i];
    __syncwarp();
    u32 r[4];
    ldmatrix_x4<TRANS>(r, &s[lane * 4]);
    for (int q = 0; q < 4; ++q) out[lane * 4 + q] = r[q];
}
extern "C" __global__ void ldmatrix_selftest_n(u32* __restrict__ out, const u32* __restrict__ m) {
    ldmatrix_selftest<false>(out, m);
}
extern "C" __global__ void ldmatrix_selftest_t(u32* __restrict__ out, const u32* __restrict__ m) {
    ldmatrix_selftest<true>(out, m);
}

// ---- the tensor-core ceiling for benchmarks: mma.sync back to back, no memory traffic ----
// Each warp runs `iters` rounds of 1×4 independent MMAs (four accumulator chains hide the latency).
// TF32 m16n8k8: 2·16·8·8 = 2048 flops per MMA; BF16 m16n8k16: 4096.
__device__ __forceinline__ void mma_any(Tf32, float (&acc)[1][4][4], const u32 (&a)[1][4], const u32 (&b)[4][2]) {
    mma_tf32<1, 4>(acc, a, b);
}
__device__ __forceinline__ void mma_any(Bf16, float (&acc)[1][4][4], const u32 (&a)[1][4], const u32 (&b)[4][2]) {
    mma_bf16<1, 4>(acc, a, b);
}
template <class P>
__device__ __forceinline__ void mma_peak(float* __restrict__ out, i64 iters) {
    const int lane = threadIdx.x & 31;
    u32 a[1][4], b[4][2];
    for (int i = 0; i < 4; ++i) a[0][i] = tf32_round(1e-3f * (lane + i));
    for (int j = 0; j < 4; ++j) b[j][0] = b[j][1] = tf32_round(1e-3f * (lane - j));
    float acc[1][4][4] = {};
    for (i64 it = 0; it < iters; ++it) {
        mma_any(P{}, acc, a, b);
    }
    float s = 0.0f;
    for (int j = 0; j < 4; ++j)
        for (int e = 0; e < 4; ++e) s += acc[0][j][e];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
extern "C" __global__ void mma_peak_tf32(float* __restrict__ out, i64 iters) { mma_peak<Tf32>(out, iters); }
extern "C" __global__ void mma_peak_bf16(float* __restrict__ out, i64 iters) { mma_peak<Bf16>(out, iters); }
