// gemm_tile.cuh: the tiled shared-memory matrix product that gemm.cu and conv.cu instantiate.
//
// C[M, Nc] = A[M, Kd] · B[Kd, Nc] where A and B are not stored as matrices but read through
// "operand" objects, op.A and op.B (the convolutions gather them from images: implicit GEMM, no
// im2col buffer), and op.c(m, col) gives the flat output offset.
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
// No division in the K loop. An operand element is (j, k): j its row (A) or column (B), k the
// reduction index. Each thread stages the same j's at every K step (decomposed once, before the
// loop, into the operand's `J`), and its k's move by 16 per step: k is held as mixed-radix digits
// k = (d0·r1 + d1)·r2 + d2 (`KCur`; an operand's radices say what the digits mean, e.g. (ci, kh,
// kw) with r1 = r2 = K) and advanced by adding the digits of the step with one carry per digit.
// Operands whose k needs no digits (plain matrices) set DIGITS = false and skip the carries. The
// values staged are exactly op.A.at(j, k), so the result does not depend on how indices are found.
//
// An operand type provides: `static constexpr bool DIGITS`, radices `r1, r2` (when DIGITS), a type
// `J`, `J j_at(u32 j)` (may divide: runs before the loop) and `float at(const J&, const KCur&)`
// (the element; called only for j < rows/columns and k < the block's k end).
//
#pragma once
#include "common.cuh"
#include "epilogue.cuh"

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

// A reduction index as mixed-radix digits: k = (d0·r1 + d1)·r2 + d2.
struct KCur {
    u32 k, d0, d1, d2;
};

template <class O>
__device__ __forceinline__ KCur kcur_at(const O& o, u32 k) {
    if constexpr (!O::DIGITS) {
        return KCur{k, k, 0, 0};
    } else {
        const u32 d2 = k % o.r2, q = k / o.r2;
        return KCur{k, q / o.r1, q % o.r1, d2};
    }
}

// p += s, s's digits each below their radix (a step made by kcur_at): one carry per digit.
template <class O>
__device__ __forceinline__ void kcur_add(const O& o, KCur& p, const KCur& s) {
    p.k += s.k;
    p.d0 += s.d0;
    if constexpr (O::DIGITS) {
        p.d1 += s.d1;
        p.d2 += s.d2;
        if (p.d2 >= o.r2) {
            p.d2 -= o.r2;
            p.d1 += 1;
        }
        if (p.d1 >= o.r1) {
            p.d1 -= o.r1;
            p.d0 += 1;
        }
    }
}

// The staging of one operand into a [TILE_K][T + 1] shared tile by 256 threads, element
// e = tid + 256·l (l < L = T·16/256) at (k, j) = (e % 16, e / 16) when K_FAST, else (e / T, e % T).
// K_FAST: one k per thread (tid % 16) and L j's (tid / 16 + 16·l). Otherwise one j (tid % T) and L
// k's (tid / T + (256 / T)·l), walked from the first by a step of 256 / T.
template <int T, bool K_FAST, class O>
struct TileStager {
    static constexpr int L = T * TILE_K / GEMM_THREADS;
    static constexpr int NJ = K_FAST ? L : 1;
    static constexpr int KS = GEMM_THREADS / T;  // k step between a thread's elements (not K_FAST)
    static_assert(GEMM_THREADS % T == 0 || K_FAST, "tile must suit 256 threads");
    typename O::J j[NJ];
    bool jok[NJ];
    int jl, kl;  // local j and k of the thread's first element
    KCur k, step_in, step_tile;

    __device__ __forceinline__ void init(const O& o, u32 j0, u32 jext, u32 kb) {
        const int tid = threadIdx.x;
        jl = K_FAST ? tid / TILE_K : tid % T;
        kl = K_FAST ? tid % TILE_K : tid / T;
#pragma unroll
        for (int i = 0; i < NJ; ++i) {
            const u32 jj = j0 + jl + (K_FAST ? TILE_K * i : 0);
            jok[i] = jj < jext;
            j[i] = o.j_at(jok[i] ? jj : 0);
        }
        k = kcur_at(o, kb + kl);
        step_in = kcur_at(o, K_FAST ? 0 : KS);
        step_tile = kcur_at(o, TILE_K);
    }
    // Stages the current K tile into tile[k][j] and moves on to the next one.
    __device__ __forceinline__ void load(const O& o, float (*tile)[T + 1], u32 ke) {
        if (K_FAST) {
#pragma unroll
            for (int i = 0; i < L; ++i)
                tile[kl][jl + TILE_K * i] = (jok[i] && k.k < ke) ? o.at(j[i], k) : 0.0f;
        } else {
            KCur kk = k;
#pragma unroll
            for (int i = 0; i < L; ++i) {
                tile[kl + KS * i][jl] = (jok[0] && kk.k < ke) ? o.at(j[0], kk) : 0.0f;
                if (i + 1 < L) kcur_add(o, kk, step_in);
            }
        }
        kcur_add(o, k, step_tile);
    }
};

template <int TM, int TN, bool A_K_FAST, bool B_N_FAST, class Op>
__device__ __forceinline__ void gemm_tile_mn(const Op& op, float* __restrict__ out, const GemmShape& s) {
    static_assert(TM % 16 == 0 && TN % 16 == 0 && (TM * TILE_K) % GEMM_THREADS == 0 &&
                      (TN * TILE_K) % GEMM_THREADS == 0,
                  "tile shape must suit 16x16 threads");
    constexpr int RM = TM / 16, RN = TN / 16;  // per-thread sub-tile
    __shared__ float As[TILE_K][TM + 1];
    __shared__ float Bs[TILE_K][TN + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const u32 m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const u32 kb = blockIdx.z * s.k_chunk;
    const u32 ke = min(kb + s.k_chunk, s.kd);
    TileStager<TM, A_K_FAST, decltype(op.A)> sa;
    TileStager<TN, !B_N_FAST, decltype(op.B)> sb;
    sa.init(op.A, m0, s.m, kb);
    sb.init(op.B, n0, s.nc, kb);
    float acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;

    for (u32 k0 = kb; k0 < ke; k0 += TILE_K) {
        sa.load(op.A, As, ke);
        sb.load(op.B, Bs, ke);
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
            if (n >= s.nc) continue;
            const i64 o = op.c(m, n);
            dst[o] = gridDim.z == 1 ? op.epilogue(n, o, acc[i][j]) : acc[i][j];
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

// out[i] = Σ_z ws[z·total + i], z in order, then the epilogue (epilogue.cuh) of column i % cols.
__device__ __forceinline__ void splitk_reduce(float* __restrict__ out, const float* __restrict__ ws,
                                              const GemmEpi& epi, const SplitKParams& p) {
    WG_FOR(i, p.total) {
        float acc = 0.0f;
        for (i64 z = 0; z < p.splits; ++z) acc += ws[z * p.total + i];
        out[i] = epi_apply(epi, (u32)(i % p.cols), i, acc);
    }
}

static_assert(sizeof(GemmShape) == 24 && sizeof(SplitKParams) == 24, "GEMM params layout");
