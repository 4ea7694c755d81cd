// gemm_tc.cuh: the tensor-core GEMM that every TF32/BF16 matrix product and convolution pass runs
// (gemm_tc.cu, conv_tc.cu). C[M, Nc] = A[M, Kd] · B[Kd, Nc] with f32 storage, operands rounded to
// TF32 or BF16 as they go into mma.sync (mma.cuh), f32 accumulation.
//
// Operands are gathered, never materialised (implicit GEMM): a `TcOperand` describes, with
// integers the host computes once, where element (j, k) of an operand lives, j being its row
// (A) or column (B) and k the reduction index:
//   k = (d0·r1 + d1)·r2 + d2                     (mixed radix; d0 unbounded)
//   j = (m0·q1 + m1)·q2 + m2
//   offset = m0·b0 + m1·b1 + m2·b2 + b3  +  d0·c0 + d1·c1 + d2·c2
//   image row    y = m1·g1 + h3 + d1·e1,  valid iff 0 ≤ y < h   (h = INT_MAX: no image bounds)
//   image column x = m2·g2 + w3 + d2·e2,  valid iff 0 ≤ x < w
// Out-of-image taps, k ≥ the block's k end and j ≥ ext read as zero (cp.async zero fill). The conv
// passes, their stride phases and the four transposition cases of matmul are all such operands
// (src/backend/cuda/ops/tc.rs builds them). Divisions happen once per thread, before the main loop:
// each thread owns fixed j's of the tile (decomposed once) and walks k by adding precomputed digit
// steps with one compare-and-subtract carry per digit. The main loop has no integer division.
//
// Tile: a block of 128 threads (4 warps) computes BM×BN of C, K step BK = 16, in a STAGES-deep
// cp.async pipeline of shared-memory tiles stored k-major (As[k][m], Bs[k][n], padded so that the
// fragment reads of a warp hit 32 different banks). One barrier per K step:
//   wait for tile t → barrier → issue the copies of tile t + STAGES − 1 → MMAs on tile t.
// Warps are laid out WARPS_M × WARPS_N; each holds a (BM/WARPS_M) × (BN/WARPS_N) accumulator tile
// as MI × NJ mma fragments. Each operand is staged along its contiguous axis (K_FAST: consecutive
// threads take consecutive k; else consecutive j), so global reads coalesce.
//
// Split-K: blockIdx.z takes k in [z·k_chunk, min((z+1)·k_chunk, Kd)), writes its partial tile to
// out + z·total, and splitk_reduce_f32 adds the slices in order (deterministic).

#pragma once
#include "common.cuh"
#include "gemm_tile.cuh"
#include "mma.cuh"

#define TC_THREADS 128
#define TC_BK 16
#define TC_STAGES 3

struct TcOperand {
    i64 c0, c1, c2;      // offset per unit of k digit d0, d1, d2
    i64 b0, b1, b2, b3;  // offset of j: m0·b0 + m1·b1 + m2·b2 + b3
    int e1, e2;          // image row / column per unit of d1 / d2
    int g1, g2, h3, w3;  // image row = m1·g1 + h3 (+ d1·e1), column = m2·g2 + w3 (+ d2·e2)
    int h, w;            // image bounds (INT_MAX: none)
    u32 r1, r2;          // radices of d1, d2
    u32 q1, q2;          // radices of m1, m2
    u32 ext;             // extent of j (rows of A or columns of B)
    u32 pad_;
};

// Flat offset of C element (m, col): m·om + n0·o0 + n1·o1 + n2·o2 + ob, col = (n0·q1 + n1)·q2 + n2.
struct TcOut {
    i64 om, o0, o1, o2, ob;
    u32 q1, q2;
};

struct TcParams {
    GemmShape g;
    TcOperand a, b;
    TcOut c;
};

// Operand precision: how a k-slice of shared memory becomes mma fragments.
struct Tf32 {};
struct Bf16 {};

// A reduction position walked incrementally: digits d1, d2, the offset and image deltas they give.
struct KPos {
    u32 k, d1, d2;
    i64 off;
    int dy, dx;
};
struct KStep {
    u32 dk, s1, s2;
    i64 off;
    int dy, dx;
};

__device__ __forceinline__ KPos kpos_at(const TcOperand& o, u32 k) {
    const u32 d2 = k % o.r2, q = k / o.r2, d1 = q % o.r1, d0 = q / o.r1;
    return KPos{k, d1, d2, (i64)d0 * o.c0 + (i64)d1 * o.c1 + (i64)d2 * o.c2, (int)d1 * o.e1, (int)d2 * o.e2};
}
__device__ __forceinline__ KStep kstep_of(const TcOperand& o, u32 dk) {
    const KPos p = kpos_at(o, dk);
    return KStep{dk, p.d1, p.d2, p.off, p.dy, p.dx};
}
// p += s in the mixed radix: each step digit is below its radix, so one carry per digit suffices.
__device__ __forceinline__ void kpos_add(const TcOperand& o, KPos& p, const KStep& s) {
    p.k += s.dk;
    p.off += s.off;
    p.dy += s.dy;
    p.dx += s.dx;
    p.d1 += s.s1;
    p.d2 += s.s2;
    if (p.d2 >= o.r2) {
        p.d2 -= o.r2;
        p.d1 += 1;
        p.off += o.c1 - (i64)o.r2 * o.c2;
        p.dx -= (int)o.r2 * o.e2;
        p.dy += o.e1;
    }
    if (p.d1 >= o.r1) {
        p.d1 -= o.r1;
        p.off += o.c0 - (i64)o.r1 * o.c1;
        p.dy -= (int)o.r1 * o.e1;
    }
}

// One j of an operand, decomposed once.
struct JPos {
    i64 base;
    int y, x;
    bool ok;
};
__device__ __forceinline__ JPos jpos_at(const TcOperand& o, u32 j) {
    const u32 m2 = j % o.q2, q = j / o.q2, m1 = q % o.q1, m0 = q / o.q1;
    return JPos{(i64)m0 * o.b0 + (i64)m1 * o.b1 + (i64)m2 * o.b2 + o.b3, (int)m1 * o.g1 + o.h3,
                (int)m2 * o.g2 + o.w3, j < o.ext};
}

// Issues the copies of element (j, k) into shared `dst`: zero when out of range.
__device__ __forceinline__ void stage_elem(float* dst, const float* __restrict__ base, const TcOperand& o,
                                           const JPos& j, const KPos& k, u32 ke) {
    const int y = j.y + k.dy, x = j.x + k.dx;
    const bool ok = j.ok && k.k < ke && (unsigned)y < (unsigned)o.h && (unsigned)x < (unsigned)o.w;
    cp_async<4>(dst, ok ? base + (j.base + k.off) : base, ok ? 4 : 0);
}

// The staging of one operand into [BK][BMN + PAD] shared tiles: which (j, k) each thread copies.
template <int BMN, int PAD, bool K_FAST>
struct Stager {
    // K_FAST: thread → k = tid % BK, j = tid / BK + JSTEP·i (NJP of them).
    // else:   thread → j = tid % JT, k = tid / JT + KSTEP·i (NKP of them).
    static constexpr int JT = BMN < TC_THREADS ? BMN : TC_THREADS;
    static constexpr int KSTEP = TC_THREADS / JT;
    static constexpr int NKP = K_FAST ? 1 : TC_BK / KSTEP;
    static constexpr int JSTEP = TC_THREADS / TC_BK;
    static constexpr int NJP = K_FAST ? BMN / JSTEP : 1;
    static_assert(K_FAST || BMN <= TC_THREADS, "one j per thread when staging j-fast");
    static_assert(K_FAST ? (BMN * TC_BK) % TC_THREADS == 0 : TC_BK % KSTEP == 0, "tile must suit 128 threads");

    JPos jp[NJP];
    KPos kp;
    KStep step_in, step_tile;  // k += KSTEP (inside a tile), k += BK (to the next tile)
    int jl, kl;                // this thread's first local j and k

    __device__ __forceinline__ void init(const TcOperand& o, u32 j0, u32 kb) {
        const int tid = threadIdx.x;
        jl = K_FAST ? tid / TC_BK : tid % JT;
        kl = K_FAST ? tid % TC_BK : tid / JT;
#pragma unroll
        for (int i = 0; i < NJP; ++i) jp[i] = jpos_at(o, j0 + jl + JSTEP * i);
        kp = kpos_at(o, kb + kl);
        step_in = kstep_of(o, KSTEP);
        step_tile = kstep_of(o, TC_BK);
    }
    // Issues the copies of the current k tile into `tile` and moves on to the next one.
    __device__ __forceinline__ void load(float (*tile)[BMN + PAD], const float* __restrict__ base,
                                         const TcOperand& o, u32 ke) {
        if (K_FAST) {
#pragma unroll
            for (int i = 0; i < NJP; ++i) stage_elem(&tile[kl][jl + JSTEP * i], base, o, jp[i], kp, ke);
        } else {
            KPos k = kp;
#pragma unroll
            for (int i = 0; i < NKP; ++i) {
                stage_elem(&tile[kl + KSTEP * i][jl], base, o, jp[0], k, ke);
                if (i + 1 < NKP) kpos_add(o, k, step_in);
            }
        }
        kpos_add(o, kp, step_tile);
    }
};

// Fragments of one BK slice of shared memory, for a warp's MI × NJ tile; then the MMAs.
template <int MI, int NJ, int SA, int SB>
__device__ __forceinline__ void tc_slice(Tf32, float (&acc)[MI][NJ][4], const float (*As)[SA], const float (*Bs)[SB],
                                         int wm, int wn, int g, int t) {
#pragma unroll
    for (int kb = 0; kb < TC_BK; kb += 8) {
        u32 a[MI][4], b[NJ][2];
#pragma unroll
        for (int i = 0; i < MI; ++i) {
            const int r = wm + 16 * i + g;
            a[i][0] = tf32_round(As[kb + t][r]);
            a[i][1] = tf32_round(As[kb + t][r + 8]);
            a[i][2] = tf32_round(As[kb + t + 4][r]);
            a[i][3] = tf32_round(As[kb + t + 4][r + 8]);
        }
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
            const int c = wn + 8 * j + g;
            b[j][0] = tf32_round(Bs[kb + t][c]);
            b[j][1] = tf32_round(Bs[kb + t + 4][c]);
        }
        mma_tf32<MI, NJ>(acc, a, b);
    }
}

template <int MI, int NJ, int SA, int SB>
__device__ __forceinline__ void tc_slice(Bf16, float (&acc)[MI][NJ][4], const float (*As)[SA], const float (*Bs)[SB],
                                         int wm, int wn, int g, int t) {
    static_assert(TC_BK == 16, "one m16n8k16 step per K tile");
    u32 a[MI][4], b[NJ][2];
    const int k0 = 2 * t;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
        const int r = wm + 16 * i + g;
        a[i][0] = bf16x2_pack(As[k0][r], As[k0 + 1][r]);
        a[i][1] = bf16x2_pack(As[k0][r + 8], As[k0 + 1][r + 8]);
        a[i][2] = bf16x2_pack(As[k0 + 8][r], As[k0 + 9][r]);
        a[i][3] = bf16x2_pack(As[k0 + 8][r + 8], As[k0 + 9][r + 8]);
    }
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
        const int c = wn + 8 * j + g;
        b[j][0] = bf16x2_pack(Bs[k0][c], Bs[k0 + 1][c]);
        b[j][1] = bf16x2_pack(Bs[k0 + 8][c], Bs[k0 + 9][c]);
    }
    mma_bf16<MI, NJ>(acc, a, b);
}

// Shared-memory row padding: TF32 fragments read rows k, k+4 (stride ≡ 8 mod 32 spreads 4 rows × 8
// columns over 32 banks); BF16 fragments read rows 2t, 2t+1 (stride ≡ 4 mod 16).
template <class P>
struct TcPad {
    static constexpr int value = 8;
};
template <>
struct TcPad<Bf16> {
    static constexpr int value = 4;
};

// The whole tile (bx, by) of K slice bz: C[m0 .. m0+BM, n0 .. n0+BN] (then the epilogue, when not
// split), m0 = by·BM, n0 = bx·BN; `split` says the grid splits K (the slice goes to out + bz·total).
template <class P, int BM, int BN, int WARPS_M, bool A_K_FAST, bool B_K_FAST>
__device__ __forceinline__ void tc_gemm_at(const float* __restrict__ pa, const float* __restrict__ pb,
                                           float* __restrict__ out, const GemmEpi& epi, const TcParams& p,
                                           u32 bx, u32 by, u32 bz, bool split) {
    constexpr int WARPS_N = 4 / WARPS_M;
    constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // a warp's tile
    constexpr int MI = WTM / 16, NJ = WTN / 8;
    static_assert(WARPS_M * WARPS_N == 4 && MI >= 1 && NJ >= 1 && WTM % 16 == 0 && WTN % 8 == 0, "warp tiling");
    constexpr int PAD = TcPad<P>::value;
    constexpr int SA = BM + PAD, SB = BN + PAD;
    __shared__ float As[TC_STAGES][TC_BK][SA];
    __shared__ float Bs[TC_STAGES][TC_BK][SB];

    const u32 m0 = by * BM, n0 = bx * BN;
    const u32 kb = bz * p.g.k_chunk;
    const u32 ke = min(kb + p.g.k_chunk, p.g.kd);
    const int ntiles = ke > kb ? (int)((ke - kb + TC_BK - 1) / TC_BK) : 0;

    Stager<BM, PAD, A_K_FAST> sa;
    Stager<BN, PAD, B_K_FAST> sb;
    sa.init(p.a, m0, kb);
    sb.init(p.b, n0, kb);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wm = (warp % WARPS_M) * WTM, wn = (warp / WARPS_M) * WTN;
    float acc[MI][NJ][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: tiles 0 .. STAGES-2 in flight, one commit group each (empty past the end).
#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
        if (s < ntiles) {
            sa.load(As[s], pa, p.a, ke);
            sb.load(Bs[s], pb, p.b, ke);
        }
        cp_async_commit();
    }
    // Main loop. `rs` is the stage read now, `ws` the stage written next.
    int rs = 0, ws = TC_STAGES - 1;
    for (int tile = 0; tile < ntiles; ++tile) {
        cp_async_wait<TC_STAGES - 2>();  // this thread's copies of tile `tile` are done
        __syncthreads();                 // everyone's are, and everyone is done with tile - 1
        if (tile + TC_STAGES - 1 < ntiles) {
            sa.load(As[ws], pa, p.a, ke);
            sb.load(Bs[ws], pb, p.b, ke);
        }
        cp_async_commit();
        tc_slice<MI, NJ, SA, SB>(P{}, acc, As[rs], Bs[rs], wm, wn, g, t);
        rs = rs + 1 == TC_STAGES ? 0 : rs + 1;
        ws = ws + 1 == TC_STAGES ? 0 : ws + 1;
    }
    cp_async_wait<0>();

    // Epilogue: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1) of each fragment.
    float* dst = out + (i64)bz * p.g.total;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int e1 = 0; e1 < 2; ++e1) {
            const u32 n = n0 + wn + 8 * j + 2 * t + e1;
            if (n >= p.g.nc) continue;
            const u32 n2 = n % p.c.q2, q = n / p.c.q2, n1 = q % p.c.q1, nq = q / p.c.q1;
            const i64 col = (i64)nq * p.c.o0 + (i64)n1 * p.c.o1 + (i64)n2 * p.c.o2 + p.c.ob;
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int e0 = 0; e0 < 2; ++e0) {
                    const u32 m = m0 + wm + 16 * i + g + 8 * e0;
                    if (m >= p.g.m) continue;
                    const i64 o = (i64)m * p.c.om + col;
                    const float v = acc[i][j][2 * e0 + e1];
                    dst[o] = split ? v : epi_apply(epi, n, o, v);
                }
        }
}

// The tile of this block (blockIdx), K slice blockIdx.z of gridDim.z.
template <class P, int BM, int BN, int WARPS_M, bool A_K_FAST, bool B_K_FAST>
__device__ __forceinline__ void tc_gemm(const float* __restrict__ pa, const float* __restrict__ pb,
                                        float* __restrict__ out, const GemmEpi& epi, const TcParams& p) {
    tc_gemm_at<P, BM, BN, WARPS_M, A_K_FAST, B_K_FAST>(pa, pb, out, epi, p, blockIdx.x, blockIdx.y, blockIdx.z,
                                                       gridDim.z > 1);
}

static_assert(sizeof(TcOperand) == 112 && sizeof(TcOut) == 48 && sizeof(TcParams) == 296, "TC params layout");

// Split-K epilogue for any output layout: out[offset(m, col)] = Σ_z ws[z·total + m·cols + col], z in
// order (deterministic), then the epilogue (epilogue.cuh) at that offset. The slices are plain row-major
// [m, cols]; `c` maps (m, col) to the output as in the GEMM's epilogue (a convolution's
// [n, channel, pixel] layout, a stride phase's pixels).
__device__ __forceinline__ void splitk_scatter_one(float* __restrict__ out, const float* __restrict__ ws,
                                                   const GemmEpi& epi, const SplitKParams& p, const TcOut& c,
                                                   i64 i) {
    float acc = 0.0f;
    for (i64 z = 0; z < p.splits; ++z) acc += ws[z * p.total + i];
    const i64 m = i / p.cols, n = i - m * p.cols;
    const i64 n2 = n % c.q2, q = n / c.q2, n1 = q % c.q1, n0 = q / c.q1;
    const i64 o = m * c.om + n0 * c.o0 + n1 * c.o1 + n2 * c.o2 + c.ob;
    out[o] = epi_apply(epi, (u32)n, o, acc);
}

__device__ __forceinline__ void splitk_scatter(float* __restrict__ out, const float* __restrict__ ws,
                                               const GemmEpi& epi, const SplitKParams& p, const TcOut& c) {
    WG_FOR(i, p.total) splitk_scatter_one(out, ws, epi, p, c, i);
}
