// conv_tc.cu: the three convolution passes as implicit GEMMs on tensor cores (gemm_tc.cuh), TF32
// or BF16 operands, f32 accumulation; PyTorch cross-correlation semantics as conv.cu's f32 kernels.
//
//   conv2d_fwd_*    y = conv(x, w): M = Co, columns (n, oh, ow), k (ci, kh, kw). A = w (k-fast),
//                   B = x gathered, k-fast too: a thread keeps its 8 columns' positions and walks
//                   one k per tile, instead of walking 8 k's (a digit carry each) for one column,
//                   which halves the staging's instructions (sass-report: 720 → 485 per K step).
//                   Consecutive k are consecutive kw, adjacent in memory; column-fast staging
//                   was no better coalesced at stride 2 (consecutive ow are 2 apart).
//   conv2d_dgrad_*  gx (the transposed convolution), split by output phase: for stride s, one GEMM
//                   per (ih mod s, iw mod s) phase (all in one launch for s ≤ 2), whose columns are
//                   that phase's pixels and whose
//                   k runs over the live taps only, kh ≡ (ih + pad) mod s: (co, jh, jw) with
//                   kh = rh + s·jh, so oh = i' + ch − jh exactly (no tap multiplies a zero, no
//                   division). A 1×1 gy onto a K×K image with no padding is a plain GEMM
//                   (the generator's first layer): ops/tc.rs runs it as matmul_nn.
//   conv2d_wgrad_*  gw: M = Co, columns (ci, kh, kw), k (n, oh, ow), both operands k-fast; long
//                   reductions split across blockIdx.z and added in order by splitk_reduce_f32.
// The `_narrow` kernels use 16×128 tiles for at most 16 output rows (1 or 3 image channels).
// All addressing comes in TcParams from src/backend/cuda/ops/tc.rs.

#include "gemm_tc.cuh"

#define TC_ENTRY(name, P, BM, BN, WM, AK, BKF)                                                            \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                              \
        name(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,           \
             GemmEpi epi, TcParams p) {                                                                   \
        tc_gemm<P, BM, BN, WM, AK, BKF>(a, b, out, epi, p);                                               \
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

// The data gradient's stride phases (up to 4: stride ≤ 2) in one launch: blockIdx.z runs over
// the phases' K slices in turn (zbase[i] .. zbase[i+1] are phase i's), x and y over the largest
// phase's tiles (a block past its own phase's extent returns at once, before any barrier). A phase
// that splits K writes its slices into `ws` at ws_off[i], for one splitk_scatter_phased_f32
// launch; the others write gx directly. The phases' parameters are read in place from the
// parameter space (__grid_constant__), so the runtime phase index costs no local memory.
struct TcPhases {
    TcParams p[4];
    i64 ws_off[4];
    u32 zbase[5];
    u32 count;
    u32 pad_[2];
};

#define TC_PHASED(name, P, BM, BN, WM)                                                                  \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                            \
        name(float* __restrict__ out, float* __restrict__ ws, const float* __restrict__ a,              \
             const float* __restrict__ b, const __grid_constant__ TcPhases q) {                         \
        u32 i = 0;                                                                                      \
        while (i + 1 < q.count && blockIdx.z >= q.zbase[i + 1]) ++i;                                    \
        const TcParams& p = q.p[i];                                                                     \
        if (blockIdx.y * BM >= p.g.m || blockIdx.x * BN >= p.g.nc) return;                              \
        const bool split = q.zbase[i + 1] - q.zbase[i] > 1;                                             \
        tc_gemm_at<P, BM, BN, WM, true, false>(a, b, split ? ws + q.ws_off[i] : out, GemmEpi{}, p,      \
                                               blockIdx.x, blockIdx.y, blockIdx.z - q.zbase[i], split); \
    }

TC_PHASED(conv2d_dgrad_phased_tf32, Tf32, 64, 64, 2)
TC_PHASED(conv2d_dgrad_phased_narrow_tf32, Tf32, 16, 128, 1)
TC_PHASED(conv2d_dgrad_phased_bf16, Bf16, 64, 64, 2)
TC_PHASED(conv2d_dgrad_phased_narrow_bf16, Bf16, 16, 128, 1)

static_assert(sizeof(TcPhases) == 1248, "TcPhases layout");

// The split-K slices of the phases that split, added in order and scattered to gx, in one launch:
// element i belongs to the phase with start[ph] <= i < start[ph + 1].
struct ScatterPhases {
    SplitKParams s[4];
    TcOut c[4];
    i64 ws_off[4];
    i64 start[5];
    u32 count;
    u32 pad_;
};

extern "C" __global__ void splitk_scatter_phased_f32(float* __restrict__ out, const float* __restrict__ ws,
                                                     const __grid_constant__ ScatterPhases q) {
    WG_FOR(i, q.start[q.count]) {
        u32 ph = 0;
        while (ph + 1 < q.count && i >= q.start[ph + 1]) ++ph;
        splitk_scatter_one(out, ws + q.ws_off[ph], GemmEpi{}, q.s[ph], q.c[ph], i - q.start[ph]);
    }
}

static_assert(sizeof(ScatterPhases) == 368, "ScatterPhases layout");

extern "C" __global__ void splitk_scatter_f32(float* __restrict__ out, const float* __restrict__ ws, GemmEpi epi,
                                              SplitKParams p, TcOut c) {
    splitk_scatter(out, ws, epi, p, c);
}
