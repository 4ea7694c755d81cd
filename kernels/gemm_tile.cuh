// gemm_tile.cuh: the tiled shared-memory matrix product that gemm.cu and conv.cu instantiate.
//
// C[M, Nc] = A[M, Kd] · B[Kd, Nc] where A and B are not stored as matrices but read through an
// "operand" object: op.a(m, k), op.b(k, col) return one element (the convolutions gather them
// from images: implicit GEMM, no im2col buffer), and op.c(m, col) gives the flat output offset.
// A block of 256 threads computes a 64×64 tile of C, stepping through Kd 16 at a time: it stages a
// 64×16 tile of A and a 16×64 tile of B in shared memory (zero outside the matrix, so odd sizes
// need no special cases), then each thread accumulates a 4×4 sub-tile held in registers, rows
// ty + 16·i and columns tx + 16·j, so that shared-memory reads of B and global writes of C are
// consecutive across a half-warp. A_K_FAST / B_N_FAST choose which tile axis consecutive threads
// walk while loading, to follow each operand's contiguous axis in memory.
//
// Split-K: blockIdx.z takes the k range [z·k_chunk, min((z+1)·k_chunk, Kd)) and writes its partial
// tile to out + z·total; splitk_reduce_f32 (gemm.cu, conv.cu) then adds the slices in order, so the
// result is deterministic. With one split, out is the output itself.
// Epilogue: each value goes through op.epilogue(col, v) before it is stored (the matmuls add a
// per-column bias there); with split-K the partial slices are stored raw and splitk_reduce adds the
// bias once, after the slices.

#pragma once
#include "common.cuh"

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
#define GEMM_THREADS 256

struct GemmShape {
    u32 m, nc, kd;  // C is m × nc, the reduction has length kd (each < 2^31, checked on the host)
    u32 k_chunk;    // multiple of TILE_K; k range of one blockIdx.z
    i64 total;      // elements of the output (distance between split-K slices)
};

template <bool A_K_FAST, bool B_N_FAST, class Op>
__device__ __forceinline__ void gemm_tile(const Op& op, float* __restrict__ out, const GemmShape& s) {
    __shared__ float As[TILE_K][TILE_M + 1];
    __shared__ float Bs[TILE_K][TILE_N + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const u32 m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    const u32 kb = blockIdx.z * s.k_chunk;
    const u32 ke = min(kb + s.k_chunk, s.kd);
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (u32 k0 = kb; k0 < ke; k0 += TILE_K) {
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int e = tid + l * GEMM_THREADS;
            int mm, kk;
            if (A_K_FAST) {
                mm = e >> 4;
                kk = e & 15;
            } else {
                kk = e >> 6;
                mm = e & 63;
            }
            const u32 gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < s.m && gk < ke) ? op.a(gm, gk) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int e = tid + l * GEMM_THREADS;
            int nn, kk;
            if (B_N_FAST) {
                kk = e >> 6;
                nn = e & 63;
            } else {
                nn = e >> 4;
                kk = e & 15;
            }
            const u32 gn = n0 + nn, gk = k0 + kk;
            Bs[kk][nn] = (gn < s.nc && gk < ke) ? op.b(gk, gn) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            float ra[4], rb[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) ra[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) rb[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
        }
        __syncthreads();
    }

    float* dst = out + (i64)blockIdx.z * s.total;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u32 m = m0 + ty + 16 * i;
        if (m >= s.m) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const u32 n = n0 + tx + 16 * j;
            if (n < s.nc) dst[op.c(m, n)] = gridDim.z == 1 ? op.epilogue(n, acc[i][j]) : acc[i][j];
        }
    }
}

struct SplitKParams {
    i64 total;   // elements of the output
    i64 splits;  // slices to add
    i64 cols;    // columns of the output (the bias's length)
};

// out[i] = Σ_z ws[z·total + i], z in order, then + bias[i % cols] when bias is not null.
__device__ __forceinline__ void splitk_reduce(float* __restrict__ out, const float* __restrict__ ws,
                                              const float* __restrict__ bias, const SplitKParams& p) {
    WG_FOR(i, p.total) {
        float acc = 0.0f;
        for (i64 z = 0; z < p.splits; ++z) acc += ws[z * p.total + i];
        out[i] = bias ? acc + bias[i % p.cols] : acc;
    }
}

static_assert(sizeof(GemmShape) == 24 && sizeof(SplitKParams) == 24, "GEMM params layout");
