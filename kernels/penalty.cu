// penalty.cu: the WGAN-GP pieces.
//
// interpolate_f32: x̂ = ε·x + (1−ε)·x̃ with ε = eps[i / per_sample], one thread per element.
// critic_input_f32: the critic's input batch [x; x̃; x̂] (3N rows) or [x; x̃] (2N rows, eps null) in
//   one pass: each thread reads x[i] and x̃[i] once and writes row-block copies and x̂[i], the same
//   expression as interpolate_f32 (so x̂ is bit-identical to it).
// penalty_sample_f32: one block per sample i reads g_i twice: first n_i = sqrt(Σ g_i² + eps)
//   (f64 accumulation, deterministic block_sum), then writes dP/dg_i = (2/N)·t_i·g_i/n_i with
//   t_i = n_i − 1 (two-sided) or max(0, n_i − 1) (one-sided), and stores the per-sample penalty t_i².
// penalty_mean_f32: one block adds the N per-sample penalties in a fixed order and divides by N.
// No float atomics anywhere, so P is reproducible.

#include "common.cuh"

struct InterpParams {
    i64 n;           // elements of x
    i64 per_sample;  // elements per sample
};

__device__ __forceinline__ float interp_one(float e, float x, float xt) { return e * x + (1.0f - e) * xt; }

extern "C" __global__ void interpolate_f32(float* __restrict__ out, const float* __restrict__ x,
                                           const float* __restrict__ xt, const float* __restrict__ eps,
                                           InterpParams p) {
    WG_FOR(i, p.n) out[i] = interp_one(eps[i / p.per_sample], x[i], xt[i]);
}

// p.n: elements of x (= of x̃); out has 2·p.n or (with eps) 3·p.n.
extern "C" __global__ void critic_input_f32(float* __restrict__ out, const float* __restrict__ x,
                                            const float* __restrict__ xt, const float* __restrict__ eps,
                                            InterpParams p) {
    WG_FOR(i, p.n) {
        const float a = x[i], b = xt[i];
        out[i] = a;
        out[p.n + i] = b;
        if (eps != nullptr) out[2 * p.n + i] = interp_one(eps[i / p.per_sample], a, b);
    }
}

struct PenaltyParams {
    i64 samples;     // N
    i64 per_sample;  // elements per sample
    float eps;
    int one_sided;
};

// Sample s of the penalty, by the whole block: writes dP/dg_s into dg and returns t_s = n_s − 1
// (0 where one-sided and negative). The one definition, so the two-launch and fused forms agree
// bit for bit.
__device__ __forceinline__ double penalty_one_sample(float* __restrict__ dg, const float* __restrict__ g,
                                                     const PenaltyParams& p, i64 s, double* scratch) {
    const float* gs = g + s * p.per_sample;
    float* ds = dg + s * p.per_sample;
    double acc = 0.0;
    for (i64 j = threadIdx.x; j < p.per_sample; j += blockDim.x) {
        const double v = (double)gs[j];
        acc += v * v;
    }
    const double norm = sqrt(block_sum(acc, scratch) + (double)p.eps);
    double t = norm - 1.0;
    if (p.one_sided && t < 0.0) t = 0.0;
    // As the CPU reference: a sample with t = 0 gets gradient 0 (even at norm = 0); with eps = 0
    // and g = 0 the two-sided gradient is the formula's NaN, which eps > 0 prevents.
    const float coef = t == 0.0 ? 0.0f : (float)(2.0 * t / (norm * (double)p.samples));
    for (i64 j = threadIdx.x; j < p.per_sample; j += blockDim.x) ds[j] = coef * gs[j];
    return t;
}

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
penalty_sample_f32(float* __restrict__ dg, float* __restrict__ per_sample_penalty,
                   const float* __restrict__ g, PenaltyParams p) {
    __shared__ double scratch[32];
    const i64 s = blockIdx.x;
    const double t = penalty_one_sample(dg, g, p, s, scratch);
    if (threadIdx.x == 0) per_sample_penalty[s] = (float)(t * t);
}

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
penalty_mean_f32(float* __restrict__ out, const float* __restrict__ per_sample_penalty, PenaltyParams p) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (i64 j = threadIdx.x; j < p.samples; j += blockDim.x) acc += (double)per_sample_penalty[j];
    const double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = (float)(total / (double)p.samples);
}

// The penalty's norms, derivative and mean in one launch of one block, for small gradients (the
// host uses it up to PENALTY_FUSED_MAX elements: the toy MLPs and 28×28 images): the block
// takes the samples in order as penalty_sample_f32's blocks do, and thread s mod blockDim keeps the
// f32-rounded t_s² of its samples in the order penalty_mean_f32's thread reads them, so dP/dg and
// P are bit-identical to the two launches, without the per-sample buffer.
extern "C" __global__ void __launch_bounds__(WG_BLOCK)
penalty_fused_f32(float* __restrict__ out, float* __restrict__ dg, const float* __restrict__ g, PenaltyParams p) {
    __shared__ double scratch[32];
    double mine = 0.0;  // Σ t_s² over the samples s ≡ threadIdx.x (mod blockDim.x), in order
    for (i64 s = 0; s < p.samples; ++s) {
        const double t = penalty_one_sample(dg, g, p, s, scratch);
        if ((i64)threadIdx.x == s % (i64)blockDim.x) mine += (double)(float)(t * t);
    }
    const double total = block_sum(mine, scratch);
    if (threadIdx.x == 0) out[0] = (float)(total / (double)p.samples);
}

static_assert(sizeof(InterpParams) == 16 && sizeof(PenaltyParams) == 24, "penalty params layout");
