// broken.cu: small kernels with one bug each, beside their fixed twins, for the emulator's
// sanitizer self-test (tests/emu_sanitizer.rs). Each broken kernel must be reported with its class
// under WGAN_EMU_CHECK=all; each fixed one must run clean.
#include "common.cuh"
#include "mma.cuh"

// ---- race: a missing barrier between warps ----
extern "C" __global__ void block_race(float* out) {
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = s[(threadIdx.x + 32) % 64];  // the other warp's slot: no barrier
}
// The same race, with values that differ from launch to launch (so stale shared data from an
// earlier launch is told apart): the adversarial-schedule test.
extern "C" __global__ void block_race_base(float* out, float base) {
    __shared__ float s[64];
    s[threadIdx.x] = base + (float)threadIdx.x;
    out[threadIdx.x] = s[(threadIdx.x + 32) % 64] - base;
}
extern "C" __global__ void block_race_fixed(float* out) {
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 32) % 64];
}

// ---- race: a missing __syncwarp between lanes of one warp ----
extern "C" __global__ void warp_race(float* out) {
    __shared__ float s[32];
    s[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = s[threadIdx.x ^ 1];  // relies on lockstep lanes
}
extern "C" __global__ void warp_race_fixed(float* out) {
    __shared__ float s[32];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncwarp();
    out[threadIdx.x] = s[threadIdx.x ^ 1];
}

// ---- init: shared memory nobody wrote ----
extern "C" __global__ void uninit_shared(float* out) {
    __shared__ float s[64];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x] + s[threadIdx.x + 32];  // the upper half is never written
}
extern "C" __global__ void uninit_shared_fixed(float* out) {
    __shared__ float s[64];
    s[threadIdx.x] = 1.0f;
    s[threadIdx.x + 32] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x] + s[threadIdx.x + 32];
}
// Block 0 fills the array, every block reads it: block 1 reads what block 0 left.
extern "C" __global__ void stale_shared(float* out) {
    __shared__ float s[32];
    if (blockIdx.x == 0) s[threadIdx.x] = 3.0f;
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

// ---- init / bounds: device memory ----
extern "C" __global__ void copy_n(float* out, const float* in, i64 n) {
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) out[i] = in[i];
}

// ---- align: a float4 at a float offset ----
extern "C" __global__ void vec4_copy(float* out, const float* in, i64 off) {
    const float4 v = *reinterpret_cast<const float4*>(in + off + 4 * threadIdx.x);
    *reinterpret_cast<float4*>(out + 4 * threadIdx.x) = v;
}

// ---- align: past the end of a shared array ----
extern "C" __global__ void shared_oob(float* out, int reach) {
    __shared__ float s[64];
    __shared__ float t[64];
    s[threadIdx.x] = 1.0f;
    t[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + reach) & 127] + t[threadIdx.x];  // reach 64: past the end of s
}

// ---- sync: barriers ----
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 32) __syncthreads();  // the second warp never arrives (it exits)
    out[threadIdx.x] = 1.0f;
}
extern "C" __global__ void two_barriers(float* out) {
    // Every thread reaches a barrier, but not the same one.
    __shared__ float s[64];
    if (threadIdx.x < 32) {
        s[threadIdx.x] = 1.0f;
        __syncthreads();
        out[threadIdx.x] = s[threadIdx.x + 32];
    } else {
        out[threadIdx.x] = 2.0f;
        __syncthreads();
        s[threadIdx.x] = out[threadIdx.x - 32];
    }
}
extern "C" __global__ void divergent_barrier_fixed(float* out) {
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// ---- sync: shuffle masks ----
extern "C" __global__ void shuffle_mask(float* out, unsigned mask) {
    const float v = __shfl_sync(mask, (float)threadIdx.x, 0);
    out[threadIdx.x] = v;
}
// The upper half of the warp exits; the lower half shuffles with `mask`.
extern "C" __global__ void shuffle_half(float* out, unsigned mask) {
    if (threadIdx.x >= 16) return;
    const float v = __shfl_sync(mask, (float)threadIdx.x + 5.0f, 0);
    out[threadIdx.x] = v;
}
extern "C" __global__ void shuffle_width(float* out) {
    const float v = (float)threadIdx.x;
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, v, 1, 8);
    out[32 + threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 4, 8);
    out[64 + threadIdx.x] = __shfl_sync(0xffffffffu, v, 3, 16);
}

// ---- async: cp.async waits ----
// Two tiles in flight; the read of tile 1 needs wait_group 0.
extern "C" __global__ void early_wait(float* out, const float* in) {
    __shared__ float s[2][32];
    const int t = threadIdx.x;
    cp_async<4>(&s[0][t], in + t, 4);
    cp_async_commit();
    cp_async<4>(&s[1][t], in + 32 + t, 4);
    cp_async_commit();
    cp_async_wait<1>();  // only tile 0 is retired
    __syncthreads();
    out[t] = s[0][(t + 1) % 32] + s[1][(t + 1) % 32];
}
extern "C" __global__ void early_wait_fixed(float* out, const float* in) {
    __shared__ float s[2][32];
    const int t = threadIdx.x;
    cp_async<4>(&s[0][t], in + t, 4);
    cp_async_commit();
    cp_async<4>(&s[1][t], in + 32 + t, 4);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    out[t] = s[0][(t + 1) % 32] + s[1][(t + 1) % 32];
}
extern "C" __global__ void overwrite_pending(float* out, const float* in) {
    __shared__ float s[32];
    const int t = threadIdx.x;
    cp_async<4>(&s[t], in + t, 4);
    cp_async_commit();
    s[t] = 0.0f;  // the copy still targets it
    cp_async_wait<0>();
    out[t] = s[t];
}
extern "C" __global__ void cp_async_misaligned(float* out, const float* in) {
    __shared__ float s[160];
    const int t = threadIdx.x;
    cp_async<16>(&s[4 * t + 1], in + 4 * t, 16);  // destination 4 bytes past a 16-byte boundary
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    out[t] = s[4 * t + 1];
}

// ---- race: blocks of one launch ----
extern "C" __global__ void cross_block(float* out) {
    if (threadIdx.x == 0) out[0] = (float)blockIdx.x;  // every block writes element 0
}
extern "C" __global__ void cross_block_fixed(float* out) {
    if (threadIdx.x == 0) out[blockIdx.x] = (float)blockIdx.x;
}
extern "C" __global__ void read_neighbour_block(float* v) {
    if (threadIdx.x == 0) v[blockIdx.x] += v[(blockIdx.x + 1) % gridDim.x];
}

// ---- race: an accumulation that needed an atomic ----
extern "C" __global__ void accumulate(float* acc, const float* in) {
    acc[0] += in[threadIdx.x];
}
extern "C" __global__ void accumulate_atomic(float* acc, const float* in) {
    atomicAdd(acc, in[threadIdx.x]);
}
extern "C" __global__ void atomic_then_read(float* acc, float* out) {
    atomicAdd(acc, 1.0f);
    out[threadIdx.x] = acc[0];  // other threads' atomics of this interval are unordered with it
}

// ---- sync / race / align: warp collectives ----
// 32×8 matrix of 16-bit values (128 u32) through shared memory into ldmatrix .x4.
__device__ __forceinline__ void ld_tile(u32* out, const u32* m, int lane, bool sync, int skew) {
    __shared__ u32 s[160];
    for (int i = 0; i < 4; ++i) s[lane * 4 + i] = m[lane * 4 + i];
    if (sync) __syncwarp();
    u32 r[4];
    ldmatrix_x4<false>(r, &s[lane * 4 + skew]);
    for (int q = 0; q < 4; ++q) out[lane * 4 + q] = r[q];
}
extern "C" __global__ void ldmatrix_unsynced(u32* out, const u32* m) { ld_tile(out, m, threadIdx.x, false, 0); }
extern "C" __global__ void ldmatrix_synced(u32* out, const u32* m) { ld_tile(out, m, threadIdx.x, true, 0); }
extern "C" __global__ void ldmatrix_misaligned(u32* out, const u32* m) { ld_tile(out, m, threadIdx.x, true, 1); }
extern "C" __global__ void ldmatrix_partial(u32* out, const u32* m) {
    if (threadIdx.x < 24) ld_tile(out, m, threadIdx.x, false, 0);  // 8 lanes exited
}
// One m16n8k8 TF32 MMA per warp of A = B = ones.
extern "C" __global__ void mma_any_block(float* out, const float* a) {
    float acc[1][1][4] = {{{0.0f, 0.0f, 0.0f, 0.0f}}};
    u32 fa[1][4], fb[1][2];
    for (int i = 0; i < 4; ++i) fa[0][i] = tf32_round(a[threadIdx.x * 4 + i]);
    for (int i = 0; i < 2; ++i) fb[0][i] = tf32_round(a[threadIdx.x * 2 + i]);
    mma_tf32<1, 1>(acc, fa, fb);
    for (int e = 0; e < 4; ++e) out[threadIdx.x * 4 + e] = acc[0][0][e];
}

// ---- the checker's inline paths (runtime.hpp: read_inline, Checker::safe) ----
// Repeated reads of a word are recorded inline, or let through on the `safe` map once two warps
// have read it. Each kernel below is reported only if that bookkeeping is kept.
//
// Every lane reads word 0, then lane 0 writes it after a warp collective, which is no memory
// fence: a write-after-read race against lanes 1…31 unless a __syncwarp orders it. Lane 0 reads
// first and writes last, so only the record of a second reader of its warp-epoch group (made
// inline) names the race.
extern "C" __global__ void reread_collective(float* out, int fix) {
    __shared__ float s[32];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    const float v = s[0];
    float acc[1][1][4] = {{{0.0f, 0.0f, 0.0f, 0.0f}}};
    u32 fa[1][4] = {{0u, 0u, 0u, 0u}}, fb[1][2] = {{0u, 0u}};
    mma_tf32<1, 1>(acc, fa, fb);
    if (fix) __syncwarp();
    if (threadIdx.x == 0) s[0] = 2.0f;
    out[threadIdx.x] = v + acc[0][0][0];
}
// Lane 0 and warp 1 read word 5; lane 0 writes it after a collective: a race against warp 1 unless
// a barrier orders it. Warp 1's reads are recorded only inline (its bit of the record's readers).
extern "C" __global__ void reread_other_warp(float* out, int fix) {
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    float v = 0.0f;
    if (threadIdx.x == 0 || threadIdx.x >= 32) v = s[5];
    float acc[1][1][4] = {{{0.0f, 0.0f, 0.0f, 0.0f}}};
    u32 fa[1][4] = {{0u, 0u, 0u, 0u}}, fb[1][2] = {{0u, 0u}};
    mma_tf32<1, 1>(acc, fa, fb);
    if (fix) __syncthreads();
    if (threadIdx.x == 0) s[5] = -1.0f;
    out[threadIdx.x] = v + acc[0][0][0];
}
// Word 0 is read by both warps (its next reads pass on the `safe` map), then thread 63 copies into
// it with cp.async and reads it before the wait: an async finding, which must not pass on the map.
extern "C" __global__ void reread_pending(float* out, const float* in, int fix) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = 1.0f;
    __syncthreads();
    float v = s[0];
    if (t == 63) {
        cp_async<4>(&s[0], in, 4);
        cp_async_commit();
        if (fix) cp_async_wait<0>();
        v += s[0];
        cp_async_wait<0>();
    }
    out[t] = v;
}
// Word 0 is read by both warps in one interval (it becomes safe), then in the next interval warp 0
// reads it and thread 63 writes it: a write-after-read race, found only if the safe mark ended
// with the first interval.
template <bool FIX>
__device__ void reread_next_interval_body(float* out) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = 1.0f;
    __syncthreads();
    float v = s[0];
    __syncthreads();
    if (t < 32) v += s[0];
    if (FIX) __syncthreads();
    if (t == 63) s[0] = 9.0f;
    out[t] = v;
}
extern "C" __global__ void reread_next_interval(float* out, int fix) {
    if (fix)
        reread_next_interval_body<true>(out);
    else
        reread_next_interval_body<false>(out);
}
