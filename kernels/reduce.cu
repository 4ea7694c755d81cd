// reduce.cu: group_sum (Group::All, Sample, Channel) as a deterministic two-stage reduction over
// strided segments (see Segments in common.cuh).
//
// Stage 1, group_sum_partial_f32: grid (groups, splits); block (g, s) sums elements
// [s·chunk, min((s+1)·chunk, len)) of group g, each thread accumulating in f64 and the block
// combining with block_sum, and writes partial[g·splits + s]. When splits == 1 the host points
// `partial` at the output and stage 2 is skipped.
// Stage 2, group_sum_finish_f32: one block per group adds its `splits` partials in a fixed order.
// No atomics: the result depends only on the shape, so it is reproducible run to run.

#include "common.cuh"

struct SumParams {
    Segments seg;
    i64 chunk;   // elements of a group per stage-1 block
    i64 splits;  // stage-1 blocks per group
};

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
group_sum_partial_f32(float* __restrict__ partial, const float* __restrict__ x, SumParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x, s = blockIdx.y;
    const i64 begin = s * p.chunk;
    const i64 end = min(begin + p.chunk, p.seg.len);
    double acc = 0.0;
    for (i64 j = begin + threadIdx.x; j < end; j += blockDim.x) acc += (double)x[seg_index(p.seg, g, j)];
    const double t = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[g * p.splits + s] = (float)t;
}

extern "C" __global__ void __launch_bounds__(WG_BLOCK)
group_sum_finish_f32(float* __restrict__ out, const float* __restrict__ partial, SumParams p) {
    __shared__ double scratch[32];
    const i64 g = blockIdx.x;
    double acc = 0.0;
    for (i64 s = threadIdx.x; s < p.splits; s += blockDim.x) acc += (double)partial[g * p.splits + s];
    const double t = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[g] = (float)t;
}

static_assert(sizeof(SumParams) == 56, "SumParams layout");
