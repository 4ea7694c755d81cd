// logistic.cu: the logistic function and the sigmoid cross-entropy of logits, the two pointwise
// ops of the standard GAN's losses (`--loss gan|nsgan`). One thread per element (grid-stride loop,
// 64-bit indices), as elementwise.cu.
//
// Both are computed from e = exp(-|x|) <= 1, so nothing overflows for any finite x:
//   sigmoid(x)               = 1/(1 + e)          for x >= 0,   e/(1 + e) for x < 0;
//   sigmoid_cross_entropy(x) = max(x, 0) - z*x + log1p(e)
// which equals -z*log(sigmoid(x)) - (1 - z)*log(1 - sigmoid(x)) (the label z arrives rounded to
// f32). log1p keeps the small values of log(1 + e) for large |x| that log(1.0f + e) would round
// to zero. The CPU backend (src/backend/cpu/elementwise.rs) computes the same formulas.

#include "common.cuh"

struct LogisticParams {
    i64 n;
    float z;  // the label of sigmoid_cross_entropy; unused by sigmoid
};
static_assert(sizeof(LogisticParams) == 16, "LogisticParams layout (params.rs Scalar)");

extern "C" __global__ void sigmoid_f32(float* __restrict__ out, const float* __restrict__ x, LogisticParams p) {
    WG_FOR(i, p.n) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        out[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

extern "C" __global__ void sigmoid_cross_entropy_f32(float* __restrict__ out, const float* __restrict__ x,
                                                     LogisticParams p) {
    WG_FOR(i, p.n) {
        const float v = x[i];
        out[i] = fmaxf(v, 0.0f) - p.z * v + log1pf(expf(-fabsf(v)));
    }
}
