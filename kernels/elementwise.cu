// elementwise.cu: one thread per element (grid-stride loop, 64-bit indices) for the pointwise ops
// of the Backend trait: add, sub, mul, scale, add_scalar, powf, leaky_relu and its backward, tanh
// and its backward, fill, and the group broadcasts (group_broadcast, group_mul, group_add), whose
// group of element i is (i / div) % mod (see GroupMap in common.cuh). Scalars arrive already
// rounded to f32. Outputs never alias inputs except where the host says so (none here).

#include "common.cuh"

struct Unary {
    i64 n;
    float c;  // the op's scalar: scale factor, added constant, exponent, slope; unused by tanh
};

struct Binary {
    i64 n;
    float c;  // slope for leaky_relu_backward; unused otherwise
};

extern "C" __global__ void add_f32(float* __restrict__ out, const float* __restrict__ a,
                                   const float* __restrict__ b, Binary p) {
    WG_FOR(i, p.n) out[i] = a[i] + b[i];
}

extern "C" __global__ void sub_f32(float* __restrict__ out, const float* __restrict__ a,
                                   const float* __restrict__ b, Binary p) {
    WG_FOR(i, p.n) out[i] = a[i] - b[i];
}

extern "C" __global__ void mul_f32(float* __restrict__ out, const float* __restrict__ a,
                                   const float* __restrict__ b, Binary p) {
    WG_FOR(i, p.n) out[i] = a[i] * b[i];
}

extern "C" __global__ void scale_f32(float* __restrict__ out, const float* __restrict__ a, Unary p) {
    WG_FOR(i, p.n) out[i] = p.c * a[i];
}

extern "C" __global__ void add_scalar_f32(float* __restrict__ out, const float* __restrict__ a, Unary p) {
    WG_FOR(i, p.n) out[i] = a[i] + p.c;
}

extern "C" __global__ void powf_f32(float* __restrict__ out, const float* __restrict__ a, Unary p) {
    WG_FOR(i, p.n) out[i] = powf(a[i], p.c);
}

extern "C" __global__ void leaky_relu_f32(float* __restrict__ out, const float* __restrict__ x, Unary p) {
    WG_FOR(i, p.n) {
        const float v = x[i];
        out[i] = v > 0.0f ? v : p.c * v;
    }
}

extern "C" __global__ void leaky_relu_backward_f32(float* __restrict__ out, const float* __restrict__ g,
                                                   const float* __restrict__ x, Binary p) {
    WG_FOR(i, p.n) out[i] = x[i] > 0.0f ? g[i] : p.c * g[i];
}

extern "C" __global__ void tanh_f32(float* __restrict__ out, const float* __restrict__ x, Unary p) {
    WG_FOR(i, p.n) out[i] = tanhf(x[i]);
}

extern "C" __global__ void tanh_backward_f32(float* __restrict__ out, const float* __restrict__ g,
                                             const float* __restrict__ y, Binary p) {
    WG_FOR(i, p.n) {
        const float t = y[i];
        out[i] = g[i] * (1.0f - t * t);
    }
}

extern "C" __global__ void fill_f32(float* __restrict__ out, Unary p) {
    WG_FOR(i, p.n) out[i] = p.c;
}

// out[i] = v[group(i)]
extern "C" __global__ void group_broadcast_f32(float* __restrict__ out, const float* __restrict__ v, GroupMap m) {
    WG_FOR(i, m.n) out[i] = v[group_of(m, i)];
}

// out[i] = x[i] * s[group(i)]
extern "C" __global__ void group_mul_f32(float* __restrict__ out, const float* __restrict__ x,
                                         const float* __restrict__ s, GroupMap m) {
    WG_FOR(i, m.n) out[i] = x[i] * s[group_of(m, i)];
}

// out[i] = x[i] + b[group(i)]
extern "C" __global__ void group_add_f32(float* __restrict__ out, const float* __restrict__ x,
                                         const float* __restrict__ b, GroupMap m) {
    WG_FOR(i, m.n) out[i] = x[i] + b[group_of(m, i)];
}

static_assert(sizeof(Unary) == 16 && sizeof(Binary) == 16, "Unary/Binary layout (params.rs Scalar)");

// Rows of a device-resident data set gathered into a batch: dst row r = src row idx[start + r],
// rows of row_len floats. `idx` holds image indices as floats (exact below 2^24; the host keeps
// data sets larger than that on the host). One thread per element of dst, grid-stride.
struct GatherParams {
    i64 n;        // dst elements (rows · row_len)
    i64 row_len;
    i64 start;    // first entry of idx
};

extern "C" __global__ void gather_rows_f32(float* __restrict__ dst, const float* __restrict__ src,
                                           const float* __restrict__ idx, GatherParams p) {
    WG_FOR(i, p.n) {
        const i64 r = i / p.row_len, c = i - r * p.row_len;
        dst[i] = src[(i64)idx[p.start + r] * p.row_len + c];
    }
}

static_assert(sizeof(GatherParams) == 24, "GatherParams layout");
