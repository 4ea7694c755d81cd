// kernels.cu: small kernels whose memory counts are known by hand, for the emulator's memory
// profiler (tests/emu_profile.rs derives every expected count in a comment beside its test).
// Each kernel does one kind of access per source line, so a site's counts are the line's.
#include "common.cuh"
#include "mma.cuh"

// ---- global memory: sectors per request ----
// Thread t of every block copies `iters` consecutive tiles of blockDim.x floats.
extern "C" __global__ void coalesced(float* out, const float* in, int iters) {
    const int t = threadIdx.x, n = blockDim.x;
    for (int i = 0; i < iters; ++i) {
        const float v = in[(blockIdx.x * iters + i) * n + t];  // LDG
        out[(blockIdx.x * iters + i) * n + t] = v;             // STG
    }
}
// Only the first `n` threads copy (a bounds check, as in an elementwise kernel's last block).
extern "C" __global__ void guarded(float* out, const float* in, int n) {
    const int t = threadIdx.x;
    if (t < n) {
        const float v = in[t];  // LDG
        out[t] = v;             // STG
    }
}
// Lane t reads element 32·t: one 128-byte line per lane.
extern "C" __global__ void strided(float* out, const float* in) {
    const int t = threadIdx.x;
    const float v = in[32 * t];  // LDG
    out[t] = v;                  // STG
}
// Every lane reads element 0.
extern "C" __global__ void broadcast(float* out, const float* in) {
    const int t = threadIdx.x;
    const float v = in[0];  // LDG
    out[t] = v;             // STG
}
// 16 bytes per lane.
extern "C" __global__ void vec4(float* out, const float* in) {
    const int t = threadIdx.x;
    const float4 v = reinterpret_cast<const float4*>(in)[t];  // LDG.128
    reinterpret_cast<float4*>(out)[t] = v;                    // STG.128
}
// Lane t executes the load t % 4 + 1 times: the k-th executions of the lanes form one request.
extern "C" __global__ void uneven(float* out, const float* in) {
    const int t = threadIdx.x;
    float s = 0.0f;
    for (int k = 0; k < t % 4 + 1; ++k) s += in[k * 32 + t];  // LDG
    out[t] = s;                                               // STG
}

// ---- shared memory: bank conflicts ----
// Fills s[0..1024) (32 conflict-free stores per lane), then every lane reads s[stride · t % 1024].
extern "C" __global__ void shared_stride(float* out, int stride) {
    __shared__ float s[1024];
    const int t = threadIdx.x;
    for (int i = 0; i < 32; ++i) s[i * 32 + t] = (float)(i * 32 + t);  // STS
    __syncwarp();
    const float v = s[(stride * t) % 1024];  // LDS
    out[t] = v;                             // STG
}
// A 32×32 transpose through a shared tile, read down its columns: unpadded (32-way conflicts),
// padded to 33 columns, and with the column index swizzled by the row (c ^ r).
extern "C" __global__ void transpose_unpadded(float* out, const float* in) {
    __shared__ float tile[32][32];
    const int t = threadIdx.x;
    for (int r = 0; r < 32; ++r) tile[r][t] = in[r * 32 + t];  // LDG, STS
    __syncwarp();
    for (int c = 0; c < 32; ++c) out[c * 32 + t] = tile[t][c];  // LDS, STG
}
extern "C" __global__ void transpose_padded(float* out, const float* in) {
    __shared__ float tile[32][33];
    const int t = threadIdx.x;
    for (int r = 0; r < 32; ++r) tile[r][t] = in[r * 32 + t];  // LDG, STS
    __syncwarp();
    for (int c = 0; c < 32; ++c) out[c * 32 + t] = tile[t][c];  // LDS, STG
}
extern "C" __global__ void transpose_swizzled(float* out, const float* in) {
    __shared__ float tile[32][32];
    const int t = threadIdx.x;
    for (int r = 0; r < 32; ++r) tile[r][t ^ r] = in[r * 32 + t];  // LDG, STS
    __syncwarp();
    for (int c = 0; c < 32; ++c) out[c * 32 + t] = tile[t][c ^ t];  // LDS, STG
}
// 8 and 16 bytes per lane from shared memory: contiguous, and (8 bytes) at a 16-byte stride.
extern "C" __global__ void shared_wide(float* out, int stride2) {
    __shared__ float4 s4[64];
    const int t = threadIdx.x;
    s4[t] = make_float4((float)t, 1.0f, 2.0f, 3.0f);  // STS.128
    s4[t + 32] = make_float4((float)t, 1.0f, 2.0f, 3.0f);  // STS.128
    __syncwarp();
    const float4 v = s4[t];                                              // LDS.128
    const float2 w = reinterpret_cast<const float2*>(s4)[stride2 * t];  // LDS.64
    out[t] = v.x + v.y + v.z + v.w + w.x + w.y;                         // STG
}

// Every lane reads the same 16 and 8 bytes: a broadcast, served per quarter- and half-warp.
extern "C" __global__ void shared_wide_broadcast(float* out) {
    __shared__ float4 s4[2];
    const int t = threadIdx.x;
    if (t < 2) s4[t] = make_float4(1.0f, 2.0f, 3.0f, 4.0f);  // STS.128
    __syncwarp();
    const float4 v = s4[0];                                     // LDS.128
    const float2 w = reinterpret_cast<const float2*>(s4)[3];   // LDS.64
    out[t] = v.x + v.y + v.z + v.w + w.x + w.y;                // STG
}

// ---- cp.async ----
// 16 bytes per lane; lanes with t >= n copy nothing from the source (zero fill).
extern "C" __global__ void cp_async16(float* out, const float* in, int n) {
    __shared__ float4 s[32];
    const int t = threadIdx.x;
    cp_async<16>(&s[t], in + 4 * t, t < n ? 16 : 0);  // LDGSTS.128
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();
    reinterpret_cast<float4*>(out)[t] = s[t];  // LDS.128, STG.128
}
// 4 bytes per lane.
extern "C" __global__ void cp_async4(float* out, const float* in) {
    __shared__ float s[32];
    const int t = threadIdx.x;
    cp_async<4>(&s[t], in + t, 4);  // LDGSTS.32
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();
    out[t] = s[t];  // LDS, STG
}

// ---- ldmatrix ----
// Lane l gives row l of a 32-row tile of 8 u16 (16 bytes); rows `pitch` u32 apart.
extern "C" __global__ void ldmatrix_rows(u32* out, int pitch) {
    __shared__ uint4 s4[32 * 8];  // ldmatrix rows are 16-byte aligned
    u32* s = &s4[0].x;
    const int t = threadIdx.x;
    for (int i = 0; i < 32; ++i) s[i * 32 + t] = (u32)(i * 32 + t);  // STS
    __syncwarp();
    u32 r[4];
    ldmatrix_x4<false>(r, &s[t * pitch]);                      // LDSM
    out[t] = r[0] + r[1] + r[2] + r[3];                        // STG
}
