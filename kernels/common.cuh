// common.cuh: helpers shared by every kernel file.
//
// NVRTC has no file system: the loader hands this file to NVRTC as an in-memory header named
// "common.cuh", so each .cu file starts with `#include "common.cuh"`. Nothing here allocates or
// launches; it holds index types, the grid-stride loop, the deterministic block reduction and the
// "strided segment" description that the group reductions and normalisations share.

#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

// Threads per block of every 1-D kernel (elementwise, reductions, optimizers, RNG).
#define WG_BLOCK 256

// Grid-stride loop over [0, n) with 64-bit indices.
#define WG_FOR(i, n)                                                                  \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n);           \
         i += (i64)blockDim.x * gridDim.x)

// Sum of `v` over the block (blockDim.x a multiple of 32, at most 1024). Every thread gets the
// total. The order of additions depends only on blockDim.x, so results are reproducible run to run.
// `scratch` must hold 32 doubles; the function starts and ends with a barrier so it may be called
// several times in a row with the same scratch.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = 0.0;
    if (warp == 0) {
        t = lane < warps ? scratch[lane] : 0.0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t += __shfl_down_sync(0xffffffffu, t, o);
        if (lane == 0) scratch[0] = t;
    }
    __syncthreads();
    t = scratch[0];
    __syncthreads();
    return t;
}

// A group of a tensor as a strided segment: element j (0 <= j < len) of group g lives at flat index
//   (j / run) * outer_stride + g * group_stride + (j % run).
// Group::All and Group::Sample: run = len, group_stride = len (outer_stride unused).
// Group::Channel of [N, C, inner]: run = inner, outer_stride = C * inner, group_stride = inner,
// len = N * inner.
struct Segments {
    i64 count;         // number of groups
    i64 len;           // elements per group
    i64 run;           // contiguous run length inside a group
    i64 outer_stride;  // distance between runs
    i64 group_stride;  // distance between the first elements of consecutive groups
};

__device__ __forceinline__ i64 seg_index(const Segments& s, i64 g, i64 j) {
    return (j / s.run) * s.outer_stride + g * s.group_stride + (j % s.run);
}

// Mean and biased variance of group g of x, in f64 by two passes (the mean, then Σ(x − mean)²),
// one block per group; every thread gets both. The one definition of a group's statistics that
// the layer-norm kernels (norm.cu) and their fused double backward (fused.cu) share, so their
// statistics agree bit for bit.
__device__ __forceinline__ void group_mean_var(const float* __restrict__ x, const Segments& seg, i64 g,
                                               double* scratch, double& mean, double& var) {
    const double inv_len = 1.0 / (double)seg.len;
    double acc = 0.0;
    for (i64 j = threadIdx.x; j < seg.len; j += blockDim.x) acc += (double)x[seg_index(seg, g, j)];
    mean = block_sum(acc, scratch) * inv_len;
    acc = 0.0;
    for (i64 j = threadIdx.x; j < seg.len; j += blockDim.x) {
        const double d = (double)x[seg_index(seg, g, j)] - mean;
        acc += d * d;
    }
    var = block_sum(acc, scratch) * inv_len;
}

// Group of flat element i for the broadcast ops: (i / div) % mod.
// All: div = 1, mod = 1. Sample: div = numel / N, mod = N. Channel: div = inner, mod = C.
struct GroupMap {
    i64 n;    // elements of the full tensor
    i64 div;
    i64 mod;
};

__device__ __forceinline__ i64 group_of(const GroupMap& m, i64 i) { return (i / m.div) % m.mod; }

// Layouts the Rust mirrors (src/backend/cuda/params.rs) assert too.
static_assert(sizeof(Segments) == 40, "Segments layout");
static_assert(sizeof(GroupMap) == 24, "GroupMap layout");
