// optim.cu: optimizer updates, one thread per parameter over flat buffers, in place.
//
// adam_f32 (PyTorch Adam, no weight decay, no amsgrad):
//   m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
//   p ← p − step_size · m / (sqrt(v)/bc2_sqrt + eps)
// with step_size = lr/(1−β₁ᵗ), bc2_sqrt = sqrt(1−β₂ᵗ), 1−β₁, 1−β₂ (and 1−α below) computed on the
// host in f64 and rounded to f32, as PyTorch does with its Python-float hyperparameters.
// rmsprop_f32 (PyTorch RMSprop, no momentum, not centred), with the weight clamp of the original
// WGAN fused in when has_clip is set:
//   v ← αv + (1−α)g²;  p ← p − lr · g / (sqrt(v) + eps);  p ← clamp(p, −clip, clip)
// clamp_f32: p ← clamp(p, −c, c). axpby_f32: y ← a·y + b·x.
// The clamp propagates NaN (like torch.clamp) rather than hiding it.

#include "common.cuh"

__device__ __forceinline__ float clamp_nan(float v, float c) { return v < -c ? -c : (v > c ? c : v); }

struct AdamParams {
    i64 n;
    float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2_sqrt;
};

extern "C" __global__ void adam_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                    float* __restrict__ v, AdamParams a) {
    WG_FOR(i, a.n) {
        const float gi = g[i];
        const float mi = a.beta1 * m[i] + a.one_minus_beta1 * gi;
        const float vi = a.beta2 * v[i] + a.one_minus_beta2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
        p[i] = p[i] - a.step_size * (mi / denom);
    }
}

// Adam with its step count on the device, for steps replayed from a CUDA graph (whose launch
// arguments are frozen at capture). `state` is a counter block: u64 t, then float step_size and
// float bc2_sqrt. adam_prepare_f32 (one thread) advances t and computes the two scalars in f64
// exactly as the host does for adam_f32 (lr/(1−β₁ᵗ), sqrt(1−β₂ᵗ), rounded once to f32);
// adam_at_f32 is adam_f32 reading them from `state`. Together they give adam_f32's results bit for
// bit.
struct AdamPrepare {
    double lr, beta1, beta2;
};

extern "C" __global__ void adam_prepare_f32(u64* __restrict__ state, AdamPrepare a) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const u64 t = state[0] + 1;
    state[0] = t;
    const double td = (double)t;
    float* s = (float*)(state + 1);
    s[0] = (float)(a.lr / (1.0 - pow(a.beta1, td)));
    s[1] = (float)sqrt(1.0 - pow(a.beta2, td));
}

extern "C" __global__ void adam_at_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, AdamParams a, const u64* __restrict__ state) {
    const float* s = (const float*)(state + 1);
    const float step_size = s[0], bc2_sqrt = s[1];
    WG_FOR(i, a.n) {
        const float gi = g[i];
        const float mi = a.beta1 * m[i] + a.one_minus_beta1 * gi;
        const float vi = a.beta2 * v[i] + a.one_minus_beta2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / bc2_sqrt + a.eps;
        p[i] = p[i] - step_size * (mi / denom);
    }
}

struct RmsPropParams {
    i64 n;
    float lr, alpha, one_minus_alpha, eps, clip;
    int has_clip;
};

extern "C" __global__ void rmsprop_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
                                       RmsPropParams r) {
    WG_FOR(i, r.n) {
        const float gi = g[i];
        const float vi = r.alpha * v[i] + r.one_minus_alpha * (gi * gi);
        v[i] = vi;
        float pi = p[i] - r.lr * (gi / (sqrtf(vi) + r.eps));
        if (r.has_clip) pi = clamp_nan(pi, r.clip);
        p[i] = pi;
    }
}

struct ClampParams {
    i64 n;
    float c;
};

extern "C" __global__ void clamp_f32(float* __restrict__ p, ClampParams c) {
    WG_FOR(i, c.n) p[i] = clamp_nan(p[i], c.c);
}

struct AxpbyParams {
    i64 n;
    float a, b;
};

extern "C" __global__ void axpby_f32(float* __restrict__ y, const float* __restrict__ x, AxpbyParams q) {
    WG_FOR(i, q.n) y[i] = q.a * y[i] + q.b * x[i];
}

static_assert(sizeof(AdamParams) == 40 && sizeof(RmsPropParams) == 32, "optimizer params layout");
static_assert(sizeof(AdamPrepare) == 24, "AdamPrepare layout");
static_assert(sizeof(ClampParams) == 16 && sizeof(AxpbyParams) == 16, "clamp/axpby params layout");
