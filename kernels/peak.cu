// peak.cu: the arithmetic ceiling for the benchmarks, measured on the device in the same run.
//
// fma_peak_f32: every thread runs 8 independent FMA chains (enough to hide the FMA latency) for
// `iters` rounds and writes one sum so nothing is optimised away. FLOPs = threads · iters · 8 · 2.
// The result is the device's f32 FMA rate (CUDA cores, not tensor cores).

#include "common.cuh"

struct PeakParams {
    i64 iters;
    float a;
    float b;
};

extern "C" __global__ void fma_peak_f32(float* __restrict__ out, PeakParams p) {
    const float a = p.a, b = p.b;
    float x0 = threadIdx.x * 1e-3f, x1 = x0 + 1.0f, x2 = x0 + 2.0f, x3 = x0 + 3.0f;
    float x4 = x0 + 4.0f, x5 = x0 + 5.0f, x6 = x0 + 6.0f, x7 = x0 + 7.0f;
    for (i64 i = 0; i < p.iters; ++i) {
        x0 = fmaf(x0, a, b);
        x1 = fmaf(x1, a, b);
        x2 = fmaf(x2, a, b);
        x3 = fmaf(x3, a, b);
        x4 = fmaf(x4, a, b);
        x5 = fmaf(x5, a, b);
        x6 = fmaf(x6, a, b);
        x7 = fmaf(x7, a, b);
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}
static_assert(sizeof(PeakParams) == 16, "peak params layout");
