// epilogue.cuh: what a GEMM does to each output element after its reduction, as small pieces
// composed in a fixed order (CUTLASS's epilogue concept, not its code). Every matrix-product and
// convolution kernel, f32 SIMT (gemm_tile.cuh) and tensor-core (gemm_tc.cuh), and the split-K
// reductions that finish them, take one `GemmEpi` by value and apply `epi_apply` to each element
// (m, col) of C at flat output offset `o`, once, after the last slice is added:
//
//   v = acc                                      the f32 sum of products
//   v = v + bias[col]           (bias != null)   a Linear layer's bias
//   v = v > 0 ? v : slope·v     (act)            its activation (ReLU: slope 0; LeakyReLU)
//   v = gate[o] > 0 ? v : slope·v (gate != null) the activation's backward read from its output y:
//                                                for slope ≥ 0, y > 0 exactly where y's input > 0
//
// so `linear_act` is y = act(x·wᵀ + b) in one launch, and `matmul_gated` is act'(y) ⊙ (A·B): the
// gradient of the layer below a Linear, already through that layer's activation (src/tape/epilogue.rs).
// Each piece rounds as the separate kernel it replaces (elementwise.cu's leaky_relu_f32 and
// leaky_relu_backward_f32), so the fused result is bit-identical to the unfused sequence.
#pragma once

struct GemmEpi {
    const float* bias;  // [nc] or null
    const float* gate;  // laid out as C, or null
    float slope;        // of act and of the gate
    u32 act;            // 1: apply the activation after the bias
};
static_assert(sizeof(GemmEpi) == 24, "GemmEpi layout");

__device__ __forceinline__ float epi_bias(const GemmEpi& e, u32 col, float v) { return e.bias ? v + e.bias[col] : v; }
__device__ __forceinline__ float epi_act(const GemmEpi& e, float v) { return (e.act && !(v > 0.0f)) ? e.slope * v : v; }
__device__ __forceinline__ float epi_gate(const GemmEpi& e, i64 o, float v) {
    return (e.gate && !(e.gate[o] > 0.0f)) ? e.slope * v : v;
}

// The pieces in order, for C element (m, col) at flat output offset o.
__device__ __forceinline__ float epi_apply(const GemmEpi& e, u32 col, i64 o, float acc) {
    return epi_gate(e, o, epi_act(e, epi_bias(e, col, acc)));
}
