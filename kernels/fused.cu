// fused.cu: ops that replace a chain of elementwise and group launches of the tape with one
// statistics launch (one block per group, f64 accumulation with the deterministic block_sum) and
// one elementwise launch. The math of each is on the `Backend` trait (src/backend/mod.rs); the CPU
// reference is src/backend/cpu/fused.rs.
//
// normalize_hvp_{stats,apply}_f32: the Hessian–vector product of normalize (layer norm's double
//   backward), per group: mean, rstd (two passes), then mean(G), mean(H), a = mean(G·x̂),
//   b = mean(H·x̂), mean(H·G) in a third pass; the apply pass writes
//   −(1/σ²)·[x̂·(c − 3ab) + a·(H − mean H) + b·(G − mean G)], c = mean(HG) − mean(H)·mean(G).
//   It replaces about 40 launches of the composite per layer norm and critic iteration.
// batch_norm_running_f32: batch norm's running mean and unbiased variance, one block per channel,
//   updated in place (replaces a group sum, scale, broadcast, sub, mul, group sum, scale and two
//   axpby launches).
// group_affine_f32: a per-group scale and offset in one pass (group_mul then group_add), and the
//   leaky ReLU / ReLU after it when asked (layer norm and batch norm before their activation).
// penalty_hvp_{sample,apply}_f32: the penalty's Hessian–vector product, per sample
//   c(n) and (c'(n)/n)·⟨g, h⟩ from Σg² and Σg·h, then ((c·h + d·g)·u)·(1/N).

#include "common.cuh"

struct FusedNormParams {
    Segments seg;
    GroupMap map;
    float eps;
};

// stats[8g..8g+8] = mean, rstd, 1/σ², c − 3ab, a, b, mean(H), mean(G)
extern "C" __global__ void __launch_bounds__(WG_BLOCK)
normalize_hvp_stats_f32(float* __restrict__ stats, const float* __restrict__ gg, const float* __restrict__ h,
                        const float* __restrict__ x, FusedNormParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    const double inv_len = 1.0 / (double)p.seg.len;
    double mean, var_biased;
    group_mean_var(x, p.seg, g, scratch, mean, var_biased);
    const double var = var_biased + (double)p.eps;
    const double rstd = 1.0 / sqrt(var);
    double sg = 0.0, sh = 0.0, sgx = 0.0, shx = 0.0, shg = 0.0;
    for (i64 j = threadIdx.x; j < p.seg.len; j += blockDim.x) {
        const i64 k = seg_index(p.seg, g, j);
        const double gv = (double)gg[k], hv = (double)h[k];
        const double xh = ((double)x[k] - mean) * rstd;
        sg += gv;
        sh += hv;
        sgx += gv * xh;
        shx += hv * xh;
        shg += hv * gv;
    }
    const double mg = block_sum(sg, scratch) * inv_len;
    const double mh = block_sum(sh, scratch) * inv_len;
    const double a = block_sum(sgx, scratch) * inv_len;
    const double b = block_sum(shx, scratch) * inv_len;
    const double mhg = block_sum(shg, scratch) * inv_len;
    if (threadIdx.x == 0) {
        float* s = stats + 8 * g;
        s[0] = (float)mean;
        s[1] = (float)rstd;
        s[2] = (float)(1.0 / var);
        s[3] = (float)((mhg - mh * mg) - 3.0 * a * b);
        s[4] = (float)a;
        s[5] = (float)b;
        s[6] = (float)mh;
        s[7] = (float)mg;
    }
}

extern "C" __global__ void normalize_hvp_apply_f32(float* __restrict__ out, const float* __restrict__ gg,
                                                   const float* __restrict__ h, const float* __restrict__ x,
                                                   const float* __restrict__ stats, FusedNormParams p) {
    WG_FOR(i, p.map.n) {
        const float* s = stats + 8 * group_of(p.map, i);
        const float xh = (x[i] - s[0]) * s[1];
        out[i] = -(s[2] * (xh * s[3] + s[4] * (h[i] - s[6]) + s[5] * (gg[i] - s[7])));
    }
}

struct AffineParams {
    GroupMap map;
    float slope;  // of the leaky ReLU that follows, when `leaky`
    int leaky;
};

// group_affine_f32: out = x·s[g] + b[g] with g = group_of(i), then leaky_relu when p.leaky; one
// thread per element.
extern "C" __global__ void group_affine_f32(float* __restrict__ out, const float* __restrict__ x,
                                            const float* __restrict__ s, const float* __restrict__ b,
                                            AffineParams p) {
    WG_FOR(i, p.map.n) {
        const i64 g = group_of(p.map, i);
        const float z = x[i] * s[g] + b[g];
        out[i] = (!p.leaky || z > 0.0f) ? z : p.slope * z;
    }
}

struct RunningParams {
    Segments seg;
    float a;  // 1 − momentum
    float b;  // momentum
};

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
batch_norm_running_f32(float* __restrict__ running_mean, float* __restrict__ running_var,
                       const float* __restrict__ x, RunningParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    const double len = (double)p.seg.len;
    double acc = 0.0;
    for (i64 j = threadIdx.x; j < p.seg.len; j += blockDim.x) acc += (double)x[seg_index(p.seg, g, j)];
    const double mean = block_sum(acc, scratch) / len;
    acc = 0.0;
    for (i64 j = threadIdx.x; j < p.seg.len; j += blockDim.x) {
        const double d = (double)x[seg_index(p.seg, g, j)] - mean;
        acc += d * d;
    }
    const double var = block_sum(acc, scratch) / fmax(len - 1.0, 1.0);
    if (threadIdx.x == 0) {
        running_mean[g] = p.a * running_mean[g] + p.b * (float)mean;
        running_var[g] = p.a * running_var[g] + p.b * (float)var;
    }
}

struct PenaltyHvpParams {
    i64 samples;     // N
    i64 per_sample;  // elements per sample
    float eps;
    int one_sided;
};

// coef[2s] = c(n_s), coef[2s+1] = (c'(n_s)/n_s)·⟨g_s, h_s⟩
extern "C" __global__ void __launch_bounds__(WG_BLOCK)
penalty_hvp_sample_f32(float* __restrict__ coef, const float* __restrict__ g, const float* __restrict__ h,
                       PenaltyHvpParams p) {
    __shared__ double scratch[32];
    const i64 s = blockIdx.x;
    const float* gs = g + s * p.per_sample;
    const float* hs = h + s * p.per_sample;
    double ss = 0.0, gh = 0.0;
    for (i64 j = threadIdx.x; j < p.per_sample; j += blockDim.x) {
        const double gv = (double)gs[j];
        ss += gv * gv;
        gh += gv * (double)hs[j];
    }
    const double n = sqrt(block_sum(ss, scratch) + (double)p.eps);
    const double ghs = block_sum(gh, scratch);
    double c = 2.0 - 2.0 / n, dc = 2.0 / (n * n * n);
    if (p.one_sided) {
        c = n > 1.0 ? 2.0 * (n - 1.0) / n : 0.0;
        dc = n > 1.0 ? dc : 0.0;
    }
    if (threadIdx.x == 0) {
        coef[2 * s] = (float)c;
        coef[2 * s + 1] = (float)(dc * ghs);
    }
}

extern "C" __global__ void penalty_hvp_apply_f32(float* __restrict__ out, const float* __restrict__ g,
                                                 const float* __restrict__ h, const float* __restrict__ coef,
                                                 const float* __restrict__ u, PenaltyHvpParams p) {
    const float uu = u[0], inv_n = (float)(1.0 / (double)p.samples);
    WG_FOR(i, p.samples * p.per_sample) {
        const i64 s = i / p.per_sample;
        out[i] = (coef[2 * s] * h[i] + coef[2 * s + 1] * g[i]) * uu * inv_n;
    }
}

static_assert(sizeof(FusedNormParams) == 72, "FusedNormParams layout");
static_assert(sizeof(AffineParams) == 32, "AffineParams layout");
static_assert(sizeof(RunningParams) == 48, "RunningParams layout");
static_assert(sizeof(PenaltyHvpParams) == 24, "PenaltyHvpParams layout");
