// rng.cu: Philox4x32-10 random numbers, the device copy of src/rng.rs.
//
// Element i of stream `stream` under `seed` is the Philox block of key = (seed lo, seed hi) and
// counter = (i lo, i hi, stream lo, stream hi), ten rounds with the Weyl key bump before every
// round but the first. Uniform: ((w0 >> 8) + 0.5)·2⁻²⁴, exact in f32, so rand_uniform matches the
// CPU bit for bit. Normal: Box–Muller in f64 from words 0 and 1, sqrt(−2 ln u₁)·cos(2π·u₂), rounded
// to f32. The cosine is taken as cospi(2·u₂) (2·u₂ is exact), which avoids the stack frame of f64
// cos's large-argument reduction; CPU and GPU f64 results differ by a few f64 ulp at most, so after
// rounding to f32 the values agree with the CPU except, very rarely, by one f32 ulp.
// One thread per element, grid-stride.

#include "common.cuh"

struct RngParams {
    i64 n;
    u64 seed;
    u64 stream;
};

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
    const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k.x += W0;
            k.y += W1;
        }
        const u32 hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
        const u32 hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

__device__ __forceinline__ uint4 philox_block(const RngParams& p, i64 i) {
    const u64 ui = (u64)i;
    const uint4 c = make_uint4((u32)ui, (u32)(ui >> 32), (u32)p.stream, (u32)(p.stream >> 32));
    const uint2 k = make_uint2((u32)p.seed, (u32)(p.seed >> 32));
    return philox4x32_10(c, k);
}

__device__ __forceinline__ double word_to_open_unit(u32 w) { return ((double)(w >> 8) + 0.5) * (1.0 / 16777216.0); }

extern "C" __global__ void rand_uniform_f32(float* __restrict__ out, RngParams p) {
    WG_FOR(i, p.n) out[i] = (float)word_to_open_unit(philox_block(p, i).x);
}

extern "C" __global__ void randn_f32(float* __restrict__ out, RngParams p) {
    WG_FOR(i, p.n) {
        const uint4 b = philox_block(p, i);
        const double u1 = word_to_open_unit(b.x), u2 = word_to_open_unit(b.y);
        out[i] = (float)(sqrt(-2.0 * log(u1)) * cospi(2.0 * u2));
    }
}

// The same two kernels with the stream read from device memory at run time: stream = p.stream +
// *base. A step captured into a CUDA graph replays with the launch arguments frozen at capture, so
// the draw counter that advances every iteration lives on the device (`counter` below advances it
// inside the graph) and only the offset within the iteration is a frozen argument.
__device__ __forceinline__ RngParams at_base(RngParams p, const u64* __restrict__ base) {
    p.stream += *base;
    return p;
}

extern "C" __global__ void rand_uniform_at_f32(float* __restrict__ out, RngParams p, const u64* __restrict__ base) {
    const RngParams q = at_base(p, base);
    WG_FOR(i, q.n) out[i] = (float)word_to_open_unit(philox_block(q, i).x);
}

extern "C" __global__ void randn_at_f32(float* __restrict__ out, RngParams p, const u64* __restrict__ base) {
    const RngParams q = at_base(p, base);
    WG_FOR(i, q.n) {
        const uint4 b = philox_block(q, i);
        const double u1 = word_to_open_unit(b.x), u2 = word_to_open_unit(b.y);
        out[i] = (float)(sqrt(-2.0 * log(u1)) * cospi(2.0 * u2));
    }
}

// A device-resident step counter: *c += delta (one thread).
extern "C" __global__ void counter_add_u64(u64* __restrict__ c, u64 delta) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *c += delta;
}

static_assert(sizeof(RngParams) == 24, "RngParams layout");
