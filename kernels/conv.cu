// conv.cu: 2-D convolution with square kernels, stride and zero padding, PyTorch cross-correlation
// semantics, as implicit GEMMs on the tiled kernel of gemm_tile.cuh (no im2col buffer: operands are
// gathered from the images while staging tiles in shared memory; out-of-image taps read as zero).
//
//   conv2d_fwd_f32     y[n,co,oh,ow] = Σ_{ci,kh,kw} x[n,ci,oh·s−p+kh, ow·s−p+kw] · w[co,ci,kh,kw]
//                      GEMM M = Co, columns = N·Ho·Wo, reduction = Ci·K·K; A = w as [Co, Ci·K·K].
//   conv2d_dgrad_f32   gx[n,ci,ih,iw] = Σ_{co,kh,kw} gy[n,co,oh,ow] · w[co,ci,kh,kw] over the taps with
//                      ih = oh·s−p+kh, iw = ow·s−p+kw (the transposed convolution): M = Ci,
//                      columns = N·H·W, reduction = Co·K·K; a tap whose (ih+p−kh) is not a multiple
//                      of s or falls outside [0, Ho) reads as zero.
//   conv2d_wgrad_f32   gw[co,ci,kh,kw] = Σ_{n,oh,ow} gy[n,co,oh,ow] · x[n,ci,oh·s−p+kh, ow·s−p+kw]:
//                      M = Co, columns = Ci·K·K, reduction = N·Ho·Wo (long: the host splits it
//                      across blockIdx.z and splitk_reduce_f32 adds the slices in order).
// Shape fields are 32-bit (each extent and each GEMM dimension < 2^31, checked on the host); flat
// memory offsets are 64-bit.

// The K loops have no integer division (gemm_tile.cuh): each operand decomposes its fixed rows or
// columns once and walks k as digits, (ci, kh, kw), (co, kh, kw) or (n, oh, ow); the data
// gradient's test "does tap kh reach an output row" divides by the stride with a multiply-high by
// constants the host computes (ConvShape::s_mul, s_shr).

#include "gemm_tile.cuh"

struct ConvShape {
    u32 n, ci, h, w;   // input x [n, ci, h, w]
    u32 co, k;         // weight [co, ci, k, k]
    u32 ho, wo;        // output y [n, co, ho, wo]
    u32 stride, pad;
    u32 s_mul, s_shr;  // x / stride = (x · s_mul) >> s_shr for 0 ≤ x < 2^31 (ConvShape::stride_divisor, src/backend/cuda/params.rs)
};

struct ConvParams {
    GemmShape g;
    ConvShape c;
};

__device__ __forceinline__ u32 div_stride(const ConvShape& c, u32 x) { return (u32)(((u64)x * c.s_mul) >> c.s_shr); }

// x[n, ci, y, x] with y = oh·s−p+kh, x = ow·s−p+kw: zero outside the image. An image position
// split as (its fixed part from the GEMM column or row, its part from the k digits).
struct Pixel {
    i64 base;  // offset of the image plane's sample (and channel, for wgrad)
    int y, x;  // row and column of the fixed part
};

// Forward, A[co][k] = w[co, k], k = (ci, kh, kw): w is [Co, Ci·K·K] row-major.
struct FwdA {
    static constexpr bool DIGITS = false;
    const float* __restrict__ wt;
    u32 ckk;
    typedef i64 J;
    __device__ __forceinline__ J j_at(u32 co) const { return (i64)co * ckk; }
    __device__ __forceinline__ float at(J j, const KCur& k) const { return wt[j + k.k]; }
};

// Forward, B[k][col] = x[n, ci, oh·s−p+kh, ow·s−p+kw], k = (ci, kh, kw), col = (n, oh, ow).
struct FwdB {
    static constexpr bool DIGITS = true;
    const float* __restrict__ x;
    ConvShape sh;
    u32 r1, r2;  // K, K
    typedef Pixel J;
    __device__ __forceinline__ J j_at(u32 col) const {
        const u32 hw = sh.ho * sh.wo, n = col / hw, q = col - n * hw, oh = q / sh.wo, ow = q - oh * sh.wo;
        return Pixel{(i64)n * sh.ci * sh.h * sh.w, (int)(oh * sh.stride) - (int)sh.pad,
                     (int)(ow * sh.stride) - (int)sh.pad};
    }
    __device__ __forceinline__ float at(const J& j, const KCur& k) const {
        const int y = j.y + (int)k.d1, xx = j.x + (int)k.d2;
        if ((unsigned)y >= sh.h || (unsigned)xx >= sh.w) return 0.0f;
        return x[j.base + ((i64)k.d0 * sh.h + y) * sh.w + xx];
    }
};

struct FwdOp {
    __device__ __forceinline__ float epilogue(u32, i64, float v) const { return v; }
    FwdA A;
    FwdB B;
    ConvShape sh;
    // y[n, co, q]
    __device__ __forceinline__ i64 c(u32 co, u32 col) const {
        const u32 hw = sh.ho * sh.wo, n = col / hw, q = col - n * hw;
        return ((i64)n * sh.co + co) * hw + q;
    }
};

// Data gradient, A[ci][k] = w[co, ci, kh, kw], k = (co, r), r = kh·K + kw < K².
struct DgradA {
    static constexpr bool DIGITS = true;
    const float* __restrict__ wt;
    i64 cikk;    // Ci·K²: w's stride per co
    u32 r1, r2;  // 1, K²
    typedef i64 J;
    __device__ __forceinline__ J j_at(u32 ci) const { return (i64)ci * r2; }
    __device__ __forceinline__ float at(J j, const KCur& k) const { return wt[(i64)k.d0 * cikk + j + k.d2]; }
};

// Data gradient, B[k][col] = gy[n, co, oh, ow] for the output position that tap (kh, kw) maps
// onto (ih, iw): oh = (ih + p − kh) / s when that divides exactly and lands in [0, Ho), else zero.
// k = (co, kh, kw), col = (n, ih, iw); the fixed part holds ih + p, iw + p.
struct DgradB {
    static constexpr bool DIGITS = true;
    const float* __restrict__ gy;
    ConvShape sh;
    u32 r1, r2;  // K, K
    typedef Pixel J;
    __device__ __forceinline__ J j_at(u32 col) const {
        const u32 hw = sh.h * sh.w, n = col / hw, q = col - n * hw, ih = q / sh.w, iw = q - ih * sh.w;
        return Pixel{(i64)n * sh.co * sh.ho * sh.wo, (int)(ih + sh.pad), (int)(iw + sh.pad)};
    }
    __device__ __forceinline__ float at(const J& j, const KCur& k) const {
        const int th = j.y - (int)k.d1, tw = j.x - (int)k.d2;
        if (th < 0 || tw < 0) return 0.0f;
        const u32 oh = div_stride(sh, (u32)th), ow = div_stride(sh, (u32)tw);
        if (oh * sh.stride != (u32)th || ow * sh.stride != (u32)tw || oh >= sh.ho || ow >= sh.wo) return 0.0f;
        return gy[j.base + ((i64)k.d0 * sh.ho + oh) * sh.wo + ow];
    }
};

struct DgradOp {
    __device__ __forceinline__ float epilogue(u32, i64, float v) const { return v; }
    DgradA A;
    DgradB B;
    ConvShape sh;
    // gx[n, ci, q]
    __device__ __forceinline__ i64 c(u32 ci, u32 col) const {
        const u32 hw = sh.h * sh.w, n = col / hw, q = col - n * hw;
        return ((i64)n * sh.ci + ci) * hw + q;
    }
};

// Weight gradient, A[co][k] = gy[n, co, q], k = (n, q), q < Ho·Wo.
struct WgradA {
    static constexpr bool DIGITS = true;
    const float* __restrict__ gy;
    i64 cohw;    // Co·Ho·Wo: gy's stride per sample
    u32 r1, r2;  // 1, Ho·Wo
    typedef i64 J;
    __device__ __forceinline__ J j_at(u32 co) const { return (i64)co * r2; }
    __device__ __forceinline__ float at(J j, const KCur& k) const { return gy[(i64)k.d0 * cohw + j + k.d2]; }
};

// Weight gradient, B[k][col] = x[n, ci, oh·s−p+kh, ow·s−p+kw], k = (n, oh, ow), col = (ci, kh, kw).
struct WgradB {
    static constexpr bool DIGITS = true;
    const float* __restrict__ x;
    ConvShape sh;
    u32 r1, r2;  // Ho, Wo
    typedef Pixel J;
    __device__ __forceinline__ J j_at(u32 col) const {
        const u32 kk = sh.k * sh.k, ci = col / kk, r = col - ci * kk, kh = r / sh.k, kw = r - kh * sh.k;
        return Pixel{(i64)ci * sh.h * sh.w, (int)kh - (int)sh.pad, (int)kw - (int)sh.pad};
    }
    __device__ __forceinline__ float at(const J& j, const KCur& k) const {
        const int y = (int)(k.d1 * sh.stride) + j.y, xx = (int)(k.d2 * sh.stride) + j.x;
        if ((unsigned)y >= sh.h || (unsigned)xx >= sh.w) return 0.0f;
        return x[(i64)k.d0 * sh.ci * sh.h * sh.w + j.base + (i64)y * sh.w + xx];
    }
};

struct WgradOp {
    __device__ __forceinline__ float epilogue(u32, i64, float v) const { return v; }
    WgradA A;
    WgradB B;
    ConvShape sh;
    // gw[co, col]
    __device__ __forceinline__ i64 c(u32 co, u32 col) const { return (i64)co * (sh.ci * sh.k * sh.k) + col; }
};

__device__ __forceinline__ FwdOp fwd_op(const float* x, const float* w, const ConvShape& c) {
    return FwdOp{{w, c.ci * c.k * c.k}, {x, c, c.k, c.k}, c};
}
__device__ __forceinline__ DgradOp dgrad_op(const float* gy, const float* w, const ConvShape& c) {
    return DgradOp{{w, (i64)c.ci * c.k * c.k, 1, c.k * c.k}, {gy, c, c.k, c.k}, c};
}
__device__ __forceinline__ WgradOp wgrad_op(const float* x, const float* gy, const ConvShape& c) {
    return WgradOp{{gy, (i64)c.co * c.ho * c.wo, 1, c.ho * c.wo}, {x, c, c.ho, c.wo}, c};
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_fwd_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w, ConvParams p) {
    const FwdOp op = fwd_op(x, w, p.c);
    gemm_tile<true, true>(op, y, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_dgrad_f32(float* __restrict__ gx, const float* __restrict__ gy, const float* __restrict__ w, ConvParams p) {
    const DgradOp op = dgrad_op(gy, w, p.c);
    gemm_tile<true, true>(op, gx, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_wgrad_f32(float* __restrict__ gw, const float* __restrict__ x, const float* __restrict__ gy, ConvParams p) {
    const WgradOp op = wgrad_op(x, gy, p.c);
    gemm_tile<true, false>(op, gw, p.g);
}

// The same three on 16×256 tiles, for GEMMs of at most 16 rows (few channels: the critic's input
// gradient onto 1 or 3 image channels, the generator's last layer).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_fwd_narrow_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w, ConvParams p) {
    const FwdOp op = fwd_op(x, w, p.c);
    gemm_tile_narrow<true, true>(op, y, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_dgrad_narrow_f32(float* __restrict__ gx, const float* __restrict__ gy, const float* __restrict__ w,
                        ConvParams p) {
    const DgradOp op = dgrad_op(gy, w, p.c);
    gemm_tile_narrow<true, true>(op, gx, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_wgrad_narrow_f32(float* __restrict__ gw, const float* __restrict__ x, const float* __restrict__ gy,
                        ConvParams p) {
    const WgradOp op = wgrad_op(x, gy, p.c);
    gemm_tile_narrow<true, false>(op, gw, p.g);
}

extern "C" __global__ void splitk_reduce_f32(float* __restrict__ out, const float* __restrict__ ws, GemmEpi epi,
                                             SplitKParams p) {
    splitk_reduce(out, ws, epi, p);
}

static_assert(sizeof(ConvShape) == 48 && sizeof(ConvParams) == 72, "conv params layout");
