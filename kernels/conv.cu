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

#include "gemm_tile.cuh"

struct ConvShape {
    u32 n, ci, h, w;   // input x [n, ci, h, w]
    u32 co, k;         // weight [co, ci, k, k]
    u32 ho, wo;        // output y [n, co, ho, wo]
    u32 stride, pad;
};

struct ConvParams {
    GemmShape g;
    ConvShape c;
};

// x[n, ci, oh·s−p+kh, ow·s−p+kw], zero outside the image.
__device__ __forceinline__ float gather_x(const float* __restrict__ x, const ConvShape& c, u32 n, u32 ci, u32 oh,
                                          u32 ow, u32 kh, u32 kw) {
    const int ih = (int)(oh * c.stride + kh) - (int)c.pad;
    const int iw = (int)(ow * c.stride + kw) - (int)c.pad;
    if (ih < 0 || iw < 0 || ih >= (int)c.h || iw >= (int)c.w) return 0.0f;
    return x[(((i64)n * c.ci + ci) * c.h + ih) * c.w + iw];
}

struct FwdOp {
    __device__ __forceinline__ float epilogue(u32, float v) const { return v; }
    const float* __restrict__ x;
    const float* __restrict__ wt;
    ConvShape sh;
    // A[co][k] = w[co, k] with k = (ci, kh, kw)
    __device__ __forceinline__ float a(u32 co, u32 k) const { return wt[(i64)co * (sh.ci * sh.k * sh.k) + k]; }
    // B[k][col] with col = (n, oh, ow)
    __device__ __forceinline__ float b(u32 k, u32 col) const {
        const u32 kk = sh.k * sh.k, hw = sh.ho * sh.wo;
        const u32 ci = k / kk, r = k - ci * kk, kh = r / sh.k, kw = r - kh * sh.k;
        const u32 n = col / hw, q = col - n * hw, oh = q / sh.wo, ow = q - oh * sh.wo;
        return gather_x(x, sh, n, ci, oh, ow, kh, kw);
    }
    // y[n, co, q]
    __device__ __forceinline__ i64 c(u32 co, u32 col) const {
        const u32 hw = sh.ho * sh.wo, n = col / hw, q = col - n * hw;
        return ((i64)n * sh.co + co) * hw + q;
    }
};

struct DgradOp {
    __device__ __forceinline__ float epilogue(u32, float v) const { return v; }
    const float* __restrict__ gy;
    const float* __restrict__ wt;
    ConvShape sh;
    // A[ci][k] = w[co, ci, kh, kw] with k = (co, kh, kw)
    __device__ __forceinline__ float a(u32 ci, u32 k) const {
        const u32 kk = sh.k * sh.k, co = k / kk, r = k - co * kk;
        return wt[((i64)co * sh.ci + ci) * kk + r];
    }
    // B[k][col] = gy[n, co, oh, ow] for the output position that tap (kh, kw) maps onto (ih, iw)
    __device__ __forceinline__ float b(u32 k, u32 col) const {
        const u32 kk = sh.k * sh.k, hw = sh.h * sh.w;
        const u32 co = k / kk, r = k - co * kk, kh = r / sh.k, kw = r - kh * sh.k;
        const u32 n = col / hw, q = col - n * hw, ih = q / sh.w, iw = q - ih * sh.w;
        const int th = (int)(ih + sh.pad) - (int)kh, tw = (int)(iw + sh.pad) - (int)kw;
        if (th < 0 || tw < 0) return 0.0f;
        const u32 oh = (u32)th / sh.stride, ow = (u32)tw / sh.stride;
        if (oh * sh.stride != (u32)th || ow * sh.stride != (u32)tw || oh >= sh.ho || ow >= sh.wo) return 0.0f;
        return gy[(((i64)n * sh.co + co) * sh.ho + oh) * sh.wo + ow];
    }
    // gx[n, ci, q]
    __device__ __forceinline__ i64 c(u32 ci, u32 col) const {
        const u32 hw = sh.h * sh.w, n = col / hw, q = col - n * hw;
        return ((i64)n * sh.ci + ci) * hw + q;
    }
};

struct WgradOp {
    __device__ __forceinline__ float epilogue(u32, float v) const { return v; }
    const float* __restrict__ x;
    const float* __restrict__ gy;
    ConvShape sh;
    // A[co][k] = gy[n, co, q] with k = (n, q)
    __device__ __forceinline__ float a(u32 co, u32 k) const {
        const u32 hw = sh.ho * sh.wo, n = k / hw, q = k - n * hw;
        return gy[((i64)n * sh.co + co) * hw + q];
    }
    // B[k][col] = x[n, ci, oh·s−p+kh, ow·s−p+kw] with k = (n, oh, ow), col = (ci, kh, kw)
    __device__ __forceinline__ float b(u32 k, u32 col) const {
        const u32 kk = sh.k * sh.k, hw = sh.ho * sh.wo;
        const u32 n = k / hw, q = k - n * hw, oh = q / sh.wo, ow = q - oh * sh.wo;
        const u32 ci = col / kk, r = col - ci * kk, kh = r / sh.k, kw = r - kh * sh.k;
        return gather_x(x, sh, n, ci, oh, ow, kh, kw);
    }
    // gw[co, col]
    __device__ __forceinline__ i64 c(u32 co, u32 col) const { return (i64)co * (sh.ci * sh.k * sh.k) + col; }
};

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_fwd_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w, ConvParams p) {
    const FwdOp op{x, w, p.c};
    gemm_tile<true, true>(op, y, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_dgrad_f32(float* __restrict__ gx, const float* __restrict__ gy, const float* __restrict__ w, ConvParams p) {
    const DgradOp op{gy, w, p.c};
    gemm_tile<true, true>(op, gx, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_wgrad_f32(float* __restrict__ gw, const float* __restrict__ x, const float* __restrict__ gy, ConvParams p) {
    const WgradOp op{x, gy, p.c};
    gemm_tile<true, false>(op, gw, p.g);
}

// The same three on 16×256 tiles, for GEMMs of at most 16 rows (few channels: the critic's input
// gradient onto 1 or 3 image channels, the generator's last layer).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_fwd_narrow_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w, ConvParams p) {
    const FwdOp op{x, w, p.c};
    gemm_tile_narrow<true, true>(op, y, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_dgrad_narrow_f32(float* __restrict__ gx, const float* __restrict__ gy, const float* __restrict__ w,
                        ConvParams p) {
    const DgradOp op{gy, w, p.c};
    gemm_tile_narrow<true, true>(op, gx, p.g);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2)
conv2d_wgrad_narrow_f32(float* __restrict__ gw, const float* __restrict__ x, const float* __restrict__ gy,
                        ConvParams p) {
    const WgradOp op{x, gy, p.c};
    gemm_tile_narrow<true, false>(op, gw, p.g);
}

extern "C" __global__ void splitk_reduce_f32(float* __restrict__ out, const float* __restrict__ ws,
                                             const float* __restrict__ bias, SplitKParams p) {
    splitk_reduce(out, ws, bias, p);
}

static_assert(sizeof(ConvShape) == 40 && sizeof(ConvParams) == 64, "conv params layout");
