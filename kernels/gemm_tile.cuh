// gemm_tile.cuh: the tiled shared-memory matrix product that gemm.cu and conv.cu instantiate.
//
// C[M, Nc] = A[M, Kd] · B[Kd, Nc] where A and B are not stored as matrices but read through an
// "operand" object: op.a(m, k), op.b(k, col) return one element (the convolutions gather them
// from images: implicit GEMM, no im2col buffer), and op.c(m, col) gives the flat output offset.
// A block of 256 threads (16 × 16) computes a TM×TN tile of C, stepping through Kd 16 at a time: it
// stages a TM×16 tile of A and a 16×TN tile of B in shared memory (zero outside the matrix, so odd
// sizes need no special cases), then each thread accumulates a (TM/16)×(TN/16) sub-tile held in
// registers, rows ty + 16·i and columns tx + 16·j, so that shared-memory reads of B and global
// writes of C are consecutive across a half-warp. A_K_FAST / B_N_FAST choose which tile axis
// consecutive threads walk while loading, to follow each operand's contiguous axis in memory.
// Two shapes are instantiated: 64×64 (4×4 per thread), and 16×256 (1×16 per thread) for products
// with at most 16 rows, such as a convolution's data gradient onto 1 or 3 image channels, where a
// 64-row tile would compute 4 to 64 times the useful products.
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
#define NARROW_M 16
#define NARROW_N 256
#define TILE_K 16
#define GEMM_THREADS 256

struct GemmShape {
    u32 m, nc, kd;  // C is m × nc, the reduction has length kd (each < 2^31, checked on the host)
    u32 k_chunk;    // multiple of TILE_K; k range of one blockIdx.z
    i64 total;      // elements of the output (distance between split-K slices)
};

template <int TM, int TN, bool A_K_FAST, bool B_N_FAST, class Op>
__device__ __forceinline__ void gemm_tile_mn(const Op& op, float* __restrict__ out, const GemmShape& s) {
    static_assert(TM % 16 == 0 && TN % 16 == 0 && (TM * TILE_K) % GEMM_THREADS == 0 &&
                      (TN * TILE_K) % GEMM_THREADS == 0,
                  "tile shape must suit 16x16 threads");
    constexpr int RM = TM / 16, RN = TN / 16;                      // per-thread sub-tile
    constexpr int LA = TM * TILE_K / GEMM_THREADS, LB = TN * TILE_K / GEMM_THREADS;  // loads per thread
    __shared__ float As[TILE_K][TM + 1];
    __shared__ float Bs[TILE_K][TN + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const u32 m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const u32 kb = blockIdx.z * s.k_chunk;
    const u32 ke = min(kb + s.k_chunk, s.kd);
    float acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;

    for (u32 k0 = kb; k0 < ke; k0 += TILE_K) {
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int e = tid + l * GEMM_THREADS;
            int mm, kk;
            if (A_K_FAST) {
                mm = e / TILE_K;
                kk = e % TILE_K;
            } else {
                kk = e / TM;
                mm = e % TM;
            }
            const u32 gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < s.m && gk < ke) ? op.a(gm, gk) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int e = tid + l * GEMM_THREADS;
            int nn, kk;
            if (B_N_FAST) {
                kk = e / TN;
                nn = e % TN;
            } else {
                nn = e / TILE_K;
                kk = e % TILE_K;
            }
            const u32 gn = n0 + nn, gk = k0 + kk;
            Bs[kk][nn] = (gn < s.nc && gk < ke) ? op.b(gk, gn) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            float ra[RM], rb[RN];
#pragma unroll
            for (int i = 0; i < RM; ++i) ra[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < RN; ++j) rb[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
        }
        __syncthreads();
    }

    float* dst = out + (i64)blockIdx.z * s.total;
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const u32 m = m0 + ty + 16 * i;
        if (m >= s.m) continue;
#pragma unroll
        for (int j = 0; j < RN; ++j) {
            const u32 n = n0 + tx + 16 * j;
            if (n < s.nc) dst[op.c(m, n)] = gridDim.z == 1 ? op.epilogue(n, acc[i][j]) : acc[i][j];
        }
    }
}

// The 64×64 tile.
template <bool A_K_FAST, bool B_N_FAST, class Op>
__device__ __forceinline__ void gemm_tile(const Op& op, float* __restrict__ out, const GemmShape& s) {
    gemm_tile_mn<TILE_M, TILE_N, A_K_FAST, B_N_FAST>(op, out, s);
}

// The 16×256 tile, for at most 16 rows.
template <bool A_K_FAST, bool B_N_FAST, class Op>
__device__ __forceinline__ void gemm_tile_narrow(const Op& op, float* __restrict__ out, const GemmShape& s) {
    gemm_tile_mn<NARROW_M, NARROW_N, A_K_FAST, B_N_FAST>(op, out, s);
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
