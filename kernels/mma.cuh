// mma.cuh: the warp-level tensor-core and asynchronous-copy instructions the tensor-core GEMMs use,
// each behind a small device function with two bodies:
//   - on the device (__CUDA_ARCH__ defined, NVRTC): inline PTX, sm_80 and later;
//   - in the host emulator (src/backend/cuda/emu): C++ that gives the instruction's exact
//     semantics, as a warp collective where the instruction is one.
//
// What is emulated, and how:
//   tf32_round(x)        cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa
//                        bits (the low 13 bits of the f32 become zero). Inf passes unchanged; NaN too, here, but the PTX ISA leaves the result for a NaN unspecified (only .satfinite promises a NaN).
//   bf16x2_pack(lo, hi)  cvt.rn.bf16x2.f32 d, hi, lo: each rounded to bf16, nearest, ties to even;
//                        `lo` in bits 0..15, `hi` in bits 16..31 (a NaN becomes the quiet NaN 0x7FC0).
//   mma_tf32<MI, NJ>     MI×NJ independent mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, and
//   mma_bf16<MI, NJ>     the same for m16n8k16 .bf16: D = A·B + C per 16×8 tile. Emulated as a warp
//                        collective: every lane publishes its fragments, waits for the warp, and
//                        computes its own four D elements by reading A and B from the lanes that hold
//                        them, exactly as the PTX ISA's fragment figures place them (below). Products
//                        and their sum are formed in double and rounded once to f32 (the hardware's
//                        internal order and width are not specified; the tests' tolerances cover
//                        one rounding per MMA). TF32 operands have their low 13 bits ignored.
//   cp_async<BYTES>      cp.async.{ca,cg}.shared.global with a source size (0 → zero fill), plus
//   cp_async_commit()    commit_group and wait_group<N>. Emulated lazily: the copy is queued per
//   cp_async_wait<N>()   thread and performed only when a wait_group retires its group, so a read
//                        of shared memory before the wait sees stale data here, as it may on a GPU.
//   ldmatrix_x4(_trans)  ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16 as a warp collective. Like
//                        mma.sync it converges the warp but is no memory fence: shared stores of
//                        other lanes need a __syncwarp (or barrier) before it (checked: race).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k8 / m16n8k16"), with
// g = lane >> 2 (groupID) and t = lane & 3 (threadID_in_group):
//   m16n8k8 .tf32   A (16×8, row): a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
//                   B (8×8, col):  b0 (k=t, n=g)  b1 (k=t+4, n=g)
//   m16n8k16 .bf16  A (16×16, row), two per register, low half first:
//                   a0,a1 (g, 2t..2t+1)  a2,a3 (g+8, 2t..2t+1)  a4,a5 (g, 2t+8..)  a6,a7 (g+8, 2t+8..)
//                   B (16×8, col): b0,b1 (k=2t..2t+1, n=g)  b2,b3 (k=2t+8..2t+9, n=g)
//   C/D (16×8, f32): c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)

#pragma once
#include "common.cuh"

// ---- operand rounding ----
#ifdef __CUDA_ARCH__
__device__ __forceinline__ u32 tf32_round(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ u32 bf16x2_pack(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
#else
inline u32 tf32_round(float x) {
    u32 b;
    std::memcpy(&b, &x, 4);
    if ((b & 0x7F800000u) == 0x7F800000u) return b;  // Inf, NaN: unchanged
    return (b + 0x1000u) & 0xFFFFE000u;               // magnitude + half an ulp, truncated: ties away
}
inline u32 bf16_round_bits(float x) {
    u32 b;
    std::memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u;  // NaN
    return (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;         // nearest, ties to even (Inf stays Inf)
}
inline u32 bf16x2_pack(float lo, float hi) { return bf16_round_bits(lo) | (bf16_round_bits(hi) << 16); }
#endif

// ---- the emulator's bodies of the warp collectives (runtime.hpp: WGEMU_RT, collective_*) ----
#ifndef __CUDA_ARCH__
namespace wgtc {
// (Not instrumented, like the collectives that call them: so they are inlined there.)
#define WGTC_EMU_INLINE __attribute__((no_sanitize("thread"))) inline
WGTC_EMU_INLINE float f32_of(u32 b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
WGTC_EMU_INLINE double tf32_value(u32 b) { return (double)f32_of(b & 0xFFFFE000u); }
WGTC_EMU_INLINE double bf16_value(u32 reg, int half) { return (double)f32_of(((reg >> (16 * half)) & 0xFFFFu) << 16); }

// MI·NJ m16n8k8 TF32 (BF16: m16n8k16) MMAs as a warp collective: every lane publishes its
// fragments, waits for the warp, and computes its own four D elements per tile by reading A and B
// from the lanes that hold them, exactly as the PTX ISA's fragment figures place them.
template <int MI, int NJ, bool BF16>
WGEMU_RT void mma_emu(float (&acc)[MI][NJ][4], const u32 (&a)[MI][4], const u32 (&b)[NJ][2]) {
    const uintptr_t pc = WGEMU_PC;
    ::wgemu::collective_publish(a, b, nullptr, pc);
    const int lane = ::wgemu::t_cur->lane, g = lane >> 2, t = lane & 3;
    constexpr int K = BF16 ? 16 : 8;
    // TF32: A(r, k) of fragment i is in lane (r % 8)·4 + k % 4, register (r ≥ 8) + 2·(k ≥ 4);
    //       B(k, n) in lane n·4 + k % 4, register (k ≥ 4).
    // BF16: A(r, k) in lane (r % 8)·4 + (k % 8) / 2, register (r ≥ 8) + 2·(k ≥ 8), half k % 2;
    //       B(k, n) in lane n·4 + (k % 8) / 2, register (k ≥ 8), half k % 2.
    // The lanes this lane reads: rows g and g + 8 of A are in lanes g·4 + c, columns 2t and 2t + 1
    // of B in lanes n·4 + c (c = 0…3; c = k % 4 for TF32, (k % 8) / 2 for BF16).
    const u32(*fa[4])[4];
    const u32(*fb[2][4])[2];
    for (int c = 0; c < 4; ++c) {
        fa[c] = (const u32(*)[4])::wgemu::published(g * 4 + c, 0);
        for (int h = 0; h < 2; ++h) fb[h][c] = (const u32(*)[2])::wgemu::published((2 * t + h) * 4 + c, 1);
    }
    float d[MI][NJ][4];
    for (int i = 0; i < MI; ++i)
        for (int j = 0; j < NJ; ++j)
            for (int e = 0; e < 4; ++e) {
                const int r = g + 8 * (e >> 1), h = e & 1;  // D(r, n) with n = 2t + h
                double s = (double)acc[i][j][e];
                for (int k = 0; k < K; ++k) {
                    const double av = BF16 ? bf16_value(fa[(k & 7) >> 1][i][(r >> 3) + 2 * (k >> 3)], k & 1)
                                           : tf32_value(fa[k & 3][i][(r >> 3) + 2 * (k >> 2)]);
                    const double bv = BF16 ? bf16_value(fb[h][(k & 7) >> 1][j][k >> 3], k & 1)
                                           : tf32_value(fb[h][k & 3][j][k >> 2]);
                    s += av * bv;
                }
                d[i][j][e] = (float)s;
            }
    ::wgemu::collective_done(pc);  // every lane has read before any fragment changes
    std::memcpy(acc, d, sizeof d);
}

// ldmatrix .x4 as a warp collective; each lane's row address is checked (shared, 16-byte
// aligned), and each element as a read of the lane that receives it.
template <bool TRANS>
WGEMU_RT void ldmatrix_emu(u32 (&r)[4], const void* row_addr) {
    const uintptr_t pc = WGEMU_PC;
    ::wgemu::collective_publish(row_addr, nullptr, nullptr, pc);
    ::wgemu::ldmatrix_row_check(row_addr, pc);
    ::wgemu::prof_ldmatrix(row_addr, pc);  // the memory profiler: one 16-byte row per lane
    const int lane = ::wgemu::t_cur->lane;
    u32 out[4];
    for (int q = 0; q < 4; ++q) {
        unsigned short e[2];
        for (int h = 0; h < 2; ++h) {
            const int row = TRANS ? 2 * (lane & 3) + h : lane >> 2;
            const int col = TRANS ? lane >> 2 : 2 * (lane & 3) + h;
            const unsigned short* src = (const unsigned short*)::wgemu::published(q * 8 + row, 0) + col;
            ::wgemu::access_range(src, 2, ::wgemu::ARead, pc);
            std::memcpy(&e[h], src, 2);
        }
        out[q] = (u32)e[0] | ((u32)e[1] << 16);
    }
    ::wgemu::collective_done(pc);
    for (int q = 0; q < 4; ++q) r[q] = out[q];
}
}  // namespace wgtc
#endif

// acc[i][j] += A_i · B_j for MI 16-row A fragments and NJ 8-column B fragments: MI·NJ mma.sync
// m16n8k8 TF32 instructions (a warp tile of 16·MI × 8·NJ, k 8). Every lane of the warp must call it.
template <int MI, int NJ>
__device__ __forceinline__ void mma_tf32(float (&acc)[MI][NJ][4], const u32 (&a)[MI][4], const u32 (&b)[NJ][2]) {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
            asm volatile(
                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};"
                : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
#else
    wgtc::mma_emu<MI, NJ, false>(acc, a, b);
#endif
}

// The same for m16n8k16 BF16 (each u32 holds two bf16, the lower k index in the low half).
template <int MI, int NJ>
__device__ __forceinline__ void mma_bf16(float (&acc)[MI][NJ][4], const u32 (&a)[MI][4], const u32 (&b)[NJ][2]) {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};"
                : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
#else
    wgtc::mma_emu<MI, NJ, true>(acc, a, b);
#endif
}

// ---- ldmatrix: four 8×8 matrices of 16-bit elements from shared memory ----
// Lane l gives the address of row (l % 8) of matrix (l / 8); lane l receives, from matrix q, the
// register r[q] holding row l/4, elements 2·(l%4) and 2·(l%4)+1 (low half first). With .trans
// it receives column l/4 instead: elements (2·(l%4), l/4) and (2·(l%4)+1, l/4).
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* row_addr) {
#ifdef __CUDA_ARCH__
    const u32 s = (u32)__cvta_generic_to_shared(row_addr);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(s));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(s));
#else
    wgtc::ldmatrix_emu<TRANS>(r, row_addr);
#endif
}

// ---- cp.async ----
// Copies BYTES (4, 8 or 16; cg needs 16) from global `src` to shared `dst`; only the first
// `src_bytes` are read, the rest are zero (src_bytes 0: nothing is read, `src` may be any address).
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
#ifdef __CUDA_ARCH__
    const u32 s = (u32)__cvta_generic_to_shared(dst);
    if (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "r"(src_bytes));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(s), "l"(src), "n"(BYTES), "r"(src_bytes));
#else
    ::wgemu::cp_async_issue(dst, src, BYTES, src_bytes, BYTES == 16);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.commit_group;" ::);
#else
    ::wgemu::cp_async_commit();
#endif
}

// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
#else
    ::wgemu::cp_async_wait(N);
#endif
}
