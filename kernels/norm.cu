// norm.cu: normalize and normalize_backward per group (Group::Sample = layer norm over (C,H,W),
// Group::Channel = batch norm over (N,H,W), Group::All = the whole tensor), groups described as
// strided segments (common.cuh).
//
// Each op is two launches. The stats kernel runs one block per group and reads the group in
// passes, accumulating in f64 with the deterministic block_sum: mean, then the biased variance
// Σ(x − mean)²/len (two-pass, so no cancellation), giving rstd = 1/sqrt(var + eps); the backward
// stats kernel makes a third pass for mean(g) and mean(g·x̂). It writes a few floats per group.
// The apply kernel is elementwise over the whole tensor:
//   forward  x̂ = (x − mean)·rstd
//   backward rstd·(g − mean(g) − x̂·mean(g·x̂))

#include "common.cuh"

struct NormParams {
    Segments seg;
    GroupMap map;  // the same grouping as seg, as a flat-index → group map for the apply kernels
    float eps;
};

// stats[2g] = mean, stats[2g+1] = rstd
// Group g's mean and 1/sqrt(var + eps), two passes in f64, rounded to f32 (every thread of the
// block gets them). The one definition of the statistics, so the two-launch and the fused forms
// agree bit for bit.
__device__ __forceinline__ void group_stats(const float* __restrict__ x, const NormParams& p, i64 g,
                                            double* scratch, float& mean_f, float& rstd_f) {
    double mean, var;
    group_mean_var(x, p.seg, g, scratch, mean, var);
    mean_f = (float)mean;
    rstd_f = (float)(1.0 / sqrt(var + (double)p.eps));
}

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
normalize_stats_f32(float* __restrict__ stats, const float* __restrict__ x, NormParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    float mean, rstd;
    group_stats(x, p, g, scratch, mean, rstd);
    if (threadIdx.x == 0) {
        stats[2 * g] = mean;
        stats[2 * g + 1] = rstd;
    }
}

extern "C" __global__ void normalize_apply_f32(float* __restrict__ out, const float* __restrict__ x,
                                               const float* __restrict__ stats, NormParams p) {
    WG_FOR(i, p.map.n) {
        const i64 g = group_of(p.map, i);
        out[i] = (x[i] - stats[2 * g]) * stats[2 * g + 1];
    }
}

// stats[4g..4g+4] = mean, rstd, mean(g), mean(g·x̂)
extern "C" __global__ void __launch_bounds__(WG_BLOCK)
normalize_backward_stats_f32(float* __restrict__ stats, const float* __restrict__ gy,
                             const float* __restrict__ x, NormParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    const double inv_len = 1.0 / (double)p.seg.len;
    double mean, var;
    group_mean_var(x, p.seg, g, scratch, mean, var);
    const double rstd = 1.0 / sqrt(var + (double)p.eps);
    double acc_g = 0.0, acc_gx = 0.0;
    for (i64 j = threadIdx.x; j < p.seg.len; j += blockDim.x) {
        const i64 k = seg_index(p.seg, g, j);
        const double gv = (double)gy[k];
        acc_g += gv;
        acc_gx += gv * (((double)x[k] - mean) * rstd);
    }
    const double mg = block_sum(acc_g, scratch) * inv_len;
    const double mgx = block_sum(acc_gx, scratch) * inv_len;
    if (threadIdx.x == 0) {
        stats[4 * g] = (float)mean;
        stats[4 * g + 1] = (float)rstd;
        stats[4 * g + 2] = (float)mg;
        stats[4 * g + 3] = (float)mgx;
    }
}

extern "C" __global__ void normalize_backward_apply_f32(float* __restrict__ out, const float* __restrict__ gy,
                                                        const float* __restrict__ x,
                                                        const float* __restrict__ stats, NormParams p) {
    WG_FOR(i, p.map.n) {
        const i64 g = group_of(p.map, i);
        const float mean = stats[4 * g], rstd = stats[4 * g + 1], mg = stats[4 * g + 2], mgx = stats[4 * g + 3];
        const float xh = (x[i] - mean) * rstd;
        out[i] = rstd * (gy[i] - mg - xh * mgx);
    }
}

static_assert(sizeof(NormParams) == 72, "NormParams layout");

// normalize in one launch, for groups small enough that one block can also do the elementwise
// pass (the host uses it for per-sample groups of at most FUSED_NORM_MAX_LEN elements: layer
// norm): the block computes its group's statistics with normalize_stats_f32's group_stats and applies them to its own group. Bit-identical to the two
// launches, with one launch and the statistics buffer fewer. (The backward in one launch keeps
// mean, rstd and the pointers live across f64 sqrt's slow path and spills on sm_100, which the
// NVRTC test rejects, so the backward stays two launches.)
extern "C" __global__ void __launch_bounds__(WG_BLOCK)
normalize_fused_f32(float* __restrict__ out, const float* __restrict__ x, NormParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    float mean_f, rstd_f;
    group_stats(x, p, g, scratch, mean_f, rstd_f);
    for (i64 j = threadIdx.x; j < p.seg.len; j += blockDim.x) {
        const i64 k = seg_index(p.seg, g, j);
        out[k] = (x[k] - mean_f) * rstd_f;
    }
}
